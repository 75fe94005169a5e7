/* Linear layers: reference arithmetic and the fixed-point bridge.
 *
 * These are the slow, obviously-correct definitions every fast kernel is
 * tested against, plus the encode / decode / verify steps the device runs
 * around each outsourced layer.  Batched buffers are sample-major:
 * in[b * in_len + j], out[b * out_len + o*out_h*out_w + ...]. */
#ifndef TE_LINEAR_H
#define TE_LINEAR_H

#include <stdint.h>
#include <stddef.h>
#include "te_error.h"
#include "te_model.h"

/* out = W . in mod 2^l for g->batch samples (zero padding). */
void te_linear_ref_ring(const te_linear_geom *g, const int32_t *w, unsigned l,
                        const uint64_t *in, uint64_t *out);
/* out = W . in in float (no bias), for g->batch samples. */
void te_linear_float(const te_linear_geom *g, const float *w, const float *in, float *out);
/* s = W^T r mod p for one sample: r has out_len entries, s has in_len. */
void te_linear_transpose_fp(const te_linear_geom *g, const int32_t *w, const uint64_t *r, uint64_t *s);

/* Output channel of output element idx (within one sample). */
int64_t te_linear_out_channel(const te_linear_geom *g, int64_t idx);

/* x (batch * in_len floats) -> ring elements of width l, round(x * 2^frac_bits).
 * TE_EOVERFLOW if some value does not fit in l bits signed. */
te_status te_layer_encode(const te_layer *L, unsigned l, const float *x, uint64_t *out, te_err *err);
/* y (batch * out_len ring elements of width l) -> floats:
 * signed(y) * w_scale[o] * 2^-frac_bits + bias[o]. */
void te_layer_decode(const te_layer *L, unsigned l, const uint64_t *y, float *out);
/* Check r.y == s.x (mod p) for every sample, with x and y lifted from Z_2^l
 * to signed integers.  TE_EINTEGRITY (naming the layer) on failure. */
te_status te_layer_verify(const te_layer *L, unsigned l, const uint64_t *x, const uint64_t *y, te_err *err);

#endif
