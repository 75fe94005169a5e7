/* ONNX import: shape ops (Reshape family, Transpose, Concat, Pad, Tile,
 * Slice, Split, Expand, DepthToSpace, Gather): folded on constants, device
 * nodes otherwise. */
#include "onnx_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

te_status te_imp_reshape_to(imp *I, onode *n, ival *x, const te_shape *ns)
{
    char a[128], b[128];
    if (te_imp_numel(ns) != te_imp_numel(&x->shape)) {
        te_imp_shape_str(&x->shape, a, sizeof a);
        te_imp_shape_str(ns, b, sizeof b);
        return te_imp_bad(I, n, TE_ESHAPE, "cannot reshape %s to %s", a, b);
    }
    if (x->is_const) {
        int64_t ne = te_imp_numel(ns);
        float *f = NULL;
        int64_t *iv = NULL;
        if (x->is_int) {
            iv = malloc((size_t)(ne ? ne : 1) * sizeof *iv);
            if (iv)
                memcpy(iv, x->i, (size_t)ne * sizeof *iv);
        } else {
            f = malloc((size_t)(ne ? ne : 1) * sizeof *f);
            if (f)
                memcpy(f, x->f, (size_t)ne * sizeof *f);
        }
        if (!f && !iv)
            return te_imp_nomem(I);
        return te_imp_new_const(I, te_imp_out_name(n), ns, f, iv);
    }
    te_node t;
    te_imp_node_init(&t, TE_OP_RESHAPE, te_imp_nname(n));
    return te_imp_emit1(I, &t, x->id, te_imp_out_name(n), ns, NULL);
}

te_status te_imp_op_reshape(imp *I, onode *n)
{
    ival *x, *sh;
    te_status st;
    if ((st = te_imp_in_req(I, n, 0, &x)) || (st = te_imp_in_const(I, n, 1, 1, &sh, "the shape")))
        return st;
    int64_t k = te_imp_numel(&sh->shape);
    if (sh->shape.ndim != 1 || k > TE_MAX_DIMS)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "shape input must be 1-D with at most %d entries", TE_MAX_DIMS);
    int allowzero = (int)te_imp_attr_i(n, "allowzero", 0);
    te_shape ns = {.ndim = (int)k};
    int neg = -1;
    int64_t known = 1;
    for (int j = 0; j < (int)k; j++) {
        int64_t d = te_imp_cget_i(sh, j);
        if (d == 0 && !allowzero) {
            if (j >= x->shape.ndim)
                return te_imp_bad(I, n, TE_ESHAPE, "shape entry %d is 0 but the input has rank %d", j, x->shape.ndim);
            d = x->shape.d[j];
        }
        if (d == -1) {
            if (neg >= 0)
                return te_imp_bad(I, n, TE_ESHAPE, "more than one -1 in the shape");
            neg = j;
            d = 1;
        } else if (d < 0 || d > MAX_NUMEL) {
            return te_imp_bad(I, n, TE_ESHAPE, "invalid shape entry %lld", (long long)d);
        }
        if (known > MAX_NUMEL)
            return te_imp_bad(I, n, TE_ESHAPE, "shape too large");
        ns.d[j] = d;
        known *= d;
    }
    if (neg >= 0) {
        if (known == 0 || te_imp_numel(&x->shape) % known)
            return te_imp_bad(I, n, TE_ESHAPE, "cannot infer the -1 dimension");
        ns.d[neg] = te_imp_numel(&x->shape) / known;
    }
    return te_imp_reshape_to(I, n, x, &ns);
}

te_status te_imp_op_flatten(imp *I, onode *n)
{
    ival *x;
    te_status st;
    if ((st = te_imp_in_req(I, n, 0, &x)))
        return st;
    int64_t axis = te_imp_attr_i(n, "axis", 1);
    int r = x->shape.ndim;
    if (axis < -r || axis > r)
        return te_imp_bad(I, n, TE_EINVAL, "axis %lld out of range", (long long)axis);
    if (axis < 0)
        axis += r;
    te_shape ns = {.ndim = 2, .d = {1, 1}};
    for (int j = 0; j < r; j++)
        ns.d[j < axis ? 0 : 1] *= x->shape.d[j];
    return te_imp_reshape_to(I, n, x, &ns);
}

te_status te_imp_op_squeeze(imp *I, onode *n, int unsq)
{
    ival *x;
    int64_t axes[TE_MAX_DIMS];
    int na;
    te_status st;
    if ((st = te_imp_in_req(I, n, 0, &x)) || (st = te_imp_get_axes(I, n, 1, axes, &na)))
        return st;
    const te_shape *s = &x->shape;
    te_shape ns = {0};
    if (unsq) {
        if (na <= 0)
            return te_imp_bad(I, n, TE_EINVAL, "Unsqueeze needs axes");
        int r = s->ndim + na;
        if (r > TE_MAX_DIMS)
            return te_imp_bad(I, n, TE_EUNSUPPORTED, "rank %d is too large", r);
        int mark[TE_MAX_DIMS] = {0};
        for (int j = 0; j < na; j++) {
            if (te_imp_norm_axis(&axes[j], r) || mark[axes[j]])
                return te_imp_bad(I, n, TE_EINVAL, "bad or repeated axis %lld", (long long)axes[j]);
            mark[axes[j]] = 1;
        }
        ns.ndim = r;
        for (int j = 0, src = 0; j < r; j++)
            ns.d[j] = mark[j] ? 1 : s->d[src++];
    } else {
        int mark[TE_MAX_DIMS] = {0};
        if (na < 0) {
            for (int j = 0; j < s->ndim; j++)
                mark[j] = s->d[j] == 1;
        }
        for (int j = 0; j < na; j++) {
            if (te_imp_norm_axis(&axes[j], s->ndim) || s->d[axes[j]] != 1)
                return te_imp_bad(I, n, TE_EINVAL, "cannot squeeze axis %lld", (long long)axes[j]);
            mark[axes[j]] = 1;
        }
        for (int j = 0; j < s->ndim; j++)
            if (!mark[j])
                ns.d[ns.ndim++] = s->d[j];
    }
    return te_imp_reshape_to(I, n, x, &ns);
}

te_status te_imp_op_identity(imp *I, onode *n)
{
    ival *x;
    te_status st;
    if ((st = te_imp_in_req(I, n, 0, &x)) || (st = te_imp_only_first_output(I, n)))
        return st;
    if (strcmp(n->op_type, "Dropout") == 0) {
        ival *tm; /* opset 12+: training_mode is input 2 */
        if ((st = te_imp_in_const(I, n, 2, 0, &tm, "training_mode")))
            return st;
        if (te_imp_attr_i(n, "training_mode", 0) || (tm && te_imp_numel(&tm->shape) >= 1 && te_imp_cget(tm, 0) != 0))
            return te_imp_bad(I, n, TE_EUNSUPPORTED, "training mode is not supported");
    }
    return te_imp_reshape_to(I, n, x, &x->shape);
}

static te_status transpose_shape(imp *I, onode *n, const te_shape *s, const int64_t *perm, te_shape *os)
{
    int seen[TE_MAX_DIMS] = {0};
    os->ndim = s->ndim;
    for (int j = 0; j < s->ndim; j++) {
        if (perm[j] < 0 || perm[j] >= s->ndim || seen[perm[j]])
            return te_imp_bad(I, n, TE_EINVAL, "invalid permutation");
        seen[perm[j]] = 1;
        os->d[j] = s->d[perm[j]];
    }
    return TE_OK;
}

te_status te_imp_emit_transpose(imp *I, onode *n, const char *tname, int in_id, const te_shape *s,
                                const int64_t *perm, const char *oname, ival **out)
{
    te_shape os;
    te_status st = transpose_shape(I, n, s, perm, &os);
    if (st)
        return st;
    te_node t;
    te_imp_node_init(&t, TE_OP_TRANSPOSE, tname);
    t.ints = (int64_t *)perm;
    t.n_ints = s->ndim;
    return te_imp_emit1(I, &t, in_id, oname, &os, out);
}

te_status te_imp_op_transpose(imp *I, onode *n)
{
    ival *x;
    te_status st;
    if ((st = te_imp_in_req(I, n, 0, &x)))
        return st;
    int r = x->shape.ndim;
    int64_t perm[TE_MAX_DIMS];
    int np;
    if ((st = te_imp_attr_ints(I, n, "perm", perm, TE_MAX_DIMS, &np)))
        return st;
    if (np < 0)
        for (int j = 0; j < r; j++)
            perm[j] = r - 1 - j;
    else if (np != r)
        return te_imp_bad(I, n, TE_EINVAL, "perm has %d entries for rank %d", np, r);
    if (!x->is_const)
        return te_imp_emit_transpose(I, n, te_imp_nname(n), x->id, &x->shape, perm, te_imp_out_name(n), NULL);
    te_shape os;
    if ((st = transpose_shape(I, n, &x->shape, perm, &os)))
        return st;
    int64_t ne = te_imp_numel(&os);
    float *f = x->is_int ? NULL : malloc((size_t)(ne ? ne : 1) * sizeof *f);
    int64_t *iv = x->is_int ? malloc((size_t)(ne ? ne : 1) * sizeof *iv) : NULL;
    if (!f && !iv)
        return te_imp_nomem(I);
    int64_t istr[TE_MAX_DIMS];
    int64_t acc = 1;
    for (int j = r - 1; j >= 0; j--) {
        istr[j] = acc;
        acc *= x->shape.d[j];
    }
    for (int64_t k = 0; k < ne; k++) {
        int64_t rem = k, src = 0;
        for (int j = r - 1; j >= 0; j--) {
            src += (rem % os.d[j]) * istr[perm[j]];
            rem /= os.d[j];
        }
        if (iv)
            iv[k] = x->i[src];
        else
            f[k] = x->f[src];
    }
    return te_imp_new_const(I, te_imp_out_name(n), &os, f, iv);
}

te_status te_imp_op_concat(imp *I, onode *n)
{
    if (n->n_input < 1)
        return te_imp_bad(I, n, TE_EFORMAT, "no inputs");
    ival **xs = calloc(n->n_input, sizeof *xs);
    int *ids = calloc(n->n_input, sizeof *ids);
    te_status st = TE_OK;
    if (!xs || !ids) {
        st = te_imp_nomem(I);
        goto out;
    }
    int all_const = 1, all_int = 1;
    for (size_t k = 0; k < n->n_input && st == TE_OK; k++) {
        st = te_imp_in_req(I, n, k, &xs[k]);
        if (st == TE_OK) {
            all_const &= xs[k]->is_const;
            all_int &= xs[k]->is_int;
        }
    }
    if (st)
        goto out;
    int r = xs[0]->shape.ndim;
    int64_t axis = te_imp_attr_i(n, "axis", 0);
    if (te_imp_norm_axis(&axis, r)) {
        st = te_imp_bad(I, n, TE_EINVAL, "axis out of range");
        goto out;
    }
    te_shape os = xs[0]->shape;
    os.d[axis] = 0;
    for (size_t k = 0; k < n->n_input; k++) {
        const te_shape *s = &xs[k]->shape;
        int ok = s->ndim == r;
        for (int j = 0; ok && j < r; j++)
            ok = j == axis || s->d[j] == os.d[j];
        if (!ok) {
            st = te_imp_bad(I, n, TE_ESHAPE, "input %zu has an incompatible shape", k);
            goto out;
        }
        os.d[axis] += s->d[axis];
    }
    if (all_const) {
        int64_t ne = te_imp_numel(&os), outer = 1, inner = 1;
        for (int j = 0; j < axis; j++)
            outer *= os.d[j];
        for (int j = (int)axis + 1; j < r; j++)
            inner *= os.d[j];
        float *f = all_int ? NULL : malloc((size_t)(ne ? ne : 1) * sizeof *f);
        int64_t *iv = all_int ? malloc((size_t)(ne ? ne : 1) * sizeof *iv) : NULL;
        if (!f && !iv) {
            st = te_imp_nomem(I);
            goto out;
        }
        int64_t q = 0;
        for (int64_t o = 0; o < outer; o++)
            for (size_t k = 0; k < n->n_input; k++) {
                int64_t len = xs[k]->shape.d[axis] * inner;
                for (int64_t j = 0; j < len; j++, q++) {
                    if (iv)
                        iv[q] = xs[k]->i[o * len + j];
                    else
                        f[q] = (float)te_imp_cget(xs[k], o * len + j);
                }
            }
        st = te_imp_new_const(I, te_imp_out_name(n), &os, f, iv);
        goto out;
    }
    for (size_t k = 0; k < n->n_input && st == TE_OK; k++)
        st = te_imp_rt_id(I, xs[k], &ids[k]);
    if (st == TE_OK) {
        te_node t;
        te_imp_node_init(&t, TE_OP_CONCAT, te_imp_nname(n));
        t.axis = axis;
        st = te_imp_emit(I, &t, ids, (int)n->n_input, te_imp_out_name(n), &os, NULL);
    }
out:
    free(xs);
    free(ids);
    return st;
}

te_status te_imp_op_pad(imp *I, onode *n)
{
    ival *x, *pi, *cv, *ax;
    te_status st;
    if ((st = te_imp_rt_input(I, n, &x)) || (st = te_imp_in_const(I, n, 1, 0, &pi, "pads")) ||
        (st = te_imp_in_const(I, n, 2, 0, &cv, "constant_value")) || (st = te_imp_in_const(I, n, 3, 0, &ax, "axes")))
        return st;
    int r = x->shape.ndim;
    int64_t raw[2 * TE_MAX_DIMS], pads[2 * TE_MAX_DIMS] = {0};
    int np;
    if (pi) {
        int64_t k = te_imp_numel(&pi->shape);
        if (k > 2 * TE_MAX_DIMS)
            return te_imp_bad(I, n, TE_EINVAL, "too many pads");
        np = (int)k;
        for (int j = 0; j < np; j++)
            raw[j] = te_imp_cget_i(pi, j);
    } else {
        if ((st = te_imp_attr_ints(I, n, "pads", raw, 2 * TE_MAX_DIMS, &np)))
            return st;
        if (np < 0)
            return te_imp_bad(I, n, TE_EINVAL, "pads are missing");
    }
    int64_t axes[TE_MAX_DIMS];
    int na = r;
    for (int j = 0; j < r; j++)
        axes[j] = j;
    if (ax) {
        na = (int)te_imp_numel(&ax->shape);
        if (na > r)
            return te_imp_bad(I, n, TE_EINVAL, "too many axes");
        for (int j = 0; j < na; j++) {
            axes[j] = te_imp_cget_i(ax, j);
            if (te_imp_norm_axis(&axes[j], r))
                return te_imp_bad(I, n, TE_EINVAL, "axis out of range");
        }
    }
    if (np != 2 * na)
        return te_imp_bad(I, n, TE_EINVAL, "expected %d pads, got %d", 2 * na, np);
    for (int j = 0; j < na; j++) {
        pads[axes[j]] = raw[j];
        pads[axes[j] + r] = raw[j + na];
    }
    te_node t;
    te_imp_node_init(&t, TE_OP_PAD, te_imp_nname(n));
    if (te_imp_attr_s_is(n, "mode", "constant", "constant"))
        t.pad_mode = TE_PAD_CONSTANT;
    else if (te_imp_attr_s_is(n, "mode", "constant", "reflect"))
        t.pad_mode = TE_PAD_REFLECT;
    else if (te_imp_attr_s_is(n, "mode", "constant", "edge"))
        t.pad_mode = TE_PAD_EDGE;
    else {
        char buf[64];
        te_imp_attr_s_copy(n, "mode", buf, sizeof buf);
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "pad mode '%s' is not supported", buf);
    }
    t.pad_value = te_imp_attr_f(n, "value", 0.0f);
    if (cv && te_imp_numel(&cv->shape) >= 1)
        t.pad_value = (float)te_imp_cget(cv, 0);
    te_shape os = x->shape;
    for (int j = 0; j < r; j++) {
        if (pads[j] < 0 || pads[j + r] < 0)
            return te_imp_bad(I, n, TE_EUNSUPPORTED, "negative pads (cropping) are not supported");
        if (pads[j] > GEOM_MAX || pads[j + r] > GEOM_MAX)
            return te_imp_bad(I, n, TE_EINVAL, "pads too large");
        if (t.pad_mode == TE_PAD_REFLECT && (pads[j] >= x->shape.d[j] || pads[j + r] >= x->shape.d[j]))
            return te_imp_bad(I, n, TE_EINVAL, "reflect pads must be smaller than the dimension");
        os.d[j] += pads[j] + pads[j + r];
    }
    t.ints = pads;
    t.n_ints = 2 * r;
    return te_imp_emit1(I, &t, x->id, te_imp_out_name(n), &os, NULL);
}

/* Tile: folded on constants; on an activation one Concat per repeated axis. */
te_status te_imp_op_tile(imp *I, onode *n)
{
    ival *x, *rp;
    te_status st;
    if ((st = te_imp_in_req(I, n, 0, &x)) || (st = te_imp_in_const(I, n, 1, 1, &rp, "repeats")))
        return st;
    int r = x->shape.ndim;
    if (te_imp_numel(&rp->shape) != r)
        return te_imp_bad(I, n, TE_EINVAL, "repeats must have %d entries", r);
    te_shape os = x->shape;
    for (int d = 0; d < r; d++) {
        int64_t k = te_imp_cget_i(rp, d);
        if (k < 1 || k > MAX_NUMEL || os.d[d] * k > MAX_NUMEL)
            return te_imp_bad(I, n, TE_EINVAL, "repeat %lld on axis %d", (long long)k, d);
        os.d[d] *= k;
    }
    if (te_imp_numel(&os) > MAX_NUMEL)
        return te_imp_bad(I, n, TE_ESHAPE, "output too large");
    if (x->is_const) {
        int64_t ne = te_imp_numel(&os);
        float *f = x->is_int ? NULL : malloc((size_t)ne * sizeof *f);
        int64_t *iv = x->is_int ? malloc((size_t)ne * sizeof *iv) : NULL;
        if (!f && !iv)
            return te_imp_nomem(I);
        for (int64_t q = 0; q < ne; q++) {
            int64_t rem = q, src = 0, str = 1;
            for (int d = r - 1; d >= 0; d--) {
                src += (rem % os.d[d]) % x->shape.d[d] * str;
                str *= x->shape.d[d];
                rem /= os.d[d];
            }
            if (iv)
                iv[q] = x->i[src];
            else
                f[q] = x->f[src];
        }
        return te_imp_new_const(I, te_imp_out_name(n), &os, f, iv);
    }
    ival *cur = x;
    int last = -1;
    for (int d = 0; d < r; d++)
        if (os.d[d] != x->shape.d[d])
            last = d;
    if (last < 0)
        return te_imp_reshape_to(I, n, x, &x->shape);
    for (int d = 0; d <= last; d++) {
        int64_t k = os.d[d] / x->shape.d[d];
        if (k == 1)
            continue;
        int *ids = malloc((size_t)k * sizeof *ids);
        if (!ids)
            return te_imp_nomem(I);
        for (int64_t j = 0; j < k; j++)
            ids[j] = cur->id;
        te_shape ns = cur->shape;
        ns.d[d] = os.d[d];
        char nm[300];
        snprintf(nm, sizeof nm, "%s/axis%d", te_imp_nname(n), d);
        te_node t;
        te_imp_node_init(&t, TE_OP_CONCAT, d == last ? te_imp_nname(n) : nm);
        t.axis = d;
        st = te_imp_emit(I, &t, ids, (int)k, d == last ? te_imp_out_name(n) : nm, &ns, &cur);
        free(ids);
        if (st)
            return st;
    }
    return TE_OK;
}

/* Output shape and per-dim start/step of a strided slice; ONNX clamping. */
static te_status slice_plan(imp *I, onode *n, const te_shape *s, int na, const int64_t *st0, const int64_t *en0,
                            const int64_t *ax0, const int64_t *sp0, int64_t *start, int64_t *step, te_shape *os)
{
    *os = *s;
    for (int d = 0; d < s->ndim; d++) {
        start[d] = 0;
        step[d] = 1;
    }
    int seen[TE_MAX_DIMS] = {0};
    for (int j = 0; j < na; j++) {
        int64_t ax = ax0 ? ax0[j] : j;
        if (te_imp_norm_axis(&ax, s->ndim) || seen[ax])
            return te_imp_bad(I, n, TE_EINVAL, "bad or repeated axis %lld", (long long)(ax0 ? ax0[j] : j));
        seen[ax] = 1;
        int64_t D = s->d[ax], b = st0[j], e = en0[j], t = sp0 ? sp0[j] : 1, cnt;
        if (t == 0)
            return te_imp_bad(I, n, TE_EINVAL, "step 0");
        t = t > D ? D : t < -D ? -D : t; /* a step of D or more reads one element: same result, no overflow */
        if (b < 0) /* from the end; what stays negative is clamped below */
            b += D;
        if (e < 0)
            e += D;
        if (t > 0) {
            b = b < 0 ? 0 : b > D ? D : b;
            e = e < 0 ? 0 : e > D ? D : e;
            cnt = e > b ? (e - b + t - 1) / t : 0;
        } else {
            b = b < 0 ? 0 : b > D - 1 ? D - 1 : b; /* [0, D-1] going down (the ONNX spec) */
            e = e < -1 ? -1 : e > D - 1 ? D - 1 : e;
            cnt = b > e ? (b - e + (-t) - 1) / (-t) : 0;
        }
        if (cnt < 1)
            return te_imp_bad(I, n, TE_ESHAPE, "the slice of axis %lld is empty", (long long)ax);
        start[ax] = b;
        step[ax] = t;
        os->d[ax] = cnt;
    }
    return TE_OK;
}

/* Gather a strided window of a constant (or emit TE_OP_SLICE), output named oname. */
static te_status emit_slice(imp *I, onode *n, const char *nodename, ival *x, const int64_t *start, const int64_t *step,
                            const te_shape *os, const char *oname)
{
    int r = x->shape.ndim;
    if (x->is_const) {
        int64_t ne = te_imp_numel(os), istr[TE_MAX_DIMS], acc = 1;
        for (int j = r - 1; j >= 0; j--) {
            istr[j] = acc;
            acc *= x->shape.d[j];
        }
        float *f = x->is_int ? NULL : malloc((size_t)(ne ? ne : 1) * sizeof *f);
        int64_t *iv = x->is_int ? malloc((size_t)(ne ? ne : 1) * sizeof *iv) : NULL;
        if (!f && !iv)
            return te_imp_nomem(I);
        for (int64_t k = 0; k < ne; k++) {
            int64_t rem = k, src = 0;
            for (int j = r - 1; j >= 0; j--) {
                src += (start[j] + (rem % os->d[j]) * step[j]) * istr[j];
                rem /= os->d[j];
            }
            if (iv)
                iv[k] = x->i[src];
            else
                f[k] = x->f[src];
        }
        return te_imp_new_const(I, oname, os, f, iv);
    }
    int same = 1;
    for (int j = 0; j < r; j++)
        same &= start[j] == 0 && step[j] == 1 && os->d[j] == x->shape.d[j];
    te_node t;
    te_imp_node_init(&t, same ? TE_OP_RESHAPE : TE_OP_SLICE, nodename);
    int64_t ints[2 * TE_MAX_DIMS];
    for (int j = 0; j < r && !same; j++) {
        ints[2 * j] = start[j];
        ints[2 * j + 1] = step[j];
    }
    t.ints = ints;
    t.n_ints = same ? 0 : 2 * r;
    (void)n;
    return te_imp_emit1(I, &t, x->id, oname, os, NULL);
}

/* A 1-D integer list from constant input k or attribute aname; count, -1 absent. */
static te_status ints_in_or_attr(imp *I, onode *n, size_t k, const char *aname, int64_t *out, int *count)
{
    ival *v = NULL;
    te_status st;
    *count = -1;
    if (I->opset >= 10 || !aname) {
        if ((st = te_imp_in_const(I, n, k, 0, &v, aname ? aname : "input")))
            return st;
    }
    if (v) {
        int64_t c = te_imp_numel(&v->shape);
        if (c > TE_MAX_DIMS)
            return te_imp_bad(I, n, TE_EINVAL, "too many entries in '%s'", v->name);
        for (int j = 0; j < (int)c; j++)
            out[j] = te_imp_cget_i(v, j);
        *count = (int)c;
        return TE_OK;
    }
    if (aname)
        return te_imp_attr_ints(I, n, aname, out, TE_MAX_DIMS, count);
    return TE_OK;
}

te_status te_imp_op_slice(imp *I, onode *n)
{
    ival *x;
    te_status st;
    int64_t b[TE_MAX_DIMS], e[TE_MAX_DIMS], ax[TE_MAX_DIMS], sp[TE_MAX_DIMS];
    int nb, ne, na, ns = -1;
    if ((st = te_imp_in_req(I, n, 0, &x)))
        return st;
    if (I->opset < 10) { /* starts, ends, axes as attributes */
        if ((st = te_imp_attr_ints(I, n, "starts", b, TE_MAX_DIMS, &nb)) ||
            (st = te_imp_attr_ints(I, n, "ends", e, TE_MAX_DIMS, &ne)) ||
            (st = te_imp_attr_ints(I, n, "axes", ax, TE_MAX_DIMS, &na)))
            return st;
    } else if ((st = ints_in_or_attr(I, n, 1, NULL, b, &nb)) || (st = ints_in_or_attr(I, n, 2, NULL, e, &ne)) ||
               (st = ints_in_or_attr(I, n, 3, NULL, ax, &na)) || (st = ints_in_or_attr(I, n, 4, NULL, sp, &ns))) {
        return st;
    }
    if (nb < 0 || ne != nb || (na >= 0 && na != nb) || (ns >= 0 && ns != nb))
        return te_imp_bad(I, n, TE_EINVAL, "starts, ends, axes and steps must have the same length");
    int64_t start[TE_MAX_DIMS], step[TE_MAX_DIMS];
    te_shape os;
    if ((st = slice_plan(I, n, &x->shape, nb, b, e, na >= 0 ? ax : NULL, ns >= 0 ? sp : NULL, start, step, &os)))
        return st;
    return emit_slice(I, n, te_imp_nname(n), x, start, step, &os, te_imp_out_name(n));
}

te_status te_imp_op_split(imp *I, onode *n)
{
    ival *x;
    te_status st;
    if ((st = te_imp_in_req(I, n, 0, &x)))
        return st;
    int64_t axis = te_imp_attr_i(n, "axis", 0);
    if (te_imp_norm_axis(&axis, x->shape.ndim))
        return te_imp_bad(I, n, TE_EINVAL, "axis out of range");
    int64_t parts[64];
    int np = -1, no = (int)n->n_output;
    if (no > 64)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "more than 64 outputs");
    if (I->opset >= 13) {
        ival *sv;
        if ((st = te_imp_in_const(I, n, 1, 0, &sv, "split")))
            return st;
        if (sv) {
            if (te_imp_numel(&sv->shape) != no)
                return te_imp_bad(I, n, TE_EINVAL, "split has %lld entries for %d outputs",
                                  (long long)te_imp_numel(&sv->shape), no);
            for (int k = 0; k < no; k++)
                parts[k] = te_imp_cget_i(sv, k);
            np = no;
        }
    } else {
        if ((st = te_imp_attr_ints(I, n, "split", parts, 64, &np)))
            return st;
        if (np >= 0 && np != no)
            return te_imp_bad(I, n, TE_EINVAL, "split has %d entries for %d outputs", np, no);
    }
    int64_t D = x->shape.d[axis];
    if (np < 0) { /* equal parts; opset 18 num_outputs: the last one may be smaller */
        int64_t each = (D + no - 1) / no;
        for (int k = 0; k < no; k++)
            parts[k] = k < no - 1 ? each : D - each * (no - 1);
    }
    int64_t off = 0;
    for (int k = 0; k < no; k++) {
        if (parts[k] < 1 || off + parts[k] > D)
            return te_imp_bad(I, n, TE_EINVAL, "split sizes do not add up to %lld", (long long)D);
        int64_t start[TE_MAX_DIMS] = {0}, step[TE_MAX_DIMS];
        te_shape os = x->shape;
        for (int j = 0; j < x->shape.ndim; j++)
            step[j] = 1;
        start[axis] = off;
        os.d[axis] = parts[k];
        off += parts[k];
        if (!n->output[k][0])
            continue;
        char nm[300];
        snprintf(nm, sizeof nm, "%s/%d", te_imp_nname(n), k);
        if ((st = emit_slice(I, n, nm, x, start, step, &os, n->output[k])))
            return st;
    }
    if (off != D)
        return te_imp_bad(I, n, TE_EINVAL, "split sizes add up to %lld, not %lld", (long long)off, (long long)D);
    return TE_OK;
}

te_status te_imp_op_expand(imp *I, onode *n)
{
    ival *x, *sh;
    te_status st;
    if ((st = te_imp_in_req(I, n, 0, &x)) || (st = te_imp_in_const(I, n, 1, 1, &sh, "the shape")))
        return st;
    int64_t k = te_imp_numel(&sh->shape);
    if (k > TE_MAX_DIMS)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "rank too large");
    te_shape ts = {.ndim = (int)k}, os;
    for (int j = 0; j < (int)k; j++)
        ts.d[j] = te_imp_cget_i(sh, j);
    if (te_imp_bcast(&x->shape, &ts, &os) || te_imp_numel(&os) < 1 || te_imp_numel(&os) > MAX_NUMEL)
        return te_imp_bad(I, n, TE_ESHAPE, "the shape does not broadcast with the input");
    if (x->is_const) {
        int64_t ne = te_imp_numel(&os);
        float *f = x->is_int ? NULL : malloc((size_t)ne * sizeof *f);
        int64_t *iv = x->is_int ? malloc((size_t)ne * sizeof *iv) : NULL;
        if (!f && !iv)
            return te_imp_nomem(I);
        for (int64_t q = 0; q < ne; q++) {
            int64_t src = te_imp_bidx(&os, &x->shape, q);
            if (iv)
                iv[q] = x->i[src];
            else
                f[q] = x->f[src];
        }
        return te_imp_new_const(I, te_imp_out_name(n), &os, f, iv);
    }
    if (te_imp_numel(&os) == te_imp_numel(&x->shape))
        return te_imp_reshape_to(I, n, x, &os);
    /* x + zeros(shape): the device's broadcasting Add does the expansion */
    float *z = calloc((size_t)te_imp_numel(&ts) > 0 ? (size_t)te_imp_numel(&ts) : 1, sizeof *z);
    if (!z)
        return te_imp_nomem(I);
    char nm[300];
    snprintf(nm, sizeof nm, "%s/zeros", te_imp_nname(n));
    int ids[2] = {x->id, te_model_add_value(I->m, nm, &ts, z)};
    if (ids[1] < 0) {
        free(z);
        return te_imp_nomem(I);
    }
    te_node t;
    te_imp_node_init(&t, TE_OP_ADD, te_imp_nname(n));
    return te_imp_emit(I, &t, ids, 2, te_imp_out_name(n), &os, NULL);
}

/* DepthToSpace (DCR, CRD) and SpaceToDepth: Reshape + Transpose + Reshape. */
te_status te_imp_op_depth_space(imp *I, onode *n, int to_space)
{
    ival *x, *a, *b;
    te_status st;
    if ((st = te_imp_rt_input(I, n, &x)) || (st = te_imp_need_4d(I, n, x)))
        return st;
    int64_t bs = te_imp_attr_i(n, "blocksize", 0), N = x->shape.d[0], C = x->shape.d[1], H = x->shape.d[2],
            W = x->shape.d[3];
    if (bs < 1 || bs > GEOM_MAX || (to_space ? C % (bs * bs) : (H % bs || W % bs)))
        return te_imp_bad(I, n, TE_EINVAL, "blocksize %lld does not divide the input", (long long)bs);
    int crd = to_space && te_imp_attr_s_is(n, "mode", "DCR", "CRD");
    if (to_space && !crd && !te_imp_attr_s_is(n, "mode", "DCR", "DCR"))
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "mode must be DCR or CRD");
    te_shape s6 = {.ndim = 6}, s6t, os;
    static const int64_t p_dcr[6] = {0, 3, 4, 1, 5, 2}, p_crd[6] = {0, 1, 4, 2, 5, 3}, p_s2d[6] = {0, 3, 5, 1, 2, 4};
    const int64_t *perm;
    if (to_space) {
        int64_t c2 = C / (bs * bs);
        te_shape d = crd ? (te_shape){6, {N, c2, bs, bs, H, W}} : (te_shape){6, {N, bs, bs, c2, H, W}};
        s6 = d;
        perm = crd ? p_crd : p_dcr;
        os = (te_shape){4, {N, c2, H * bs, W * bs}};
    } else {
        s6 = (te_shape){6, {N, C, H / bs, bs, W / bs, bs}};
        perm = p_s2d;
        os = (te_shape){4, {N, C * bs * bs, H / bs, W / bs}};
    }
    char nm[300];
    te_node t;
    snprintf(nm, sizeof nm, "%s/split", te_imp_nname(n));
    te_imp_node_init(&t, TE_OP_RESHAPE, nm);
    if ((st = te_imp_emit1(I, &t, x->id, nm, &s6, &a)))
        return st;
    snprintf(nm, sizeof nm, "%s/perm", te_imp_nname(n));
    if ((st = transpose_shape(I, n, &s6, perm, &s6t)) ||
        (st = te_imp_emit_transpose(I, n, nm, a->id, &s6, perm, nm, &b)))
        return st;
    te_imp_node_init(&t, TE_OP_RESHAPE, te_imp_nname(n));
    return te_imp_emit1(I, &t, b->id, te_imp_out_name(n), &os, NULL);
}

te_status te_imp_op_gather_any(imp *I, onode *n)
{
    ival *x, *ix;
    te_status st;
    if ((st = te_imp_in_req(I, n, 0, &x)) || (st = te_imp_in_req(I, n, 1, &ix)))
        return st;
    if (x->is_const && ix->is_const)
        return te_imp_op_gather(I, n);
    int64_t axis = te_imp_attr_i(n, "axis", 0);
    if (te_imp_norm_axis(&axis, x->shape.ndim))
        return te_imp_bad(I, n, TE_EINVAL, "axis out of range");
    if (x->shape.ndim - 1 + ix->shape.ndim > TE_MAX_DIMS)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "result rank too large");
    te_shape os = {0};
    for (int j = 0; j < axis; j++)
        os.d[os.ndim++] = x->shape.d[j];
    for (int j = 0; j < ix->shape.ndim; j++)
        os.d[os.ndim++] = ix->shape.d[j];
    for (int j = (int)axis + 1; j < x->shape.ndim; j++)
        os.d[os.ndim++] = x->shape.d[j];
    te_node t;
    te_imp_node_init(&t, TE_OP_GATHER, te_imp_nname(n));
    t.axis = axis;
    if (!ix->is_const) {
        /* indices computed on the device (NonMaxSuppression's selection):
         * each is checked against the axis when the node runs */
        int rt[2];
        if ((st = te_imp_rt_id(I, x, &rt[0])) || (st = te_imp_rt_id(I, ix, &rt[1])))
            return st;
        return te_imp_emit(I, &t, rt, 2, te_imp_out_name(n), &os, NULL);
    }
    int64_t ni = te_imp_numel(&ix->shape), dim = x->shape.d[axis];
    float *f = malloc((size_t)(ni ? ni : 1) * sizeof *f);
    if (!f)
        return te_imp_nomem(I);
    for (int64_t q = 0; q < ni; q++) {
        int64_t id = te_imp_cget_i(ix, q);
        if (id < 0)
            id += dim;
        if (id < 0 || id >= dim) {
            free(f);
            return te_imp_bad(I, n, TE_EINVAL, "index out of range");
        }
        f[q] = (float)id;
    }
    char nm[300];
    snprintf(nm, sizeof nm, "%s/indices", te_imp_nname(n));
    int ids[2] = {x->id, te_model_add_value(I->m, nm, &ix->shape, f)};
    if (ids[1] < 0) {
        free(f);
        return te_imp_nomem(I);
    }
    return te_imp_emit(I, &t, ids, 2, te_imp_out_name(n), &os, NULL);
}
