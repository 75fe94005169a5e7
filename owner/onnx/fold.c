/* ONNX import: constant evaluation (the shape arithmetic of torch exports,
 * element-wise ops and reductions on constants). */
#include "onnx_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "te_dyn.h"

/* Shape and Size read a value's declared shape: refused where a dimension
 * in [lo, hi) is data-dependent (the declared one is only its maximum). */
static te_status fixed_dims(imp *I, onode *n, const ival *x, int lo, int hi)
{
    if (x->is_const)
        return TE_OK;
    te_dyn d = te_model_dyn_of(I->m, x->id);
    if (d.axis >= lo && d.axis < hi)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "dimension %d of '%s' has a data-dependent length (from '%s'): "
                          "its size is not known before the run", d.axis, x->name, I->m->values[d.src].name);
    return TE_OK;
}

te_status te_imp_op_shape(imp *I, onode *n)
{
    ival *x;
    te_status st;
    if ((st = te_imp_in_req(I, n, 0, &x)))
        return st;
    int r = x->shape.ndim;
    int64_t s0 = te_imp_attr_i(n, "start", 0), e0 = te_imp_attr_i(n, "end", r);
    if (s0 < 0)
        s0 += r;
    if (e0 < 0)
        e0 += r;
    s0 = s0 < 0 ? 0 : s0 > r ? r : s0;
    e0 = e0 < 0 ? 0 : e0 > r ? r : e0;
    int64_t k = e0 > s0 ? e0 - s0 : 0;
    if ((st = fixed_dims(I, n, x, (int)s0, (int)e0)))
        return st;
    int64_t *iv = malloc((size_t)(k ? k : 1) * sizeof *iv);
    if (!iv)
        return te_imp_nomem(I);
    for (int64_t j = 0; j < k; j++)
        iv[j] = x->shape.d[s0 + j];
    te_shape os = {.ndim = 1, .d = {k}};
    return te_imp_new_const(I, te_imp_out_name(n), &os, NULL, iv);
}

te_status te_imp_op_gather(imp *I, onode *n)
{
    ival *x, *ix;
    te_status st;
    if ((st = te_imp_in_const(I, n, 0, 1, &x, "Gather data")) ||
        (st = te_imp_in_const(I, n, 1, 1, &ix, "Gather indices")))
        return st;
    int64_t axis = te_imp_attr_i(n, "axis", 0);
    if (te_imp_norm_axis(&axis, x->shape.ndim))
        return te_imp_bad(I, n, TE_EINVAL, "axis out of range");
    te_shape os = {0};
    if (x->shape.ndim - 1 + ix->shape.ndim > TE_MAX_DIMS)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "result rank too large");
    for (int j = 0; j < axis; j++)
        os.d[os.ndim++] = x->shape.d[j];
    for (int j = 0; j < ix->shape.ndim; j++)
        os.d[os.ndim++] = ix->shape.d[j];
    for (int j = (int)axis + 1; j < x->shape.ndim; j++)
        os.d[os.ndim++] = x->shape.d[j];
    int64_t outer = 1, inner = 1, dim = x->shape.d[axis], ni = te_imp_numel(&ix->shape);
    for (int j = 0; j < axis; j++)
        outer *= x->shape.d[j];
    for (int j = (int)axis + 1; j < x->shape.ndim; j++)
        inner *= x->shape.d[j];
    int64_t ne = te_imp_numel(&os);
    float *f = x->is_int ? NULL : malloc((size_t)(ne ? ne : 1) * sizeof *f);
    int64_t *iv = x->is_int ? malloc((size_t)(ne ? ne : 1) * sizeof *iv) : NULL;
    if (!f && !iv)
        return te_imp_nomem(I);
    int64_t k = 0;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t q = 0; q < ni; q++) {
            int64_t id = te_imp_cget_i(ix, q);
            if (id < 0)
                id += dim;
            if (id < 0 || id >= dim) {
                free(f);
                free(iv);
                return te_imp_bad(I, n, TE_EINVAL, "index out of range");
            }
            for (int64_t r = 0; r < inner; r++, k++) {
                int64_t src = (o * dim + id) * inner + r;
                if (iv)
                    iv[k] = x->i[src];
                else
                    f[k] = x->f[src];
            }
        }
    return te_imp_new_const(I, te_imp_out_name(n), &os, f, iv);
}

te_status te_imp_op_cast(imp *I, onode *n)
{
    ival *x;
    te_status st;
    if ((st = te_imp_in_req(I, n, 0, &x)))
        return st;
    int64_t to = te_imp_attr_i(n, "to", 1);
    int to_float = to == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT || to == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE;
    if (!x->is_const) {
        /* integers held as floats (NonMaxSuppression's indices and moves of them) cast to integers unchanged */
        if (!to_float && !te_model_dyn_of(I->m, x->id).integral)
            return te_imp_bad(I, n, TE_EUNSUPPORTED, "casting an activation to data type %lld", (long long)to);
        return te_imp_reshape_to(I, n, x, &x->shape);
    }
    int64_t ne = te_imp_numel(&x->shape);
    if (to_float) {
        float *f = te_imp_const_floats(x);
        return f ? te_imp_new_const(I, te_imp_out_name(n), &x->shape, f, NULL) : te_imp_nomem(I);
    }
    int64_t *iv = malloc((size_t)(ne ? ne : 1) * sizeof *iv);
    if (!iv)
        return te_imp_nomem(I);
    for (int64_t k = 0; k < ne; k++)
        iv[k] = te_imp_cget_i(x, k);
    return te_imp_new_const(I, te_imp_out_name(n), &x->shape, NULL, iv);
}

te_status te_imp_op_constant_of_shape(imp *I, onode *n)
{
    ival *s;
    te_status st;
    if ((st = te_imp_in_const(I, n, 0, 1, &s, "the shape")))
        return st;
    int64_t k = te_imp_numel(&s->shape);
    if (k > TE_MAX_DIMS)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "rank too large");
    te_shape os = {.ndim = (int)k};
    for (int j = 0; j < (int)k; j++)
        os.d[j] = te_imp_cget_i(s, j);
    int64_t ne = te_imp_numel(&os);
    if (ne < 0 || ne > MAX_NUMEL)
        return te_imp_bad(I, n, TE_ESHAPE, "bad shape");
    double val = 0;
    int isint = 0;
    const Onnx__AttributeProto *a = te_imp_attr(n, "value");
    if (a && a->t) {
        ival *tv;
        if ((st = te_imp_load_tensor(I, a->t, "value", &tv)))
            return st;
        if (te_imp_numel(&tv->shape) >= 1)
            val = te_imp_cget(tv, 0);
        isint = tv->is_int;
        te_imp_ival_free(tv);
    }
    float *f = isint ? NULL : malloc((size_t)(ne ? ne : 1) * sizeof *f);
    int64_t *iv = isint ? malloc((size_t)(ne ? ne : 1) * sizeof *iv) : NULL;
    if (!f && !iv)
        return te_imp_nomem(I);
    for (int64_t j = 0; j < ne; j++) {
        if (iv)
            iv[j] = te_imp_d2i(val);
        else
            f[j] = (float)val;
    }
    return te_imp_new_const(I, te_imp_out_name(n), &os, f, iv);
}

te_status te_imp_op_constant(imp *I, onode *n)
{
    const Onnx__AttributeProto *a;
    te_shape s = {0};
    if ((a = te_imp_attr(n, "value")) && a->t) {
        ival *v;
        te_status st = te_imp_load_tensor(I, a->t, te_imp_out_name(n), &v);
        if (st)
            return te_imp_bad(I, n, st, "%s", I->err ? I->err->msg : "bad tensor");
        return te_imp_add_ival(I, v);
    }
    if ((a = te_imp_attr(n, "value_float")) && a->has_f) {
        float *f = malloc(sizeof *f);
        if (!f)
            return te_imp_nomem(I);
        f[0] = a->f;
        return te_imp_new_const(I, te_imp_out_name(n), &s, f, NULL);
    }
    if ((a = te_imp_attr(n, "value_int")) && a->has_i) {
        int64_t *iv = malloc(sizeof *iv);
        if (!iv)
            return te_imp_nomem(I);
        iv[0] = a->i;
        return te_imp_new_const(I, te_imp_out_name(n), &s, NULL, iv);
    }
    if ((a = te_imp_attr(n, "value_floats"))) {
        s.ndim = 1;
        s.d[0] = (int64_t)a->n_floats;
        float *f = malloc((a->n_floats ? a->n_floats : 1) * sizeof *f);
        if (!f)
            return te_imp_nomem(I);
        if (a->n_floats)
            memcpy(f, a->floats, a->n_floats * sizeof *f);
        return te_imp_new_const(I, te_imp_out_name(n), &s, f, NULL);
    }
    if ((a = te_imp_attr(n, "value_ints"))) {
        s.ndim = 1;
        s.d[0] = (int64_t)a->n_ints;
        int64_t *iv = malloc((a->n_ints ? a->n_ints : 1) * sizeof *iv);
        if (!iv)
            return te_imp_nomem(I);
        if (a->n_ints)
            memcpy(iv, a->ints, a->n_ints * sizeof *iv);
        return te_imp_new_const(I, te_imp_out_name(n), &s, NULL, iv);
    }
    return te_imp_bad(I, n, TE_EUNSUPPORTED, "only tensor, float(s) and int(s) constants are supported");
}

/* A reduction of a constant, evaluated here (integers stay integers). */
te_status te_imp_fold_reduce(imp *I, onode *n, int op, ival *x, const int *mark, const te_shape *os)
{
    int r = x->shape.ndim;
    int64_t nout = te_imp_numel(os), total = te_imp_numel(&x->shape), ost[TE_MAX_DIMS], idx[TE_MAX_DIMS] = {0},
            stride = 1;
    int isint = x->is_int && op != TE_OP_REDUCE_MEAN && op != TE_OP_REDUCE_L2;
    double *acc = malloc((size_t)(nout ? nout : 1) * sizeof *acc);
    int64_t *iacc = malloc((size_t)(nout ? nout : 1) * sizeof *iacc);
    if (!acc || !iacc) {
        free(acc);
        free(iacc);
        return te_imp_nomem(I);
    }
    int is_prod = op == TE_OP_REDUCE_PROD, is_max = op == TE_OP_REDUCE_MAX, is_min = op == TE_OP_REDUCE_MIN;
    for (int64_t k = 0; k < nout; k++) {
        acc[k] = is_prod ? 1 : is_max ? -INFINITY : is_min ? INFINITY : 0;
        iacc[k] = is_prod ? 1 : is_max ? INT64_MIN : is_min ? INT64_MAX : 0;
    }
    for (int d = r - 1; d >= 0; d--) {
        ost[d] = mark[d] ? 0 : stride;
        if (!mark[d])
            stride *= x->shape.d[d];
    }
    int64_t o = 0;
    for (int64_t i = 0; i < total; i++) {
        double v = te_imp_cget(x, i);
        int64_t iv = isint ? x->i[i] : 0;
        switch (op) {
        case TE_OP_REDUCE_PROD: acc[o] *= v; iacc[o] = (int64_t)((uint64_t)iacc[o] * (uint64_t)iv); break;
        case TE_OP_REDUCE_MIN: acc[o] = fmin(acc[o], v); iacc[o] = iv < iacc[o] ? iv : iacc[o]; break;
        case TE_OP_REDUCE_MAX: acc[o] = fmax(acc[o], v); iacc[o] = iv > iacc[o] ? iv : iacc[o]; break;
        case TE_OP_REDUCE_L2: acc[o] += v * v; break;
        default: acc[o] += v; iacc[o] = (int64_t)((uint64_t)iacc[o] + (uint64_t)iv);
        }
        for (int d = r - 1; d >= 0; d--) {
            o += ost[d];
            if (++idx[d] < x->shape.d[d])
                break;
            o -= ost[d] * x->shape.d[d];
            idx[d] = 0;
        }
    }
    float *f = NULL;
    if (!isint) {
        free(iacc);
        iacc = NULL;
        if (!(f = malloc((size_t)(nout ? nout : 1) * sizeof *f))) {
            free(acc);
            return te_imp_nomem(I);
        }
        double cnt = nout ? (double)total / (double)nout : 1;
        for (int64_t k = 0; k < nout; k++)
            f[k] = (float)(op == TE_OP_REDUCE_L2 ? sqrt(acc[k]) : op == TE_OP_REDUCE_MEAN ? acc[k] / cnt : acc[k]);
    }
    free(acc);
    return te_imp_new_const(I, te_imp_out_name(n), os, f, iacc);
}

/* comparisons and logic give booleans (stored as integers) */
static int ew_bool(ew_code c)
{
    return (c >= EW_EQUAL && c <= EW_XOR) || c == EW_NOT;
}

static double ew_f(ew_code c, double a, double b, double d)
{
    switch (c) {
    case EW_ADD: return a + b;
    case EW_SUB: return a - b;
    case EW_MUL: return a * b;
    case EW_DIV: return a / b;
    case EW_POW: return pow(a, b);
    case EW_MOD: return fmod(a, b);
    case EW_MIN: return a < b ? a : b;
    case EW_MAX: return a > b ? a : b;
    case EW_EQUAL: return a == b;
    case EW_LESS: return a < b;
    case EW_LESS_EQ: return a <= b;
    case EW_GREATER: return a > b;
    case EW_GREATER_EQ: return a >= b;
    case EW_AND: return (a != 0) && (b != 0);
    case EW_OR: return (a != 0) || (b != 0);
    case EW_XOR: return (a != 0) != (b != 0);
    case EW_WHERE: return a != 0 ? b : d;
    case EW_NOT: return a == 0;
    case EW_NEG: return -a;
    case EW_ABS: return fabs(a);
    case EW_FLOOR: return floor(a);
    case EW_CEIL: return ceil(a);
    case EW_SQRT: return sqrt(a);
    case EW_RELU: return a > 0 ? a : 0;
    case EW_EXP: return exp(a);
    case EW_LOG: return log(a);
    case EW_RECIP: return 1 / a;
    case EW_SIGMOID: return 1 / (1 + exp(-a));
    case EW_TANH: return tanh(a);
    case EW_ERF: return erf(a);
    case EW_SIGN: return (a > 0) - (a < 0);
    case EW_ROUND: return nearbyint(a);
    case EW_IDENT: return a;
    case EW_SOFTPLUS: return a > 30 ? a : log1p(exp(a));
    }
    return 0;
}

/* Integer semantics (shape arithmetic must stay exact); -1 on division by zero. */
static int ew_i(ew_code c, int64_t a, int64_t b, int64_t d, int64_t *r)
{
    switch (c) {
    case EW_ADD: *r = (int64_t)((uint64_t)a + (uint64_t)b); return 0;
    case EW_SUB: *r = (int64_t)((uint64_t)a - (uint64_t)b); return 0;
    case EW_MUL: *r = (int64_t)((uint64_t)a * (uint64_t)b); return 0;
    case EW_DIV:
    case EW_MOD:
        if (b == 0 || (b == -1 && a == INT64_MIN))
            return -1;
        if (c == EW_DIV) {
            *r = a / b;
        } else { /* ONNX Mod (fmod=0): the sign of the divisor */
            int64_t m = a % b;
            *r = (m != 0 && ((m < 0) != (b < 0))) ? m + b : m;
        }
        return 0;
    case EW_MIN: *r = a < b ? a : b; return 0;
    case EW_MAX: *r = a > b ? a : b; return 0;
    case EW_NEG: *r = (int64_t)(0 - (uint64_t)a); return 0;
    case EW_ABS: *r = a < 0 ? (int64_t)(0 - (uint64_t)a) : a; return 0;
    case EW_WHERE: *r = a != 0 ? b : d; return 0;
    case EW_RELU: *r = a > 0 ? a : 0; return 0;
    case EW_SIGN: *r = (a > 0) - (a < 0); return 0;
    case EW_EQUAL: *r = a == b; return 0;
    case EW_LESS: *r = a < b; return 0;
    case EW_LESS_EQ: *r = a <= b; return 0;
    case EW_GREATER: *r = a > b; return 0;
    case EW_GREATER_EQ: *r = a >= b; return 0;
    case EW_AND: *r = a && b; return 0;
    case EW_OR: *r = a || b; return 0;
    case EW_XOR: *r = !a != !b; return 0;
    case EW_NOT: *r = !a; return 0;
    case EW_FLOOR: case EW_CEIL: case EW_ROUND: case EW_IDENT: *r = a; return 0;
    default: *r = (int64_t)ew_f(c, (double)a, (double)b, (double)d); return 0;
    }
}

/* Fold an element-wise op whose inputs (n_in of them) are all constants. */
te_status te_imp_fold_ew(imp *I, onode *n, ew_code code, int n_in)
{
    ival *x[3] = {0};
    te_status st;
    te_shape os = {0};
    for (int k = 0; k < n_in; k++) {
        if ((st = te_imp_in_req(I, n, (size_t)k, &x[k])))
            return st;
        te_shape t;
        if (te_imp_bcast(&os, &x[k]->shape, &t))
            return te_imp_bad(I, n, TE_ESHAPE, "constant operands do not broadcast");
        os = t;
    }
    if (code == EW_WHERE && !x[0]->is_int)
        return te_imp_bad(I, n, TE_EINVAL, "the condition is not a bool tensor");
    /* integers stay integers (Where: its two value operands decide) */
    int isint = 1;
    for (int k = code == EW_WHERE ? 1 : 0; k < n_in; k++)
        isint &= x[k]->is_int;
    int out_int = isint || ew_bool(code);
    int64_t ne = te_imp_numel(&os);
    float *f = out_int ? NULL : malloc((size_t)(ne ? ne : 1) * sizeof *f);
    int64_t *iv = out_int ? malloc((size_t)(ne ? ne : 1) * sizeof *iv) : NULL;
    if (!f && !iv)
        return te_imp_nomem(I);
    for (int64_t k = 0; k < ne; k++) {
        int64_t ix[3] = {0};
        for (int j = 0; j < n_in; j++)
            ix[j] = te_imp_bidx(&os, &x[j]->shape, k);
        if (isint) {
            int64_t a = x[0]->i[ix[0]], b = n_in > 1 ? x[1]->i[ix[1]] : 0, d = n_in > 2 ? x[2]->i[ix[2]] : 0;
            if (ew_i(code, a, b, d, &iv[k])) {
                free(iv);
                return te_imp_bad(I, n, TE_EINVAL, "integer division by zero in a constant");
            }
        } else {
            double a = te_imp_cget(x[0], ix[0]), b = n_in > 1 ? te_imp_cget(x[1], ix[1]) : 0,
                   d = n_in > 2 ? te_imp_cget(x[2], ix[2]) : 0;
            double r = ew_f(code, a, b, d);
            if (iv)
                iv[k] = te_imp_d2i(r);
            else
                f[k] = (float)r;
        }
    }
    return te_imp_new_const(I, te_imp_out_name(n), &os, f, iv);
}

te_status te_imp_op_range(imp *I, onode *n)
{
    ival *a, *l, *d;
    te_status st;
    if ((st = te_imp_in_const(I, n, 0, 1, &a, "start")) || (st = te_imp_in_const(I, n, 1, 1, &l, "limit")) ||
        (st = te_imp_in_const(I, n, 2, 1, &d, "delta")))
        return st;
    double s0 = te_imp_cget(a, 0), s1 = te_imp_cget(l, 0), dd = te_imp_cget(d, 0);
    if (dd == 0)
        return te_imp_bad(I, n, TE_EINVAL, "delta 0");
    double c = ceil((s1 - s0) / dd);
    int64_t cnt = c > 0 ? (int64_t)c : 0;
    if (cnt < 1 || cnt > MAX_NUMEL)
        return te_imp_bad(I, n, TE_ESHAPE, "range of %lld elements", (long long)cnt);
    te_shape os = {.ndim = 1, .d = {cnt}};
    int isint = a->is_int && l->is_int && d->is_int;
    float *f = isint ? NULL : malloc((size_t)cnt * sizeof *f);
    int64_t *iv = isint ? malloc((size_t)cnt * sizeof *iv) : NULL;
    if (!f && !iv)
        return te_imp_nomem(I);
    for (int64_t k = 0; k < cnt; k++) {
        if (iv)
            iv[k] = a->i[0] + k * d->i[0];
        else
            f[k] = (float)(s0 + (double)k * dd);
    }
    return te_imp_new_const(I, te_imp_out_name(n), &os, f, iv);
}

te_status te_imp_op_size(imp *I, onode *n)
{
    ival *x;
    te_status st;
    if ((st = te_imp_in_req(I, n, 0, &x)) || (st = fixed_dims(I, n, x, 0, TE_MAX_DIMS)))
        return st;
    int64_t *iv = malloc(sizeof *iv);
    if (!iv)
        return te_imp_nomem(I);
    iv[0] = te_imp_numel(&x->shape);
    te_shape s0 = {0};
    return te_imp_new_const(I, te_imp_out_name(n), &s0, NULL, iv);
}
