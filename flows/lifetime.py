"""Helper processes die with the audit that started them, however it ends.

An audit starts helpers: the temporary Prefect API server (uvicorn in a subprocess), the worker
fork server and its workers. A clean exit stops them; a ``kill -9`` of the CLI left them running
with parent 1 for good (seen: 15 minutes later, holding memory and a port). On Linux each helper
asks the kernel for a signal when its parent dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)``): the
fork server and the API server when the audit's process dies, the workers when the fork server
does. Elsewhere this is a no-op.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
from collections.abc import Iterator

PR_SET_PDEATHSIG = 1  # linux/prctl.h


def die_with_parent(sig: int = signal.SIGKILL) -> None:
    """Ask the kernel to send ``sig`` to this process when its parent (thread) exits."""
    if not sys.platform.startswith("linux"):
        return
    parent = os.getppid()
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), sig)


@contextlib.contextmanager
def subprocesses_die_with_us() -> Iterator[None]:
    """While active, every ``subprocess.Popen`` started from this thread asks for
    :func:`die_with_parent` in the child before it runs its program (kept across ``exec``)."""
    original = subprocess.Popen

    class _Popen(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args, **kwargs):
            user = kwargs.get("preexec_fn")

            def preexec() -> None:
                die_with_parent()
                if user is not None:
                    user()

            kwargs["preexec_fn"] = preexec
            super().__init__(*args, **kwargs)

    subprocess.Popen = _Popen  # type: ignore[misc]
    try:
        yield
    finally:
        subprocess.Popen = original  # type: ignore[misc]
