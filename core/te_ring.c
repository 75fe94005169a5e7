#include "te_ring.h"

#include <math.h>
#include <string.h>

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define TE_HOST_LE 1
#else
#define TE_HOST_LE 0
#endif

void te_ring_vadd(uint64_t *out, const uint64_t *a, const uint64_t *b, size_t n, unsigned l)
{
    const uint64_t m = te_ring_mask(l);
    for (size_t i = 0; i < n; i++)
        out[i] = (a[i] + b[i]) & m;
}

void te_ring_vsub(uint64_t *out, const uint64_t *a, const uint64_t *b, size_t n, unsigned l)
{
    const uint64_t m = te_ring_mask(l);
    for (size_t i = 0; i < n; i++)
        out[i] = (a[i] - b[i]) & m;
}

te_status te_fx_encode(const float *v, size_t n, int frac_bits, int64_t *out, te_err *err)
{
    const double lim = 4611686018427387904.0; /* 2^62 */
    for (size_t i = 0; i < n; i++) {
        double d = ldexp((double)v[i], frac_bits);
        if (!isfinite(d) || fabs(d) >= lim)
            return te_errf(err, TE_EOVERFLOW,
                           "fixed-point encode: value %g at index %zu does not fit with %d fraction bits",
                           (double)v[i], i, frac_bits);
        out[i] = (int64_t)round(d); /* round() rounds half away from zero */
    }
    return TE_OK;
}

/* ---- bit packing ---- */

size_t te_pack_bytes(size_t n, unsigned l)
{
    /* ceil(n*l/8) without overflowing for large n */
    return (n / 8) * l + ((n % 8) * l + 7) / 8;
}

static inline void store64le(uint8_t *p, uint64_t v)
{
#if TE_HOST_LE
    memcpy(p, &v, 8);
#else
    for (int k = 0; k < 8; k++)
        p[k] = (uint8_t)(v >> (8 * k));
#endif
}

static inline uint64_t load64le(const uint8_t *p)
{
#if TE_HOST_LE
    uint64_t v;
    memcpy(&v, p, 8);
    return v;
#else
    uint64_t v = 0;
    for (int k = 0; k < 8; k++)
        v |= (uint64_t)p[k] << (8 * k);
    return v;
#endif
}

/* The generic packer (any n): also the tail after the 8-element groups. */
static void pack_generic(const uint64_t *in, size_t n, unsigned l, uint8_t *out)
{
    const uint64_t m = te_ring_mask(l);
    uint64_t acc = 0;
    unsigned fill = 0; /* bits in acc, always < 64 between iterations */
    uint8_t *p = out;
    for (size_t i = 0; i < n; i++) {
        uint64_t v = in[i] & m;
        acc |= v << fill;
        if (fill + l >= 64) {
            store64le(p, acc);
            p += 8;
            unsigned used = 64 - fill; /* bits of v already written */
            acc = used < 64 ? v >> used : 0;
            fill = fill + l - 64;
        } else {
            fill += l;
        }
    }
    for (unsigned k = 0; k < fill; k += 8) {
        *p++ = (uint8_t)acc;
        acc >>= 8;
    }
}


#if defined(__GNUC__) || defined(__clang__)
#define TE_INLINE static inline __attribute__((always_inline))
#else
#define TE_INLINE static inline
#endif

/* First rem (< 8) bytes at p as a little-endian word, the rest zero. */
TE_INLINE uint64_t load_partial_le(const uint8_t *p, unsigned rem)
{
    uint64_t v = 0;
    for (unsigned k = 0; k < rem; k++)
        v |= (uint64_t)p[k] << (8 * k);
    return v;
}

#if TE_HAVE_INT128
/* Eight elements of l bits are exactly l bytes, so groups of 8 pack and
 * unpack independently; instantiated for each constant l below, the
 * unrolled loops reduce to fixed shifts and stores. */
TE_INLINE void pack_groups(const uint64_t *in, size_t groups, unsigned l, uint8_t *out)
{
    const uint64_t m = te_ring_mask(l);
    for (size_t g = 0; g < groups; g++, in += 8, out += l) {
        unsigned __int128 acc = 0;
        unsigned fill = 0;
        uint8_t *p = out;
#pragma GCC unroll 8
        for (unsigned k = 0; k < 8; k++) {
            acc |= (unsigned __int128)(in[k] & m) << fill;
            fill += l;
            if (fill >= 64) {
                store64le(p, (uint64_t)acc);
                p += 8;
                acc >>= 64;
                fill -= 64;
            }
        }
#pragma GCC unroll 8
        for (unsigned b = 0; b < fill; b += 8) {
            *p++ = (uint8_t)acc;
            acc >>= 8;
        }
    }
}

#endif

TE_INLINE void unpack_groups(const uint8_t *in, size_t groups, unsigned l, uint64_t *out)
{
    const uint64_t m = te_ring_mask(l);
    const unsigned full = l / 8, rem = l % 8;
    for (size_t g = 0; g < groups; g++, in += l, out += 8) {
        uint64_t w[9];
#pragma GCC unroll 8
        for (unsigned j = 0; j < full; j++)
            w[j] = load64le(in + 8 * j);
        w[full] = rem ? load_partial_le(in + 8 * full, rem) : 0;
#pragma GCC unroll 8
        for (unsigned k = 0; k < 8; k++) {
            unsigned bit = k * l, j = bit / 64, sh = bit % 64;
            uint64_t v = w[j] >> sh;
            if (sh && sh + l > 64)
                v |= w[j + 1] << (64 - sh);
            out[k] = v & m;
        }
    }
}

#define TE_L8(X, b) X(b + 1) X(b + 2) X(b + 3) X(b + 4) X(b + 5) X(b + 6) X(b + 7) X(b + 8)
#define TE_ALL_WIDTHS(X) TE_L8(X, 0) TE_L8(X, 8) TE_L8(X, 16) TE_L8(X, 24) TE_L8(X, 32) TE_L8(X, 40) \
    TE_L8(X, 48) TE_L8(X, 56)

/* Returns 0 (nothing done) for a width outside 1..64, and always without a
 * 128-bit type: pack_generic then packs everything (same bytes). */
static int pack_groups_any(const uint64_t *in, size_t groups, unsigned l, uint8_t *out)
{
#if TE_HAVE_INT128
    switch (l) {
#define TE_PACK_CASE(L) case L: pack_groups(in, groups, L, out); return 1;
    TE_ALL_WIDTHS(TE_PACK_CASE)
#undef TE_PACK_CASE
    default: return 0;
    }
#else
    (void)in, (void)groups, (void)l, (void)out;
    return 0;
#endif
}

static int unpack_groups_any(const uint8_t *in, size_t groups, unsigned l, uint64_t *out)
{
    switch (l) {
#define TE_UNPACK_CASE(L) case L: unpack_groups(in, groups, L, out); return 1;
    TE_ALL_WIDTHS(TE_UNPACK_CASE)
#undef TE_UNPACK_CASE
    default: return 0;
    }
}

void te_pack(const uint64_t *in, size_t n, unsigned l, uint8_t *out)
{
    size_t groups = n / 8;
    if (groups && pack_groups_any(in, groups, l, out)) {
        in += groups * 8;
        out += groups * l;
        n -= groups * 8;
    }
    pack_generic(in, n, l, out);
}

/* Next 64 bits of the stream; bytes past the end read as zero. */
static inline uint64_t load_word(const uint8_t *in, size_t len, size_t *pos)
{
    uint64_t w;
    if (*pos + 8 <= len) {
        w = load64le(in + *pos);
        *pos += 8;
    } else {
        w = 0;
        for (unsigned k = 0; *pos < len; k++)
            w |= (uint64_t)in[(*pos)++] << (8 * k);
    }
    return w;
}

static te_status unpack_tail(const uint8_t *in, size_t len, size_t n, unsigned l, uint64_t *out, size_t n_total,
                             te_err *err);

te_status te_unpack(const uint8_t *in, size_t len, size_t n, unsigned l, uint64_t *out, te_err *err)
{
    if (l < 1 || l > 64)
        return te_errf(err, TE_EINVAL, "unpack: ring width %u out of range 1..64", l);
    size_t want = te_pack_bytes(n, l);
    if (len != want)
        return te_errf(err, TE_EFORMAT, "unpack: %zu bytes for %zu elements of %u bits, expected %zu",
                       len, n, l, want);
    const size_t n_total = n;
    size_t groups = n / 8;
    if (groups && unpack_groups_any(in, groups, l, out)) {
        in += groups * l;
        len -= groups * l;
        out += groups * 8;
        n -= groups * 8;
    }
    return unpack_tail(in, len, n, l, out, n_total, err);
}

/* The generic unpacker (any n, len already checked): also the tail after the
 * 8-element groups; checks the padding. */
static te_status unpack_tail(const uint8_t *in, size_t len, size_t n, unsigned l, uint64_t *out, size_t n_total,
                             te_err *err)
{
    const uint64_t m = te_ring_mask(l);
    uint64_t acc = 0;
    unsigned avail = 0; /* valid bits in acc, always < 64 */
    size_t pos = 0;
    for (size_t i = 0; i < n; i++) {
        if (avail >= l) {
            out[i] = acc & m;
            acc = l < 64 ? acc >> l : 0;
            avail -= l;
        } else {
            uint64_t w = load_word(in, len, &pos);
            unsigned need = l - avail; /* 1..64 */
            out[i] = (acc | (w << avail)) & m;
            acc = need < 64 ? w >> need : 0;
            avail = 64 - need;
        }
    }
    /* every byte has been loaded; whatever remains must be zero padding */
    if (pos != len || acc != 0)
        return te_errf(err, TE_EFORMAT, "unpack: nonzero padding bits after %zu elements of %u bits", n_total, l);
    return TE_OK;
}

/* ---- F_p, p = 2^61 - 1 ---- */

uint64_t te_fp_from_signed(int64_t v)
{
    if (v >= 0)
        return (uint64_t)v % TE_P61;
    uint64_t mag = (uint64_t)0 - (uint64_t)v; /* |v|, exact also for INT64_MIN */
    uint64_t r = mag % TE_P61;
    return r ? TE_P61 - r : 0;
}

/* Signed 128-bit accumulation: a[i] < 2^61 and |x[i]| <= 2^(l-1), so each
 * product a[i] * x[i] has magnitude < 2^(60+l) and 2^(66-l) of them sum to
 * less than 2^126: the block length before a reduction is chosen from l
 * (4 at l = 64, effectively unbounded at the widths layers use).  The
 * accumulator is __int128, or two's complement in two words without it. */
#if TE_HAVE_INT128
typedef __int128 acc128;
#define ACC_ZERO 0
static inline void acc_madd(acc128 *s, uint64_t a, int64_t x)
{
    *s += (__int128)(int64_t)a * x;
}
static inline uint64_t fp_from_acc(acc128 v)
{
    unsigned __int128 m = v >= 0 ? (unsigned __int128)v : (unsigned __int128)(-v); /* |v| < 2^126 */
    uint64_t r = te_fp_reduce_hl((uint64_t)(m >> 64), (uint64_t)m);
    return v >= 0 || !r ? r : TE_P61 - r;
}
#else
typedef struct acc128 {
    uint64_t lo, hi;
} acc128;
#define ACC_ZERO { 0, 0 }
static inline void acc_madd(acc128 *s, uint64_t a, int64_t x)
{
    uint64_t mag = x < 0 ? (uint64_t)0 - (uint64_t)x : (uint64_t)x;
    uint64_t lo, hi = te_mul64_hi(a, mag, &lo);
    if (x < 0) { /* negate the 128-bit product */
        lo = ~lo + 1;
        hi = ~hi + (lo == 0);
    }
    s->lo += lo;
    s->hi += hi + (s->lo < lo);
}
static inline uint64_t fp_from_acc(acc128 v)
{
    int neg = (int64_t)v.hi < 0;
    if (neg) {
        v.lo = ~v.lo + 1;
        v.hi = ~v.hi + (v.lo == 0);
    }
    uint64_t r = te_fp_reduce_hl(v.hi, v.lo);
    return !neg || !r ? r : TE_P61 - r;
}
#endif

static inline size_t fp_block(unsigned l)
{
    return l >= 64 ? 4 : l <= 34 ? ((size_t)1 << 30) : ((size_t)1 << (66 - l));
}

/* Lift of a ring element of width l (l in 1..64) to a signed integer:
 * (v ^ 2^(l-1)) - 2^(l-1), computed in uint64_t (exact mod 2^64). */
static inline int64_t lift_l(uint64_t v, uint64_t half)
{
    return (int64_t)((v ^ half) - half);
}

uint64_t te_fp_dot_small(const uint64_t *a, const int64_t *x, size_t n, unsigned l)
{
    const size_t blk = fp_block(l);
    uint64_t acc = 0;
    size_t i = 0;
    while (i < n) {
        size_t end = n - i > blk ? i + blk : n;
        acc128 s0 = ACC_ZERO, s1 = ACC_ZERO;
        for (; i + 1 < end; i += 2) {
            acc_madd(&s0, a[i], x[i]);
            acc_madd(&s1, a[i + 1], x[i + 1]);
        }
        if (i < end) {
            acc_madd(&s0, a[i], x[i]);
            i++;
        }
        /* each of s0, s1 < 2^126 in magnitude */
        acc = te_fp_add(acc, fp_from_acc(s0));
        acc = te_fp_add(acc, fp_from_acc(s1));
    }
    return acc;
}

uint64_t te_fp_dot_signed(const uint64_t *a, const int64_t *x, size_t n)
{
    return te_fp_dot_small(a, x, n, 64);
}

uint64_t te_fp_dot_ring(const uint64_t *a, const uint64_t *x, size_t n, unsigned l)
{
    const uint64_t m = te_ring_mask(l), half = (uint64_t)1 << (l - 1);
    const size_t blk = fp_block(l);
    uint64_t acc = 0;
    size_t i = 0;
    while (i < n) {
        size_t end = n - i > blk ? i + blk : n;
        acc128 s0 = ACC_ZERO, s1 = ACC_ZERO;
        for (; i + 1 < end; i += 2) {
            acc_madd(&s0, a[i], lift_l(x[i] & m, half));
            acc_madd(&s1, a[i + 1], lift_l(x[i + 1] & m, half));
        }
        if (i < end) {
            acc_madd(&s0, a[i], lift_l(x[i] & m, half));
            i++;
        }
        acc = te_fp_add(acc, fp_from_acc(s0));
        acc = te_fp_add(acc, fp_from_acc(s1));
    }
    return acc;
}
