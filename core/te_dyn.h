/* Data-dependent lengths: NonMaxSuppression's selection and the values
 * computed from it (an exporter's post-processing: the kept boxes gathered,
 * their scores and classes concatenated).
 *
 * A value of declared shape S may have one data-dependent dimension, whose
 * length at run time is min(rows of the producing op's output, S[axis]).
 * te_model_dyn is the one place that decides which op may read such a value
 * and where the dimension goes: the owner's import and the device's
 * executor both ask it. */
#ifndef TE_DYN_H
#define TE_DYN_H

#include "te_error.h"
#include "te_model.h"

typedef struct te_dyn {
    int axis;     /* the data-dependent dimension, -1: the value's shape is static */
    int src;      /* value id of the producer's output (a te_op_desc.dyn_rows op) whose run length bounds this one */
    int integral; /* the values are integers held as floats (selected indices and moves of them) */
} te_dyn;

/* Fill dyn[0 .. m->n_values) from the node list in order.  A node that reads
 * a data-dependent value in a way the executor cannot follow (an outsourced
 * layer, a reduction over the data-dependent dimension, two lengths from
 * different producers, ...) is refused, naming the node and why. */
te_status te_model_dyn(const te_model *m, te_dyn *dyn, te_err *err);

/* The same for one value (its entry; a static one when the model is refused). */
te_dyn te_model_dyn_of(const te_model *m, int value);

#endif
