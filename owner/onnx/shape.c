/* ONNX import: shape helpers (element counts, axes, broadcasting). */
#include "onnx_internal.h"

#include <stdint.h>
#include <stdio.h>

void te_imp_shape_str(const te_shape *s, char *buf, size_t cap)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (int i = 0; i < s->ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? "," : "", (long long)s->d[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

int64_t te_imp_numel(const te_shape *s)
{
    return te_shape_numel(s);
}

int te_imp_norm_axis(int64_t *axis, int rank)
{
    if (*axis < -rank || *axis >= rank)
        return -1;
    if (*axis < 0)
        *axis += rank;
    return 0;
}

/* axes from input 1 if present, else the attribute; returns count or -1 absent. */
te_status te_imp_get_axes(imp *I, onode *n, size_t input, int64_t *axes, int *count)
{
    ival *a;
    te_status st = te_imp_in_const(I, n, input, 0, &a, "axes");
    if (st)
        return st;
    if (a) {
        int64_t k = te_imp_numel(&a->shape);
        if (k > TE_MAX_DIMS)
            return te_imp_bad(I, n, TE_EINVAL, "too many axes");
        for (int j = 0; j < (int)k; j++)
            axes[j] = te_imp_cget_i(a, j);
        *count = (int)k;
        return TE_OK;
    }
    return te_imp_attr_ints(I, n, "axes", axes, TE_MAX_DIMS, count);
}

te_status te_imp_bcast(const te_shape *a, const te_shape *b, te_shape *o)
{
    int r = a->ndim > b->ndim ? a->ndim : b->ndim;
    o->ndim = r;
    for (int j = 0; j < r; j++) {
        int ja = j - (r - a->ndim), jb = j - (r - b->ndim);
        int64_t da = ja >= 0 ? a->d[ja] : 1, db = jb >= 0 ? b->d[jb] : 1;
        if (da != db && da != 1 && db != 1)
            return TE_ESHAPE;
        o->d[j] = da == 1 ? db : da;
    }
    return TE_OK;
}

/* Flat index into a (broadcast to o) for flat output index k. */
int64_t te_imp_bidx(const te_shape *o, const te_shape *a, int64_t k)
{
    int64_t idx = 0, stride = 1;
    for (int j = o->ndim - 1; j >= 0; j--) {
        int64_t c = k % o->d[j];
        k /= o->d[j];
        int ja = j - (o->ndim - a->ndim);
        if (ja >= 0) {
            if (a->d[ja] != 1)
                idx += c * stride;
            stride *= a->d[ja];
        }
    }
    return idx;
}

te_status te_imp_need_4d(imp *I, onode *n, const ival *x)
{
    if (x->shape.ndim != 4) {
        char sb[128];
        te_imp_shape_str(&x->shape, sb, sizeof sb);
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "only 2-D (NCHW) inputs are supported, got %s", sb);
    }
    return TE_OK;
}
