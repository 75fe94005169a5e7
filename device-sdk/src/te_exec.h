/* The model executor: runs a te_model's node list in order.
 *
 * Non-linear nodes run here in float32.  Every TE_OP_LINEAR node is handed
 * to a caller-supplied te_linear_fn, which is how one interpreter serves the
 * float path (owner calibration, local baseline), the plaintext fixed-point
 * reference and the private protocol. */
#ifndef TE_EXEC_H
#define TE_EXEC_H

#include <stddef.h>
#include "te_error.h"
#include "te_model.h"

/* Compute y (batch * out_len floats, bias included) from x (batch * in_len). */
typedef te_status (*te_linear_fn)(void *ctx, const te_model *m, int layer, const float *x, float *y,
                                  te_err *err);

typedef struct te_exec te_exec;

te_status te_exec_new(const te_model *m, te_exec **ex, te_err *err);
void te_exec_free(te_exec *ex);
/* input: numel(model input) floats. */
te_status te_exec_run(te_exec *ex, const float *input, size_t n_input, te_linear_fn fn, void *fn_ctx,
                      te_err *err);
/* The model output of the last successful run (the first, for a model
 * with several; NULL before a successful run). */
const float *te_exec_output(const te_exec *ex, te_shape *shape);
/* Drop the last run's results (te_exec_output* return NULL until the next
 * successful run). */
void te_exec_forget(te_exec *ex);
/* The model ex runs. */
const te_model *te_exec_model(const te_exec *ex);
/* Output k (0 .. te_model_n_outputs - 1) of the last successful run, or
 * NULL; its shape is the run's (a data-dependent output's rows). */
const float *te_exec_output_at(const te_exec *ex, int k, te_shape *shape);
/* All outputs copied into dst (te_model_outputs_numel floats) one after
 * the other in the model's order, each in a slot of its declared size (a
 * data-dependent output's unused rows zero: for measuring, not for
 * returning); returns the count written (0 before a successful run). */
size_t te_exec_outputs_copy(const te_exec *ex, float *dst);

/* Run one non-linear node: in[k] points at the data of node->in[k] (with the
 * shapes in m->values), out at numel(out shape) floats.  Exposed for unit tests. */
te_status te_op_run(const te_model *m, const te_node *node, const float *const *in, float *out,
                    te_err *err);

/* The same; *rows (may be NULL) gets the output's first dimension, which
 * for an op with te_op_desc.dyn_rows (NonMaxSuppression) is the run's,
 * at most the declared one. */
te_status te_op_run_rows(const te_model *m, const te_node *node, const float *const *in, float *out, int64_t *rows,
                         te_err *err);

/* Built-in linear functions (ctx unused). */
/* Float weights (w_float) + bias: the owner's calibration and the local baseline. */
te_status te_linear_fn_float(void *ctx, const te_model *m, int layer, const float *x, float *y, te_err *err);
/* Plaintext fixed-point reference of the deployment: encode x with frac_bits,
 * W_int . x mod 2^ring_bits with the reference kernel, verify, decode.  The
 * private protocol must be bit-identical to this. */
te_status te_linear_fn_fixed(void *ctx, const te_model *m, int layer, const float *x, float *y, te_err *err);

#endif
