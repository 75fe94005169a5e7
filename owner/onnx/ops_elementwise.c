/* ONNX import: element-wise ops and activations on the device. */
#include "onnx_internal.h"

#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Fold "linear + constant" into the linear layer's bias when exact. */
static int try_fold_bias(imp *I, ival *x, ival *c, int sub, int is_right)
{
    if (x->is_const || !c->is_const || c->is_int)
        return 0;
    int p = te_imp_producer(I, x->id);
    if (p < 0 || I->m->nodes[p].op != TE_OP_LINEAR || te_imp_use_count(I, x->name) != 1)
        return 0;
    if (sub && !is_right)
        return 0; /* c - linear would need negated weights */
    te_layer *L = &I->m->layers[I->m->nodes[p].layer];
    const te_shape *s = &x->shape;
    int64_t oc = L->geom.out_c;
    int chan_axis = L->geom.kind == TE_LIN_CONV ? 1 : s->ndim - 1;
    if (c->shape.ndim > s->ndim)
        return 0;
    /* c must be a per-channel vector broadcasting along chan_axis only */
    for (int j = 0; j < c->shape.ndim; j++) {
        int js = j + (s->ndim - c->shape.ndim);
        int64_t want = js == chan_axis ? oc : 1;
        if (c->shape.d[j] != want && c->shape.d[j] != 1)
            return 0;
        if (js != chan_axis && c->shape.d[j] != 1)
            return 0;
    }
    int64_t cn = te_imp_numel(&c->shape);
    if (!L->bias) {
        L->bias = calloc((size_t)oc, sizeof *L->bias);
        if (!L->bias)
            return -1;
    }
    for (int64_t o = 0; o < oc; o++) {
        float v = c->f ? c->f[cn == 1 ? 0 : o] : 0.0f;
        L->bias[o] = sub ? L->bias[o] - v : L->bias[o] + v;
    }
    return 1;
}

te_status te_imp_op_binary(imp *I, onode *n, te_op op)
{
    ival *a, *b;
    te_status st;
    if ((st = te_imp_in_req(I, n, 0, &a)) || (st = te_imp_in_req(I, n, 1, &b)))
        return st;
    te_shape os;
    char sa[128], sb[128];
    if (te_imp_bcast(&a->shape, &b->shape, &os) != TE_OK) {
        te_imp_shape_str(&a->shape, sa, sizeof sa);
        te_imp_shape_str(&b->shape, sb, sizeof sb);
        return te_imp_bad(I, n, TE_ESHAPE, "shapes %s and %s do not broadcast", sa, sb);
    }
    if (a->is_const && b->is_const) /* the dispatch folds these first */
        return te_imp_bad(I, n, TE_EINVAL, "internal: constant operands reached the device lowering");
    if (op == TE_OP_ADD || op == TE_OP_SUB) {
        ival *x = a->is_const ? b : a, *c = a->is_const ? a : b;
        if (te_imp_numel(&os) == te_imp_numel(&x->shape)) {
            int r = try_fold_bias(I, x, c, op == TE_OP_SUB, c == b);
            if (r < 0)
                return te_imp_nomem(I);
            if (r > 0)
                return te_imp_alias(I, x, te_imp_out_name(n));
        }
    }
    int ids[2];
    if ((st = te_imp_rt_id(I, a, &ids[0])) || (st = te_imp_rt_id(I, b, &ids[1])))
        return st;
    te_node t;
    te_imp_node_init(&t, op, te_imp_nname(n));
    return te_imp_emit(I, &t, ids, 2, te_imp_out_name(n), &os, NULL);
}

te_status te_imp_op_unary(imp *I, onode *n, te_op op)
{
    ival *x;
    te_status st;
    if ((st = te_imp_rt_input(I, n, &x)))
        return st;
    te_node t;
    te_imp_node_init(&t, op, te_imp_nname(n));
    switch (op) {
    case TE_OP_LEAKY_RELU: t.alpha = te_imp_attr_f(n, "alpha", 0.01f); break;
    case TE_OP_HARD_SIGMOID:
        t.alpha = te_imp_attr_f(n, "alpha", 0.2f);
        t.beta = te_imp_attr_f(n, "beta", 0.5f);
        break;
    default: break;
    }
    return te_imp_emit1(I, &t, x->id, te_imp_out_name(n), &x->shape, NULL);
}

te_status te_imp_op_prelu(imp *I, onode *n)
{
    ival *x, *sl;
    te_status st;
    if ((st = te_imp_rt_input(I, n, &x)) || (st = te_imp_in_const(I, n, 1, 1, &sl, "the slope")))
        return st;
    te_shape os;
    if (te_imp_bcast(&x->shape, &sl->shape, &os) || te_imp_numel(&os) != te_imp_numel(&x->shape))
        return te_imp_bad(I, n, TE_ESHAPE, "slope does not broadcast to the input");
    int ids[2] = {x->id, 0};
    if ((st = te_imp_rt_id(I, sl, &ids[1])))
        return st;
    te_node t;
    te_imp_node_init(&t, TE_OP_PRELU, te_imp_nname(n));
    return te_imp_emit(I, &t, ids, 2, te_imp_out_name(n), &x->shape, NULL);
}

te_status te_imp_op_clip(imp *I, onode *n)
{
    ival *x, *lo, *hi;
    te_status st;
    if ((st = te_imp_rt_input(I, n, &x)) || (st = te_imp_in_const(I, n, 1, 0, &lo, "min")) ||
        (st = te_imp_in_const(I, n, 2, 0, &hi, "max")))
        return st;
    te_node t;
    te_imp_node_init(&t, TE_OP_CLIP, te_imp_nname(n));
    t.fmin = te_imp_attr_f(n, "min", -FLT_MAX);
    t.fmax = te_imp_attr_f(n, "max", FLT_MAX);
    if (lo) {
        if (te_imp_numel(&lo->shape) != 1)
            return te_imp_bad(I, n, TE_EINVAL, "min must be a scalar");
        t.fmin = (float)te_imp_cget(lo, 0);
    }
    if (hi) {
        if (te_imp_numel(&hi->shape) != 1)
            return te_imp_bad(I, n, TE_EINVAL, "max must be a scalar");
        t.fmax = (float)te_imp_cget(hi, 0);
    }
    return te_imp_emit1(I, &t, x->id, te_imp_out_name(n), &x->shape, NULL);
}

/* A binary device node between value in_id and a scalar constant c. */
static te_status emit_scalar_binary(imp *I, const char *nodename, te_op op, int in_id, const te_shape *s, float c,
                                    int const_first, const char *oname, ival **out)
{
    float *f = malloc(sizeof *f);
    if (!f)
        return te_imp_nomem(I);
    f[0] = c;
    char nm[300];
    snprintf(nm, sizeof nm, "%s/const", nodename);
    te_shape s0 = {0};
    int cid = te_model_add_value(I->m, nm, &s0, f);
    if (cid < 0) {
        free(f);
        return te_imp_nomem(I);
    }
    int ids[2] = {const_first ? cid : in_id, const_first ? in_id : cid};
    te_node t;
    te_imp_node_init(&t, op, nodename);
    return te_imp_emit(I, &t, ids, 2, oname, s, out);
}

/* Neg / Reciprocal as a binary op with a scalar constant. */
te_status te_imp_op_scalar_binary(imp *I, onode *n, te_op op, float c, int const_first)
{
    ival *x;
    te_status st;
    if ((st = te_imp_rt_input(I, n, &x)))
        return st;
    return emit_scalar_binary(I, te_imp_nname(n), op, x->id, &x->shape, c, const_first, te_imp_out_name(n), NULL);
}

/* Sum and Mean of several activations: a chain of Adds (Mean: then x 1/n). */
te_status te_imp_op_sum(imp *I, onode *n, int mean)
{
    if (n->n_input < 1)
        return te_imp_bad(I, n, TE_EFORMAT, "no inputs");
    ival *acc, *x;
    te_status st;
    if ((st = te_imp_in_req(I, n, 0, &acc)))
        return st;
    int single = n->n_input == 1 && !mean;
    for (size_t k = 1; k < n->n_input || single; k++) {
        if (single)
            return te_imp_reshape_to(I, n, acc, &acc->shape);
        if ((st = te_imp_in_req(I, n, k, &x)))
            return st;
        te_shape os;
        if (te_imp_bcast(&acc->shape, &x->shape, &os))
            return te_imp_bad(I, n, TE_ESHAPE, "inputs do not broadcast");
        int ids[2];
        if ((st = te_imp_rt_id(I, acc, &ids[0])) || (st = te_imp_rt_id(I, x, &ids[1])))
            return st;
        char nm[300];
        snprintf(nm, sizeof nm, "%s/%zu", te_imp_nname(n), k);
        int last = k + 1 == n->n_input && !mean;
        te_node t;
        te_imp_node_init(&t, TE_OP_ADD, last ? te_imp_nname(n) : nm);
        if ((st = te_imp_emit(I, &t, ids, 2, last ? te_imp_out_name(n) : nm, &os, &acc)))
            return st;
    }
    if (!mean)
        return TE_OK;
    int id;
    if ((st = te_imp_rt_id(I, acc, &id)))
        return st;
    return emit_scalar_binary(I, te_imp_nname(n), TE_OP_MUL, id, &acc->shape, 1.0f / (float)n->n_input, 0,
                              te_imp_out_name(n), NULL);
}

/* Mish (18) = x * tanh(softplus(x)); Gelu (20, approximate="none") =
 * x * (1 + erf(x / sqrt 2)) / 2: chains of existing device ops. */
te_status te_imp_op_mish_gelu(imp *I, onode *n, int gelu)
{
    ival *x, *a, *b;
    te_status st;
    if ((st = te_imp_rt_input(I, n, &x)))
        return st;
    char nm[300], nm2[300];
    te_node t;
    if (gelu) {
        char ap[16];
        te_imp_attr_s_copy(n, "approximate", ap, sizeof ap);
        if (ap[0] && strcmp(ap, "none") != 0)
            return te_imp_bad(I, n, TE_EUNSUPPORTED, "approximate='%s' is not supported", ap);
        snprintf(nm, sizeof nm, "%s/scaled", te_imp_nname(n));
        if ((st = emit_scalar_binary(I, nm, TE_OP_MUL, x->id, &x->shape, 0.70710678118654752f /* 1/sqrt 2 */, 0, nm,
                                     &a)))
            return st;
        snprintf(nm, sizeof nm, "%s/erf", te_imp_nname(n));
        te_imp_node_init(&t, TE_OP_ERF, nm);
        if ((st = te_imp_emit1(I, &t, a->id, nm, &x->shape, &b)))
            return st;
        snprintf(nm, sizeof nm, "%s/half", te_imp_nname(n));
        if ((st = emit_scalar_binary(I, nm, TE_OP_ADD, b->id, &x->shape, 1.0f, 0, nm, &a)) ||
            (st = emit_scalar_binary(I, nm2, TE_OP_MUL, a->id, &x->shape, 0.5f, 0,
                                     (snprintf(nm2, sizeof nm2, "%s/gate", te_imp_nname(n)), nm2), &b)))
            return st;
    } else {
        snprintf(nm, sizeof nm, "%s/softplus", te_imp_nname(n));
        te_imp_node_init(&t, TE_OP_SOFTPLUS, nm);
        if ((st = te_imp_emit1(I, &t, x->id, nm, &x->shape, &a)))
            return st;
        snprintf(nm, sizeof nm, "%s/tanh", te_imp_nname(n));
        te_imp_node_init(&t, TE_OP_TANH, nm);
        if ((st = te_imp_emit1(I, &t, a->id, nm, &x->shape, &b)))
            return st;
    }
    int ids[2] = {x->id, b->id};
    te_imp_node_init(&t, TE_OP_MUL, te_imp_nname(n));
    return te_imp_emit(I, &t, ids, 2, te_imp_out_name(n), &x->shape, NULL);
}

/* ImageScaler (experimental, opsets < 10): y = scale * x + bias[c]. */
te_status te_imp_op_image_scaler(imp *I, onode *n)
{
    ival *x, *a;
    te_status st;
    if ((st = te_imp_rt_input(I, n, &x)) || (st = te_imp_need_4d(I, n, x)))
        return st;
    int64_t C = x->shape.d[1];
    const Onnx__AttributeProto *bias = te_imp_attr(n, "bias");
    if (bias && bias->n_floats != (size_t)C)
        return te_imp_bad(I, n, TE_EINVAL, "bias must have %lld entries", (long long)C);
    char nm[300];
    snprintf(nm, sizeof nm, "%s/scale", te_imp_nname(n));
    if ((st = emit_scalar_binary(I, nm, TE_OP_MUL, x->id, &x->shape, te_imp_attr_f(n, "scale", 1.0f), 0,
                                 bias ? nm : te_imp_out_name(n), &a)) ||
        !bias)
        return st;
    float *f = malloc((size_t)C * sizeof *f);
    if (!f)
        return te_imp_nomem(I);
    for (int64_t c = 0; c < C; c++)
        f[c] = bias->floats[c];
    te_shape cs = {.ndim = 3, .d = {C, 1, 1}};
    snprintf(nm, sizeof nm, "%s/bias", te_imp_nname(n));
    int ids[2] = {a->id, te_model_add_value(I->m, nm, &cs, f)};
    if (ids[1] < 0) {
        free(f);
        return te_imp_nomem(I);
    }
    te_node t;
    te_imp_node_init(&t, TE_OP_ADD, te_imp_nname(n));
    return te_imp_emit(I, &t, ids, 2, te_imp_out_name(n), &x->shape, NULL);
}
