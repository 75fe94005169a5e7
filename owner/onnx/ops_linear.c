/* ONNX import: linear layers (Conv, ConvTranspose, Gemm, MatMul, with
 * BatchNormalization folded in where exact) and pooling, which shares the
 * Conv geometry. */
#include "onnx_internal.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct geom2 {
    int64_t k[2], s[2], d[2], pads[4]; /* pads: top, left, bottom, right */
} geom2;

/* An optional geometry attribute of exactly `want` entries: into out when
 * present (out keeps its default when absent); another count is an error. */
static te_status geom_ints(imp *I, onode *n, const char *name, int want, const char *note, int64_t *out)
{
    int64_t tmp[8];
    int c;
    te_status st = te_imp_attr_ints(I, n, name, tmp, 8, &c);
    if (st || c < 0)
        return st;
    if (c != want)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "%s must have %d entries%s", name, want, note);
    memcpy(out, tmp, (size_t)want * sizeof *out);
    return TE_OK;
}

static te_status read_geom(imp *I, onode *n, const int64_t in_hw[2], int ceil_mode, geom2 *g, int64_t out_hw[2])
{
    te_status st;
    g->s[0] = g->s[1] = g->d[0] = g->d[1] = 1;
    memset(g->pads, 0, sizeof g->pads);
    if ((st = geom_ints(I, n, "strides", 2, " (2-D only)", g->s)) ||
        (st = geom_ints(I, n, "dilations", 2, " (2-D only)", g->d)) ||
        (st = geom_ints(I, n, "pads", 4, " (2-D only)", g->pads)))
        return st;
    for (int j = 0; j < 2; j++)
        if (g->s[j] < 1 || g->d[j] < 1 || g->k[j] < 1 || g->pads[j] < 0 || g->pads[j + 2] < 0 ||
            g->s[j] > GEOM_MAX || g->d[j] > GEOM_MAX || g->k[j] > GEOM_MAX || g->pads[j] > GEOM_MAX ||
            g->pads[j + 2] > GEOM_MAX)
            return te_imp_bad(I, n, TE_EINVAL, "invalid kernel, stride, dilation or pads");
    int upper = te_imp_attr_s_is(n, "auto_pad", "NOTSET", "SAME_UPPER");
    int lower = te_imp_attr_s_is(n, "auto_pad", "NOTSET", "SAME_LOWER");
    int valid = te_imp_attr_s_is(n, "auto_pad", "NOTSET", "VALID");
    if (!upper && !lower && !valid && !te_imp_attr_s_is(n, "auto_pad", "NOTSET", "NOTSET")) {
        char buf[64];
        te_imp_attr_s_copy(n, "auto_pad", buf, sizeof buf);
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "auto_pad '%s' is not supported", buf);
    }
    for (int j = 0; j < 2; j++) {
        int64_t eff = g->d[j] * (g->k[j] - 1) + 1;
        if (upper || lower) {
            int64_t o = (in_hw[j] + g->s[j] - 1) / g->s[j];
            int64_t total = (o - 1) * g->s[j] + eff - in_hw[j];
            if (total < 0)
                total = 0;
            int64_t small = total / 2;
            g->pads[j] = upper ? small : total - small;
            g->pads[j + 2] = total - g->pads[j];
            out_hw[j] = o;
            continue;
        }
        if (valid)
            g->pads[j] = g->pads[j + 2] = 0;
        int64_t num = in_hw[j] + g->pads[j] + g->pads[j + 2] - eff;
        if (num < 0)
            return te_imp_bad(I, n, TE_ESHAPE, "kernel larger than the padded input");
        int64_t o = ceil_mode ? (num + g->s[j] - 1) / g->s[j] + 1 : num / g->s[j] + 1;
        /* the last window must start inside the input or its begin padding */
        if (ceil_mode && (o - 1) * g->s[j] >= in_hw[j] + g->pads[j])
            o--;
        out_hw[j] = o;
    }
    return TE_OK;
}

static te_status add_linear(imp *I, onode *n, te_layer *L, int in_id, const char *oname, const te_shape *os,
                            ival **out)
{
    int li = te_model_add_layer(I->m, L);
    if (li < 0) {
        free(L->w_float);
        free(L->bias);
        return te_imp_nomem(I);
    }
    te_node t;
    te_imp_node_init(&t, TE_OP_LINEAR, L->name);
    t.layer = li;
    return te_imp_emit1(I, &t, in_id, oname, os, out);
}

static float *copy_floats(const float *src, int64_t n)
{
    float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
    if (f && n)
        memcpy(f, src, (size_t)n * sizeof *f);
    return f;
}

te_status te_imp_op_conv(imp *I, onode *n)
{
    ival *x, *w, *b;
    te_status st;
    if ((st = te_imp_rt_input(I, n, &x)) || (st = te_imp_in_const(I, n, 1, 1, &w, "the weight")) ||
        (st = te_imp_in_const(I, n, 2, 0, &b, "the bias")) || (st = te_imp_need_4d(I, n, x)))
        return st;
    if (w->is_int || w->shape.ndim != 4)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "weight must be a 4-D float tensor (2-D convolution)");
    int64_t group = te_imp_attr_i(n, "group", 1);
    int64_t C = x->shape.d[1], M = w->shape.d[0];
    if (group < 1 || C % group || M % group || w->shape.d[1] * group != C)
        return te_imp_bad(I, n, TE_ESHAPE, "channels (%lld in, %lld out, weight %lld per group) do not fit group %lld",
                   (long long)C, (long long)M, (long long)w->shape.d[1], (long long)group);
    geom2 g;
    g.k[0] = w->shape.d[2];
    g.k[1] = w->shape.d[3];
    int64_t ks[8];
    int c;
    if ((st = te_imp_attr_ints(I, n, "kernel_shape", ks, 8, &c)))
        return st;
    if (c >= 0 && (c != 2 || ks[0] != g.k[0] || ks[1] != g.k[1]))
        return te_imp_bad(I, n, TE_ESHAPE, "kernel_shape does not match the weight");
    int64_t out_hw[2];
    if ((st = read_geom(I, n, &x->shape.d[2], 0, &g, out_hw)))
        return st;
    if (b && (te_imp_numel(&b->shape) != M || b->is_int))
        return te_imp_bad(I, n, TE_ESHAPE, "bias must have %lld floats", (long long)M);
    te_layer L;
    memset(&L, 0, sizeof L);
    L.name = (char *)te_imp_nname(n);
    te_linear_geom *G = &L.geom;
    G->kind = TE_LIN_CONV;
    G->batch = x->shape.d[0];
    G->in_c = C;
    G->in_h = x->shape.d[2];
    G->in_w = x->shape.d[3];
    G->out_c = M;
    G->out_h = out_hw[0];
    G->out_w = out_hw[1];
    G->k_h = g.k[0];
    G->k_w = g.k[1];
    G->stride_h = g.s[0];
    G->stride_w = g.s[1];
    G->dil_h = g.d[0];
    G->dil_w = g.d[1];
    G->pad_t = g.pads[0];
    G->pad_l = g.pads[1];
    G->pad_b = g.pads[2];
    G->pad_r = g.pads[3];
    G->group = group;
    L.w_float = copy_floats(w->f, te_imp_numel(&w->shape));
    L.bias = b ? copy_floats(b->f, M) : NULL;
    if (!L.w_float || (b && !L.bias)) {
        free(L.w_float);
        free(L.bias);
        return te_imp_nomem(I);
    }
    te_shape os = {.ndim = 4, .d = {G->batch, M, out_hw[0], out_hw[1]}};
    return add_linear(I, n, &L, x->id, te_imp_out_name(n), &os, NULL);
}

te_status te_imp_op_pool(imp *I, onode *n, te_op op)
{
    ival *x;
    te_status st;
    if ((st = te_imp_rt_input(I, n, &x)) || (st = te_imp_need_4d(I, n, x)) || (st = te_imp_only_first_output(I, n)))
        return st;
    te_node t;
    te_imp_node_init(&t, op, te_imp_nname(n));
    te_shape os = x->shape;
    if (op == TE_OP_GLOBAL_AVGPOOL) {
        os.d[2] = os.d[3] = 1;
        return te_imp_emit1(I, &t, x->id, te_imp_out_name(n), &os, NULL);
    }
    geom2 g;
    int64_t ks[8];
    int c;
    if ((st = te_imp_attr_ints(I, n, "kernel_shape", ks, 8, &c)))
        return st;
    if (c != 2)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "kernel_shape must have 2 entries (2-D pooling)");
    g.k[0] = ks[0];
    g.k[1] = ks[1];
    if (op == TE_OP_MAXPOOL && te_imp_attr_i(n, "storage_order", 0) != 0)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "storage_order=1 is not supported");
    t.ceil_mode = (int)te_imp_attr_i(n, "ceil_mode", 0);
    int64_t out_hw[2];
    if ((st = read_geom(I, n, &x->shape.d[2], t.ceil_mode, &g, out_hw)))
        return st;
    if (op == TE_OP_AVGPOOL) {
        t.count_include_pad = (int)te_imp_attr_i(n, "count_include_pad", 0);
        if (g.d[0] != 1 || g.d[1] != 1)
            return te_imp_bad(I, n, TE_EUNSUPPORTED, "dilated average pooling is not supported");
    }
    for (int j = 0; j < 2; j++) {
        t.kernel[j] = g.k[j];
        t.stride[j] = g.s[j];
        t.dilation[j] = g.d[j];
    }
    memcpy(t.pads, g.pads, sizeof t.pads);
    os.d[2] = out_hw[0];
    os.d[3] = out_hw[1];
    return te_imp_emit1(I, &t, x->id, te_imp_out_name(n), &os, NULL);
}

te_status te_imp_op_gemm(imp *I, onode *n)
{
    ival *a, *b, *c;
    te_status st;
    if ((st = te_imp_in_req(I, n, 0, &a)) || (st = te_imp_in_req(I, n, 1, &b)) ||
        (st = te_imp_in_const(I, n, 2, 0, &c, "C")))
        return st;
    if (a->is_const || !b->is_const)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "only activation x constant-weight products are supported");
    if (a->shape.ndim != 2 || b->shape.ndim != 2 || b->is_int)
        return te_imp_bad(I, n, TE_ESHAPE, "A and B must be 2-D");
    float alpha = te_imp_attr_f(n, "alpha", 1.0f), beta = te_imp_attr_f(n, "beta", 1.0f);
    int ta = (int)te_imp_attr_i(n, "transA", 0), tb = (int)te_imp_attr_i(n, "transB", 0);
    int64_t M = ta ? a->shape.d[1] : a->shape.d[0], K = ta ? a->shape.d[0] : a->shape.d[1];
    int64_t KB = tb ? b->shape.d[1] : b->shape.d[0], N = tb ? b->shape.d[0] : b->shape.d[1];
    if (K != KB)
        return te_imp_bad(I, n, TE_ESHAPE, "inner dimensions differ (%lld vs %lld)", (long long)K, (long long)KB);
    float *bias = NULL;
    if (c) {
        const te_shape *cs = &c->shape;
        int64_t cn = te_imp_numel(cs);
        int ok = cn == 1 || (cs->ndim >= 1 && cs->d[cs->ndim - 1] == N && cn == N);
        if (!ok)
            return te_imp_bad(I, n, TE_EUNSUPPORTED, "C must be a scalar, [N] or [1,N] (N=%lld)", (long long)N);
        bias = malloc((size_t)N * sizeof *bias);
        if (!bias)
            return te_imp_nomem(I);
        for (int64_t o = 0; o < N; o++)
            bias[o] = (float)(beta * te_imp_cget(c, cn == 1 ? 0 : o));
    }
    float *w = malloc((size_t)(N * K) * sizeof *w);
    if (!w) {
        free(bias);
        return te_imp_nomem(I);
    }
    for (int64_t o = 0; o < N; o++)
        for (int64_t k = 0; k < K; k++)
            w[o * K + k] = alpha * b->f[tb ? o * K + k : k * N + o];
    int in_id = a->id;
    if (ta) {
        static const int64_t perm[2] = {1, 0};
        char tn[300];
        snprintf(tn, sizeof tn, "%s/transA", te_imp_nname(n));
        ival *tv;
        if ((st = te_imp_emit_transpose(I, n, tn, a->id, &a->shape, perm, tn, &tv))) {
            free(w);
            free(bias);
            return st;
        }
        in_id = tv->id;
    }
    te_layer L;
    memset(&L, 0, sizeof L);
    L.name = (char *)te_imp_nname(n);
    L.geom = (te_linear_geom){.kind = TE_LIN_FC, .batch = M, .in_c = K, .in_h = 1, .in_w = 1, .out_c = N,
                              .out_h = 1, .out_w = 1, .k_h = 1, .k_w = 1, .stride_h = 1, .stride_w = 1,
                              .dil_h = 1, .dil_w = 1, .group = 1};
    L.w_float = w;
    L.bias = bias;
    te_shape os = {.ndim = 2, .d = {M, N}};
    return add_linear(I, n, &L, in_id, te_imp_out_name(n), &os, NULL);
}

static te_status op_matmul(imp *I, onode *n)
{
    ival *a, *b;
    te_status st;
    if ((st = te_imp_in_req(I, n, 0, &a)) || (st = te_imp_in_req(I, n, 1, &b)))
        return st;
    int right = !a->is_const && b->is_const, left = a->is_const && !b->is_const;
    if (!right && !left)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "exactly one operand must be a constant");
    ival *wc = right ? b : a, *x = right ? a : b;
    if (wc->shape.ndim != 2 || wc->is_int)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "the constant operand must be a 2-D float matrix");
    te_layer L;
    memset(&L, 0, sizeof L);
    L.name = (char *)te_imp_nname(n);
    int64_t K, N, rows;
    const float *W = wc->f;
    float *w;
    te_shape os;
    int in_id = x->id;
    if (right) {
        /* x [..., K] . B [K, N] */
        K = wc->shape.d[0];
        N = wc->shape.d[1];
        if (x->shape.ndim < 1 || x->shape.d[x->shape.ndim - 1] != K)
            return te_imp_bad(I, n, TE_ESHAPE, "last dimension of A must be %lld", (long long)K);
        rows = te_imp_numel(&x->shape) / K;
        os = x->shape;
        os.d[os.ndim - 1] = N;
        w = malloc((size_t)(N * K) * sizeof *w);
        if (!w)
            return te_imp_nomem(I);
        for (int64_t o = 0; o < N; o++)
            for (int64_t k = 0; k < K; k++)
                w[o * K + k] = W[k * N + o];
    } else {
        /* A [M, K] . x [..., K, N] = transpose(x^T . A^T) */
        int r = x->shape.ndim;
        int64_t M = wc->shape.d[0];
        K = wc->shape.d[1];
        if (r < 2 || x->shape.d[r - 2] != K)
            return te_imp_bad(I, n, TE_ESHAPE, "B must be [..., %lld, N]", (long long)K);
        int64_t perm[TE_MAX_DIMS];
        for (int j = 0; j < r; j++)
            perm[j] = j;
        perm[r - 2] = r - 1;
        perm[r - 1] = r - 2;
        char tn[300];
        snprintf(tn, sizeof tn, "%s/transB", te_imp_nname(n));
        ival *tv;
        if ((st = te_imp_emit_transpose(I, n, tn, x->id, &x->shape, perm, tn, &tv)))
            return st;
        in_id = tv->id;
        rows = te_imp_numel(&x->shape) / K;
        N = M;
        os = tv->shape;
        os.d[r - 1] = M;
        w = copy_floats(W, M * K);
        if (!w)
            return te_imp_nomem(I);
    }
    L.geom = (te_linear_geom){.kind = TE_LIN_FC, .batch = rows, .in_c = K, .in_h = 1, .in_w = 1, .out_c = N,
                              .out_h = 1, .out_w = 1, .k_h = 1, .k_w = 1, .stride_h = 1, .stride_w = 1,
                              .dil_h = 1, .dil_w = 1, .group = 1};
    L.w_float = w;
    if (right)
        return add_linear(I, n, &L, in_id, te_imp_out_name(n), &os, NULL);
    char ln[300];
    snprintf(ln, sizeof ln, "%s/linear", te_imp_nname(n));
    ival *lv;
    if ((st = add_linear(I, n, &L, in_id, ln, &os, &lv)))
        return st;
    int r = os.ndim;
    int64_t perm[TE_MAX_DIMS];
    for (int j = 0; j < r; j++)
        perm[j] = j;
    perm[r - 2] = r - 1;
    perm[r - 1] = r - 2;
    return te_imp_emit_transpose(I, n, te_imp_nname(n), lv->id, &lv->shape, perm, te_imp_out_name(n), NULL);
}

te_status te_imp_op_batchnorm(imp *I, onode *n)
{
    ival *x, *p[4];
    static const char *what[4] = {"scale", "B", "mean", "var"};
    te_status st;
    if ((st = te_imp_rt_input(I, n, &x)) || (st = te_imp_only_first_output(I, n)))
        return st;
    if (te_imp_attr_i(n, "training_mode", 0))
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "training mode is not supported");
    if (I->opset < 9 && te_imp_attr_i(n, "spatial", 1) == 0) /* opsets 7, 8: per-element statistics */
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "spatial=0 (per-element statistics) is not supported");
    if (x->shape.ndim < 2)
        return te_imp_bad(I, n, TE_ESHAPE, "input must have a channel axis");
    int64_t C = x->shape.d[1];
    for (int k = 0; k < 4; k++) {
        if ((st = te_imp_in_const(I, n, (size_t)k + 1, 1, &p[k], what[k])))
            return st;
        if (te_imp_numel(&p[k]->shape) != C)
            return te_imp_bad(I, n, TE_ESHAPE, "%s must have %lld entries", what[k], (long long)C);
    }
    double eps = te_imp_attr_f(n, "epsilon", 1e-5f);
    double *sc = malloc((size_t)C * sizeof *sc), *sh = malloc((size_t)C * sizeof *sh);
    if (!sc || !sh) {
        free(sc);
        free(sh);
        return te_imp_nomem(I);
    }
    for (int64_t c = 0; c < C; c++) {
        double g = te_imp_cget(p[0], c), be = te_imp_cget(p[1], c), mu = te_imp_cget(p[2], c),
               var = te_imp_cget(p[3], c);
        sc[c] = g / sqrt(var + eps);
        sh[c] = be - mu * sc[c];
    }
    /* fold into the producing linear layer when the layer's output feeds only us */
    int pr = te_imp_producer(I, x->id);
    if (pr >= 0 && I->m->nodes[pr].op == TE_OP_LINEAR && te_imp_use_count(I, x->name) == 1) {
        te_layer *L = &I->m->layers[I->m->nodes[pr].layer];
        int chan_ok = L->geom.out_c == C &&
                      (L->geom.kind == TE_LIN_CONV ? x->shape.ndim == 4 : x->shape.ndim == 2);
        if (chan_ok) {
            if (!L->bias && !(L->bias = calloc((size_t)C, sizeof *L->bias))) {
                free(sc);
                free(sh);
                return te_imp_nomem(I);
            }
            int64_t per = te_geom_weight_len(&L->geom) / C;
            for (int64_t c = 0; c < C; c++) {
                for (int64_t k = 0; k < per; k++)
                    L->w_float[c * per + k] = (float)(L->w_float[c * per + k] * sc[c]);
                L->bias[c] = (float)((L->bias[c] - te_imp_cget(p[2], c)) * sc[c] + te_imp_cget(p[1], c));
            }
            free(sc);
            free(sh);
            return te_imp_alias(I, x, te_imp_out_name(n));
        }
    }
    /* keep it on the device: y = x * scale + shift with [C,1,...] constants */
    te_shape cs = {.ndim = x->shape.ndim - 1};
    cs.d[0] = C;
    for (int j = 1; j < cs.ndim; j++)
        cs.d[j] = 1;
    float *fs = malloc((size_t)C * sizeof *fs), *fb = malloc((size_t)C * sizeof *fb);
    if (!fs || !fb) {
        free(fs);
        free(fb);
        free(sc);
        free(sh);
        return te_imp_nomem(I);
    }
    for (int64_t c = 0; c < C; c++) {
        fs[c] = (float)sc[c];
        fb[c] = (float)sh[c];
    }
    free(sc);
    free(sh);
    char nm[300];
    int ids[2];
    snprintf(nm, sizeof nm, "%s/scale", te_imp_nname(n));
    ids[1] = te_model_add_value(I->m, nm, &cs, fs);
    if (ids[1] < 0) {
        free(fs);
        free(fb);
        return te_imp_nomem(I);
    }
    ids[0] = x->id;
    te_node t;
    te_imp_node_init(&t, TE_OP_MUL, nm);
    ival *mv;
    if ((st = te_imp_emit(I, &t, ids, 2, nm, &x->shape, &mv))) {
        free(fb);
        return st;
    }
    snprintf(nm, sizeof nm, "%s/shift", te_imp_nname(n));
    ids[1] = te_model_add_value(I->m, nm, &cs, fb);
    if (ids[1] < 0) {
        free(fb);
        return te_imp_nomem(I);
    }
    ids[0] = mv->id;
    te_imp_node_init(&t, TE_OP_ADD, te_imp_nname(n));
    return te_imp_emit(I, &t, ids, 2, te_imp_out_name(n), &x->shape, NULL);
}

/* ConvTranspose: zero insertion on the device, then an ordinary outsourced Conv. */
te_status te_imp_op_conv_transpose(imp *I, onode *n)
{
    ival *x, *w, *b;
    te_status st;
    if ((st = te_imp_rt_input(I, n, &x)) || (st = te_imp_in_const(I, n, 1, 1, &w, "the weight")) ||
        (st = te_imp_in_const(I, n, 2, 0, &b, "the bias")) || (st = te_imp_need_4d(I, n, x)))
        return st;
    if (w->is_int || w->shape.ndim != 4)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "weight must be a 4-D float tensor (2-D transposed convolution)");
    int64_t g = te_imp_attr_i(n, "group", 1), C = x->shape.d[1];
    if (g < 1 || w->shape.d[0] != C || C % g)
        return te_imp_bad(I, n, TE_ESHAPE, "weight [%lld,...] does not fit %lld input channels in %lld groups",
                   (long long)w->shape.d[0], (long long)C, (long long)g);
    int64_t Mg = w->shape.d[1], M = Mg * g, Cg = C / g, K[2] = {w->shape.d[2], w->shape.d[3]};
    int64_t s[2] = {1, 1}, d[2] = {1, 1}, pads[4] = {0}, op[2] = {0, 0}, oshape[2], tmp[8];
    int c;
    if ((st = te_imp_attr_ints(I, n, "kernel_shape", tmp, 8, &c)))
        return st;
    if (c >= 0 && (c != 2 || tmp[0] != K[0] || tmp[1] != K[1]))
        return te_imp_bad(I, n, TE_ESHAPE, "kernel_shape does not match the weight");
    if ((st = geom_ints(I, n, "strides", 2, "", s)) || (st = geom_ints(I, n, "dilations", 2, "", d)) ||
        (st = geom_ints(I, n, "output_padding", 2, "", op)) || (st = geom_ints(I, n, "pads", 4, "", pads)))
        return st;
    int have_os;
    if ((st = te_imp_attr_ints(I, n, "output_shape", tmp, 8, &have_os)))
        return st;
    if (have_os >= 0) {
        if (have_os != 2 && have_os != 4)
            return te_imp_bad(I, n, TE_EUNSUPPORTED, "output_shape must have 2 entries");
        oshape[0] = tmp[have_os - 2];
        oshape[1] = tmp[have_os - 1];
    }
    int upper = te_imp_attr_s_is(n, "auto_pad", "NOTSET", "SAME_UPPER"),
        lower = te_imp_attr_s_is(n, "auto_pad", "NOTSET", "SAME_LOWER");
    int valid = te_imp_attr_s_is(n, "auto_pad", "NOTSET", "VALID");
    if (!upper && !lower && !valid && !te_imp_attr_s_is(n, "auto_pad", "NOTSET", "NOTSET"))
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "this auto_pad is not supported");
    int64_t out[2];
    for (int j = 0; j < 2; j++) {
        if (s[j] < 1 || d[j] < 1 || K[j] < 1 || op[j] < 0 || s[j] > GEOM_MAX || d[j] > GEOM_MAX || K[j] > GEOM_MAX ||
            op[j] > GEOM_MAX || pads[j] < 0 || pads[j + 2] < 0 || pads[j] > GEOM_MAX || pads[j + 2] > GEOM_MAX)
            return te_imp_bad(I, n, TE_EINVAL, "invalid kernel, stride, dilation, output_padding or pads");
        int64_t full = s[j] * (x->shape.d[2 + j] - 1) + op[j] + d[j] * (K[j] - 1) + 1;
        if (have_os >= 0 || upper || lower) {
            int64_t want = have_os >= 0 ? oshape[j] : x->shape.d[2 + j] * s[j], total = full - want;
            if (total < 0)
                return te_imp_bad(I, n, TE_ESHAPE, "output_shape larger than the full transposed convolution");
            /* the odd pixel goes to the end for SAME_UPPER, to the start otherwise */
            pads[j] = upper ? total / 2 : total - total / 2;
            pads[j + 2] = total - pads[j];
        } else if (valid) {
            pads[j] = pads[j + 2] = 0;
        }
        out[j] = full - pads[j] - pads[j + 2];
        if (out[j] < 1)
            return te_imp_bad(I, n, TE_ESHAPE, "empty output");
    }
    if (b && (b->is_int || te_imp_numel(&b->shape) != M))
        return te_imp_bad(I, n, TE_ESHAPE, "bias must have %lld floats", (long long)M);
    /* spread: x[i] lands at d*(K-1) - pad_begin + i*s in a zero plane of out + d*(K-1) */
    int64_t span[2] = {out[0] + d[0] * (K[0] - 1), out[1] + d[1] * (K[1] - 1)};
    int64_t ints[4] = {s[0], s[1], d[0] * (K[0] - 1) - pads[0], d[1] * (K[1] - 1) - pads[1]};
    te_shape ss = {.ndim = 4, .d = {x->shape.d[0], C, span[0], span[1]}};
    if (te_imp_numel(&ss) > MAX_NUMEL)
        return te_imp_bad(I, n, TE_ESHAPE, "zero-inserted input too large");
    char nm[300];
    snprintf(nm, sizeof nm, "%s/spread", te_imp_nname(n));
    te_node t;
    te_imp_node_init(&t, TE_OP_SPREAD, nm);
    t.ints = ints;
    t.n_ints = 4;
    ival *sv;
    if ((st = te_imp_emit1(I, &t, x->id, nm, &ss, &sv)))
        return st;
    /* conv weight [M][C/g][kh][kw] = W[g*Cg + c][m][K-1-kh][K-1-kw] */
    float *wf = malloc((size_t)(M * Cg * K[0] * K[1]) * sizeof *wf);
    float *bias = b ? copy_floats(b->f, M) : NULL;
    if (!wf || (b && !bias)) {
        free(wf);
        free(bias);
        return te_imp_nomem(I);
    }
    for (int64_t gg = 0; gg < g; gg++)
        for (int64_t m = 0; m < Mg; m++)
            for (int64_t cc = 0; cc < Cg; cc++)
                for (int64_t kh = 0; kh < K[0]; kh++)
                    for (int64_t kw = 0; kw < K[1]; kw++)
                        wf[(((gg * Mg + m) * Cg + cc) * K[0] + kh) * K[1] + kw] =
                            w->f[(((gg * Cg + cc) * Mg + m) * K[0] + (K[0] - 1 - kh)) * K[1] + (K[1] - 1 - kw)];
    te_layer L;
    memset(&L, 0, sizeof L);
    L.name = (char *)te_imp_nname(n);
    L.geom = (te_linear_geom){.kind = TE_LIN_CONV, .batch = x->shape.d[0], .in_c = C, .in_h = span[0],
                              .in_w = span[1], .out_c = M, .out_h = out[0], .out_w = out[1], .k_h = K[0],
                              .k_w = K[1], .stride_h = 1, .stride_w = 1, .dil_h = d[0], .dil_w = d[1], .group = g};
    L.w_float = wf;
    L.bias = bias;
    te_shape os = {.ndim = 4, .d = {x->shape.d[0], M, out[0], out[1]}};
    return add_linear(I, n, &L, sv->id, te_imp_out_name(n), &os, NULL);
}

te_status te_imp_op_matmul_any(imp *I, onode *n)
{
    ival *a, *b;
    te_status st;
    if ((st = te_imp_in_req(I, n, 0, &a)) || (st = te_imp_in_req(I, n, 1, &b)))
        return st;
    if (a->is_const != b->is_const || (a->is_const && b->is_const))
        return a->is_const && b->is_const ? te_imp_bad(I, n, TE_EUNSUPPORTED, "a product of two constants")
                                          : op_matmul(I, n);
    /* two activations: on the device */
    const te_shape *sa = &a->shape, *sb = &b->shape;
    if (sa->ndim < 2 || sb->ndim < 2)
        return te_imp_bad(I, n, TE_EUNSUPPORTED, "1-D operands of an activation product are not supported");
    if (sa->d[sa->ndim - 1] != sb->d[sb->ndim - 2])
        return te_imp_bad(I, n, TE_ESHAPE, "inner dimensions differ (%lld vs %lld)", (long long)sa->d[sa->ndim - 1],
                   (long long)sb->d[sb->ndim - 2]);
    te_shape ba = {.ndim = sa->ndim - 2}, bb = {.ndim = sb->ndim - 2}, bo;
    memcpy(ba.d, sa->d, (size_t)ba.ndim * sizeof ba.d[0]);
    memcpy(bb.d, sb->d, (size_t)bb.ndim * sizeof bb.d[0]);
    if (te_imp_bcast(&ba, &bb, &bo) || bo.ndim + 2 > TE_MAX_DIMS)
        return te_imp_bad(I, n, TE_ESHAPE, "batch dimensions do not broadcast");
    te_shape os = bo;
    os.d[os.ndim++] = sa->d[sa->ndim - 2];
    os.d[os.ndim++] = sb->d[sb->ndim - 1];
    int ids[2] = {a->id, b->id};
    te_node t;
    te_imp_node_init(&t, TE_OP_MATMUL, te_imp_nname(n));
    return te_imp_emit(I, &t, ids, 2, te_imp_out_name(n), &os, NULL);
}
