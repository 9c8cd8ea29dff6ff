#!/usr/bin/env python3
"""Prefect's cost per task in the audit's setup, against Prefect's own process pool.

A flow submits no-op tasks (their work returns their argument) with one worker process, so the
time per task is the task runner's and task engine's own cost: the task run's state changes over
HTTP to the API, the call's way to a worker process and the result's way back.  Cases, each run in
turn per round (``--rounds``), against one temporary Prefect API server started here:

* ``prefect``: Prefect's ``ProcessPoolTaskRunner`` as shipped (a spawned worker runs each task:
  the task engine there, with the flow's context rebuilt for every task; certifi's CA bundle);
* ``threads+pool``: the audit's setup (:func:`flows.audit.task_runner`, :mod:`tasks.compute`):
  tasks in Prefect's ``ThreadPoolTaskRunner`` in the flow's process, each sending its work to a
  one-worker compute pool forked from the preloaded fork server, with the one-certificate CA file
  that ``flows.audit.run_audit`` gives the clients of a server it chose
  (:func:`flows.workarounds.one_certificate_file`).

Every flow run starts its own pool, so each case times a flow of 2 tasks and one of ``--tasks`` + 2
and divides the difference by ``--tasks``: worker start-up is not a per-task cost.  Prints the median
milliseconds per task of each case, the ratio to ``prefect``, the API server's CPU time per
task (from /proc) and the flow process's own (``time.process_time``: with threads the task
engine runs there; with Prefect's process pool it runs in the worker, not counted).  Tasks in
threads run concurrently, so their wall time per task is near zero: the CPU columns are their
cost.  Timings are printed, never asserted.

    .venv/bin/python benchmarks/bench_task_overhead.py [--tasks 60] [--rounds 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import header  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tasks", type=int, default=60, help="extra no-op tasks of the long flow (default 60)")
    ap.add_argument("--rounds", type=int, default=3, help="rounds of every case, run in turn (default 3)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON")
    args = ap.parse_args(argv)
    print(header("bench_task_overhead: Prefect task overhead"), flush=True)
    if args.tasks < 1 or args.rounds < 1:
        ap.error("--tasks and --rounds must be >= 1")

    home = tempfile.TemporaryDirectory(prefix="bench_task_overhead_")
    os.environ["PREFECT_HOME"] = home.name
    os.environ.pop("PREFECT_API_URL", None)
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")

    import prefect
    from prefect import flow, task
    from prefect.cache_policies import NO_CACHE
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import PREFECT_API_SSL_CERT_FILE, PREFECT_API_URL, temporary_settings
    from prefect.task_runners import ProcessPoolTaskRunner

    from flows.audit import task_runner
    from flows.workarounds import one_certificate_file as _one_certificate_file
    from tasks import compute

    @task(cache_policy=NO_CACHE, persist_result=False)
    def noop(i: int) -> int:
        return i

    @task(cache_policy=NO_CACHE, persist_result=False)
    def noop_on_pool(i: int) -> int:
        return compute.run(int, i)

    def make_flow(runner, the_task):
        @flow(task_runner=runner)
        def many(n: int) -> int:
            return sum(f.result() for f in [the_task.submit(i) for i in range(n)])
        return many

    compute.prewarm()
    server = SubprocessASGIServer()
    server.start(timeout=90)
    os.environ["PREFECT_API_URL"] = server.api_url
    ca_file = _one_certificate_file(home.name)
    cases = {
        "prefect": (lambda: ProcessPoolTaskRunner(max_workers=1), {}, noop),
        "threads+pool": (task_runner, {PREFECT_API_SSL_CERT_FILE: ca_file} if ca_file else {}, noop_on_pool),
    }
    per_task_ms: dict[str, list[float]] = {name: [] for name in cases}
    server_ms: dict[str, list[float]] = {name: [] for name in cases}
    flow_cpu_ms: dict[str, list[float]] = {name: [] for name in cases}  # the flow process's own CPU
    ticks = os.sysconf("SC_CLK_TCK")

    def server_cpu_s() -> float:  # the API server's CPU time (user + system), from /proc
        proc = server.server_process
        if proc is None:
            return float("nan")
        try:
            fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / ticks
        except (OSError, AttributeError, IndexError, ValueError):
            return float("nan")

    print(f"prefect {prefect.__version__}; {args.tasks} no-op tasks per flow, 1 worker, {args.rounds} rounds",
          flush=True)
    try:
        for r in range(args.rounds):
            for name, (runner, updates, the_task) in cases.items():
                with temporary_settings(updates={PREFECT_API_URL: server.api_url, **updates}), \
                        compute.session(1) if the_task is noop_on_pool else contextlib.nullcontext():
                    many = make_flow(runner(), the_task)
                    c0, t0, p0 = server_cpu_s(), time.perf_counter(), time.process_time()
                    assert many(2) == 1
                    c1, t1, p1 = server_cpu_s(), time.perf_counter(), time.process_time()
                    assert many(args.tasks + 2) == (args.tasks + 2) * (args.tasks + 1) // 2
                    c2, t2, p2 = server_cpu_s(), time.perf_counter(), time.process_time()
                    # every flow starts its own pool (or thread pool): the difference leaves the start-up out
                    per_task_ms[name].append(1000 * ((t2 - t1) - (t1 - t0)) / args.tasks)
                    server_ms[name].append(1000 * ((c2 - c1) - (c1 - c0)) / args.tasks)
                    flow_cpu_ms[name].append(1000 * ((p2 - p1) - (p1 - p0)) / args.tasks)
                print(f"  round {r + 1} {name:8} {per_task_ms[name][-1]:7.1f} ms per task, API server "
                      f"{server_ms[name][-1]:5.1f} ms CPU per task, flow process {flow_cpu_ms[name][-1]:5.1f} ms CPU "
                      "per task", flush=True)
    finally:
        time.sleep(2)  # let the server record the last runs' events before it stops
        os.environ.pop("PREFECT_API_URL", None)
        server.stop()
    base = statistics.median(per_task_ms["prefect"])
    print("\ncase          median ms/task  vs prefect  server CPU ms/task  flow process CPU ms/task")
    out = {}
    for name, values in per_task_ms.items():
        m = statistics.median(values)
        cpu = statistics.median(server_ms[name])
        own = statistics.median(flow_cpu_ms[name])
        out[name] = {"median_ms_per_task": m, "runs_ms_per_task": values, "ratio_to_prefect": m / base,
                     "server_cpu_ms_per_task": cpu, "flow_process_cpu_ms_per_task": own}
        print(f"{name:12}  {m:14.1f}  {m / base:9.2f}x  {cpu:18.1f}  {own:24.1f}")
    if args.json:
        args.json.write_text(json.dumps({"tasks": args.tasks, "rounds": args.rounds, "cases": out}, indent=2))
    home.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
