/* The CPU plugin, loaded through the real loader, must agree bit for bit with
 * te_linear_ref_ring on every geometry and ring width. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "te_linear.h"
#include "te_plugin.h"
#include "te_ring.h"

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rnd(rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static int32_t rnd_w(rng *r, unsigned bits)
{
    return (int32_t)te_ring_to_signed(rnd(r) & te_ring_mask(bits), bits);
}

static int64_t in_len(const te_linear_geom *g)
{
    return g->kind == TE_LIN_FC ? g->in_c : g->in_c * g->in_h * g->in_w;
}
static int64_t out_len(const te_linear_geom *g)
{
    return g->kind == TE_LIN_FC ? g->out_c : g->out_c * g->out_h * g->out_w;
}
static int64_t w_len(const te_linear_geom *g)
{
    return g->kind == TE_LIN_FC ? g->in_c * g->out_c : g->out_c * (g->in_c / g->group) * g->k_h * g->k_w;
}

static te_linear_geom conv(int64_t batch, int64_t in_c, int64_t h, int64_t w, int64_t out_c, int64_t k,
                           int64_t stride, int64_t pt, int64_t pl, int64_t pb, int64_t pr, int64_t dil, int64_t group)
{
    te_linear_geom g = { TE_LIN_CONV, batch, in_c, h, w, out_c, 0, 0, k, k, stride, stride, pt, pl, pb, pr,
                         dil, dil, group };
    g.out_h = (h + pt + pb - dil * (k - 1) - 1) / stride + 1;
    g.out_w = (w + pl + pr - dil * (k - 1) - 1) / stride + 1;
    return g;
}

static te_linear_geom fc(int64_t rows, int64_t k, int64_t n)
{
    te_linear_geom g = { TE_LIN_FC, rows, k, 1, 1, n, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1 };
    return g;
}

typedef struct fixture {
    te_plugin *p;
    const te_plugin_ops *ops;
    te_plugin_ctx *ctx;
} fixture;

static int setup_with(void **state, const char *config)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    te_err err;
    te_err_clear(&err);
    if (te_plugin_open("cpu", config, &f->p, &err) != TE_OK) {
        fprintf(stderr, "cannot open cpu plugin: %s\n", err.msg);
        free(f);
        return -1;
    }
    f->ops = te_plugin_get_ops(f->p);
    f->ctx = te_plugin_get_ctx(f->p);
    *state = f;
    return 0;
}

static int setup(void **state)
{
    return setup_with(state, NULL);
}

static int setup_3threads(void **state)
{
    return setup_with(state, "threads=3");
}

static int setup_1thread(void **state)
{
    return setup_with(state, " threads = 1 ;");
}

static int teardown(void **state)
{
    fixture *f = *state;
    te_plugin_close(f->p);
    free(f);
    return 0;
}

/* Run the plugin and the reference on one geometry at ring width l; inputs
 * uniform in Z_2^l, weights of wbits bits; fails on the first mismatch. */
static void check_one(fixture *f, const te_linear_geom *g, unsigned l, unsigned wbits, rng *r)
{
    size_t ni = (size_t)(in_len(g) * g->batch), no = (size_t)(out_len(g) * g->batch), nw = (size_t)w_len(g);
    int32_t *w = malloc(nw * sizeof *w);
    uint64_t *x = malloc(ni * sizeof *x), *want = malloc(no * sizeof *want), *got = malloc(no * sizeof *got);
    assert_true(w && x && want && got);
    for (size_t i = 0; i < nw; i++)
        w[i] = rnd_w(r, wbits);
    for (size_t i = 0; i < ni; i++)
        x[i] = rnd(r) & te_ring_mask(l);
    for (size_t i = 0; i < no; i++)
        got[i] = 0xDEADBEEFDEADBEEFULL; /* every output must be written */
    te_linear_ref_ring(g, w, l, x, want);

    te_err err;
    te_err_clear(&err);
    te_plugin_layer *pl = NULL;
    te_linear_geom g_other_batch = *g;
    g_other_batch.batch = 77; /* ignored by load_layer */
    assert_int_equal(f->ops->load_layer(f->ctx, &g_other_batch, w, &pl, &err), TE_OK);
    assert_int_equal(f->ops->run(f->ctx, pl, l, (uint64_t)g->batch, x, got, &err), TE_OK);
    for (size_t i = 0; i < no; i++)
        if (got[i] != want[i])
            fail_msg("%s in_c=%lld %lldx%lld out_c=%lld k=%lldx%lld s=%lld pads=%lld,%lld,%lld,%lld dil=%lld "
                     "group=%lld batch=%lld l=%u wbits=%u: output %zu got %llx want %llx",
                     g->kind == TE_LIN_FC ? "fc" : "conv", (long long)g->in_c, (long long)g->in_h,
                     (long long)g->in_w, (long long)g->out_c, (long long)g->k_h, (long long)g->k_w,
                     (long long)g->stride_h, (long long)g->pad_t, (long long)g->pad_l, (long long)g->pad_b,
                     (long long)g->pad_r, (long long)g->dil_h, (long long)g->group, (long long)g->batch, l, wbits,
                     i, (unsigned long long)got[i], (unsigned long long)want[i]);
    f->ops->release_layer(f->ctx, pl);
    free(w);
    free(x);
    free(want);
    free(got);
}

static const unsigned ring_widths[] = { 1, 7, 16, 31, 32, 33, 48, 63, 64 };
#define N_WIDTHS (sizeof ring_widths / sizeof ring_widths[0])

static size_t geometries(te_linear_geom *gs)
{
    size_t n = 0;
    static const int64_t batches[] = { 1, 3 };
    for (int bi = 0; bi < 2; bi++) {
        int64_t b = batches[bi];
        gs[n++] = conv(b, 3, 9, 9, 5, 1, 1, 0, 0, 0, 0, 1, 1);      /* 1x1 */
        gs[n++] = conv(b, 4, 8, 10, 6, 3, 1, 1, 1, 1, 1, 1, 1);     /* 3x3 same */
        gs[n++] = conv(b, 3, 11, 11, 4, 5, 2, 2, 2, 2, 2, 1, 1);    /* 5x5 stride 2 */
        gs[n++] = conv(b, 3, 17, 15, 8, 7, 4, 3, 3, 3, 3, 1, 1);    /* 7x7 stride 4 */
        gs[n++] = conv(b, 3, 12, 12, 4, 7, 2, 3, 3, 3, 3, 1, 1);    /* 7x7 stride 2 */
        gs[n++] = conv(b, 5, 10, 9, 3, 3, 1, 2, 2, 2, 2, 2, 1);     /* dilation 2 */
        gs[n++] = conv(b, 4, 9, 8, 5, 3, 2, 0, 1, 2, 0, 1, 1);      /* asymmetric pads */
        gs[n++] = conv(b, 6, 8, 8, 10, 3, 1, 1, 1, 1, 1, 1, 2);     /* groups 2 */
        gs[n++] = conv(b, 8, 9, 9, 8, 3, 2, 1, 1, 1, 1, 1, 8);      /* depthwise stride 2 */
        gs[n++] = conv(b, 6, 7, 7, 12, 5, 1, 2, 2, 2, 2, 1, 6);     /* depthwise x2 multiplier */
        gs[n++] = conv(b, 4, 9, 9, 8, 3, 1, 1, 0, 0, 1, 2, 2);      /* groups + dilation + asym */
        gs[n++] = conv(b, 7, 3, 3, 9, 3, 1, 0, 0, 0, 0, 1, 1);      /* 1x1 output plane (dot path) */
        gs[n++] = conv(b, 2, 2, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1);      /* kernel bigger than input */
        gs[n++] = fc(b, 37, 11);
        gs[n++] = fc(b, 300, 70);
    }
    gs[n++] = fc(20, 33, 9);                                       /* FC on the tile path */
    gs[n++] = conv(2, 16, 6, 6, 37, 3, 1, 1, 1, 1, 1, 1, 1);       /* ragged channel chunks */
    return n;
}

static void test_all_geometries_all_widths(void **state)
{
    fixture *f = *state;
    rng r = { 2024 };
    te_linear_geom gs[64];
    size_t n = geometries(gs);
    for (size_t gi = 0; gi < n; gi++)
        for (size_t li = 0; li < N_WIDTHS; li++)
            check_one(f, &gs[gi], ring_widths[li], (gi + li) % 5 == 0 ? 32 : 16, &r);
}

static void test_small_weights(void **state)
{
    fixture *f = *state;
    rng r = { 9 };
    te_linear_geom g = conv(2, 4, 8, 8, 6, 3, 1, 1, 1, 1, 1, 1, 1);
    for (unsigned wb = 1; wb <= 4; wb++)
        for (size_t li = 0; li < N_WIDTHS; li++)
            check_one(f, &g, ring_widths[li], wb, &r);
}

static void test_big_dot_len(void **state)
{
    fixture *f = *state;
    rng r = { 77 };
    /* 512 input channels, 3x3: dot length 4608, at l = 64 with full-range inputs */
    te_linear_geom g = conv(1, 512, 6, 6, 8, 3, 1, 1, 1, 1, 1, 1, 1);
    check_one(f, &g, 64, 16, &r);
    check_one(f, &g, 64, 32, &r);
    check_one(f, &g, 33, 16, &r);
    te_linear_geom g2 = fc(1, 4608, 16);
    check_one(f, &g2, 64, 16, &r);
}

static void test_extreme_values(void **state)
{
    fixture *f = *state;
    /* all-max inputs and weights of both extreme signs */
    te_linear_geom g = conv(1, 64, 5, 5, 4, 3, 1, 1, 1, 1, 1, 1, 1);
    size_t ni = (size_t)in_len(&g), no = (size_t)out_len(&g), nw = (size_t)w_len(&g);
    int32_t *w = malloc(nw * sizeof *w);
    uint64_t *x = malloc(ni * sizeof *x), *want = malloc(no * sizeof *want), *got = malloc(no * sizeof *got);
    assert_true(w && x && want && got);
    for (size_t li = 0; li < N_WIDTHS; li++) {
        unsigned l = ring_widths[li];
        for (size_t i = 0; i < nw; i++)
            w[i] = (i % 3 == 0) ? INT32_MIN : (i % 3 == 1 ? INT32_MAX : -1);
        for (size_t i = 0; i < ni; i++)
            x[i] = te_ring_mask(l) - (i % 2);
        te_linear_ref_ring(&g, w, l, x, want);
        te_err err;
        te_plugin_layer *pl = NULL;
        assert_int_equal(f->ops->load_layer(f->ctx, &g, w, &pl, &err), TE_OK);
        assert_int_equal(f->ops->run(f->ctx, pl, l, 1, x, got, &err), TE_OK);
        assert_memory_equal(got, want, no * sizeof *got);
        f->ops->release_layer(f->ctx, pl);
    }
    free(w);
    free(x);
    free(want);
    free(got);
}

static void test_caps_and_errors(void **state)
{
    fixture *f = *state;
    te_err err;
    te_plugin_caps caps;
    assert_int_equal(f->ops->caps(f->ctx, &caps, &err), TE_OK);
    assert_int_equal(caps.min_ring_bits, 1);
    assert_int_equal(caps.max_ring_bits, 64);
    assert_true(caps.max_batch >= 1024);
    assert_non_null(strstr(caps.device_name, "CPU"));
    assert_string_equal(f->ops->name, "cpu");

    te_linear_geom g = fc(1, 4, 2);
    int32_t w[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    uint64_t x[4] = { 1, 1, 1, 1 }, y[2];
    te_plugin_layer *pl = NULL;
    assert_int_equal(f->ops->load_layer(f->ctx, &g, w, &pl, &err), TE_OK);
    te_err_clear(&err);
    assert_int_equal(f->ops->run(f->ctx, pl, 0, 1, x, y, &err), TE_EINVAL);
    assert_true(err.msg[0] != '\0');
    assert_int_equal(f->ops->run(f->ctx, pl, 65, 1, x, y, &err), TE_EINVAL);
    assert_int_equal(f->ops->run(f->ctx, pl, 8, 1, x, y, &err), TE_OK);
    assert_int_equal(y[0], 10);
    assert_int_equal(y[1], 26);
    f->ops->release_layer(f->ctx, pl);

    te_linear_geom bad = conv(1, 6, 4, 4, 4, 3, 1, 1, 1, 1, 1, 1, 4); /* 6 channels, 4 groups */
    te_err_clear(&err);
    assert_int_not_equal(f->ops->load_layer(f->ctx, &bad, w, &pl, &err), TE_OK);
    assert_true(err.msg[0] != '\0');

    te_plugin *p = NULL;
    te_err_clear(&err);
    assert_int_not_equal(te_plugin_open("cpu", "threads=abc", &p, &err), TE_OK);
    assert_non_null(strstr(err.msg, "threads"));
    assert_int_not_equal(te_plugin_open("cpu", "colour=blue", &p, &err), TE_OK);
    assert_non_null(strstr(err.msg, "colour"));
    assert_null(p);
    assert_int_equal(te_plugin_open("cpu", "threads=2", &p, &err), TE_OK);
    assert_int_equal(te_plugin_get_ops(p)->caps(te_plugin_get_ctx(p), &caps, &err), TE_OK);
    assert_string_equal(caps.device_name, "CPU (2 threads)");
    te_plugin_close(p);
}

/* Results must not depend on the thread count. */
static void test_threads(void **state)
{
    fixture *f = *state;
    rng r = { 31337 };
    te_linear_geom g = conv(2, 32, 14, 14, 24, 3, 1, 1, 1, 1, 1, 1, 1);
    check_one(f, &g, 64, 16, &r);
    check_one(f, &g, 17, 16, &r);
    te_linear_geom g2 = conv(1, 16, 10, 10, 16, 3, 1, 1, 1, 1, 1, 1, 16);
    check_one(f, &g2, 40, 16, &r);
    te_linear_geom g3 = fc(2, 1000, 100);
    check_one(f, &g3, 64, 16, &r);
}

static int setup_vnni(void **state)
{
    return setup_with(state, "kernel=vnni");
}

static int setup_portable(void **state)
{
    return setup_with(state, "kernel=portable");
}

/* The limbed 16-bit path (kernel=vnni): every limb plan (l = 1..64), channel
 * counts around the 32-channel blocks, column counts around the micro-tiles,
 * dot lengths across the widening interval, and extreme weights. */
static void test_vnni_all_widths(void **state)
{
    fixture *f = *state;
    rng r = { 4242 };
    te_linear_geom gs[] = {
        conv(1, 8, 7, 7, 40, 3, 1, 1, 1, 1, 1, 1, 1),    /* 49 columns, 40 channels */
        conv(2, 6, 5, 6, 33, 3, 2, 1, 0, 1, 0, 1, 1),    /* ragged, 2 samples */
        conv(1, 64, 4, 4, 32, 3, 1, 1, 1, 1, 1, 1, 2),   /* groups */
        fc(1, 1001, 70),                                 /* batch 1: single-column kernel */
        fc(13, 481, 65),                                 /* odd K, more columns than a micro-tile */
        conv(1, 3, 41, 40, 32, 7, 2, 3, 3, 2, 3, 1, 1),  /* wide rows, stride 2, pads at both ends */
        conv(2, 4, 30, 31, 40, 3, 1, 1, 0, 1, 2, 1, 1),  /* wide rows, stride 1, asymmetric pads */
        conv(1, 4, 26, 26, 32, 3, 1, 2, 2, 2, 2, 2, 1),  /* wide rows, dilation 2 */
        conv(1, 4, 29, 29, 32, 3, 3, 1, 1, 1, 1, 1, 1),  /* stride 3: gathers */
        conv(2, 8, 30, 28, 40, 1, 2, 0, 0, 0, 0, 1, 1),  /* 1x1 stride 2: every other input row */
        conv(2, 4, 24, 24, 40, 3, 1, 1, 1, 1, 1, 1, 1),  /* rows of two micro-tiles: row-aligned tiling */
        conv(1, 8, 27, 27, 33, 1, 2, 1, 0, 0, 1, 1, 1),  /* 1x1 stride 2 with pads */
    };
    for (unsigned l = 1; l <= 64; l++)
        for (size_t gi = 0; gi < sizeof gs / sizeof gs[0]; gi++)
            if ((l + gi) % 3 == 0 || l >= 60 || l <= 4 || l == 32 || l == 33 || l == 40 || l == 41 || l == 48 ||
                l == 49 || l == 56 || l == 57)
                check_one(f, &gs[gi], l, 16, &r);
}

static void test_vnni_long_dot(void **state)
{
    fixture *f = *state;
    rng r = { 5150 };
    /* dot length 4608 = 2304 pairs: ten widening intervals, full-range inputs */
    te_linear_geom g = conv(1, 512, 3, 3, 64, 3, 1, 1, 1, 1, 1, 1, 1);
    static const unsigned ls[] = { 16, 31, 32, 36, 40, 47, 48, 55, 63, 64 };
    for (size_t i = 0; i < sizeof ls / sizeof ls[0]; i++)
        check_one(f, &g, ls[i], 16, &r);

    /* all-extreme weights (+-32767, -32768) against all-max inputs: the
     * exact limbs' int32 sums at their bound */
    te_linear_geom g2 = fc(2, 4608, 40);
    size_t nw = 4608 * 40, ni = 2 * 4608, no = 2 * 40;
    int32_t *w = malloc(nw * sizeof *w);
    uint64_t *x = malloc(ni * sizeof *x), *want = malloc(no * sizeof *want), *got = malloc(no * sizeof *got);
    assert_true(w && x && want && got);
    for (size_t i = 0; i < nw; i++)
        w[i] = (i / 4608) % 2 ? -32768 : 32767;
    for (unsigned l = 33; l <= 64; l++) {
        for (size_t i = 0; i < ni; i++)
            x[i] = i < 4608 ? te_ring_mask(l) : ((uint64_t)0x8080808080808080ULL & te_ring_mask(l));
        te_linear_ref_ring(&g2, w, l, x, want);
        te_err err;
        te_plugin_layer *pl = NULL;
        assert_int_equal(f->ops->load_layer(f->ctx, &g2, w, &pl, &err), TE_OK);
        assert_int_equal(f->ops->run(f->ctx, pl, l, 2, x, got, &err), TE_OK);
        assert_memory_equal(got, want, no * sizeof *got);
        f->ops->release_layer(f->ctx, pl);
    }
    free(w);
    free(x);
    free(want);
    free(got);
}

static void test_kernel_config(void **state)
{
    (void)state;
    te_plugin *p = NULL;
    te_err err;
    te_err_clear(&err);
    assert_int_not_equal(te_plugin_open("cpu", "kernel=fast", &p, &err), TE_OK);
    assert_non_null(strstr(err.msg, "kernel"));
    assert_null(p);
    assert_int_equal(te_plugin_open("cpu", "kernel=portable;threads=1", &p, &err), TE_OK);
    te_plugin_close(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_all_geometries_all_widths, setup, teardown),
        cmocka_unit_test_setup_teardown(test_small_weights, setup, teardown),
        cmocka_unit_test_setup_teardown(test_big_dot_len, setup, teardown),
        cmocka_unit_test_setup_teardown(test_extreme_values, setup, teardown),
        cmocka_unit_test_setup_teardown(test_caps_and_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup_1thread, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup_3threads, teardown),
        cmocka_unit_test_setup_teardown(test_all_geometries_all_widths, setup_portable, teardown),
        cmocka_unit_test_setup_teardown(test_big_dot_len, setup_portable, teardown),
        cmocka_unit_test(test_kernel_config),
    };
    const struct CMUnitTest vnni_tests[] = {
        cmocka_unit_test_setup_teardown(test_vnni_all_widths, setup_vnni, teardown),
        cmocka_unit_test_setup_teardown(test_vnni_long_dot, setup_vnni, teardown),
        cmocka_unit_test_setup_teardown(test_all_geometries_all_widths, setup_vnni, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup_vnni, teardown),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    /* The VNNI kernels only where the CPU has them (kernel=vnni is refused elsewhere). */
    te_plugin *p = NULL;
    te_err err;
    if (te_plugin_open("cpu", "kernel=vnni", &p, &err) == TE_OK) {
        te_plugin_close(p);
        failed += cmocka_run_group_tests_name("vnni", vnni_tests, NULL, NULL);
    } else {
        printf("skipping the VNNI tests: %s\n", err.msg);
    }
    return failed;
}
