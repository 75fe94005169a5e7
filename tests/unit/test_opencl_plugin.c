/* The OpenCL plugin, loaded through the real loader (on PoCL in CI), must
 * agree bit for bit with te_linear_ref_ring and with the CPU plugin on every
 * geometry and ring width, on both exact paths (the ulong kernels and the
 * CLBlast DGEMM limbs, each forced by kernel=, and whatever kernel=auto
 * picks); its float32 baseline (CLBlast SGEMM) must match the CPU plugin's;
 * and it must fail clearly when no device is there.
 *
 * Run with --no-platform (ctest sets OCL_ICD_VENDORS to an empty directory)
 * it checks only the "no OpenCL platform" error; with --arch NAME, every
 * linear layer of the test model NAME on the DGEMM path at l = 16, 32, 48, 64
 * against the CPU plugin. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <pthread.h>
#include <dirent.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
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

static te_linear_geom conv2(int64_t batch, int64_t in_c, int64_t h, int64_t w, int64_t out_c, int64_t kh,
                            int64_t kw, int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t pb, int64_t pr,
                            int64_t dh, int64_t dw, int64_t group)
{
    te_linear_geom g = { TE_LIN_CONV, batch, in_c, h, w, out_c, 0, 0, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, group };
    g.out_h = (h + pt + pb - dh * (kh - 1) - 1) / sh + 1;
    g.out_w = (w + pl + pr - dw * (kw - 1) - 1) / sw + 1;
    return g;
}

static te_linear_geom conv(int64_t batch, int64_t in_c, int64_t h, int64_t w, int64_t out_c, int64_t k,
                           int64_t stride, int64_t pt, int64_t pl, int64_t pb, int64_t pr, int64_t dil, int64_t group)
{
    return conv2(batch, in_c, h, w, out_c, k, k, stride, stride, pt, pl, pb, pr, dil, dil, group);
}

static te_linear_geom fc(int64_t rows, int64_t k, int64_t n)
{
    te_linear_geom g = { TE_LIN_FC, rows, k, 1, 1, n, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1 };
    return g;
}

typedef struct fixture {
    te_plugin *ocl, *cpu;
    const te_plugin_ops *ops, *cpu_ops;
    te_plugin_ctx *ctx, *cpu_ctx;
    /* the same plugin with each exact path forced (ops are the same table) */
    te_plugin *ocl_path[2];
    te_plugin_ctx *path_ctx[2];
} fixture;

static const char *const path_config[2] = { "kernel=ulong", "kernel=dgemm" };

/* $TE_TEST_OCL_CONFIG (e.g. "platform=nvidia;device_type=gpu", set by
 * scripts/gpu-check.sh) picks the device; extra keys follow it. */
static const char *ocl_config(char *buf, size_t cap, const char *extra)
{
    const char *base = getenv("TE_TEST_OCL_CONFIG");
    base = base ? base : "";
    snprintf(buf, cap, "%s%s%s", base, *base && *extra ? ";" : "", extra);
    return buf;
}

/* Opened once per process: PoCL's first kernel compile takes seconds. */
static int group_setup(void **state)
{
    fixture *f = calloc(1, sizeof *f);
    if (!f)
        return -1;
    te_err err;
    te_err_clear(&err);
    char cfg[1024];
    if (te_plugin_open("opencl", ocl_config(cfg, sizeof cfg, ""), &f->ocl, &err) != TE_OK) {
        fprintf(stderr,
                "FAIL: cannot open the OpenCL plugin on the default device: %s\n"
                "      (these tests need an OpenCL implementation: apt-get install pocl-opencl-icd)\n",
                err.msg);
        free(f);
        return -1;
    }
    if (te_plugin_open("cpu", "threads=2", &f->cpu, &err) != TE_OK) {
        fprintf(stderr, "FAIL: cannot open the cpu plugin: %s\n", err.msg);
        te_plugin_close(f->ocl);
        free(f);
        return -1;
    }
    for (int i = 0; i < 2; i++) {
        if (te_plugin_open("opencl", ocl_config(cfg, sizeof cfg, path_config[i]), &f->ocl_path[i], &err) != TE_OK) {
            fprintf(stderr, "FAIL: cannot open the OpenCL plugin with %s: %s\n", path_config[i], err.msg);
            for (int j = 0; j < i; j++)
                te_plugin_close(f->ocl_path[j]);
            te_plugin_close(f->ocl);
            te_plugin_close(f->cpu);
            free(f);
            return -1;
        }
        f->path_ctx[i] = te_plugin_get_ctx(f->ocl_path[i]);
    }
    f->ops = te_plugin_get_ops(f->ocl);
    f->ctx = te_plugin_get_ctx(f->ocl);
    f->cpu_ops = te_plugin_get_ops(f->cpu);
    f->cpu_ctx = te_plugin_get_ctx(f->cpu);
    *state = f;
    return 0;
}

static int group_teardown(void **state)
{
    fixture *f = *state;
    if (f) {
        te_plugin_close(f->ocl);
        te_plugin_close(f->cpu);
        for (int i = 0; i < 2; i++)
            te_plugin_close(f->ocl_path[i]);
        free(f);
    }
    return 0;
}

static void describe(const te_linear_geom *g, char *buf, size_t cap)
{
    snprintf(buf, cap, "%s in_c=%lld %lldx%lld out_c=%lld k=%lldx%lld s=%lldx%lld pads=%lld,%lld,%lld,%lld "
             "dil=%lldx%lld group=%lld batch=%lld", g->kind == TE_LIN_FC ? "fc" : "conv", (long long)g->in_c,
             (long long)g->in_h, (long long)g->in_w, (long long)g->out_c, (long long)g->k_h, (long long)g->k_w,
             (long long)g->stride_h, (long long)g->stride_w, (long long)g->pad_t, (long long)g->pad_l,
             (long long)g->pad_b, (long long)g->pad_r, (long long)g->dil_h, (long long)g->dil_w,
             (long long)g->group, (long long)g->batch);
}

/* Run the OpenCL plugin, the reference and the CPU plugin on one geometry at
 * ring width l (inputs uniform in Z_2^l, weights of wbits bits). */
static void check_one(fixture *f, const te_linear_geom *g, unsigned l, unsigned wbits, rng *r)
{
    size_t ni = (size_t)(te_geom_in_len(g) * g->batch), no = (size_t)(te_geom_out_len(g) * g->batch);
    size_t nw = (size_t)te_geom_weight_len(g);
    int32_t *w = malloc(nw * sizeof *w);
    uint64_t *x = malloc(ni * sizeof *x), *want = malloc(no * sizeof *want), *got = malloc(no * sizeof *got);
    uint64_t *cpu = malloc(no * sizeof *cpu);
    assert_true(w && x && want && got && cpu);
    for (size_t i = 0; i < nw; i++)
        w[i] = rnd_w(r, wbits);
    for (size_t i = 0; i < ni; i++)
        x[i] = rnd(r) & te_ring_mask(l);
    for (size_t i = 0; i < no; i++)
        got[i] = 0xDEADBEEFDEADBEEFULL; /* every output must be written */
    te_linear_ref_ring(g, w, l, x, want);

    te_err err;
    te_err_clear(&err);
    te_plugin_layer *pl = NULL, *cl = NULL;
    te_linear_geom g2 = *g;
    g2.batch = 77; /* ignored by load_layer */
    if (f->ops->load_layer(f->ctx, &g2, w, &pl, &err) != TE_OK)
        fail_msg("load_layer: %s", err.msg);
    /* The plugin copied the weights: scribbling on ours must not matter. */
    int32_t *w_saved = malloc(nw * sizeof *w);
    assert_non_null(w_saved);
    memcpy(w_saved, w, nw * sizeof *w);
    memset(w, 0x5A, nw * sizeof *w);
    if (f->ops->run(f->ctx, pl, l, (uint64_t)g->batch, x, got, &err) != TE_OK)
        fail_msg("run: %s", err.msg);
    memcpy(w, w_saved, nw * sizeof *w);
    free(w_saved);
    assert_int_equal(f->cpu_ops->load_layer(f->cpu_ctx, g, w, &cl, &err), TE_OK);
    assert_int_equal(f->cpu_ops->run(f->cpu_ctx, cl, l, (uint64_t)g->batch, x, cpu, &err), TE_OK);
    for (size_t i = 0; i < no; i++) {
        if (got[i] != want[i] || cpu[i] != want[i]) {
            char d[256];
            describe(g, d, sizeof d);
            fail_msg("%s l=%u wbits=%u: output %zu: opencl %llx, cpu %llx, reference %llx", d, l, wbits, i,
                     (unsigned long long)got[i], (unsigned long long)cpu[i], (unsigned long long)want[i]);
        }
    }
    /* each exact path forced, on the same data (a fixture without them:
     * the binary-cache test's context) */
    for (int p = 0; p < 2 && f->path_ctx[p]; p++) {
        te_plugin_layer *ql = NULL;
        if (f->ops->load_layer(f->path_ctx[p], g, w, &ql, &err) != TE_OK)
            fail_msg("%s: load_layer: %s", path_config[p], err.msg);
        for (size_t i = 0; i < no; i++)
            got[i] = 0xDEADBEEFDEADBEEFULL;
        if (f->ops->run(f->path_ctx[p], ql, l, (uint64_t)g->batch, x, got, &err) != TE_OK)
            fail_msg("%s: run: %s", path_config[p], err.msg);
        for (size_t i = 0; i < no; i++)
            if (got[i] != want[i]) {
                char d[256];
                describe(g, d, sizeof d);
                fail_msg("%s %s l=%u wbits=%u: output %zu: opencl %llx, reference %llx", path_config[p], d, l, wbits,
                         i, (unsigned long long)got[i], (unsigned long long)want[i]);
            }
        f->ops->release_layer(f->path_ctx[p], ql);
    }
    f->ops->release_layer(f->ctx, pl);
    f->cpu_ops->release_layer(f->cpu_ctx, cl);
    free(w);
    free(x);
    free(want);
    free(got);
    free(cpu);
}

static const unsigned ring_widths[] = { 1, 16, 32, 48, 63, 64 };
#define N_WIDTHS (sizeof ring_widths / sizeof ring_widths[0])

static void test_caps(void **state)
{
    fixture *f = *state;
    te_plugin_caps c;
    te_err err;
    te_err_clear(&err);
    assert_string_equal(f->ops->name, "opencl");
    assert_int_equal(f->ops->caps(f->ctx, &c, &err), TE_OK);
    assert_int_equal(c.min_ring_bits, 1);
    assert_int_equal(c.max_ring_bits, 64);
    assert_true(c.max_batch >= 2);
    assert_true(c.device_memory > 0);
    assert_true(strlen(c.device_name) > 0);
    assert_non_null(strstr(c.device_name, "OpenCL"));
}

static void test_conv_geometries(void **state)
{
    fixture *f = *state;
    rng r = { 7 };
    te_linear_geom gs[32];
    size_t n = 0;
    for (int64_t b = 1; b <= 2; b++) {
        gs[n++] = conv(b, 3, 9, 9, 5, 1, 1, 0, 0, 0, 0, 1, 1);          /* 1x1 */
        gs[n++] = conv(b, 4, 8, 10, 6, 3, 1, 1, 1, 1, 1, 1, 1);         /* 3x3 same */
        gs[n++] = conv(b, 3, 11, 11, 4, 5, 2, 2, 2, 2, 2, 1, 1);        /* 5x5 stride 2 */
        gs[n++] = conv(b, 3, 27, 27, 6, 11, 4, 2, 2, 2, 2, 1, 1);       /* 11x11 stride 4 (AlexNet conv1) */
        gs[n++] = conv(b, 5, 10, 9, 3, 3, 1, 2, 2, 2, 2, 2, 1);         /* dilation 2 */
        gs[n++] = conv(b, 4, 9, 8, 5, 3, 2, 0, 1, 2, 0, 1, 1);          /* asymmetric pads */
        gs[n++] = conv(b, 6, 8, 8, 10, 3, 1, 1, 1, 1, 1, 1, 2);         /* groups 2 */
        gs[n++] = conv(b, 8, 9, 9, 8, 3, 2, 1, 1, 1, 1, 1, 8);          /* depthwise stride 2 */
        gs[n++] = conv(b, 6, 7, 7, 12, 5, 1, 2, 2, 2, 2, 1, 6);         /* depthwise x2 multiplier */
        gs[n++] = conv(b, 4, 9, 9, 8, 3, 1, 1, 0, 0, 1, 2, 2);          /* groups + dilation + asym */
        gs[n++] = conv(b, 2, 2, 2, 3, 3, 1, 1, 1, 1, 1, 1, 1);          /* kernel bigger than input */
    }
    gs[n++] = conv2(1, 5, 9, 13, 7, 3, 5, 2, 1, 1, 2, 0, 3, 1, 2, 1);   /* rectangular everything */
    gs[n++] = conv(2, 40, 9, 9, 70, 3, 1, 1, 1, 1, 1, 1, 1);            /* several tiles each way */
    gs[n++] = conv(1, 1, 12, 12, 4, 3, 1, 1, 1, 1, 1, 1, 1);            /* one input channel */
    for (size_t gi = 0; gi < n; gi++)
        for (size_t li = 0; li < N_WIDTHS; li++)
            check_one(f, &gs[gi], ring_widths[li], (gi + li) % 7 == 0 ? 32 : 16, &r);
}

static void test_fc(void **state)
{
    fixture *f = *state;
    rng r = { 11 };
    /* batch <= 4: matrix-vector kernel; larger: the GEMM kernel */
    const te_linear_geom gs[] = { fc(1, 37, 11), fc(2, 300, 70), fc(4, 129, 5), fc(7, 33, 9), fc(20, 100, 45),
                                  fc(1, 3000, 3) };
    for (size_t gi = 0; gi < sizeof gs / sizeof gs[0]; gi++)
        for (size_t li = 0; li < N_WIDTHS; li++)
            check_one(f, &gs[gi], ring_widths[li], gi == 1 ? 32 : 16, &r);
}

static void test_full_int32_weights(void **state)
{
    fixture *f = *state;
    rng r = { 99 };
    te_linear_geom g1 = conv(2, 5, 7, 7, 9, 3, 1, 1, 1, 1, 1, 1, 1), g2 = fc(2, 64, 10);
    te_linear_geom g3 = conv(1, 4, 6, 6, 4, 3, 1, 1, 1, 1, 1, 1, 4);
    for (size_t li = 0; li < N_WIDTHS; li++) {
        check_one(f, &g1, ring_widths[li], 32, &r);
        check_one(f, &g2, ring_widths[li], 32, &r);
        check_one(f, &g3, ring_widths[li], 32, &r);
    }
}

/* A long dot product (K = 4608) at l = 64: sums far beyond 2^64 wrap. */
static void test_large_dot_len(void **state)
{
    fixture *f = *state;
    rng r = { 5 };
    te_linear_geom g = conv(1, 512, 6, 6, 8, 3, 1, 1, 1, 1, 1, 1, 1);
    check_one(f, &g, 64, 16, &r);
    check_one(f, &g, 64, 32, &r);
    check_one(f, &g, 63, 32, &r);
}

static void test_run_errors(void **state)
{
    fixture *f = *state;
    te_err err;
    te_err_clear(&err);
    te_linear_geom g = fc(1, 4, 2);
    int32_t w[8] = { 1, 2, 3, 4, 5, 6, 7, 8 };
    uint64_t x[4] = { 1, 1, 1, 1 }, y[2] = { 0, 0 };
    te_plugin_layer *pl = NULL;
    assert_int_equal(f->ops->load_layer(f->ctx, &g, w, &pl, &err), TE_OK);
    assert_int_equal(f->ops->run(f->ctx, pl, 0, 1, x, y, &err), TE_EINVAL);
    assert_int_equal(f->ops->run(f->ctx, pl, 65, 1, x, y, &err), TE_EINVAL);
    assert_int_equal(f->ops->run(f->ctx, pl, 64, 0, x, y, &err), TE_OK);
    assert_int_equal(f->ops->run(f->ctx, pl, 8, 1, x, y, &err), TE_OK);
    assert_int_equal(y[0], 10);
    assert_int_equal(y[1], 26);
    f->ops->release_layer(f->ctx, pl);

    te_linear_geom bad = conv(1, 6, 5, 5, 4, 3, 1, 1, 1, 1, 1, 1, 4); /* 6 channels, 4 groups */
    assert_int_equal(f->ops->load_layer(f->ctx, &bad, w, &pl, &err), TE_ESHAPE);
    assert_null(pl);
}

/* Several threads run the same and different layers at once. */
typedef struct thread_arg {
    fixture *f;
    te_plugin_layer *layer;
    uint64_t batch, in_len, out_len;
    const uint64_t *x, *want;
    unsigned l;
    int ok;
} thread_arg;

static void *thread_main(void *p)
{
    thread_arg *a = p;
    uint64_t *y = malloc(a->batch * a->out_len * sizeof *y);
    a->ok = y != NULL;
    for (int it = 0; it < 5 && a->ok; it++) {
        te_err err;
        te_err_clear(&err);
        if (a->f->ops->run(a->f->ctx, a->layer, a->l, a->batch, a->x, y, &err) != TE_OK ||
            memcmp(y, a->want, a->batch * a->out_len * sizeof *y) != 0)
            a->ok = 0;
    }
    free(y);
    return NULL;
}

static void test_concurrent_runs(void **state)
{
    fixture *f = *state;
    rng r = { 31 };
    te_linear_geom gs[2] = { conv(2, 6, 8, 8, 10, 3, 1, 1, 1, 1, 1, 1, 1), fc(3, 50, 17) };
    te_plugin_layer *layers[2];
    uint64_t *xs[2], *wants[2];
    int32_t *ws[2];
    te_err err;
    te_err_clear(&err);
    for (int i = 0; i < 2; i++) {
        size_t ni = (size_t)(te_geom_in_len(&gs[i]) * gs[i].batch), no = (size_t)(te_geom_out_len(&gs[i]) * gs[i].batch);
        size_t nw = (size_t)te_geom_weight_len(&gs[i]);
        ws[i] = malloc(nw * sizeof *ws[i]);
        xs[i] = malloc(ni * sizeof *xs[i]);
        wants[i] = malloc(no * sizeof *wants[i]);
        assert_true(ws[i] && xs[i] && wants[i]);
        for (size_t j = 0; j < nw; j++)
            ws[i][j] = rnd_w(&r, 16);
        for (size_t j = 0; j < ni; j++)
            xs[i][j] = rnd(&r) & te_ring_mask(48);
        te_linear_ref_ring(&gs[i], ws[i], 48, xs[i], wants[i]);
        assert_int_equal(f->ops->load_layer(f->ctx, &gs[i], ws[i], &layers[i], &err), TE_OK);
    }
    enum { NT = 4 };
    thread_arg args[NT];
    pthread_t tids[NT];
    for (int t = 0; t < NT; t++) {
        int i = t % 2;
        args[t] = (thread_arg){ f, layers[i], (uint64_t)gs[i].batch, (uint64_t)te_geom_in_len(&gs[i]),
                                (uint64_t)te_geom_out_len(&gs[i]), xs[i], wants[i], 48, 0 };
        assert_int_equal(pthread_create(&tids[t], NULL, thread_main, &args[t]), 0);
    }
    for (int t = 0; t < NT; t++) {
        pthread_join(tids[t], NULL);
        assert_true(args[t].ok);
    }
    for (int i = 0; i < 2; i++) {
        f->ops->release_layer(f->ctx, layers[i]);
        free(ws[i]);
        free(xs[i]);
        free(wants[i]);
    }
}

static void expect_open_error(const char *config, te_status code, const char *needle)
{
    te_plugin *p = NULL;
    te_err err;
    te_err_clear(&err);
    te_status st = te_plugin_open("opencl", config, &p, &err);
    if (st != code || !strstr(err.msg, needle)) {
        te_plugin_close(p);
        fail_msg("config \"%s\": got status %d \"%s\", want status %d mentioning \"%s\"", config, (int)st, err.msg,
                 (int)code, needle);
    }
    assert_null(p);
}

static void test_bad_config(void **state)
{
    (void)state;
    /* Out-of-range indices list what exists. */
    expect_open_error("platform=99", TE_EPLUGIN, "platform index 99 out of range");
    expect_open_error("platform=99", TE_EPLUGIN, "[0] ");
    expect_open_error("platform=0;device=99", TE_EPLUGIN, "device index 99 out of range");
    expect_open_error("platform=no-such-platform-xyz", TE_EPLUGIN, "no OpenCL platform matches");
    expect_open_error("device_type=tpu", TE_EINVAL, "device_type");
    expect_open_error("device=-1", TE_EINVAL, "device=-1");
    expect_open_error("colour=blue", TE_EINVAL, "unknown config key 'colour'");
    expect_open_error("platform", TE_EINVAL, "not key=value");
    expect_open_error("kernel=fast", TE_EINVAL, "kernel=fast: use auto, ulong or dgemm");
}

static void test_select_by_name_and_type(void **state)
{
    (void)state;
    te_plugin *p = NULL;
    te_err err;
    te_err_clear(&err);
    /* PoCL: "Portable Computing Language", a CPU device (or the device
     * $TE_TEST_OCL_CONFIG names). */
    const char *sel = getenv("TE_TEST_OCL_CONFIG");
    te_status st = te_plugin_open("opencl", sel ? sel : " platform = portable ; device_type=cpu; device=0 ", &p, &err);
    if (st != TE_OK)
        fail_msg("selecting %s by name: %s", sel ? sel : "PoCL", err.msg);
    te_plugin_close(p);
    st = te_plugin_open("opencl", "platform=0;device=0", &p, &err);
    if (st != TE_OK)
        fail_msg("platform=0;device=0: %s", err.msg);
    te_plugin_close(p);
}

static int make_tmpdir(char *buf, size_t cap)
{
    const char *base = getenv("TMPDIR");
    snprintf(buf, cap, "%s/te_ocl_XXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(buf) != NULL;
}

static void rm_dir(const char *dir)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)) != NULL) {
            if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
                continue;
            char path[1024];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
        closedir(d);
    }
    rmdir(dir);
}

static void write_text(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* A kernel that does not compile: the error carries the build log. */
static void test_build_failure_reports_log(void **state)
{
    (void)state;
    char dir[512], config[600];
    assert_true(make_tmpdir(dir, sizeof dir));
    write_text(dir, "te_gemm.cl", "__kernel void te_gemm_conv(__global ulong *o) { o[0] = undeclared_thing; }\n");
    write_text(dir, "te_depthwise.cl", "__kernel void te_depthwise(__global ulong *o) { o[0] = 0; }\n");
    write_text(dir, "te_fc.cl", "__kernel void te_fc_gemv(__global ulong *o) { o[0] = 0; }\n");
    write_text(dir, "te_f32.cl", "__kernel void te_i2f(__global float *o) { o[0] = 0; }\n");
    write_text(dir, "te_limbs.cl", "__kernel void te_limbs_combine(__global ulong *o) { o[0] = 0; }\n");
    snprintf(config, sizeof config, "kernel_dir=%s", dir);
    expect_open_error(config, TE_EPLUGIN, "build log");
    expect_open_error(config, TE_EPLUGIN, "undeclared_thing");
    rm_dir(dir);
    /* A missing kernel directory is an I/O error naming the file. */
    expect_open_error("kernel_dir=/nonexistent/te-kernels", TE_EIO, "/nonexistent/te-kernels/te_gemm.cl");
}

/* cache_dir: the first context writes a program binary, the second loads it. */
static void test_binary_cache(void **state)
{
    fixture *f = *state;
    char dir[512], config[1200];
    assert_true(make_tmpdir(dir, sizeof dir));
    char extra[600];
    snprintf(extra, sizeof extra, "cache_dir=%s", dir);
    ocl_config(config, sizeof config, extra);
    for (int pass = 0; pass < 2; pass++) {
        te_plugin *p = NULL;
        te_err err;
        te_err_clear(&err);
        if (te_plugin_open("opencl", config, &p, &err) != TE_OK)
            fail_msg("cache_dir pass %d: %s", pass, err.msg);
        int files = 0;
        DIR *d = opendir(dir);
        assert_non_null(d);
        struct dirent *e;
        while ((e = readdir(d)) != NULL)
            files += strncmp(e->d_name, "twinedge-ocl-", 13) == 0;
        closedir(d);
        assert_int_equal(files, 1);
        fixture g = *f;
        g.path_ctx[0] = g.path_ctx[1] = NULL;
        g.ocl = p;
        g.ops = te_plugin_get_ops(p);
        g.ctx = te_plugin_get_ctx(p);
        rng r = { 1000 + (uint64_t)pass };
        te_linear_geom geo = conv(1, 4, 6, 6, 5, 3, 1, 1, 1, 1, 1, 1, 1);
        check_one(&g, &geo, 64, 16, &r);
        te_linear_geom dw = conv(1, 4, 6, 6, 4, 3, 1, 1, 1, 1, 1, 1, 4);
        check_one(&g, &dw, 63, 16, &r);
        te_linear_geom fcg = fc(1, 20, 3);
        check_one(&g, &fcg, 1, 16, &r);
        te_plugin_close(p);
    }
    rm_dir(dir);
}

/* gemm_tile= / gemm_wg=: other tile shapes of the ulong GEMM stay exact. */
static void test_gemm_tiles(void **state)
{
    fixture *f = *state;
    static const char *const configs[] = { "kernel=ulong;gemm_tile=64x64x16;gemm_wg=16x16",
                                           "kernel=ulong;gemm_tile=32x64x8;gemm_wg=8x8",
                                           "kernel=ulong;gemm_tile=64x32x32" };
    for (size_t c = 0; c < sizeof configs / sizeof configs[0]; c++) {
        te_plugin *p = NULL;
        te_err err;
        te_err_clear(&err);
        char cfg[1024];
        if (te_plugin_open("opencl", ocl_config(cfg, sizeof cfg, configs[c]), &p, &err) != TE_OK)
            fail_msg("%s: %s", configs[c], err.msg);
        fixture g = *f;
        g.path_ctx[0] = g.path_ctx[1] = NULL;
        g.ocl = p;
        g.ctx = te_plugin_get_ctx(p);
        rng r = { 500 + (uint64_t)c };
        te_linear_geom gs[] = { conv(2, 40, 9, 9, 70, 3, 1, 1, 1, 1, 1, 1, 1), conv(1, 3, 27, 27, 6, 11, 4, 2, 2, 2, 2, 1, 1),
                                conv(1, 6, 8, 8, 10, 3, 1, 1, 1, 1, 1, 1, 2), fc(7, 33, 9) };
        for (size_t i = 0; i < sizeof gs / sizeof gs[0]; i++) {
            check_one(&g, &gs[i], 64, 32, &r);
            check_one(&g, &gs[i], 17, 16, &r);
        }
        te_plugin_close(p);
    }
    expect_open_error("gemm_tile=33x32x16", TE_EINVAL, "does not fit the GEMM kernel");
    expect_open_error("gemm_tile=32x32", TE_EINVAL, "gemm_tile=32x32: use TMxTNxTK");
    expect_open_error("gemm_wg=8", TE_EINVAL, "gemm_wg=8: use LXxLY");
}

static void test_no_platform(void **state)
{
    (void)state;
    expect_open_error("", TE_EPLUGIN, "no OpenCL platform found (is an ICD such as pocl-opencl-icd installed?)");
}

/* ---- the float32 baseline (run_f32, CLBlast SGEMM) --------------------- */

/* run_f32 on both plugins; with small integer weights and inputs every sum
 * is exact in float32, so both must equal the integer reference bit for bit
 * whatever order they add in; otherwise they agree to rounding. */
static void check_f32(fixture *f, const te_linear_geom *g, int small_ints, rng *r)
{
    size_t ni = (size_t)(te_geom_in_len(g) * g->batch), no = (size_t)(te_geom_out_len(g) * g->batch);
    size_t nw = (size_t)te_geom_weight_len(g);
    int32_t *w = malloc(nw * sizeof *w);
    float *x = malloc(ni * sizeof *x), *got = malloc(no * sizeof *got), *cpu = malloc(no * sizeof *cpu);
    uint64_t *xr = malloc(ni * sizeof *xr), *want = malloc(no * sizeof *want);
    assert_true(w && x && got && cpu && xr && want);
    for (size_t i = 0; i < nw; i++)
        w[i] = small_ints ? (int32_t)(rnd(r) % 17) - 8 : rnd_w(r, 16);
    for (size_t i = 0; i < ni; i++) {
        int64_t v = (int64_t)(rnd(r) % 17) - 8;
        x[i] = small_ints ? (float)v : (float)((double)(rnd(r) >> 11) * 0x1p-53 - 0.5);
        xr[i] = (uint64_t)v;
    }
    for (size_t i = 0; i < no; i++)
        got[i] = -12345.0f;
    te_err err;
    te_err_clear(&err);
    te_plugin_layer *pl = NULL, *cl = NULL;
    assert_non_null(f->ops->run_f32);
    if (f->ops->load_layer(f->ctx, g, w, &pl, &err) != TE_OK)
        fail_msg("load_layer: %s", err.msg);
    if (f->ops->run_f32(f->ctx, pl, (uint64_t)g->batch, x, got, &err) != TE_OK)
        fail_msg("run_f32: %s", err.msg);
    assert_int_equal(f->cpu_ops->load_layer(f->cpu_ctx, g, w, &cl, &err), TE_OK);
    assert_int_equal(f->cpu_ops->run_f32(f->cpu_ctx, cl, (uint64_t)g->batch, x, cpu, &err), TE_OK);
    char d[256];
    describe(g, d, sizeof d);
    if (small_ints) {
        te_linear_ref_ring(g, w, 64, xr, want);
        for (size_t i = 0; i < no; i++) {
            float ref = (float)te_ring_to_signed(want[i], 64);
            if (got[i] != ref || cpu[i] != ref)
                fail_msg("f32 %s: output %zu: opencl %g, cpu %g, exact %g", d, i, (double)got[i], (double)cpu[i],
                         (double)ref);
        }
    } else {
        float big = 0;
        for (size_t i = 0; i < no; i++)
            big = fabsf(cpu[i]) > big ? fabsf(cpu[i]) : big;
        for (size_t i = 0; i < no; i++)
            if (fabsf(got[i] - cpu[i]) > 1e-4f * (big + 1.0f))
                fail_msg("f32 %s: output %zu: opencl %g, cpu %g", d, i, (double)got[i], (double)cpu[i]);
    }
    f->ops->release_layer(f->ctx, pl);
    f->cpu_ops->release_layer(f->cpu_ctx, cl);
    free(w), free(x), free(got), free(cpu), free(xr), free(want);
}

static void test_f32_baseline(void **state)
{
    fixture *f = *state;
    rng r = { 77 };
    te_linear_geom gs[32];
    size_t n = 0;
    for (int64_t b = 1; b <= 3; b += 2) {
        gs[n++] = conv(b, 3, 9, 9, 5, 1, 1, 0, 0, 0, 0, 1, 1);          /* 1x1 */
        gs[n++] = conv(b, 4, 8, 10, 6, 3, 1, 1, 1, 1, 1, 1, 1);         /* 3x3 same */
        gs[n++] = conv(b, 3, 27, 27, 6, 11, 4, 2, 2, 2, 2, 1, 1);       /* 11x11 stride 4 */
        gs[n++] = conv(b, 5, 10, 9, 3, 3, 1, 2, 2, 2, 2, 2, 1);         /* dilation 2 */
        gs[n++] = conv(b, 4, 9, 8, 5, 3, 2, 0, 1, 2, 0, 1, 1);          /* asymmetric pads */
        gs[n++] = conv(b, 6, 8, 8, 10, 3, 1, 1, 1, 1, 1, 1, 2);         /* groups 2 */
        gs[n++] = conv(b, 6, 7, 7, 12, 5, 1, 2, 2, 2, 2, 1, 6);         /* depthwise x2 multiplier */
        gs[n++] = fc(b, 300, 70);
    }
    gs[n++] = conv2(1, 5, 9, 13, 7, 3, 5, 2, 1, 1, 2, 0, 3, 1, 2, 1);   /* rectangular everything */
    gs[n++] = conv(2, 40, 9, 9, 70, 3, 1, 1, 1, 1, 1, 1, 1);            /* several tiles each way */
    gs[n++] = fc(1, 3000, 3);
    for (size_t gi = 0; gi < n; gi++)
        check_f32(f, &gs[gi], 1, &r);
    te_linear_geom g1 = conv(2, 40, 9, 9, 70, 3, 1, 1, 1, 1, 1, 1, 1), g2 = fc(3, 300, 70);
    check_f32(f, &g1, 0, &r);
    check_f32(f, &g2, 0, &r);
}

/* ---- --arch NAME: every layer of a test architecture on the DGEMM limbs --- */

static void test_arch_dgemm(void **state)
{
    const char *name = *state;
    te_model *m = fx_build_model(name);
    te_plugin *ocl = NULL, *cpu = NULL;
    te_err err;
    te_err_clear(&err);
    char cfg[1024];
    if (te_plugin_open("opencl", ocl_config(cfg, sizeof cfg, "kernel=dgemm"), &ocl, &err) != TE_OK)
        fail_msg("opencl plugin, kernel=dgemm: %s", err.msg);
    if (te_plugin_open("cpu", "threads=2", &cpu, &err) != TE_OK)
        fail_msg("cpu plugin: %s", err.msg);
    const te_plugin_ops *ops = te_plugin_get_ops(ocl), *cops = te_plugin_get_ops(cpu);
    te_plugin_ctx *ctx = te_plugin_get_ctx(ocl), *cctx = te_plugin_get_ctx(cpu);
    static const unsigned widths[] = { 16, 32, 48, 64 };
    rng r = { 4242 };
    int checked = 0;
    for (int li = 0; li < m->n_layers; li++) {
        const te_layer *L = &m->layers[li];
        te_plugin_layer *pl = NULL, *cl = NULL;
        if (ops->load_layer(ctx, &L->geom, L->w, &pl, &err) != TE_OK)
            fail_msg("%s layer %s: load_layer (dgemm): %s", name, L->name ? L->name : "?", err.msg);
        assert_int_equal(cops->load_layer(cctx, &L->geom, L->w, &cl, &err), TE_OK);
        for (size_t wi = 0; wi < sizeof widths / sizeof widths[0]; wi++) {
            unsigned l = widths[wi];
            uint64_t batch = l == 64 ? 2 : 1;
            size_t ni = (size_t)(te_geom_in_len(&L->geom) * (int64_t)batch);
            size_t no = (size_t)(te_geom_out_len(&L->geom) * (int64_t)batch);
            uint64_t *x = malloc(ni * sizeof *x), *got = malloc(no * sizeof *got), *want = malloc(no * sizeof *want);
            assert_true(x && got && want);
            for (size_t i = 0; i < ni; i++)
                x[i] = rnd(&r) & te_ring_mask(l);
            if (ops->run(ctx, pl, l, batch, x, got, &err) != TE_OK)
                fail_msg("%s layer %s l=%u: run (dgemm): %s", name, L->name ? L->name : "?", l, err.msg);
            assert_int_equal(cops->run(cctx, cl, l, batch, x, want, &err), TE_OK);
            for (size_t i = 0; i < no; i++)
                if (got[i] != want[i])
                    fail_msg("%s layer %s l=%u: output %zu: dgemm limbs %llx, cpu %llx", name,
                             L->name ? L->name : "?", l, i, (unsigned long long)got[i], (unsigned long long)want[i]);
            free(x), free(got), free(want);
            checked++;
        }
        ops->release_layer(ctx, pl);
        cops->release_layer(cctx, cl);
    }
    assert_true(checked > 0);
    printf("%s: %d linear layers x 4 ring widths bit-identical (DGEMM limbs vs cpu)\n", name, m->n_layers);
    te_plugin_close(ocl);
    te_plugin_close(cpu);
    te_model_free(m);
}

int main(int argc, char **argv)
{
    if (argc > 2 && strcmp(argv[1], "--arch") == 0) {
        const struct CMUnitTest tests[] = { cmocka_unit_test_prestate(test_arch_dgemm, argv[2]) };
        return cmocka_run_group_tests_name("opencl_arch_dgemm", tests, NULL, NULL);
    }
    if (argc > 1 && strcmp(argv[1], "--no-platform") == 0) {
        const struct CMUnitTest tests[] = { cmocka_unit_test(test_no_platform) };
        return cmocka_run_group_tests_name("opencl_plugin_no_platform", tests, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_caps),
        cmocka_unit_test(test_conv_geometries),
        cmocka_unit_test(test_fc),
        cmocka_unit_test(test_full_int32_weights),
        cmocka_unit_test(test_large_dot_len),
        cmocka_unit_test(test_f32_baseline),
        cmocka_unit_test(test_gemm_tiles),
        cmocka_unit_test(test_run_errors),
        cmocka_unit_test(test_concurrent_runs),
        cmocka_unit_test(test_bad_config),
        cmocka_unit_test(test_select_by_name_and_type),
        cmocka_unit_test(test_build_failure_reports_log),
        cmocka_unit_test(test_binary_cache),
    };
    return cmocka_run_group_tests_name("opencl_plugin", tests, group_setup, group_teardown);
}
