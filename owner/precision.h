/* Precision by measurement (twinedge-owner compile --precision auto).
 *
 * Fewer weight and activation bits make every ring narrower, and the ring
 * width is what the device sends and receives per element.  Per layer the
 * weight bits, and per input tensor the activation bits (the layers that read
 * one tensor encode it alike, so branch fusion keeps them together), are
 * chosen as the fewest that keep the fixed-point model's output within the
 * fidelity target of the float model's on the calibration samples. */
#ifndef TE_OWNER_PRECISION_H
#define TE_OWNER_PRECISION_H

#include <stdint.h>
#include "owner.h"

/* Choose the bits (at most opt->weight_bits / opt->act_bits, at least
 * TE_PREC_MIN_BITS), then quantise, set the bounds and calibrate m (its
 * layers' weight_bits, frac_bits, ring_bits; m->calib_cosine).  The exact
 * fixed-point model's smallest cosine over the samples must reach
 * opt->min_cosine; when no choice does, every layer gets the widest bits
 * (m->calib_cosine then says by how much the target is missed).
 * inputs: n_samples model inputs back to back.  m must be quantised
 * (w_float kept) and not fused. */
te_status te_owner_auto_precision(te_model *m, const float *inputs, int64_t n_samples, const te_owner_options *opt,
                                  te_err *err);

#define TE_PREC_MIN_BITS 4

#endif
