/* Pieces shared by the command-line tools (and their tests). */
#ifndef TE_RUNLIB_H
#define TE_RUNLIB_H

#include <stddef.h>
#include "te_error.h"
#include "te_model.h"

/* The owner's plaintext fixed-point reference of a deployment: the device
 * bundle's graph with the edge bundle's integer weights, every linear layer
 * computed in the clear with the reference kernel.  The private protocol
 * must reproduce it bit for bit. */
te_status te_reference_fixed(const char *deploy_dir, const float *input, size_t n_in, float *output, size_t n_out,
                             te_err *err);

/* Remove a directory tree (scratch directories). */
te_status te_rm_rf(const char *path, te_err *err);

#endif
