/* The F_p and 128-bit paths of te_ring on the target itself (armhf and
 * aarch64 under qemu-user in scripts/cross-build.sh; x86-64 in ctest), with
 * references that need no 128-bit type: products by 16-bit limbs, a * b mod
 * p by doubling, dot products by te_fp_mul + te_fp_add.  Prints which path
 * the build took (TE_HAVE_INT128) and a checksum of everything it computed,
 * which must be the same on every target.  No cmocka: the device-only build
 * has no test libraries.  Exit status 0 = pass. */
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "te_ring.h"

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* a * b by 16-bit limbs: hi, lo. */
static void ref_mul(uint64_t a, uint64_t b, uint64_t *hi, uint64_t *lo)
{
    uint32_t r[8] = {0}; /* 16-bit limbs of the result, held in 32 bits */
    for (int i = 0; i < 4; i++) {
        uint32_t carry = 0;
        for (int j = 0; j < 4; j++) {
            uint32_t t = (uint32_t)((a >> (16 * i)) & 0xFFFF) * (uint32_t)((b >> (16 * j)) & 0xFFFF);
            uint64_t s = (uint64_t)r[i + j] + (t & 0xFFFF) + carry;
            r[i + j] = (uint32_t)(s & 0xFFFF);
            carry = (uint32_t)(s >> 16) + (t >> 16);
        }
        for (int k = i + 4; carry && k < 8; k++) {
            uint32_t s = r[k] + carry;
            r[k] = s & 0xFFFF;
            carry = s >> 16;
        }
    }
    *lo = *hi = 0;
    for (int k = 3; k >= 0; k--) {
        *lo = (*lo << 16) | r[k];
        *hi = (*hi << 16) | r[k + 4];
    }
}

/* a * b mod p by doubling (a, b < p). */
static uint64_t ref_mulmod(uint64_t a, uint64_t b)
{
    uint64_t r = 0;
    for (int bit = 63; bit >= 0; bit--) {
        r = te_fp_add(r, r);
        if ((b >> bit) & 1)
            r = te_fp_add(r, a);
    }
    return r;
}

static int failures;
#define CHECK(cond, ...)                                                                                           \
    do {                                                                                                           \
        if (!(cond) && failures++ < 10) {                                                                          \
            printf("FAIL %s:%d: ", __FILE__, __LINE__);                                                            \
            printf(__VA_ARGS__);                                                                                   \
            printf("\n");                                                                                          \
        }                                                                                                          \
    } while (0)

int main(void)
{
    uint64_t s = 42, sum = 0;
    for (int i = 0; i < 200000; i++) {
        uint64_t a = rng_next(&s), b = rng_next(&s);
        if (i % 4 == 1)
            a >>= rng_next(&s) % 64;
        if (i < 16)
            a = i & 1 ? ~(uint64_t)0 : TE_P61, b = i & 2 ? ~(uint64_t)0 : (uint64_t)i;
        uint64_t rh, rl, hi, lo;
        ref_mul(a, b, &rh, &rl);
        hi = te_mul64_hi(a, b, &lo);
        CHECK(hi == rh && lo == rl, "te_mul64_hi(%" PRIx64 ", %" PRIx64 ")", a, b);
        hi = te_mul64_hi_portable(a, b, &lo);
        CHECK(hi == rh && lo == rl, "te_mul64_hi_portable(%" PRIx64 ", %" PRIx64 ")", a, b);
        uint64_t ap = a % TE_P61, bp = b % TE_P61, m = te_fp_mul(ap, bp);
        if (i % 16 == 0)
            CHECK(m == ref_mulmod(ap, bp), "te_fp_mul(%" PRIx64 ", %" PRIx64 ")", ap, bp);
        /* (hi * 2^64 + lo) mod p = hi * (2^64 mod p) + lo mod p */
        uint64_t want = te_fp_add(te_fp_mul(rh % TE_P61, 8), rl % TE_P61);
        CHECK(te_fp_reduce_hl(rh, rl) == want, "te_fp_reduce_hl(%" PRIx64 ", %" PRIx64 ")", rh, rl);
        sum = sum * 31 + m;
    }
    enum { N = 257 };
    uint64_t a[N], x[N];
    int64_t xs[N];
    for (unsigned l = 1; l <= 64; l++) {
        uint64_t mask = te_ring_mask(l), ref = 0, ref_s = 0;
        for (int i = 0; i < N; i++) {
            a[i] = i % 5 ? rng_next(&s) % TE_P61 : TE_P61 - 1;
            x[i] = i % 3 ? rng_next(&s) & mask : (uint64_t)1 << (l - 1); /* the most negative value */
            xs[i] = te_ring_to_signed(x[i], l);
            ref = te_fp_add(ref, te_fp_mul(a[i], te_fp_from_signed(xs[i])));
        }
        ref_s = ref;
        uint64_t d = te_fp_dot_ring(a, x, N, l), ds = te_fp_dot_small(a, xs, N, l), dg = te_fp_dot_signed(a, xs, N);
        CHECK(d == ref && ds == ref_s && dg == ref, "dot products at l = %u", l);
        sum = sum * 31 + d;
        /* pack / unpack round trip */
        uint8_t buf[N * 8];
        uint64_t back[N];
        te_err err;
        te_pack(x, N, l, buf);
        CHECK(te_unpack(buf, te_pack_bytes(N, l), N, l, back, &err) == TE_OK && !memcmp(back, x, sizeof x),
              "pack round trip at l = %u", l);
        for (size_t k = 0; k < te_pack_bytes(N, l); k++)
            sum = sum * 31 + buf[k];
    }
    printf("te_ring check: %s path, checksum %016" PRIx64 ", %d failure(s)\n",
           TE_HAVE_INT128 ? "__int128" : "portable", sum, failures);
    return failures ? 1 : 0;
}
