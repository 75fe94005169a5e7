/* Integrity keys and deployment ids. */
#ifndef TE_OWNER_KEYS_H
#define TE_OWNER_KEYS_H

#include <stddef.h>
#include <stdint.h>
#include "te_error.h"
#include "te_model.h"

/* n uniform elements of F_p, p = 2^61 - 1 (rejection sampling). */
te_status te_owner_random_fp(uint64_t *out, size_t n, te_err *err);
/* Per layer: w_l1[o] = sum of |W_int| over output channel o's row, the
 * device's bound (te_linear.h).  Needs w. */
te_status te_owner_make_bounds(te_model *m, te_err *err);
/* Per layer: r uniform over F_p (out_len), s = W_int^T r mod p (in_len).
 * Needs w.  Drawn once per device at provisioning: keys shared between
 * devices would let any one device's files forge the others' results. */
te_status te_owner_make_keys(te_model *m, te_err *err);
/* 32 random lowercase hex chars + NUL. */
te_status te_owner_deployment_id(char out[33], te_err *err);

#endif
