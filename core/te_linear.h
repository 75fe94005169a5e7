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
#include "te_prf.h"

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

/* The device's two passes over an outsourced layer, each fused into one
 * walk over cache-sized chunks; they compute exactly what the reference
 * steps above compute.
 *
 * te_layer_mask: encode x as te_layer_encode does (same errors), add the
 * mask words read from `mask` (the next batch * in_len words of
 * PRF(t, i, mask), reduced mod 2^l) and pack A = x + M as te_pack does into
 * packed (te_pack_bytes(batch * in_len, l) bytes).  rhs[b] (batch entries)
 * receives s . x_b mod p, the right-hand side of te_layer_verify (0 when the
 * layer has no keys; te_layer_finish rejects it then). */
te_status te_layer_mask(const te_layer *L, unsigned l, const float *x, te_prf_stream *mask, uint8_t *packed,
                        uint64_t *rhs, te_err *err);
/* te_layer_finish: y (batch * out_len ring elements, overwritten with the
 * result) becomes y + Z mod 2^l with Z read from z (relay), or y - share
 * (mediated, z NULL), or y itself (both NULL); then r . y == rhs[b] is
 * checked per sample as te_layer_verify checks r . y == s . x (same
 * messages), and y is decoded into out as te_layer_decode does.  On failure
 * out is zeroed. */
te_status te_layer_finish(const te_layer *L, unsigned l, uint64_t *y, te_prf_stream *z, const uint64_t *share,
                          const uint64_t *rhs, float *out, te_err *err);

#endif
