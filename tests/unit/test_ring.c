/* Ring, fixed point, bit packing and F_p: fast paths against slow,
 * obviously-correct references.  Built twice: test_ring against the library
 * (unsigned __int128 on x86-64) and test_ring_portable with te_ring.c
 * compiled with TE_RING_PORTABLE, the 32-bit targets' path; the references
 * here use __int128 in both, so both paths are pinned to the same bits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "te_ring.h"

typedef unsigned __int128 u128;
typedef __int128 i128;

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static const u128 P = ((u128)1 << 61) - 1;

/* ---- references ---- */

static void ref_pack(const uint64_t *in, size_t n, unsigned l, uint8_t *out)
{
    size_t nb = (n * l + 7) / 8;
    memset(out, 0, nb);
    for (size_t i = 0; i < n; i++)
        for (unsigned b = 0; b < l; b++) {
            size_t bit = i * l + b;
            if ((in[i] >> b) & 1)
                out[bit / 8] |= (uint8_t)(1u << (bit % 8));
        }
}

static uint64_t ref_mod(i128 v)
{
    i128 r = v % (i128)P;
    if (r < 0)
        r += (i128)P;
    return (uint64_t)r;
}

static i128 ref_lift(uint64_t v, unsigned l)
{
    if (l == 64)
        return (i128)(int64_t)v;
    return v >= ((uint64_t)1 << (l - 1)) ? (i128)v - ((i128)1 << l) : (i128)v;
}

static uint64_t ref_dot_signed(const uint64_t *a, const int64_t *x, size_t n)
{
    uint64_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc = ref_mod((i128)acc + (i128)ref_mod((i128)a[i] * (i128)x[i]));
    return acc;
}

static uint64_t ref_dot_ring(const uint64_t *a, const uint64_t *x, size_t n, unsigned l)
{
    uint64_t acc = 0;
    for (size_t i = 0; i < n; i++)
        acc = ref_mod((i128)acc + (i128)ref_mod((i128)a[i] * ref_lift(x[i], l)));
    return acc;
}

static uint64_t mask_of(unsigned l)
{
    return l == 64 ? ~(uint64_t)0 : (((uint64_t)1 << l) - 1);
}

/* ---- tests ---- */

static void test_ring_scalar(void **state)
{
    (void)state;
    for (unsigned l = 1; l <= 64; l++) {
        uint64_t m = mask_of(l);
        assert_int_equal(te_ring_mask(l), m);
        int64_t lo = l == 64 ? INT64_MIN : -((int64_t)1 << (l - 1));
        int64_t hi = l == 64 ? INT64_MAX : ((int64_t)1 << (l - 1)) - 1;
        assert_int_equal(te_ring_to_signed(te_ring_from_signed(lo, l), l), lo);
        assert_int_equal(te_ring_to_signed(te_ring_from_signed(hi, l), l), hi);
        assert_int_equal(te_ring_to_signed(te_ring_from_signed(-1, l), l), -1);
        assert_int_equal(te_ring_to_signed(te_ring_from_signed(0, l), l), 0);
        assert_true(te_ring_from_signed(-1, l) == m);
    }
}

static void test_vadd_vsub(void **state)
{
    (void)state;
    uint64_t s = 1;
    enum { N = 257 };
    uint64_t a[N], b[N], o[N], c[N];
    for (unsigned l = 1; l <= 64; l++) {
        uint64_t m = mask_of(l);
        for (size_t i = 0; i < N; i++) {
            a[i] = rng_next(&s) & m;
            b[i] = rng_next(&s) & m;
        }
        te_ring_vadd(o, a, b, N, l);
        for (size_t i = 0; i < N; i++)
            assert_true(o[i] == (uint64_t)(((u128)a[i] + b[i]) % ((u128)1 << l)));
        te_ring_vsub(o, o, b, N, l);
        assert_memory_equal(o, a, sizeof a);
        memcpy(c, a, sizeof a);
        te_ring_vsub(c, c, c, N, l); /* full aliasing */
        for (size_t i = 0; i < N; i++)
            assert_true(c[i] == 0);
    }
}

static void test_fx_encode(void **state)
{
    (void)state;
    const float v[] = {0.5f, -0.5f, 1.5f, 2.5f, -2.5f, 0.49999997f, 0.0f, -0.0f, 3.0f, -1.25f};
    const int64_t want0[] = {1, -1, 2, 3, -3, 0, 0, 0, 3, -1};
    int64_t out[10];
    te_err err;
    assert_int_equal(te_fx_encode(v, 10, 0, out, &err), TE_OK);
    assert_memory_equal(out, want0, sizeof want0);
    /* with fraction bits: 1.25*2 = 2.5 -> 3, -1.25*2 -> -3 */
    const float w[] = {1.25f, -1.25f, 0.1f};
    int64_t o2[3];
    assert_int_equal(te_fx_encode(w, 3, 1, o2, &err), TE_OK);
    assert_int_equal(o2[0], 3);
    assert_int_equal(o2[1], -3);
    assert_int_equal(o2[2], 0);
    assert_int_equal(te_fx_encode(w, 3, 20, o2, &err), TE_OK);
    assert_int_equal(o2[2], (int64_t)llround(0.1f * 1048576.0));
    /* range: |v * 2^f| < 2^62 */
    const float big[] = {0x1p61f, -0x1p61f};
    assert_int_equal(te_fx_encode(big, 2, 0, out, &err), TE_OK);
    assert_int_equal(out[0], (int64_t)1 << 61);
    assert_int_equal(out[1], -((int64_t)1 << 61));
    const float bad[] = {0x1p62f, -0x1p62f, NAN, INFINITY, -INFINITY, 1e30f};
    for (int i = 0; i < 6; i++) {
        err.code = TE_OK;
        assert_int_equal(te_fx_encode(&bad[i], 1, 0, out, &err), TE_EOVERFLOW);
        assert_int_equal(err.code, TE_EOVERFLOW);
    }
    const float one = 1.0f;
    assert_int_equal(te_fx_encode(&one, 1, 62, out, &err), TE_EOVERFLOW);
    assert_int_equal(te_fx_encode(&one, 1, 61, out, &err), TE_OK);
}

static void test_pack_all_widths(void **state)
{
    (void)state;
    uint64_t s = 42;
    const size_t ns[] = {0, 1, 2, 3, 7, 8, 9, 15, 16, 17, 63, 64, 65, 129, 1000};
    enum { NMAX = 1000 };
    uint64_t *in = malloc(NMAX * sizeof *in), *back = malloc(NMAX * sizeof *back);
    uint8_t *fast = malloc(NMAX * 8 + 8), *ref = malloc(NMAX * 8 + 8);
    assert_non_null(in);
    assert_non_null(back);
    assert_non_null(fast);
    assert_non_null(ref);
    te_err err;
    for (unsigned l = 1; l <= 64; l++) {
        uint64_t m = mask_of(l);
        for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
            size_t n = ns[t];
            for (size_t i = 0; i < n; i++) {
                uint64_t r = rng_next(&s);
                /* mix random values with the edge values of the width */
                switch (i % 5) {
                case 0: in[i] = r; break; /* high bits set: must be masked away */
                case 1: in[i] = m; break;
                case 2: in[i] = l == 64 ? (uint64_t)1 << 63 : (uint64_t)1 << (l - 1); break;
                case 3: in[i] = r & m; break;
                default: in[i] = 0; break;
                }
            }
            size_t nb = te_pack_bytes(n, l);
            assert_int_equal(nb, (n * l + 7) / 8);
            uint64_t masked[NMAX];
            for (size_t i = 0; i < n; i++)
                masked[i] = in[i] & m;
            ref_pack(masked, n, l, ref);
            memset(fast, 0xAB, nb + 8);
            te_pack(in, n, l, fast);
            assert_memory_equal(fast, ref, nb);
            assert_int_equal(fast[nb], 0xAB); /* no write past the end */
            memset(back, 0x5A, n * sizeof *back);
            assert_int_equal(te_unpack(fast, nb, n, l, back, &err), TE_OK);
            assert_memory_equal(back, masked, n * sizeof *back);
            /* wrong lengths */
            assert_int_equal(te_unpack(fast, nb + 1, n, l, back, &err), TE_EFORMAT);
            if (nb > 0)
                assert_int_equal(te_unpack(fast, nb - 1, n, l, back, &err), TE_EFORMAT);
            /* a nonzero padding bit */
            if ((n * l) % 8) {
                fast[nb - 1] |= (uint8_t)(0x80);
                assert_int_equal(te_unpack(fast, nb, n, l, back, &err), TE_EFORMAT);
                assert_int_equal(err.code, TE_EFORMAT);
            }
        }
    }
    free(in);
    free(back);
    free(fast);
    free(ref);
}

static void test_unpack_bad_width(void **state)
{
    (void)state;
    uint8_t b[8] = {0};
    uint64_t o[1];
    te_err err;
    assert_int_equal(te_unpack(b, 0, 1, 0, o, &err), TE_EINVAL);
    assert_int_equal(te_unpack(b, 8, 1, 65, o, &err), TE_EINVAL);
}

static uint64_t reduce_u128(u128 v)
{
    return te_fp_reduce_hl((uint64_t)(v >> 64), (uint64_t)v);
}

/* The 64x64->128 emulation against the compiler's product, and the path
 * this build uses (TE_HAVE_INT128 says which). */
static void test_mul64_hi(void **state)
{
    (void)state;
    const uint64_t edges[] = {0, 1, 2, 0xFFFFFFFFULL, 0x100000000ULL, 0xFFFFFFFFFFFFFFFFULL, 0x8000000000000000ULL,
                              (uint64_t)P, (uint64_t)P - 1, 0xFFFFFFFF00000000ULL, 0x00000000FFFFFFFFULL};
    const size_t ne = sizeof edges / sizeof edges[0];
    uint64_t s = 3;
    for (size_t i = 0; i < ne * ne + 200000; i++) {
        uint64_t a = i < ne * ne ? edges[i / ne] : rng_next(&s), b = i < ne * ne ? edges[i % ne] : rng_next(&s);
        if (i >= ne * ne && (i & 3) == 1)
            a >>= rng_next(&s) % 64;
        u128 want = (u128)a * b;
        uint64_t lo, hi = te_mul64_hi_portable(a, b, &lo);
        assert_true(hi == (uint64_t)(want >> 64) && lo == (uint64_t)want);
        hi = te_mul64_hi(a, b, &lo);
        assert_true(hi == (uint64_t)(want >> 64) && lo == (uint64_t)want);
    }
#ifdef TE_RING_PORTABLE
    assert_int_equal(TE_HAVE_INT128, 0);
#endif
}

static void test_fp_reduce_mul(void **state)
{
    (void)state;
    const u128 edges[] = {0, 1, P - 1, P, P + 1, 2 * P, P * P, ((u128)1 << 64) - 1, (u128)1 << 64, ~(u128)0,
                          ~(u128)0 - 1, ((u128)1 << 122) * 63, (u128)P << 66};
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++)
        assert_true(reduce_u128(edges[i]) == (uint64_t)(edges[i] % P));
    uint64_t s = 7;
    for (int i = 0; i < 100000; i++) {
        u128 v = ((u128)rng_next(&s) << 64) | rng_next(&s);
        assert_true(reduce_u128(v) == (uint64_t)(v % P));
        uint64_t a = rng_next(&s) % (uint64_t)P, b = rng_next(&s) % (uint64_t)P;
        assert_true(te_fp_mul(a, b) == (uint64_t)(((u128)a * b) % P));
        assert_true(te_fp_add(a, b) == (uint64_t)(((u128)a + b) % P));
    }
    assert_true(te_fp_mul((uint64_t)P - 1, (uint64_t)P - 1) == 1);
}

static void test_fp_from_signed(void **state)
{
    (void)state;
    const int64_t v[] = {0, 1, -1, INT64_MIN, INT64_MIN + 1, INT64_MAX, (int64_t)P, -(int64_t)P, (int64_t)P + 1,
                         -(int64_t)P - 1, 123456789, -123456789};
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        assert_true(te_fp_from_signed(v[i]) == ref_mod(v[i]));
}

static void test_fp_dot_signed(void **state)
{
    (void)state;
    uint64_t s = 99;
    enum { N = 1000 };
    uint64_t a[N];
    int64_t x[N];
    const size_t ns[] = {0, 1, 2, 7, 8, 9, 15, 16, 17, 100, 999, 1000};
    for (int rep = 0; rep < 20; rep++) {
        for (size_t i = 0; i < N; i++) {
            a[i] = rng_next(&s) % (uint64_t)P;
            uint64_t r = rng_next(&s);
            switch ((i + (size_t)rep) % 7) {
            case 0: x[i] = INT64_MIN; break;
            case 1: x[i] = INT64_MIN + 1; break;
            case 2: x[i] = INT64_MAX; break;
            case 3: x[i] = (int64_t)((r >> (r % 64)) >> 1) * ((r & 1) ? -1 : 1); break;
            default: x[i] = (int64_t)r; break;
            }
            if (i % 11 == 0)
                a[i] = (uint64_t)P - 1;
        }
        for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++)
            assert_true(te_fp_dot_signed(a, x, ns[t]) == ref_dot_signed(a, x, ns[t]));
    }
    /* worst case for the accumulators: every product at its maximum */
    for (size_t i = 0; i < N; i++) {
        a[i] = (uint64_t)P - 1;
        x[i] = INT64_MIN;
    }
    assert_true(te_fp_dot_signed(a, x, N) == ref_dot_signed(a, x, N));
    for (size_t i = 0; i < N; i++)
        x[i] = INT64_MAX;
    assert_true(te_fp_dot_signed(a, x, N) == ref_dot_signed(a, x, N));
}

static void test_fp_dot_ring(void **state)
{
    (void)state;
    uint64_t s = 1234;
    enum { N = 300 };
    uint64_t a[N], x[N];
    for (unsigned l = 1; l <= 64; l++) {
        uint64_t m = mask_of(l);
        uint64_t half = l == 64 ? (uint64_t)1 << 63 : (uint64_t)1 << (l - 1);
        for (size_t i = 0; i < N; i++) {
            a[i] = (i % 13 == 0) ? (uint64_t)P - 1 : rng_next(&s) % (uint64_t)P;
            switch (i % 6) {
            case 0: x[i] = half - 1; break; /* 2^(l-1) - 1 */
            case 1: x[i] = half; break;     /* -2^(l-1) */
            case 2: x[i] = m; break;        /* -1 */
            default: x[i] = rng_next(&s) & m; break;
            }
        }
        for (size_t n = 0; n <= N; n += (n < 20 ? 1 : 37))
            assert_true(te_fp_dot_ring(a, x, n, l) == ref_dot_ring(a, x, n, l));
        /* all at the most negative value */
        for (size_t i = 0; i < N; i++)
            x[i] = half;
        assert_true(te_fp_dot_ring(a, x, N, l) == ref_dot_ring(a, x, N, l));
    }
}

/* An integrity-style identity: dot over the lifted ring equals dot over signed. */
static void test_dot_ring_matches_signed(void **state)
{
    (void)state;
    uint64_t s = 5;
    enum { N = 64 };
    uint64_t a[N], xr[N];
    int64_t xs[N];
    for (unsigned l = 1; l <= 64; l++) {
        for (size_t i = 0; i < N; i++) {
            a[i] = rng_next(&s) % (uint64_t)P;
            xr[i] = rng_next(&s) & mask_of(l);
            xs[i] = te_ring_to_signed(xr[i], l);
        }
        assert_true(te_fp_dot_ring(a, xr, N, l) == te_fp_dot_signed(a, xs, N));
    }
}

/* The 8-element fast paths against the bitwise reference: every width, long
 * and odd lengths, unaligned output and input bytes. */
static void test_pack_long_unaligned(void **state)
{
    (void)state;
    uint64_t s = 4242;
    const size_t ns[] = {511, 1023, 4097};
    enum { NMAX = 4097 };
    uint64_t *in = malloc(NMAX * sizeof *in), *masked = malloc(NMAX * sizeof *masked);
    uint64_t *back = malloc(NMAX * sizeof *back);
    uint8_t *fastbuf = malloc(NMAX * 8 + 16), *ref = malloc(NMAX * 8 + 16);
    assert_non_null(in);
    assert_non_null(masked);
    assert_non_null(back);
    assert_non_null(fastbuf);
    assert_non_null(ref);
    te_err err;
    for (unsigned l = 1; l <= 64; l++) {
        uint64_t m = mask_of(l);
        for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
            size_t n = ns[t];
            for (size_t i = 0; i < n; i++) {
                in[i] = rng_next(&s);
                if (i % 13 == 0)
                    in[i] = m;
                masked[i] = in[i] & m;
            }
            size_t nb = te_pack_bytes(n, l);
            ref_pack(masked, n, l, ref);
            for (size_t off = 0; off < 4; off++) {
                uint8_t *fast = fastbuf + off;
                memset(fastbuf, 0xCD, nb + 12);
                te_pack(in, n, l, fast);
                assert_memory_equal(fast, ref, nb);
                assert_int_equal(fast[nb], 0xCD);
                if (off)
                    assert_int_equal(fastbuf[off - 1], 0xCD);
                memset(back, 0x5A, n * sizeof *back);
                assert_int_equal(te_unpack(fast, nb, n, l, back, &err), TE_OK);
                assert_memory_equal(back, masked, n * sizeof *back);
                if ((n * l) % 8) {
                    fast[nb - 1] |= (uint8_t)0x80;
                    assert_int_equal(te_unpack(fast, nb, n, l, back, &err), TE_EFORMAT);
                    assert_non_null(strstr(err.msg, "nonzero padding"));
                }
            }
        }
    }
    free(in);
    free(masked);
    free(back);
    free(fastbuf);
    free(ref);
}

/* te_fp_dot_small equals the reference for every width at its extremes. */
static void test_fp_dot_small(void **state)
{
    (void)state;
    uint64_t s = 777;
    enum { N = 1000 };
    uint64_t a[N];
    int64_t x[N];
    for (unsigned l = 1; l <= 64; l++) {
        int64_t lo = l == 64 ? INT64_MIN : -((int64_t)1 << (l - 1));
        int64_t hi = l == 64 ? INT64_MAX : ((int64_t)1 << (l - 1)) - 1;
        for (size_t i = 0; i < N; i++) {
            a[i] = i % 3 ? rng_next(&s) % (uint64_t)P : (uint64_t)P - 1;
            uint64_t r = rng_next(&s);
            switch (i % 4) {
            case 0: x[i] = lo; break;
            case 1: x[i] = hi; break;
            default: x[i] = te_ring_to_signed(r & mask_of(l), l); break;
            }
        }
        const size_t ns[] = {0, 1, 5, 8, 999, 1000};
        for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++)
            assert_true(te_fp_dot_small(a, x, ns[t], l) == ref_dot_signed(a, x, ns[t]));
        for (size_t i = 0; i < N; i++) {
            a[i] = (uint64_t)P - 1;
            x[i] = lo;
        }
        assert_true(te_fp_dot_small(a, x, N, l) == ref_dot_signed(a, x, N));
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ring_scalar),
        cmocka_unit_test(test_vadd_vsub),
        cmocka_unit_test(test_fx_encode),
        cmocka_unit_test(test_pack_all_widths),
        cmocka_unit_test(test_unpack_bad_width),
        cmocka_unit_test(test_mul64_hi),
        cmocka_unit_test(test_fp_reduce_mul),
        cmocka_unit_test(test_fp_from_signed),
        cmocka_unit_test(test_fp_dot_signed),
        cmocka_unit_test(test_fp_dot_ring),
        cmocka_unit_test(test_dot_ring_matches_signed),
        cmocka_unit_test(test_pack_long_unaligned),
        cmocka_unit_test(test_fp_dot_small),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
