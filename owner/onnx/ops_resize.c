/* ONNX import: Resize (opset 10+) and Upsample (7..9). */
#include "onnx_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct name_code {
    const char *name;
    int code;
} name_code;

static int lookup_code(const name_code *t, const char *s, int *code)
{
    for (; t->name; t++)
        if (strcmp(t->name, s) == 0) {
            *code = t->code;
            return 0;
        }
    return -1;
}

static const name_code coord_modes[] = {
    {"half_pixel", TE_COORD_HALF_PIXEL},
    {"asymmetric", TE_COORD_ASYMMETRIC},
    {"align_corners", TE_COORD_ALIGN_CORNERS},
    {"pytorch_half_pixel", TE_COORD_PYTORCH_HALF_PIXEL},
    {"tf_half_pixel_for_nn", TE_COORD_TF_HALF_PIXEL_FOR_NN},
    {"half_pixel_symmetric", TE_COORD_HALF_PIXEL_SYMMETRIC},
    {"tf_crop_and_resize", TE_COORD_TF_CROP_AND_RESIZE},
    {NULL, 0}};

static const name_code nearest_modes[] = {
    {"round_prefer_floor", TE_NEAREST_ROUND_PREFER_FLOOR},
    {"round_prefer_ceil", TE_NEAREST_ROUND_PREFER_CEIL},
    {"floor", TE_NEAREST_FLOOR},
    {"ceil", TE_NEAREST_CEIL},
    {NULL, 0}};

static const name_code resize_modes[] = {
    {"nearest", TE_RESIZE_NEAREST}, {"linear", TE_RESIZE_LINEAR}, {"bilinear", TE_RESIZE_LINEAR},
    {"cubic", TE_RESIZE_CUBIC},     {NULL, 0}};

static te_status str_attr_code(imp *I, onode *n, const char *aname, const char *def, const name_code *t, int *code)
{
    char buf[64];
    te_imp_attr_s_copy(n, aname, buf, sizeof buf);
    if (!te_imp_attr(n, aname))
        snprintf(buf, sizeof buf, "%s", def);
    if (lookup_code(t, buf, code))
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "%s '%s' is not supported", aname, buf);
    return TE_OK;
}

/* Emits TE_OP_RESIZE.  Per dim: the scale of the coordinate transform
 * (scales_in, else sizes/in) and the output size (sizes, else floor(in *
 * scale)); roi: starts then ends (tf_crop_and_resize), or NULL.  The
 * operator text multiplies the size by the roi span as well; onnxruntime
 * and ONNX's own shape inference do not (onnx/onnx#5783), and files are
 * made to run there, so neither does this. */
static te_status emit_resize(imp *I, onode *n, ival *x, const double *scales_in, const int64_t *sizes,
                             const double *roi, int mode, int coord, int nearest)
{
    int r = x->shape.ndim, nf = roi ? 3 * r : r;
    te_shape os = x->shape;
    float *sc = malloc((size_t)nf * sizeof *sc);
    if (!sc)
        return te_imp_nomem(I);
    for (int d = 0; d < r; d++) {
        double span = roi ? roi[r + d] - roi[d] : 1;
        double s = scales_in ? scales_in[d] : (double)sizes[d] / (double)x->shape.d[d];
        /* floor(in * scale), guarding against 0.5*2 = 0.99999 style float noise */
        int64_t o = sizes ? sizes[d] : (int64_t)floor((double)x->shape.d[d] * s + 1e-9);
        if (!(s > 0) || !isfinite(s) || !isfinite(span) || o < 1 || o > MAX_NUMEL) {
            free(sc);
            return te_imp_bad(I, n, TE_EINVAL, "scale %g for axis %d gives no output", s, d);
        }
        sc[d] = (float)s;
        if (roi) {
            sc[r + d] = (float)roi[d];
            sc[2 * r + d] = (float)roi[r + d];
        }
        os.d[d] = o;
    }
    if (te_imp_numel(&os) > MAX_NUMEL) {
        free(sc);
        return te_imp_bad(I, n, TE_ESHAPE, "output too large");
    }
    if (x->is_const) {
        free(sc);
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "resizing a constant is not supported");
    }
    char nm[300];
    snprintf(nm, sizeof nm, "%s/scales", te_imp_nname(n));
    te_shape ss = {.ndim = 1, .d = {nf}};
    int ids[2] = {x->id, te_model_add_value(I->m, nm, &ss, sc)};
    if (ids[1] < 0) {
        free(sc);
        return te_imp_nomem(I);
    }
    te_node t;
    te_imp_node_init(&t, TE_OP_RESIZE, te_imp_nname(n));
    int64_t ints[4] = {mode, coord, nearest, te_imp_attr_i(n, "exclude_outside", 0) != 0};
    t.ints = ints;
    t.n_ints = mode == TE_RESIZE_CUBIC ? 4 : 3;
    t.alpha = te_imp_attr_f(n, "cubic_coeff_a", -0.75f);
    t.pad_value = te_imp_attr_f(n, "extrapolation_value", 0.0f);
    return te_imp_emit(I, &t, ids, 2, te_imp_out_name(n), &os, NULL);
}

te_status te_imp_op_upsample(imp *I, onode *n)
{
    ival *x, *sv = NULL;
    te_status st;
    if ((st = te_imp_rt_input(I, n, &x)))
        return st;
    int r = x->shape.ndim, mode = TE_RESIZE_NEAREST;
    double sc[TE_MAX_DIMS];
    if ((st = str_attr_code(I, n, "mode", "nearest", resize_modes, &mode)))
        return st;
    if (mode == TE_RESIZE_CUBIC)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "Upsample has no cubic mode");
    if (I->opset >= 9) {
        if ((st = te_imp_in_const(I, n, 1, 1, &sv, "scales")))
            return st;
        if (te_imp_numel(&sv->shape) != r)
            return te_imp_bad(I, n, TE_EINVAL, "scales must have %d entries", r);
        for (int d = 0; d < r; d++)
            sc[d] = te_imp_cget(sv, d);
    } else {
        const Onnx__AttributeProto *a = te_imp_attr(n, "scales");
        if (!a || a->n_floats != (size_t)r)
            return te_imp_bad(I, n, TE_EINVAL, "the scales attribute must have %d entries", r);
        for (int d = 0; d < r; d++)
            sc[d] = a->floats[d];
    }
    /* Upsample: asymmetric coordinates, nearest rounds down */
    return emit_resize(I, n, x, sc, NULL, NULL, mode, TE_COORD_ASYMMETRIC, TE_NEAREST_FLOOR);
}

te_status te_imp_op_resize(imp *I, onode *n)
{
    ival *x, *sv = NULL, *zv = NULL;
    te_status st;
    if ((st = te_imp_rt_input(I, n, &x)))
        return st;
    int r = x->shape.ndim, mode = TE_RESIZE_NEAREST, coord = TE_COORD_ASYMMETRIC, nearest = TE_NEAREST_FLOOR;
    if ((st = str_attr_code(I, n, "mode", "nearest", resize_modes, &mode)))
        return st;
    ival *rv = NULL;
    if (I->opset == 10) {
        if ((st = te_imp_in_const(I, n, 1, 1, &sv, "scales")))
            return st;
    } else {
        if ((st = str_attr_code(I, n, "coordinate_transformation_mode", "half_pixel", coord_modes, &coord)) ||
            (st = str_attr_code(I, n, "nearest_mode", "round_prefer_floor", nearest_modes, &nearest)))
            return st;
        if (te_imp_attr_i(n, "antialias", 0))
            return te_imp_bad(I, n, TE_EUNSUPPORTED, "antialias is not supported");
        if ((st = te_imp_in_const(I, n, 1, 0, &rv, "roi")) || (st = te_imp_in_const(I, n, 2, 0, &sv, "scales")) ||
            (st = te_imp_in_const(I, n, 3, 0, &zv, "sizes")))
            return st;
        if (sv && te_imp_numel(&sv->shape) == 0)
            sv = NULL;
        if (zv && te_imp_numel(&zv->shape) == 0)
            zv = NULL;
    }
    if (!sv && !zv)
        return te_imp_bad(I, n, TE_EINVAL, "neither scales nor sizes are given");
    int64_t axes[TE_MAX_DIMS];
    int na;
    if ((st = te_imp_attr_ints(I, n, "axes", axes, TE_MAX_DIMS, &na)))
        return st;
    if (na < 0) {
        na = r;
        for (int d = 0; d < r; d++)
            axes[d] = d;
    }
    for (int j = 0; j < na; j++)
        if (te_imp_norm_axis(&axes[j], r))
            return te_imp_bad(I, n, TE_EINVAL, "axis out of range");
    ival *given = zv ? zv : sv;
    if (te_imp_numel(&given->shape) != na)
        return te_imp_bad(I, n, TE_EINVAL, "%s must have %d entries", zv ? "sizes" : "scales", na);
    double sc[TE_MAX_DIMS], roi[2 * TE_MAX_DIMS];
    int64_t sz[TE_MAX_DIMS];
    for (int d = 0; d < r; d++) {
        sc[d] = 1;
        sz[d] = x->shape.d[d];
        roi[d] = 0;
        roi[r + d] = 1;
    }
    int crop = coord == TE_COORD_TF_CROP_AND_RESIZE;
    if (crop) { /* roi: starts then ends of the resized axes, normalised coordinates */
        if (!rv || te_imp_numel(&rv->shape) != 2 * na)
            return te_imp_bad(I, n, TE_EINVAL, "tf_crop_and_resize needs a constant roi of %d entries", 2 * na);
        for (int j = 0; j < na; j++) {
            roi[axes[j]] = te_imp_cget(rv, j);
            roi[r + axes[j]] = te_imp_cget(rv, na + j);
        }
    }
    if (zv) {
        char pol[32];
        te_imp_attr_s_copy(n, "keep_aspect_ratio_policy", pol, sizeof pol);
        int larger = strcmp(pol, "not_larger") == 0, smaller = strcmp(pol, "not_smaller") == 0;
        if (pol[0] && !larger && !smaller && strcmp(pol, "stretch") != 0)
            return te_imp_bad(I, n, TE_EUNSUPPORTED, "keep_aspect_ratio_policy '%s' is not supported", pol);
        if (!larger && !smaller) {
            for (int j = 0; j < na; j++)
                sz[axes[j]] = te_imp_cget_i(zv, j);
            return emit_resize(I, n, x, NULL, sz, crop ? roi : NULL, mode, coord, nearest);
        }
        /* one scale for every resized axis: the largest that fits (not_larger)
         * or the smallest that covers (not_smaller); sizes round to nearest */
        double s = larger ? INFINITY : 0;
        for (int j = 0; j < na; j++) {
            double q = (double)te_imp_cget_i(zv, j) / (double)x->shape.d[axes[j]];
            s = larger ? fmin(s, q) : fmax(s, q);
        }
        for (int j = 0; j < na; j++) {
            sc[axes[j]] = s;
            sz[axes[j]] = (int64_t)nearbyint(s * (double)x->shape.d[axes[j]]);
        }
        return emit_resize(I, n, x, sc, sz, crop ? roi : NULL, mode, coord, nearest);
    }
    for (int j = 0; j < na; j++)
        sc[axes[j]] = te_imp_cget(sv, j);
    return emit_resize(I, n, x, sc, NULL, crop ? roi : NULL, mode, coord, nearest);
}
