/* ONNX import: reductions and normalisation (Softmax, LRN, LpNormalization,
 * Reduce*, LayerNormalization). */
#include "onnx_internal.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

te_status te_imp_op_softmax(imp *I, onode *n)
{
    ival *x;
    te_status st;
    if ((st = te_imp_rt_input(I, n, &x)))
        return st;
    int r = x->shape.ndim;
    int64_t axis = te_imp_attr_i(n, "axis", I->opset >= 13 ? -1 : 1);
    if (te_imp_norm_axis(&axis, r))
        return te_imp_bad(I, n, TE_EINVAL, "axis %lld out of range", (long long)axis);
    te_node t;
    te_imp_node_init(&t, TE_OP_SOFTMAX, te_imp_nname(n));
    if (I->opset >= 13 || axis == r - 1) {
        t.axis = axis;
        return te_imp_emit1(I, &t, x->id, te_imp_out_name(n), &x->shape, NULL);
    }
    /* opset < 13: softmax over the flattened [d0*..*d(axis-1), rest] view */
    te_shape s2 = {.ndim = 2, .d = {1, 1}};
    for (int j = 0; j < r; j++)
        s2.d[j < axis ? 0 : 1] *= x->shape.d[j];
    char nm[300];
    ival *a, *b;
    te_node rs;
    snprintf(nm, sizeof nm, "%s/flat", te_imp_nname(n));
    te_imp_node_init(&rs, TE_OP_RESHAPE, nm);
    if ((st = te_imp_emit1(I, &rs, x->id, nm, &s2, &a)))
        return st;
    snprintf(nm, sizeof nm, "%s/2d", te_imp_nname(n));
    t.axis = 1;
    if ((st = te_imp_emit1(I, &t, a->id, nm, &s2, &b)))
        return st;
    snprintf(nm, sizeof nm, "%s/unflat", te_imp_nname(n));
    te_imp_node_init(&rs, TE_OP_RESHAPE, nm);
    return te_imp_emit1(I, &rs, b->id, te_imp_out_name(n), &x->shape, NULL);
}

te_status te_imp_op_lrn(imp *I, onode *n)
{
    ival *x;
    te_status st;
    if ((st = te_imp_rt_input(I, n, &x)))
        return st;
    if (x->shape.ndim < 2)
        return te_imp_bad(I, n, TE_ESHAPE, "input must have a channel axis");
    te_node t;
    te_imp_node_init(&t, TE_OP_LRN, te_imp_nname(n));
    t.size = te_imp_attr_i(n, "size", 0);
    if (t.size < 1)
        return te_imp_bad(I, n, TE_EINVAL, "size must be >= 1");
    t.alpha = te_imp_attr_f(n, "alpha", 1e-4f);
    t.beta = te_imp_attr_f(n, "beta", 0.75f);
    t.bias = te_imp_attr_f(n, "bias", 1.0f);
    return te_imp_emit1(I, &t, x->id, te_imp_out_name(n), &x->shape, NULL);
}

te_status te_imp_op_lpnorm(imp *I, onode *n)
{
    ival *x;
    te_status st;
    if ((st = te_imp_rt_input(I, n, &x)))
        return st;
    te_node t;
    te_imp_node_init(&t, TE_OP_LPNORM, te_imp_nname(n));
    t.axis = te_imp_attr_i(n, "axis", -1);
    t.p = te_imp_attr_i(n, "p", 2);
    if (te_imp_norm_axis(&t.axis, x->shape.ndim))
        return te_imp_bad(I, n, TE_EINVAL, "axis out of range");
    if (t.p != 1 && t.p != 2)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "p must be 1 or 2");
    return te_imp_emit1(I, &t, x->id, te_imp_out_name(n), &x->shape, NULL);
}

te_status te_imp_op_reduce(imp *I, onode *n, int op)
{
    ival *x;
    int64_t axes[TE_MAX_DIMS];
    int na;
    te_status st;
    if ((st = te_imp_in_req(I, n, 0, &x)) || (st = te_imp_get_axes(I, n, 1, axes, &na)))
        return st;
    int r = x->shape.ndim;
    int keep = (int)te_imp_attr_i(n, "keepdims", 1);
    if (na <= 0) {
        if (te_imp_attr_i(n, "noop_with_empty_axes", 0))
            return te_imp_reshape_to(I, n, x, &x->shape);
        na = r;
        for (int j = 0; j < r; j++)
            axes[j] = j;
    }
    int mark[TE_MAX_DIMS] = {0};
    for (int j = 0; j < na; j++) {
        if (te_imp_norm_axis(&axes[j], r) || mark[axes[j]])
            return te_imp_bad(I, n, TE_EINVAL, "bad or repeated axis");
        mark[axes[j]] = 1;
    }
    int64_t sorted[TE_MAX_DIMS];
    int ns = 0;
    te_shape os = {0};
    for (int j = 0; j < r; j++) {
        if (mark[j])
            sorted[ns++] = j;
        if (!mark[j])
            os.d[os.ndim++] = x->shape.d[j];
        else if (keep)
            os.d[os.ndim++] = 1;
    }
    if (x->is_const)
        return te_imp_fold_reduce(I, n, op, x, mark, &os);
    te_node t;
    te_imp_node_init(&t, (te_op)op, te_imp_nname(n));
    t.ints = sorted;
    t.n_ints = ns;
    t.keepdims = keep;
    return te_imp_emit1(I, &t, x->id, te_imp_out_name(n), &os, NULL);
}

te_status te_imp_op_layer_norm(imp *I, onode *n)
{
    ival *x, *sc, *bi;
    te_status st;
    if ((st = te_imp_rt_input(I, n, &x)) || (st = te_imp_only_first_output(I, n)) ||
        (st = te_imp_in_const(I, n, 1, 1, &sc, "scale")) || (st = te_imp_in_const(I, n, 2, 0, &bi, "bias")))
        return st;
    int64_t axis = te_imp_attr_i(n, "axis", -1);
    if (te_imp_norm_axis(&axis, x->shape.ndim))
        return te_imp_bad(I, n, TE_EINVAL, "axis out of range");
    te_shape ns = {.ndim = x->shape.ndim - (int)axis};
    memcpy(ns.d, x->shape.d + axis, (size_t)ns.ndim * sizeof ns.d[0]);
    int64_t inner = te_imp_numel(&ns);
    int ids[3] = {x->id, -1, -1};
    ival *cs[2] = {sc, bi};
    for (int k = 0; k < 2; k++) {
        if (!cs[k])
            continue;
        te_shape o;
        if (te_imp_bcast(&ns, &cs[k]->shape, &o) || te_imp_numel(&o) != inner)
            return te_imp_bad(I, n, TE_ESHAPE, "%s does not broadcast to the normalised shape", k ? "bias" : "scale");
        float *f = malloc((size_t)inner * sizeof *f); /* expanded to the normalised shape */
        if (!f)
            return te_imp_nomem(I);
        for (int64_t q = 0; q < inner; q++)
            f[q] = (float)te_imp_cget(cs[k], te_imp_bidx(&ns, &cs[k]->shape, q));
        char nm[300];
        snprintf(nm, sizeof nm, "%s/%s", te_imp_nname(n), k ? "bias" : "scale");
        if ((ids[k + 1] = te_model_add_value(I->m, nm, &ns, f)) < 0) {
            free(f);
            return te_imp_nomem(I);
        }
    }
    te_node t;
    te_imp_node_init(&t, TE_OP_LAYER_NORM, te_imp_nname(n));
    t.axis = axis;
    t.alpha = te_imp_attr_f(n, "epsilon", 1e-5f);
    return te_imp_emit(I, &t, ids, bi ? 3 : 2, te_imp_out_name(n), &x->shape, NULL);
}

static te_status emit_topk(imp *I, onode *n, const ival *x, int64_t axis, const int64_t *kls, int want,
                           const te_shape *os)
{
    char nm[300];
    snprintf(nm, sizeof nm, want ? "%s/indices" : "%s", te_imp_nname(n));
    int64_t ints[4] = {kls[0], kls[1], kls[2], want};
    te_node t;
    te_imp_node_init(&t, TE_OP_TOPK, nm);
    t.axis = axis;
    t.ints = ints;
    t.n_ints = 4;
    return te_imp_emit1(I, &t, x->id, n->output[want], os, NULL);
}

/* TopK: k from the attribute (< 10) or a constant input (10+), largest and
 * sorted attributes (11+).  One device node per output used: the values and
 * the indices are computed apart (each is one sort per slice). */
te_status te_imp_op_topk(imp *I, onode *n)
{
    ival *x, *kv = NULL;
    te_status st;
    if ((st = te_imp_rt_input(I, n, &x)))
        return st;
    int64_t k;
    if (I->opset < 10) {
        if (!te_imp_attr(n, "k"))
            return te_imp_bad(I, n, TE_EFORMAT, "attribute k is missing");
        k = te_imp_attr_i(n, "k", 0);
    } else {
        if ((st = te_imp_in_const(I, n, 1, 1, &kv, "K")))
            return st;
        if (te_imp_numel(&kv->shape) != 1)
            return te_imp_bad(I, n, TE_EINVAL, "K has %lld elements (one needed)",
                              (long long)te_imp_numel(&kv->shape));
        k = te_imp_cget_i(kv, 0);
    }
    int64_t axis = te_imp_attr_i(n, "axis", -1);
    if (te_imp_norm_axis(&axis, x->shape.ndim))
        return te_imp_bad(I, n, TE_EINVAL, "axis %lld out of range", (long long)axis);
    int64_t L = x->shape.d[axis];
    if (k < 1 || k > L)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "k %lld: axis %lld has %lld elements (k in 1..%lld supported)",
                          (long long)k, (long long)axis, (long long)L, (long long)L);
    if (L > ((int64_t)1 << 24))
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "an axis of %lld elements: indices above 2^24 are not exact in "
                          "float32", (long long)L);
    int64_t kls[3] = {k, te_imp_attr_i(n, "largest", 1) != 0, te_imp_attr_i(n, "sorted", 1) != 0};
    te_shape os = x->shape;
    os.d[axis] = k;
    int used[2] = {0, 0};
    for (int w = 0; w < 2 && w < (int)n->n_output; w++)
        used[w] = n->output[w][0] && te_imp_use_count(I, n->output[w]) > 0;
    if (!used[0] && !used[1])
        used[0] = 1; /* a dead node: its values, as any other op's output */
    for (int w = 0; w < 2; w++)
        if (used[w] && (st = emit_topk(I, n, x, axis, kls, w, &os)))
            return st;
    return TE_OK;
}

/* NonMaxSuppression (10+): boxes and scores may be activations or
 * constants (anchors); max_output_boxes_per_class, iou_threshold and
 * score_threshold must be constants.  The output, [num_selected, 3], has a
 * data-dependent length: the device value is sized for the most boxes
 * (B * C * min(max, N)) and the executor records how many rows a run
 * selected.  Which nodes may read it (an exporter's gathering of the kept
 * boxes) te_model_dyn decides (core/te_dyn.h). */
te_status te_imp_op_nms(imp *I, onode *n)
{
    ival *b, *s, *mx = NULL, *iou = NULL, *thr = NULL;
    te_status st;
    if ((st = te_imp_in_req(I, n, 0, &b)) || (st = te_imp_in_req(I, n, 1, &s)) ||
        (st = te_imp_in_const(I, n, 2, 0, &mx, "max_output_boxes_per_class")) ||
        (st = te_imp_in_const(I, n, 3, 0, &iou, "iou_threshold")) ||
        (st = te_imp_in_const(I, n, 4, 0, &thr, "score_threshold")))
        return st;
    if (b->is_const && s->is_const)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "boxes and scores are both constants");
    if (b->shape.ndim != 3 || b->shape.d[2] != 4 || s->shape.ndim != 3 || s->shape.d[0] != b->shape.d[0] ||
        s->shape.d[2] != b->shape.d[1])
        return te_imp_bad(I, n, TE_ESHAPE, "boxes must be [B, N, 4] and scores [B, C, N]");
    const char *oname = te_imp_out_name(n);
    int64_t max_out = mx && te_imp_numel(&mx->shape) ? te_imp_cget_i(mx, 0) : 0;
    int64_t center = te_imp_attr_i(n, "center_point_box", 0);
    if (max_out < 0 || (center != 0 && center != 1))
        return te_imp_bad(I, n, TE_EINVAL, "max_output_boxes_per_class %lld or center_point_box %lld out of range",
                          (long long)max_out, (long long)center);
    int64_t N = b->shape.d[1], per = max_out < N ? max_out : N;
    te_shape os = {.ndim = 2, .d = {b->shape.d[0] * s->shape.d[1] * per, 3}};
    if (os.d[0] < 1)
        os.d[0] = 1; /* room for none: a run selects no rows */
    int64_t ints[3] = {max_out, center, thr && te_imp_numel(&thr->shape) > 0};
    te_node t;
    te_imp_node_init(&t, TE_OP_NMS, te_imp_nname(n));
    t.ints = ints;
    t.n_ints = 3;
    t.alpha = iou && te_imp_numel(&iou->shape) ? (float)te_imp_cget(iou, 0) : 0.0f;
    t.beta = ints[2] ? (float)te_imp_cget(thr, 0) : 0.0f;
    int ids[2];
    if ((st = te_imp_rt_id(I, b, &ids[0])) || (st = te_imp_rt_id(I, s, &ids[1])))
        return st;
    return te_imp_emit(I, &t, ids, 2, oname, &os, NULL);
}

/* RoiAlign (10+; coordinate_transformation_mode from 16, output_half_pixel
 * before): the rois and batch indices may be activations or constants. */
te_status te_imp_op_roi_align(imp *I, onode *n)
{
    ival *x, *rois, *bi;
    te_status st;
    if ((st = te_imp_rt_input(I, n, &x)) || (st = te_imp_in_req(I, n, 1, &rois)) ||
        (st = te_imp_in_req(I, n, 2, &bi)))
        return st;
    if (x->shape.ndim != 4 || rois->shape.ndim != 2 || rois->shape.d[1] != 4 ||
        te_imp_numel(&bi->shape) != rois->shape.d[0] || bi->shape.ndim != 1)
        return te_imp_bad(I, n, TE_ESHAPE, "X must be [N, C, H, W], rois [R, 4] and batch_indices [R]");
    int max_mode;
    if (te_imp_attr_s_is(n, "mode", "avg", "avg"))
        max_mode = 0;
    else if (te_imp_attr_s_is(n, "mode", "avg", "max"))
        max_mode = 1;
    else
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "mode must be avg or max");
    int half_pixel;
    const char *def = I->opset >= 16 ? "half_pixel" : "output_half_pixel";
    if (te_imp_attr_s_is(n, "coordinate_transformation_mode", def, "half_pixel"))
        half_pixel = 1;
    else if (te_imp_attr_s_is(n, "coordinate_transformation_mode", def, "output_half_pixel"))
        half_pixel = 0;
    else
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "coordinate_transformation_mode must be half_pixel or "
                          "output_half_pixel");
    int64_t oh = te_imp_attr_i(n, "output_height", 1), ow = te_imp_attr_i(n, "output_width", 1);
    int64_t sr = te_imp_attr_i(n, "sampling_ratio", 0);
    if (oh < 1 || ow < 1 || oh > GEOM_MAX || ow > GEOM_MAX || sr < 0 || sr > GEOM_MAX)
        return te_imp_bad(I, n, TE_EINVAL, "output_height %lld, output_width %lld or sampling_ratio %lld out of "
                          "range", (long long)oh, (long long)ow, (long long)sr);
    int64_t ints[5] = {max_mode, oh, ow, sr, half_pixel};
    te_node t;
    te_imp_node_init(&t, TE_OP_ROI_ALIGN, te_imp_nname(n));
    t.ints = ints;
    t.n_ints = 5;
    t.alpha = te_imp_attr_f(n, "spatial_scale", 1.0f);
    te_shape os = {.ndim = 4, .d = {rois->shape.d[0], x->shape.d[1], oh, ow}};
    int ids[3] = {x->id, 0, 0};
    if ((st = te_imp_rt_id(I, rois, &ids[1])) || (st = te_imp_rt_id(I, bi, &ids[2])))
        return st;
    return te_imp_emit(I, &t, ids, 3, te_imp_out_name(n), &os, NULL);
}
