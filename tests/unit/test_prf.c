/* The masking PRF: known answers, determinism, stream separation. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <openssl/evp.h>

#include "te_prf.h"
#include "te_ring.h"

static void fill_key(uint8_t key[TE_KEY_BYTES])
{
    for (int i = 0; i < TE_KEY_BYTES; i++)
        key[i] = (uint8_t)i;
}

/* Vector computed with Python's `cryptography` (AES-256-CTR), key 00..1f,
 * t = 0x0102030405060708, layer 0x0a0b0c, purpose OUT, l = 64. */
static void test_frozen_vector(void **state)
{
    (void)state;
    static const uint64_t want[5] = {0xd9400a31b45e02e8ULL, 0x7d5a78d4960ba327ULL, 0x7d415df102871903ULL,
                                     0x6860d8e8cb442da4ULL, 0x743cd871c5b99b8bULL};
    uint8_t key[TE_KEY_BYTES];
    fill_key(key);
    uint64_t out[5];
    te_err err;
    assert_int_equal(te_prf_ring(key, 0x0102030405060708ULL, 0x0a0b0c, TE_PRF_OUT, 64, out, 5, &err), TE_OK);
    assert_memory_equal(out, want, sizeof want);
    /* the same stream reduced to 13 bits */
    assert_int_equal(te_prf_ring(key, 0x0102030405060708ULL, 0x0a0b0c, TE_PRF_OUT, 13, out, 5, &err), TE_OK);
    for (int j = 0; j < 5; j++)
        assert_true(out[j] == (want[j] & 0x1fff));
}

/* Reference: EVP called directly with the IV laid out as te_prf.h documents. */
static void ref_prf(const uint8_t *key, uint64_t t, uint32_t layer, int purpose, unsigned l, uint64_t *out, size_t n)
{
    uint8_t iv[16] = {0};
    for (int k = 7; k >= 0; k--, t >>= 8)
        iv[k] = (uint8_t)(t & 0xff);
    iv[8] = (uint8_t)((layer >> 16) & 0xff);
    iv[9] = (uint8_t)((layer >> 8) & 0xff);
    iv[10] = (uint8_t)(layer & 0xff);
    iv[11] = (uint8_t)purpose;
    uint8_t *zero = calloc(n * 8 + 1, 1), *ks = malloc(n * 8 + 16);
    assert_non_null(zero);
    assert_non_null(ks);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int len = 0;
    assert_int_equal(EVP_EncryptInit_ex(ctx, EVP_aes_256_ctr(), NULL, key, iv), 1);
    assert_int_equal(EVP_EncryptUpdate(ctx, ks, &len, zero, (int)(n * 8)), 1);
    EVP_CIPHER_CTX_free(ctx);
    for (size_t j = 0; j < n; j++) {
        uint64_t v = 0;
        for (int k = 7; k >= 0; k--)
            v = (v << 8) | ks[8 * j + (size_t)k];
        out[j] = l == 64 ? v : v % ((uint64_t)1 << l);
    }
    free(zero);
    free(ks);
}

static void test_known_answer_evp(void **state)
{
    (void)state;
    uint8_t key[TE_KEY_BYTES];
    for (int i = 0; i < TE_KEY_BYTES; i++)
        key[i] = (uint8_t)(0xA5 ^ (i * 7));
    enum { N = 1000 };
    uint64_t *a = malloc(N * 8), *b = malloc(N * 8);
    te_err err;
    const unsigned ls[] = {1, 7, 8, 31, 32, 33, 61, 63, 64};
    for (size_t k = 0; k < sizeof ls / sizeof ls[0]; k++) {
        assert_int_equal(te_prf_ring(key, 77 + k, (uint32_t)(k * 1000), TE_PRF_MASK, ls[k], a, N, &err), TE_OK);
        ref_prf(key, 77 + k, (uint32_t)(k * 1000), TE_PRF_MASK, ls[k], b, N);
        assert_memory_equal(a, b, N * 8);
    }
    /* the largest counter and layer index */
    assert_int_equal(te_prf_ring(key, UINT64_MAX, 0xFFFFFF, TE_PRF_OUT, 64, a, N, &err), TE_OK);
    ref_prf(key, UINT64_MAX, 0xFFFFFF, TE_PRF_OUT, 64, b, N);
    assert_memory_equal(a, b, N * 8);
    free(a);
    free(b);
}

static void test_determinism_and_separation(void **state)
{
    (void)state;
    uint8_t key[TE_KEY_BYTES], key2[TE_KEY_BYTES];
    fill_key(key);
    fill_key(key2);
    key2[31] ^= 1;
    enum { N = 64 };
    uint64_t base[N], o[N];
    te_err err;
    assert_int_equal(te_prf_ring(key, 5, 3, TE_PRF_MASK, 64, base, N, &err), TE_OK);
    assert_int_equal(te_prf_ring(key, 5, 3, TE_PRF_MASK, 64, o, N, &err), TE_OK);
    assert_memory_equal(base, o, sizeof o);
    struct {
        const uint8_t *k;
        uint64_t t;
        uint32_t i;
        te_prf_purpose p;
    } var[] = {{key, 6, 3, TE_PRF_MASK}, {key, 5, 4, TE_PRF_MASK}, {key, 5, 3, TE_PRF_OUT},
               {key2, 5, 3, TE_PRF_MASK}, {key, (uint64_t)5 << 32, 3, TE_PRF_MASK}, {key, 5, 3 << 16, TE_PRF_MASK}};
    for (size_t v = 0; v < sizeof var / sizeof var[0]; v++) {
        assert_int_equal(te_prf_ring(var[v].k, var[v].t, var[v].i, var[v].p, 64, o, N, &err), TE_OK);
        int same = 0;
        for (int j = 0; j < N; j++)
            same += o[j] == base[j];
        assert_int_equal(same, 0);
    }
}

static void test_prefix_and_range(void **state)
{
    (void)state;
    uint8_t key[TE_KEY_BYTES];
    fill_key(key);
    enum { N = 4099 };
    uint64_t *a = malloc(N * 8), *b = malloc(N * 8);
    te_err err;
    for (unsigned l = 1; l <= 64; l++) {
        assert_int_equal(te_prf_ring(key, 9, 1, TE_PRF_MASK, l, a, N, &err), TE_OK);
        for (size_t n = 1; n < N; n = n * 3 + 1) {
            assert_int_equal(te_prf_ring(key, 9, 1, TE_PRF_MASK, l, b, n, &err), TE_OK);
            assert_memory_equal(a, b, n * 8);
        }
        uint64_t orv = 0;
        for (size_t j = 0; j < N; j++) {
            assert_true(j == 0 || l == 64 || a[j] < ((uint64_t)1 << l));
            orv |= a[j];
        }
        assert_true(orv == te_ring_mask(l)); /* every bit position is used */
    }
    free(a);
    free(b);
}

static void test_bad_args(void **state)
{
    (void)state;
    uint8_t key[TE_KEY_BYTES];
    fill_key(key);
    uint64_t o[4];
    te_err err;
    assert_int_equal(te_prf_ring(key, 0, 0, TE_PRF_MASK, 0, o, 4, &err), TE_EINVAL);
    assert_int_equal(te_prf_ring(key, 0, 0, TE_PRF_MASK, 65, o, 4, &err), TE_EINVAL);
    assert_int_equal(te_prf_ring(key, 0, 1u << 24, TE_PRF_MASK, 32, o, 4, &err), TE_EINVAL);
    assert_int_equal(te_prf_ring(key, 0, 0, (te_prf_purpose)7, 32, o, 4, &err), TE_EINVAL);
    assert_int_equal(te_prf_ring(key, 0, 0, TE_PRF_MASK, 32, o, 0, &err), TE_OK);
}

static void test_random_bytes(void **state)
{
    (void)state;
    uint8_t a[64] = {0}, b[64] = {0};
    te_err err;
    assert_int_equal(te_random_bytes(a, sizeof a, &err), TE_OK);
    assert_int_equal(te_random_bytes(b, sizeof b, &err), TE_OK);
    assert_memory_not_equal(a, b, sizeof a);
    assert_int_equal(te_random_bytes(a, 0, &err), TE_OK);
}

/* Every width and odd lengths (across the keystream chunks) against EVP
 * called directly; and the piecewise stream equals the one-shot l = 64
 * output, whatever the piece sizes. */
static void test_all_widths_and_stream(void **state)
{
    (void)state;
    uint8_t key[TE_KEY_BYTES];
    fill_key(key);
    enum { N = 1537 };
    uint64_t *a = malloc(N * 8), *b = malloc(N * 8), *c = malloc(N * 8);
    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(c);
    te_err err;
    const size_t ns[] = {1, 3, 511, 513, 1025, N};
    for (unsigned l = 1; l <= 64; l++)
        for (size_t t = 0; t < sizeof ns / sizeof ns[0]; t++) {
            assert_int_equal(te_prf_ring(key, 1000 + l, l * 3, TE_PRF_OUT, l, a, ns[t], &err), TE_OK);
            ref_prf(key, 1000 + l, l * 3, TE_PRF_OUT, l, b, ns[t]);
            assert_memory_equal(a, b, ns[t] * 8);
        }
    assert_int_equal(te_prf_ring(key, 31, 7, TE_PRF_MASK, 64, a, N, &err), TE_OK);
    const size_t pieces[] = {1, 2, 7, 511, 512, 513, 100, 3};
    te_prf_stream st;
    assert_int_equal(te_prf_stream_open(&st, key, 31, 7, TE_PRF_MASK, &err), TE_OK);
    size_t off = 0;
    for (size_t k = 0; off < N; k++) {
        size_t p = pieces[k % (sizeof pieces / sizeof pieces[0])];
        if (p > N - off)
            p = N - off;
        assert_int_equal(te_prf_stream_read(&st, c + off, p, &err), TE_OK);
        off += p;
    }
    te_prf_stream_close(&st);
    te_prf_stream_close(&st); /* idempotent */
    assert_memory_equal(a, c, N * 8);
    /* bad arguments */
    assert_int_equal(te_prf_stream_open(&st, key, 1, 1u << 24, TE_PRF_MASK, &err), TE_EINVAL);
    assert_null(st.ctx);
    assert_int_equal(te_prf_stream_open(&st, key, 1, 1, (te_prf_purpose)9, &err), TE_EINVAL);
    assert_int_equal(te_prf_stream_read(&st, c, 1, &err), TE_EINVAL);
    free(a);
    free(b);
    free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frozen_vector),
        cmocka_unit_test(test_known_answer_evp),
        cmocka_unit_test(test_determinism_and_separation),
        cmocka_unit_test(test_prefix_and_range),
        cmocka_unit_test(test_bad_args),
        cmocka_unit_test(test_random_bytes),
        cmocka_unit_test(test_all_widths_and_stream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
