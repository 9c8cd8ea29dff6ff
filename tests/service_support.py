"""Helpers of the service tests: a real ``audioqc serve`` in a subprocess, small HTTP servers the
tests run on 127.0.0.1 (media, webhook receiver, gated downloads, redirects), and test media."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from audiolib.io import write

ROOT = Path(__file__).resolve().parents[1]
AUDIOQC = str(ROOT / ".venv" / "bin" / "audioqc") if (ROOT / ".venv" / "bin" / "audioqc").exists() else "audioqc"
KEY = "test-key-aaaaaaaaaaaa"
OTHER_KEY = "test-key-bbbbbbbbbbbb"
SR = 48000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """``audioqc serve`` on a free port of 127.0.0.1 with its own data directory.

    ``start()`` waits for ``/healthz``; ``kill()`` is a SIGKILL of the server alone (its workers
    and fork server are then ended by their own ids, as recorded before the kill).
    """

    def __init__(self, data_dir: Path, *args: str, keys: str = f"{KEY},{OTHER_KEY}") -> None:
        self.data_dir = data_dir
        self.args = list(args)
        self.keys = keys
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen | None = None
        self.log_path = data_dir.parent / f"{data_dir.name}-server-{self.port}.log"

    def start(self, timeout: float = 120.0) -> "Server":
        env = {**os.environ, "AUDIOQC_API_KEYS": self.keys}
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen([AUDIOQC, "serve", "--port", str(self.port), "--data-dir", str(self.data_dir),
                                      "--no-dns", *self.args], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"server exited: {self.log_text()[-3000:]}"
            try:
                if httpx.get(self.url + "/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"server did not start: {self.log_text()[-3000:]}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def _started(self) -> subprocess.Popen:
        assert self.proc is not None, "Server.start() first"
        return self.proc

    def children(self) -> list[int]:
        import psutil

        try:
            return [c.pid for c in psutil.Process(self._started().pid).children(recursive=True)]
        except psutil.NoSuchProcess:
            return []

    def kill(self) -> None:
        """SIGKILL the server process only; then end the worker processes it left, by pid."""
        children = self.children()
        proc = self._started()
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        children = self.children()
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()

    def client(self, key: str | None = KEY, timeout: float = 120.0) -> httpx.Client:
        return httpx.Client(base_url=self.url, headers={"x-api-key": key} if key else {}, timeout=timeout)


class Recorder(ThreadingHTTPServer):
    """An HTTP server on 127.0.0.1 run by a test: serves files, records requests.

    - ``files``: path -> bytes served to GET;
    - ``gate``: while not set, GETs of paths in ``gated`` wait for it (a download that hangs);
    - ``redirects``: path -> Location answered with 302;
    - POSTs are recorded in ``posts`` (path, JSON body); ``post_status`` lists the statuses to
      answer in turn (then 200); ``hang`` paths never answer (a webhook that never does).
    """

    daemon_threads = True

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.files: dict[str, bytes] = {}
        self.redirects: dict[str, str] = {}
        self.gated: set[str] = set()
        self.gate = threading.Event()
        self.hang: set[str] = set()
        self.release = threading.Event()
        self.requests: list[tuple[str, str]] = []
        self.posts: list[tuple[str, Any]] = []
        self.post_status: list[int] = []
        self.posted = threading.Condition()
        super().__init__((host, 0), _Handler)
        self.url = f"http://{host}:{self.server_address[1]}"
        threading.Thread(target=self.serve_forever, daemon=True).start()

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away (a refused or timed-out download) is expected here

    def close(self) -> None:
        self.gate.set()
        self.release.set()
        self.shutdown()
        self.server_close()

    def wait_posts(self, n: int, timeout: float = 60.0) -> list[tuple[str, Any]]:
        with self.posted:
            self.posted.wait_for(lambda: len(self.posts) >= n, timeout)
        return list(self.posts)


class _Handler(BaseHTTPRequestHandler):
    server: Recorder
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802
        srv = self.server
        path = self.path.split("?", 1)[0]
        srv.requests.append(("GET", path))
        if path in srv.redirects:
            self.send_response(302)
            self.send_header("Location", srv.redirects[path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if path in srv.gated:
            srv.gate.wait(120)
        body = srv.files.get(path)
        if body is None:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self) -> None:  # noqa: N802
        srv = self.server
        path = self.path.split("?", 1)[0]
        data = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        srv.requests.append(("POST", path))
        if path in srv.hang:
            srv.release.wait(120)
            return
        status = srv.post_status.pop(0) if srv.post_status else 200
        with srv.posted:
            srv.posts.append((path, json.loads(data) if data else None))
            srv.posted.notify_all()
        self.send_response(status)
        self.send_header("Content-Length", "0")
        self.end_headers()


def cli(*args: str) -> Any:
    """``audioqc ARGS`` as the user runs it; its JSON output."""
    out = subprocess.run([AUDIOQC, *args], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def make_media(d: Path) -> dict[str, Path]:
    """Test media with known content (48 kHz):

    - ``gaps.wav``: 10 s stereo, a 440 Hz tone at -12 dBFS with digital silence at 0-1 s, 4-5.5 s
      and 9-10 s (the silence endpoint's answer is known);
    - ``quiet.wav``: 3 s of noise at -90 dBFS RMS (too quiet for BS.1770: SAMI's -100);
    - ``surround.wav``: 4 s of 5.1 (distinct tones per channel, LFE low);
    - ``noisy.flac``: 6 s mono of a tone burst pattern in white noise (for noise removal).
    """
    rng = np.random.default_rng(17)
    files = {}
    t = np.arange(10 * SR) / SR
    tone = (10 ** (-12 / 20) * np.sqrt(2) * np.sin(2 * np.pi * 440 * t)).astype(np.float32)
    for a, b in ((0, 1), (4, 5.5), (9, 10)):
        tone[int(a * SR):int(b * SR)] = 0
    files["gaps.wav"] = d / "gaps.wav"
    write(str(files["gaps.wav"]), np.stack([tone, 0.5 * tone]), SR, codec="pcm_s16le", sample_fmt="s16")
    files["quiet.wav"] = d / "quiet.wav"
    write(str(files["quiet.wav"]), (10 ** (-90 / 20) * rng.standard_normal((1, 3 * SR))).astype(np.float32), SR,
          codec="pcm_f32le", sample_fmt="flt")
    t4 = np.arange(4 * SR) / SR
    six = np.stack([0.3 * np.sin(2 * np.pi * f * t4) for f in (300, 500, 700, 60, 900, 1100)]).astype(np.float32)
    files["surround.wav"] = d / "surround.wav"
    write(str(files["surround.wav"]), six, SR, codec="pcm_s16le", sample_fmt="s16", layout="5.1")
    t6 = np.arange(6 * SR) / SR
    bursts = 0.3 * np.sin(2 * np.pi * 220 * t6) * (np.sin(2 * np.pi * 1.5 * t6) > 0)
    noisy = (bursts + 0.03 * rng.standard_normal(t6.size)).astype(np.float32)[None]
    files["noisy.flac"] = d / "noisy.flac"
    write(str(files["noisy.flac"]), noisy, SR, codec="flac", sample_fmt="s16")
    return files


def decoded(path: str | Path) -> np.ndarray:
    from audiolib import io

    with io.stream(str(path)) as s:
        return np.concatenate(list(s), axis=1)


def python() -> str:
    return sys.executable
