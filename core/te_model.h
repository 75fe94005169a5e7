/* The compiled model: twinedge's intermediate representation.
 *
 * The owner tool builds a te_model from ONNX (static shapes, every value's
 * shape known), the device bundle stores the device's half of it and the
 * edge bundle stores the linear layers' integer weights.  The executor in the
 * device SDK interprets the node list in order.
 *
 * Values are float32 tensors in NCHW / row-major layout.  A value with
 * data != NULL is a constant (initializer).  Every node has exactly one
 * output value.
 */
#ifndef TE_MODEL_H
#define TE_MODEL_H

#include <stdint.h>
#include <stddef.h>

#define TE_MAX_DIMS 8

typedef struct te_shape {
    int ndim;
    int64_t d[TE_MAX_DIMS];
} te_shape;

int64_t te_shape_numel(const te_shape *s);
/* "[1,3,224,224]" into buf (truncated to len); returns buf. */
const char *te_shape_str(const te_shape *s, char *buf, size_t len);

/* The device ops: codes, descriptors, rules and run functions are one row
 * each in te_ops.def. */
typedef enum te_op {
    TE_OP_INVALID = 0,
#define TE_OP(ID, code, ...) TE_OP_##ID = code,
#include "te_ops.def"
#undef TE_OP
    TE_OP_COUNT_
} te_op;

typedef enum te_pad_mode {
    TE_PAD_CONSTANT = 0,
    TE_PAD_REFLECT = 1,
    TE_PAD_EDGE = 2
} te_pad_mode;

/* TE_OP_RESIZE's ints[0..2] */
enum te_resize_mode {
    TE_RESIZE_NEAREST = 0,
    TE_RESIZE_LINEAR = 1,
    TE_RESIZE_CUBIC = 2 /* alpha = cubic_coeff_a; ints[3] = exclude_outside */
};
enum te_resize_coord {
    TE_COORD_HALF_PIXEL = 0,
    TE_COORD_ASYMMETRIC = 1,
    TE_COORD_ALIGN_CORNERS = 2,
    TE_COORD_PYTORCH_HALF_PIXEL = 3,
    TE_COORD_TF_HALF_PIXEL_FOR_NN = 4,
    TE_COORD_HALF_PIXEL_SYMMETRIC = 5,
    TE_COORD_TF_CROP_AND_RESIZE = 6 /* in[1] holds scales, roi starts, roi ends (3 per dim);
                                     * pad_value = extrapolation_value */
};
enum te_resize_nearest {
    TE_NEAREST_ROUND_PREFER_FLOOR = 0,
    TE_NEAREST_ROUND_PREFER_CEIL = 1,
    TE_NEAREST_FLOOR = 2,
    TE_NEAREST_CEIL = 3
};

typedef struct te_node {
    te_op op;
    char *name;          /* ONNX node name (or a generated one), for messages */
    int n_in;
    int *in;             /* value ids */
    int out;             /* value id */

    int64_t axis;
    int64_t kernel[2], stride[2], dilation[2];
    int64_t pads[4];     /* pooling pads: top, left, bottom, right */
    int ceil_mode;
    int count_include_pad;
    float alpha, beta, bias;
    int64_t size;        /* LRN */
    int64_t p;           /* LpNormalization */
    float fmin, fmax;    /* Clip */
    int n_ints;
    int64_t *ints;       /* Pad pads, Transpose perm, ReduceL2 axes */
    int pad_mode;        /* te_pad_mode */
    float pad_value;
    int keepdims;
    int layer;           /* TE_OP_LINEAR: index into te_model.layers */
} te_node;

typedef struct te_value {
    char *name;
    te_shape shape;
    float *data;         /* constant data (numel floats) or NULL */
} te_value;

typedef enum te_lin_kind {
    TE_LIN_FC = 1,       /* y[b][o] = sum_k W[o][k] x[b][k]; rows = batch */
    TE_LIN_CONV = 2      /* 2-D convolution, NCHW, weights [out_c][in_c/group][k_h][k_w] */
} te_lin_kind;

/* Geometry of one linear layer.  For FC: in_c = K, out_c = N, all of
 * in_h, in_w, out_h, out_w, k_h, k_w, stride, dil, group = 1 and pads 0;
 * batch = number of rows.  For CONV: batch = N of the NCHW input. */
typedef struct te_linear_geom {
    te_lin_kind kind;
    int64_t batch;
    int64_t in_c, in_h, in_w;
    int64_t out_c, out_h, out_w;
    int64_t k_h, k_w;
    int64_t stride_h, stride_w;
    int64_t pad_t, pad_l, pad_b, pad_r;
    int64_t dil_h, dil_w;
    int64_t group;
} te_linear_geom;

/* Per-sample input / output element counts and weight count. */
int64_t te_geom_in_len(const te_linear_geom *g);
int64_t te_geom_out_len(const te_linear_geom *g);
int64_t te_geom_weight_len(const te_linear_geom *g);
/* Multiply-accumulates per sample (the layer's FLOPs are 2x this). */
int64_t te_geom_macs(const te_linear_geom *g);
/* Length of each output's dot product: (in_c/group)*k_h*k_w for conv, K for FC. */
int64_t te_geom_dot_len(const te_linear_geom *g);

/* One linear layer.  The device sees geom, frac_bits, ring_bits, w_scale,
 * bias, w_l1, r, s.  The edges see geom and w.  w_float exists only in the owner. */
typedef struct te_layer {
    char *name;              /* the ONNX node's name */
    te_linear_geom geom;
    int frac_bits;           /* activation x is encoded as round(x * 2^frac_bits) */
    int ring_bits;           /* l: results are computed in Z_2^l */
    int weight_bits;         /* W_int fits in weight_bits signed bits */
    float *w_scale;          /* [out_c]: W_real[o][.] ~= W_int[o][.] * w_scale[o] */
    float *bias;             /* [out_c] or NULL */
    uint64_t *r;             /* [out_len]: integrity key over F_p, p = 2^61 - 1, per device */
    uint64_t *s;             /* [in_len]:  s = W_int^T r mod p (NULL with r in a deployment's template) */
    uint64_t *w_l1;          /* [out_c]: sum of |W_int| over output channel o's row: the device's
                              * bound |y_o| <= w_l1[o] * max|x| (te_linear.h) */
    int32_t *w;              /* [weight_len] integer weights (owner, edges) */
    float *w_float;          /* [weight_len] float weights after BN folding (owner only) */
    double calib_max_abs_x;  /* owner calibration statistics (not stored) */
    double calib_max_abs_y;
    int n_branches;          /* owner: layers fused into this one (owner/fuse.h; 0: not fused, not stored) */
} te_layer;

/* Input preprocessing recorded in the deployment (used for image inputs):
 * x = (pixel/255 - mean[c]) / std[c], resized to the model's input H x W. */
typedef struct te_preprocess {
    int present;
    int channels;
    float mean[4], std[4];
} te_preprocess;

typedef struct te_model {
    char *name;
    char deployment_id[33];  /* 32 hex chars + NUL */
    int n_values;
    te_value *values;
    int n_nodes;
    te_node *nodes;
    int n_layers;
    te_layer *layers;
    int input;               /* value id of the single model input */
    int output;              /* value id of the model's first output */
    int n_outputs;           /* the graph's outputs (0 or 1: just `output`) */
    int *outputs;            /* [n_outputs] value ids, outputs[0] == output; NULL when n_outputs <= 1 */
    te_preprocess pre;
    double calib_cosine;     /* owner: the fixed-point output's smallest cosine to the float model's over the
                              * calibration samples (0: not measured; not stored) */
} te_model;

/* Allocation helpers: every pointer inside a te_model is owned by it. */
te_model *te_model_new(void);
void te_model_free(te_model *m);
/* Free what a layer owns and zero it (a layer of no model, or one being
 * replaced in place). */
void te_layer_clear(te_layer *L);
/* Append a value / node / layer; return its index or -1 on ENOMEM. */
int te_model_add_value(te_model *m, const char *name, const te_shape *shape, float *data_owned);
int te_model_add_node(te_model *m, const te_node *node_template /* in/name/ints are copied */);
int te_model_add_layer(te_model *m, const te_layer *layer_template /* arrays are taken over */);
const char *te_op_name(te_op op);
/* The model's outputs, in the graph's order: their count (>= 1) and the
 * value id of output k (-1 when k is out of range). */
int te_model_n_outputs(const te_model *m);
int te_model_output(const te_model *m, int k);
/* The elements of all outputs together. */
int64_t te_model_outputs_numel(const te_model *m);
/* Set the outputs (n >= 1 value ids, copied; output = ids[0]); -1 on ENOMEM. */
int te_model_set_outputs(te_model *m, const int *ids, int n);

/* An op's row of te_ops.def: the bundle reader and the executor check input
 * counts against it, the owner's report takes the device cost and the
 * reason from it. */
typedef struct te_op_desc {
    const char *name;
    int min_in, max_in;  /* accepted input counts */
    double out_flops;    /* device FLOPs per output element */
    double in_flops;     /* device FLOPs per input element */
    const char *why;     /* why the op runs on the device */
    int dyn_rows;        /* the output's first dimension is data-dependent (at most the declared one); which
                          * nodes may read such a value te_model_dyn decides (te_dyn.h) */
} te_op_desc;

/* The descriptor of op, or NULL for an unknown code. */
const te_op_desc *te_op_info(te_op op);
/* Device FLOPs of one non-linear node (0 for TE_OP_LINEAR: see the report). */
double te_node_flops(const te_model *m, const te_node *n);

#endif
