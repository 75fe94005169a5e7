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

/* l1[o] = sum of |w| over output channel o's row (out_c entries): the
 * weights' part of the device's bound (below). */
void te_linear_row_l1(const te_linear_geom *g, const int32_t *w, uint64_t *l1);

/* Output channel of output element idx (within one sample). */
int64_t te_linear_out_channel(const te_linear_geom *g, int64_t idx);

/* x (batch * in_len floats) -> ring elements of width l, round(x * 2^frac_bits).
 * TE_EOVERFLOW if some value does not fit in l bits signed. */
te_status te_layer_encode(const te_layer *L, unsigned l, const float *x, uint64_t *out, te_err *err);
/* y (batch * out_len ring elements of width l) -> floats:
 * signed(y) * w_scale[o] * 2^-frac_bits + bias[o]. */
void te_layer_decode(const te_layer *L, unsigned l, const uint64_t *y, float *out);

/* Soundness of the check (docs/protocol.md).  With x and y lifted from
 * Z_2^l to signed integers, the device accepts y only if
 *     |y_k| <= w_l1[o(k)] * max|x|  for every k   (the bound), and
 *     r . y == s . x  (mod p),  p = 2^61 - 1,
 * where max|x| is the largest magnitude of the layer's actual encoded
 * input.  The honest W.x always satisfies both.  The bound keeps every
 * admissible value below p/2 in magnitude (te_layer_plan refuses inputs
 * whose bound would not), so a wrong y differs from W.x by a vector d with
 * 0 < |d_k| < p somewhere: d is nonzero mod p, and r . d == 0 (mod p) holds
 * for at most 1/p of the uniform, device-secret r.  Multiples of p, short
 * lattice vectors found from another device's r, anything: the host does
 * not know this device's r. */
#define TE_BOUND_MAX (((uint64_t)1 << 60) - 1) /* (p - 1) / 2 */

/* What the device decides about an outsourced layer from its input alone,
 * before anything is sent. */
typedef struct te_layer_plan {
    unsigned l;          /* ring width: ring_bits, or 64 when this input could overflow it */
    uint64_t max_abs_x;  /* largest |round(x * 2^frac_bits)| over the batch */
    uint64_t bound;      /* max over o of w_l1[o] * max_abs_x: no honest |y_k| is larger */
    int widened;         /* l is 64 where the deployment calibrated less */
} te_layer_plan;

/* Plan the layer for input x (batch * in_len floats).  The ring is widened
 * only from the input's own magnitude (which reveals to the hosts only that
 * it left the calibrated range), never because of anything a host did.
 * TE_EOVERFLOW, naming the layer, when x is not finite or the bound would
 * reach p/2 (no sound check is possible for this input). */
te_status te_layer_plan_input(const te_layer *L, const float *x, te_layer_plan *plan, te_err *err);

/* Check, for every sample, the bound and r.y == s.x (mod p) above, with x
 * and y lifted from Z_2^l to signed integers and max|x| taken from x.
 * TE_EINTEGRITY (naming the layer) on failure. */
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
 * (mediated, z NULL), or y itself (both NULL); then the bound (with
 * max_abs_x from te_layer_plan_input) and r . y == rhs[b] are checked per
 * sample as te_layer_verify checks them (same messages), and y is decoded
 * into out as te_layer_decode does.  On failure out is zeroed. */
te_status te_layer_finish(const te_layer *L, unsigned l, uint64_t *y, te_prf_stream *z, const uint64_t *share,
                          const uint64_t *rhs, uint64_t max_abs_x, float *out, te_err *err);
/* te_layer_finish on the result as it came, bit-packed (te_pack's layout,
 * te_pack_bytes(batch * out_len, l) bytes whose length and padding the
 * caller has checked: te_wire_response_data): each chunk is unpacked in the
 * same pass that unmasks, checks and decodes it, so the result is never
 * written out unpacked.  Same checks, same results, same errors. */
te_status te_layer_finish_packed(const te_layer *L, unsigned l, const uint8_t *yp, te_prf_stream *z,
                                 const uint64_t *share, const uint64_t *rhs, uint64_t max_abs_x, float *out,
                                 te_err *err);

#endif
