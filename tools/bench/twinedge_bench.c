/* twinedge-bench: measured figures for the performance work.
 *
 *   kernels  every linear layer of the benchmark models at full size: the
 *            blinded layer on one host (the plugin's run(), at the layer's
 *            calibrated ring width and at l = 64) against the same layer in
 *            plain float32: im2col + OpenBLAS sgemm with the same thread
 *            count for the CPU plugin, the plugin's own run_f32 on the same
 *            device otherwise (OpenCL: CLBlast SGEMM).  --compare-paths
 *            (OpenCL) also times both exact paths, ulong kernels and DGEMM
 *            limbs, each forced.
 *   device   the device's CPU time for one private inference (hosts in this
 *            process, their time subtracted) against plaintext float32
 *            inference of the whole model on one core (OpenBLAS, 1 thread). */
#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "owner.h"
#include "te_f32.h"
#include "te_net.h"
#include "runlib.h"
#include "te_exec.h"
#include "te_host.h"
#include "te_npy.h"
#include "te_plugin.h"
#include "te_ring.h"
#include "twinedge_device.h"

#define MAX_REPS 101
#define MAX_MODELS 8

int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

typedef struct opts {
    int quick;
    int reps;
    int threads;
    const char *json;
    const char *models_dir;
    const char *models[MAX_MODELS];
    int n_models;
    const char *plugin_config; /* extra plugin config, e.g. "kernel=portable" */
    const char *plugin;        /* kernels: cpu (default) or opencl */
    int compare_paths;         /* kernels --plugin opencl: also kernel=ulong and kernel=dgemm */
    int64_t batches[4];        /* kernels --batches; n_batches 0: 1,16 (quick: 1) */
    int n_batches;
    const char *dump_shapes;   /* kernels: write each layer's geometry, ring and weight widths here */
    const char *shapes;        /* kernels: layers from such a file, random weights, instead of ONNX */
} opts;

int file_exists(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0;
}

/* Default owner options, zeroed first: te_owner_options_init() leaves
 * fields it does not know (the image normalisation) untouched. */
void owner_defaults(te_owner_options *oo)
{
    memset(oo, 0, sizeof *oo);
    te_owner_options_init(oo);
}

te_status build_model(const char *models_dir, const char *name, const te_owner_options *opt, te_model **m,
                      te_err *err)
{
    char onnx[4096], calib[4096];
    snprintf(onnx, sizeof onnx, "%s/%s.onnx", models_dir, name);
    snprintf(calib, sizeof calib, "%s/%s.calib.npy", models_dir, name);
    if (!file_exists(onnx))
        return te_errf(err, TE_EIO, "%s not found (generate it with tests/models/make_testdata.py)", onnx);
    te_owner_options oo;
    owner_defaults(&oo);
    return te_owner_build(onnx, file_exists(calib) ? calib : NULL, opt ? opt : &oo, m, err);
}

/* ---- kernels ----------------------------------------------------------------- */

typedef struct row {
    char model[32];
    char layer[64];
    char shape[80];
    int64_t batch;
    int ring_bits;
    double macs;
    double plain_s, secure_s, secure64_s;
    double path_s[2][2]; /* --compare-paths: [ulong, dgemm][at l, at 64] */
} row;

static void fill_ring(uint64_t *x, int64_t n, unsigned l)
{
    uint64_t s = 12345 + l;
    for (int64_t i = 0; i < n; i++)
        x[i] = rnd(&s) & te_ring_mask(l);
}

static te_status time_run(const te_plugin_ops *ops, te_plugin_ctx *ctx, te_plugin_layer *pl, unsigned l,
                          int64_t batch, const uint64_t *xin, uint64_t *out, double *t, te_err *err)
{
    double t0 = te_clock_s(CLOCK_MONOTONIC);
    te_status st = ops->run(ctx, pl, l, (uint64_t)batch, xin, out, err);
    *t = te_clock_s(CLOCK_MONOTONIC) - t0;
    return st;
}

void layer_shape(const te_linear_geom *g, char *buf, size_t n)
{
    if (g->kind == TE_LIN_FC)
        snprintf(buf, n, "fc %lld->%lld", (long long)g->in_c, (long long)g->out_c);
    else
        snprintf(buf, n, "conv %lldx%lldx%lld->%lld k%lld/%lld%s", (long long)g->in_c, (long long)g->in_h,
                 (long long)g->in_w, (long long)g->out_c, (long long)g->k_h, (long long)g->stride_h,
                 g->group > 1 ? " g" : "");
}

void cpu_model(char *buf, size_t n)
{
    snprintf(buf, n, "unknown CPU");
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (!f)
        return;
    char line[512];
    while (fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0) {
            char *c = strchr(line, ':');
            if (c) {
                c++;
                while (*c == ' ' || *c == '\t')
                    c++;
                c[strcspn(c, "\n")] = '\0';
                snprintf(buf, n, "%s", c);
            }
            break;
        }
    }
    fclose(f);
}

void json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        if ((unsigned char)*s >= 0x20)
            fputc(*s, f);
    }
    fputc('"', f);
}

/* The float32 baseline: te_f32 on this CPU (OpenBLAS), or the plugin's run_f32. */
static te_status time_plain(const te_plugin_ops *ops, te_plugin_ctx *ctx, te_plugin_layer *pl, const te_layer *L,
                            int on_plugin, int64_t batch, const float *xf, float *col, float *yf, double *t,
                            te_err *err)
{
    te_status st = TE_OK;
    double t0 = te_clock_s(CLOCK_MONOTONIC);
    if (on_plugin)
        st = ops->run_f32(ctx, pl, (uint64_t)batch, xf, yf, err);
    else
        te_f32_layer(&L->geom, L->w_float, xf, batch, col, yf);
    *t = te_clock_s(CLOCK_MONOTONIC) - t0;
    return st;
}

/* bench_layer_times, plus n_extra other loaded copies of the layer (e.g. each
 * OpenCL path forced) timed in the same alternation at l and at l = 64:
 * extra_s[e][0], extra_s[e][1]. */
static te_status bench_layer_times_ex(const te_plugin_ops *ops, te_plugin_ctx *ctx, te_plugin_layer *pl,
                                      const te_layer *L, int64_t batch, int reps, int plain_on_plugin, int n_extra,
                                      te_plugin_ctx *const *ectx, te_plugin_layer *const *epl, double *plain_s,
                                      double *secure_s, double *secure64_s, double (*extra_s)[2], te_err *err)
{
    const te_linear_geom *g = &L->geom;
    int64_t n_in = batch * te_geom_in_len(g), n_out = batch * te_geom_out_len(g);
    uint64_t *xin = malloc((size_t)n_in * sizeof *xin), *out = malloc((size_t)n_out * sizeof *out);
    uint64_t *xin64 = malloc((size_t)n_in * sizeof *xin64);
    float *xf = malloc((size_t)n_in * sizeof *xf), *yf = malloc((size_t)n_out * sizeof *yf);
    float *col = plain_on_plugin ? NULL : malloc((size_t)te_f32_scratch_len(g, batch) * sizeof *col);
    te_status st = TE_OK;
    if (!xin || !xin64 || !out || !xf || !yf || (!col && !plain_on_plugin) || reps < 1 || reps > MAX_REPS ||
        n_extra < 0 || n_extra > 2)
        st = te_errf(err, TE_ENOMEM, "out of memory (or repetitions outside 1..%d)", MAX_REPS);
    if (st == TE_OK && plain_on_plugin && !ops->run_f32)
        st = te_errf(err, TE_EUNSUPPORTED, "the %s plugin offers no float32 run", ops->name);
    if (st == TE_OK) {
        uint64_t s = 99;
        for (int64_t i = 0; i < n_in; i++)
            xf[i] = (float)((double)(rnd(&s) >> 11) * 0x1p-53 - 0.5);
        fill_ring(xin, n_in, (unsigned)L->ring_bits);
        fill_ring(xin64, n_in, 64);
    }
    /* The measurements alternate, so that load from elsewhere on the
     * machine affects them alike. */
    double tp[MAX_REPS], tsc[MAX_REPS], ts64[MAX_REPS], te[2][2][MAX_REPS], t;
    for (int r = -1; r < reps && st == TE_OK; r++) {
        st = time_plain(ops, ctx, pl, L, plain_on_plugin, batch, xf, col, yf, &t, err);
        if (r >= 0)
            tp[r] = t;
        if (st == TE_OK)
            st = time_run(ops, ctx, pl, (unsigned)L->ring_bits, batch, xin, out, &t, err);
        if (r >= 0)
            tsc[r] = t;
        if (st == TE_OK && secure64_s) {
            st = time_run(ops, ctx, pl, 64, batch, xin64, out, &t, err);
            if (r >= 0)
                ts64[r] = t;
        }
        for (int e = 0; e < n_extra && st == TE_OK; e++)
            for (int w = 0; w < 2 && st == TE_OK; w++) {
                st = time_run(ops, ectx[e], epl[e], w ? 64 : (unsigned)L->ring_bits, batch, w ? xin64 : xin, out,
                              &t, err);
                if (r >= 0)
                    te[e][w][r] = t;
            }
    }
    if (st == TE_OK) {
        *plain_s = median(tp, reps);
        *secure_s = median(tsc, reps);
        if (secure64_s)
            *secure64_s = median(ts64, reps);
        for (int e = 0; e < n_extra; e++)
            for (int w = 0; w < 2; w++)
                extra_s[e][w] = median(te[e][w], reps);
    }
    free(xin), free(xin64), free(out), free(xf), free(yf), free(col);
    return st;
}

te_status bench_layer_times(const te_plugin_ops *ops, te_plugin_ctx *ctx, te_plugin_layer *pl, const te_layer *L,
                            int64_t batch, int reps, int plain_on_plugin, double *plain_s, double *secure_s,
                            double *secure64_s, te_err *err)
{
    return bench_layer_times_ex(ops, ctx, pl, L, batch, reps, plain_on_plugin, 0, NULL, NULL, plain_s, secure_s,
                                secure64_s, NULL, err);
}

/* The layers of one model: compiled from ONNX, or (--shapes) rebuilt from a
 * shapes file with random weights of the same widths, for machines without
 * the models (a GPU host without PyTorch): timings depend only on the
 * geometry, the ring width and, for the DGEMM limbs, the weights' width. */
typedef struct layer_set {
    te_model *m;
    te_layer *own;
    const te_layer *layers;
    int n;
} layer_set;

static void layer_set_free(layer_set *ls)
{
    te_model_free(ls->m);
    for (int i = 0; ls->own && i < ls->n; i++) {
        free(ls->own[i].name);
        free(ls->own[i].w);
        free(ls->own[i].w_float);
    }
    free(ls->own);
    memset(ls, 0, sizeof *ls);
}

#define SHAPE_FIELDS 20 /* after "model name": kind, then 19 integers */

static void dump_shapes(FILE *f, const char *model, const te_model *m)
{
    for (int i = 0; i < m->n_layers; i++) {
        const te_layer *L = &m->layers[i];
        const te_linear_geom *g = &L->geom;
        /* fused layers are named "a+(2 more)": blanks would split the name
         * when --shapes reads the file back */
        char name[256];
        snprintf(name, sizeof name, "%s", L->name ? L->name : "?");
        for (char *c = name; *c; c++)
            if (*c == ' ' || *c == '\t')
                *c = '_';
        fprintf(f, "%s %s %s %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %d %d\n",
                model, name, g->kind == TE_LIN_FC ? "fc" : "conv", (long long)g->in_c,
                (long long)g->in_h, (long long)g->in_w, (long long)g->out_c, (long long)g->out_h, (long long)g->out_w,
                (long long)g->k_h, (long long)g->k_w, (long long)g->stride_h, (long long)g->stride_w,
                (long long)g->pad_t, (long long)g->pad_l, (long long)g->pad_b, (long long)g->pad_r, (long long)g->dil_h,
                (long long)g->dil_w, (long long)g->group, L->ring_bits, L->weight_bits);
    }
}

static te_status shapes_layers(const char *file, const char *model, layer_set *ls, te_err *err)
{
    memset(ls, 0, sizeof *ls);
    FILE *f = fopen(file, "r");
    if (!f)
        return te_errf(err, TE_EIO, "cannot open %s: %s", file, strerror(errno));
    char line[1024];
    int cap = 0, lineno = 0;
    te_status st = TE_OK;
    uint64_t seed = 2024;
    while (st == TE_OK && fgets(line, sizeof line, f)) {
        lineno++;
        char mname[64], lname[256], kind[8];
        long long v[19];
        if (line[0] == '#' || line[0] == '\n')
            continue;
        int n = sscanf(line, "%63s %255s %7s %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld %lld "
                       "%lld %lld %lld %lld", mname, lname, kind, &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7],
                       &v[8], &v[9], &v[10], &v[11], &v[12], &v[13], &v[14], &v[15], &v[16], &v[17], &v[18]);
        if (n != 2 + SHAPE_FIELDS || v[17] < 1 || v[17] > 64 || v[18] < 2 || v[18] > 32) {
            st = te_errf(err, TE_EINVAL, "%s:%d: expected model, layer, conv|fc and 19 integers", file, lineno);
            break;
        }
        if (strcmp(mname, model) != 0)
            continue;
        if (ls->n == cap) {
            cap = cap ? 2 * cap : 32;
            te_layer *nl = realloc(ls->own, (size_t)cap * sizeof *nl);
            if (!nl) {
                st = te_errf(err, TE_ENOMEM, "out of memory");
                break;
            }
            ls->own = nl;
        }
        te_layer *L = &ls->own[ls->n];
        memset(L, 0, sizeof *L);
        te_linear_geom g = { strcmp(kind, "fc") == 0 ? TE_LIN_FC : TE_LIN_CONV, 1, v[0], v[1], v[2], v[3], v[4], v[5],
                             v[6], v[7], v[8], v[9], v[10], v[11], v[12], v[13], v[14], v[15], v[16] };
        L->geom = g;
        L->ring_bits = (int)v[17];
        L->weight_bits = (int)v[18];
        ls->n++;
        int64_t nw = te_geom_weight_len(&g);
        L->name = strdup(lname);
        L->w = malloc((size_t)nw * sizeof *L->w);
        L->w_float = malloc((size_t)nw * sizeof *L->w_float);
        if (!L->name || !L->w || !L->w_float) {
            st = te_errf(err, TE_ENOMEM, "out of memory for %lld weights", (long long)nw);
            break;
        }
        /* uniform over the symmetric range the owner quantises into */
        uint64_t span = ((uint64_t)1 << (L->weight_bits - 1)) - 1;
        for (int64_t i = 0; i < nw; i++) {
            L->w[i] = (int32_t)((int64_t)(rnd(&seed) % (2 * span + 1)) - (int64_t)span);
            L->w_float[i] = (float)L->w[i];
        }
    }
    fclose(f);
    if (st == TE_OK && ls->n == 0)
        st = te_errf(err, TE_EINVAL, "%s has no layers of model %s", file, model);
    if (st != TE_OK)
        layer_set_free(ls);
    ls->layers = ls->own;
    return st;
}

int bench_plain_on_plugin(const te_plugin_ops *ops)
{
    return strcmp(ops->name, "cpu") != 0;
}

static int cmd_kernels(const opts *o)
{
    te_err err;
    te_err_clear(&err);
    int is_cpu = strcmp(o->plugin, "cpu") == 0;
    const char *extra = o->plugin_config ? o->plugin_config : "";
    char cfg[512];
    if (is_cpu) /* threads=N is the CPU plugin's key */
        snprintf(cfg, sizeof cfg, "threads=%d%s%s", o->threads, *extra ? ";" : "", extra);
    else
        snprintf(cfg, sizeof cfg, "%s", extra);
    if (o->compare_paths && strcmp(o->plugin, "opencl") != 0) {
        fprintf(stderr, "twinedge-bench: --compare-paths needs --plugin opencl\n");
        return 2;
    }
    te_plugin *plugin = NULL, *path_plugin[2] = { NULL, NULL };
    te_plugin_ctx *path_ctx[2] = { NULL, NULL };
    static const char *const path_name[2] = { "ulong", "dgemm" };
    if (te_plugin_open(o->plugin, cfg, &plugin, &err) != TE_OK) {
        fprintf(stderr, "twinedge-bench: error: %s\n", err.msg);
        return 1;
    }
    const te_plugin_ops *ops = te_plugin_get_ops(plugin);
    te_plugin_ctx *ctx = te_plugin_get_ctx(plugin);
    int n_paths = o->compare_paths ? 2 : 0;
    for (int p = 0; p < n_paths; p++) {
        char pcfg[600];
        snprintf(pcfg, sizeof pcfg, "%s%skernel=%s", extra, *extra ? ";" : "", path_name[p]);
        if (te_plugin_open(o->plugin, pcfg, &path_plugin[p], &err) != TE_OK) {
            fprintf(stderr, "twinedge-bench: error: %s: %s\n", pcfg, err.msg);
            te_plugin_close(path_plugin[0]);
            te_plugin_close(plugin);
            return 1;
        }
        path_ctx[p] = te_plugin_get_ctx(path_plugin[p]);
    }
    int on_plugin = bench_plain_on_plugin(ops);
    te_plugin_caps caps;
    if (ops->caps(ctx, &caps, &err) != TE_OK)
        snprintf(caps.device_name, sizeof caps.device_name, "?");
    const char *baseline = on_plugin ? "CLBlast SGEMM on the plugin's device (run_f32)" : "OpenBLAS SGEMM on this CPU";
    openblas_set_num_threads(o->threads);

    static const int64_t batches_full[] = { 1, 16 }, batches_quick[] = { 1 };
    const int64_t *batches = o->n_batches ? o->batches : o->quick ? batches_quick : batches_full;
    int n_batches = o->n_batches ? o->n_batches : o->quick ? 1 : 2;
    row *rows = NULL;
    int n_rows = 0, cap = 0, rc = 1;
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    printf("twinedge-bench kernels: %s, %d thread%s, %s plugin on %s; float32: %s; median of %d\n", cpu, o->threads,
           o->threads == 1 ? "" : "s", o->plugin, caps.device_name, baseline, o->reps);
    printf("%-9s %-34s %-30s %5s %4s %10s %10s %10s %7s %7s", "model", "layer", "shape", "batch", "l",
           "plain ms", "secure ms", "l=64 ms", "ratio", "r64");
    if (n_paths)
        printf(" %10s %10s %10s %10s", "ulong ms", "dgemm ms", "ulong64 ms", "dgemm64 ms");
    printf("\n");

    FILE *dump = NULL;
    if (o->dump_shapes && !(dump = fopen(o->dump_shapes, "w"))) {
        fprintf(stderr, "twinedge-bench: error: cannot write %s: %s\n", o->dump_shapes, strerror(errno));
        goto out;
    }
    if (dump)
        fprintf(dump, "# model layer kind in_c in_h in_w out_c out_h out_w k_h k_w stride_h stride_w pad_t pad_l "
                      "pad_b pad_r dil_h dil_w group ring_bits weight_bits\n");
    for (int mi = 0; mi < o->n_models; mi++) {
        layer_set ls;
        memset(&ls, 0, sizeof ls);
        te_status lst = o->shapes ? shapes_layers(o->shapes, o->models[mi], &ls, &err)
                                  : build_model(o->models_dir, o->models[mi], NULL, &ls.m, &err);
        if (lst != TE_OK) {
            fprintf(stderr, "twinedge-bench: error: %s: %s\n", o->models[mi], err.msg);
            goto out;
        }
        if (ls.m) {
            ls.layers = ls.m->layers;
            ls.n = ls.m->n_layers;
            if (dump)
                dump_shapes(dump, o->models[mi], ls.m);
        }
        for (int li = 0; li < ls.n; li++) {
            const te_layer *L = &ls.layers[li];
            te_linear_geom g = L->geom;
            te_plugin_layer *pl = NULL, *ppl[2] = { NULL, NULL };
            if (ops->load_layer(ctx, &g, L->w, &pl, &err) != TE_OK) {
                fprintf(stderr, "twinedge-bench: error: loading %s: %s\n", L->name, err.msg);
                layer_set_free(&ls);
                goto out;
            }
            for (int p = 0; p < n_paths; p++)
                if (ops->load_layer(path_ctx[p], &g, L->w, &ppl[p], &err) != TE_OK) {
                    fprintf(stderr, "twinedge-bench: error: loading %s with kernel=%s: %s\n", L->name, path_name[p],
                            err.msg);
                    for (int q = 0; q < p; q++)
                        ops->release_layer(path_ctx[q], ppl[q]);
                    ops->release_layer(ctx, pl);
                    layer_set_free(&ls);
                    goto out;
                }
            for (int bi = 0; bi < n_batches; bi++) {
                int64_t batch = batches[bi];
                if (n_rows == cap) {
                    cap = cap ? 2 * cap : 64;
                    row *nr = realloc(rows, (size_t)cap * sizeof *rows);
                    if (nr)
                        rows = nr;
                    else
                        cap = n_rows;
                }
                if (n_rows == cap) {
                    fprintf(stderr, "twinedge-bench: error: out of memory\n");
                    for (int p = 0; p < n_paths; p++)
                        ops->release_layer(path_ctx[p], ppl[p]);
                    ops->release_layer(ctx, pl);
                    layer_set_free(&ls);
                    goto out;
                }
                row *R = &rows[n_rows];
                memset(R, 0, sizeof *R);
                snprintf(R->model, sizeof R->model, "%s", o->models[mi]);
                snprintf(R->layer, sizeof R->layer, "%s", L->name ? L->name : "?");
                layer_shape(&g, R->shape, sizeof R->shape);
                R->batch = batch;
                R->ring_bits = L->ring_bits;
                R->macs = (double)te_geom_macs(&g) * (double)batch;
                te_status st = bench_layer_times_ex(ops, ctx, pl, L, batch, o->reps, on_plugin, n_paths, path_ctx,
                                                    ppl, &R->plain_s, &R->secure_s, &R->secure64_s, R->path_s, &err);
                if (st != TE_OK) {
                    fprintf(stderr, "twinedge-bench: error: running %s: %s\n", R->layer, err.msg);
                    for (int p = 0; p < n_paths; p++)
                        ops->release_layer(path_ctx[p], ppl[p]);
                    ops->release_layer(ctx, pl);
                    layer_set_free(&ls);
                    goto out;
                }
                n_rows++;
                printf("%-9s %-34.34s %-30.30s %5lld %4d %10.3f %10.3f %10.3f %7.2f %7.2f", R->model, R->layer,
                       R->shape, (long long)batch, R->ring_bits, R->plain_s * 1e3, R->secure_s * 1e3,
                       R->secure64_s * 1e3, R->secure_s / R->plain_s, R->secure64_s / R->plain_s);
                if (n_paths)
                    printf(" %10.3f %10.3f %10.3f %10.3f", R->path_s[0][0] * 1e3, R->path_s[1][0] * 1e3,
                           R->path_s[0][1] * 1e3, R->path_s[1][1] * 1e3);
                printf("\n");
                fflush(stdout);
            }
            for (int p = 0; p < n_paths; p++)
                ops->release_layer(path_ctx[p], ppl[p]);
            ops->release_layer(ctx, pl);
        }
        layer_set_free(&ls);
    }

    double worst = 0, worst_cal = 0, worst64 = 0, tp = 0, ts = 0, ts64 = 0;
    int wi = 0, wi64 = 0;
    for (int i = 0; i < n_rows; i++) {
        double r = rows[i].secure_s / rows[i].plain_s, r64 = rows[i].secure64_s / rows[i].plain_s;
        if (r > worst_cal)
            worst_cal = r, wi = i;
        if (r64 > worst64)
            worst64 = r64, wi64 = i;
        tp += rows[i].plain_s;
        ts += rows[i].secure_s;
        ts64 += rows[i].secure64_s;
    }
    worst = worst_cal > worst64 ? worst_cal : worst64;
    if (n_rows) {
        printf("total: plain %.3f ms, secure %.3f ms (%.2fx), l=64 %.3f ms (%.2fx)\n", tp * 1e3, ts * 1e3, ts / tp,
               ts64 * 1e3, ts64 / tp);
        printf("worst layer, calibrated l: %.2fx (%s %s batch %lld); at l=64: %.2fx (%s %s batch %lld)\n",
               worst_cal, rows[wi].model, rows[wi].layer, (long long)rows[wi].batch, worst64, rows[wi64].model,
               rows[wi64].layer, (long long)rows[wi64].batch);
    }
    if (o->json) {
        FILE *f = fopen(o->json, "w");
        if (!f) {
            fprintf(stderr, "twinedge-bench: error: cannot write %s: %s\n", o->json, strerror(errno));
            goto out;
        }
        fprintf(f, "{\n  \"benchmark\": \"kernels\",\n  \"cpu\": ");
        json_str(f, cpu);
        fprintf(f, ",\n  \"plugin\": ");
        json_str(f, o->plugin);
        fprintf(f, ",\n  \"plugin_config\": ");
        json_str(f, extra);
        fprintf(f, ",\n  \"device\": ");
        json_str(f, caps.device_name);
        fprintf(f, ",\n  \"plain_baseline\": ");
        json_str(f, baseline);
        fprintf(f, ",\n  \"threads\": %d,\n  \"repetitions\": %d,\n  \"quick\": %s,\n  \"layers\": [\n", o->threads,
                o->reps, o->quick ? "true" : "false");
        for (int i = 0; i < n_rows; i++) {
            const row *R = &rows[i];
            fprintf(f, "    {\"model\": ");
            json_str(f, R->model);
            fprintf(f, ", \"layer\": ");
            json_str(f, R->layer);
            fprintf(f, ", \"shape\": ");
            json_str(f, R->shape);
            fprintf(f,
                    ", \"batch\": %lld, \"ring_bits\": %d, \"macs\": %.0f, \"plain_s\": %.9f, \"secure_s\": %.9f, "
                    "\"secure_l64_s\": %.9f, \"ratio\": %.4f, \"ratio_l64\": %.4f",
                    (long long)R->batch, R->ring_bits, R->macs, R->plain_s, R->secure_s, R->secure64_s,
                    R->secure_s / R->plain_s, R->secure64_s / R->plain_s);
            if (n_paths) /* each exact path forced; absent without --compare-paths */
                fprintf(f,
                        ", \"ulong_s\": %.9f, \"dgemm_s\": %.9f, \"ulong_l64_s\": %.9f, \"dgemm_l64_s\": %.9f, "
                        "\"ulong_ratio\": %.4f, \"dgemm_ratio\": %.4f, \"dgemm_over_ulong\": %.4f, "
                        "\"dgemm_over_ulong_l64\": %.4f",
                        R->path_s[0][0], R->path_s[1][0], R->path_s[0][1], R->path_s[1][1],
                        R->path_s[0][0] / R->plain_s, R->path_s[1][0] / R->plain_s,
                        R->path_s[1][0] / R->path_s[0][0], R->path_s[1][1] / R->path_s[0][1]);
            fprintf(f, "}%s\n", i + 1 < n_rows ? "," : "");
        }
        fprintf(f,
                "  ],\n  \"total_plain_s\": %.9f,\n  \"total_secure_s\": %.9f,\n  \"total_secure_l64_s\": %.9f,\n"
                "  \"edge_layer_secure_over_plain_max_calibrated\": %.4f,\n"
                "  \"edge_layer_secure_over_plain_max_l64\": %.4f,\n"
                "  \"edge_layer_secure_over_plain_max\": %.4f\n}\n",
                tp, ts, ts64, worst_cal, worst64, worst);
        if (fclose(f) != 0) {
            fprintf(stderr, "twinedge-bench: error: cannot write %s\n", o->json);
            goto out;
        }
    }
    rc = 0;
out:
    if (dump && fclose(dump) != 0) {
        fprintf(stderr, "twinedge-bench: error: cannot write %s\n", o->dump_shapes);
        rc = 1;
    }
    free(rows);
    for (int p = 0; p < 2; p++)
        te_plugin_close(path_plugin[p]);
    te_plugin_close(plugin);
    return rc;
}

/* ---- device ------------------------------------------------------------------ */


te_status blas_linear(void *vctx, const te_model *m, int layer, const float *x, float *y, te_err *err)
{
    blas_ctx *bc = vctx;
    const te_layer *L = &m->layers[layer];
    const te_linear_geom *g = &L->geom;
    int64_t batch = g->batch < 1 ? 1 : g->batch;
    if (!L->w_float)
        return te_errf(err, TE_EINVAL, "layer '%s' has no float weights", L->name ? L->name : "?");
    size_t need = (size_t)te_f32_scratch_len(g, batch);
    if (need > bc->col_len) {
        float *c = realloc(bc->col, need * sizeof *c);
        if (!c)
            return te_errf(err, TE_ENOMEM, "out of memory for im2col");
        bc->col = c;
        bc->col_len = need;
    }
    te_f32_layer(g, L->w_float, x, batch, bc->col, y);
    te_add_bias(L, batch, y);
    return TE_OK;
}

void te_add_bias(const te_layer *L, int64_t batch, float *y)
{
    if (!L->bias)
        return;
    const te_linear_geom *g = &L->geom;
    int64_t P = g->kind == TE_LIN_FC ? 1 : g->out_h * g->out_w, out_len = te_geom_out_len(g);
    for (int64_t b = 0; b < batch; b++)
        for (int64_t o = 0; o < g->out_c; o++)
            for (int64_t k = 0; k < P; k++)
                y[b * out_len + o * P + k] += L->bias[o];
}

/* Linear layers skipped (zeros): what the non-linear layers alone cost. */
static te_status null_linear(void *vctx, const te_model *m, int layer, const float *x, float *y, te_err *err)
{
    (void)vctx, (void)x, (void)err;
    const te_linear_geom *g = &m->layers[layer].geom;
    int64_t batch = g->batch < 1 ? 1 : g->batch;
    memset(y, 0, (size_t)(batch * te_geom_out_len(g)) * sizeof *y);
    return TE_OK;
}


typedef struct dev_result {
    double device_cpu_s, plain_cpu_s, plain_wall_s, private_wall_s, nonlinear_cpu_s;
    int widened_layers;
} dev_result;

static int device_one(const opts *o, const char *name, dev_result *res)
{
    te_err err;
    te_err_clear(&err);
    char onnx[4096], calib[4096], work[4096], deploy[4200], device[4200], key[4300];
    snprintf(onnx, sizeof onnx, "%s/%s.onnx", o->models_dir, name);
    snprintf(calib, sizeof calib, "%s/%s.calib.npy", o->models_dir, name);
    const char *tmp = getenv("TMPDIR");
    snprintf(work, sizeof work, "%s/twinedge-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(work)) {
        fprintf(stderr, "twinedge-bench: error: cannot create a scratch directory: %s\n", strerror(errno));
        return 1;
    }
    snprintf(deploy, sizeof deploy, "%s/deploy", work);
    snprintf(device, sizeof device, "%s/device", work);
    snprintf(key, sizeof key, "%s/device.key", device);
    int rc = 1;
    te_model *m = NULL;
    te_exec *ex = NULL;
    te_local_pair *pair = NULL;
    twinedge_device *dev = NULL;
    float *x = NULL, *y = NULL;
    blas_ctx bc = { NULL, 0 };
    const char *cal = file_exists(calib) ? calib : NULL;

    te_owner_options oo;
    owner_defaults(&oo);
    if (te_owner_build(onnx, cal, &oo, &m, &err) != TE_OK || te_exec_new(m, &ex, &err) != TE_OK)
        goto fail;
    int64_t n_in = te_shape_numel(&m->values[m->input].shape);
    int64_t n_out = te_shape_numel(&m->values[m->output].shape);
    x = malloc((size_t)n_in * sizeof *x);
    y = malloc((size_t)n_out * sizeof *y);
    if (!x || !y) {
        te_errf(&err, TE_ENOMEM, "out of memory");
        goto fail;
    }
    /* The model's sample input when there is one (random inputs can leave
     * the calibrated range and cost a retry at 64 bits), else uniform [-1, 1). */
    char input[4096];
    snprintf(input, sizeof input, "%s/%s.input.npy", o->models_dir, name);
    te_shape ishape;
    float *xs = NULL;
    if (file_exists(input) && te_npy_read(input, &ishape, &xs, &err) == TE_OK && te_shape_numel(&ishape) >= n_in) {
        memcpy(x, xs, (size_t)n_in * sizeof *x);
    } else {
        uint64_t s = 7;
        for (int64_t i = 0; i < n_in; i++)
            x[i] = (float)((double)(rnd(&s) >> 11) * 0x1p-53 * 2.0 - 1.0);
    }
    free(xs);
    te_err_clear(&err);

    openblas_set_num_threads(1);
    double tc[MAX_REPS], tw[MAX_REPS];
    for (int r = -1; r < o->reps; r++) {
        double c0 = te_clock_s(CLOCK_THREAD_CPUTIME_ID), w0 = te_clock_s(CLOCK_MONOTONIC);
        if (te_exec_run(ex, x, (size_t)n_in, blas_linear, &bc, &err) != TE_OK)
            goto fail;
        if (r >= 0) {
            tc[r] = te_clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
            tw[r] = te_clock_s(CLOCK_MONOTONIC) - w0;
        }
    }
    res->plain_cpu_s = median(tc, o->reps);
    res->plain_wall_s = median(tw, o->reps);
    for (int r = -1; r < o->reps; r++) {
        double c0 = te_clock_s(CLOCK_THREAD_CPUTIME_ID);
        if (te_exec_run(ex, x, (size_t)n_in, null_linear, NULL, &err) != TE_OK)
            goto fail;
        if (r >= 0)
            tc[r] = te_clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
    }
    res->nonlinear_cpu_s = median(tc, o->reps);

    if (te_owner_write(m, deploy, &err) != TE_OK ||
        te_owner_provision(deploy, "bench-device", device, &err) != TE_OK)
        goto fail;
    char cfg[256];
    snprintf(cfg, sizeof cfg, "threads=%d%s%s", o->threads, o->plugin_config ? ";" : "",
             o->plugin_config ? o->plugin_config : "");
    te_local_config lc = { deploy, key, "cpu", "cpu", cfg, NULL, NULL };
    if (te_local_pair_start(&lc, &pair, &err) != TE_OK)
        goto fail;
    if (twinedge_open(device, &dev) != TWINEDGE_OK) {
        te_errf(&err, TE_EIO, "%s", twinedge_errmsg(dev));
        goto fail;
    }
    te_timed_transport tt;
    te_timed_transport_init(&tt, pair->device_link);
    twinedge_use_transport(dev, &tt.self);
    for (int r = -1; r < o->reps; r++) {
        tt.host_cpu_s = 0;
        double c0 = te_clock_s(CLOCK_THREAD_CPUTIME_ID), w0 = te_clock_s(CLOCK_MONOTONIC);
        if (twinedge_infer(dev, TWINEDGE_RELAY, x, (size_t)n_in, y, (size_t)n_out) != TWINEDGE_OK) {
            te_errf(&err, TE_EIO, "%s", twinedge_errmsg(dev));
            goto fail;
        }
        if (r >= 0) {
            tc[r] = te_clock_s(CLOCK_THREAD_CPUTIME_ID) - c0 - tt.host_cpu_s;
            tw[r] = te_clock_s(CLOCK_MONOTONIC) - w0;
        }
    }
    res->device_cpu_s = median(tc, o->reps);
    twinedge_report rep;
    if (twinedge_last_report(dev, &rep) == TWINEDGE_OK)
        res->widened_layers = rep.widened_layers;
    res->private_wall_s = median(tw, o->reps);
    rc = 0;
fail:
    if (rc)
        fprintf(stderr, "twinedge-bench: error: %s: %s\n", name, err.msg);
    twinedge_close(dev);
    te_local_pair_stop(pair);
    te_exec_free(ex);
    te_model_free(m);
    free(bc.col);
    free(x);
    free(y);
    te_rm_rf(work, &err);
    return rc;
}

static int cmd_device(const opts *o)
{
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    printf("twinedge-bench device: %s; device CPU time of one private inference (hosts in-process, their time\n"
           "subtracted) vs plaintext float32 inference on one core (OpenBLAS, 1 thread); median of %d\n",
           cpu, o->reps);
    printf("%-10s %14s %14s %10s %16s %18s %8s\n", "model", "device cpu ms", "plain cpu ms", "ratio",
           "private wall ms", "non-linear cpu ms", "widened_layers");
    dev_result res[MAX_MODELS];
    memset(res, 0, sizeof res);
    for (int i = 0; i < o->n_models; i++) {
        if (device_one(o, o->models[i], &res[i]) != 0)
            return 1;
        printf("%-10s %14.3f %14.3f %10.4f %16.3f %18.3f %8d\n", o->models[i], res[i].device_cpu_s * 1e3,
               res[i].plain_cpu_s * 1e3, res[i].device_cpu_s / res[i].plain_cpu_s, res[i].private_wall_s * 1e3,
               res[i].nonlinear_cpu_s * 1e3, res[i].widened_layers);
        fflush(stdout);
    }
    if (o->json) {
        FILE *f = fopen(o->json, "w");
        if (!f) {
            fprintf(stderr, "twinedge-bench: error: cannot write %s: %s\n", o->json, strerror(errno));
            return 1;
        }
        fprintf(f, "{\n  \"benchmark\": \"device\",\n  \"cpu\": ");
        json_str(f, cpu);
        fprintf(f, ",\n  \"repetitions\": %d,\n  \"models\": [\n", o->reps);
        for (int i = 0; i < o->n_models; i++) {
            fprintf(f, "    {\"model\": ");
            json_str(f, o->models[i]);
            fprintf(f,
                    ", \"device_cpu_s\": %.9f, \"plain_cpu_s\": %.9f, \"plain_wall_s\": %.9f, "
                    "\"private_wall_s\": %.9f, \"nonlinear_cpu_s\": %.9f, \"widened_layers\": %d, \"device_over_plain\": %.6f}%s\n",
                    res[i].device_cpu_s, res[i].plain_cpu_s, res[i].plain_wall_s, res[i].private_wall_s,
                    res[i].nonlinear_cpu_s, res[i].widened_layers,
                    res[i].device_cpu_s / res[i].plain_cpu_s, i + 1 < o->n_models ? "," : "");
        }
        fprintf(f, "  ]\n}\n");
        if (fclose(f) != 0) {
            fprintf(stderr, "twinedge-bench: error: cannot write %s\n", o->json);
            return 1;
        }
    }
    return 0;
}

/* ---- main -------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f, "usage: twinedge-bench kernels [--quick] [--json FILE] [--models-dir DIR] [options]\n"
               "       twinedge-bench device [--json FILE] [--models-dir DIR] [options]\n"
               "\n"
               "  --models-dir DIR   where MODEL.onnx and MODEL.calib.npy are (default\n"
               "                     $TE_TEST_DATA/full, else testdata/full)\n"
               "  --models A,B,...   models (default: kernels alexnet,resnet18; device alexnet,facenet)\n"
               "  --reps N           repetitions per measurement, the median is reported (default 5, quick 1)\n"
               "  --threads N        threads of the CPU plugin and OpenBLAS (default: online CPUs)\n"
               "  --plugin NAME      kernels: the plugin, cpu (default) or opencl; its float32 baseline then runs\n"
               "                     on the same device (OpenCL: CLBlast SGEMM)\n"
               "  --plugin-config S  extra plugin configuration, e.g. kernel=portable (cpu) or\n"
               "                     platform=nvidia;kernel=auto (opencl)\n"
               "  --compare-paths    kernels --plugin opencl: also time each exact path forced\n"
               "                     (kernel=ulong and kernel=dgemm) beside the float32 baseline\n"
               "  --quick            batch 1 only, one repetition (smoke test)\n"
               "  --batches B,...    kernels: the batch sizes (default 1,16; at most 4, each 1..4096)\n"
               "  --dump-shapes FILE kernels: write every layer's geometry, ring and weight widths to FILE\n"
               "  --shapes FILE      kernels: take the layers from such a file, with random weights of the same\n"
               "                     width, instead of compiling MODEL.onnx (machines without the models)\n"
               "  --json FILE        write the figures as JSON\n");
}

int split_models(char *list, const char **models, int cap)
{
    int n = 0;
    for (char *t = strtok(list, ","); t; t = strtok(NULL, ",")) {
        if (n == cap)
            return -1;
        models[n++] = t;
    }
    return n ? n : -1;
}

int bench_load_main(int argc, char **argv);

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("twinedge-bench %s\n", TWINEDGE_VERSION_STRING);
        return 0;
    }
    /* without a command: the whole suite (gRPC's threads done before exit: te_net.h) */
    int rc;
    if (argc < 2 || argv[1][0] == '-') {
        rc = bench_suite_main(argc, argv);
        te_net_quiesce(TE_NET_QUIESCE_MS);
        return rc;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "load") == 0) {
        rc = bench_load_main(argc, argv); /* load.c */
        te_net_quiesce(TE_NET_QUIESCE_MS);
        return rc;
    }
    if (strcmp(cmd, "headroom") == 0)
        return bench_headroom_main(argc, argv); /* headroom.c */
    int is_kernels = strcmp(cmd, "kernels") == 0, is_device = strcmp(cmd, "device") == 0;
    if (!is_kernels && !is_device) {
        fprintf(stderr, "twinedge-bench: unknown command '%s' (commands: kernels, device, headroom, load; none: the "
                        "suite)\n", cmd);
        usage(stderr);
        return 2;
    }
    opts o;
    memset(&o, 0, sizeof o);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    o.threads = ncpu < 1 ? 1 : (int)ncpu;
    o.reps = -1;
    o.plugin = "cpu";
    char default_models[64], *models_arg = NULL;
    snprintf(default_models, sizeof default_models, "%s", is_kernels ? "alexnet,resnet18" : "alexnet,facenet");
    static char dir_buf[4096];
    const char *td = getenv("TE_TEST_DATA");
    snprintf(dir_buf, sizeof dir_buf, "%s/full", td && *td ? td : "testdata");
    o.models_dir = dir_buf;

    enum { O_JSON = 256, O_DIR, O_MODELS, O_REPS, O_THREADS, O_QUICK, O_PCFG, O_PLUGIN, O_PATHS, O_BATCHES, O_DUMP,
           O_SHAPES };
    static const struct option lopts[] = {
        { "json", required_argument, NULL, O_JSON },       { "models-dir", required_argument, NULL, O_DIR },
        { "models", required_argument, NULL, O_MODELS },   { "reps", required_argument, NULL, O_REPS },
        { "threads", required_argument, NULL, O_THREADS }, { "quick", no_argument, NULL, O_QUICK },
        { "plugin-config", required_argument, NULL, O_PCFG }, { "help", no_argument, NULL, 'h' },
        { "plugin", required_argument, NULL, O_PLUGIN },   { "compare-paths", no_argument, NULL, O_PATHS },
        { "batches", required_argument, NULL, O_BATCHES }, { "dump-shapes", required_argument, NULL, O_DUMP },
        { "shapes", required_argument, NULL, O_SHAPES },
        { NULL, 0, NULL, 0 }
    };
    int c;
    optind = 2;
    while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        switch (c) {
        case O_JSON: o.json = optarg; break;
        case O_DIR: o.models_dir = optarg; break;
        case O_MODELS: models_arg = optarg; break;
        case O_REPS:
            o.reps = atoi(optarg);
            if (o.reps < 1 || o.reps > MAX_REPS) {
                fprintf(stderr, "twinedge-bench: --reps must be in 1..%d\n", MAX_REPS);
                return 2;
            }
            break;
        case O_THREADS:
            o.threads = atoi(optarg);
            if (o.threads < 1 || o.threads > 256) {
                fprintf(stderr, "twinedge-bench: --threads must be in 1..256\n");
                return 2;
            }
            break;
        case O_QUICK: o.quick = 1; break;
        case O_PCFG: o.plugin_config = optarg; break;
        case O_PLUGIN: o.plugin = optarg; break;
        case O_PATHS: o.compare_paths = 1; break;
        case O_DUMP: o.dump_shapes = optarg; break;
        case O_SHAPES: o.shapes = optarg; break;
        case O_BATCHES: {
            o.n_batches = 0;
            for (char *t = strtok(optarg, ","); t; t = strtok(NULL, ",")) {
                long b = atol(t);
                if (o.n_batches == 4 || b < 1 || b > 4096) {
                    fprintf(stderr, "twinedge-bench: --batches needs 1..4 comma-separated sizes in 1..4096\n");
                    return 2;
                }
                o.batches[o.n_batches++] = b;
            }
            if (!o.n_batches) {
                fprintf(stderr, "twinedge-bench: --batches needs 1..4 comma-separated sizes in 1..4096\n");
                return 2;
            }
            break;
        }
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (o.reps < 0)
        o.reps = o.quick ? 1 : 5;
    if ((o.n_models = split_models(models_arg ? models_arg : default_models, o.models, MAX_MODELS)) < 0) {
        fprintf(stderr, "twinedge-bench: --models needs 1..%d comma-separated names\n", MAX_MODELS);
        return 2;
    }
    return is_kernels ? cmd_kernels(&o) : cmd_device(&o);
}
