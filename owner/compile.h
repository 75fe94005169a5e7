/* Quantisation and calibration of a model's linear layers. */
#ifndef TE_OWNER_COMPILE_H
#define TE_OWNER_COMPILE_H

#include <stddef.h>
#include <stdint.h>
#include "owner.h"

/* Per output channel: w_scale[o] = max|w[o,:]| / (2^(bits-1) - 1) (1 when
 * all zero), w = round(w_float / w_scale). */
te_status te_owner_quantize(te_model *m, int weight_bits, te_err *err);
/* The same for one layer (sets L->w, L->w_scale, L->weight_bits). */
te_status te_owner_quantize_layer(te_layer *L, int weight_bits, te_err *err);
/* The same into caller buffers (weight_len ints, out_c scales); L unchanged. */
te_status te_owner_quantize_rows(const te_layer *L, int weight_bits, int32_t *w, float *scale, te_err *err);

/* frac_bits for a layer whose largest calibrated |x| is max_abs_x:
 * act_bits - ceil(log2 max_abs_x), clamped to 0..40 (default_frac_bits when
 * max_abs_x is 0). */
int te_owner_frac_bits(double max_abs_x, int act_bits, int default_frac_bits);

/* Cosine of two vectors (1 when both are zero, 0 when one is). */
double te_owner_cosine(const float *a, const float *b, size_t n);

/* Without calibration data: every layer gets the default frac/ring bits. */
void te_owner_default_bits(te_model *m, const te_owner_options *opt);

/* inputs: n_samples model inputs back to back.  Pass 1 (float) sets
 * frac_bits = act_bits - ceil(log2 max|x|) (clamped to 0..40; act_bits[i]
 * per layer, or opt->act_bits for all when act_bits is NULL); pass 2 (exact
 * fixed point) sets ring_bits = bits(max(|x_int|, w_l1[o] * max|x_int|)) + 1 +
 * headroom.  min_cosine (may be NULL): the smallest cosine over the samples
 * between the fixed-point model's output and the float model's. */
te_status te_owner_calibrate(te_model *m, const float *inputs, int64_t n_samples, const te_owner_options *opt,
                             const int *act_bits, double *min_cosine, te_err *err);

#endif
