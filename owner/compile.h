/* Quantisation and calibration of a model's linear layers. */
#ifndef TE_OWNER_COMPILE_H
#define TE_OWNER_COMPILE_H

#include <stdint.h>
#include "owner.h"

/* Per output channel: w_scale[o] = max|w[o,:]| / (2^(bits-1) - 1) (1 when
 * all zero), w = round(w_float / w_scale). */
te_status te_owner_quantize(te_model *m, int weight_bits, te_err *err);

/* Without calibration data: every layer gets the default frac/ring bits. */
void te_owner_default_bits(te_model *m, const te_owner_options *opt);

/* inputs: n_samples model inputs back to back.  Pass 1 (float) sets
 * frac_bits = act_bits - ceil(log2 max|x|) (clamped to 0..40); pass 2 (exact
 * fixed point) sets ring_bits = bits(max |x_int|, |y_int|) + 1 + headroom. */
te_status te_owner_calibrate(te_model *m, const float *inputs, int64_t n_samples, const te_owner_options *opt,
                             te_err *err);

#endif
