"""Run a benchmark's commands as on a CPU with fewer instruction-set extensions than this one.

This machine kind lands on different CPUs: an AMD EPYC with AVX2 alone (Zen 2/3), one with
AVX-512 and VNNI (Zen 4), Intel with AMX. A speed figure for one of them says little about the
others, and the one a session gets cannot be chosen. :func:`env` gives the environment that makes
a child process see a lesser CPU:

``avx2``
    ``benchmarks/isa_limit.c`` preloaded (``LD_PRELOAD``): CPUID faults (Linux's CPUID faulting),
    is executed by the library and answered without AVX-512, VNNI (any width), BF16 and AMX, so
    onnxruntime's MLAS, OpenVINO's oneDNN (its own ``ONEDNN_MAX_CPU_ISA`` is set to ``AVX2`` as
    well), numpy, soxr and the C kernels' clones all pick their AVX2 code. glibc reads CPUID before
    the library loads; ``GLIBC_TUNABLES`` limits its string functions. onnxruntime has no setting
    of its own for this: its MLAS picks kernels from CPUID alone.
``avx512``
    the same without AMX (AVX-512 with VNNI and BF16 stays): a no-op on a CPU without AMX.
``native``
    nothing changed.

What is emulated is the choice of kernels, not the CPU: the instructions run on this machine's
cores, so an ``avx2`` figure is this CPU's micro-architecture running AVX2 code. On the Zen 4 EPYC
of 2026-12-07 (family 25 model 17) its AVX2 int8 kernels ran ~1.6x faster than issue 19's AVX2-only
EPYC (0.19 against 0.30 s a window of the whole int8 DNSMOS model); docs/perceptual-speed.md gives
both. :func:`check` confirms that a child sees the level asked for (``audiolib.cpu.isa_level``, read from CPUID).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SOURCE = HERE / "isa_limit.c"
LEVELS = ("native", "avx2", "avx512")
#: What audiolib.cpu.isa_level() reports in a child limited to each level (native: whatever it is).
EXPECTED = {"avx2": "AVX2", "avx512": "AVX-512/VNNI"}
_GLIBC_NO_AVX512 = "glibc.cpu.hwcaps=-AVX512F,-AVX512VL,-AVX512BW,-AVX512DQ,-AVX512CD,-AVX512ER,-AVX512PF"


def library(workdir: Path = HERE / "out") -> Path:
    """``isa_limit.c`` built into ``workdir`` (again when the source is newer)."""
    out = workdir / "isa_limit.so"
    if not out.exists() or out.stat().st_mtime < SOURCE.stat().st_mtime:
        cc = shutil.which("cc") or shutil.which("gcc")
        if cc is None:
            raise RuntimeError("a C compiler is needed to build benchmarks/isa_limit.c")
        workdir.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".tmp.so")
        subprocess.run([cc, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(SOURCE), "-ldl"], check=True)
        tmp.replace(out)
    return out


def env(level: str, base: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of a child process limited to ``level`` (one of :data:`LEVELS`)."""
    if level not in LEVELS:
        raise ValueError(f"level {level!r}: one of {', '.join(LEVELS)}")
    e = dict(os.environ if base is None else base)
    if level == "native":
        return e
    e["LD_PRELOAD"] = str(library())
    e["AQ_ISA_LIMIT"] = level
    if level == "avx2":
        e["ONEDNN_MAX_CPU_ISA"] = "AVX2"
        e["GLIBC_TUNABLES"] = _GLIBC_NO_AVX512
    else:
        e["ONEDNN_MAX_CPU_ISA"] = "AVX512_CORE_BF16"
    return e


def seen_level(level: str) -> str:
    """``audiolib.cpu.isa_level()`` as a child limited to ``level`` sees it."""
    code = "from audiolib.cpu import isa_level; print(isa_level())"
    out = subprocess.run([sys.executable, "-c", code], env=env(level), capture_output=True, text=True,
                         cwd=str(HERE.parent), check=True)
    return out.stdout.strip()


def check(level: str) -> str:
    """:func:`seen_level`, or RuntimeError when the limit did not take (no CPUID faulting here)."""
    seen = seen_level(level)
    want = EXPECTED.get(level)
    if want is not None and seen != want and not (level == "avx512" and seen in ("AVX2", "AVX-512")):
        raise RuntimeError(f"a child limited to {level} sees {seen}: CPUID faulting is not available here")
    return seen


def describe(level: str) -> str:
    """One line for a benchmark's header: what the runs see and how."""
    seen = check(level)
    if level == "native":
        return f"runs at this CPU's own level ({seen})"
    return (f"runs limited to {seen} (emulated: CPUID masked by benchmarks/isa_limit.c, ONEDNN_MAX_CPU_ISA; "
            f"this CPU's cores run the {seen} code)")
