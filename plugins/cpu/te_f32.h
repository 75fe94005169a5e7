/* Plain float32 linear layers (im2col + OpenBLAS SGEMM): the no-privacy
 * baseline that the benchmarks compare the blinded layers against, shared by
 * the CPU plugin's run_f32 and twinedge-bench so both measure one thing. */
#ifndef TE_F32_H
#define TE_F32_H

#include <stdint.h>
#include "te_model.h"

/* Floats of scratch te_f32_layer needs for a batch (im2col columns plus a
 * staging copy of the output). */
int64_t te_f32_scratch_len(const te_linear_geom *g, int64_t batch);

/* y = W . x for `batch` samples, sample-major in and out (te_linear.h
 * layout), w as [out_c][dot length].  scratch holds te_f32_scratch_len()
 * floats.  Uses OpenBLAS with its current thread count. */
void te_f32_layer(const te_linear_geom *g, const float *w, const float *x, int64_t batch, float *scratch,
                  float *y);

#endif
