/* What each host learns.  The tap records every message a host receives.
 * - EdgeB's view does not depend on the input: two inputs give the same
 *   messages but for the request counter (which counts inferences).
 * - EdgeA's received words look uniform over many counters for one fixed
 *   input, by a test that rejects an insecure fixed-key masking (the
 *   negative control, kept here only). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "te_prf.h"
#include "te_ring.h"
#include "wire.pb-c.h"

#define MODEL "lenet5"
#define TRIALS 160

typedef struct rec {
    uint8_t *b_view;   /* concatenation of everything EdgeB received */
    size_t b_len;
    /* EdgeA's layer-0 words, one row per inference */
    uint64_t *a_words; /* TRIALS x a_n */
    size_t a_n, a_rows;
    uint64_t *ab_words;/* EdgeB's relay share for layer 0 as EdgeA sees it */
    size_t ab_n, ab_rows;
    unsigned l;
} rec;

static rec R;

static void append_row(uint64_t **words, size_t *n, size_t *rows, const uint8_t *data, size_t len, unsigned l)
{
    size_t cnt = len * 8 / l;
    if (*rows == 0)
        *n = cnt;
    assert_int_equal(cnt, *n);
    if (*rows >= TRIALS)
        return;
    if (!*words)
        *words = calloc((size_t)TRIALS * cnt, sizeof **words);
    te_err err;
    assert_int_equal(te_unpack(data, te_pack_bytes(cnt, l), cnt, l, *words + *rows * cnt, &err), TE_OK);
    (*rows)++;
}

static void tap(void *ctx, te_party who, int is_response, const uint8_t *msg, size_t len)
{
    (void)ctx;
    if (who == TE_PARTY_EDGE_B) {
        /* requests with the counter set aside; responses as they are */
        uint8_t *cp = NULL;
        Twinedge__LayerRequest *q = is_response ? NULL : twinedge__layer_request__unpack(NULL, len, msg);
        if (q) {
            q->counter = 0;
            len = twinedge__layer_request__get_packed_size(q);
            cp = malloc(len ? len : 1);
            twinedge__layer_request__pack(q, cp);
            twinedge__layer_request__free_unpacked(q, NULL);
            msg = cp;
        }
        R.b_view = realloc(R.b_view, R.b_len + len);
        memcpy(R.b_view + R.b_len, msg, len);
        R.b_len += len;
        free(cp);
        return;
    }
    if (!is_response) {
        Twinedge__LayerRequest *q = twinedge__layer_request__unpack(NULL, len, msg);
        assert_non_null(q);
        if (q->layer == 0) {
            R.l = q->ring_bits;
            append_row(&R.a_words, &R.a_n, &R.a_rows, q->data.data, q->data.len, q->ring_bits);
        }
        twinedge__layer_request__free_unpacked(q, NULL);
    } else if (R.l) {
        /* EdgeB's relay share for the layer just requested; only layer 0's
         * is recorded (the first response after a layer-0 request). */
        Twinedge__LayerResponse *r = twinedge__layer_response__unpack(NULL, len, msg);
        assert_non_null(r);
        if (R.ab_rows < R.a_rows)
            append_row(&R.ab_words, &R.ab_n, &R.ab_rows, r->data.data, r->data.len, R.l);
        twinedge__layer_response__free_unpacked(r, NULL);
    }
}

/* Rank over GF(2) of rows x 64 bit matrix (Gaussian elimination). */
static int gf2_rank(uint64_t *m, size_t rows)
{
    int rank = 0;
    for (int bit = 0; bit < 64; bit++) {
        size_t piv = rows;
        for (size_t r = (size_t)rank; r < rows; r++)
            if (m[r] >> bit & 1) {
                piv = r;
                break;
            }
        if (piv == rows)
            continue;
        uint64_t t = m[piv];
        m[piv] = m[rank];
        m[rank] = t;
        for (size_t r = 0; r < rows; r++)
            if (r != (size_t)rank && (m[r] >> bit & 1))
                m[r] ^= t;
        rank++;
    }
    return rank;
}

/* The uniformity test: words is rows x n elements of Z_2^l, one row per
 * request, for a fixed input.  Uniform, independent masks give
 *  - a flat histogram of the low and high byte of each word (chi-square,
 *    255 degrees of freedom, rejected beyond 400: p < 1e-7), and
 *  - row differences whose low bits form a full-rank GF(2) matrix (a mask
 *    confined to a fixed direction, like c_t * S, gives rank <= 1).
 * Returns 1 when the words pass. */
static int looks_uniform(const uint64_t *words, size_t rows, size_t n, unsigned l, char *why, size_t whylen)
{
    assert_true(l >= 8);
    for (int which = 0; which < 2; which++) {
        double hist[256] = {0};
        unsigned shift = which == 0 ? 0 : l - 8;
        for (size_t i = 0; i < rows * n; i++)
            hist[(words[i] >> shift) & 0xff] += 1;
        double expect = (double)(rows * n) / 256.0, chi = 0;
        for (int b = 0; b < 256; b++)
            chi += (hist[b] - expect) * (hist[b] - expect) / expect;
        if (chi > 400) {
            snprintf(why, whylen, "%s byte chi-square %.1f > 400", which ? "high" : "low", chi);
            return 0;
        }
    }
    size_t cols = n < 64 ? n : 64;
    uint64_t *m = calloc(rows, sizeof *m);
    for (size_t r = 1; r < rows; r++)
        for (size_t j = 0; j < cols; j++)
            m[r - 1] |= (((words[r * n + j] - words[j]) & 1) << j);
    int rank = gf2_rank(m, rows - 1);
    free(m);
    if ((size_t)rank < cols) {
        snprintf(why, whylen, "difference rank %d < %zu", rank, cols);
        return 0;
    }
    return 1;
}

static void test_edge_b_view_independent_of_input(void **state)
{
    (void)state;
    te_fixture f;
    memset(&R, 0, sizeof R);
    fx_setup(&f, MODEL, tap, NULL);
    float *out = calloc(f.n_out, sizeof *out), *x2 = calloc(f.n_in, sizeof *x2);
    for (size_t i = 0; i < f.n_in; i++)
        x2[i] = -0.5f * f.input[i] + 0.25f;
    for (int mode = 0; mode < 2; mode++) {
        twinedge_mode md = mode ? TWINEDGE_MEDIATED : TWINEDGE_RELAY;
        R.b_len = 0;
        assert_int_equal(twinedge_infer(f.dev, md, f.input, f.n_in, out, f.n_out), TWINEDGE_OK);
        uint8_t *first = malloc(R.b_len);
        size_t first_len = R.b_len;
        memcpy(first, R.b_view, R.b_len);
        /* another input, the next counter of the same session */
        R.b_len = 0;
        assert_int_equal(twinedge_infer(f.dev, md, x2, f.n_in, out, f.n_out), TWINEDGE_OK);
        assert_true(first_len > 0);
        assert_int_equal(R.b_len, first_len);
        assert_memory_equal(R.b_view, first, first_len);
        free(first);
    }
    free(out);
    free(x2);
    free(R.b_view);
    free(R.a_words);
    free(R.ab_words);
    memset(&R, 0, sizeof R);
    fx_teardown(&f);
}

static void test_edge_a_view_uniform(void **state)
{
    (void)state;
    te_fixture f;
    memset(&R, 0, sizeof R);
    fx_setup(&f, MODEL, tap, NULL);
    float *out = calloc(f.n_out, sizeof *out);
    for (int t = 0; t < TRIALS; t++)
        assert_int_equal(twinedge_infer(f.dev, TWINEDGE_RELAY, f.input, f.n_in, out, f.n_out), TWINEDGE_OK);
    assert_int_equal(R.a_rows, TRIALS);
    assert_int_equal(R.ab_rows, TRIALS);
    char why[128] = "";
    if (!looks_uniform(R.a_words, R.a_rows, R.a_n, R.l, why, sizeof why))
        fail_msg("EdgeA's blinded inputs are not uniform: %s", why);
    if (!looks_uniform(R.ab_words, R.ab_rows, R.ab_n, R.l, why, sizeof why))
        fail_msg("EdgeB's relayed shares are not uniform: %s", why);

    /* Negative controls: the same words masked the insecure way.  x is the
     * true encoded input, recovered here from the first request and its
     * mask (the test knows the key; the hosts do not). */
    size_t n = R.a_n;
    unsigned l = R.l;
    uint64_t *x = calloc(n, sizeof *x), *key = calloc(n, sizeof *key);
    uint64_t *bad = calloc((size_t)TRIALS * n, sizeof *bad);
    uint8_t k[TE_KEY_BYTES] = {1, 2, 3};
    te_err err;
    assert_int_equal(te_prf_ring(k, 7, 0, TE_PRF_MASK, l, key, n, &err), TE_OK);
    for (size_t j = 0; j < n; j++)
        x[j] = (uint64_t)(j * 2654435761u) & te_ring_mask(l); /* any fixed input */
    /* (a) fixed key: A = x + S */
    for (int t = 0; t < TRIALS; t++)
        for (size_t j = 0; j < n; j++)
            bad[(size_t)t * n + j] = te_ring_add(x[j], key[j], l);
    assert_false(looks_uniform(bad, TRIALS, n, l, why, sizeof why));
    /* (b) fixed key times a fresh scalar: A = x + c_t * S */
    for (int t = 0; t < TRIALS; t++) {
        uint64_t c;
        assert_int_equal(te_random_bytes((uint8_t *)&c, sizeof c, &err), TE_OK);
        for (size_t j = 0; j < n; j++)
            bad[(size_t)t * n + j] = te_ring_add(x[j], te_ring_mul(c, key[j], l), l);
    }
    assert_false(looks_uniform(bad, TRIALS, n, l, why, sizeof why));
    printf("negative control rejected: %s\n", why);
    free(x);
    free(key);
    free(bad);
    free(out);
    free(R.a_words);
    free(R.ab_words);
    fx_teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_edge_b_view_independent_of_input),
        cmocka_unit_test(test_edge_a_view_uniform),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
