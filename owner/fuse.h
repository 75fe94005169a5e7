/* Branch fusion: linear layers that read the same tensor become one
 * outsourced layer (docs/owner.md, "Branch fusion"). */
#ifndef TE_OWNER_FUSE_H
#define TE_OWNER_FUSE_H

#include "te_error.h"
#include "te_model.h"

typedef enum te_fuse_mode {
    TE_FUSE_NONE = 0,  /* every linear layer is its own call */
    TE_FUSE_SAME = 1,  /* same input and the same geometry (kernel, stride, pads, dilation) */
    TE_FUSE_EMBED = 2  /* also a smaller kernel embedded in a larger one where it reads the same pixels */
} te_fuse_mode;

/* Run after quantisation, bounds and calibration, before any integrity key
 * exists.  Each group of layers that read one value (groups 1, equal frac
 * and weight bits) becomes one layer whose output channels are the
 * branches' one after the other (scales, biases, row bounds concatenated,
 * ring width the widest branch's), followed by one Slice per branch that
 * writes the branch's original value, so every other node is unchanged.
 * Layers stay in execution order.  Each fused layer's n_branches says how
 * many layers it replaces. */
te_status te_owner_fuse(te_model *m, te_fuse_mode mode, te_err *err);

#endif
