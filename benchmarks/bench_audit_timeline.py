#!/usr/bin/env python3
"""Where the fixed time of a small audit goes: one timeline per way of running it.

Runs ``audioqc audit SRC --report DEST --policy ebu-r128`` on the demo collection (a first audit
into a new report, then the unchanged re-audit) with a tracer that timestamps the phases in every
process of the audit (the CLI, the Prefect server start, the workers' fork server, the workers),
without any change to the code measured: a ``sitecustomize`` module put first on ``PYTHONPATH``
wraps the functions below when their modules are imported, and appends ``time pid phase`` lines
to a file. So the same tracer times this tree and, with ``--baseline-tree DIR``, the code before
a change (a checkout with its C extension built in place).

Phases (seconds from the command's launch; the first worker's for worker phases):

* ``arguments checked``: ``flows.checks.check_audit`` returned (the CLI's first call);
* ``fork server preload``: ``flows._preload`` imported (the workers' modules), begin and end;
* ``start-up done``: ``flows.startup.Startup.begin`` returned (this tree: API resolved, temporary
  server launched, listing and report state read);
* ``Prefect + flow imported``: ``import flows.audit`` in the CLI, begin and end;
* ``temporary server``: launched and answering (``SubprocessASGIServer.start`` before this change,
  ``flows.server.TemporaryServer`` after);
* ``flow body``: the ``audit`` flow function's begin and end (the flow run exists before it and is
  finished after it);
* ``workers``: the first worker ready (its initializer done); the first ``diagnose batch`` task
  begun and the last done (in a worker before the compute pool, in the flow's threads since); the
  first batch's work begun in a worker and the last done (the compute pool's workers; before it,
  the same as the tasks);
* ``run_audit returned``; ``exit``: the process is gone (the launcher's clock).

Modes: ``temporary`` (no server up) and ``server`` (``audioqc server start`` up; the baseline
reaches it through ``PREFECT_API_URL``). Also prints ``python -X importtime`` totals of the
modules the CLI imports. One run per timeline: this shows where time goes, ``bench_audit_small.py``
says how long it takes.

    .venv/bin/python benchmarks/bench_audit_timeline.py [--baseline-tree DIR] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.harness import REPO, default_audioqc, header, print_table  # noqa: E402

# the audits of the cases below use a temporary server where no background one was started for them
# (their "temporary server" cases), as they did before audits started the background server on first
# use (bench_audit_small.py --auto-start measures that)
os.environ.setdefault("AUDIOQC_PREFECT_SERVER", "temporary")

POLICY = "ebu-r128"

# The tracer: imported by every Python process of the audit (sitecustomize), it patches the
# watched modules as they are imported. Off when AQ_TIMELINE is not set.
TRACER = r'''
import functools, importlib.abc, importlib.util, os, sys, time

_PATH = os.environ.get("AQ_TIMELINE")


def mark(what):
    with open(_PATH, "a") as f:
        f.write("%.4f\t%d\t%s\n" % (time.time(), os.getpid(), what))


def around(obj, name, begin=None, end=None, once=False):
    fn = getattr(obj, name, None)
    if fn is None:
        return
    raw = fn.__func__ if isinstance(fn, classmethod) else fn
    state = {"done": False}

    @functools.wraps(raw)
    def wrapper(*a, **k):
        quiet = once and state["done"]
        if begin and not quiet:
            mark(begin)
        try:
            return raw(*a, **k)
        finally:
            if end and not quiet:
                mark(end)
            state["done"] = True

    setattr(obj, name, classmethod(wrapper) if isinstance(fn, classmethod) else wrapper)


def around_task(module, name, begin, end):
    t = getattr(module, name, None)
    if t is None or not hasattr(t, "fn"):
        return
    fn = t.fn

    @functools.wraps(fn)
    def wrapper(*a, **k):
        batch = a[0] if a else k.get("batch")
        mark(begin % (len(batch) if batch is not None else 0))
        try:
            return fn(*a, **k)
        finally:
            mark(end)

    t.fn = wrapper


def p_checks(m):
    around(m, "check_audit", end="arguments checked", once=True)


def p_startup(m):
    around(m.Startup, "begin", end="start-up done")


def p_server(m):
    around(m.TemporaryServer, "start", begin="temporary server launched")
    around(m.TemporaryServer, "wait", end="temporary server ready")
    around(m.TemporaryServer, "stop", begin="temporary server stop begins", end="temporary server stopped")


def p_prefect_server(m):
    around(m.SubprocessASGIServer, "start", begin="temporary server launched", end="temporary server ready")
    around(m.SubprocessASGIServer, "stop", begin="temporary server stop begins", end="temporary server stopped")


def p_audit(m):
    flow = getattr(m, "audit", None)
    if flow is not None and hasattr(flow, "fn"):
        fn = flow.fn

        @functools.wraps(fn)
        def body(*a, **k):
            mark("flow body begins")
            try:
                return fn(*a, **k)
            finally:
                mark("flow body ends")

        flow.fn = body
    around(m, "run_audit", begin="run_audit called", end="run_audit returned")


def p_runner(m):
    # flows/runner.py is gone from this tree (the compute pool replaced it: p_compute); a
    # --baseline-tree from before 733cf21 still has it
    around(m, "_enter_settings", end="worker ready")
    cls = getattr(m, "WarmProcessPoolTaskRunner", None)
    if cls is not None:
        around(cls, "__enter__", end="pool opened")
        around(cls, "__exit__", begin="pool closing", end="pool closed")


def p_analyze(m):
    around_task(m, "analyze_batch", "batch of %d begins", "batch ends")


def p_compute(m):
    around(m, "_worker_init", end="worker ready")
    around(m, "start", end="pool opened", once=True)
    around(m, "shutdown", begin="pool closing", end="pool closed")


def p_work(m):
    fn = getattr(m, "analyze_rows", None)
    if fn is None:
        return

    @functools.wraps(fn)
    def wrapper(batch, *a, **k):
        mark("work on %d begins" % len(batch))
        try:
            return fn(batch, *a, **k)
        finally:
            mark("work ends")

    m.analyze_rows = wrapper


def nothing(m):
    pass


WATCH = {"audioqc.cli": nothing, "flows.checks": p_checks, "flows.startup": p_startup, "flows.server": p_server,
         "prefect.server.api.server": p_prefect_server, "flows.audit": p_audit, "flows.runner": p_runner,
         "flows._preload": nothing, "tasks.analyze": p_analyze, "tasks.compute": p_compute, "tasks.work": p_work}


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in WATCH:
            return None
        sys.meta_path.remove(self)
        try:
            spec = importlib.util.find_spec(name)
        finally:
            sys.meta_path.insert(0, self)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        original = spec.loader.exec_module

        def exec_module(module, _original=original, _name=name):
            mark("import %s begins" % _name)
            _original(module)
            mark("import %s ends" % _name)
            WATCH[_name](module)

        spec.loader.exec_module = exec_module
        return spec


if _PATH:
    mark("python started")
    sys.meta_path.insert(0, _Finder())
'''

#: (label, how to find it: (phase, "first" | "last"), ...) in the table's order
PHASES = [
    ("python started", ("python started", "first")),
    ("arguments checked", ("arguments checked", "first")),
    ("fork server preload begins", ("import flows._preload begins", "first")),
    ("start-up done (listing, state)", ("start-up done", "first")),
    ("temporary server launched", ("temporary server launched", "first")),
    ("import flows.audit begins", ("import flows.audit begins", "first")),
    ("Prefect + flow imported", ("import flows.audit ends", "first")),
    ("fork server preload ends", ("import flows._preload ends", "first")),
    ("temporary server ready", ("temporary server ready", "last")),
    ("flow body begins", ("flow body begins", "first")),
    ("pool opened", ("pool opened", "first")),
    ("first worker ready", ("worker ready", "first")),
    ("first batch task begins", (re.compile(r"batch of \d+ begins"), "first")),
    ("first batch's work begins (worker)", (re.compile(r"work on \d+ begins"), "first")),
    ("last batch's work ends (worker)", ("work ends", "last")),
    ("last batch task ends", ("batch ends", "last")),
    ("flow body ends", ("flow body ends", "first")),
    ("pool closed", ("pool closed", "last")),
    ("temporary server stopped", ("temporary server stopped", "last")),
    ("run_audit returned", ("run_audit returned", "last")),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_marks(path: Path) -> list[tuple[float, int, str]]:
    out = []
    if path.exists():
        for line in path.read_text().splitlines():
            t, pid, what = line.split("\t", 2)
            out.append((float(t), int(pid), what))
    return sorted(out)


def phase_time(marks: list[tuple[float, int, str]], launch: float, cli_pid: int | None, what: Any,
               which: str) -> float | None:
    hits = [t for t, pid, w in marks if (what.fullmatch(w) if isinstance(what, re.Pattern) else w == what)
            and (what != "python started" or pid == cli_pid)]  # the CLI's own start, not a helper's
    if not hits:
        return None
    return (hits[0] if which == "first" else hits[-1]) - launch


def importtime(python: str, pythonpath: str | None, module: str) -> dict[str, float]:
    env = {**os.environ}
    if pythonpath:
        env["PYTHONPATH"] = pythonpath
    proc = subprocess.run([python, "-P", "-X", "importtime", "-c", f"import {module}"], capture_output=True,
                          text=True, env=env)
    cum: dict[str, float] = {}
    for line in proc.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m:
            cum.setdefault(m.group(3), int(m.group(1)) / 1e6)
    return cum


@dataclass
class Timeline:
    """How to trace one audit: the collection, the tracer, the trees, the two Prefect homes."""

    src: Path
    tmp: Path
    tracer: Path  # the directory holding sitecustomize.py
    pin: list[str]  # taskset prefix, or nothing
    trees: dict[str, str]  # tree -> its PYTHONPATH
    port: int  # the background server's
    base_env: dict[str, str]

    @property
    def home_tmp(self) -> Path:
        return self.tmp / "home-temporary"

    @property
    def home_bg(self) -> Path:
        return self.tmp / "home-server"

    def server_env(self) -> dict[str, str]:
        """The environment of ``audioqc server start`` / ``stop`` (this tree, the background home)."""
        return {**self.base_env, "PREFECT_HOME": str(self.home_bg), "PYTHONPATH": self.trees["this tree"]}

    def warm_up(self) -> None:
        """Untimed: byte-compile both trees, migrate the temporary mode's database."""
        for tree in self.trees:
            subprocess.run([*self.pin, sys.executable, "-P", "-m", "audioqc.cli", "audit", str(self.src), "--report",
                            str(self.tmp / f"warm-{len(tree)}"), "--policy", POLICY], capture_output=True,
                           env={**self.base_env, "PYTHONPATH": self.trees[tree], "PREFECT_HOME": str(self.home_tmp)})

    def run(self, tree: str, mode: str, report_dir: Path, tag: str) -> dict[str, Any]:
        """One traced audit: the phases' times from its launch, its exit status and what it said."""
        env = {**self.base_env, "PYTHONPATH": f"{self.tracer}{os.pathsep}{self.trees[tree]}",
               "PREFECT_HOME": str(self.home_tmp if mode == "temporary" else self.home_bg)}
        if mode == "server" and tree == "baseline":
            env["PREFECT_API_URL"] = f"http://127.0.0.1:{self.port}/api"
        cmd = [*self.pin, sys.executable, "-P", "-m", "audioqc.cli", "audit", str(self.src), "--report",
               str(report_dir), "--policy", POLICY]
        trace = self.tmp / f"{tag}.tsv"
        env["AQ_TIMELINE"] = str(trace)
        launch = time.time()
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        out, err = proc.communicate()
        gone = time.time()
        marks = read_marks(trace)
        cli_pid = marks[0][1] if marks else None  # the command is the first process up
        times = {label: phase_time(marks, launch, cli_pid, what, which) for label, (what, which) in PHASES}
        times["exit"] = gone - launch
        said = next((ln.strip() for ln in out.splitlines() if "analysed" in ln), "")
        return {"times": times, "returncode": proc.returncode, "said": said, "stderr": err[-500:]}

    def run_all(self) -> dict[str, dict[str, Any]]:
        """First audit and re-audit, per tree and mode."""
        results: dict[str, dict[str, Any]] = {}
        for tree in self.trees:
            for mode in ("temporary", "server"):
                report_dir = self.tmp / "reports" / f"{tree}-{mode}".replace(" ", "_")
                for kind in ("first", "re-audit"):
                    name = f"{kind} / {mode} / {tree}"
                    print(f"  {name} ...", flush=True)
                    results[name] = self.run(tree, mode, report_dir, name.replace(" / ", "-").replace(" ", "_"))
                    if results[name]["returncode"] != 0:
                        print(f"    FAILED: {results[name]['stderr']}")
        return results


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=Path, default=REPO / "data" / "samples", help="the collection (data/samples)")
    ap.add_argument("--baseline-tree", type=Path, default=None,
                    help="also trace the code in this checkout (PYTHONPATH)")
    ap.add_argument("--cpus", default="0,1", help="taskset CPU list (default 0,1)")
    ap.add_argument("--json", type=Path, default=None)
    return ap.parse_args(argv)


def make_timeline(args: argparse.Namespace, src: Path) -> Timeline:
    """A temporary directory with the tracer, and what the runs need."""
    pin = ["taskset", "-c", args.cpus] if shutil.which("taskset") else []
    tmp = Path(tempfile.mkdtemp(prefix="bench_audit_timeline_"))
    tracer = tmp / "tracer"
    tracer.mkdir()
    (tracer / "sitecustomize.py").write_text(TRACER)
    trees = {"this tree": str(REPO)}
    if args.baseline_tree is not None:
        trees["baseline"] = str(args.baseline_tree.resolve())
    port = free_port()
    base_env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PYTHONPATH", "AQ_TIMELINE")}
    base_env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    return Timeline(src=src, tmp=tmp, tracer=tracer, pin=pin, trees=trees, port=port, base_env=base_env)


def print_timelines(results: dict[str, dict[str, Any]], src: Path, cpus: str) -> None:
    print()
    print(header("bench_audit_timeline results"))
    print(f"{src} ({len(list(src.glob('*')))} files), policy {POLICY}; seconds from the command's launch; one run "
          f"each, pinned to CPUs {cpus}; other work may run on this host")
    names = list(results)
    labels = [label for label, _ in PHASES] + ["exit"]
    rows = []
    for label in labels:
        cells = [results[n]["times"].get(label) for n in names]
        if all(c is None for c in cells):
            continue
        rows.append([label] + [f"{c:.2f}" if c is not None else "-" for c in cells])
    short = [n.replace(" / this tree", "").replace(" / baseline", " (base)") for n in names]
    print_table(["phase"] + short, rows)
    for n in names:
        print(f"  {n}: {results[n]['said']}")


def print_importtime(trees: dict[str, str]) -> dict[str, dict[str, float]]:
    """``python -X importtime`` of the CLI's imports, per tree; returns the cumulative times."""
    print("\npython -X importtime, cumulative seconds (one run, not pinned):")
    mods = ["audioqc.cli", "flows.checks", "audioqc.report", "audiolib.diagnose", "pyarrow.dataset", "pandas",
            "prefect", "flows.audit", "prefect.server.api.server"]
    rows = []
    cums = {tree: importtime(sys.executable, path, "flows.audit; import audioqc.cli; import prefect.server.api.server")
            for tree, path in trees.items()}
    for mod in mods:
        rows.append([mod] + [f"{cums[t].get(mod, float('nan')):.2f}" for t in trees])
    print_table(["module (imported alone would be less: shared imports count once)"] + list(trees), rows)
    return cums


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(header("bench_audit_timeline: where a small audit's time goes"), flush=True)
    src = args.samples.resolve()
    if not any(src.glob("*")):
        subprocess.run([sys.executable, str(REPO / "data" / "make_samples.py"), str(src)], check=True)
    tl = make_timeline(args, src)
    aq = default_audioqc()

    results: dict[str, dict[str, Any]] = {}
    started = False
    try:
        tl.warm_up()
        s = subprocess.run([aq, "server", "start", "--port", str(tl.port)], capture_output=True, text=True,
                           env=tl.server_env())
        if s.returncode != 0:
            print(f"'audioqc server start' failed: {s.stderr.strip()}")
            return 1
        started = True
        results = tl.run_all()
    finally:
        if started:
            subprocess.run([aq, "server", "stop"], capture_output=True, text=True, env=tl.server_env())

    print_timelines(results, src, args.cpus)
    cums = print_importtime(tl.trees)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"results": results, "importtime": cums}, indent=2, default=str) + "\n")
    shutil.rmtree(tl.tmp, ignore_errors=True)
    return 0 if all(r["returncode"] == 0 for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
