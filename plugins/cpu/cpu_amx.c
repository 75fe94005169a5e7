/* AMX int8 kernels of the CPU plugin; see cpu_amx.h for the method.
 *
 * Compiled with -mamx-tile -mamx-int8 -mavx512f/bw/dq/vl/vbmi
 * (plugins/cpu/CMakeLists.txt); nothing here runs unless
 * cpu_amx_supported() said yes. */
#include "cpu_amx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__) && defined(__AMX_TILE__) && defined(__AMX_INT8__)
#include <cpuid.h>
#include <immintrin.h>
#include <sys/syscall.h>
#include <unistd.h>

#define ARCH_GET_XCOMP_PERM 0x1022
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

int cpu_amx_supported(char *why, size_t n)
{
    unsigned a, b, c, d;
    const char *off = getenv("TWINEDGE_CPU_NO_AMX");
    if (off && *off && strcmp(off, "0") != 0) {
        snprintf(why, n, "AMX is disabled by TWINEDGE_CPU_NO_AMX");
        return 0;
    }
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d & (1u << 24)) || !(d & (1u << 25))) {
        snprintf(why, n, "this CPU lacks AMX-TILE/AMX-INT8");
        return 0;
    }
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") || !__builtin_cpu_supports("avx512dq") ||
        !__builtin_cpu_supports("avx512vl") || !__builtin_cpu_supports("avx512vbmi")) {
        snprintf(why, n, "this CPU has AMX but lacks AVX-512 F/BW/DQ/VL/VBMI");
        return 0;
    }
    /* The kernel grants the tile data state per process (Linux >= 5.16);
     * asking again is harmless. */
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) {
        snprintf(why, n, "the kernel refused the AMX tile state (arch_prctl ARCH_REQ_XCOMP_PERM)");
        return 0;
    }
    unsigned long long perm = 0;
    if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &perm) != 0 || !(perm & (1ull << XFEATURE_XTILEDATA))) {
        snprintf(why, n, "the kernel did not grant the AMX tile state");
        return 0;
    }
    return 1;
}

/* ---- layers ----------------------------------------------------------- */

static int64_t imax(int64_t a, int64_t b)
{
    return a > b ? a : b;
}

/* The direct layout confines a row group to one output row, which wastes
 * tile rows on narrow outputs; the gathered one packs every row but pays a
 * gather per row and K step, shared by the channel tiles.  Estimated for 5
 * digits (calibrated rings of 33..40 bits), per output row: tile products
 * (one per tile and channel tile) plus gathers at about a third of one. */
static int direct_pays(const cpu_amx_layer *A)
{
    const int64_t nd = 5, cols = 32 / nd, ow = A->out_w;
    int64_t full = ow / cols, rest = ow % cols;
    int64_t direct = full * 2 + (rest ? (rest * nd <= 16 ? 1 : 2) : 0);
    double flat = (double)ow * nd / (double)(cols * nd) * 2.0;
    double gathered = flat * (1.0 + 0.3 * 32.0 / (4.0 * (double)((A->ocg + 15) / 16)));
    return (double)direct <= gathered;
}

int cpu_amx_prepare(cpu_amx_layer *A, const te_linear_geom *g, const int32_t *w)
{
    memset(A, 0, sizeof *A);
    A->fc = g->kind == TE_LIN_FC;
    if (A->fc) {
        A->G = 1, A->icg = g->in_c, A->ocg = g->out_c, A->K = g->in_c;
        A->H = A->W = A->Hp = A->Wp = 1;
        A->kh = A->kw = A->sh = A->sw = A->dh = A->dw = 1;
        A->out_h = A->out_w = 1, A->P = 1, A->out_len = g->out_c, A->in_len = g->in_c;
    } else {
        A->G = g->group, A->icg = g->in_c / g->group, A->ocg = g->out_c / g->group;
        A->kh = g->k_h, A->kw = g->k_w, A->sh = g->stride_h, A->sw = g->stride_w;
        A->dh = g->dil_h, A->dw = g->dil_w;
        A->K = A->icg * A->kh * A->kw;
        A->H = g->in_h, A->W = g->in_w, A->pt = g->pad_t, A->pl = g->pad_l;
        A->Hp = imax(g->in_h + g->pad_t + g->pad_b, (g->out_h - 1) * A->sh + (A->kh - 1) * A->dh + 1);
        A->Wp = imax(g->in_w + g->pad_l + g->pad_r, (g->out_w - 1) * A->sw + (A->kw - 1) * A->dw + 1);
        A->out_h = g->out_h, A->out_w = g->out_w, A->P = g->out_h * g->out_w;
        A->out_len = g->out_c * A->P, A->in_len = g->in_c * g->in_h * g->in_w;
    }
    A->nct = (A->ocg + 15) / 16;
    A->CQ = (A->icg + 3) / 4;
    A->direct = A->icg % 64 == 0 && A->sh * A->sw <= 64;
    int64_t nq = 0, kwq = (A->kw + 3) / 4;
    if (A->direct) {
        A->Hq = (A->Hp + A->sh - 1) / A->sh;
        A->Wq = (A->Wp + A->sw - 1) / A->sw;
        for (int64_t ph = 0; ph < A->sh; ph++)
            for (int64_t pw = 0; pw < A->sw; pw++) {
                int uh = 0, uw = 0;
                for (int64_t k = 0; k < A->kh; k++)
                    uh |= (k * A->dh) % A->sh == ph;
                for (int64_t k = 0; k < A->kw; k++)
                    uw |= (k * A->dw) % A->sw == pw;
                if (uh && uw)
                    A->phase[A->nph++] = (int)(ph * A->sw + pw);
            }
        A->flat = A->nph == 1 && A->Wq == A->out_w && A->Hq == A->out_h;
        if (!A->flat && !direct_pays(A)) {
            A->direct = 0, A->nph = 0;
            A->Hq = A->Wq = 0;
        }
    }
    if (A->direct) {
        A->KS = A->kh * A->kw * (A->icg / 64);
        /* digit bytes per sample, for any nd (offsets are int64; keep sizes sane) */
        if (A->nph * A->Hq * A->Wq * A->G * A->icg > ((int64_t)1 << 32))
            return 1;
    } else {
        int64_t nq_c = A->CQ * A->kh * A->kw, nq_w = A->icg * A->kh * kwq;
        A->wquads = !A->fc && A->dw == 1 && nq_w < nq_c;
        nq = A->wquads ? nq_w : nq_c;
        A->plane = A->fc ? A->CQ * 4 : (A->wquads ? A->icg * A->Hp * A->Wp : A->CQ * A->Hp * A->Wp * 4);
        /* gather offsets are int32 */
        if (A->G * A->plane > ((int64_t)1 << 30))
            return 1;
        A->KS = (nq + 15) / 16;
    }
    int64_t KP = A->KS * 64;
    int64_t *kmap = malloc((size_t)KP * sizeof *kmap);
    A->w = calloc((size_t)(A->G * A->nct * A->KS * 2), CPU_AMX_TILE);
    if (!A->direct)
        A->koff = calloc((size_t)(A->KS * 16), sizeof *A->koff);
    if (!kmap || !A->w || (!A->direct && !A->koff)) {
        free(kmap);
        cpu_amx_release(A);
        return -1;
    }
    for (int64_t k = 0; k < KP; k++)
        kmap[k] = -1;
    int64_t q = 0;
    if (A->direct) {
        /* K step t: tap t / (icg / 64), channels 64 (t % (icg / 64)) + 0..63 */
        int64_t cps = A->icg / 64;
        for (int64_t t = 0; t < A->KS; t++) {
            int64_t tap = t / cps, c0 = (t % cps) * 64, th = tap / A->kw, tw = tap % A->kw;
            for (int64_t e = 0; e < 64; e++)
                kmap[t * 64 + e] = ((c0 + e) * A->kh + th) * A->kw + tw;
        }
    } else if (A->wquads) {
        for (int64_t ci = 0; ci < A->icg; ci++)
            for (int64_t kh = 0; kh < A->kh; kh++)
                for (int64_t wq = 0; wq < kwq; wq++, q++) {
                    A->koff[q] = (int32_t)((ci * A->Hp + kh * A->dh) * A->Wp + wq * 4);
                    for (int64_t e = 0; e < 4; e++)
                        if (wq * 4 + e < A->kw)
                            kmap[q * 4 + e] = (ci * A->kh + kh) * A->kw + wq * 4 + e;
                }
    } else {
        for (int64_t cq = 0; cq < A->CQ; cq++)
            for (int64_t kh = 0; kh < A->kh; kh++)
                for (int64_t kw = 0; kw < A->kw; kw++, q++) {
                    A->koff[q] = (int32_t)(((cq * A->Hp + kh * A->dh) * A->Wp + kw * A->dw) * 4);
                    for (int64_t e = 0; e < 4; e++)
                        if (cq * 4 + e < A->icg)
                            kmap[q * 4 + e] = ((cq * 4 + e) * A->kh + kh) * A->kw + kw;
                }
    }
    /* quads past the end keep offset 0 (a valid address; their weights are 0) */
    for (int64_t grp = 0; grp < A->G; grp++)
        for (int64_t o = 0; o < A->ocg; o++) {
            const int32_t *src = w + (grp * A->ocg + o) * A->K;
            int8_t *dst = A->w + (grp * A->nct + o / 16) * A->KS * 2 * CPU_AMX_TILE + (o % 16) * 4;
            for (int64_t k = 0; k < KP; k++) {
                if (kmap[k] < 0)
                    continue;
                int32_t v = src[kmap[k]];
                int64_t t = k / 64, r = (k % 64) / 4, e = k % 4;
                int8_t *p = dst + t * 2 * CPU_AMX_TILE + r * 64 + e;
                p[0] = (int8_t)(uint8_t)(v & 0xFF);
                p[CPU_AMX_TILE] = (int8_t)(v >> 8);
            }
        }
    free(kmap);
    return 0;
}

void cpu_amx_release(cpu_amx_layer *A)
{
    free(A->koff);
    free(A->w);
    A->koff = NULL;
    A->w = NULL;
}

/* ---- digit planes ------------------------------------------------------ */

/* Bytes per sample of the direct layout, all digits. */
static int64_t direct_sample_bytes(const cpu_amx_layer *A, int nd)
{
    return A->nph * A->Hq * A->Wq * nd * A->G * A->icg;
}

static int64_t gathered_plane_bytes(const cpu_amx_layer *A, int64_t nb)
{
    /* slack: width quads read up to 3 bytes past a row, gathers 4 bytes */
    return (nb * A->G * A->plane + 64 + 63) & ~(int64_t)63;
}

int64_t cpu_amx_digit_bytes(const cpu_amx_layer *A, int nd, int64_t nb)
{
    if (A->direct) /* slack: a tile pair's rows past the last column */
        return nb * direct_sample_bytes(A, nd) + 32 * A->G * A->icg + 64;
    return gathered_plane_bytes(A, nb) * nd;
}

void cpu_amx_clear_slack(const cpu_amx_layer *A, const cpu_amx_digits *D)
{
    if (A->direct) {
        int64_t data = D->nb * direct_sample_bytes(A, D->nd);
        memset(D->dig + data, 0, (size_t)(cpu_amx_digit_bytes(A, D->nd, D->nb) - data));
        return;
    }
    int64_t ds = gathered_plane_bytes(A, D->nb), data = D->nb * A->G * A->plane;
    for (int i = 0; i < D->nd; i++)
        memset(D->dig + i * ds + data, 0, (size_t)(ds - data));
}

void cpu_amx_offsets(const cpu_amx_layer *A, int nd, int64_t *akoff)
{
    int64_t cps = A->icg / 64, Ct = A->G * A->icg;
    for (int64_t t = 0; t < A->KS; t++) {
        int64_t tap = t / cps, c0 = (t % cps) * 64, th = tap / A->kw, tw = tap % A->kw;
        int ph = (int)((th * A->dh) % A->sh * A->sw + (tw * A->dw) % A->sw), u = 0;
        while (A->phase[u] != ph)
            u++;
        akoff[t] = ((u * A->Hq + th * A->dh / A->sh) * A->Wq + tw * A->dw / A->sw) * nd * Ct + c0;
    }
}

int64_t cpu_amx_units(const cpu_amx_layer *A, int64_t nb)
{
    if (A->direct)
        return nb * A->nph * A->Hq;
    if (A->fc)
        return nb;
    return nb * A->G * (A->wquads ? A->icg : A->CQ);
}

#define DIG_C 0x8080808080808080ULL

/* Balanced digits of 8 elements: byte i of element e = digit i of it:
 * y = (x + 0x80..80) ^ 0x80..80. */
static inline __m512i digit_bytes(__m512i x)
{
    const __m512i C = _mm512_set1_epi64((long long)DIG_C);
    return _mm512_xor_si512(_mm512_add_epi64(x, C), C);
}

/* y with byte i of element e moved to byte 8i + e: qword i holds digit i of
 * the 8 elements. */
static inline __m512i digits8(__m512i x, __m512i perm)
{
    return _mm512_permutexvar_epi8(perm, digit_bytes(x));
}

static inline __m512i digit_perm(void)
{
    uint8_t idx[64];
    for (int i = 0; i < 8; i++)
        for (int e = 0; e < 8; e++)
            idx[i * 8 + e] = (uint8_t)(e * 8 + i);
    return _mm512_loadu_si512((const void *)idx);
}

/* One row of n inputs to bytes: dst[i * ds + p] = digit i of src[p]. */
static void row_bytes(const uint64_t *src, int64_t n, int nd, uint8_t *dst, int64_t ds)
{
    const __m512i perm = digit_perm();
    uint64_t tmp[8];
    for (int64_t p = 0; p < n; p += 8) {
        int64_t m = n - p < 8 ? n - p : 8;
        __m512i x = _mm512_maskz_loadu_epi64((__mmask8)((1u << m) - 1), (const void *)(src + p));
        _mm512_storeu_si512((void *)tmp, digits8(x, perm));
        for (int i = 0; i < nd; i++)
            memcpy(dst + i * ds + p, &tmp[i], (size_t)m);
    }
}

/* One row of n positions of 4 channels (src[j] NULL: a zero channel) to
 * dwords: dst[i * ds + 4p + j] = digit i of src[j][p]. */
static void row_quads(const uint64_t *const src[4], int64_t n, int nd, uint8_t *dst, int64_t ds)
{
    const __m512i perm = digit_perm();
    for (int64_t p = 0; p < n; p += 8) {
        int64_t m = n - p < 8 ? n - p : 8;
        __mmask8 lm = (__mmask8)((1u << m) - 1);
        __m512i y[4];
        for (int j = 0; j < 4; j++)
            y[j] = src[j] ? digits8(_mm512_maskz_loadu_epi64(lm, (const void *)(src[j] + p)), perm)
                          : _mm512_setzero_si512();
        /* per 128-bit lane L: digits 2L (lo) and 2L + 1 (hi) */
        __m512i a = _mm512_unpacklo_epi8(y[0], y[1]), a2 = _mm512_unpackhi_epi8(y[0], y[1]);
        __m512i b = _mm512_unpacklo_epi8(y[2], y[3]), b2 = _mm512_unpackhi_epi8(y[2], y[3]);
        __m512i q[4] = { _mm512_unpacklo_epi16(a, b), _mm512_unpackhi_epi16(a, b), _mm512_unpacklo_epi16(a2, b2),
                         _mm512_unpackhi_epi16(a2, b2) };
        /* q[0]/q[1] lane L: digit 2L, positions 0-3 / 4-7; q[2]/q[3]: digit 2L + 1 */
        __mmask8 m0 = (__mmask8)((1u << (m < 4 ? m : 4)) - 1), m1 = (__mmask8)((1u << (m > 4 ? m - 4 : 0)) - 1);
        uint32_t tq[4][16];
        for (int s = 0; s < 4; s++)
            _mm512_storeu_si512((void *)tq[s], q[s]);
        for (int i = 0; i < nd; i++) {
            int L = i / 2, h = (i & 1) * 2;
            uint8_t *d = dst + i * ds + p * 4;
            _mm_mask_storeu_epi32((void *)d, m0, _mm_loadu_si128((const __m128i *)(const void *)&tq[h][L * 4]));
            _mm_mask_storeu_epi32((void *)(d + 16), m1,
                                  _mm_loadu_si128((const __m128i *)(const void *)&tq[h + 1][L * 4]));
        }
    }
}

/* Direct layout, one phase row: Wq positions x nd digits x Ct channels.
 * Blocks of 8 channels x 8 positions: the digit bytes (position-major) are
 * transposed to channel-minor qwords and scattered to (position, digit). */
/* 8 x 8 qword transpose: r[j] lane i -> r[i] lane j. */
static inline void transpose8(__m512i r[8])
{
    __m512i a[4], b[4], u[4], v[4];
    for (int k = 0; k < 4; k++) {
        a[k] = _mm512_unpacklo_epi64(r[2 * k], r[2 * k + 1]);
        b[k] = _mm512_unpackhi_epi64(r[2 * k], r[2 * k + 1]);
    }
    u[0] = _mm512_shuffle_i64x2(a[0], a[1], 0x88), u[1] = _mm512_shuffle_i64x2(a[0], a[1], 0xDD);
    u[2] = _mm512_shuffle_i64x2(a[2], a[3], 0x88), u[3] = _mm512_shuffle_i64x2(a[2], a[3], 0xDD);
    v[0] = _mm512_shuffle_i64x2(b[0], b[1], 0x88), v[1] = _mm512_shuffle_i64x2(b[0], b[1], 0xDD);
    v[2] = _mm512_shuffle_i64x2(b[2], b[3], 0x88), v[3] = _mm512_shuffle_i64x2(b[2], b[3], 0xDD);
    r[0] = _mm512_shuffle_i64x2(u[0], u[2], 0x88), r[4] = _mm512_shuffle_i64x2(u[0], u[2], 0xDD);
    r[2] = _mm512_shuffle_i64x2(u[1], u[3], 0x88), r[6] = _mm512_shuffle_i64x2(u[1], u[3], 0xDD);
    r[1] = _mm512_shuffle_i64x2(v[0], v[2], 0x88), r[5] = _mm512_shuffle_i64x2(v[0], v[2], 0xDD);
    r[3] = _mm512_shuffle_i64x2(v[1], v[3], 0x88), r[7] = _mm512_shuffle_i64x2(v[1], v[3], 0xDD);
}

/* Direct layout, one phase row: Wq positions x nd digits x Ct channels.
 * Per block of 64 channels x 8 positions: the digit bytes of 8 channels
 * (position-major) are transposed in registers to qwords of 8 channels per
 * (position, digit); a qword transpose across the 8 channel blocks then
 * gives 64-byte runs of channels, stored whole. */
static void row_direct(const cpu_amx_layer *A, int nd, const uint64_t *in_b, int64_t h, int64_t pw, uint8_t *dst)
{
    const int64_t Ct = A->G * A->icg, HW = A->H * A->W, pstride = nd * Ct;
    const __m512i lane = _mm512_set_epi64(7, 6, 5, 4, 3, 2, 1, 0);
    const __m512i even = _mm512_set_epi64(14, 12, 10, 8, 6, 4, 2, 0);
    enum { CHUNK = 8 }; /* position blocks of 8 per pass */
    __m512i buf[CHUNK][8][8];
    for (int64_t c64 = 0; c64 < Ct; c64 += 64)
        for (int64_t wc = 0; wc < A->Wq; wc += 8 * CHUNK) {
            int64_t nblk = (A->Wq - wc + 7) / 8 < CHUNK ? (A->Wq - wc + 7) / 8 : CHUNK;
            /* channel blocks outer, positions inner: 8 input rows read in sequence */
            for (int cb = 0; cb < 8; cb++) {
                const uint64_t *rows = in_b + (c64 + cb * 8) * HW + h * A->W;
                for (int64_t k = 0; k < nblk; k++) {
                    int64_t wq0 = wc + 8 * k, np = A->Wq - wq0 < 8 ? A->Wq - wq0 : 8;
                    /* input column of each lane, and which lanes are inside the input */
                    int64_t w0 = wq0 * A->sw + pw - A->pl;
                    __m512i wv =
                        _mm512_add_epi64(_mm512_set1_epi64(w0), _mm512_mullo_epi64(lane, _mm512_set1_epi64(A->sw)));
                    __mmask8 valid = _mm512_cmplt_epu64_mask(wv, _mm512_set1_epi64(A->W)) & (__mmask8)((1u << np) - 1);
                    __mmask8 m2lo = 0, m2hi = 0;
                    if (A->sw == 2) { /* lanes of the loads at w0 and w0 + 8 inside the row */
                        __m512i u0 = _mm512_add_epi64(_mm512_set1_epi64(w0), lane);
                        m2lo = _mm512_cmplt_epu64_mask(u0, _mm512_set1_epi64(A->W));
                        m2hi = _mm512_cmplt_epu64_mask(_mm512_add_epi64(u0, _mm512_set1_epi64(8)),
                                                       _mm512_set1_epi64(A->W));
                    }
                    __m512i y[8];
                    for (int c = 0; c < 8; c++) {
                        const uint64_t *row = rows + c * HW;
                        __m512i x;
                        if (A->sw == 1) {
                            x = _mm512_maskz_loadu_epi64(valid,
                                                         (const void *)(uintptr_t)((uintptr_t)row + (uintptr_t)(w0 * 8)));
                        } else if (A->sw == 2) {
                            /* 16 consecutive inputs, the even ones */
                            const uint64_t *q = (const uint64_t *)(uintptr_t)((uintptr_t)row + (uintptr_t)(w0 * 8));
                            __m512i v0 = _mm512_maskz_loadu_epi64(m2lo, q), v1 = _mm512_maskz_loadu_epi64(m2hi, q + 8);
                            x = _mm512_maskz_permutex2var_epi64(valid, v0, even, v1);
                        } else {
                            x = _mm512_mask_i64gather_epi64(_mm512_setzero_si512(), valid, wv, (const void *)row, 8);
                        }
                        y[c] = digit_bytes(x);
                    }
                    /* y[c] byte 8p + i -> buf[k][4a + 2b + c][cb] qword 2L + e = 8
                     * channels of position 2L + a, digit 4b + 2c + e */
                    __m512i s1[2][4], s2[2][2][2];
                    for (int j = 0; j < 4; j++) {
                        s1[0][j] = _mm512_unpacklo_epi8(y[2 * j], y[2 * j + 1]);
                        s1[1][j] = _mm512_unpackhi_epi8(y[2 * j], y[2 * j + 1]);
                    }
                    for (int a = 0; a < 2; a++)
                        for (int j = 0; j < 2; j++) {
                            s2[a][0][j] = _mm512_unpacklo_epi16(s1[a][2 * j], s1[a][2 * j + 1]);
                            s2[a][1][j] = _mm512_unpackhi_epi16(s1[a][2 * j], s1[a][2 * j + 1]);
                        }
                    for (int a = 0; a < 2; a++)
                        for (int b = 0; b < 2; b++) {
                            buf[k][a * 4 + b * 2][cb] = _mm512_unpacklo_epi32(s2[a][b][0], s2[a][b][1]);
                            buf[k][a * 4 + b * 2 + 1][cb] = _mm512_unpackhi_epi32(s2[a][b][0], s2[a][b][1]);
                        }
                }
            }
            /* a qword transpose across the 8 channel blocks: 64-byte runs of channels */
            for (int64_t k = 0; k < nblk; k++) {
                int64_t wq0 = wc + 8 * k, np = A->Wq - wq0 < 8 ? A->Wq - wq0 : 8;
                uint8_t *d = dst + wq0 * pstride + c64;
                for (int r = 0; r < 8; r++) {
                    int a = r >> 2, b = (r >> 1) & 1, c = r & 1;
                    if (4 * b + 2 * c >= nd)
                        continue;
                    transpose8(buf[k][r]);
                    /* buf[k][r][q]: 64 channels of position 2(q / 2) + a, digit 4b + 2c + (q & 1) */
                    for (int q = 0; q < 8; q++) {
                        int64_t p = 2 * (q / 2) + a, i = 4 * b + 2 * c + (q & 1);
                        if (p < np && i < nd)
                            _mm512_storeu_si512((void *)(d + p * pstride + i * Ct), buf[k][r][q]);
                    }
                }
            }
        }
}

void cpu_amx_make_digits(const cpu_amx_layer *A, const cpu_amx_digits *D, const uint64_t *in, int64_t u)
{
    const int nd = D->nd;
    if (A->direct) {
        int64_t hq = u % A->Hq, pi = (u / A->Hq) % A->nph, b = u / A->Hq / A->nph;
        int64_t ph = A->phase[pi] / A->sw, pw = A->phase[pi] % A->sw;
        int64_t pstride = nd * A->G * A->icg;
        uint8_t *dst = D->dig + ((b * A->nph + pi) * A->Hq + hq) * A->Wq * pstride;
        int64_t h = hq * A->sh + ph - A->pt;
        if (h < 0 || h >= A->H)
            memset(dst, 0, (size_t)(A->Wq * pstride));
        else
            row_direct(A, nd, in + b * A->in_len, h, pw, dst);
        return;
    }
    const int64_t ds = gathered_plane_bytes(A, D->nb);
    if (A->fc) {
        uint8_t *dst = D->dig + u * A->plane;
        row_bytes(in + u * A->in_len, A->K, nd, dst, ds);
        for (int i = 0; i < nd; i++)
            memset(dst + i * ds + A->K, 0, (size_t)(A->plane - A->K));
        return;
    }
    int64_t per = A->wquads ? A->icg : A->CQ;
    int64_t c = u % per, grp = (u / per) % A->G, b = u / per / A->G;
    int64_t esz = A->wquads ? 1 : 4, rowb = A->Wp * esz;
    uint8_t *base = D->dig + (b * A->G + grp) * A->plane + c * A->Hp * rowb;
    int64_t HW = A->H * A->W;
    const uint64_t *src0 = in + b * A->in_len + grp * A->icg * HW;
    int64_t left = A->pl * esz, right = (A->Wp - A->pl - A->W) * esz;
    for (int64_t hp = 0; hp < A->Hp; hp++) {
        uint8_t *row = base + hp * rowb;
        int64_t h = hp - A->pt;
        if (h < 0 || h >= A->H) {
            for (int i = 0; i < nd; i++)
                memset(row + i * ds, 0, (size_t)rowb);
            continue;
        }
        for (int i = 0; i < nd; i++) {
            memset(row + i * ds, 0, (size_t)left);
            memset(row + i * ds + left + A->W * esz, 0, (size_t)right);
        }
        if (A->wquads) {
            row_bytes(src0 + c * HW + h * A->W, A->W, nd, row + left, ds);
        } else {
            const uint64_t *s[4];
            for (int j = 0; j < 4; j++)
                s[j] = c * 4 + j < A->icg ? src0 + (c * 4 + j) * HW + h * A->W : NULL;
            row_quads(s, A->W, nd, row + left, ds);
        }
    }
}

/* ---- tiles -------------------------------------------------------------- */

typedef struct tilecfg {
    uint8_t palette, start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} tilecfg;

/* Eight 16 x 64-byte tiles.  A constant: GCC 12's _tile_loadconfig tells the
 * compiler it reads only a pointer's worth of the configuration, so stores
 * to a local one could be dropped. */
static const tilecfg amx_cfg = {
    .palette = 1,
    .colsb = { 64, 64, 64, 64, 64, 64, 64, 64 },
    .rows = { 16, 16, 16, 16, 16, 16, 16, 16 },
};

void cpu_amx_begin(void)
{
    _tile_loadconfig(&amx_cfg);
}

void cpu_amx_end(void)
{
    _tile_release();
}

/* Two row tiles (a, a + a1) against one channel tile's u and h over nk
 * steps; step t's left tiles at a + ko[t] (rows `stride` apart), or at
 * a + t * CPU_AMX_TILE when ko is NULL (packed).  cb[0..3] = (a0, u),
 * (a0, h), (a1, u), (a1, h), 16 x 16 int32 each. */
static void dot2(const uint8_t *a, int64_t a1, const int64_t *ko, int64_t stride, const int8_t *b, int64_t nk,
                 int32_t *cb)
{
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t t = 0; t < nk; t++) {
        const uint8_t *at = a + (ko ? ko[t] : t * CPU_AMX_TILE);
        _tile_loadd(4, at, stride);
        _tile_loadd(6, b + t * 2 * CPU_AMX_TILE, 64);
        _tile_loadd(7, b + t * 2 * CPU_AMX_TILE + CPU_AMX_TILE, 64);
        _tile_loadd(5, at + a1, stride);
        _tile_dpbsud(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
        _tile_dpbsud(2, 5, 6);
        _tile_dpbssd(3, 5, 7);
    }
    _tile_stored(0, cb, 64);
    _tile_stored(1, cb + 256, 64);
    _tile_stored(2, cb + 512, 64);
    _tile_stored(3, cb + 768, 64);
}

static void dot1(const uint8_t *a, const int64_t *ko, int64_t stride, const int8_t *b, int64_t nk, int32_t *cb)
{
    _tile_zero(0);
    _tile_zero(1);
    for (int64_t t = 0; t < nk; t++) {
        _tile_loadd(4, a + (ko ? ko[t] : t * CPU_AMX_TILE), stride);
        _tile_loadd(6, b + t * 2 * CPU_AMX_TILE, 64);
        _tile_loadd(7, b + t * 2 * CPU_AMX_TILE + CPU_AMX_TILE, 64);
        _tile_dpbsud(0, 4, 6);
        _tile_dpbssd(1, 4, 7);
    }
    _tile_stored(0, cb, 64);
    _tile_stored(1, cb + 256, 64);
}

/* A row group: `real` consecutive output columns from column c (one output
 * row unless the layout is flat), rows c * nd + i. */
typedef struct rgroup {
    int64_t c, real;
    int64_t abase;      /* direct: digit-buffer offset of row 0 */
    int64_t cinfo;      /* index of its first column in the task's column info */
} rgroup;

typedef struct colinfo {
    int64_t base;       /* gathered: digit-plane offset of the column's (0, 0) tap */
    int64_t out;        /* output index of channel 0 */
} colinfo;

static int64_t group_cols(int nd)
{
    return 32 / nd;
}

int64_t cpu_amx_groups(const cpu_amx_layer *A, int nd, int64_t nb)
{
    int64_t cols = group_cols(nd);
    if (A->direct && !A->flat)
        return nb * A->out_h * ((A->out_w + cols - 1) / cols);
    return (nb * A->P + cols - 1) / cols;
}

size_t cpu_amx_scratch_bytes(const cpu_amx_layer *A, int nd, int64_t ngroups)
{
    size_t panel = A->direct ? 0 : (size_t)(ngroups * 2 * A->KS) * CPU_AMX_TILE;
    return panel + 8 * CPU_AMX_TILE + (size_t)ngroups * sizeof(rgroup) +
           (size_t)(ngroups * group_cols(nd)) * sizeof(colinfo);
}

static void group_at(const cpu_amx_layer *A, int nd, int64_t nb, int64_t gi, rgroup *g)
{
    int64_t cols = group_cols(nd);
    if (A->direct && !A->flat) {
        int64_t gpr = (A->out_w + cols - 1) / cols, r = gi / gpr, k = gi % gpr;
        g->c = r * A->out_w + k * cols;
        g->real = A->out_w - k * cols < cols ? A->out_w - k * cols : cols;
    } else {
        g->c = gi * cols;
        g->real = nb * A->P - g->c < cols ? nb * A->P - g->c : cols;
    }
}

static void col_info(const cpu_amx_layer *A, int nd, int64_t grp, int64_t c, colinfo *ci, int64_t *abase)
{
    int64_t b = c / A->P, pos = c % A->P;
    int64_t oh = pos / A->out_w, ow = pos % A->out_w;
    if (A->direct) {
        int64_t Ct = A->G * A->icg;
        *abase = (((b * A->nph) * A->Hq + oh) * A->Wq + ow) * nd * Ct + grp * A->icg;
        ci->base = 0;
    } else {
        int64_t esz = A->fc ? 1 : (A->wquads ? 1 : 4);
        ci->base = (b * A->G + grp) * A->plane + (oh * A->sh * A->Wp + ow * A->sw) * esz;
    }
    ci->out = b * A->out_len + grp * A->ocg * A->P + pos;
}

/* Gather the digit rows of one row group into two consecutive [KS][16][64] tiles. */
static void pack_group(const cpu_amx_layer *A, const cpu_amx_digits *D, const colinfo *ci, int64_t real,
                       uint8_t *panel)
{
    const int nd = D->nd;
    const int64_t KS = A->KS, ds = gathered_plane_bytes(A, D->nb);
    int rows = real * nd <= 16 ? 16 : 32;
    for (int r = 0; r < rows; r++) {
        int64_t c = r / nd;
        int i = r % nd;
        uint8_t *dst = panel + (r / 16) * KS * CPU_AMX_TILE + (r % 16) * 64;
        if (c >= real) {
            for (int64_t t = 0; t < KS; t++)
                _mm512_storeu_si512((void *)(dst + t * CPU_AMX_TILE), _mm512_setzero_si512());
            continue;
        }
        const void *src = D->dig + i * ds;
        __m512i b = _mm512_set1_epi32((int)ci[c].base);
        for (int64_t t = 0; t < KS; t++) {
            __m512i idx = _mm512_add_epi32(b, _mm512_loadu_si512((const void *)(A->koff + t * 16)));
            _mm512_storeu_si512((void *)(dst + t * CPU_AMX_TILE), _mm512_i32gather_epi32(idx, src, 1));
        }
    }
}

/* The 64-bit sums of column c, channels 0-7 (lo) and 8-15 (hi), mod 2^64:
 * sum_m t_m 2^(8m), t_m = L[c][m] + H[c][m-1], the t_m with m >= m0 (needed
 * mod 2^32 at most) combined in 32 bits. */
static inline void column_sums(const int32_t *cb, int64_t c, int nd, int m0, __m512i *lo, __m512i *hi)
{
    __m512i l = _mm512_setzero_si512(), h = _mm512_setzero_si512(), wsum = _mm512_setzero_si512();
    for (int m = 0; m < nd; m++) {
        int64_t r = c * nd + m;
        __m512i t = _mm512_loadu_si512((const void *)(cb + (r / 16) * 512 + (r % 16) * 16));
        if (m > 0) {
            int64_t rp = r - 1;
            t = _mm512_add_epi32(t, _mm512_loadu_si512((const void *)(cb + (rp / 16) * 512 + 256 + (rp % 16) * 16)));
        }
        if (m < m0) {
            __m128i sh = _mm_cvtsi32_si128(8 * m);
            l = _mm512_add_epi64(l, _mm512_sll_epi64(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(t)), sh));
            h = _mm512_add_epi64(h, _mm512_sll_epi64(_mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(t, 1)), sh));
        } else {
            wsum = _mm512_add_epi32(wsum, _mm512_sll_epi32(t, _mm_cvtsi32_si128(8 * (m - m0))));
        }
    }
    if (m0 < nd) {
        __m128i sh = _mm_cvtsi32_si128(8 * m0);
        l = _mm512_add_epi64(l, _mm512_sll_epi64(_mm512_cvtepi32_epi64(_mm512_castsi512_si256(wsum)), sh));
        h = _mm512_add_epi64(h, _mm512_sll_epi64(_mm512_cvtepi32_epi64(_mm512_extracti64x4_epi64(wsum, 1)), sh));
    }
    *lo = l, *hi = h;
}

/* Combine one row group's sums (cb: [tile][u, h][16 rows][16 channels]) into
 * the outputs of its columns, channels ch0 + 0..15 (of which nch are real).
 * first: write (else add to what earlier windows wrote); last: reduce mod 2^l.
 * Columns consecutive in the output are transposed and stored channel by
 * channel; others are scattered. */
static void combine(const cpu_amx_layer *A, const cpu_amx_digits *D, const int32_t *cb, const colinfo *ci,
                    int64_t real, int64_t ch0, int64_t nch, int first, int last, uint64_t *out)
{
    const int nd = D->nd;
    const unsigned l = D->l;
    const int m0 = l > 32 ? (int)(l - 32 + 7) / 8 : 0;
    const __m512i mk = _mm512_set1_epi64((long long)(!last || l >= 64 ? ~0ULL : (1ULL << l) - 1));
    for (int64_t c0 = 0; c0 < real; c0 += 8) {
        int64_t cnt = real - c0 < 8 ? real - c0 : 8;
        int contiguous = first;
        for (int64_t j = 1; j < cnt && contiguous; j++)
            contiguous = ci[c0 + j].out == ci[c0].out + j;
        if (contiguous) {
            __m512i lo[8], hi[8];
            for (int64_t j = 0; j < 8; j++) {
                if (j < cnt) {
                    column_sums(cb, c0 + j, nd, m0, &lo[j], &hi[j]);
                    lo[j] = _mm512_and_si512(lo[j], mk);
                    hi[j] = _mm512_and_si512(hi[j], mk);
                } else {
                    lo[j] = hi[j] = _mm512_setzero_si512();
                }
            }
            transpose8(lo);
            transpose8(hi);
            __mmask8 cm = (__mmask8)((1u << cnt) - 1);
            uint64_t *o = out + ci[c0].out + ch0 * A->P;
            for (int64_t k = 0; k < nch; k++)
                _mm512_mask_storeu_epi64((void *)(o + k * A->P), cm, k < 8 ? lo[k] : hi[k - 8]);
            continue;
        }
        int64_t chofs[16];
        for (int k = 0; k < 16; k++)
            chofs[k] = (ch0 + k) * A->P;
        const __m512i chofs_lo = _mm512_loadu_si512((const void *)chofs);
        const __m512i chofs_hi = _mm512_loadu_si512((const void *)(chofs + 8));
        __mmask8 mlo = (__mmask8)(nch >= 8 ? 0xFF : (1u << nch) - 1);
        __mmask8 mhi = (__mmask8)(nch >= 16 ? 0xFF : (nch > 8 ? (1u << (nch - 8)) - 1 : 0));
        for (int64_t c = c0; c < c0 + cnt; c++) {
            __m512i lo, hi;
            column_sums(cb, c, nd, m0, &lo, &hi);
            __m512i ob = _mm512_set1_epi64(ci[c].out);
            __m512i ilo = _mm512_add_epi64(ob, chofs_lo), ihi = _mm512_add_epi64(ob, chofs_hi);
            if (!first) {
                lo = _mm512_add_epi64(lo, _mm512_mask_i64gather_epi64(_mm512_setzero_si512(), mlo, ilo, out, 8));
                hi = _mm512_add_epi64(hi, _mm512_mask_i64gather_epi64(_mm512_setzero_si512(), mhi, ihi, out, 8));
            }
            _mm512_mask_i64scatter_epi64(out, mlo, ilo, _mm512_and_si512(lo, mk), 8);
            if (mhi)
                _mm512_mask_i64scatter_epi64(out, mhi, ihi, _mm512_and_si512(hi, mk), 8);
        }
    }
}

void cpu_amx_task(const cpu_amx_layer *A, const cpu_amx_digits *D, int64_t grp, int64_t g0, int64_t g1,
                  int64_t ct0, int64_t ct1, uint64_t *out, void *scratch)
{
    const int nd = D->nd;
    const int64_t KS = A->KS, ng = g1 - g0, Ct = A->G * A->icg;
    uint8_t *panel = scratch;
    size_t pbytes = A->direct ? 0 : (size_t)(ng * 2 * KS) * CPU_AMX_TILE;
    int32_t *cb = (int32_t *)(void *)(panel + pbytes);
    rgroup *gs = (rgroup *)(void *)(cb + 2 * 1024);
    colinfo *ci = (colinfo *)(void *)(gs + ng);
    int64_t nci = 0;
    for (int64_t gi = 0; gi < ng; gi++) {
        rgroup *g = &gs[gi];
        group_at(A, nd, D->nb, g0 + gi, g);
        g->cinfo = nci;
        for (int64_t c = 0; c < g->real; c++, nci++) {
            int64_t ab = 0;
            col_info(A, nd, grp, g->c + c, &ci[nci], &ab);
            if (c == 0)
                g->abase = ab;
        }
        if (!A->direct)
            pack_group(A, D, ci + g->cinfo, g->real, panel + (size_t)(gi * 2 * KS) * CPU_AMX_TILE);
    }
    /* Software-pipelined by one: the tile products of an item run while
     * the previous item's sums are combined (two result buffers). */
    int have = 0;
    const rgroup *pg = NULL;
    int64_t pct = 0, pnch = 0, pt0 = 0, pnk = 0;
    int pbuf = 0;
    for (int64_t ct = ct0; ct < ct1; ct++) {
        const int8_t *wb = A->w + (grp * A->nct + ct) * KS * 2 * CPU_AMX_TILE;
        int64_t nch = A->ocg - ct * 16 < 16 ? A->ocg - ct * 16 : 16;
        for (int64_t gi = 0; gi < ng; gi++) {
            const rgroup *g = &gs[gi];
            const uint8_t *a;
            const int64_t *ko;
            int64_t stride, a1;
            if (A->direct) {
                a = D->dig + g->abase, ko = D->akoff, stride = Ct, a1 = 16 * Ct;
            } else {
                a = panel + (size_t)(gi * 2 * KS) * CPU_AMX_TILE, ko = NULL, stride = 64, a1 = KS * CPU_AMX_TILE;
            }
            for (int64_t t0 = 0; t0 < KS; t0 += CPU_AMX_WINDOW) {
                int64_t nk = KS - t0 < CPU_AMX_WINDOW ? KS - t0 : CPU_AMX_WINDOW;
                const uint8_t *at = ko ? a : a + t0 * CPU_AMX_TILE;
                const int64_t *kt = ko ? ko + t0 : NULL;
                int32_t *cbi = cb + (have ? 1 - pbuf : 0) * 1024;
                if (g->real * nd <= 16)
                    dot1(at, kt, stride, wb + t0 * 2 * CPU_AMX_TILE, nk, cbi);
                else
                    dot2(at, a1, kt, stride, wb + t0 * 2 * CPU_AMX_TILE, nk, cbi);
                if (have)
                    combine(A, D, cb + pbuf * 1024, ci + pg->cinfo, pg->real, pct * 16, pnch, pt0 == 0,
                            pt0 + pnk == KS, out);
                pbuf = have ? 1 - pbuf : 0;
                have = 1, pg = g, pct = ct, pnch = nch, pt0 = t0, pnk = nk;
            }
        }
    }
    if (have)
        combine(A, D, cb + pbuf * 1024, ci + pg->cinfo, pg->real, pct * 16, pnch, pt0 == 0, pt0 + pnk == KS, out);
}

#else

int cpu_amx_supported(char *why, size_t n)
{
    if (n)
        snprintf(why, n, "the plugin was built without AMX support");
    return 0;
}

int cpu_amx_prepare(cpu_amx_layer *A, const te_linear_geom *g, const int32_t *w)
{
    (void)g, (void)w;
    memset(A, 0, sizeof *A);
    return 1;
}

void cpu_amx_release(cpu_amx_layer *A)
{
    free(A->koff);
    free(A->w);
    A->koff = NULL;
    A->w = NULL;
}

int64_t cpu_amx_digit_bytes(const cpu_amx_layer *A, int nd, int64_t nb)
{
    (void)A, (void)nd, (void)nb;
    return 0;
}

void cpu_amx_offsets(const cpu_amx_layer *A, int nd, int64_t *akoff)
{
    (void)A, (void)nd, (void)akoff;
}

void cpu_amx_clear_slack(const cpu_amx_layer *A, const cpu_amx_digits *D)
{
    (void)A, (void)D;
}

int64_t cpu_amx_units(const cpu_amx_layer *A, int64_t nb)
{
    (void)A, (void)nb;
    return 0;
}

void cpu_amx_make_digits(const cpu_amx_layer *A, const cpu_amx_digits *D, const uint64_t *in, int64_t u)
{
    (void)A, (void)D, (void)in, (void)u;
}

void cpu_amx_begin(void)
{
}

void cpu_amx_end(void)
{
}

int64_t cpu_amx_groups(const cpu_amx_layer *A, int nd, int64_t nb)
{
    (void)A, (void)nd, (void)nb;
    return 0;
}

size_t cpu_amx_scratch_bytes(const cpu_amx_layer *A, int nd, int64_t ngroups)
{
    (void)A, (void)nd, (void)ngroups;
    return 0;
}

void cpu_amx_task(const cpu_amx_layer *A, const cpu_amx_digits *D, int64_t grp, int64_t g0, int64_t g1,
                  int64_t ct0, int64_t ct1, uint64_t *out, void *scratch)
{
    (void)A, (void)D, (void)grp, (void)g0, (void)g1, (void)ct0, (void)ct1, (void)out, (void)scratch;
}

#endif
