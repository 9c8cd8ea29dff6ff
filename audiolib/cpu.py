"""The CPU's instruction-set level as this process sees it (CPUID through ``aq_cpu_features`` in
``_dsp.c``), which decides the kernels every runtime here picks: OpenVINO's oneDNN, onnxruntime's
MLAS, numpy, the C kernels' clones. Read from CPUID, not from /proc/cpuinfo, so that a process
whose CPUID is limited (``benchmarks/isa_limit.c``, the AVX2 emulation of the benchmarks) sees the
level it runs at.
"""

from __future__ import annotations

from functools import lru_cache

#: Levels, best first: AMX (tiles with int8), AVX-512 with VNNI, AVX-512, AVX2 (with FMA), SSE.
ISA_LEVELS = ("AMX", "AVX-512/VNNI", "AVX-512", "AVX2", "SSE")


@lru_cache(maxsize=1)
def cpu_features() -> dict[str, bool]:
    """``{"avx2", "avx512", "avx512_vnni", "avx512_bf16", "amx", "avx_vnni"}``: what CPUID reports
    and the OS has enabled."""
    from ._kernels import _lib

    bits = int(_lib.aq_cpu_features())
    return {name: bool(bits >> i & 1) for i, name in enumerate(("avx2", "avx512", "avx512_vnni", "avx512_bf16",
                                                                "amx", "avx_vnni"))}


def isa_level(features: dict[str, bool] | None = None) -> str:
    """One of :data:`ISA_LEVELS`."""
    f = cpu_features() if features is None else features
    if f.get("amx"):
        return "AMX"
    if f.get("avx512"):
        return "AVX-512/VNNI" if f.get("avx512_vnni") else "AVX-512"
    return "AVX2" if f.get("avx2") else "SSE"
