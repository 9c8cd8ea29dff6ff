"""What every benchmark script shares: the CPU it ran on, a launcher that measures a command's
wall time and exact peak RSS, the audioqc executable, and a plain-text table.

Every figure a benchmark prints names the CPU (:func:`cpu_model`: the ``lscpu`` model name and the
instruction-set level that decides which kernels run); this machine kind lands on different CPUs
(an AMD EPYC with AVX2 only, one with AVX-512, Intel with AMX), and a speed-up on one of them only
is not a speed-up for users.
"""

from __future__ import annotations

import json
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent


def cpu_flags() -> set[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def isa_level(flags: set[str] | None = None) -> str:
    """The instruction-set level the numeric kernels can use: AMX, AVX-512/VNNI, AVX-512, AVX2, SSE."""
    f = cpu_flags() if flags is None else flags
    if "amx_tile" in f:
        return "AMX"
    if "avx512f" in f:
        return "AVX-512/VNNI" if "avx512_vnni" in f else "AVX-512"
    if "avx2" in f:
        return "AVX2"
    return "SSE"


def cpu_model() -> str:
    """``<lscpu model name> (<ISA level>), <n> CPUs``."""
    model = platform.processor() or "unknown CPU"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
        model = fields.get("Model name", model).strip()
        if "CPU family" in fields and "Model" in fields:  # "AMD EPYC" alone does not say which EPYC
            model += f" family {fields['CPU family'].strip()} model {fields['Model'].strip()}"
    except (OSError, subprocess.CalledProcessError):
        pass
    import os

    return f"{model} ({isa_level()}), {os.cpu_count()} CPUs"


def commit() -> str:
    try:
        return subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def header(title: str) -> str:
    """The first line of a benchmark's output: what, where, when, which code."""
    return (f"{title}; CPU: {cpu_model()}; {time.strftime('%Y-%m-%d %H:%M')}; commit {commit()}; "
            f"python {platform.python_version()}")


LAUNCHER = r"""
import json, os, sys, time
out, err, cmd = sys.argv[1], sys.argv[2], sys.argv[3:]
fa = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
      (os.POSIX_SPAWN_OPEN, 1, out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
      (os.POSIX_SPAWN_OPEN, 2, err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)]
t0 = time.perf_counter()
try:
    pid = os.posix_spawnp(cmd[0], cmd, os.environ, file_actions=fa)
except OSError as exc:
    with open(err, "a") as fh:
        fh.write(f"cannot run {cmd[0]}: {exc}\n")
    print(json.dumps({"wall_s": 0.0, "returncode": 127, "user_s": 0.0, "sys_s": 0.0, "maxrss_kib": 0}))
    sys.exit(0)
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
print(json.dumps({"wall_s": wall, "returncode": os.waitstatus_to_exitcode(status),
                  "user_s": ru.ru_utime, "sys_s": ru.ru_stime, "maxrss_kib": ru.ru_maxrss}))
"""


def run_measured(cmd: list[str], tmpdir: Path, tag: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run cmd as a child of a tiny launcher that reaps it with os.wait4 (exact peak RSS); ``env``:
    its environment (default this process's; benchmarks/isa.py's limit the instruction set)."""
    out_path = tmpdir / f"{tag}.stdout"
    err_path = tmpdir / f"{tag}.stderr"
    launcher = subprocess.run([sys.executable, "-S", "-E", "-c", LAUNCHER, str(out_path), str(err_path), *cmd],
                              stdin=subprocess.DEVNULL, capture_output=True, text=True, env=env)
    if launcher.returncode != 0:
        raise RuntimeError(f"launcher failed for {cmd[0]}: {launcher.stderr.strip()[-500:]}")
    ru = json.loads(launcher.stdout)
    return {
        "cmd": cmd,
        "returncode": ru["returncode"],
        "wall_s": ru["wall_s"],
        "user_s": ru["user_s"],
        "sys_s": ru["sys_s"],
        "peak_rss_mb": ru["maxrss_kib"] / 1024.0,  # Linux: KiB
        "stdout": out_path.read_text(errors="replace"),
        "stderr": err_path.read_text(errors="replace"),
    }


def rss_floor_mb(tmpdir: Path) -> float:
    """Peak RSS reported for a trivial command: the measurement floor of the launcher."""
    return run_measured(["true"], tmpdir, "floor")["peak_rss_mb"]


def default_audioqc() -> str:
    for cand in (Path(sys.executable).parent / "audioqc", REPO / ".venv" / "bin" / "audioqc"):
        if cand.exists():
            return str(cand)
    return shutil.which("audioqc") or "audioqc"




def print_table(headers: list[str], rows: list[list[str]]) -> None:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    print("  ".join(h.rjust(w) if i else h.ljust(w) for i, (h, w) in enumerate(zip(headers, widths, strict=True))))
    print("  ".join("-" * w for w in widths))
    for r in rows:
        print("  ".join(c.rjust(w) if i else c.ljust(w) for i, (c, w) in enumerate(zip(r, widths, strict=False))))
