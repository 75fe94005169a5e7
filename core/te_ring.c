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

void te_pack(const uint64_t *in, size_t n, unsigned l, uint8_t *out)
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

te_status te_unpack(const uint8_t *in, size_t len, size_t n, unsigned l, uint64_t *out, te_err *err)
{
    if (l < 1 || l > 64)
        return te_errf(err, TE_EINVAL, "unpack: ring width %u out of range 1..64", l);
    size_t want = te_pack_bytes(n, l);
    if (len != want)
        return te_errf(err, TE_EFORMAT, "unpack: %zu bytes for %zu elements of %u bits, expected %zu",
                       len, n, l, want);
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
        return te_errf(err, TE_EFORMAT, "unpack: nonzero padding bits after %zu elements of %u bits", n, l);
    return TE_OK;
}

/* ---- F_p, p = 2^61 - 1 ---- */

uint64_t te_fp_reduce128(unsigned __int128 v)
{
    /* 2^61 == 1 (mod p): fold the high part onto the low part */
    unsigned __int128 x = (v & TE_P61) + (v >> 61); /* < 2^67 + 2^61 */
    uint64_t y = (uint64_t)(x & TE_P61) + (uint64_t)(x >> 61); /* < 2^61 + 2^7 */
    y = (y & TE_P61) + (y >> 61);
    return y >= TE_P61 ? y - TE_P61 : y;
}

uint64_t te_fp_mul(uint64_t a, uint64_t b)
{
    return te_fp_reduce128((unsigned __int128)a * b);
}

uint64_t te_fp_from_signed(int64_t v)
{
    if (v >= 0)
        return (uint64_t)v % TE_P61;
    uint64_t mag = (uint64_t)0 - (uint64_t)v; /* |v|, exact also for INT64_MIN */
    uint64_t r = mag % TE_P61;
    return r ? TE_P61 - r : 0;
}

static inline uint64_t fp_sub(uint64_t a, uint64_t b)
{
    return a >= b ? a - b : a + TE_P61 - b;
}

/* a[i] < 2^61 and |x| <= 2^63, so each product is < 2^124 and a block of 8
 * fits in 2^127.  Positive and negative terms go to separate accumulators,
 * selected without branches. */
#define TE_FP_BLOCK 8

uint64_t te_fp_dot_signed(const uint64_t *a, const int64_t *x, size_t n)
{
    uint64_t pos = 0, neg = 0;
    size_t i = 0;
    while (i < n) {
        size_t end = n - i > TE_FP_BLOCK ? i + TE_FP_BLOCK : n;
        unsigned __int128 ap = 0, an = 0;
        for (; i < end; i++) {
            uint64_t sm = (uint64_t)(x[i] >> 63); /* all ones when negative */
            uint64_t mag = ((uint64_t)x[i] ^ sm) - sm;
            unsigned __int128 pr = (unsigned __int128)a[i] * mag;
            unsigned __int128 msk = (unsigned __int128)sm | ((unsigned __int128)sm << 64);
            ap += pr & ~msk;
            an += pr & msk;
        }
        pos = te_fp_add(pos, te_fp_reduce128(ap));
        neg = te_fp_add(neg, te_fp_reduce128(an));
    }
    return fp_sub(pos, neg);
}

uint64_t te_fp_dot_ring(const uint64_t *a, const uint64_t *x, size_t n, unsigned l)
{
    uint64_t pos = 0, neg = 0;
    const uint64_t m = te_ring_mask(l);
    size_t i = 0;
    while (i < n) {
        size_t end = n - i > TE_FP_BLOCK ? i + TE_FP_BLOCK : n;
        unsigned __int128 ap = 0, an = 0;
        for (; i < end; i++) {
            uint64_t v = x[i] & m;
            uint64_t sm = (uint64_t)0 - ((v >> (l - 1)) & 1); /* all ones when negative */
            /* magnitude of the signed lift: 2^l - v when negative, in (0, 2^(l-1)] */
            uint64_t mag = (sm & ((uint64_t)0 - v) & m) | (~sm & v);
            unsigned __int128 pr = (unsigned __int128)a[i] * mag;
            unsigned __int128 msk = (unsigned __int128)sm | ((unsigned __int128)sm << 64);
            ap += pr & ~msk;
            an += pr & msk;
        }
        pos = te_fp_add(pos, te_fp_reduce128(ap));
        neg = te_fp_add(neg, te_fp_reduce128(an));
    }
    return fp_sub(pos, neg);
}
