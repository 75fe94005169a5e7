/* AVX-512 VNNI kernels of the CPU plugin; see cpu_vnni.h for the method. */
#include "cpu_vnni.h"

#include <string.h>

void cpu_vnni_plan_for(unsigned l, cpu_vnni_plan *p)
{
    memset(p, 0, sizeof *p);
    int off = 0;
    while (off < (int)l && p->nl < CPU_VNNI_MAX_LIMBS) {
        int bits = (int)l - off <= 32 ? 16 : 8;
        p->off[p->nl] = off;
        p->bits[p->nl] = bits;
        p->nl++;
        off += bits;
    }
    p->nc = CPU_VNNI_NC;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define VNNI_TARGET __attribute__((target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni")))

int cpu_vnni_supported(void)
{
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
           __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
}

/* One limb at a time, with named accumulators (GCC keeps arrays of vectors
 * poorly in registers): 2 halves of 16 channels x NC columns, NC <= 12. */
#define R1(M) M(0)
#define R2(M) R1(M) M(1)
#define R3(M) R2(M) M(2)
#define R4(M) R3(M) M(3)
#define R5(M) R4(M) M(4)
#define R6(M) R5(M) M(5)
#define R7(M) R6(M) M(6)
#define R8(M) R7(M) M(7)
#define R9(M) R8(M) M(8)
#define R10(M) R9(M) M(9)
#define R11(M) R10(M) M(10)
#define R12(M) R11(M) M(11)

/* GCC 12 copies the accumulator of the vpdpwssd intrinsic around every use
 * (it spills 24 accumulators); the instruction itself keeps them in place. */
#define DPWSSD(acc, a, b) __asm__("vpdpwssd %2, %1, %0" : "+v"(acc) : "v"(a), "v"(b))

#define K_DECL(c) __m512i a0_##c = _mm512_setzero_si512(), a1_##c = _mm512_setzero_si512();
#define K_STEP(c)                                                                                              \
    {                                                                                                          \
        __m512i b = _mm512_set1_epi32(xp[c]);                                                                  \
        DPWSSD(a0_##c, w0, b);                                                                                 \
        DPWSSD(a1_##c, w1, b);                                                                                 \
    }
#define K_DUMP(c)                                                                                              \
    {                                                                                                          \
        uint64_t *r = res + (c) * ldres;                                                                       \
        dump16(r, a0_##c, sh, add);                                                                            \
        dump16(r + 16, a1_##c, sh, add);                                                                       \
    }

/* r[0..15] (+)= (int64) a[i] << shift: the first limb's sums are stored,
 * the others added. */
VNNI_TARGET static inline __attribute__((always_inline)) void dump16(uint64_t *r, __m512i a, __m128i sh, int add)
{
    __m512i lo = _mm512_sll_epi64(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(a)), sh);
    __m512i hi = _mm512_sll_epi64(_mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(a, 1)), sh);
    if (add) {
        lo = _mm512_add_epi64(_mm512_loadu_si512((const void *)r), lo);
        hi = _mm512_add_epi64(_mm512_loadu_si512((const void *)(r + 8)), hi);
    }
    _mm512_storeu_si512((void *)r, lo);
    _mm512_storeu_si512((void *)(r + 8), hi);
}

#define DEF_KERNEL(NC, REP)                                                                                    \
    VNNI_TARGET static void kern_##NC(int shift, int add, const int16_t *w, const int32_t *x, int64_t np,      \
                                      int64_t ps, uint64_t *res, int64_t ldres)                                \
    {                                                                                                          \
        REP(K_DECL)                                                                                            \
        for (int64_t p = 0; p < np; p++) {                                                                     \
            __m512i w0 = _mm512_loadu_si512((const void *)(w + p * 64));                                       \
            __m512i w1 = _mm512_loadu_si512((const void *)(w + p * 64 + 32));                                  \
            const int32_t *xp = x + p * ps;                                                                    \
            REP(K_STEP)                                                                                        \
        }                                                                                                      \
        __m128i sh = _mm_cvtsi32_si128(shift);                                                                 \
        REP(K_DUMP)                                                                                            \
    }
DEF_KERNEL(1, R1)
DEF_KERNEL(2, R2)
DEF_KERNEL(3, R3)
DEF_KERNEL(4, R4)
DEF_KERNEL(5, R5)
DEF_KERNEL(6, R6)
DEF_KERNEL(7, R7)
DEF_KERNEL(8, R8)
DEF_KERNEL(9, R9)
DEF_KERNEL(10, R10)
DEF_KERNEL(11, R11)
DEF_KERNEL(12, R12)

typedef void (*kern_fn)(int shift, int add, const int16_t *w, const int32_t *x, int64_t np, int64_t ps,
                        uint64_t *res, int64_t ldres);
/* One kernel per micro-tile width: a narrow tile (the last one of a row)
 * runs in one call, not in pieces of 4 and 1 columns. */
static const kern_fn kernels[CPU_VNNI_NC + 1] = {
    NULL, kern_1, kern_2, kern_3, kern_4, kern_5, kern_6, kern_7, kern_8, kern_9, kern_10, kern_11, kern_12,
};

/* Balanced digits of 8 lanes at once: d = sign-extended low b bits, v = (v - d) >> b. */
VNNI_TARGET static inline __attribute__((always_inline)) __m512i digit8(__m512i *v, int b)
{
    __m128i up = _mm_cvtsi32_si128(64 - b), down = _mm_cvtsi32_si128(b);
    __m512i d = _mm512_sra_epi64(_mm512_sll_epi64(*v, up), up);
    *v = _mm512_srl_epi64(_mm512_sub_epi64(*v, d), down);
    return d;
}

/* Digit pairs of one limb for 12 columns: even k in e, odd k in o (8 + 4 lanes). */
VNNI_TARGET static inline __attribute__((always_inline)) void
store_pairs(const cpu_vnni_plan *p, __m512i e0, __m512i e1, __m512i o0, __m512i o1, int32_t *dst, int64_t lstride)
{
    const __m512i lo16 = _mm512_set1_epi64(0xFFFF);
    for (int l = 0; l < p->nl; l++) {
        int b = p->bits[l];
        __m512i de0 = digit8(&e0, b), de1 = digit8(&e1, b), do0 = digit8(&o0, b), do1 = digit8(&o1, b);
        __m512i q0 = _mm512_or_si512(_mm512_and_si512(de0, lo16), _mm512_slli_epi64(_mm512_and_si512(do0, lo16), 16));
        __m512i q1 = _mm512_or_si512(_mm512_and_si512(de1, lo16), _mm512_slli_epi64(_mm512_and_si512(do1, lo16), 16));
        int32_t *d = dst + l * lstride;
        _mm256_storeu_si256((__m256i *)(void *)d, _mm512_cvtepi64_epi32(q0));
        _mm_storeu_si128((__m128i *)(void *)(d + 8), _mm256_castsi256_si128(_mm512_cvtepi64_epi32(q1)));
    }
}

/* Lanes j of an 8-lane load starting at input column st with 0 <= st + j < W. */
static inline __mmask8 lane_mask(int64_t st, int64_t W)
{
    int64_t lo = st < 0 ? -st : 0, hi = W - st < 8 ? W - st : 8;
    if (hi <= lo)
        return 0;
    unsigned m = ((1u << hi) - 1) & ~((1u << lo) - 1);
    return (__mmask8)m;
}

/* Lanes j of a 16- or 32-lane load starting at input column st with 0 <= st + j < W. */
static inline uint32_t lane_mask32(int64_t st, int64_t W, int lanes)
{
    int64_t lo = st < 0 ? -st : 0, hi = W - st < lanes ? W - st : lanes;
    if (hi <= lo)
        return 0;
    uint64_t m = (((uint64_t)1 << hi) - 1) & ~(((uint64_t)1 << lo) - 1);
    return (uint32_t)m;
}

/* The row case from the digit planes: per limb, the even-k and odd-k rows of
 * 12 columns are loaded as int16 and interleaved into pairs.  With stride s
 * > 1 the 11s + 1 <= 64 lanes a tile spans come in two loads and lanes
 * 0, s, 2s, ... are picked out. */
VNNI_TARGET static void pack_row_digits(const cpu_vnni_plan *p, const cpu_vnni_im2col *g, int64_t base,
                                        int64_t ih0, int64_t iw0, int real, int32_t *dst)
{
    const int64_t nc = CPU_VNNI_NC, lstride = g->K2 * CPU_VNNI_NC;
    const int nl = p->nl;
    const __mmask16 mreal = (__mmask16)((1u << real) - 1);
    const int64_t sw = g->stride_w;
    int16_t pick[32] = {0};
    for (int c = 0; c < CPU_VNNI_NC; c++)
        pick[c] = (int16_t)(c * sw);
    const __m512i pickv = _mm512_loadu_si512((const void *)pick);
    /* lanes of the second load a tile needs */
    const int64_t span = (CPU_VNNI_NC - 1) * sw + 1;
    const uint32_t need_hi = span > 32 ? (uint32_t)(((uint64_t)1 << (span - 32)) - 1) : 0;
    __m256i ev[CPU_VNNI_MAX_LIMBS];
    for (int l = 0; l < nl; l++)
        ev[l] = _mm256_setzero_si256();
    int64_t k = 0;
    for (int64_t ci = 0; ci < g->icg; ci++)
        for (int64_t kh = 0; kh < g->k_h; kh++) {
            int64_t ih = ih0 + kh * g->dil_h;
            int ok = ih >= 0 && ih < g->H;
            int64_t rowoff = base + ci * g->HW + (ok ? ih * g->W : 0);
            for (int64_t kw = 0; kw < g->k_w; kw++, k++) {
                int64_t st = iw0 + kw * g->dil_w;
                uint32_t m = 0, mhi = 0;
                if (ok) {
                    m = sw == 1 ? (lane_mask32(st, g->W, 16) & mreal) : lane_mask32(st, g->W, 32);
                    mhi = need_hi ? lane_mask32(st + 32, g->W, 32) & need_hi : 0;
                }
                for (int l = 0; l < nl; l++) {
                    const int16_t *q =
                        (const int16_t *)(uintptr_t)((uintptr_t)(g->dig + l * g->plane + rowoff) + (uintptr_t)(st * 2));
                    __m256i v;
                    if (sw == 1) {
                        v = _mm256_maskz_loadu_epi16((__mmask16)m, q);
                    } else {
                        __m512i a = _mm512_maskz_loadu_epi16((__mmask32)m, q);
                        __m512i b = mhi ? _mm512_maskz_loadu_epi16((__mmask32)mhi, q + 32) : _mm512_setzero_si512();
                        v = _mm256_maskz_mov_epi16(mreal,
                                                   _mm512_castsi512_si256(_mm512_permutex2var_epi16(a, pickv, b)));
                    }
                    if (k & 1) {
                        __m512i pr = _mm512_or_si512(_mm512_cvtepu16_epi32(ev[l]),
                                                     _mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
                        _mm512_mask_storeu_epi32(dst + l * lstride + (k >> 1) * nc, 0x0FFF, pr);
                    } else {
                        ev[l] = v;
                    }
                }
            }
        }
    if (k & 1)
        for (int l = 0; l < nl; l++)
            _mm512_mask_storeu_epi32(dst + l * lstride + (k >> 1) * nc, 0x0FFF, _mm512_cvtepu16_epi32(ev[l]));
}

VNNI_TARGET void cpu_vnni_digit_planes(const cpu_vnni_plan *p, const uint64_t *in, int64_t i0, int64_t i1,
                                       int16_t *dig, int64_t plane)
{
    int64_t i = i0;
    for (; i + 8 <= i1; i += 8) {
        __m512i v = _mm512_loadu_si512((const void *)(in + i));
        for (int l = 0; l < p->nl; l++)
            _mm_storeu_si128((__m128i *)(void *)(dig + l * plane + i), _mm512_cvtepi64_epi16(digit8(&v, p->bits[l])));
    }
    if (i < i1) {
        __mmask8 m = (__mmask8)((1u << (i1 - i)) - 1);
        __m512i v = _mm512_maskz_loadu_epi64(m, (const void *)(in + i));
        for (int l = 0; l < p->nl; l++)
            _mm512_mask_cvtepi64_storeu_epi16((void *)(dig + l * plane + i), m, digit8(&v, p->bits[l]));
    }
}

VNNI_TARGET void cpu_vnni_digit_pairs(const cpu_vnni_plan *p, const uint64_t *even, const uint64_t *odd, int64_t n,
                                      int32_t *dst, int64_t plane)
{
    const __m512i lo16 = _mm512_set1_epi64(0xFFFF);
    /* word 2j: word 0 of lane j of the even digits, word 2j + 1: of the odd */
    int16_t ix[32];
    for (int j = 0; j < 16; j++)
        ix[2 * j] = (int16_t)(4 * j), ix[2 * j + 1] = (int16_t)(32 + 4 * j);
    const __m512i pick = _mm512_loadu_si512((const void *)ix);
    int64_t i = 0;
    /* 16 pairs per store: a masked narrowing store to memory (vpmovqd) is
     * slow on some cores (AMD Zen 4), so the pairs are built by word
     * permutes and stored whole */
    for (; i + 16 <= n; i += 16) {
        __m512i e0 = _mm512_loadu_si512((const void *)(even + i)), e1 = _mm512_loadu_si512((const void *)(even + i + 8));
        __m512i o0 = odd ? _mm512_loadu_si512((const void *)(odd + i)) : _mm512_setzero_si512();
        __m512i o1 = odd ? _mm512_loadu_si512((const void *)(odd + i + 8)) : _mm512_setzero_si512();
        for (int l = 0; l < p->nl; l++) {
            int b = p->bits[l];
            __m512i de0 = digit8(&e0, b), de1 = digit8(&e1, b), do0 = digit8(&o0, b), do1 = digit8(&o1, b);
            __m512i q0 = _mm512_permutex2var_epi16(de0, pick, do0), q1 = _mm512_permutex2var_epi16(de1, pick, do1);
            _mm512_storeu_si512((void *)(dst + l * plane + i), _mm512_inserti64x4(q0, _mm512_castsi512_si256(q1), 1));
        }
    }
    for (; i < n; i += 8) {
        __mmask8 m = n - i >= 8 ? 0xFF : (__mmask8)((1u << (n - i)) - 1);
        __m512i e = _mm512_maskz_loadu_epi64(m, (const void *)(even + i));
        __m512i o = odd ? _mm512_maskz_loadu_epi64(m, (const void *)(odd + i)) : _mm512_setzero_si512();
        for (int l = 0; l < p->nl; l++) {
            __m512i de = digit8(&e, p->bits[l]), dd = digit8(&o, p->bits[l]);
            __m512i q = _mm512_or_si512(_mm512_and_si512(de, lo16), _mm512_slli_epi64(_mm512_and_si512(dd, lo16), 16));
            _mm512_mask_cvtepi64_storeu_epi32((void *)(dst + l * plane + i), m, q);
        }
    }
}

VNNI_TARGET void cpu_vnni_copy_pairs(const int32_t *src, int64_t sstride, int64_t np, int real, int32_t *dst)
{
    const __mmask16 m = (__mmask16)((1u << real) - 1);
    for (int64_t p = 0; p < np; p++)
        _mm512_mask_storeu_epi32(dst + p * CPU_VNNI_NC, m, _mm512_maskz_loadu_epi32(m, src + p * sstride));
}

VNNI_TARGET void cpu_vnni_pack_tile(const cpu_vnni_plan *p, const cpu_vnni_im2col *g, const uint64_t *in,
                                    const int64_t *base, const int64_t *ih0, const int64_t *iw0, int real,
                                    int32_t *dst)
{
    const int64_t nc = CPU_VNNI_NC, lstride = g->K2 * CPU_VNNI_NC;
    if (g->row && g->dig && g->stride_w >= 1 && g->stride_w <= CPU_VNNI_ROW_STRIDE_MAX) {
        pack_row_digits(p, g, base[0], ih0[0], iw0[0], real, dst);
        return;
    }
    /* lanes 0..7 and 8..11 of the micro-tile */
    __mmask8 m0 = real >= 8 ? 0xFF : (__mmask8)((1u << real) - 1);
    __mmask8 m1 = real <= 8 ? 0 : (__mmask8)(((1u << (real - 8)) - 1) & 0xF);
    __m512i h0 = _mm512_maskz_loadu_epi64(m0, ih0), h1 = _mm512_maskz_loadu_epi64(m1, ih0 + 8);
    __m512i w0 = _mm512_maskz_loadu_epi64(m0, iw0), w1 = _mm512_maskz_loadu_epi64(m1, iw0 + 8);
    __m512i Wv = _mm512_set1_epi64(g->W), Hv = _mm512_set1_epi64(g->H);
    /* index of (ih0, iw0) of each column; entry k adds ci*HW + dh*W + dw */
    __m512i r0 = _mm512_add_epi64(_mm512_add_epi64(_mm512_maskz_loadu_epi64(m0, base), _mm512_mullo_epi64(h0, Wv)), w0);
    __m512i r1 = _mm512_add_epi64(_mm512_add_epi64(_mm512_maskz_loadu_epi64(m1, base + 8), _mm512_mullo_epi64(h1, Wv)), w1);
    const __m512i zero = _mm512_setzero_si512();
    __m512i e0 = zero, e1 = zero;
    int64_t k = 0;
    /* Columns along one output row with stride 1 or 2: plain (masked) loads
     * of the input row instead of gathers. */
    int row = g->row && (g->stride_w == 1 || g->stride_w == 2);
    const __m512i even = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0);
    for (int64_t ci = 0; ci < g->icg; ci++)
        for (int64_t kh = 0; kh < g->k_h; kh++) {
            int64_t dh = kh * g->dil_h;
            __m512i dhv = _mm512_set1_epi64(dh);
            __mmask8 mh0 = _mm512_mask_cmplt_epu64_mask(m0, _mm512_add_epi64(h0, dhv), Hv);
            __mmask8 mh1 = _mm512_mask_cmplt_epu64_mask(m1, _mm512_add_epi64(h1, dhv), Hv);
            int64_t ih = ih0[0] + dh;
            int row_ok = row && ih >= 0 && ih < g->H;
            const uint64_t *rowp = in + base[0] + ci * g->HW + (row_ok ? ih * g->W : 0);
            for (int64_t kw = 0; kw < g->k_w; kw++, k++) {
                int64_t dw = kw * g->dil_w;
                __m512i v0, v1;
                if (row_ok) {
                    int64_t st = iw0[0] + dw; /* input column of the micro-tile's first column */
                    const uint64_t *q = (const uint64_t *)(uintptr_t)((uintptr_t)rowp + (uintptr_t)(st * 8));
                    if (g->stride_w == 1) {
                        v0 = _mm512_maskz_loadu_epi64(m0 & lane_mask(st, g->W), q);
                        v1 = _mm512_maskz_loadu_epi64(m1 & lane_mask(st + 8, g->W), q + 8);
                    } else {
                        __m512i a = _mm512_maskz_loadu_epi64(lane_mask(st, g->W), q);
                        __m512i b = _mm512_maskz_loadu_epi64(lane_mask(st + 8, g->W), q + 8);
                        __m512i c = _mm512_maskz_loadu_epi64(lane_mask(st + 16, g->W), q + 16);
                        v0 = _mm512_maskz_mov_epi64(m0, _mm512_permutex2var_epi64(a, even, b));
                        v1 = _mm512_maskz_mov_epi64(m1, _mm512_permutexvar_epi64(even, c));
                    }
                } else if (row) {
                    v0 = v1 = zero;
                } else {
                    __m512i dwv = _mm512_set1_epi64(dw), offv = _mm512_set1_epi64(ci * g->HW + dh * g->W + dw);
                    __mmask8 k0 = _mm512_mask_cmplt_epu64_mask(mh0, _mm512_add_epi64(w0, dwv), Wv);
                    __mmask8 k1 = _mm512_mask_cmplt_epu64_mask(mh1, _mm512_add_epi64(w1, dwv), Wv);
                    v0 = _mm512_mask_i64gather_epi64(zero, k0, _mm512_add_epi64(r0, offv), (const void *)in, 8);
                    v1 = _mm512_mask_i64gather_epi64(zero, k1, _mm512_add_epi64(r1, offv), (const void *)in, 8);
                }
                if (k & 1)
                    store_pairs(p, e0, e1, v0, v1, dst + (k >> 1) * nc, lstride);
                else
                    e0 = v0, e1 = v1;
            }
        }
    if (k & 1)
        store_pairs(p, e0, e1, zero, zero, dst + (k >> 1) * nc, lstride);
}

void cpu_vnni_kernel(int nc, int shift, int add, const int16_t *w, const int32_t *x, int64_t np, int64_t pstride,
                     uint64_t *res, int64_t ldres)
{
    kernels[nc](shift, add, w, x, np, pstride, res, ldres);
}

/* 8 columns x 8 channels through an 8x8 transpose (rows r[i] = column i's
 * channels in, t[j] = channel j's columns out). */
VNNI_TARGET static inline __attribute__((always_inline)) void transpose8(const __m512i r[8], __m512i t[8])
{
    const __m512i lo = _mm512_set_epi64(13, 12, 5, 4, 9, 8, 1, 0), hi = _mm512_set_epi64(15, 14, 7, 6, 11, 10, 3, 2);
    __m512i u[8], v[8];
    for (int i = 0; i < 8; i += 2) {
        u[i] = _mm512_unpacklo_epi64(r[i], r[i + 1]);
        u[i + 1] = _mm512_unpackhi_epi64(r[i], r[i + 1]);
    }
    /* v[0]: channels 0 and 4 of columns 0..3, v[1]: 1 and 5, v[2]: 2 and 6, v[3]: 3 and 7; v[4..7] columns 4..7 */
    for (int h = 0; h < 8; h += 4) {
        v[h] = _mm512_permutex2var_epi64(u[h], lo, u[h + 2]);
        v[h + 1] = _mm512_permutex2var_epi64(u[h + 1], lo, u[h + 3]);
        v[h + 2] = _mm512_permutex2var_epi64(u[h], hi, u[h + 2]);
        v[h + 3] = _mm512_permutex2var_epi64(u[h + 1], hi, u[h + 3]);
    }
    for (int j = 0; j < 4; j++) {
        t[j] = _mm512_shuffle_i64x2(v[j], v[j + 4], 0x44);
        t[j + 4] = _mm512_shuffle_i64x2(v[j], v[j + 4], 0xEE);
    }
}

/* n <= 4 columns x 8 channels (a row's last micro-tile columns): a 4x8
 * transpose, two channels of four columns per vector, half the work of
 * transpose8 for them. */
VNNI_TARGET static inline __attribute__((always_inline)) void store4(const uint64_t *res, int64_t ldres, int n,
                                                                     uint64_t *dst, int64_t P, __m512i mv)
{
    const __m512i lo = _mm512_set_epi64(11, 10, 3, 2, 9, 8, 1, 0), hi = _mm512_set_epi64(15, 14, 7, 6, 13, 12, 5, 4);
    __m512i r[4];
    for (int i = 0; i < 4; i++)
        r[i] = i < n ? _mm512_loadu_si512((const void *)(res + i * ldres)) : _mm512_setzero_si512();
    /* e01: even channels of columns 0, 1; o01: odd ones; e23, o23: columns 2, 3 */
    __m512i e01 = _mm512_unpacklo_epi64(r[0], r[1]), o01 = _mm512_unpackhi_epi64(r[0], r[1]);
    __m512i e23 = _mm512_unpacklo_epi64(r[2], r[3]), o23 = _mm512_unpackhi_epi64(r[2], r[3]);
    /* t[0]: channels 0 (low half) and 2, t[1]: 4 and 6, t[2]: 1 and 3, t[3]: 5 and 7 */
    __m512i t[4] = { _mm512_permutex2var_epi64(e01, lo, e23), _mm512_permutex2var_epi64(e01, hi, e23),
                     _mm512_permutex2var_epi64(o01, lo, o23), _mm512_permutex2var_epi64(o01, hi, o23) };
    static const int ch[4] = { 0, 4, 1, 5 };
    __mmask8 m = (__mmask8)((1u << n) - 1);
    for (int i = 0; i < 4; i++) {
        __m512i v = _mm512_and_si512(t[i], mv);
        _mm256_mask_storeu_epi64(dst + ch[i] * P, m, _mm512_castsi512_si256(v));
        _mm256_mask_storeu_epi64(dst + (ch[i] + 2) * P, m, _mm512_extracti64x4_epi64(v, 1));
    }
}

VNNI_TARGET void cpu_vnni_store(const uint64_t *res, int64_t ldres, int ncols, int64_t nch, uint64_t *dst,
                                int64_t P, uint64_t mask)
{
    const __m512i mv = _mm512_set1_epi64((long long)mask);
    int64_t o = 0;
    for (; o + 8 <= nch; o += 8)
        for (int c = 0; c < ncols; c += 8) {
            int n = ncols - c < 8 ? ncols - c : 8;
            if (n <= 4) {
                store4(res + c * ldres + o, ldres, n, dst + o * P + c, P, mv);
                continue;
            }
            __m512i r[8], t[8];
            for (int i = 0; i < 8; i++)
                r[i] = i < n ? _mm512_loadu_si512((const void *)(res + (c + i) * ldres + o)) : _mm512_setzero_si512();
            transpose8(r, t);
            __mmask8 m = (__mmask8)((1u << n) - 1);
            for (int j = 0; j < 8; j++)
                _mm512_mask_storeu_epi64(dst + (o + j) * P + c, m, _mm512_and_si512(t[j], mv));
        }
    for (; o < nch; o++)
        for (int c = 0; c < ncols; c++)
            dst[o * P + c] = res[c * ldres + o] & mask;
}

#else

int cpu_vnni_supported(void)
{
    return 0;
}

void cpu_vnni_pack_tile(const cpu_vnni_plan *p, const cpu_vnni_im2col *g, const uint64_t *in, const int64_t *base,
                        const int64_t *ih0, const int64_t *iw0, int real, int32_t *dst)
{
    (void)p, (void)g, (void)in, (void)base, (void)ih0, (void)iw0, (void)real, (void)dst;
}

void cpu_vnni_digit_planes(const cpu_vnni_plan *p, const uint64_t *in, int64_t i0, int64_t i1, int16_t *dig,
                           int64_t plane)
{
    (void)p, (void)in, (void)i0, (void)i1, (void)dig, (void)plane;
}

void cpu_vnni_digit_pairs(const cpu_vnni_plan *p, const uint64_t *even, const uint64_t *odd, int64_t n,
                          int32_t *dst, int64_t plane)
{
    (void)p, (void)even, (void)odd, (void)n, (void)dst, (void)plane;
}

void cpu_vnni_copy_pairs(const int32_t *src, int64_t sstride, int64_t np, int real, int32_t *dst)
{
    (void)src, (void)sstride, (void)np, (void)real, (void)dst;
}

void cpu_vnni_kernel(int nc, int shift, int add, const int16_t *w, const int32_t *x, int64_t np, int64_t pstride,
                     uint64_t *res, int64_t ldres)
{
    (void)nc, (void)shift, (void)add, (void)w, (void)x, (void)np, (void)pstride, (void)res, (void)ldres;
}

void cpu_vnni_store(const uint64_t *res, int64_t ldres, int ncols, int64_t nch, uint64_t *dst, int64_t P,
                    uint64_t mask)
{
    (void)res, (void)ldres, (void)ncols, (void)nch, (void)dst, (void)P, (void)mask;
}

#endif
