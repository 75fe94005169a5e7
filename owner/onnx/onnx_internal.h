/* Internal to the ONNX importer (owner/onnx/): the importer state, the value
 * table and the functions its files share.  The public API is onnx_import.h. */
#ifndef TE_ONNX_INTERNAL_H
#define TE_ONNX_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "onnx.pb-c.h"
#include "onnx_import.h"

#define MAX_NUMEL ((int64_t)1 << 31)
#define GEOM_MAX ((int64_t)1 << 24) /* bound on kernel/stride/dilation/pad values */

/* One named ONNX value: a constant (folded, never on the device unless an
 * op needs it as an operand) or a runtime value with a model value id. */
typedef struct ival {
    char *name;
    te_shape shape;
    int is_const;
    int is_int;     /* integer-typed constant: data in i */
    float *f;       /* float constant data (may be borrowed from the protobuf) */
    int f_owned;
    int64_t *i;     /* integer constant data (owned) */
    int id;         /* model value id, -1 while a constant is not materialised */
} ival;

typedef struct imp {
    te_model *m;
    const Onnx__GraphProto *g;
    int64_t opset;
    ival **v;
    int nv, cap;
    te_err *err;
    const te_import_opts *opts; /* never NULL */
} imp;

typedef const Onnx__NodeProto onode;


/* Element-wise ops evaluated on constants (fold_ew). */
typedef enum ew_code {
    EW_ADD, EW_SUB, EW_MUL, EW_DIV, EW_POW, EW_MOD, EW_MIN, EW_MAX, EW_EQUAL, EW_LESS, EW_LESS_EQ, EW_GREATER,
    EW_GREATER_EQ, EW_AND, EW_OR, EW_XOR, EW_WHERE, EW_NOT, EW_NEG, EW_ABS, EW_FLOOR, EW_CEIL, EW_SQRT, EW_RELU,
    EW_EXP, EW_LOG, EW_RECIP, EW_SIGMOID, EW_TANH, EW_ERF, EW_SIGN, EW_ROUND, EW_IDENT, EW_SOFTPLUS
} ew_code;

/* proto.c */
const char *te_imp_nname(onode *n);
const Onnx__AttributeProto *te_imp_attr(onode *n, const char *name);
int64_t te_imp_attr_i(onode *n, const char *name, int64_t def);
float te_imp_attr_f(onode *n, const char *name, float def);
int te_imp_attr_s_is(onode *n, const char *name, const char *def, const char *s);
void te_imp_attr_s_copy(onode *n, const char *name, char *buf, size_t cap);
te_status te_imp_attr_ints(imp *I, onode *n, const char *name, int64_t *out, int max, int *count);
te_status te_imp_load_tensor(imp *I, const Onnx__TensorProto *t, const char *name, ival **out);

/* values.c */
char *te_imp_xstrdup(const char *s);
te_status te_imp_nomem(imp *I);
te_status te_imp_bad(imp *I, onode *n, te_status code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
te_status te_imp_bad(imp *I, onode *n, te_status code, const char *fmt, ...);
void te_imp_ival_free(ival *v);
ival *te_imp_lookup(imp *I, const char *name);
te_status te_imp_add_ival(imp *I, ival *v);
ival *te_imp_ival_new(const char *name, const te_shape *s);
te_status te_imp_new_rt(imp *I, const char *name, const te_shape *s, ival **out);
te_status te_imp_new_const(imp *I, const char *name, const te_shape *s, float *f, int64_t *i);
double te_imp_cget(const ival *v, int64_t k);
float *te_imp_const_floats(const ival *v);
int64_t te_imp_d2i(double d);
int64_t te_imp_cget_i(const ival *v, int64_t k);
te_status te_imp_rt_id(imp *I, ival *v, int *id);
te_status te_imp_in_req(imp *I, onode *n, size_t k, ival **out);
te_status te_imp_in_const(imp *I, onode *n, size_t k, int required, ival **out, const char *what);
const char *te_imp_out_name(onode *n);
int te_imp_use_count(imp *I, const char *name);
te_status te_imp_only_first_output(imp *I, onode *n);
te_status te_imp_alias(imp *I, ival *x, const char *name);
te_status te_imp_rt_input(imp *I, onode *n, ival **x);

/* shape.c */
void te_imp_shape_str(const te_shape *s, char *buf, size_t cap);
int64_t te_imp_numel(const te_shape *s);
int te_imp_norm_axis(int64_t *axis, int rank);
te_status te_imp_get_axes(imp *I, onode *n, size_t input, int64_t *axes, int *count);
te_status te_imp_bcast(const te_shape *a, const te_shape *b, te_shape *o);
int64_t te_imp_bidx(const te_shape *o, const te_shape *a, int64_t k);
te_status te_imp_need_4d(imp *I, onode *n, const ival *x);

/* emit.c */
void te_imp_node_init(te_node *t, te_op op, const char *name);
te_status te_imp_emit(imp *I, te_node *t, int *ids, int n_in, const char *oname, const te_shape *os, ival **out);
te_status te_imp_emit1(imp *I, te_node *t, int in_id, const char *oname, const te_shape *os, ival **out);
int te_imp_producer(imp *I, int id);

/* fold.c */
te_status te_imp_op_shape(imp *I, onode *n);
te_status te_imp_op_gather(imp *I, onode *n);
te_status te_imp_op_cast(imp *I, onode *n);
te_status te_imp_op_constant_of_shape(imp *I, onode *n);
te_status te_imp_op_constant(imp *I, onode *n);
te_status te_imp_fold_reduce(imp *I, onode *n, int op, ival *x, const int *mark, const te_shape *os);
te_status te_imp_fold_ew(imp *I, onode *n, ew_code code, int n_in);
te_status te_imp_op_range(imp *I, onode *n);
te_status te_imp_op_size(imp *I, onode *n);

/* ops_linear.c */
te_status te_imp_op_conv(imp *I, onode *n);
te_status te_imp_op_pool(imp *I, onode *n, te_op op);
te_status te_imp_op_gemm(imp *I, onode *n);
te_status te_imp_op_batchnorm(imp *I, onode *n);
te_status te_imp_op_conv_transpose(imp *I, onode *n);
te_status te_imp_op_matmul_any(imp *I, onode *n);

/* ops_elementwise.c */
te_status te_imp_op_binary(imp *I, onode *n, te_op op);
te_status te_imp_op_unary(imp *I, onode *n, te_op op);
te_status te_imp_op_prelu(imp *I, onode *n);
te_status te_imp_op_clip(imp *I, onode *n);
te_status te_imp_op_scalar_binary(imp *I, onode *n, te_op op, float c, int const_first);
te_status te_imp_op_sum(imp *I, onode *n, int mean);
te_status te_imp_op_mish_gelu(imp *I, onode *n, int gelu);
te_status te_imp_op_image_scaler(imp *I, onode *n);

/* ops_shape.c */
te_status te_imp_reshape_to(imp *I, onode *n, ival *x, const te_shape *ns);
te_status te_imp_op_reshape(imp *I, onode *n);
te_status te_imp_op_flatten(imp *I, onode *n);
te_status te_imp_op_squeeze(imp *I, onode *n, int unsq);
te_status te_imp_op_identity(imp *I, onode *n);
te_status te_imp_emit_transpose(imp *I, onode *n, const char *tname, int in_id, const te_shape *s,
                                const int64_t *perm, const char *oname, ival **out);
te_status te_imp_op_transpose(imp *I, onode *n);
te_status te_imp_op_concat(imp *I, onode *n);
te_status te_imp_op_pad(imp *I, onode *n);
te_status te_imp_op_tile(imp *I, onode *n);
te_status te_imp_op_slice(imp *I, onode *n);
te_status te_imp_op_split(imp *I, onode *n);
te_status te_imp_op_expand(imp *I, onode *n);
te_status te_imp_op_depth_space(imp *I, onode *n, int to_space);
te_status te_imp_op_gather_any(imp *I, onode *n);

/* ops_resize.c */
te_status te_imp_op_upsample(imp *I, onode *n);
te_status te_imp_op_resize(imp *I, onode *n);

/* ops_reduce.c */
te_status te_imp_op_softmax(imp *I, onode *n);
te_status te_imp_op_topk(imp *I, onode *n);
te_status te_imp_op_nms(imp *I, onode *n);
te_status te_imp_op_roi_align(imp *I, onode *n);
te_status te_imp_op_if(imp *I, onode *n);
te_status te_imp_op_lrn(imp *I, onode *n);
te_status te_imp_op_lpnorm(imp *I, onode *n);
te_status te_imp_op_reduce(imp *I, onode *n, int op);
te_status te_imp_op_layer_norm(imp *I, onode *n);

/* table.c */
te_status te_imp_lower(imp *I, onode *n);

#endif
