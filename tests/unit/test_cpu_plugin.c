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
    assert_true(strncmp(caps.device_name, "CPU (", 5) == 0); /* "CPU (<kernel>, 2 threads)" */
    assert_non_null(strstr(caps.device_name, ", 2 threads)"));
    te_plugin_close(p);
    assert_int_equal(te_plugin_open("cpu", "threads=1;kernel=portable", &p, &err), TE_OK);
    assert_int_equal(te_plugin_get_ops(p)->caps(te_plugin_get_ctx(p), &caps, &err), TE_OK);
    assert_string_equal(caps.device_name, "CPU (portable, 1 thread)");
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

/* Row-aligned tiles of near-equal widths (8..12 columns, every kernel width
 * on the column-tiled tails), 1x1 stride-1 convs read as one row per sample
 * and channel, and row packing from the digit planes at strides 3..5 (6
 * gathers), each at its edges: pads at both ends, rows just wide enough
 * for two tiles or not, several samples. */
static void test_vnni_row_tiles(void **state)
{
    fixture *f = *state;
    rng r = { 7117 };
    te_linear_geom gs[] = {
        conv(3, 16, 17, 17, 40, 1, 1, 0, 0, 0, 0, 1, 1),  /* 1x1: rows of 289, 3 samples */
        conv(2, 8, 2, 3, 33, 1, 1, 0, 0, 0, 0, 1, 1),    /* 1x1, 6 positions: column tiles across samples */
        conv(1, 8, 9, 9, 32, 1, 1, 0, 0, 0, 0, 2, 1),    /* 1x1 with dilation 2 */
        conv(2, 9, 11, 13, 40, 1, 1, 0, 0, 0, 0, 1, 1),  /* 1x1, odd K */
        conv(2, 18, 9, 9, 48, 1, 1, 0, 0, 0, 0, 1, 2),   /* 1x1, 2 groups of 9 channels */
        conv(1, 600, 3, 4, 40, 1, 1, 0, 0, 0, 0, 1, 1),  /* 1x1, K past the widening interval */
        conv(2, 6, 38, 38, 40, 3, 1, 1, 1, 1, 1, 1, 1),  /* rows of 38: tiles 10, 10, 9, 9 */
        conv(1, 3, 9, 160, 32, 3, 2, 0, 0, 0, 0, 1, 1),  /* rows of 79, stride 2 (the FaceNet stem) */
        conv(1, 4, 6, 16, 32, 3, 1, 1, 1, 1, 1, 1, 1),   /* rows of 16: two tiles of 8 */
        conv(1, 4, 6, 15, 32, 3, 1, 1, 1, 1, 1, 1, 1),   /* rows of 15: column tiles */
        conv(1, 3, 23, 67, 40, 11, 4, 2, 2, 2, 2, 1, 1), /* stride 4, k11, pads (the AlexNet stem) */
        conv(2, 4, 20, 50, 32, 5, 3, 1, 2, 1, 2, 1, 1),  /* stride 3, asymmetric pads */
        conv(1, 4, 12, 90, 32, 3, 5, 1, 1, 1, 1, 1, 1),  /* stride 5: the widest row packing */
        conv(1, 4, 14, 100, 32, 3, 6, 1, 1, 1, 1, 1, 1), /* stride 6: row tiles, gathered */
        conv(1, 2, 5, 64, 32, 3, 4, 0, 3, 0, 3, 2, 1),   /* stride 4, dilation 2, pads past the row's end */
        conv(16, 64, 5, 7, 80, 1, 1, 0, 0, 0, 0, 1, 1),  /* 1x1 at batch 16: 35 positions, pairs in 16s and a tail */
        conv(16, 7, 4, 8, 40, 1, 1, 0, 0, 0, 0, 1, 1),   /* 1x1 at batch 16, odd K, 32 positions: no tail */
        conv(16, 3, 9, 40, 32, 3, 2, 1, 1, 1, 1, 1, 1),  /* K = 27, stride 2, pads, batch 16 (the FaceNet stem) */
    };
    static const unsigned ls[] = { 1, 16, 25, 29, 32, 33, 34, 35, 40, 47, 48, 57, 64 };
    for (size_t gi = 0; gi < sizeof gs / sizeof gs[0]; gi++)
        for (size_t li = 0; li < sizeof ls / sizeof ls[0]; li++)
            check_one(f, &gs[gi], ls[li], (gi + li) % 2 ? 16 : 9, &r);
    /* inputs whose digits pass a run's bound (VNNI_DIG_CHUNK_BYTES): for
     * l > 16 the samples run in chunks of 2 and 1, or one by one */
    te_linear_geom big[] = {
        conv(3, 8, 60, 100, 32, 3, 2, 1, 1, 1, 1, 1, 1),
        conv(3, 64, 40, 40, 40, 1, 1, 0, 0, 0, 0, 1, 1),
    };
    static const unsigned bls[] = { 16, 32, 33, 64 };
    for (size_t gi = 0; gi < sizeof big / sizeof big[0]; gi++)
        for (size_t li = 0; li < sizeof bls / sizeof bls[0]; li++)
            check_one(f, &big[gi], bls[li], 15, &r);
    /* every micro-tile width 1..12 at the end of the column tiling */
    for (int64_t rows = 1; rows <= 25; rows++) {
        te_linear_geom g = fc(rows, 37, 40);
        check_one(f, &g, rows % 2 ? 34 : 30, 14, &r);
    }
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

/* ---- the AMX kernels (kernel=amx) ---------------------------------------- */

/* Where the CPU lacks AMX the fixture holds no plugin and the tests skip,
 * saying why. */
typedef struct amx_fixture {
    fixture f;
    char why[sizeof(((te_err *)0)->msg)];
} amx_fixture;

static int setup_amx_with(void **state, const char *config)
{
    amx_fixture *a = calloc(1, sizeof *a);
    if (!a)
        return -1;
    te_err err;
    te_err_clear(&err);
    if (te_plugin_open("cpu", config, &a->f.p, &err) == TE_OK) {
        a->f.ops = te_plugin_get_ops(a->f.p);
        a->f.ctx = te_plugin_get_ctx(a->f.p);
    } else {
        a->f.p = NULL;
        snprintf(a->why, sizeof a->why, "%s", err.msg);
    }
    *state = a;
    return 0;
}

static int setup_amx(void **state)
{
    return setup_amx_with(state, "kernel=amx");
}

static int setup_amx_3threads(void **state)
{
    return setup_amx_with(state, "kernel=amx;threads=3");
}

static int teardown_amx(void **state)
{
    amx_fixture *a = *state;
    if (a->f.p)
        te_plugin_close(a->f.p);
    free(a);
    return 0;
}

static fixture *amx_or_skip(void **state)
{
    amx_fixture *a = *state;
    if (!a->f.p) {
        print_message("skipping the AMX kernel test: %s\n", a->why);
        skip();
    }
    return &a->f;
}

/* Run plugin and reference on given weights and inputs. */
static void check_data(fixture *f, const te_linear_geom *g, unsigned l, const int32_t *w, const uint64_t *x,
                       const char *what)
{
    size_t no = (size_t)(out_len(g) * g->batch);
    uint64_t *want = malloc(no * sizeof *want), *got = malloc(no * sizeof *got);
    assert_true(want && got);
    for (size_t i = 0; i < no; i++)
        got[i] = 0xDEADBEEFDEADBEEFULL;
    te_linear_ref_ring(g, w, l, x, want);
    te_err err;
    te_err_clear(&err);
    te_plugin_layer *pl = NULL;
    assert_int_equal(f->ops->load_layer(f->ctx, g, w, &pl, &err), TE_OK);
    assert_int_equal(f->ops->run(f->ctx, pl, l, (uint64_t)g->batch, x, got, &err), TE_OK);
    for (size_t i = 0; i < no; i++)
        if (got[i] != want[i])
            fail_msg("%s: %s in_c=%lld out_c=%lld batch=%lld l=%u: output %zu got %llx want %llx", what,
                     g->kind == TE_LIN_FC ? "fc" : "conv", (long long)g->in_c, (long long)g->out_c,
                     (long long)g->batch, l, i, (unsigned long long)got[i], (unsigned long long)want[i]);
    f->ops->release_layer(f->ctx, pl);
    free(want);
    free(got);
}

static int64_t pick(rng *r, const int64_t *v, size_t n)
{
    return v[rnd(r) % n];
}
#define PICK(r, ...) pick(r, (const int64_t[]){ __VA_ARGS__ }, sizeof((const int64_t[]){ __VA_ARGS__ }) / sizeof(int64_t))

/* A random geometry: FC, or a convolution with groups, stride, dilation and
 * asymmetric padding; direct != 0 asks for 64-channel multiples per group
 * (the AMX kernel's direct layout), else the gathered ones. */
static te_linear_geom random_geom(rng *r, int direct)
{
    int64_t batch = 1 + (int64_t)(rnd(r) % 17);
    if (rnd(r) % 5 == 0) {
        int64_t k = direct ? 64 * PICK(r, 1, 2, 3) : PICK(r, 1, 3, 37, 100, 257);
        return fc(batch, k, PICK(r, 8, 16, 17, 40, 70));
    }
    int64_t group = PICK(r, 1, 1, 2), icg = direct ? 64 * PICK(r, 1, 1, 2) : PICK(r, 1, 3, 4, 5, 12, 48);
    int64_t ocg = PICK(r, 8, 16, 17, 33);
    int64_t k = PICK(r, 1, 2, 3, 3, 5), stride = PICK(r, 1, 1, 2, 3), dil = PICK(r, 1, 1, 2);
    int64_t h = 4 + (int64_t)(rnd(r) % 12), w = 4 + (int64_t)(rnd(r) % 20);
    int64_t pt = (int64_t)(rnd(r) % 3), pl = (int64_t)(rnd(r) % 3), pb = (int64_t)(rnd(r) % 3),
            pr = (int64_t)(rnd(r) % 3);
    /* keep the kernel inside the padded input */
    while (dil * (k - 1) + 1 > h + pt + pb || dil * (k - 1) + 1 > w + pl + pr)
        k--;
    te_linear_geom g = conv(batch, icg * group, h, w, ocg * group, k, stride, pt, pl, pb, pr, dil, group);
    if (rnd(r) % 4 == 0) { /* unequal strides and dilations */
        g.stride_w = PICK(r, 1, 2);
        g.dil_w = 1;
        g.out_w = (w + pl + pr - (k - 1) - 1) / g.stride_w + 1;
    }
    return g;
}

/* Bit-exact against te_linear_ref_ring for every ring width 1..64, over
 * random geometries of both layouts, weights of up to 16 bits. */
static void test_amx_all_widths(void **state)
{
    fixture *f = amx_or_skip(state);
    rng r = { 0xA11E };
    for (unsigned l = 1; l <= 64; l++)
        for (int direct = 0; direct < 2; direct++) {
            te_linear_geom g = random_geom(&r, direct);
            check_one(f, &g, l, l % 3 == 0 ? 16 : (unsigned)(1 + rnd(&r) % 16), &r);
        }
}

/* Fixed geometries around the kernel's edges: rows of one column more or
 * less than a row group, channel tiles, both layouts, stride phases. */
static void test_amx_geometries(void **state)
{
    fixture *f = amx_or_skip(state);
    rng r = { 777 };
    te_linear_geom gs[] = {
        conv(1, 64, 7, 7, 64, 3, 1, 1, 1, 1, 1, 1, 1),     /* direct, 7-wide rows */
        conv(2, 128, 14, 14, 33, 3, 2, 1, 1, 1, 1, 1, 1),  /* direct, stride 2 phases */
        conv(3, 64, 12, 12, 17, 1, 2, 0, 0, 0, 0, 1, 1),   /* direct 1x1 stride 2: flat */
        conv(1, 64, 9, 11, 16, 3, 1, 2, 2, 2, 2, 2, 1),    /* direct, dilation 2 */
        conv(2, 128, 8, 8, 32, 3, 3, 1, 0, 2, 1, 1, 2),    /* direct, groups, stride 3, asym pads */
        conv(17, 64, 3, 3, 8, 3, 1, 0, 0, 0, 0, 1, 1),     /* direct, one output per sample */
        fc(17, 256, 40),                                   /* direct FC */
        fc(1, 64, 1000),                                   /* direct FC, batch 1 */
        conv(2, 3, 23, 23, 24, 11, 4, 0, 0, 0, 0, 1, 1),   /* gathered, width quads, stride 4 */
        conv(1, 3, 20, 20, 16, 7, 2, 3, 3, 3, 3, 1, 1),    /* gathered, width quads, stride 2 */
        conv(2, 48, 9, 9, 32, 5, 1, 2, 2, 2, 2, 1, 2),     /* gathered, channel quads, groups */
        conv(1, 5, 10, 10, 9, 3, 1, 1, 1, 1, 1, 2, 1),     /* gathered, dilation 2 */
        fc(5, 300, 70),                                    /* gathered FC */
    };
    static const unsigned ls[] = { 1, 8, 9, 16, 24, 31, 32, 33, 39, 40, 41, 48, 56, 57, 63, 64 };
    for (size_t gi = 0; gi < sizeof gs / sizeof gs[0]; gi++)
        for (size_t li = 0; li < sizeof ls / sizeof ls[0]; li++)
            check_one(f, &gs[gi], ls[li], 16, &r);
}

/* Digits d_i in {-128, 127} alternating (with "phase" choosing which comes
 * first): x = sum_i d_i 2^(8i) mod 2^l; with w = -32513 (u = 255, h = -128)
 * or 32767 every digit-pair sum is at its largest magnitude. */
static uint64_t edge_input(unsigned l, int phase)
{
    uint64_t x = 0;
    for (int i = 0; i < 8; i++) {
        int64_t d = ((i + phase) & 1) ? 127 : -128;
        x += (uint64_t)d << (8 * i);
    }
    return x & te_ring_mask(l);
}

/* Extreme weights and inputs at the ring's edges, every l: the exact limbs'
 * int32 sums near their bound, and dot products longer than one exact
 * window (CPU_AMX_WINDOW = 512 K steps; at 688 steps a single window's int32
 * sums would overflow with these inputs). */
static void test_amx_extreme(void **state)
{
    fixture *f = amx_or_skip(state);
    static const int32_t wext[] = { 32767, -32768, -32513, -32767, 255, -256, 32640 };
    te_linear_geom gs[] = {
        fc(2, 32768, 16),                                  /* one full window, direct */
        fc(2, 44032, 16),                                  /* 688 steps: two windows, direct */
        fc(2, 44001, 16),                                  /* two windows, gathered */
        conv(1, 512, 4, 4, 16, 3, 1, 1, 1, 1, 1, 1, 1),    /* direct conv, K = 4608 */
        conv(2, 64, 5, 5, 16, 3, 2, 1, 1, 1, 1, 1, 1),     /* direct conv, stride 2 */
        conv(1, 5, 6, 6, 16, 3, 1, 1, 1, 1, 1, 1, 1),      /* gathered conv */
    };
    rng r = { 4096 };
    for (size_t gi = 0; gi < sizeof gs / sizeof gs[0]; gi++) {
        const te_linear_geom *g = &gs[gi];
        size_t ni = (size_t)(in_len(g) * g->batch), nw = (size_t)w_len(g);
        int32_t *w = malloc(nw * sizeof *w);
        uint64_t *x = malloc(ni * sizeof *x);
        assert_true(w && x);
        for (unsigned l = 1; l <= 64; l++) {
            /* the long dot products at the widths with exact limbs */
            if (gi < 3 && !(l == 33 || l == 40 || l == 41 || l == 48 || l == 49 || l == 56 || l == 57 || l == 64))
                continue;
            uint64_t m = te_ring_mask(l);
            /* all at the bound: one weight, every digit pair at its extreme */
            for (size_t i = 0; i < nw; i++)
                w[i] = l % 2 ? -32513 : 32767;
            for (size_t i = 0; i < ni; i++)
                x[i] = edge_input(l, (int)((size_t)i * (size_t)g->batch / ni));
            check_data(f, g, l, w, x, "extreme (bound)");
            /* mixed extremes */
            for (size_t i = 0; i < nw; i++)
                w[i] = wext[(i + l) % 7];
            for (size_t i = 0; i < ni; i++) {
                switch ((l + i / 7) % 5) {
                case 0: x[i] = edge_input(l, 0); break;
                case 1: x[i] = edge_input(l, 1); break;
                case 2: x[i] = m; break;                                  /* -1 */
                case 3: x[i] = ((uint64_t)1 << (l - 1)) & m; break;       /* -2^(l-1) */
                default: x[i] = (rnd(&r) & 1) ? (m >> 1) : (rnd(&r) & m); /* 2^(l-1) - 1 or random */
                }
            }
            check_data(f, g, l, w, x, "extreme (mixed)");
        }
        free(w);
        free(x);
    }
}

/* kernel=amx where AMX cannot run is an error naming the reason, never a
 * silent fallback; kernel=auto then picks another kernel.  On a CPU with
 * AMX, TWINEDGE_CPU_NO_AMX=1 makes the plugin act as if it had none. */
static void test_amx_config(void **state)
{
    (void)state;
    te_plugin *p = NULL;
    te_err err;
    te_plugin_caps caps;
    te_err_clear(&err);
    if (te_plugin_open("cpu", "kernel=amx;threads=1", &p, &err) == TE_OK) {
        assert_int_equal(te_plugin_get_ops(p)->caps(te_plugin_get_ctx(p), &caps, &err), TE_OK);
        assert_string_equal(caps.device_name, "CPU (AMX int8, 1 thread)");
        te_plugin_close(p);
        p = NULL;
    } else {
        print_message("this CPU has no usable AMX: %s\n", err.msg);
    }
    assert_int_equal(setenv("TWINEDGE_CPU_NO_AMX", "1", 1), 0);
    te_err_clear(&err);
    te_status st = te_plugin_open("cpu", "kernel=amx", &p, &err);
    assert_int_equal(st, TE_EUNSUPPORTED);
    assert_null(p);
    assert_non_null(strstr(err.msg, "kernel=amx"));
    assert_int_equal(te_plugin_open("cpu", "threads=1", &p, &err), TE_OK);
    assert_int_equal(te_plugin_get_ops(p)->caps(te_plugin_get_ctx(p), &caps, &err), TE_OK);
    assert_null(strstr(caps.device_name, "AMX"));
    te_plugin_close(p);
    assert_int_equal(unsetenv("TWINEDGE_CPU_NO_AMX"), 0);
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
        cmocka_unit_test_setup_teardown(test_vnni_row_tiles, setup_vnni, teardown),
        cmocka_unit_test_setup_teardown(test_all_geometries_all_widths, setup_vnni, teardown),
        cmocka_unit_test_setup_teardown(test_threads, setup_vnni, teardown),
    };
    const struct CMUnitTest amx_tests[] = {
        cmocka_unit_test_setup_teardown(test_amx_all_widths, setup_amx, teardown_amx),
        cmocka_unit_test_setup_teardown(test_amx_geometries, setup_amx, teardown_amx),
        cmocka_unit_test_setup_teardown(test_amx_geometries, setup_amx_3threads, teardown_amx),
        cmocka_unit_test_setup_teardown(test_amx_extreme, setup_amx, teardown_amx),
        cmocka_unit_test(test_amx_config),
    };
    int failed = cmocka_run_group_tests(tests, NULL, NULL);
    /* The AMX tests skip (saying why) where the CPU lacks AMX. */
    failed += cmocka_run_group_tests_name("amx", amx_tests, NULL, NULL);
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
