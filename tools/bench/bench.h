/* Pieces shared by twinedge-bench's commands (twinedge_bench.c, suite.c). */
#ifndef TE_BENCH_H
#define TE_BENCH_H

#include <stdint.h>
#include <stdio.h>

#include "owner.h"
#include "te_model.h"
#include "te_plugin.h"

double median(double *v, int n);            /* sorts v */
int cmp_double(const void *a, const void *b);
uint64_t rnd(uint64_t *s);                  /* splitmix64 */
int file_exists(const char *p);
void owner_defaults(te_owner_options *oo);
/* MODELS_DIR/NAME.onnx, calibrated on NAME.calib.npy when present; opt
 * NULL: the owner's defaults. */
te_status build_model(const char *models_dir, const char *name, const te_owner_options *opt, te_model **m,
                      te_err *err);
void cpu_model(char *buf, size_t n);        /* /proc/cpuinfo's model name */
void json_str(FILE *f, const char *s);
/* "a,b,c" -> models[] (pointers into list, which is modified); the count,
 * or -1 for none or more than cap. */
int split_models(char *list, const char **models, int cap);

/* The device's float32 linear layers (OpenBLAS with its current thread
 * count, bias added): a te_exec linear callback over a blas_ctx. */
typedef struct blas_ctx {
    float *col;
    size_t col_len;
} blas_ctx;
te_status blas_linear(void *vctx, const te_model *m, int layer, const float *x, float *y, te_err *err);
/* y[b][o][.] += bias[o] */
void te_add_bias(const te_layer *L, int64_t batch, float *y);

/* "conv 3x227x227->96 k11/4" or "fc 9216->4096" */
void layer_shape(const te_linear_geom *g, char *buf, size_t n);

/* One loaded layer at one batch: float32 against the blinded plugin run at
 * the layer's ring width and, when secure64_s is not NULL, at l = 64;
 * alternating, after one warm-up, medians of reps (1..101).  The float32
 * side is te_f32 (OpenBLAS with its current thread count) on this CPU, or
 * with plain_on_plugin the plugin's run_f32 on its own device (OpenCL:
 * CLBlast SGEMM), so both sides run on the same hardware. */
te_status bench_layer_times(const te_plugin_ops *ops, te_plugin_ctx *ctx, te_plugin_layer *pl,
                            const te_layer *L, int64_t batch, int reps, int plain_on_plugin, double *plain_s,
                            double *secure_s, double *secure64_s, te_err *err);
/* The float32 baseline runs on the plugin's device (its run_f32) for every
 * plugin but the CPU one, whose run_f32 is te_f32 itself. */
int bench_plain_on_plugin(const te_plugin_ops *ops);

/* twinedge-bench headroom ... PHOTO... (headroom.c) */
int bench_headroom_main(int argc, char **argv);
/* The whole suite: twinedge-bench [--quick] [--json FILE] [--report DIR] ... */
int bench_suite_main(int argc, char **argv);

#endif
