/* ONNX import: the op table (one row per ONNX op) and the lowering of a node. */
#include "onnx_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static int all_inputs_const(imp *I, onode *n)
{
    for (size_t k = 0; k < n->n_input; k++) {
        if (!n->input[k][0])
            continue;
        ival *v = te_imp_lookup(I, n->input[k]);
        if (!v || !v->is_const)
            return 0;
    }
    return n->n_input > 0;
}

/* Handlers take the table's int argument (an op code, a flag) or ignore it. */
typedef te_status (*op_fn)(imp *I, onode *n, int arg);
#define PLAIN(f)                                                                                                      \
    static te_status h_##f(imp *I, onode *n, int arg)                                                                 \
    {                                                                                                                 \
        (void)arg;                                                                                                    \
        return te_imp_##f(I, n);                                                                                      \
    }
PLAIN(op_constant)
PLAIN(op_shape)
PLAIN(op_cast)
PLAIN(op_constant_of_shape)
PLAIN(op_reshape)
PLAIN(op_flatten)
PLAIN(op_identity)
PLAIN(op_concat)
PLAIN(op_transpose)
PLAIN(op_conv)
PLAIN(op_gemm)
PLAIN(op_batchnorm)
PLAIN(op_prelu)
PLAIN(op_clip)
PLAIN(op_lrn)
PLAIN(op_softmax)
PLAIN(op_pad)
PLAIN(op_lpnorm)
PLAIN(op_slice)
PLAIN(op_split)
PLAIN(op_range)
PLAIN(op_expand)
PLAIN(op_size)
PLAIN(op_upsample)
PLAIN(op_resize)
PLAIN(op_conv_transpose)
PLAIN(op_matmul_any)
PLAIN(op_layer_norm)
PLAIN(op_gather_any)
PLAIN(op_topk)
PLAIN(op_nms)
PLAIN(op_roi_align)
PLAIN(op_if)
static te_status h_squeeze(imp *I, onode *n, int unsq) { return te_imp_op_squeeze(I, n, unsq); }
static te_status h_unary(imp *I, onode *n, int op) { return te_imp_op_unary(I, n, (te_op)op); }
static te_status h_binary(imp *I, onode *n, int op) { return te_imp_op_binary(I, n, (te_op)op); }
static te_status h_pool(imp *I, onode *n, int op) { return te_imp_op_pool(I, n, (te_op)op); }
static te_status h_reduce(imp *I, onode *n, int op) { return te_imp_op_reduce(I, n, op); }
PLAIN(op_tile)
PLAIN(op_image_scaler)
static te_status h_sum(imp *I, onode *n, int mean) { return te_imp_op_sum(I, n, mean); }
static te_status h_mish_gelu(imp *I, onode *n, int gelu) { return te_imp_op_mish_gelu(I, n, gelu); }
static te_status h_depth_space(imp *I, onode *n, int to_space) { return te_imp_op_depth_space(I, n, to_space); }
static te_status h_neg(imp *I, onode *n, int arg)
{
    (void)arg;
    return te_imp_op_scalar_binary(I, n, TE_OP_MUL, -1.0f, 0);
}

static te_status h_recip(imp *I, onode *n, int arg)
{
    (void)arg;
    return te_imp_op_scalar_binary(I, n, TE_OP_DIV, 1.0f, 1);
}

/* One row per ONNX op: how it is folded when every input is a constant
 * (fold_n inputs through fold_ew), and how it is lowered otherwise (fn; NULL:
 * only constants are supported).  Device semantics, bundle encoding and cost
 * of the te_op it lowers to are in te_model.c's op table. */
typedef struct op_entry {
    const char *onnx;
    op_fn fn;
    int arg;
    int fold_n;
    ew_code fold;
    int min_opset;
} op_entry;

/* sorted by strcmp (looked up with bsearch) */
static const op_entry op_entries[] = {
    {"Abs", NULL, 0, 1, EW_ABS, 0},
    {"Add", h_binary, TE_OP_ADD, 2, EW_ADD, 0},
    {"And", NULL, 0, 2, EW_AND, 0},
    {"AveragePool", h_pool, TE_OP_AVGPOOL, 0, 0, 0},
    {"BatchNormalization", h_op_batchnorm, 0, 0, 0, 0},
    {"Cast", h_op_cast, 0, 0, 0, 0},
    {"Ceil", NULL, 0, 1, EW_CEIL, 0},
    {"Clip", h_op_clip, 0, 0, 0, 0},
    {"Concat", h_op_concat, 0, 0, 0, 0},
    {"Constant", h_op_constant, 0, 0, 0, 0},
    {"ConstantOfShape", h_op_constant_of_shape, 0, 0, 0, 0},
    {"Conv", h_op_conv, 0, 0, 0, 0},
    {"ConvTranspose", h_op_conv_transpose, 0, 0, 0, 0},
    {"DepthToSpace", h_depth_space, 1, 0, 0, 0},
    {"Div", h_binary, TE_OP_DIV, 2, EW_DIV, 0},
    {"Dropout", h_op_identity, 0, 0, 0, 0},
    {"Equal", NULL, 0, 2, EW_EQUAL, 0},
    {"Erf", h_unary, TE_OP_ERF, 1, EW_ERF, 0},
    {"Exp", h_unary, TE_OP_EXP, 1, EW_EXP, 0},
    {"Expand", h_op_expand, 0, 0, 0, 0},
    {"Flatten", h_op_flatten, 0, 0, 0, 0},
    {"Floor", NULL, 0, 1, EW_FLOOR, 0},
    {"Gather", h_op_gather_any, 0, 0, 0, 0},
    {"Gelu", h_mish_gelu, 1, 0, 0, 20},
    {"Gemm", h_op_gemm, 0, 0, 0, 0},
    {"GlobalAveragePool", h_pool, TE_OP_GLOBAL_AVGPOOL, 0, 0, 0},
    {"Greater", NULL, 0, 2, EW_GREATER, 0},
    {"GreaterOrEqual", NULL, 0, 2, EW_GREATER_EQ, 0},
    {"HardSigmoid", h_unary, TE_OP_HARD_SIGMOID, 0, 0, 0},
    {"HardSwish", h_unary, TE_OP_HARD_SWISH, 0, 0, 0},
    {"Identity", h_op_identity, 0, 0, 0, 0},
    {"If", h_op_if, 0, 0, 0, 0},
    {"ImageScaler", h_op_image_scaler, 0, 0, 0, 0},
    {"LRN", h_op_lrn, 0, 0, 0, 0},
    {"LayerNormalization", h_op_layer_norm, 0, 0, 0, 0},
    {"LeakyRelu", h_unary, TE_OP_LEAKY_RELU, 0, 0, 0},
    {"Less", NULL, 0, 2, EW_LESS, 0},
    {"LessOrEqual", NULL, 0, 2, EW_LESS_EQ, 0},
    {"Log", NULL, 0, 1, EW_LOG, 0},
    {"LpNormalization", h_op_lpnorm, 0, 0, 0, 0},
    {"MatMul", h_op_matmul_any, 0, 0, 0, 0},
    {"Max", NULL, 0, 2, EW_MAX, 0},
    {"MaxPool", h_pool, TE_OP_MAXPOOL, 0, 0, 0},
    {"Mean", h_sum, 1, 0, 0, 0},
    {"Min", NULL, 0, 2, EW_MIN, 0},
    {"Mish", h_mish_gelu, 0, 0, 0, 18},
    {"Mod", NULL, 0, 2, EW_MOD, 0},
    {"Mul", h_binary, TE_OP_MUL, 2, EW_MUL, 0},
    {"Neg", h_neg, 0, 1, EW_NEG, 0},
    {"NonMaxSuppression", h_op_nms, 0, 0, 0, 10},
    {"Not", NULL, 0, 1, EW_NOT, 0},
    {"Or", NULL, 0, 2, EW_OR, 0},
    {"PRelu", h_op_prelu, 0, 0, 0, 0},
    {"Pad", h_op_pad, 0, 0, 0, 0},
    {"Pow", h_binary, TE_OP_POW, 2, EW_POW, 0},
    {"Range", h_op_range, 0, 0, 0, 0},
    {"Reciprocal", h_recip, 0, 1, EW_RECIP, 0},
    {"ReduceL2", h_reduce, TE_OP_REDUCE_L2, 0, 0, 0},
    {"ReduceMax", h_reduce, TE_OP_REDUCE_MAX, 0, 0, 0},
    {"ReduceMean", h_reduce, TE_OP_REDUCE_MEAN, 0, 0, 0},
    {"ReduceMin", h_reduce, TE_OP_REDUCE_MIN, 0, 0, 0},
    {"ReduceProd", h_reduce, TE_OP_REDUCE_PROD, 0, 0, 0},
    {"ReduceSum", h_reduce, TE_OP_REDUCE_SUM, 0, 0, 0},
    {"Relu", h_unary, TE_OP_RELU, 1, EW_RELU, 0},
    {"Reshape", h_op_reshape, 0, 0, 0, 0},
    {"Resize", h_op_resize, 0, 0, 0, 10},
    {"RoiAlign", h_op_roi_align, 0, 0, 0, 10},
    {"Round", NULL, 0, 1, EW_ROUND, 0},
    {"Shape", h_op_shape, 0, 0, 0, 0},
    {"Sigmoid", h_unary, TE_OP_SIGMOID, 1, EW_SIGMOID, 0},
    {"Sign", NULL, 0, 1, EW_SIGN, 0},
    {"Size", h_op_size, 0, 0, 0, 0},
    {"Slice", h_op_slice, 0, 0, 0, 0},
    {"Softmax", h_op_softmax, 0, 0, 0, 0},
    {"Softplus", h_unary, TE_OP_SOFTPLUS, 1, EW_SOFTPLUS, 0},
    {"SpaceToDepth", h_depth_space, 0, 0, 0, 0},
    {"Split", h_op_split, 0, 0, 0, 0},
    {"Sqrt", h_unary, TE_OP_SQRT, 1, EW_SQRT, 0},
    {"Squeeze", h_squeeze, 0, 0, 0, 0},
    {"Sub", h_binary, TE_OP_SUB, 2, EW_SUB, 0},
    {"Sum", h_sum, 0, 0, 0, 0},
    {"Tanh", h_unary, TE_OP_TANH, 1, EW_TANH, 0},
    {"Tile", h_op_tile, 0, 0, 0, 0},
    {"TopK", h_op_topk, 0, 0, 0, 0},
    {"Transpose", h_op_transpose, 0, 0, 0, 0},
    {"Unsqueeze", h_squeeze, 1, 0, 0, 0},
    {"Upsample", h_op_upsample, 0, 0, 0, 0},
    {"Where", NULL, 0, 3, EW_WHERE, 0},
    {"Xor", NULL, 0, 2, EW_XOR, 0},
};

static int entry_cmp(const void *key, const void *e)
{
    return strcmp(key, ((const op_entry *)e)->onnx);
}

te_status te_imp_lower(imp *I, onode *n)
{
    const char *t = n->op_type ? n->op_type : "";
    if (n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx") != 0)
        return te_errf(I->err, TE_EUNSUPPORTED, "unsupported ONNX op '%s' (domain '%s') in node '%s'", t, n->domain,
                       te_imp_nname(n));
    if (n->n_output < 1 || !n->output[0][0])
        return te_imp_bad(I, n, TE_EFORMAT, "node has no output");
    const op_entry *e = bsearch(t, op_entries, sizeof op_entries / sizeof op_entries[0], sizeof op_entries[0],
                                entry_cmp);
    if (!e || I->opset < e->min_opset)
        return te_errf(I->err, TE_EUNSUPPORTED, "unsupported ONNX op '%s' in node '%s'", t, te_imp_nname(n));
    if (e->fold_n && all_inputs_const(I, n)) {
        if ((int)n->n_input != e->fold_n)
            return te_imp_bad(I, n, TE_EUNSUPPORTED, "%zu inputs (only %d are supported)", n->n_input, e->fold_n);
        return te_imp_fold_ew(I, n, e->fold, e->fold_n);
    }
    if (!e->fn)
        return te_errf(I->err, TE_EUNSUPPORTED,
                       "unsupported ONNX op '%s' in node '%s': it is folded on constants only, and an input is an "
                       "activation",
                       t, te_imp_nname(n));
    return e->fn(I, n, e->arg);
}
