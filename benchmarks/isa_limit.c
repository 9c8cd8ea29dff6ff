/* An x86-64 CPU without AVX-512, VNNI, BF16 or AMX, as every library in a process sees it.
 *
 * Preloaded (LD_PRELOAD) into a process on a CPU that has those extensions, this library makes the
 * CPUID instruction fault (Linux's arch_prctl(ARCH_SET_CPUID, 0), on CPUs with CPUID faulting: the
 * "cpuid_fault" flag), executes each faulting CPUID itself, clears the feature bits of the
 * extensions above from its answer and returns to the instruction after it. Every runtime that
 * picks its kernels from CPUID (onnxruntime's MLAS, OpenVINO and its oneDNN, numpy, soxr, GCC's
 * target_clones in audiolib/_dsp.c) then picks what it would pick on an AVX2-only CPU such as the
 * AMD EPYC (Zen 2/3) machines of this project's machine kind. The instructions still run on the
 * host's cores, so timings are the host's micro-architecture running AVX2 code (benchmarks/isa.py
 * says so next to every figure). glibc reads CPUID before any preloaded library runs: its own
 * string functions are limited by GLIBC_TUNABLES instead (benchmarks/isa.py sets both).
 *
 * AQ_ISA_LIMIT (environment): "avx2" (the default: AVX2 and FMA, no AVX-512, no VNNI of any width,
 * no BF16, no AMX) or "avx512" (AVX-512 with VNNI and BF16, no AMX; a no-op on a CPU without AMX).
 *
 * Built and used by benchmarks/isa.py; not part of the package. */
#define _GNU_SOURCE
#include <asm/prctl.h>
#include <dlfcn.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <ucontext.h>
#include <unistd.h>

static int aq_level_avx512; /* 0: AVX2, 1: AVX-512 without AMX */
static struct sigaction aq_next; /* the program's own SIGSEGV handler, called for other faults */
static int aq_active;

static void aq_cpuid(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    __asm__ volatile("cpuid" : "=a"(r[0]), "=b"(r[1]), "=c"(r[2]), "=d"(r[3]) : "a"(leaf), "c"(sub));
}

static void aq_mask(uint32_t leaf, uint32_t sub, uint32_t r[4])
{
    if (leaf == 7 && sub == 0) {
        /* EDX: AMX-BF16 (22), AMX-TILE (24), AMX-INT8 (25) */
        r[3] &= ~((1u << 22) | (1u << 24) | (1u << 25));
        if (!aq_level_avx512) {
            /* EBX: AVX512F (16), DQ (17), IFMA (21), PF (26), ER (27), CD (28), BW (30), VL (31) */
            r[1] &= ~((1u << 16) | (1u << 17) | (1u << 21) | (1u << 26) | (1u << 27) | (1u << 28) | (1u << 30) |
                      (1u << 31));
            /* ECX: VBMI (1), VBMI2 (6), GFNI (8), VNNI (11), BITALG (12), VPOPCNTDQ (14) */
            r[2] &= ~((1u << 1) | (1u << 6) | (1u << 8) | (1u << 11) | (1u << 12) | (1u << 14));
            /* EDX: 4VNNIW (2), 4FMAPS (3), VP2INTERSECT (8), AVX512-FP16 (23) */
            r[3] &= ~((1u << 2) | (1u << 3) | (1u << 8) | (1u << 23));
        }
    } else if (leaf == 7 && sub == 1) {
        /* EAX: AVX-VNNI (4), AVX512-BF16 (5), AMX-FP16 (21), AVX-IFMA (23); EDX: AVX-VNNI-INT8 (4) */
        if (!aq_level_avx512)
            r[0] &= ~((1u << 4) | (1u << 5) | (1u << 23));
        r[0] &= ~(1u << 21);
        if (!aq_level_avx512)
            r[3] &= ~(1u << 4);
    } else if (leaf == 0xd && sub == 0 && !aq_level_avx512) {
        /* XSAVE state components: no opmask/ZMM (5-7), no AMX tiles (17-18) */
        r[0] &= ~((1u << 5) | (1u << 6) | (1u << 7) | (1u << 17) | (1u << 18));
    } else if (leaf == 0xd && sub == 0) {
        r[0] &= ~((1u << 17) | (1u << 18));
    }
}

static void aq_handler(int sig, siginfo_t *info, void *vctx)
{
    ucontext_t *ctx = (ucontext_t *)vctx;
    greg_t *g = ctx->uc_mcontext.gregs;
    const unsigned char *ip = (const unsigned char *)g[REG_RIP];
    if (ip && ip[0] == 0x0f && ip[1] == 0xa2) {
        uint32_t r[4];
        uint32_t leaf = (uint32_t)g[REG_RAX], sub = (uint32_t)g[REG_RCX];
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 1);
        aq_cpuid(leaf, sub, r);
        syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0);
        aq_mask(leaf, sub, r);
        g[REG_RAX] = r[0];
        g[REG_RBX] = r[1];
        g[REG_RCX] = r[2];
        g[REG_RDX] = r[3];
        g[REG_RIP] += 2;
        return;
    }
    /* not ours: the program's handler, or the default action */
    if (aq_next.sa_flags & SA_SIGINFO) {
        if (aq_next.sa_sigaction) {
            aq_next.sa_sigaction(sig, info, vctx);
            return;
        }
    } else if (aq_next.sa_handler != SIG_DFL && aq_next.sa_handler != SIG_IGN) {
        aq_next.sa_handler(sig);
        return;
    }
    signal(SIGSEGV, SIG_DFL);
    raise(SIGSEGV);
}

typedef int (*aq_sigaction_fn)(int, const struct sigaction *, struct sigaction *);

/* The program's sigaction(SIGSEGV, ...) is recorded as the handler to chain to; ours stays installed. */
int sigaction(int sig, const struct sigaction *act, struct sigaction *old)
{
    static aq_sigaction_fn real;
    if (!real)
        real = (aq_sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    if (sig == SIGSEGV && aq_active) {
        if (old)
            *old = aq_next;
        if (act)
            aq_next = *act;
        return 0;
    }
    return real(sig, act, old);
}

__attribute__((constructor)) static void aq_init(void)
{
    const char *level = getenv("AQ_ISA_LIMIT");
    aq_level_avx512 = level && strcmp(level, "avx512") == 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = aq_handler;
    sa.sa_flags = SA_SIGINFO | SA_NODEFER;
    sigemptyset(&sa.sa_mask);
    aq_sigaction_fn real = (aq_sigaction_fn)dlsym(RTLD_NEXT, "sigaction");
    if (real(SIGSEGV, &sa, NULL) != 0)
        return;
    if (syscall(SYS_arch_prctl, ARCH_SET_CPUID, 0) != 0)
        return; /* no CPUID faulting: nothing is limited (benchmarks/isa.py checks) */
    aq_active = 1;
}
