/* Checks on a model input that came from a file (twinedge-infer,
 * twinedge-run): the whole shape, not only the element count, and finite
 * values.  An NHWC array with the right number of elements would otherwise
 * run and answer wrongly without a word. */
#ifndef TE_INPUT_H
#define TE_INPUT_H

#include <stddef.h>
#include "te_error.h"
#include "te_model.h"
#include "te_npy.h"

/* TE_OK when `given` is the model's input shape, or that shape without its
 * leading batch dimension of 1; TE_ESHAPE with a message naming both shapes
 * (and saying so when `given` looks like the NHWC layout of the model's
 * NCHW input) otherwise.  `what` names the input in messages. */
te_status te_input_check_shape(const char *what, const te_shape *model, const te_shape *given, te_err *err);

/* TE_EINVAL naming the first NaN or infinite element, else TE_OK. */
te_status te_input_check_finite(const char *what, const float *x, size_t n, te_err *err);

/* After te_npy_read_info: TE_EINVAL when the file's dtype is not float32 and
 * some value does not convert exactly (unless allow_inexact), else TE_OK;
 * *note receives a line to print when values were converted ("" if none). */
te_status te_input_check_dtype(const char *what, const te_npy_info *info, int allow_inexact, char *note,
                               size_t note_cap, te_err *err);

#endif
