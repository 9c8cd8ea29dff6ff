"""A local HTTP server on 127.0.0.1 that misbehaves on purpose (for the fault tests).

Paths: ``/ok/NAME`` serves the file as it is (ranges too); ``/stall/NAME`` accepts the connection
and never answers; ``/drip/NAME`` answers, sends the first half of the body and then nothing;
``/short/NAME`` declares the whole length and closes the connection halfway; ``/status/CODE/NAME``
answers CODE with a short body.
"""

from __future__ import annotations

import http.server
import socketserver
import threading
import time
from pathlib import Path


class _Handler(http.server.BaseHTTPRequestHandler):
    root: Path
    stall_s: float

    def log_message(self, *args) -> None:  # quiet
        pass

    def _body(self, name: str) -> bytes:
        return (self.root / name).read_bytes()

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, head: bool) -> None:
        parts = self.path.lstrip("/").split("/")
        kind = parts[0]
        try:
            if kind == "stall":
                time.sleep(self.stall_s)
                return
            if kind == "status":
                code = int(parts[1])
                body = f"error {code}".encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if not head:
                    self.wfile.write(body)
                return
            data = self._body(parts[-1])
            start, end = 0, len(data) - 1
            ranged = self.headers.get("Range")
            if ranged and ranged.startswith("bytes="):
                a, _, b = ranged[6:].partition("-")
                start = int(a) if a else 0
                end = min(int(b), len(data) - 1) if b else len(data) - 1
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
            else:
                self.send_response(200)
            chunk = data[start:end + 1]
            self.send_header("Content-Length", str(len(chunk)))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            if head:
                return
            if kind == "ok":
                self.wfile.write(chunk)
            elif kind == "drip":
                cut = max(1, len(data) // 2 - start)
                self.wfile.write(chunk[:cut] if cut < len(chunk) else chunk)
                self.wfile.flush()
                if cut < len(chunk):
                    time.sleep(self.stall_s)
            elif kind == "short":
                cut = max(1, len(data) // 2 - start)
                self.wfile.write(chunk[:cut] if cut < len(chunk) else chunk)
                self.wfile.flush()
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            pass


class FaultyServer:
    """``with FaultyServer(root) as srv: srv.url("ok", "a.wav")``."""

    def __init__(self, root: Path, stall_s: float = 30.0) -> None:
        handler = type("Handler", (_Handler,), {"root": Path(root), "stall_s": stall_s})

        class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
            daemon_threads = True

        self._server = Server(("127.0.0.1", 0), handler)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def url(self, kind: str, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/{kind}/{name}"

    def __enter__(self) -> FaultyServer:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()
