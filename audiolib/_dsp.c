/*
 * Per-sample inner loops of the streaming analyzers, in plain C (called through ctypes from
 * audiolib/_kernels.py). They hold no state of their own: callers pass the filter state in and
 * get it back. Built as a CPython extension module only so that pip compiles it; the Python
 * module object itself is empty.
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/*
 * The hot loops are compiled for three x86-64 levels (baseline, v3 = AVX2 + FMA, v4 = AVX-512)
 * and the best one the CPU has is picked when the library loads (GCC's target_clones, an ifunc):
 * the wheel or editable build stays portable, and the true-peak interpolator runs 16 lanes wide
 * where it can. With -ffp-contract=fast (setup.py) the v3/v4 clones fuse multiply-adds, which
 * changes results in the last bits only (the K-weighted power within 1e-9 relative; tests), and
 * shortens the K-weighting's recursion. Elsewhere (other compilers, CPUs, or C libraries without
 * glibc's ifunc) the loops are compiled once, as before; -DAQ_NO_CLONES does the same
 * (tests/test_kernels.py builds the baseline that way and checks it against the installed build).
 */
#if !defined(AQ_NO_CLONES) && defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && defined(__GLIBC__) && __GNUC__ >= 11
#define AQ_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define AQ_CLONES
#endif

#if defined(__SSE__) || defined(__x86_64__)
#include <xmmintrin.h>
#include <pmmintrin.h>
#define AQ_FTZ_SAVE unsigned int aq_csr = _mm_getcsr(); _mm_setcsr(aq_csr | 0x8040);
#define AQ_FTZ_RESTORE _mm_setcsr(aq_csr);
#else
#define AQ_FTZ_SAVE
#define AQ_FTZ_RESTORE
#endif

typedef double aq_v2d __attribute__((vector_size(16)));

/* One K-weighting step (two biquads, transposed direct form II) of one channel (T double) or of
 * two (T aq_v2d). */
/* The parts that do not depend on this sample's outputs are added first ((b11 v + s11) - a11 y1),
 * so the recursion s10 -> y1 -> s10 is one add and one multiply-subtract long (fused where the
 * CPU has FMA): the loop is bound by that latency, not by its arithmetic. */
#define AQ_KSTEP(T, v, y2, s10, s11, s20, s21)              \
    do {                                                    \
        const T y1_ = b10 * (v) + s10;                      \
        s10 = (b11 * (v) + s11) - a11 * y1_;                \
        s11 = b12 * (v) - a12 * y1_;                        \
        y2 = b20 * y1_ + s20;                               \
        s20 = (b21 * y1_ + s21) - a21 * y2;                 \
        s21 = b22 * y1_ - a22 * y2;                         \
    } while (0)

/*
 * K-weight every channel (BS.1770-4 Annex 1: two biquads, float64) and accumulate the
 * channel-weighted power sum_i G_i * y_i[n]^2 into out[n] (BS.1770-4 eq. 2 before the mean).
 * x: channels x n float32, row stride `stride` samples. sos: 2 x 6. state: channels x 2 x 2.
 * Channels are filtered two at a time, as the two lanes of a vector (GCC's vector extensions:
 * SSE2 on any x86-64), so one instruction stream filters both.
 * Subnormal numbers are flushed to zero while it runs: after sound stops the filter state decays
 * into them, and they made every later sample ~35x slower (they are below -600 dB).
 */
AQ_CLONES int aq_kweighted_power(const float *x, int64_t nch, int64_t n, int64_t stride, const double *sos,
                       double *state, const double *weights, double *out)
{
    AQ_FTZ_SAVE
    for (int64_t i = 0; i < n; i++) out[i] = 0.0;
    const double b10 = sos[0], b11 = sos[1], b12 = sos[2], a11 = sos[4], a12 = sos[5];
    const double b20 = sos[6], b21 = sos[7], b22 = sos[8], a21 = sos[10], a22 = sos[11];
    int64_t *active = (int64_t *)malloc(sizeof(int64_t) * (size_t)(nch > 0 ? nch : 1));
    if (!active) { AQ_FTZ_RESTORE return -1; }
    int64_t na = 0;
    for (int64_t c = 0; c < nch; c++) {
        if (weights[c] != 0.0) active[na++] = c;
    }
    for (int64_t k = 0; k + 1 < na; k += 2) {
        /* two channels as the two lanes of one vector: every operation filters both */
        const int64_t c = active[k], d = active[k + 1];
        const aq_v2d g = {weights[c], weights[d]};
        const float *xc = x + c * stride, *xd = x + d * stride;
        double *sc = state + 4 * c, *sd = state + 4 * d;
        aq_v2d s10 = {sc[0], sd[0]}, s11 = {sc[1], sd[1]}, s20 = {sc[2], sd[2]}, s21 = {sc[3], sd[3]};
        for (int64_t i = 0; i < n; i++) {
            aq_v2d y;
            const aq_v2d v = {(double)xc[i], (double)xd[i]};
            AQ_KSTEP(aq_v2d, v, y, s10, s11, s20, s21);
            const aq_v2d q = g * y * y;
            out[i] += q[0] + q[1];
        }
        sc[0] = s10[0]; sc[1] = s11[0]; sc[2] = s20[0]; sc[3] = s21[0];
        sd[0] = s10[1]; sd[1] = s11[1]; sd[2] = s20[1]; sd[3] = s21[1];
    }
    if (na % 2 == 1) {
        const int64_t c = active[na - 1];
        const double g = weights[c];
        const float *xc = x + c * stride;
        double *st = state + 4 * c;
        double s10 = st[0], s11 = st[1], s20 = st[2], s21 = st[3];
        for (int64_t i = 0; i < n; i++) {
            double y;
            const double v = (double)xc[i];
            AQ_KSTEP(double, v, y, s10, s11, s20, s21);
            out[i] += g * y * y;
        }
        st[0] = s10; st[1] = s11; st[2] = s20; st[3] = s21;
    }
    free(active);
    AQ_FTZ_RESTORE
    return 0;
}

/* max |sum_k taps[p][k] * x[i + k]| over the nph phases and lo <= i < hi, NT taps per phase (12 or
 * 24, the taps held in registers). The maximum is taken over the bit patterns of the absolute
 * values (for finite floats >= 0 their order as unsigned integers is their numeric order; the
 * callers pass finite samples), which the compiler vectorises across i, where a float maximum it
 * would not. */
static inline float aq_abs_bits_max_to_float(uint32_t bits)
{
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint32_t aq_abs_bits(float v)
{
    uint32_t bits;
    memcpy(&bits, &v, sizeof bits);
    return bits & 0x7fffffffu;
}

#define AQ_PHASE_MAX_LOOP(NT)                                                           \
    do {                                                                                \
        for (int64_t p = 0; p < nph; p++) {                                             \
            float h[NT];                                                                \
            for (int k = 0; k < (NT); k++) h[k] = taps[(NT) * p + k];                   \
            for (int64_t i = lo; i < hi; i++) {                                         \
                const float *s = x + i;                                                 \
                float acc = 0.0f;                                                       \
                _Pragma("GCC unroll 24")                                                \
                for (int k = 0; k < (NT); k++) acc += s[k] * h[k];                      \
                const uint32_t b = aq_abs_bits(acc);                                    \
                m = b > m ? b : m;                                                      \
            }                                                                           \
        }                                                                               \
    } while (0)

AQ_CLONES static float phase_max(const float *x, int64_t lo, int64_t hi, const float *taps, int64_t nph,
                                 int64_t ntap)
{
    uint32_t m = 0;
    if (ntap == 24) AQ_PHASE_MAX_LOOP(24);
    else AQ_PHASE_MAX_LOOP(12);
    return aq_abs_bits_max_to_float(m);
}

/* Over x[lo .. hi - 1]: the largest |x[k]| (*peak) and the largest second difference
 * |x[k - 1] - 2 x[k] + x[k + 1]| for lo < k < hi - 1 (*d2), in one vectorised pass (as bits). */
AQ_CLONES static void peak_and_d2(const float *x, int64_t lo, int64_t hi, float *peak, float *d2)
{
    uint32_t mp = aq_abs_bits(x[lo]) > aq_abs_bits(x[hi - 1]) ? aq_abs_bits(x[lo]) : aq_abs_bits(x[hi - 1]);
    uint32_t md = 0;
    for (int64_t k = lo + 1; k < hi - 1; k++) {
        const uint32_t a = aq_abs_bits(x[k]);
        const uint32_t d = aq_abs_bits((x[k - 1] + x[k + 1]) - 2.0f * x[k]);
        mp = a > mp ? a : mp;
        md = d > md ? d : md;
    }
    *peak = aq_abs_bits_max_to_float(mp);
    *d2 = aq_abs_bits_max_to_float(md);
}

typedef struct { float bound; int64_t index; } chunk_bound;

static int by_bound_desc(const void *a, const void *b)
{
    const float pa = ((const chunk_bound *)a)->bound, pb = ((const chunk_bound *)b)->bound;
    return (pa < pb) - (pa > pb);
}

/*
 * Largest absolute interpolated sample of a polyphase interpolator (nph phases of ntap = 12 or 24
 * correlation taps: phase p of window i is sum_k taps[p][k] x[i + k]) over x (n samples, the first
 * ntap - 1 being history), at least `floor`. Returns -1 if out of memory.
 *
 * Chunks of `chunk` windows that cannot beat the running maximum are skipped, exactly: over a
 * chunk's samples (with the ntap - 1 margin) with peak P and largest second difference D, no
 * interpolated value exceeds min(bound_gain * P, bound_lin * P + bound_d2 * D), where bound_gain
 * is the largest sum |taps| of a phase and bound_lin, bound_d2 come from writing each phase as
 * a two-tap interpolation between the middle samples (tap sum at most bound_lin) plus a filter of
 * second differences (taps summing in absolute value to at most bound_d2): see
 * audiolib.loudness.true_peak_taps. The second bound is what makes skipping work on programme:
 * where the signal is smooth at the sample rate (most of its energy well below Nyquist), D is
 * small and the bound is a few percent over the sample peak. Chunks are visited from the largest
 * bound down, and the scan stops at the first that cannot beat the maximum found.
 */
AQ_CLONES float aq_true_peak_max(const float *x, int64_t n, const float *taps, int64_t nph, int64_t ntap,
                                 float bound_gain, float bound_lin, float bound_d2, float floor, int64_t chunk)
{
    const int64_t n_out = n - ntap + 1;
    if (n_out <= 0 || (ntap != 12 && ntap != 24)) return floor;
    const int64_t nchunks = (n_out + chunk - 1) / chunk;
    chunk_bound *bounds = (chunk_bound *)malloc(sizeof(chunk_bound) * (size_t)nchunks);
    if (!bounds) return -1.0f;
    int64_t live = 0;
    for (int64_t j = 0; j < nchunks; j++) {
        const int64_t lo = j * chunk;
        const int64_t hi = (lo + chunk < n_out ? lo + chunk : n_out) + ntap - 1;
        float p, d;
        peak_and_d2(x, lo, hi, &p, &d);
        const float g = bound_gain * p, s = bound_lin * p + bound_d2 * d;
        const float b = g < s ? g : s;
        if (b <= floor) continue; /* cannot beat even the floor */
        bounds[live].bound = b;
        bounds[live].index = j;
        live++;
    }
    qsort(bounds, (size_t)live, sizeof(chunk_bound), by_bound_desc);
    float best = floor;
    for (int64_t jj = 0; jj < live; jj++) {
        if (bounds[jj].bound <= best) break;
        const int64_t lo = bounds[jj].index * chunk;
        const int64_t hi = lo + chunk < n_out ? lo + chunk : n_out;
        const float m = phase_max(x, lo, hi, taps, nph, ntap);
        best = m > best ? m : best;
    }
    free(bounds);
    return best;
}

/*
 * Second-order sections in float32 (transposed direct form II, a0 = 1; the form and precision of
 * scipy.signal.sosfilt on float32 input): x (n samples) through nsec sections sos (nsec x 6,
 * [b0 b1 b2 1 a1 a2]) into out, zi (nsec x 2) the state, updated in place. Sample by sample, every
 * section in turn; the sections' recursions overlap. Subnormals are flushed while it runs (the
 * state of a filter fed digital silence decays into them).
 */
AQ_CLONES void aq_sosfilt_f32(const float *x, int64_t n, const float *sos, int64_t nsec, float *zi, float *out)
{
    AQ_FTZ_SAVE
    if (nsec == 2) { /* the common case, unrolled: both sections in registers */
        const float b00 = sos[0], b01 = sos[1], b02 = sos[2], a01 = sos[4], a02 = sos[5];
        const float b10 = sos[6], b11 = sos[7], b12 = sos[8], a11 = sos[10], a12 = sos[11];
        float z00 = zi[0], z01 = zi[1], z10 = zi[2], z11 = zi[3];
        for (int64_t i = 0; i < n; i++) {
            const float v = x[i];
            const float y0 = b00 * v + z00;
            z00 = (b01 * v + z01) - a01 * y0;
            z01 = b02 * v - a02 * y0;
            const float y1 = b10 * y0 + z10;
            z10 = (b11 * y0 + z11) - a11 * y1;
            z11 = b12 * y0 - a12 * y1;
            out[i] = y1;
        }
        zi[0] = z00; zi[1] = z01; zi[2] = z10; zi[3] = z11;
    } else {
        for (int64_t i = 0; i < n; i++) {
            float v = x[i];
            for (int64_t s = 0; s < nsec; s++) {
                const float *c = sos + 6 * s;
                float *z = zi + 2 * s;
                const float y = c[0] * v + z[0];
                z[0] = (c[1] * v + z[1]) - c[4] * y;
                z[1] = c[2] * v - c[5] * y;
                v = y;
            }
            out[i] = v;
        }
    }
    AQ_FTZ_RESTORE
}

/*
 * Track the largest sum of wa and of wb consecutive values of a stream (the momentary and
 * short-term windows), at every sample, in one pass over it. Each window has its state
 * [position, samples seen, running sum, best sum, sum since the position was last 0] (updated in
 * place) and ring (its last window). A running sum is replaced by the exact sum of its window each
 * time its ring wraps, so rounding cannot drift. That exact sum (the window's values added in
 * order, from 0.0) is accumulated as the values arrive, a third and fourth chain of additions
 * beside the two running sums: summed at the wrap instead, its serial additions stalled the loop
 * (~6 of its ~12 cycles a sample); the four independent chains run in the latency of one. The
 * additions are the same, in the same order: the results are those of summing at the wrap.
 */
#define AQ_WINDOW_STEP(p, ring, w, pos, s, t)                           \
    do {                                                                \
        s += (p) - ring[pos];                                           \
        ring[pos] = (p);                                                \
        t += (p);                                                       \
        if (++pos == w) {                                               \
            pos = 0;                                                    \
            s = t;                                                      \
            t = 0.0;                                                    \
        }                                                               \
    } while (0)

void aq_sliding_sum_max2(const double *power, int64_t n, double *ring_a, int64_t wa, double *state_a,
                         double *ring_b, int64_t wb, double *state_b)
{
    int64_t pa = (int64_t)state_a[0], pb = (int64_t)state_b[0];
    double seen = state_a[1], sa = state_a[2], best_a = state_a[3], sb = state_b[2], best_b = state_b[3];
    double ta = state_a[4], tb = state_b[4];
    const double fa = (double)wa, fb = (double)wb;
    for (int64_t i = 0; i < n; i++) {
        const double p = power[i];
        AQ_WINDOW_STEP(p, ring_a, wa, pa, sa, ta);
        AQ_WINDOW_STEP(p, ring_b, wb, pb, sb, tb);
        seen += 1.0;
        if (seen >= fa && sa > best_a) best_a = sa;
        if (seen >= fb && sb > best_b) best_b = sb;
    }
    state_a[0] = (double)pa; state_a[1] = seen; state_a[2] = sa; state_a[3] = best_a; state_a[4] = ta;
    state_b[0] = (double)pb; state_b[1] = seen; state_b[2] = sb; state_b[3] = best_b; state_b[4] = tb;
}

/*
 * Where a per-sample condition changes along a block: writes the indices i (1 <= i < n) at which
 * the condition of sample i differs from that of sample i - 1 into out, returns their number,
 * and the condition of the first and last samples in *first / *last. Conditions (mode):
 *   0: every channel |x| < thr        (silence, all channels; one channel when nch = 1)
 *   1: |mean of the channels| < thr   (silence of the mono downmix)
 *   2: |x| >= thr                     (at full scale; nch = 1)
 *   3: |x| > thr                      (beyond full scale; nch = 1)
 * x: nch rows of n float32, row stride `stride`. out must hold n - 1 indices.
 */
/* One loop per condition, so each compiles to a tight loop. Blocks of AQ_BLOCK samples are first
 * counted with a branch-free sum (which the compiler vectorises); a block whose count says every
 * sample keeps the previous condition holds no change and is skipped, and only the others are
 * scanned sample by sample. Worth it where changes are rare (clipping: samples at full scale);
 * where they are dense (quiet samples at every zero crossing) aq_long_runs is the kernel. */
#define AQ_BLOCK 512
#define AQ_TRANSITION_LOOP(COND)                                                    \
    do {                                                                            \
        int prev = (COND(0));                                                       \
        *first = (int8_t)prev;                                                      \
        for (int64_t b = 1; b < n; b += AQ_BLOCK) {                                 \
            const int64_t e = b + AQ_BLOCK < n ? b + AQ_BLOCK : n;                  \
            int64_t set = 0;                                                        \
            for (int64_t i = b; i < e; i++) set += (COND(i));                       \
            if (set == (prev ? e - b : 0)) continue;                                \
            for (int64_t i = b; i < e; i++) {                                       \
                const int cond = (COND(i));                                         \
                if (cond != prev) { out[count++] = i; prev = cond; }                \
            }                                                                       \
        }                                                                           \
        *last = (int8_t)prev;                                                       \
    } while (0)

static inline int all_below(const float *x, int64_t nch, int64_t stride, int64_t i, float thr)
{
    int cond = 1;
    for (int64_t c = 0; c < nch; c++) cond &= fabsf(x[c * stride + i]) < thr;
    return cond;
}

static inline int mean_below(const float *x, int64_t nch, int64_t stride, int64_t i, float thr, float inv)
{
    float sum = 0.0f;
    for (int64_t c = 0; c < nch; c++) sum += x[c * stride + i];
    return fabsf(sum * inv) < thr;
}

int64_t aq_transitions(const float *x, int64_t nch, int64_t n, int64_t stride, float thr, int mode,
                       int8_t *first, int8_t *last, int64_t *out)
{
    int64_t count = 0;
    const float inv = 1.0f / (float)nch;
    if (n <= 0) { *first = *last = 0; return 0; }
#define C_ALL(i) all_below(x, nch, stride, (i), thr)
#define C_ONE(i) (fabsf(x[(i)]) < thr)
#define C_MEAN(i) mean_below(x, nch, stride, (i), thr, inv)
#define C_AT(i) (fabsf(x[(i)]) >= thr)
#define C_OVER(i) (fabsf(x[(i)]) > thr)
/* LOOP specialised for the condition of `mode` (one compiled loop per condition). */
#define AQ_BY_MODE(LOOP)                                    \
    do {                                                    \
        if (mode == 0 && nch == 1) LOOP(C_ONE);             \
        else if (mode == 0) LOOP(C_ALL);                    \
        else if (mode == 1) LOOP(C_MEAN);                   \
        else if (mode == 2) LOOP(C_AT);                     \
        else LOOP(C_OVER);                                  \
    } while (0)
    AQ_BY_MODE(AQ_TRANSITION_LOOP);
    return count;
}

/*
 * Like aq_transitions, but only for the runs of samples meeting the condition that are at least
 * min_len samples long or touch the block's first or last sample (which may continue into the
 * neighbouring block): the condition of every sample of a shorter run inside the block is taken
 * as false. A consumer that drops runs shorter than min_len (RunTracker) gets the same runs, and
 * a sample stream whose condition changes at every zero crossing (quiet samples of loud audio)
 * is probed instead of scanned: a run of min_len or more samples holds a multiple of min_len, so
 * the condition is evaluated there only, and a run is followed sample by sample from a probe that
 * meets it. Cost: n / min_len probes, plus the samples of the runs met (short runs cost at most
 * their length once).
 */
#define AQ_LONG_RUNS(COND)                                                                  \
    do {                                                                                    \
        const int64_t step = min_len > 1 ? min_len : 1;                                     \
        int64_t next = 0; /* no run starts before this sample (end of the last run met) */  \
        *first = (int8_t)(COND(0));                                                         \
        *last = (int8_t)(COND(n - 1));                                                      \
        if (*first) {                                                                       \
            int64_t b = 1;                                                                  \
            while (b < n && (COND(b))) b++;                                                 \
            if (b < n) out[count++] = b;                                                    \
            next = b;                                                                       \
        }                                                                                   \
        for (int64_t p = (next + step - 1) / step * step; p < n; ) {                        \
            if (!(COND(p))) { p += step; continue; }                                        \
            int64_t a = p, b = p + 1;                                                       \
            while (a > next && (COND(a - 1))) a--;                                          \
            while (b < n && (COND(b))) b++;                                                 \
            if (b - a >= min_len || b == n) {                                               \
                out[count++] = a;                                                           \
                if (b < n) out[count++] = b;                                                \
            }                                                                               \
            next = b;                                                                       \
            p = (b + step - 1) / step * step;                                               \
        }                                                                                   \
        if (*last && next < n) { /* a run at the end shorter than a step, never probed */   \
            int64_t a = n - 1;                                                              \
            while (a > next && (COND(a - 1))) a--;                                          \
            out[count++] = a;                                                               \
        }                                                                                   \
    } while (0)

int64_t aq_long_runs(const float *x, int64_t nch, int64_t n, int64_t stride, float thr, int mode,
                     int64_t min_len, int8_t *first, int8_t *last, int64_t *out)
{
    int64_t count = 0;
    const float inv = 1.0f / (float)nch;
    if (n <= 0) { *first = *last = 0; return 0; }
    AQ_BY_MODE(AQ_LONG_RUNS);
    return count;
}

/*
 * True-peak limiter (audiolib/normalize.py): detection, gain computer and smoothing.
 */

/* Interval peaks of a linked (all channels) oversampled signal, for the limiter's detector.
 * x: nch rows, row stride `stride`, samples start..start+n of each row. Window i (0 <= i <
 * n - ntap + 1, ntap = 12 or 24) covers x[i .. i + ntap - 1]; with h = ntap / 2 its interval is the
 * one between x[i + h - 1] and x[i + h], and its peak the largest absolute value over every channel
 * of those two samples and of the nph interpolated values sum_k taps[p][k] x[i + k] (the phases
 * place their values inside the interval). out[i] receives it (the larger of it and out[i] with
 * `accumulate`, so two sets of phases can share out). Only values above `thresh` matter to the
 * caller: chunks of `chunk` windows whose sample peak times bound_gain (max over phases of
 * sum |taps|, at least 1) cannot exceed `thresh` are not interpolated, and get 0 (are left as they
 * are with `accumulate`): a signal far under the limiter's threshold costs one scan. */
#define AQ_TP_PHASE_LOOP(NT)                                                            \
    do {                                                                                \
        for (int64_t i = lo; i < hi; i++) {                                             \
            const float *s_ = xc + i;                                                   \
            float acc = 0.0f;                                                           \
            _Pragma("GCC unroll 24")                                                    \
            for (int k = 0; k < (NT); k++) acc += s_[k] * h[k];                         \
            const float a_ = fabsf(acc);                                                \
            out[i] = a_ > out[i] ? a_ : out[i];                                         \
        }                                                                               \
    } while (0)

AQ_CLONES void aq_tp_intervals(const float *x, int64_t nch, int64_t stride, int64_t start, int64_t n,
                               const float *taps, int64_t nph, int64_t ntap, float bound_gain, float thresh,
                               int64_t chunk, int accumulate, float *out)
{
    const int64_t n_out = n - ntap + 1, half = ntap / 2;
    if (n_out <= 0 || (ntap != 12 && ntap != 24)) return;
    for (int64_t lo = 0; lo < n_out; lo += chunk) {
        const int64_t hi = lo + chunk < n_out ? lo + chunk : n_out;
        uint32_t mb = 0; /* max |x| over the chunk's windows, as bits (vectorises; see phase_max) */
        for (int64_t c = 0; c < nch; c++) {
            const float *xc = x + c * stride + start;
            for (int64_t i = lo; i < hi + ntap - 1; i++) {
                uint32_t bits;
                memcpy(&bits, xc + i, sizeof bits);
                bits &= 0x7fffffffu;
                mb = bits > mb ? bits : mb;
            }
        }
        if (aq_abs_bits_max_to_float(mb) * bound_gain <= thresh) {
            if (!accumulate) for (int64_t i = lo; i < hi; i++) out[i] = 0.0f;
            continue;
        }
        if (!accumulate) for (int64_t i = lo; i < hi; i++) out[i] = 0.0f;
        for (int64_t c = 0; c < nch; c++) {
            const float *xc = x + c * stride + start;
            for (int64_t i = lo; i < hi; i++) {
                const float a = fabsf(xc[i + half - 1]), b = fabsf(xc[i + half]);
                const float s = a > b ? a : b;
                out[i] = s > out[i] ? s : out[i];
            }
            for (int64_t p = 0; p < nph; p++) {
                const float *h = taps + ntap * p;
                if (ntap == 12) AQ_TP_PHASE_LOOP(12);
                else AQ_TP_PHASE_LOOP(24);
            }
        }
    }
}

/*
 * The limiter's gain envelope: hold, then release. r (n values) is the gain each sample needs
 * (<= 1), the first L - 1 being history (the values before the first new position). For each new
 * position j (L - 1 <= j < n): M = min(r[j - L + 1 .. j]) (the need of any sample up to L - 1
 * ahead, held for L samples: a running minimum over a monotonic deque, O(1) per sample), then
 * env = min(M, M + coef * (env_prev - M)): down at once, back up towards M exponentially
 * (coef = exp(-1 / release samples)); within `snap` of 1 it is 1, so the gain returns exactly to
 * unity. env[j - L + 1] receives it; returns the last env. ws: L int64 of workspace.
 */
double aq_limiter_envelope(const double *r, int64_t n, int64_t L, double coef, double env_prev, double snap,
                           double *env, int64_t *ws)
{
    int64_t head = 0, count = 0; /* deque of indices into r (ring of L), values increasing from head */
    for (int64_t j = 0; j < n; j++) {
        const double v = r[j];
        if (count > 0 && ws[head] <= j - L) { head = head + 1 == L ? 0 : head + 1; count--; }
        while (count > 0) {
            int64_t back = head + count - 1;
            if (back >= L) back -= L;
            if (r[ws[back]] < v) break;
            count--;
        }
        int64_t slot = head + count;
        if (slot >= L) slot -= L;
        ws[slot] = j;
        count++;
        if (j < L - 1) continue;
        const double m = r[ws[head]];
        double e = m + coef * (env_prev - m);
        e = e < m ? e : m;
        if (e > 1.0 - snap) e = 1.0;
        env[j - L + 1] = e;
        env_prev = e;
    }
    return env_prev;
}

/*
 * Smoothed gain: g[j] = 1 - sum_k w[k] (1 - env[j + k]) for 0 <= j < n - L + 1 (w: L weights
 * >= 0 summing to 1, the raised-cosine attack), written as the shortfall from 1 so that where the
 * whole window is at unity the gain is exactly 1.0 (and the window is not summed at all). The runs
 * of positions whose window holds a value under 1 are summed in float32 (the shortfall 1 - env and
 * the weights; sums of L terms good to ~1e-6 of the shortfall, 1e-5 dB), in tiles of
 * AQ_SMOOTH_TILE positions kept in registers while the taps stream past (the compiler vectorises
 * over the tile's positions). Every position's sum is taken in the same order, k = 0 .. L - 1,
 * whatever the tiling, so the result does not depend on where a run or a block starts.
 * ws: n + AQ_SMOOTH_TILE (64) float32 of workspace. wf: the weights as float32.
 */
#define AQ_SMOOTH_TILE 64
AQ_CLONES void aq_limiter_smooth(const double *env, int64_t n, const float *wf, int64_t L, double *g, float *ws)
{
    const int64_t n_out = n - L + 1;
    if (n_out <= 0) return;
    float *u = ws;
    for (int64_t i = 0; i < n; i++) u[i] = (float)(1.0 - env[i]);
    for (int64_t i = n; i < n + AQ_SMOOTH_TILE; i++) u[i] = 0.0f;
    int64_t j = 0;
    while (j < n_out) {
        /* first position whose window [j, j + L) holds a value under 1 */
        int64_t first_low = -1;
        for (int64_t i = j; i < n; i++) if (env[i] < 1.0) { first_low = i; break; }
        const int64_t a = first_low < 0 ? n_out : (first_low - L + 1 > j ? first_low - L + 1 : j);
        for (int64_t i = j; i < a; i++) g[i] = 1.0;
        if (a >= n_out) break;
        /* the run ends where L consecutive values are 1 again */
        int64_t ones = 0, i = first_low + 1;
        for (; i < n && ones < L; i++) ones = env[i] < 1.0 ? 0 : ones + 1;
        /* positions a .. b - 1 have a value under 1 in their window */
        int64_t b = (ones >= L ? i - L : n);
        if (b > n_out) b = n_out;
        for (int64_t q = a; q < b; q += AQ_SMOOTH_TILE) {
            /* always a whole tile (u is padded with zeros), so every position is computed by the
             * same vector instructions, wherever the tile starts */
            float acc[AQ_SMOOTH_TILE];
            for (int t = 0; t < AQ_SMOOTH_TILE; t++) acc[t] = 0.0f;
            for (int64_t k = 0; k < L; k++) {
                const float wk = wf[k];
                const float *e = u + q + k;
                for (int t = 0; t < AQ_SMOOTH_TILE; t++) acc[t] += wk * e[t];
            }
            const int64_t m = b - q < AQ_SMOOTH_TILE ? b - q : AQ_SMOOTH_TILE;
            for (int64_t t = 0; t < m; t++) g[q + t] = 1.0 - (double)acc[t];
        }
        j = b;
    }
}

/* The CPU's instruction-set extensions as this process sees them (CPUID, and XGETBV for the state
 * the OS saves), for audiolib/cpu.py: bit 0 AVX2+FMA, 1 AVX-512 F/BW/VL, 2 AVX-512 VNNI, 3 AVX-512
 * BF16, 4 AMX tiles with int8, 5 AVX-VNNI (256-bit). 0 where CPUID is not x86's. */
#if defined(__x86_64__) && defined(__GNUC__)
#include <cpuid.h>
#endif
int64_t aq_cpu_features(void)
{
    int64_t f = 0;
#if defined(__x86_64__) && defined(__GNUC__)
    unsigned int a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & (1u << 27))) /* OSXSAVE */
        return 0;
    unsigned int xlo, xhi;
    __asm__ volatile("xgetbv" : "=a"(xlo), "=d"(xhi) : "c"(0));
    const int fma = (c >> 12) & 1, avx = (c >> 28) & 1;
    const int ymm = (xlo & 0x6) == 0x6, zmm = (xlo & 0xe6) == 0xe6, tiles = (xlo & 0x60000) == 0x60000;
    if (__get_cpuid_max(0, NULL) < 7)
        return 0;
    __cpuid_count(7, 0, a, b, c, d);
    const unsigned int b7 = b, c7 = c, d7 = d;
    __cpuid_count(7, 1, a, b, c, d);
    const unsigned int a71 = a;
    if (avx && fma && ymm && ((b7 >> 5) & 1))
        f |= 1;
    if ((f & 1) && zmm && ((b7 >> 16) & 1) && ((b7 >> 30) & 1) && ((b7 >> 31) & 1))
        f |= 2;
    if ((f & 2) && ((c7 >> 11) & 1))
        f |= 4;
    if ((f & 2) && ((a71 >> 5) & 1))
        f |= 8;
    if ((f & 2) && tiles && ((d7 >> 24) & 1) && ((d7 >> 25) & 1))
        f |= 16;
    if ((f & 1) && ((a71 >> 4) & 1))
        f |= 32;
#endif
    return f;
}

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_dsp", "C kernels (loaded with ctypes)", -1, NULL};

PyMODINIT_FUNC PyInit__dsp(void) { return PyModule_Create(&module); }
