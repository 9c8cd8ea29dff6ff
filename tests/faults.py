"""Shared pieces of the fault tests: the CLI in a subprocess with a time bound, a moto S3 server
in its own process (so that it can be frozen with SIGSTOP, or killed), processes dropping
root's permission override."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from conftest import AUDIOQC, Run  # noqa: F401 (re-exported: the one CLI helper lives in conftest)
from conftest import run_cli as cli  # noqa: F401

#: Run a command as root without root's permission override (CAP_DAC_OVERRIDE and
#: CAP_DAC_READ_SEARCH dropped): file modes then bind it as they bind any user. Empty when not root.
NO_OVERRIDE = (["setpriv", "--bounding-set=-dac_override,-dac_read_search"]
               if os.geteuid() == 0 else [])



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoProcess:
    """moto's S3 server in its own process on 127.0.0.1 (freeze() / thaw() / kill())."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = subprocess.Popen([str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p",
                                      str(self.port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return
            except OSError:
                time.sleep(0.1)
        raise RuntimeError("moto_server did not start")

    @property
    def env(self) -> dict[str, str]:
        return {"AWS_ENDPOINT_URL_S3": self.url, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1"}

    def fs(self):
        import s3fs

        return s3fs.S3FileSystem(key="testing", secret="testing", client_kwargs={"endpoint_url": self.url},
                                 skip_instance_cache=True)

    def freeze(self) -> None:
        self.proc.send_signal(signal.SIGSTOP)

    def thaw(self) -> None:
        self.proc.send_signal(signal.SIGCONT)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait()


@contextmanager
def moto_process() -> Iterator[MotoProcess]:
    m = MotoProcess()
    try:
        yield m
    finally:
        m.kill()
