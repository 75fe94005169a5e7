/* Ring and fixed-point arithmetic shared by every part of twinedge.
 *
 * Ring elements of Z_2^l (1 <= l <= 64) are stored in uint64_t, reduced
 * (high 64-l bits zero).  Two's complement: an element v stands for the
 * signed integer v - 2^l when v >= 2^(l-1).
 *
 * The integrity check works over F_p, p = 2^61 - 1, with 128-bit
 * accumulation: elements of F_p are uint64_t in [0, p).
 *
 * 128-bit arithmetic uses the compiler's unsigned __int128 where it has one
 * (x86-64, aarch64) and a portable 64x64->128 emulation elsewhere (armhf and
 * other 32-bit targets).  Defining TE_RING_PORTABLE forces the portable path
 * so the tests can run it on x86-64 too; both give the same bits.
 */
#ifndef TE_RING_H
#define TE_RING_H

#include <stdint.h>
#include <stddef.h>
#include "te_error.h"

#define TE_P61 ((uint64_t)0x1FFFFFFFFFFFFFFFULL) /* 2^61 - 1 */

#if defined(__SIZEOF_INT128__) && !defined(TE_RING_PORTABLE)
#define TE_HAVE_INT128 1
#else
#define TE_HAVE_INT128 0
#endif

/* a * b = hi * 2^64 + lo, in 32-bit halves (no 128-bit type needed).
 * Always defined, so tests can pin it against __int128 where that exists. */
static inline uint64_t te_mul64_hi_portable(uint64_t a, uint64_t b, uint64_t *lo)
{
    uint64_t a0 = (uint32_t)a, a1 = a >> 32, b0 = (uint32_t)b, b1 = b >> 32;
    uint64_t p00 = a0 * b0, p01 = a0 * b1, p10 = a1 * b0, p11 = a1 * b1;
    uint64_t mid = (p00 >> 32) + (uint32_t)p01 + (uint32_t)p10; /* < 3 * 2^32: no overflow */
    *lo = (mid << 32) | (uint32_t)p00;
    return p11 + (p01 >> 32) + (p10 >> 32) + (mid >> 32);
}

/* a * b = hi * 2^64 + lo (returns hi). */
static inline uint64_t te_mul64_hi(uint64_t a, uint64_t b, uint64_t *lo)
{
#if TE_HAVE_INT128
    unsigned __int128 v = (unsigned __int128)a * b;
    *lo = (uint64_t)v;
    return (uint64_t)(v >> 64);
#else
    return te_mul64_hi_portable(a, b, lo);
#endif
}

/* a > b for a size that may be narrower than 64 bits (size_t on armhf): a
 * function, so 32-bit builds do not flag the comparison as always false
 * (-Wtype-limits); it matters on 64-bit ones. */
static inline int te_size_exceeds(uint64_t a, uint64_t b)
{
    return a > b;
}

static inline uint64_t te_ring_mask(unsigned l)
{
    return l >= 64 ? ~(uint64_t)0 : (((uint64_t)1 << l) - 1);
}
static inline uint64_t te_ring_reduce(uint64_t v, unsigned l) { return v & te_ring_mask(l); }
static inline uint64_t te_ring_add(uint64_t a, uint64_t b, unsigned l) { return (a + b) & te_ring_mask(l); }
static inline uint64_t te_ring_sub(uint64_t a, uint64_t b, unsigned l) { return (a - b) & te_ring_mask(l); }
static inline uint64_t te_ring_mul(uint64_t a, uint64_t b, unsigned l) { return (a * b) & te_ring_mask(l); }
/* Signed integer -> ring element. */
static inline uint64_t te_ring_from_signed(int64_t v, unsigned l) { return (uint64_t)v & te_ring_mask(l); }
/* Ring element -> signed integer in [-2^(l-1), 2^(l-1)). */
static inline int64_t te_ring_to_signed(uint64_t v, unsigned l)
{
    if (l >= 64)
        return (int64_t)v;
    uint64_t half = (uint64_t)1 << (l - 1);
    return (v & half) ? (int64_t)(v | ~te_ring_mask(l)) : (int64_t)v;
}

/* Vector forms: out[i] = a[i] +/- b[i] mod 2^l (out may alias a or b). */
void te_ring_vadd(uint64_t *out, const uint64_t *a, const uint64_t *b, size_t n, unsigned l);
void te_ring_vsub(uint64_t *out, const uint64_t *a, const uint64_t *b, size_t n, unsigned l);

/* Fixed point: round(v * 2^f) (round half away from zero), checked: returns
 * TE_EOVERFLOW if |v * 2^f| >= 2^62 or v is not finite. */
te_status te_fx_encode(const float *v, size_t n, int frac_bits, int64_t *out, te_err *err);

/* Bit packing: n elements of l bits each, little-endian bit order, into
 * te_pack_bytes(n, l) bytes (the last byte zero-padded). */
size_t te_pack_bytes(size_t n, unsigned l);
void te_pack(const uint64_t *in, size_t n, unsigned l, uint8_t *out);
/* Returns TE_EFORMAT if len != te_pack_bytes(n, l) or padding bits are not zero. */
te_status te_unpack(const uint8_t *in, size_t len, size_t n, unsigned l, uint64_t *out, te_err *err);

/* F_p arithmetic, p = 2^61 - 1. */
/* 2^61 == 1 (mod p): fold the high bits onto the low ones.  For x < 2^64:
 * (x & p) + (x >> 61) < 2^61 + 8. */
static inline uint64_t te_fp_fold61(uint64_t x)
{
    return (x & TE_P61) + (x >> 61);
}
/* (hi * 2^64 + lo) mod p, any hi and lo. */
static inline uint64_t te_fp_reduce_hl(uint64_t hi, uint64_t lo)
{
    /* hi * 2^64 == 8 * hi (mod p); reduce hi below p first so 8 * hi fits */
    uint64_t h = te_fp_fold61(hi);
    h = h >= TE_P61 ? h - TE_P61 : h;
    uint64_t y = te_fp_fold61(te_fp_fold61(h << 3) + te_fp_fold61(lo)); /* sum < 2^62 + 16 */
    return y >= TE_P61 ? y - TE_P61 : y;
}
static inline uint64_t te_fp_add(uint64_t a, uint64_t b)
{
    uint64_t s = a + b;
    return s >= TE_P61 ? s - TE_P61 : s;
}
/* a * b mod p for any a, b < 2^64. */
static inline uint64_t te_fp_mul(uint64_t a, uint64_t b)
{
    uint64_t lo, hi = te_mul64_hi(a, b, &lo);
    return te_fp_reduce_hl(hi, lo);
}
/* Signed integer -> F_p. */
uint64_t te_fp_from_signed(int64_t v);
/* sum_i a[i] * lift(x[i]) mod p, where a[i] in F_p and x[i] is a signed
 * integer; accumulates in 128 bits and reduces lazily. */
uint64_t te_fp_dot_signed(const uint64_t *a, const int64_t *x, size_t n);
/* te_fp_dot_signed for x known to fit in l bits signed (|x[i]| <= 2^(l-1),
 * l in 1..64): the same value, with fewer reductions for small l. */
uint64_t te_fp_dot_small(const uint64_t *a, const int64_t *x, size_t n, unsigned l);
/* Same with ring elements of width l lifted to signed integers first. */
uint64_t te_fp_dot_ring(const uint64_t *a, const uint64_t *x, size_t n, unsigned l);

#endif
