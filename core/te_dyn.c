#include "te_dyn.h"

#include <stdlib.h>

/* How an op treats an input with a data-dependent dimension (te_dyn.h). */
typedef enum dyn_rule {
    DYN_REFUSE = 0, /* every op whose te_ops.def row says REFUSE */
    DYN_SAME,       /* element-wise: the output has the input's shape */
    DYN_BINARY,     /* broadcasting: the other operand broadcasts along the dimension */
    DYN_RESHAPE,    /* a move that keeps the dimension whole (Reshape, Squeeze, Unsqueeze, Cast, Identity) */
    DYN_TRANSPOSE,
    DYN_SLICE,      /* along the dimension only from 0 with step 1 (the first rows, at most) */
    DYN_GATHER,     /* columns of a dynamic tensor, or rows picked by dynamic indices */
    DYN_CONCAT,     /* of tensors with the same data-dependent dimension, along another axis */
    DYN_REDUCE,     /* over other axes */
    DYN_AXIS        /* along another axis (Softmax) */
} dyn_rule;

static const dyn_rule rules[TE_OP_COUNT_] = {
#define TE_OP(ID, code, name, min_in, max_in, out_flops, in_flops, why, dyn_rows, dyn, run) [TE_OP_##ID] = DYN_##dyn,
#include "te_ops.def"
#undef TE_OP
};

static const char *vname(const te_model *m, int v)
{
    return m->values[v].name && m->values[v].name[0] ? m->values[v].name : "?";
}

/* -1 on overflow (a damaged bundle's shapes): matches no real count */
static int64_t prod(const te_shape *s, int from, int to)
{
    int64_t n = 1;
    for (int i = from; i < to; i++)
        if (__builtin_mul_overflow(n, s->d[i], &n))
            return -1;
    return n;
}

static int norm(int64_t axis, int ndim)
{
    int64_t a = axis < 0 ? axis + ndim : axis;
    return a >= 0 && a < ndim ? (int)a : -1;
}

/* The output's data-dependent axis for node nd whose data-dependent input is
 * in[k] (the first such), or -1 with *why set. */
static int out_axis(const te_model *m, const te_node *nd, const te_dyn *dyn, int k, const char **why)
{
    const te_shape *si = &m->values[nd->in[k]].shape, *so = &m->values[nd->out].shape;
    int ax = dyn[nd->in[k]].axis;
    switch (rules[nd->op]) {
    case DYN_SAME:
        if (so->ndim != si->ndim || so->d[ax] != si->d[ax])
            return *why = "its output shape differs from its input's", -1;
        return ax;
    case DYN_BINARY: {
        int j = ax + so->ndim - si->ndim;
        for (int q = 0; q < nd->n_in; q++) {
            const te_shape *s = &m->values[nd->in[q]].shape;
            int jq = j - (so->ndim - s->ndim);
            if (dyn[nd->in[q]].axis >= 0) {
                if (dyn[nd->in[q]].axis != jq || s->d[jq] != si->d[ax])
                    return *why = "its operands' data-dependent dimensions do not line up", -1;
            } else if (jq >= 0 && s->d[jq] != 1) {
                return *why = "a fixed-size operand does not broadcast along the data-dependent dimension", -1;
            }
        }
        if (j < 0 || so->d[j] != si->d[ax])
            return *why = "its output does not keep the data-dependent dimension", -1;
        return j;
    }
    case DYN_RESHAPE: {
        /* the dimension must stay whole: the same element count before it, itself and after it */
        int64_t before = prod(si, 0, ax), after = prod(si, ax + 1, si->ndim);
        for (int j = 0; j < so->ndim; j++)
            if (prod(so, 0, j) == before && so->d[j] == si->d[ax] && prod(so, j + 1, so->ndim) == after)
                return j;
        return *why = "it merges or splits the data-dependent dimension", -1;
    }
    case DYN_TRANSPOSE:
        for (int j = 0; j < nd->n_ints && j < so->ndim; j++)
            if (nd->ints[j] == ax)
                return j;
        return *why = "its permutation drops the data-dependent dimension", -1;
    case DYN_SLICE:
        if (nd->n_ints != 2 * si->ndim || so->ndim != si->ndim || nd->ints[2 * ax] != 0 ||
            nd->ints[2 * ax + 1] != 1 || so->d[ax] > si->d[ax])
            return *why = "it slices the data-dependent dimension other than its first rows (start 0, step 1)", -1;
        return ax;
    case DYN_GATHER: {
        int g = norm(nd->axis, m->values[nd->in[0]].shape.ndim);
        const te_shape *sx = &m->values[nd->in[1]].shape;
        if (g < 0)
            return *why = "its axis is out of range", -1;
        if (k == 1)
            return g + ax;
        if (dyn[nd->in[1]].axis >= 0)
            return *why = "both its data and its indices have data-dependent lengths", -1;
        if (g == ax)
            return *why = "it indexes along the data-dependent dimension with fixed indices", -1;
        return ax < g ? ax : ax + sx->ndim - 1;
    }
    case DYN_CONCAT:
        if (norm(nd->axis, so->ndim) == ax)
            return *why = "it concatenates along the data-dependent dimension", -1;
        for (int q = 0; q < nd->n_in; q++) {
            int v = nd->in[q];
            if (dyn[v].axis != ax || m->values[v].shape.d[ax] != si->d[ax])
                return *why = "its inputs do not all have the same data-dependent dimension", -1;
        }
        return ax;
    case DYN_REDUCE: {
        int before = 0, over = nd->n_ints == 0;
        for (int q = 0; q < nd->n_ints; q++) {
            int a = norm(nd->ints[q], si->ndim);
            over |= a == ax;
            before += a >= 0 && a < ax;
        }
        if (over)
            return *why = "it reduces over the data-dependent dimension", -1;
        return nd->keepdims ? ax : ax - before;
    }
    case DYN_AXIS:
        if (norm(nd->axis, si->ndim) == ax)
            return *why = "it normalises along the data-dependent dimension", -1;
        return so->ndim == si->ndim ? ax : (*why = "its output shape differs from its input's", -1);
    default:
        *why = nd->op == TE_OP_LINEAR ? "an outsourced linear layer has a fixed input length (its masks, weights "
                                        "and checks are sized for it)"
                                      : "it does not take a data-dependent length";
        return -1;
    }
}

/* The rules that only move values (no arithmetic): integers stay integers. */
static int keeps_integers(te_op op)
{
    dyn_rule r = rules[op];
    return r == DYN_RESHAPE || r == DYN_TRANSPOSE || r == DYN_SLICE || r == DYN_GATHER || r == DYN_CONCAT;
}

te_status te_model_dyn(const te_model *m, te_dyn *dyn, te_err *err)
{
    for (int v = 0; v < m->n_values; v++)
        dyn[v] = (te_dyn){-1, -1, 0};
    for (int i = 0; i < m->n_nodes; i++) {
        const te_node *nd = &m->nodes[i];
        const te_op_desc *desc = te_op_info(nd->op);
        const char *name = nd->name && nd->name[0] ? nd->name : "?";
        if (!desc || nd->out < 0 || nd->out >= m->n_values || nd->n_in < desc->min_in || nd->n_in > desc->max_in ||
            (nd->n_in && !nd->in) || (nd->n_ints && !nd->ints))
            return te_errf(err, TE_EINVAL, "node '%s': invalid op, input count or value ids", name);
        int k = -1, src = -1, integral = 1;
        for (int q = 0; q < nd->n_in; q++) {
            int v = nd->in[q];
            if (v < 0 || v >= m->n_values)
                return te_errf(err, TE_EINVAL, "node '%s': input value id %d out of range", name, v);
            if (dyn[v].axis < 0)
                continue;
            if (k < 0)
                k = q, src = dyn[v].src;
            else if (dyn[v].src != src)
                return te_errf(err, TE_EUNSUPPORTED,
                               "%s node '%s': inputs '%s' and '%s' have data-dependent lengths from different "
                               "nodes", desc->name, name, vname(m, nd->in[k]), vname(m, v));
            integral &= dyn[v].integral;
        }
        te_shape so = m->values[nd->out].shape;
        if (desc->dyn_rows) {
            if (k >= 0)
                return te_errf(err, TE_EUNSUPPORTED, "%s node '%s': input '%s' already has a data-dependent length",
                               desc->name, name, vname(m, nd->in[k]));
            if (so.ndim < 1)
                return te_errf(err, TE_ESHAPE, "%s node '%s': a data-dependent output needs a dimension",
                               desc->name, name);
            dyn[nd->out] = (te_dyn){0, nd->out, nd->op == TE_OP_NMS};
            continue;
        }
        if (k < 0)
            continue;
        const char *why = "";
        int ax = out_axis(m, nd, dyn, k, &why);
        if (ax < 0 || ax >= so.ndim)
            return te_errf(err, TE_EUNSUPPORTED,
                           "%s node '%s' reads '%s', whose length is data-dependent (from '%s'), and %s",
                           desc->name, name, vname(m, nd->in[k]), vname(m, src), ax < 0 ? why : "loses it");
        /* a Gather's indices decide what it copies, not what the values are */
        if (nd->op == TE_OP_GATHER)
            integral = dyn[nd->in[0]].axis >= 0 ? dyn[nd->in[0]].integral : 0;
        dyn[nd->out] = (te_dyn){ax, src, integral && keeps_integers(nd->op)};
    }
    return TE_OK;
}

te_dyn te_model_dyn_of(const te_model *m, int value)
{
    te_dyn r = {-1, -1, 0};
    te_dyn *all = m && m->n_values > 0 ? malloc((size_t)m->n_values * sizeof *all) : NULL;
    if (all && value >= 0 && value < m->n_values && te_model_dyn(m, all, NULL) == TE_OK)
        r = all[value];
    free(all);
    return r;
}
