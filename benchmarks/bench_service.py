#!/usr/bin/env python3
"""Benchmark ``audioqc serve``: silence and loudness requests per second and latency, against the
CLI called once per file, in the same run.

- The service: ``audioqc serve`` (``--workers`` = the cores) on 127.0.0.1, started once (its start-up
  is not timed). **silence**: ``POST /v1/media/silence`` with ``media_url`` on a static HTTP server
  on 127.0.0.1 (the service downloads every file), ``duration`` 0.5. **loudness**: SAMI's
  ``POST /api/v1/invoke`` with the file as base64 ``data``. At 1, 4 and 16 concurrent clients
  (threads, each with its own keep-alive connection), each client sending its requests back to
  back; requests per second over the whole batch, p50 and p99 of the request latency.
- The CLI: ``audioqc silence FILE --duration 0.5`` and ``audioqc loudness FILE --sami``, one process
  per file as a script would call it, one at a time and two at a time (the cores).

Material: ``--files`` distinct 10 s stereo 48 kHz 16-bit WAV files (speech-like bursts and
pauses), used in turn. Every service answer is checked against the CLI's for the same file.
Targets (issue 17): at 16 clients at least 10x the CLI's files per second, p99 under 1 s.

    .venv/bin/python benchmarks/bench_service.py [--requests 160] [--json benchmarks/out/service.json]
"""

from __future__ import annotations

import argparse
import base64
import concurrent.futures
import datetime
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.harness import cpu_model  # noqa: E402
from tests.service_support import KEY, Server  # noqa: E402

AUDIOQC = str(ROOT / ".venv" / "bin" / "audioqc")
SR = 48000





def make_files(d: Path, n: int) -> list[Path]:
    from audiolib.io import write

    rng = np.random.default_rng(5)
    files = []
    t = np.arange(10 * SR) / SR
    for i in range(n):
        env = (np.sin(2 * np.pi * (0.3 + 0.1 * i) * t) > -0.2).astype(np.float32)
        y = 0.2 * env * np.sin(2 * np.pi * (180 + 20 * i) * t) + 0.002 * rng.standard_normal(t.size)
        path = d / f"f{i}.wav"
        write(str(path), np.stack([y, 0.8 * y]).astype(np.float32), SR, codec="pcm_s16le", sample_fmt="s16")
        files.append(path)
    return files


class _Quiet(SimpleHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args: object) -> None:
        pass


def static_server(directory: Path) -> tuple[ThreadingHTTPServer, str]:
    handler = lambda *a, **k: _Quiet(*a, directory=str(directory), **k)  # noqa: E731
    srv = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    srv.daemon_threads = True
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    return srv, f"http://127.0.0.1:{srv.server_address[1]}"


def cli_run(kind: str, files: list[Path], parallel: int) -> tuple[float, dict[str, object]]:
    """Files per second of the CLI, one process per file; and its answers."""
    def one(path: Path) -> tuple[str, object]:
        args = (["silence", str(path), "--duration", "0.5"] if kind == "silence"
                else ["loudness", str(path), "--sami"])
        out = subprocess.run([AUDIOQC, *args], capture_output=True, text=True, check=True)
        return path.name, json.loads(out.stdout)

    start = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(parallel) as pool:
        answers = dict(pool.map(one, files))
    return len(files) / (time.perf_counter() - start), answers


def service_run(kind: str, server: Server, base: str, files: list[Path], clients: int, total: int,
                want: dict[str, object]) -> dict[str, float]:
    import httpx

    datas = {p.name: base64.b64encode(p.read_bytes()).decode() for p in files} if kind == "loudness" else {}
    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()
    per_client = total // clients

    def client(c: int) -> None:
        with httpx.Client(base_url=server.url, headers={"x-api-key": KEY}, timeout=120) as http:
            for i in range(per_client):
                path = files[(c * per_client + i) % len(files)]
                t0 = time.perf_counter()
                if kind == "silence":
                    r = http.post("/v1/media/silence", json={"media_url": f"{base}/{path.name}", "duration": 0.5})
                    got = r.json().get("response") if r.status_code == 200 else None
                else:
                    r = http.post("/api/v1/invoke?namespace=LoudnessDetect", json={"data": datas[path.name]})
                    got = json.loads(r.json()["payload"]) if r.status_code == 200 else None
                dt = time.perf_counter() - t0
                with lock:
                    latencies.append(dt)
                    if got != want[path.name]:
                        errors.append(f"{r.status_code} {r.text[:200]}")

    start = time.perf_counter()
    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    if errors:
        raise SystemExit(f"{kind} at {clients} clients: {len(errors)} wrong answers, e.g. {errors[0]}")
    lat = np.array(latencies)
    return {"clients": clients, "requests": len(lat), "rps": len(lat) / wall, "p50_ms": 1000 * np.percentile(lat, 50),
            "p99_ms": 1000 * np.percentile(lat, 99)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--files", type=int, default=8, help="distinct 10 s files (default 8)")
    ap.add_argument("--requests", type=int, default=160, help="requests per endpoint and concurrency (default 160)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 2)
    ap.add_argument("--json", default=None, metavar="FILE", help="also write the figures as JSON")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-service-") as tmp:
        d = Path(tmp)
        (d / "media").mkdir()
        files = make_files(d / "media", args.files)
        static, base = static_server(d / "media")
        server = Server(d / "data", "--allow-private-urls", "--workers", str(args.workers), "--max-queue", "256",
                        keys=KEY).start()
        rows = []
        try:
            for kind in ("silence", "loudness"):
                cli1, want = cli_run(kind, files, 1)
                cli2, want2 = cli_run(kind, files, 2)
                assert want == want2
                for clients in (1, 4, 16):
                    total = max(args.requests // (4 if clients == 1 else 1), clients)
                    row: dict[str, Any] = service_run(kind, server, base, files, clients, total - total % clients, want)
                    row.update(kind=kind, cli_fps_1=cli1, cli_fps_2=cli2, speedup=row["rps"] / cli1,
                               speedup_vs_2=row["rps"] / cli2)
                    rows.append(row)
                    print(f"  {kind} x{clients}: {row['rps']:.1f} req/s", file=sys.stderr)
        finally:
            server.stop()
            static.shutdown()
    cpu = cpu_model()
    print(f"=== audioqc serve vs the CLI per file: 10 s stereo 48 kHz WAV, {args.workers} workers, "
          f"{datetime.date.today()} ===")
    print(f"CPU: {cpu} ({os.cpu_count()} cores)")
    print()
    print("endpoint  clients  requests  req/s   p50 ms  p99 ms  CLI files/s (1 / 2 procs)  speed-up vs CLI (1 / 2)")
    for r in rows:
        print(f"{r['kind']:<8}  {r['clients']:>7}  {r['requests']:>8}  {r['rps']:>6.1f}  {r['p50_ms']:>6.1f}  "
              f"{r['p99_ms']:>6.1f}  {r['cli_fps_1']:>6.2f} / {r['cli_fps_2']:<6.2f}            "
              f"{r['speedup']:>5.1f}x / {r['speedup_vs_2']:.1f}x")
    print()
    for kind in ("silence", "loudness"):
        r16 = next(r for r in rows if r["kind"] == kind and r["clients"] == 16)
        print(f"{kind}: 16 clients {r16['speedup']:.1f}x the CLI (target >= 10x: "
              f"{'met' if r16['speedup'] >= 10 else 'MISSED'}), p99 {r16['p99_ms']:.0f} ms (target < 1000 ms: "
              f"{'met' if r16['p99_ms'] < 1000 else 'MISSED'})")
    if args.json:
        Path(args.json).write_text(json.dumps({"cpu": cpu, "workers": args.workers, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
