/* Ring and fixed-point arithmetic shared by every part of twinedge.
 *
 * Ring elements of Z_2^l (1 <= l <= 64) are stored in uint64_t, reduced
 * (high 64-l bits zero).  Two's complement: an element v stands for the
 * signed integer v - 2^l when v >= 2^(l-1).
 *
 * The integrity check works over F_p, p = 2^61 - 1, with 128-bit
 * accumulation: elements of F_p are uint64_t in [0, p).
 */
#ifndef TE_RING_H
#define TE_RING_H

#include <stdint.h>
#include <stddef.h>
#include "te_error.h"

#define TE_P61 ((uint64_t)0x1FFFFFFFFFFFFFFFULL) /* 2^61 - 1 */

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
uint64_t te_fp_reduce128(unsigned __int128 v);
static inline uint64_t te_fp_add(uint64_t a, uint64_t b)
{
    uint64_t s = a + b;
    return s >= TE_P61 ? s - TE_P61 : s;
}
uint64_t te_fp_mul(uint64_t a, uint64_t b);
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
