/* The device's keystream prefetch (device-sdk/src/prefetch.c): the words it
 * hands out are exactly the stream's, only for the (key, t, layer, purpose)
 * they were made for, and only once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include <cmocka.h>

#include "prefetch.h"
#include "te_prf.h"

static void key_of(uint8_t key[TE_KEY_BYTES], uint8_t seed)
{
    for (int i = 0; i < TE_KEY_BYTES; i++)
        key[i] = (uint8_t)(seed * 31 + i);
}

/* n words from the ordinary stream */
static uint64_t *stream_words(const uint8_t *key, uint64_t t, uint32_t layer, te_prf_purpose p, size_t n)
{
    uint64_t *w = malloc(n * sizeof *w);
    te_prf_stream s;
    te_err err;
    assert_non_null(w);
    assert_int_equal(te_prf_stream_open(&s, key, t, layer, p, &err), TE_OK);
    assert_int_equal(te_prf_stream_read(&s, w, n, &err), TE_OK);
    te_prf_stream_close(&s);
    return w;
}

/* Read n words from s in uneven pieces, as te_layer_mask and finish do. */
static void read_all(te_prf_stream *s, uint64_t *out, size_t n)
{
    te_err err;
    for (size_t off = 0, k = 1; off < n; off += k, k = k * 3 % 1000 + 1) {
        if (k > n - off)
            k = n - off;
        assert_int_equal(te_prf_stream_read(s, out + off, k, &err), TE_OK);
    }
}

static void test_same_words(void **state)
{
    (void)state;
    te_prefetch *p = te_prefetch_new();
    assert_non_null(p);
    uint8_t key[TE_KEY_BYTES];
    key_of(key, 1);
    const size_t sizes[] = {1, 7, 511, 512, 513, 4099, 200000};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        size_t n = sizes[i];
        /* both slots at once, posted before the first is read */
        te_prefetch_post(p, TE_PREFETCH_Z, key, 5 + i, (uint32_t)i, TE_PRF_OUT, n);
        te_prefetch_post(p, TE_PREFETCH_M, key, 5 + i, (uint32_t)i + 1, TE_PRF_MASK, n + 3);
        uint64_t *want_z = stream_words(key, 5 + i, (uint32_t)i, TE_PRF_OUT, n);
        uint64_t *want_m = stream_words(key, 5 + i, (uint32_t)i + 1, TE_PRF_MASK, n);
        uint64_t *got = malloc(n * sizeof *got);
        te_prf_stream s;
        te_err err;
        assert_int_equal(te_prefetch_take(p, TE_PREFETCH_Z, key, 5 + i, (uint32_t)i, TE_PRF_OUT, n, &s), 1);
        read_all(&s, got, n);
        assert_memory_equal(got, want_z, n * sizeof *got);
        /* no word past the n taken */
        assert_int_not_equal(te_prf_stream_read(&s, got, 1, &err), TE_OK);
        te_prf_stream_close(&s);
        /* a shorter prefix of the M slot: the stream's first n words */
        assert_int_equal(te_prefetch_take(p, TE_PREFETCH_M, key, 5 + i, (uint32_t)i + 1, TE_PRF_MASK, n, &s), 1);
        read_all(&s, got, n);
        assert_memory_equal(got, want_m, n * sizeof *got);
        te_prf_stream_close(&s);
        free(got);
        free(want_z);
        free(want_m);
    }
    te_prefetch_free(p);
}

/* Every mismatch is refused, and a slot is never handed out twice: a
 * reused mask would unblind the input to EdgeA. */
static void test_only_its_stream_once(void **state)
{
    (void)state;
    te_prefetch *p = te_prefetch_new();
    assert_non_null(p);
    uint8_t key[TE_KEY_BYTES], other[TE_KEY_BYTES];
    key_of(key, 2);
    key_of(other, 3);
    te_prf_stream s;
    struct {
        const uint8_t *key;
        uint64_t t;
        uint32_t layer;
        te_prf_purpose purpose;
        size_t n;
    } bad[] = {{other, 9, 4, TE_PRF_MASK, 100}, {key, 10, 4, TE_PRF_MASK, 100}, {key, 9, 5, TE_PRF_MASK, 100},
               {key, 9, 4, TE_PRF_OUT, 100},   {key, 9, 4, TE_PRF_MASK, 101}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        te_prefetch_post(p, TE_PREFETCH_M, key, 9, 4, TE_PRF_MASK, 100);
        memset(&s, 0xa5, sizeof s);
        assert_int_equal(
            te_prefetch_take(p, TE_PREFETCH_M, bad[i].key, bad[i].t, bad[i].layer, bad[i].purpose, bad[i].n, &s), 0);
        /* a refused take spends the slot too */
        assert_int_equal(te_prefetch_take(p, TE_PREFETCH_M, key, 9, 4, TE_PRF_MASK, 100, &s), 0);
    }
    te_prefetch_post(p, TE_PREFETCH_M, key, 9, 4, TE_PRF_MASK, 100);
    assert_int_equal(te_prefetch_take(p, TE_PREFETCH_Z, key, 9, 4, TE_PRF_MASK, 100, &s), 0); /* other slot */
    assert_int_equal(te_prefetch_take(p, TE_PREFETCH_M, key, 9, 4, TE_PRF_MASK, 100, &s), 1);
    te_prf_stream_close(&s);
    assert_int_equal(te_prefetch_take(p, TE_PREFETCH_M, key, 9, 4, TE_PRF_MASK, 100, &s), 0);
    /* a slot re-posted before it was taken holds the new stream only */
    te_prefetch_post(p, TE_PREFETCH_Z, key, 1, 1, TE_PRF_OUT, 50);
    te_prefetch_post(p, TE_PREFETCH_Z, key, 1, 2, TE_PRF_OUT, 50);
    assert_int_equal(te_prefetch_take(p, TE_PREFETCH_Z, key, 1, 1, TE_PRF_OUT, 50, &s), 0);
    te_prefetch_post(p, TE_PREFETCH_Z, key, 1, 1, TE_PRF_OUT, 50);
    te_prefetch_post(p, TE_PREFETCH_Z, key, 1, 2, TE_PRF_OUT, 50);
    assert_int_equal(te_prefetch_take(p, TE_PREFETCH_Z, key, 1, 2, TE_PRF_OUT, 50, &s), 1);
    te_prf_stream_close(&s);
    te_prefetch_free(p);
}

/* NULL (no worker) and a forked child (its worker stayed in the parent)
 * hand out nothing, and a child can still free its copy. */
static void test_no_worker(void **state)
{
    (void)state;
    uint8_t key[TE_KEY_BYTES];
    key_of(key, 4);
    te_prf_stream s;
    te_prefetch_post(NULL, TE_PREFETCH_Z, key, 0, 0, TE_PRF_OUT, 10);
    assert_int_equal(te_prefetch_take(NULL, TE_PREFETCH_Z, key, 0, 0, TE_PRF_OUT, 10, &s), 0);
    te_prefetch_free(NULL);

    te_prefetch *p = te_prefetch_new();
    assert_non_null(p);
    te_prefetch_post(p, TE_PREFETCH_Z, key, 0, 0, TE_PRF_OUT, 10);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        te_prefetch_post(p, TE_PREFETCH_M, key, 0, 1, TE_PRF_MASK, 10);
        int got = te_prefetch_take(p, TE_PREFETCH_Z, key, 0, 0, TE_PRF_OUT, 10, &s);
        te_prefetch_free(p);
        _exit(got == 0 ? 0 : 1);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    /* the parent's slot is untouched by the child */
    assert_int_equal(te_prefetch_take(p, TE_PREFETCH_Z, key, 0, 0, TE_PRF_OUT, 10, &s), 1);
    te_prf_stream_close(&s);
    te_prefetch_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_same_words),
        cmocka_unit_test(test_only_its_stream_once),
        cmocka_unit_test(test_no_worker),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
