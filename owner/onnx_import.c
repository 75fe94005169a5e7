/* ONNX import: parse, constant-fold, infer shapes and lower to te_model. */
#include "onnx_import.h"

#include <float.h>
#include <stdarg.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx.pb-c.h"
#include "te_bundle.h"

#define OPSET_MIN 7
#define OPSET_MAX 21
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

/* ------------------------------------------------------------------ */
/* small helpers */

static char *xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

static const char *nname(onode *n)
{
    if (n->name && n->name[0])
        return n->name;
    if (n->n_output > 0 && n->output[0][0])
        return n->output[0];
    return n->op_type ? n->op_type : "?";
}

static te_status nomem(imp *I)
{
    return te_errf(I->err, TE_ENOMEM, "out of memory while importing the ONNX model");
}

static te_status bad(imp *I, onode *n, te_status code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static te_status bad(imp *I, onode *n, te_status code, const char *fmt, ...)
{
    char msg[TE_ERR_MSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return te_errf(I->err, code, "%s node '%s': %s", n->op_type, nname(n), msg);
}

static void shape_str(const te_shape *s, char *buf, size_t cap)
{
    size_t o = 0;
    o += (size_t)snprintf(buf + o, cap - o, "[");
    for (int i = 0; i < s->ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? "," : "", (long long)s->d[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

static int64_t numel(const te_shape *s)
{
    return te_shape_numel(s);
}

static void ival_free(ival *v)
{
    if (!v)
        return;
    free(v->name);
    if (v->f_owned)
        free(v->f);
    free(v->i);
    free(v);
}

static ival *lookup(imp *I, const char *name)
{
    for (int k = I->nv - 1; k >= 0; k--)
        if (strcmp(I->v[k]->name, name) == 0)
            return I->v[k];
    return NULL;
}

/* Register v (taken over, also on failure). A later definition shadows. */
static te_status add_ival(imp *I, ival *v)
{
    if (I->nv == I->cap) {
        int nc = I->cap ? I->cap * 2 : 64;
        ival **p = realloc(I->v, (size_t)nc * sizeof *p);
        if (!p) {
            ival_free(v);
            return nomem(I);
        }
        I->v = p;
        I->cap = nc;
    }
    I->v[I->nv++] = v;
    return TE_OK;
}

static ival *ival_new(const char *name, const te_shape *s)
{
    ival *v = calloc(1, sizeof *v);
    if (!v)
        return NULL;
    v->name = xstrdup(name);
    if (!v->name) {
        free(v);
        return NULL;
    }
    v->shape = *s;
    v->id = -1;
    return v;
}

/* A new runtime value (model value + ival). */
static te_status new_rt(imp *I, const char *name, const te_shape *s, ival **out)
{
    ival *v = ival_new(name, s);
    if (!v)
        return nomem(I);
    v->id = te_model_add_value(I->m, name, s, NULL);
    if (v->id < 0) {
        ival_free(v);
        return nomem(I);
    }
    te_status st = add_ival(I, v);
    if (st == TE_OK && out)
        *out = v;
    return st;
}

/* A new constant: f or i (owned) holds numel(s) elements. */
static te_status new_const(imp *I, const char *name, const te_shape *s, float *f, int64_t *i)
{
    ival *v = ival_new(name, s);
    if (!v) {
        free(f);
        free(i);
        return nomem(I);
    }
    v->is_const = 1;
    v->f = f;
    v->f_owned = 1;
    v->i = i;
    v->is_int = i != NULL;
    return add_ival(I, v);
}

static double cget(const ival *v, int64_t k)
{
    return v->is_int ? (double)v->i[k] : (double)v->f[k];
}

/* Constant as a fresh float array (caller frees). */
static float *const_floats(const ival *v)
{
    int64_t n = numel(&v->shape);
    float *f = malloc((size_t)(n > 0 ? n : 1) * sizeof *f);
    if (!f)
        return NULL;
    for (int64_t k = 0; k < n; k++)
        f[k] = (float)cget(v, k);
    return f;
}

static int64_t d2i(double d)
{
    if (!(d == d))
        return 0;
    if (d >= 9.2e18)
        return INT64_MAX;
    if (d <= -9.2e18)
        return INT64_MIN;
    return (int64_t)d;
}

static int64_t cget_i(const ival *v, int64_t k)
{
    return v->is_int ? v->i[k] : d2i((double)v->f[k]);
}

/* Model value id of v, putting a constant on the device if needed. */
static te_status rt_id(imp *I, ival *v, int *id)
{
    if (v->id < 0) {
        float *f = const_floats(v);
        if (!f)
            return nomem(I);
        v->id = te_model_add_value(I->m, v->name, &v->shape, f);
        if (v->id < 0) {
            free(f);
            return nomem(I);
        }
    }
    *id = v->id;
    return TE_OK;
}

/* ------------------------------------------------------------------ */
/* attributes */

static const Onnx__AttributeProto *attr(onode *n, const char *name)
{
    for (size_t k = 0; k < n->n_attribute; k++)
        if (n->attribute[k]->name && strcmp(n->attribute[k]->name, name) == 0)
            return n->attribute[k];
    return NULL;
}

static int64_t attr_i(onode *n, const char *name, int64_t def)
{
    const Onnx__AttributeProto *a = attr(n, name);
    return a && a->has_i ? a->i : def;
}

static float attr_f(onode *n, const char *name, float def)
{
    const Onnx__AttributeProto *a = attr(n, name);
    return a && a->has_f ? a->f : def;
}

/* String attribute compared with s (absent -> def compared). */
static int attr_s_is(onode *n, const char *name, const char *def, const char *s)
{
    const Onnx__AttributeProto *a = attr(n, name);
    if (!a || !a->has_s)
        return strcmp(def, s) == 0;
    return a->s.len == strlen(s) && memcmp(a->s.data, s, a->s.len) == 0;
}

static void attr_s_copy(onode *n, const char *name, char *buf, size_t cap)
{
    const Onnx__AttributeProto *a = attr(n, name);
    size_t len = (a && a->has_s) ? a->s.len : 0;
    if (len >= cap)
        len = cap - 1;
    if (len)
        memcpy(buf, a->s.data, len);
    buf[len] = '\0';
}

/* ints attribute: returns count (-1 absent, -2 too many). */
static int attr_ints(onode *n, const char *name, int64_t *out, int max)
{
    const Onnx__AttributeProto *a = attr(n, name);
    if (!a)
        return -1;
    if (a->n_ints > (size_t)max)
        return -2;
    for (size_t k = 0; k < a->n_ints; k++)
        out[k] = a->ints[k];
    return (int)a->n_ints;
}

/* ------------------------------------------------------------------ */
/* tensors */

static te_status load_tensor(imp *I, const Onnx__TensorProto *t, const char *name, ival **out)
{
    te_shape s = {0};
    if (t->n_dims > TE_MAX_DIMS)
        return te_errf(I->err, TE_EUNSUPPORTED, "tensor '%s': %zu dimensions (at most %d supported)", name,
                       t->n_dims, TE_MAX_DIMS);
    s.ndim = (int)t->n_dims;
    for (size_t k = 0; k < t->n_dims; k++) {
        if (t->dims[k] < 0)
            return te_errf(I->err, TE_EFORMAT, "tensor '%s': negative dimension", name);
        s.d[k] = t->dims[k];
    }
    int64_t n = numel(&s);
    if (n < 0 || n > MAX_NUMEL)
        return te_errf(I->err, TE_EFORMAT, "tensor '%s': bad or too large shape", name);
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return te_errf(I->err, TE_EUNSUPPORTED, "tensor '%s': external data is not supported", name);
    int32_t dt = t->has_data_type ? t->data_type : 0;
    const uint8_t *raw = t->has_raw_data ? t->raw_data.data : NULL;
    size_t raw_len = t->has_raw_data ? t->raw_data.len : 0;
    int use_raw = t->has_raw_data;

    ival *v = ival_new(name, &s);
    if (!v)
        return nomem(I);
    v->is_const = 1;
    size_t un = (size_t)n;
    te_status st = TE_OK;

    switch (dt) {
    case ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT:
        if (use_raw) {
            if (raw_len != un * 4) {
                st = te_errf(I->err, TE_EFORMAT, "tensor '%s': raw_data has %zu bytes, expected %zu", name,
                             raw_len, un * 4);
            } else if (((uintptr_t)raw % _Alignof(float)) == 0) {
                v->f = (float *)(void *)raw; /* borrowed: the protobuf outlives the import */
            } else if ((v->f = malloc(un ? un * 4 : 1)) != NULL) {
                v->f_owned = 1;
                memcpy(v->f, raw, un * 4);
            } else {
                st = nomem(I);
            }
        } else if (t->n_float_data == un) {
            v->f = t->float_data;
        } else {
            st = te_errf(I->err, TE_EFORMAT, "tensor '%s': has %zu floats, expected %zu", name,
                         t->n_float_data, un);
        }
        break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE:
        if ((use_raw && raw_len != un * 8) || (!use_raw && t->n_double_data != un)) {
            st = te_errf(I->err, TE_EFORMAT, "tensor '%s': wrong amount of double data", name);
        } else if ((v->f = malloc(un ? un * 4 : 1)) == NULL) {
            st = nomem(I);
        } else {
            v->f_owned = 1;
            for (size_t k = 0; k < un; k++) {
                double d;
                if (use_raw)
                    memcpy(&d, raw + 8 * k, 8);
                else
                    d = t->double_data[k];
                v->f[k] = (float)d;
            }
        }
        break;
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT64:
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT32:
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT16:
    case ONNX__TENSOR_PROTO__DATA_TYPE__INT8:
    case ONNX__TENSOR_PROTO__DATA_TYPE__UINT8:
    case ONNX__TENSOR_PROTO__DATA_TYPE__BOOL: {
        size_t esz = dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64   ? 8
                     : dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT32 ? 4
                     : dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT16 ? 2
                                                                  : 1;
        int is64 = dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT64;
        size_t have = use_raw ? raw_len / esz : is64 ? t->n_int64_data : t->n_int32_data;
        if ((use_raw && raw_len != un * esz) || have != un) {
            st = te_errf(I->err, TE_EFORMAT, "tensor '%s': wrong amount of integer data", name);
        } else if ((v->i = malloc(un ? un * 8 : 1)) == NULL) {
            st = nomem(I);
        } else {
            v->is_int = 1;
            for (size_t k = 0; k < un; k++) {
                int64_t x = 0;
                if (!use_raw) {
                    x = is64 ? t->int64_data[k] : t->int32_data[k];
                } else if (esz == 8) {
                    memcpy(&x, raw + 8 * k, 8);
                } else if (esz == 4) {
                    int32_t y;
                    memcpy(&y, raw + 4 * k, 4);
                    x = y;
                } else if (esz == 2) {
                    int16_t y;
                    memcpy(&y, raw + 2 * k, 2);
                    x = y;
                } else if (dt == ONNX__TENSOR_PROTO__DATA_TYPE__INT8) {
                    x = (int8_t)raw[k];
                } else {
                    x = raw[k];
                }
                v->i[k] = x;
            }
        }
        break;
    }
    default:
        st = te_errf(I->err, TE_EUNSUPPORTED, "tensor '%s': data type %d is not supported", name, (int)dt);
    }
    if (st != TE_OK) {
        ival_free(v);
        return st;
    }
    if (out) {
        *out = v;
        return TE_OK;
    }
    return add_ival(I, v);
}

/* ------------------------------------------------------------------ */
/* inputs of a node */

/* Input k or NULL when absent/empty; TE_EFORMAT when named but undefined. */
static te_status in_opt(imp *I, onode *n, size_t k, ival **out)
{
    *out = NULL;
    if (k >= n->n_input || !n->input[k][0])
        return TE_OK;
    *out = lookup(I, n->input[k]);
    if (!*out)
        return bad(I, n, TE_EFORMAT, "input '%s' is not defined before use", n->input[k]);
    return TE_OK;
}

static te_status in_req(imp *I, onode *n, size_t k, ival **out)
{
    te_status st = in_opt(I, n, k, out);
    if (st == TE_OK && !*out)
        return bad(I, n, TE_EFORMAT, "missing input %zu", k);
    return st;
}

static te_status in_const(imp *I, onode *n, size_t k, int required, ival **out, const char *what)
{
    te_status st = required ? in_req(I, n, k, out) : in_opt(I, n, k, out);
    if (st != TE_OK)
        return st;
    if (*out && !(*out)->is_const)
        return bad(I, n, TE_EUNSUPPORTED, "%s ('%s') must be a constant", what, (*out)->name);
    return TE_OK;
}

static const char *out_name(onode *n)
{
    return n->n_output > 0 ? n->output[0] : "";
}

/* A node's extra outputs must be unused. */
static int name_used(imp *I, const char *name)
{
    if (!name[0])
        return 0;
    const Onnx__GraphProto *g = I->g;
    for (size_t k = 0; k < g->n_node; k++)
        for (size_t j = 0; j < g->node[k]->n_input; j++)
            if (strcmp(g->node[k]->input[j], name) == 0)
                return 1;
    for (size_t k = 0; k < g->n_output; k++)
        if (strcmp(g->output[k]->name, name) == 0)
            return 1;
    return 0;
}

static int use_count(imp *I, const char *name)
{
    int c = 0;
    const Onnx__GraphProto *g = I->g;
    for (size_t k = 0; k < g->n_node; k++)
        for (size_t j = 0; j < g->node[k]->n_input; j++)
            if (strcmp(g->node[k]->input[j], name) == 0)
                c++;
    for (size_t k = 0; k < g->n_output; k++)
        if (strcmp(g->output[k]->name, name) == 0)
            c += 2; /* a graph output is never folded away */
    return c;
}

static te_status only_first_output(imp *I, onode *n)
{
    for (size_t k = 1; k < n->n_output; k++)
        if (name_used(I, n->output[k]))
            return bad(I, n, TE_EUNSUPPORTED, "output %zu ('%s') is used, only the first output is supported", k,
                       n->output[k]);
    return TE_OK;
}

/* ------------------------------------------------------------------ */
/* emitting device nodes */

static void node_init(te_node *t, te_op op, const char *name)
{
    memset(t, 0, sizeof *t);
    t->op = op;
    t->name = (char *)name;
    t->layer = -1;
    t->dilation[0] = t->dilation[1] = 1;
    t->stride[0] = t->stride[1] = 1;
}

/* Add node t with inputs ids[0..n_in) and a new runtime output value. */
static te_status emit(imp *I, te_node *t, int *ids, int n_in, const char *oname, const te_shape *os, ival **out)
{
    ival *o = NULL;
    char sb[128];
    int64_t ne = numel(os);
    if (ne <= 0 || ne > MAX_NUMEL) {
        shape_str(os, sb, sizeof sb);
        return te_errf(I->err, TE_ESHAPE, "%s node '%s': invalid output shape %s", te_op_name(t->op),
                       t->name ? t->name : "?", sb);
    }
    te_status st = new_rt(I, oname, os, &o);
    if (st != TE_OK)
        return st;
    t->in = ids;
    t->n_in = n_in;
    t->out = o->id;
    if (te_model_add_node(I->m, t) < 0)
        return nomem(I);
    if (out)
        *out = o;
    return TE_OK;
}

static te_status emit1(imp *I, te_node *t, int in_id, const char *oname, const te_shape *os, ival **out)
{
    int ids[1] = {in_id};
    return emit(I, t, ids, 1, oname, os, out);
}

/* Index of the node producing value id (or -1). */
static int producer(imp *I, int id)
{
    for (int k = I->m->n_nodes - 1; k >= 0; k--)
        if (I->m->nodes[k].out == id)
            return k;
    return -1;
}

static int norm_axis(int64_t *axis, int rank)
{
    if (*axis < -rank || *axis >= rank)
        return -1;
    if (*axis < 0)
        *axis += rank;
    return 0;
}

/* ------------------------------------------------------------------ */
/* shape-only ops (Reshape family): constant or a RESHAPE node */

static te_status reshape_to(imp *I, onode *n, ival *x, const te_shape *ns)
{
    char a[128], b[128];
    if (numel(ns) != numel(&x->shape)) {
        shape_str(&x->shape, a, sizeof a);
        shape_str(ns, b, sizeof b);
        return bad(I, n, TE_ESHAPE, "cannot reshape %s to %s", a, b);
    }
    if (x->is_const) {
        int64_t ne = numel(ns);
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
            return nomem(I);
        return new_const(I, out_name(n), ns, f, iv);
    }
    te_node t;
    node_init(&t, TE_OP_RESHAPE, nname(n));
    return emit1(I, &t, x->id, out_name(n), ns, NULL);
}

static te_status op_reshape(imp *I, onode *n)
{
    ival *x, *sh;
    te_status st;
    if ((st = in_req(I, n, 0, &x)) || (st = in_const(I, n, 1, 1, &sh, "the shape")))
        return st;
    int64_t k = numel(&sh->shape);
    if (sh->shape.ndim != 1 || k > TE_MAX_DIMS)
        return bad(I, n, TE_EUNSUPPORTED, "shape input must be 1-D with at most %d entries", TE_MAX_DIMS);
    int allowzero = (int)attr_i(n, "allowzero", 0);
    te_shape ns = {.ndim = (int)k};
    int neg = -1;
    int64_t known = 1;
    for (int j = 0; j < (int)k; j++) {
        int64_t d = cget_i(sh, j);
        if (d == 0 && !allowzero) {
            if (j >= x->shape.ndim)
                return bad(I, n, TE_ESHAPE, "shape entry %d is 0 but the input has rank %d", j, x->shape.ndim);
            d = x->shape.d[j];
        }
        if (d == -1) {
            if (neg >= 0)
                return bad(I, n, TE_ESHAPE, "more than one -1 in the shape");
            neg = j;
            d = 1;
        } else if (d < 0 || d > MAX_NUMEL) {
            return bad(I, n, TE_ESHAPE, "invalid shape entry %lld", (long long)d);
        }
        if (known > MAX_NUMEL)
            return bad(I, n, TE_ESHAPE, "shape too large");
        ns.d[j] = d;
        known *= d;
    }
    if (neg >= 0) {
        if (known == 0 || numel(&x->shape) % known)
            return bad(I, n, TE_ESHAPE, "cannot infer the -1 dimension");
        ns.d[neg] = numel(&x->shape) / known;
    }
    return reshape_to(I, n, x, &ns);
}

static te_status op_flatten(imp *I, onode *n)
{
    ival *x;
    te_status st;
    if ((st = in_req(I, n, 0, &x)))
        return st;
    int64_t axis = attr_i(n, "axis", 1);
    int r = x->shape.ndim;
    if (axis < -r || axis > r)
        return bad(I, n, TE_EINVAL, "axis %lld out of range", (long long)axis);
    if (axis < 0)
        axis += r;
    te_shape ns = {.ndim = 2, .d = {1, 1}};
    for (int j = 0; j < r; j++)
        ns.d[j < axis ? 0 : 1] *= x->shape.d[j];
    return reshape_to(I, n, x, &ns);
}

/* axes from input 1 if present, else the attribute; returns count or -1 absent. */
static te_status get_axes(imp *I, onode *n, size_t input, int64_t *axes, int *count)
{
    ival *a;
    te_status st = in_const(I, n, input, 0, &a, "axes");
    if (st)
        return st;
    if (a) {
        int64_t k = numel(&a->shape);
        if (k > TE_MAX_DIMS)
            return bad(I, n, TE_EINVAL, "too many axes");
        for (int j = 0; j < (int)k; j++)
            axes[j] = cget_i(a, j);
        *count = (int)k;
        return TE_OK;
    }
    int c = attr_ints(n, "axes", axes, TE_MAX_DIMS);
    if (c == -2)
        return bad(I, n, TE_EINVAL, "too many axes");
    *count = c;
    return TE_OK;
}

static te_status op_squeeze(imp *I, onode *n, int unsq)
{
    ival *x;
    int64_t axes[TE_MAX_DIMS];
    int na;
    te_status st;
    if ((st = in_req(I, n, 0, &x)) || (st = get_axes(I, n, 1, axes, &na)))
        return st;
    const te_shape *s = &x->shape;
    te_shape ns = {0};
    if (unsq) {
        if (na <= 0)
            return bad(I, n, TE_EINVAL, "Unsqueeze needs axes");
        int r = s->ndim + na;
        if (r > TE_MAX_DIMS)
            return bad(I, n, TE_EUNSUPPORTED, "rank %d is too large", r);
        int mark[TE_MAX_DIMS] = {0};
        for (int j = 0; j < na; j++) {
            if (norm_axis(&axes[j], r) || mark[axes[j]])
                return bad(I, n, TE_EINVAL, "bad or repeated axis %lld", (long long)axes[j]);
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
            if (norm_axis(&axes[j], s->ndim) || s->d[axes[j]] != 1)
                return bad(I, n, TE_EINVAL, "cannot squeeze axis %lld", (long long)axes[j]);
            mark[axes[j]] = 1;
        }
        for (int j = 0; j < s->ndim; j++)
            if (!mark[j])
                ns.d[ns.ndim++] = s->d[j];
    }
    return reshape_to(I, n, x, &ns);
}

static te_status op_identity(imp *I, onode *n)
{
    ival *x;
    te_status st;
    if ((st = in_req(I, n, 0, &x)) || (st = only_first_output(I, n)))
        return st;
    if (strcmp(n->op_type, "Dropout") == 0) {
        ival *tm; /* opset 12+: training_mode is input 2 */
        if ((st = in_const(I, n, 2, 0, &tm, "training_mode")))
            return st;
        if (attr_i(n, "training_mode", 0) || (tm && numel(&tm->shape) >= 1 && cget(tm, 0) != 0))
            return bad(I, n, TE_EUNSUPPORTED, "training mode is not supported");
    }
    return reshape_to(I, n, x, &x->shape);
}

/* ------------------------------------------------------------------ */
/* broadcasting and binary ops */

static te_status bcast(const te_shape *a, const te_shape *b, te_shape *o)
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
static int64_t bidx(const te_shape *o, const te_shape *a, int64_t k)
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

static te_op binop_code(const char *t)
{
    if (!strcmp(t, "Add"))
        return TE_OP_ADD;
    if (!strcmp(t, "Sub"))
        return TE_OP_SUB;
    if (!strcmp(t, "Mul"))
        return TE_OP_MUL;
    if (!strcmp(t, "Pow"))
        return TE_OP_POW;
    return TE_OP_DIV;
}

/* Fold "linear + constant" into the linear layer's bias when exact. */
static int try_fold_bias(imp *I, ival *x, ival *c, int sub, int is_right)
{
    if (x->is_const || !c->is_const || c->is_int)
        return 0;
    int p = producer(I, x->id);
    if (p < 0 || I->m->nodes[p].op != TE_OP_LINEAR || use_count(I, x->name) != 1)
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
    int64_t cn = numel(&c->shape);
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

static te_status alias(imp *I, ival *x, const char *name)
{
    ival *v = ival_new(name, &x->shape);
    if (!v)
        return nomem(I);
    v->id = x->id;
    /* the model value takes the later name (the earlier one is consumed only here) */
    char *nm = xstrdup(name);
    if (!nm) {
        ival_free(v);
        return nomem(I);
    }
    free(I->m->values[x->id].name);
    I->m->values[x->id].name = nm;
    return add_ival(I, v);
}

static te_status op_binary(imp *I, onode *n)
{
    ival *a, *b;
    te_status st;
    if ((st = in_req(I, n, 0, &a)) || (st = in_req(I, n, 1, &b)))
        return st;
    te_op op = binop_code(n->op_type);
    te_shape os;
    char sa[128], sb[128];
    if (bcast(&a->shape, &b->shape, &os) != TE_OK) {
        shape_str(&a->shape, sa, sizeof sa);
        shape_str(&b->shape, sb, sizeof sb);
        return bad(I, n, TE_ESHAPE, "shapes %s and %s do not broadcast", sa, sb);
    }
    if (a->is_const && b->is_const) /* the dispatch folds these first */
        return bad(I, n, TE_EINVAL, "internal: constant operands reached the device lowering");
    if (op == TE_OP_ADD || op == TE_OP_SUB) {
        ival *x = a->is_const ? b : a, *c = a->is_const ? a : b;
        if (numel(&os) == numel(&x->shape)) {
            int r = try_fold_bias(I, x, c, op == TE_OP_SUB, c == b);
            if (r < 0)
                return nomem(I);
            if (r > 0)
                return alias(I, x, out_name(n));
        }
    }
    int ids[2];
    if ((st = rt_id(I, a, &ids[0])) || (st = rt_id(I, b, &ids[1])))
        return st;
    te_node t;
    node_init(&t, op, nname(n));
    return emit(I, &t, ids, 2, out_name(n), &os, NULL);
}

/* ------------------------------------------------------------------ */
/* other constant folding helpers (shape arithmetic in torch exports) */

static te_status op_shape(imp *I, onode *n)
{
    ival *x;
    te_status st;
    if ((st = in_req(I, n, 0, &x)))
        return st;
    int r = x->shape.ndim;
    int64_t s0 = attr_i(n, "start", 0), e0 = attr_i(n, "end", r);
    if (s0 < 0)
        s0 += r;
    if (e0 < 0)
        e0 += r;
    s0 = s0 < 0 ? 0 : s0 > r ? r : s0;
    e0 = e0 < 0 ? 0 : e0 > r ? r : e0;
    int64_t k = e0 > s0 ? e0 - s0 : 0;
    int64_t *iv = malloc((size_t)(k ? k : 1) * sizeof *iv);
    if (!iv)
        return nomem(I);
    for (int64_t j = 0; j < k; j++)
        iv[j] = x->shape.d[s0 + j];
    te_shape os = {.ndim = 1, .d = {k}};
    return new_const(I, out_name(n), &os, NULL, iv);
}

static te_status op_gather(imp *I, onode *n)
{
    ival *x, *ix;
    te_status st;
    if ((st = in_const(I, n, 0, 1, &x, "Gather data")) || (st = in_const(I, n, 1, 1, &ix, "Gather indices")))
        return st;
    int64_t axis = attr_i(n, "axis", 0);
    if (norm_axis(&axis, x->shape.ndim))
        return bad(I, n, TE_EINVAL, "axis out of range");
    te_shape os = {0};
    if (x->shape.ndim - 1 + ix->shape.ndim > TE_MAX_DIMS)
        return bad(I, n, TE_EUNSUPPORTED, "result rank too large");
    for (int j = 0; j < axis; j++)
        os.d[os.ndim++] = x->shape.d[j];
    for (int j = 0; j < ix->shape.ndim; j++)
        os.d[os.ndim++] = ix->shape.d[j];
    for (int j = (int)axis + 1; j < x->shape.ndim; j++)
        os.d[os.ndim++] = x->shape.d[j];
    int64_t outer = 1, inner = 1, dim = x->shape.d[axis], ni = numel(&ix->shape);
    for (int j = 0; j < axis; j++)
        outer *= x->shape.d[j];
    for (int j = (int)axis + 1; j < x->shape.ndim; j++)
        inner *= x->shape.d[j];
    int64_t ne = numel(&os);
    float *f = x->is_int ? NULL : malloc((size_t)(ne ? ne : 1) * sizeof *f);
    int64_t *iv = x->is_int ? malloc((size_t)(ne ? ne : 1) * sizeof *iv) : NULL;
    if (!f && !iv)
        return nomem(I);
    int64_t k = 0;
    for (int64_t o = 0; o < outer; o++)
        for (int64_t q = 0; q < ni; q++) {
            int64_t id = cget_i(ix, q);
            if (id < 0)
                id += dim;
            if (id < 0 || id >= dim) {
                free(f);
                free(iv);
                return bad(I, n, TE_EINVAL, "index out of range");
            }
            for (int64_t r = 0; r < inner; r++, k++) {
                int64_t src = (o * dim + id) * inner + r;
                if (iv)
                    iv[k] = x->i[src];
                else
                    f[k] = x->f[src];
            }
        }
    return new_const(I, out_name(n), &os, f, iv);
}

static te_status op_cast(imp *I, onode *n)
{
    ival *x;
    te_status st;
    if ((st = in_req(I, n, 0, &x)))
        return st;
    int64_t to = attr_i(n, "to", 1);
    int to_float = to == ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT || to == ONNX__TENSOR_PROTO__DATA_TYPE__DOUBLE;
    if (!x->is_const) {
        if (!to_float)
            return bad(I, n, TE_EUNSUPPORTED, "casting an activation to data type %lld", (long long)to);
        return reshape_to(I, n, x, &x->shape);
    }
    int64_t ne = numel(&x->shape);
    if (to_float) {
        float *f = const_floats(x);
        return f ? new_const(I, out_name(n), &x->shape, f, NULL) : nomem(I);
    }
    int64_t *iv = malloc((size_t)(ne ? ne : 1) * sizeof *iv);
    if (!iv)
        return nomem(I);
    for (int64_t k = 0; k < ne; k++)
        iv[k] = cget_i(x, k);
    return new_const(I, out_name(n), &x->shape, NULL, iv);
}

static te_status op_constant_of_shape(imp *I, onode *n)
{
    ival *s;
    te_status st;
    if ((st = in_const(I, n, 0, 1, &s, "the shape")))
        return st;
    int64_t k = numel(&s->shape);
    if (k > TE_MAX_DIMS)
        return bad(I, n, TE_EUNSUPPORTED, "rank too large");
    te_shape os = {.ndim = (int)k};
    for (int j = 0; j < (int)k; j++)
        os.d[j] = cget_i(s, j);
    int64_t ne = numel(&os);
    if (ne < 0 || ne > MAX_NUMEL)
        return bad(I, n, TE_ESHAPE, "bad shape");
    double val = 0;
    int isint = 0;
    const Onnx__AttributeProto *a = attr(n, "value");
    if (a && a->t) {
        ival *tv;
        if ((st = load_tensor(I, a->t, "value", &tv)))
            return st;
        if (numel(&tv->shape) >= 1)
            val = cget(tv, 0);
        isint = tv->is_int;
        ival_free(tv);
    }
    float *f = isint ? NULL : malloc((size_t)(ne ? ne : 1) * sizeof *f);
    int64_t *iv = isint ? malloc((size_t)(ne ? ne : 1) * sizeof *iv) : NULL;
    if (!f && !iv)
        return nomem(I);
    for (int64_t j = 0; j < ne; j++) {
        if (iv)
            iv[j] = d2i(val);
        else
            f[j] = (float)val;
    }
    return new_const(I, out_name(n), &os, f, iv);
}

static te_status op_constant(imp *I, onode *n)
{
    const Onnx__AttributeProto *a;
    te_shape s = {0};
    if ((a = attr(n, "value")) && a->t) {
        ival *v;
        te_status st = load_tensor(I, a->t, out_name(n), &v);
        if (st)
            return bad(I, n, st, "%s", I->err ? I->err->msg : "bad tensor");
        return add_ival(I, v);
    }
    if ((a = attr(n, "value_float")) && a->has_f) {
        float *f = malloc(sizeof *f);
        if (!f)
            return nomem(I);
        f[0] = a->f;
        return new_const(I, out_name(n), &s, f, NULL);
    }
    if ((a = attr(n, "value_int")) && a->has_i) {
        int64_t *iv = malloc(sizeof *iv);
        if (!iv)
            return nomem(I);
        iv[0] = a->i;
        return new_const(I, out_name(n), &s, NULL, iv);
    }
    if ((a = attr(n, "value_floats"))) {
        s.ndim = 1;
        s.d[0] = (int64_t)a->n_floats;
        float *f = malloc((a->n_floats ? a->n_floats : 1) * sizeof *f);
        if (!f)
            return nomem(I);
        if (a->n_floats)
            memcpy(f, a->floats, a->n_floats * sizeof *f);
        return new_const(I, out_name(n), &s, f, NULL);
    }
    if ((a = attr(n, "value_ints"))) {
        s.ndim = 1;
        s.d[0] = (int64_t)a->n_ints;
        int64_t *iv = malloc((a->n_ints ? a->n_ints : 1) * sizeof *iv);
        if (!iv)
            return nomem(I);
        if (a->n_ints)
            memcpy(iv, a->ints, a->n_ints * sizeof *iv);
        return new_const(I, out_name(n), &s, NULL, iv);
    }
    return bad(I, n, TE_EUNSUPPORTED, "only tensor, float(s) and int(s) constants are supported");
}

/* ------------------------------------------------------------------ */
/* Transpose, Concat */

static te_status transpose_shape(imp *I, onode *n, const te_shape *s, const int64_t *perm, te_shape *os)
{
    int seen[TE_MAX_DIMS] = {0};
    os->ndim = s->ndim;
    for (int j = 0; j < s->ndim; j++) {
        if (perm[j] < 0 || perm[j] >= s->ndim || seen[perm[j]])
            return bad(I, n, TE_EINVAL, "invalid permutation");
        seen[perm[j]] = 1;
        os->d[j] = s->d[perm[j]];
    }
    return TE_OK;
}

static te_status emit_transpose(imp *I, onode *n, const char *tname, int in_id, const te_shape *s,
                                const int64_t *perm, const char *oname, ival **out)
{
    te_shape os;
    te_status st = transpose_shape(I, n, s, perm, &os);
    if (st)
        return st;
    te_node t;
    node_init(&t, TE_OP_TRANSPOSE, tname);
    t.ints = (int64_t *)perm;
    t.n_ints = s->ndim;
    return emit1(I, &t, in_id, oname, &os, out);
}

static te_status op_transpose(imp *I, onode *n)
{
    ival *x;
    te_status st;
    if ((st = in_req(I, n, 0, &x)))
        return st;
    int r = x->shape.ndim;
    int64_t perm[TE_MAX_DIMS];
    int np = attr_ints(n, "perm", perm, TE_MAX_DIMS);
    if (np < 0)
        for (int j = 0; j < r; j++)
            perm[j] = r - 1 - j;
    else if (np != r)
        return bad(I, n, TE_EINVAL, "perm has %d entries for rank %d", np, r);
    if (!x->is_const)
        return emit_transpose(I, n, nname(n), x->id, &x->shape, perm, out_name(n), NULL);
    te_shape os;
    if ((st = transpose_shape(I, n, &x->shape, perm, &os)))
        return st;
    int64_t ne = numel(&os);
    float *f = x->is_int ? NULL : malloc((size_t)(ne ? ne : 1) * sizeof *f);
    int64_t *iv = x->is_int ? malloc((size_t)(ne ? ne : 1) * sizeof *iv) : NULL;
    if (!f && !iv)
        return nomem(I);
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
    return new_const(I, out_name(n), &os, f, iv);
}

static te_status op_concat(imp *I, onode *n)
{
    if (n->n_input < 1)
        return bad(I, n, TE_EFORMAT, "no inputs");
    ival **xs = calloc(n->n_input, sizeof *xs);
    int *ids = calloc(n->n_input, sizeof *ids);
    te_status st = TE_OK;
    if (!xs || !ids) {
        st = nomem(I);
        goto out;
    }
    int all_const = 1, all_int = 1;
    for (size_t k = 0; k < n->n_input && st == TE_OK; k++) {
        st = in_req(I, n, k, &xs[k]);
        if (st == TE_OK) {
            all_const &= xs[k]->is_const;
            all_int &= xs[k]->is_int;
        }
    }
    if (st)
        goto out;
    int r = xs[0]->shape.ndim;
    int64_t axis = attr_i(n, "axis", 0);
    if (norm_axis(&axis, r)) {
        st = bad(I, n, TE_EINVAL, "axis out of range");
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
            st = bad(I, n, TE_ESHAPE, "input %zu has an incompatible shape", k);
            goto out;
        }
        os.d[axis] += s->d[axis];
    }
    if (all_const) {
        int64_t ne = numel(&os), outer = 1, inner = 1;
        for (int j = 0; j < axis; j++)
            outer *= os.d[j];
        for (int j = (int)axis + 1; j < r; j++)
            inner *= os.d[j];
        float *f = all_int ? NULL : malloc((size_t)(ne ? ne : 1) * sizeof *f);
        int64_t *iv = all_int ? malloc((size_t)(ne ? ne : 1) * sizeof *iv) : NULL;
        if (!f && !iv) {
            st = nomem(I);
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
                        f[q] = (float)cget(xs[k], o * len + j);
                }
            }
        st = new_const(I, out_name(n), &os, f, iv);
        goto out;
    }
    for (size_t k = 0; k < n->n_input && st == TE_OK; k++)
        st = rt_id(I, xs[k], &ids[k]);
    if (st == TE_OK) {
        te_node t;
        node_init(&t, TE_OP_CONCAT, nname(n));
        t.axis = axis;
        st = emit(I, &t, ids, (int)n->n_input, out_name(n), &os, NULL);
    }
out:
    free(xs);
    free(ids);
    return st;
}

/* ------------------------------------------------------------------ */
/* element-wise activations */

static te_status rt_input(imp *I, onode *n, ival **x)
{
    te_status st = in_req(I, n, 0, x);
    if (st == TE_OK && (*x)->is_const)
        return bad(I, n, TE_EUNSUPPORTED, "a constant input ('%s') is not supported for this op", (*x)->name);
    return st;
}

static te_status op_unary(imp *I, onode *n, te_op op)
{
    ival *x;
    te_status st;
    if ((st = rt_input(I, n, &x)))
        return st;
    te_node t;
    node_init(&t, op, nname(n));
    switch (op) {
    case TE_OP_LEAKY_RELU: t.alpha = attr_f(n, "alpha", 0.01f); break;
    case TE_OP_HARD_SIGMOID:
        t.alpha = attr_f(n, "alpha", 0.2f);
        t.beta = attr_f(n, "beta", 0.5f);
        break;
    default: break;
    }
    return emit1(I, &t, x->id, out_name(n), &x->shape, NULL);
}

static te_status op_prelu(imp *I, onode *n)
{
    ival *x, *sl;
    te_status st;
    if ((st = rt_input(I, n, &x)) || (st = in_const(I, n, 1, 1, &sl, "the slope")))
        return st;
    te_shape os;
    if (bcast(&x->shape, &sl->shape, &os) || numel(&os) != numel(&x->shape))
        return bad(I, n, TE_ESHAPE, "slope does not broadcast to the input");
    int ids[2] = {x->id, 0};
    if ((st = rt_id(I, sl, &ids[1])))
        return st;
    te_node t;
    node_init(&t, TE_OP_PRELU, nname(n));
    return emit(I, &t, ids, 2, out_name(n), &x->shape, NULL);
}

static te_status op_clip(imp *I, onode *n)
{
    ival *x, *lo, *hi;
    te_status st;
    if ((st = rt_input(I, n, &x)) || (st = in_const(I, n, 1, 0, &lo, "min")) ||
        (st = in_const(I, n, 2, 0, &hi, "max")))
        return st;
    te_node t;
    node_init(&t, TE_OP_CLIP, nname(n));
    t.fmin = attr_f(n, "min", -FLT_MAX);
    t.fmax = attr_f(n, "max", FLT_MAX);
    if (lo) {
        if (numel(&lo->shape) != 1)
            return bad(I, n, TE_EINVAL, "min must be a scalar");
        t.fmin = (float)cget(lo, 0);
    }
    if (hi) {
        if (numel(&hi->shape) != 1)
            return bad(I, n, TE_EINVAL, "max must be a scalar");
        t.fmax = (float)cget(hi, 0);
    }
    return emit1(I, &t, x->id, out_name(n), &x->shape, NULL);
}

/* ------------------------------------------------------------------ */
/* Conv and pooling geometry */

typedef struct geom2 {
    int64_t k[2], s[2], d[2], pads[4]; /* pads: top, left, bottom, right */
} geom2;

static te_status read_geom(imp *I, onode *n, const int64_t in_hw[2], int ceil_mode, geom2 *g, int64_t out_hw[2])
{
    int64_t tmp[8];
    int c;
    g->s[0] = g->s[1] = g->d[0] = g->d[1] = 1;
    memset(g->pads, 0, sizeof g->pads);
    if ((c = attr_ints(n, "strides", tmp, 8)) >= 0) {
        if (c != 2)
            return bad(I, n, TE_EUNSUPPORTED, "strides must have 2 entries (2-D only)");
        g->s[0] = tmp[0];
        g->s[1] = tmp[1];
    }
    if ((c = attr_ints(n, "dilations", tmp, 8)) >= 0) {
        if (c != 2)
            return bad(I, n, TE_EUNSUPPORTED, "dilations must have 2 entries (2-D only)");
        g->d[0] = tmp[0];
        g->d[1] = tmp[1];
    }
    if ((c = attr_ints(n, "pads", tmp, 8)) >= 0) {
        if (c != 4)
            return bad(I, n, TE_EUNSUPPORTED, "pads must have 4 entries (2-D only)");
        for (int j = 0; j < 4; j++)
            g->pads[j] = tmp[j];
    }
    for (int j = 0; j < 2; j++)
        if (g->s[j] < 1 || g->d[j] < 1 || g->k[j] < 1 || g->pads[j] < 0 || g->pads[j + 2] < 0 ||
            g->s[j] > GEOM_MAX || g->d[j] > GEOM_MAX || g->k[j] > GEOM_MAX || g->pads[j] > GEOM_MAX ||
            g->pads[j + 2] > GEOM_MAX)
            return bad(I, n, TE_EINVAL, "invalid kernel, stride, dilation or pads");
    int upper = attr_s_is(n, "auto_pad", "NOTSET", "SAME_UPPER");
    int lower = attr_s_is(n, "auto_pad", "NOTSET", "SAME_LOWER");
    int valid = attr_s_is(n, "auto_pad", "NOTSET", "VALID");
    if (!upper && !lower && !valid && !attr_s_is(n, "auto_pad", "NOTSET", "NOTSET")) {
        char buf[64];
        attr_s_copy(n, "auto_pad", buf, sizeof buf);
        return bad(I, n, TE_EUNSUPPORTED, "auto_pad '%s' is not supported", buf);
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
            return bad(I, n, TE_ESHAPE, "kernel larger than the padded input");
        int64_t o = ceil_mode ? (num + g->s[j] - 1) / g->s[j] + 1 : num / g->s[j] + 1;
        /* the last window must start inside the input or its begin padding */
        if (ceil_mode && (o - 1) * g->s[j] >= in_hw[j] + g->pads[j])
            o--;
        out_hw[j] = o;
    }
    return TE_OK;
}

static te_status need_4d(imp *I, onode *n, const ival *x)
{
    if (x->shape.ndim != 4) {
        char sb[128];
        shape_str(&x->shape, sb, sizeof sb);
        return bad(I, n, TE_EUNSUPPORTED, "only 2-D (NCHW) inputs are supported, got %s", sb);
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
        return nomem(I);
    }
    te_node t;
    node_init(&t, TE_OP_LINEAR, L->name);
    t.layer = li;
    return emit1(I, &t, in_id, oname, os, out);
}

static float *copy_floats(const float *src, int64_t n)
{
    float *f = malloc((size_t)(n ? n : 1) * sizeof *f);
    if (f && n)
        memcpy(f, src, (size_t)n * sizeof *f);
    return f;
}

static te_status op_conv(imp *I, onode *n)
{
    ival *x, *w, *b;
    te_status st;
    if ((st = rt_input(I, n, &x)) || (st = in_const(I, n, 1, 1, &w, "the weight")) ||
        (st = in_const(I, n, 2, 0, &b, "the bias")) || (st = need_4d(I, n, x)))
        return st;
    if (w->is_int || w->shape.ndim != 4)
        return bad(I, n, TE_EUNSUPPORTED, "weight must be a 4-D float tensor (2-D convolution)");
    int64_t group = attr_i(n, "group", 1);
    int64_t C = x->shape.d[1], M = w->shape.d[0];
    if (group < 1 || C % group || M % group || w->shape.d[1] * group != C)
        return bad(I, n, TE_ESHAPE, "channels (%lld in, %lld out, weight %lld per group) do not fit group %lld",
                   (long long)C, (long long)M, (long long)w->shape.d[1], (long long)group);
    geom2 g;
    g.k[0] = w->shape.d[2];
    g.k[1] = w->shape.d[3];
    int64_t ks[8];
    int c = attr_ints(n, "kernel_shape", ks, 8);
    if (c >= 0 && (c != 2 || ks[0] != g.k[0] || ks[1] != g.k[1]))
        return bad(I, n, TE_ESHAPE, "kernel_shape does not match the weight");
    int64_t out_hw[2];
    if ((st = read_geom(I, n, &x->shape.d[2], 0, &g, out_hw)))
        return st;
    if (b && (numel(&b->shape) != M || b->is_int))
        return bad(I, n, TE_ESHAPE, "bias must have %lld floats", (long long)M);
    te_layer L;
    memset(&L, 0, sizeof L);
    L.name = (char *)nname(n);
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
    L.w_float = copy_floats(w->f, numel(&w->shape));
    L.bias = b ? copy_floats(b->f, M) : NULL;
    if (!L.w_float || (b && !L.bias)) {
        free(L.w_float);
        free(L.bias);
        return nomem(I);
    }
    te_shape os = {.ndim = 4, .d = {G->batch, M, out_hw[0], out_hw[1]}};
    return add_linear(I, n, &L, x->id, out_name(n), &os, NULL);
}

static te_status op_pool(imp *I, onode *n, te_op op)
{
    ival *x;
    te_status st;
    if ((st = rt_input(I, n, &x)) || (st = need_4d(I, n, x)) || (st = only_first_output(I, n)))
        return st;
    te_node t;
    node_init(&t, op, nname(n));
    te_shape os = x->shape;
    if (op == TE_OP_GLOBAL_AVGPOOL) {
        os.d[2] = os.d[3] = 1;
        return emit1(I, &t, x->id, out_name(n), &os, NULL);
    }
    geom2 g;
    int64_t ks[8];
    if (attr_ints(n, "kernel_shape", ks, 8) != 2)
        return bad(I, n, TE_EUNSUPPORTED, "kernel_shape must have 2 entries (2-D pooling)");
    g.k[0] = ks[0];
    g.k[1] = ks[1];
    if (op == TE_OP_MAXPOOL && attr_i(n, "storage_order", 0) != 0)
        return bad(I, n, TE_EUNSUPPORTED, "storage_order=1 is not supported");
    t.ceil_mode = (int)attr_i(n, "ceil_mode", 0);
    int64_t out_hw[2];
    if ((st = read_geom(I, n, &x->shape.d[2], t.ceil_mode, &g, out_hw)))
        return st;
    if (op == TE_OP_AVGPOOL) {
        t.count_include_pad = (int)attr_i(n, "count_include_pad", 0);
        if (g.d[0] != 1 || g.d[1] != 1)
            return bad(I, n, TE_EUNSUPPORTED, "dilated average pooling is not supported");
    }
    for (int j = 0; j < 2; j++) {
        t.kernel[j] = g.k[j];
        t.stride[j] = g.s[j];
        t.dilation[j] = g.d[j];
    }
    memcpy(t.pads, g.pads, sizeof t.pads);
    os.d[2] = out_hw[0];
    os.d[3] = out_hw[1];
    return emit1(I, &t, x->id, out_name(n), &os, NULL);
}

/* ------------------------------------------------------------------ */
/* Gemm, MatMul, BatchNormalization */

static te_status op_gemm(imp *I, onode *n)
{
    ival *a, *b, *c;
    te_status st;
    if ((st = in_req(I, n, 0, &a)) || (st = in_req(I, n, 1, &b)) || (st = in_const(I, n, 2, 0, &c, "C")))
        return st;
    if (a->is_const || !b->is_const)
        return bad(I, n, TE_EUNSUPPORTED, "only activation x constant-weight products are supported");
    if (a->shape.ndim != 2 || b->shape.ndim != 2 || b->is_int)
        return bad(I, n, TE_ESHAPE, "A and B must be 2-D");
    float alpha = attr_f(n, "alpha", 1.0f), beta = attr_f(n, "beta", 1.0f);
    int ta = (int)attr_i(n, "transA", 0), tb = (int)attr_i(n, "transB", 0);
    int64_t M = ta ? a->shape.d[1] : a->shape.d[0], K = ta ? a->shape.d[0] : a->shape.d[1];
    int64_t KB = tb ? b->shape.d[1] : b->shape.d[0], N = tb ? b->shape.d[0] : b->shape.d[1];
    if (K != KB)
        return bad(I, n, TE_ESHAPE, "inner dimensions differ (%lld vs %lld)", (long long)K, (long long)KB);
    float *bias = NULL;
    if (c) {
        const te_shape *cs = &c->shape;
        int64_t cn = numel(cs);
        int ok = cn == 1 || (cs->ndim >= 1 && cs->d[cs->ndim - 1] == N && cn == N);
        if (!ok)
            return bad(I, n, TE_EUNSUPPORTED, "C must be a scalar, [N] or [1,N] (N=%lld)", (long long)N);
        bias = malloc((size_t)N * sizeof *bias);
        if (!bias)
            return nomem(I);
        for (int64_t o = 0; o < N; o++)
            bias[o] = (float)(beta * cget(c, cn == 1 ? 0 : o));
    }
    float *w = malloc((size_t)(N * K) * sizeof *w);
    if (!w) {
        free(bias);
        return nomem(I);
    }
    for (int64_t o = 0; o < N; o++)
        for (int64_t k = 0; k < K; k++)
            w[o * K + k] = alpha * b->f[tb ? o * K + k : k * N + o];
    int in_id = a->id;
    if (ta) {
        static const int64_t perm[2] = {1, 0};
        char tn[300];
        snprintf(tn, sizeof tn, "%s/transA", nname(n));
        ival *tv;
        if ((st = emit_transpose(I, n, tn, a->id, &a->shape, perm, tn, &tv))) {
            free(w);
            free(bias);
            return st;
        }
        in_id = tv->id;
    }
    te_layer L;
    memset(&L, 0, sizeof L);
    L.name = (char *)nname(n);
    L.geom = (te_linear_geom){.kind = TE_LIN_FC, .batch = M, .in_c = K, .in_h = 1, .in_w = 1, .out_c = N,
                              .out_h = 1, .out_w = 1, .k_h = 1, .k_w = 1, .stride_h = 1, .stride_w = 1,
                              .dil_h = 1, .dil_w = 1, .group = 1};
    L.w_float = w;
    L.bias = bias;
    te_shape os = {.ndim = 2, .d = {M, N}};
    return add_linear(I, n, &L, in_id, out_name(n), &os, NULL);
}

static te_status op_matmul(imp *I, onode *n)
{
    ival *a, *b;
    te_status st;
    if ((st = in_req(I, n, 0, &a)) || (st = in_req(I, n, 1, &b)))
        return st;
    int right = !a->is_const && b->is_const, left = a->is_const && !b->is_const;
    if (!right && !left)
        return bad(I, n, TE_EUNSUPPORTED, "exactly one operand must be a constant");
    ival *wc = right ? b : a, *x = right ? a : b;
    if (wc->shape.ndim != 2 || wc->is_int)
        return bad(I, n, TE_EUNSUPPORTED, "the constant operand must be a 2-D float matrix");
    te_layer L;
    memset(&L, 0, sizeof L);
    L.name = (char *)nname(n);
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
            return bad(I, n, TE_ESHAPE, "last dimension of A must be %lld", (long long)K);
        rows = numel(&x->shape) / K;
        os = x->shape;
        os.d[os.ndim - 1] = N;
        w = malloc((size_t)(N * K) * sizeof *w);
        if (!w)
            return nomem(I);
        for (int64_t o = 0; o < N; o++)
            for (int64_t k = 0; k < K; k++)
                w[o * K + k] = W[k * N + o];
    } else {
        /* A [M, K] . x [..., K, N] = transpose(x^T . A^T) */
        int r = x->shape.ndim;
        int64_t M = wc->shape.d[0];
        K = wc->shape.d[1];
        if (r < 2 || x->shape.d[r - 2] != K)
            return bad(I, n, TE_ESHAPE, "B must be [..., %lld, N]", (long long)K);
        int64_t perm[TE_MAX_DIMS];
        for (int j = 0; j < r; j++)
            perm[j] = j;
        perm[r - 2] = r - 1;
        perm[r - 1] = r - 2;
        char tn[300];
        snprintf(tn, sizeof tn, "%s/transB", nname(n));
        ival *tv;
        if ((st = emit_transpose(I, n, tn, x->id, &x->shape, perm, tn, &tv)))
            return st;
        in_id = tv->id;
        rows = numel(&x->shape) / K;
        N = M;
        os = tv->shape;
        os.d[r - 1] = M;
        w = copy_floats(W, M * K);
        if (!w)
            return nomem(I);
    }
    L.geom = (te_linear_geom){.kind = TE_LIN_FC, .batch = rows, .in_c = K, .in_h = 1, .in_w = 1, .out_c = N,
                              .out_h = 1, .out_w = 1, .k_h = 1, .k_w = 1, .stride_h = 1, .stride_w = 1,
                              .dil_h = 1, .dil_w = 1, .group = 1};
    L.w_float = w;
    if (right)
        return add_linear(I, n, &L, in_id, out_name(n), &os, NULL);
    char ln[300];
    snprintf(ln, sizeof ln, "%s/linear", nname(n));
    ival *lv;
    if ((st = add_linear(I, n, &L, in_id, ln, &os, &lv)))
        return st;
    int r = os.ndim;
    int64_t perm[TE_MAX_DIMS];
    for (int j = 0; j < r; j++)
        perm[j] = j;
    perm[r - 2] = r - 1;
    perm[r - 1] = r - 2;
    return emit_transpose(I, n, nname(n), lv->id, &lv->shape, perm, out_name(n), NULL);
}

static te_status op_batchnorm(imp *I, onode *n)
{
    ival *x, *p[4];
    static const char *what[4] = {"scale", "B", "mean", "var"};
    te_status st;
    if ((st = rt_input(I, n, &x)) || (st = only_first_output(I, n)))
        return st;
    if (attr_i(n, "training_mode", 0))
        return bad(I, n, TE_EUNSUPPORTED, "training mode is not supported");
    if (I->opset < 9 && attr_i(n, "spatial", 1) == 0) /* opsets 7, 8: per-element statistics */
        return bad(I, n, TE_EUNSUPPORTED, "spatial=0 (per-element statistics) is not supported");
    if (x->shape.ndim < 2)
        return bad(I, n, TE_ESHAPE, "input must have a channel axis");
    int64_t C = x->shape.d[1];
    for (int k = 0; k < 4; k++) {
        if ((st = in_const(I, n, (size_t)k + 1, 1, &p[k], what[k])))
            return st;
        if (numel(&p[k]->shape) != C)
            return bad(I, n, TE_ESHAPE, "%s must have %lld entries", what[k], (long long)C);
    }
    double eps = attr_f(n, "epsilon", 1e-5f);
    double *sc = malloc((size_t)C * sizeof *sc), *sh = malloc((size_t)C * sizeof *sh);
    if (!sc || !sh) {
        free(sc);
        free(sh);
        return nomem(I);
    }
    for (int64_t c = 0; c < C; c++) {
        double g = cget(p[0], c), be = cget(p[1], c), mu = cget(p[2], c), var = cget(p[3], c);
        sc[c] = g / sqrt(var + eps);
        sh[c] = be - mu * sc[c];
    }
    /* fold into the producing linear layer when the layer's output feeds only us */
    int pr = producer(I, x->id);
    if (pr >= 0 && I->m->nodes[pr].op == TE_OP_LINEAR && use_count(I, x->name) == 1) {
        te_layer *L = &I->m->layers[I->m->nodes[pr].layer];
        int chan_ok = L->geom.out_c == C &&
                      (L->geom.kind == TE_LIN_CONV ? x->shape.ndim == 4 : x->shape.ndim == 2);
        if (chan_ok) {
            if (!L->bias && !(L->bias = calloc((size_t)C, sizeof *L->bias))) {
                free(sc);
                free(sh);
                return nomem(I);
            }
            int64_t per = te_geom_weight_len(&L->geom) / C;
            for (int64_t c = 0; c < C; c++) {
                for (int64_t k = 0; k < per; k++)
                    L->w_float[c * per + k] = (float)(L->w_float[c * per + k] * sc[c]);
                L->bias[c] = (float)((L->bias[c] - cget(p[2], c)) * sc[c] + cget(p[1], c));
            }
            free(sc);
            free(sh);
            return alias(I, x, out_name(n));
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
        return nomem(I);
    }
    for (int64_t c = 0; c < C; c++) {
        fs[c] = (float)sc[c];
        fb[c] = (float)sh[c];
    }
    free(sc);
    free(sh);
    char nm[300];
    int ids[2];
    snprintf(nm, sizeof nm, "%s/scale", nname(n));
    ids[1] = te_model_add_value(I->m, nm, &cs, fs);
    if (ids[1] < 0) {
        free(fs);
        free(fb);
        return nomem(I);
    }
    ids[0] = x->id;
    te_node t;
    node_init(&t, TE_OP_MUL, nm);
    ival *mv;
    if ((st = emit(I, &t, ids, 2, nm, &x->shape, &mv))) {
        free(fb);
        return st;
    }
    snprintf(nm, sizeof nm, "%s/shift", nname(n));
    ids[1] = te_model_add_value(I->m, nm, &cs, fb);
    if (ids[1] < 0) {
        free(fb);
        return nomem(I);
    }
    ids[0] = mv->id;
    node_init(&t, TE_OP_ADD, nname(n));
    return emit(I, &t, ids, 2, out_name(n), &x->shape, NULL);
}

/* ------------------------------------------------------------------ */
/* Softmax, Pad, LRN, LpNormalization, ReduceL2 */

static te_status op_softmax(imp *I, onode *n)
{
    ival *x;
    te_status st;
    if ((st = rt_input(I, n, &x)))
        return st;
    int r = x->shape.ndim;
    int64_t axis = attr_i(n, "axis", I->opset >= 13 ? -1 : 1);
    if (norm_axis(&axis, r))
        return bad(I, n, TE_EINVAL, "axis %lld out of range", (long long)axis);
    te_node t;
    node_init(&t, TE_OP_SOFTMAX, nname(n));
    if (I->opset >= 13 || axis == r - 1) {
        t.axis = axis;
        return emit1(I, &t, x->id, out_name(n), &x->shape, NULL);
    }
    /* opset < 13: softmax over the flattened [d0*..*d(axis-1), rest] view */
    te_shape s2 = {.ndim = 2, .d = {1, 1}};
    for (int j = 0; j < r; j++)
        s2.d[j < axis ? 0 : 1] *= x->shape.d[j];
    char nm[300];
    ival *a, *b;
    te_node rs;
    snprintf(nm, sizeof nm, "%s/flat", nname(n));
    node_init(&rs, TE_OP_RESHAPE, nm);
    if ((st = emit1(I, &rs, x->id, nm, &s2, &a)))
        return st;
    snprintf(nm, sizeof nm, "%s/2d", nname(n));
    t.axis = 1;
    if ((st = emit1(I, &t, a->id, nm, &s2, &b)))
        return st;
    snprintf(nm, sizeof nm, "%s/unflat", nname(n));
    node_init(&rs, TE_OP_RESHAPE, nm);
    return emit1(I, &rs, b->id, out_name(n), &x->shape, NULL);
}

static te_status op_pad(imp *I, onode *n)
{
    ival *x, *pi, *cv, *ax;
    te_status st;
    if ((st = rt_input(I, n, &x)) || (st = in_const(I, n, 1, 0, &pi, "pads")) ||
        (st = in_const(I, n, 2, 0, &cv, "constant_value")) || (st = in_const(I, n, 3, 0, &ax, "axes")))
        return st;
    int r = x->shape.ndim;
    int64_t raw[2 * TE_MAX_DIMS], pads[2 * TE_MAX_DIMS] = {0};
    int np;
    if (pi) {
        int64_t k = numel(&pi->shape);
        if (k > 2 * TE_MAX_DIMS)
            return bad(I, n, TE_EINVAL, "too many pads");
        np = (int)k;
        for (int j = 0; j < np; j++)
            raw[j] = cget_i(pi, j);
    } else {
        np = attr_ints(n, "pads", raw, 2 * TE_MAX_DIMS);
        if (np < 0)
            return bad(I, n, TE_EINVAL, "pads are missing");
    }
    int64_t axes[TE_MAX_DIMS];
    int na = r;
    for (int j = 0; j < r; j++)
        axes[j] = j;
    if (ax) {
        na = (int)numel(&ax->shape);
        if (na > r)
            return bad(I, n, TE_EINVAL, "too many axes");
        for (int j = 0; j < na; j++) {
            axes[j] = cget_i(ax, j);
            if (norm_axis(&axes[j], r))
                return bad(I, n, TE_EINVAL, "axis out of range");
        }
    }
    if (np != 2 * na)
        return bad(I, n, TE_EINVAL, "expected %d pads, got %d", 2 * na, np);
    for (int j = 0; j < na; j++) {
        pads[axes[j]] = raw[j];
        pads[axes[j] + r] = raw[j + na];
    }
    te_node t;
    node_init(&t, TE_OP_PAD, nname(n));
    if (attr_s_is(n, "mode", "constant", "constant"))
        t.pad_mode = TE_PAD_CONSTANT;
    else if (attr_s_is(n, "mode", "constant", "reflect"))
        t.pad_mode = TE_PAD_REFLECT;
    else if (attr_s_is(n, "mode", "constant", "edge"))
        t.pad_mode = TE_PAD_EDGE;
    else {
        char buf[64];
        attr_s_copy(n, "mode", buf, sizeof buf);
        return bad(I, n, TE_EUNSUPPORTED, "pad mode '%s' is not supported", buf);
    }
    t.pad_value = attr_f(n, "value", 0.0f);
    if (cv && numel(&cv->shape) >= 1)
        t.pad_value = (float)cget(cv, 0);
    te_shape os = x->shape;
    for (int j = 0; j < r; j++) {
        if (pads[j] < 0 || pads[j + r] < 0)
            return bad(I, n, TE_EUNSUPPORTED, "negative pads (cropping) are not supported");
        if (pads[j] > GEOM_MAX || pads[j + r] > GEOM_MAX)
            return bad(I, n, TE_EINVAL, "pads too large");
        if (t.pad_mode == TE_PAD_REFLECT && (pads[j] >= x->shape.d[j] || pads[j + r] >= x->shape.d[j]))
            return bad(I, n, TE_EINVAL, "reflect pads must be smaller than the dimension");
        os.d[j] += pads[j] + pads[j + r];
    }
    t.ints = pads;
    t.n_ints = 2 * r;
    return emit1(I, &t, x->id, out_name(n), &os, NULL);
}

static te_status op_lrn(imp *I, onode *n)
{
    ival *x;
    te_status st;
    if ((st = rt_input(I, n, &x)))
        return st;
    if (x->shape.ndim < 2)
        return bad(I, n, TE_ESHAPE, "input must have a channel axis");
    te_node t;
    node_init(&t, TE_OP_LRN, nname(n));
    t.size = attr_i(n, "size", 0);
    if (t.size < 1)
        return bad(I, n, TE_EINVAL, "size must be >= 1");
    t.alpha = attr_f(n, "alpha", 1e-4f);
    t.beta = attr_f(n, "beta", 0.75f);
    t.bias = attr_f(n, "bias", 1.0f);
    return emit1(I, &t, x->id, out_name(n), &x->shape, NULL);
}

static te_status op_lpnorm(imp *I, onode *n)
{
    ival *x;
    te_status st;
    if ((st = rt_input(I, n, &x)))
        return st;
    te_node t;
    node_init(&t, TE_OP_LPNORM, nname(n));
    t.axis = attr_i(n, "axis", -1);
    t.p = attr_i(n, "p", 2);
    if (norm_axis(&t.axis, x->shape.ndim))
        return bad(I, n, TE_EINVAL, "axis out of range");
    if (t.p != 1 && t.p != 2)
        return bad(I, n, TE_EUNSUPPORTED, "p must be 1 or 2");
    return emit1(I, &t, x->id, out_name(n), &x->shape, NULL);
}

#define REDUCE_PROD (-1) /* constants only: no device op */
#define REDUCE_MIN (-2)

/* A reduction of a constant, evaluated here (integers stay integers). */
static te_status fold_reduce(imp *I, onode *n, int op, ival *x, const int *mark, const te_shape *os)
{
    int r = x->shape.ndim;
    int64_t nout = numel(os), total = numel(&x->shape), ost[TE_MAX_DIMS], idx[TE_MAX_DIMS] = {0}, stride = 1;
    int isint = x->is_int && op != TE_OP_REDUCE_MEAN && op != TE_OP_REDUCE_L2;
    double *acc = malloc((size_t)(nout ? nout : 1) * sizeof *acc);
    int64_t *iacc = malloc((size_t)(nout ? nout : 1) * sizeof *iacc);
    if (!acc || !iacc) {
        free(acc);
        free(iacc);
        return nomem(I);
    }
    for (int64_t k = 0; k < nout; k++) {
        acc[k] = op == REDUCE_PROD ? 1 : op == TE_OP_REDUCE_MAX ? -INFINITY : op == REDUCE_MIN ? INFINITY : 0;
        iacc[k] = op == REDUCE_PROD ? 1 : op == TE_OP_REDUCE_MAX ? INT64_MIN : op == REDUCE_MIN ? INT64_MAX : 0;
    }
    for (int d = r - 1; d >= 0; d--) {
        ost[d] = mark[d] ? 0 : stride;
        if (!mark[d])
            stride *= x->shape.d[d];
    }
    int64_t o = 0;
    for (int64_t i = 0; i < total; i++) {
        double v = cget(x, i);
        int64_t iv = isint ? x->i[i] : 0;
        switch (op) {
        case REDUCE_PROD: acc[o] *= v; iacc[o] = (int64_t)((uint64_t)iacc[o] * (uint64_t)iv); break;
        case REDUCE_MIN: acc[o] = fmin(acc[o], v); iacc[o] = iv < iacc[o] ? iv : iacc[o]; break;
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
            return nomem(I);
        }
        double cnt = nout ? (double)total / (double)nout : 1;
        for (int64_t k = 0; k < nout; k++)
            f[k] = (float)(op == TE_OP_REDUCE_L2 ? sqrt(acc[k]) : op == TE_OP_REDUCE_MEAN ? acc[k] / cnt : acc[k]);
    }
    free(acc);
    return new_const(I, out_name(n), os, f, iacc);
}

static te_status op_reduce(imp *I, onode *n, int op)
{
    ival *x;
    int64_t axes[TE_MAX_DIMS];
    int na;
    te_status st;
    if ((st = in_req(I, n, 0, &x)) || (st = get_axes(I, n, 1, axes, &na)))
        return st;
    if (!x->is_const && op < 0)
        return te_errf(I->err, TE_EUNSUPPORTED,
                       "unsupported ONNX op '%s' in node '%s': it is folded on constants only, and an input is an "
                       "activation",
                       n->op_type, nname(n));
    int r = x->shape.ndim;
    int keep = (int)attr_i(n, "keepdims", 1);
    if (na <= 0) {
        if (attr_i(n, "noop_with_empty_axes", 0))
            return reshape_to(I, n, x, &x->shape);
        na = r;
        for (int j = 0; j < r; j++)
            axes[j] = j;
    }
    int mark[TE_MAX_DIMS] = {0};
    for (int j = 0; j < na; j++) {
        if (norm_axis(&axes[j], r) || mark[axes[j]])
            return bad(I, n, TE_EINVAL, "bad or repeated axis");
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
        return fold_reduce(I, n, op, x, mark, &os);
    te_node t;
    node_init(&t, (te_op)op, nname(n));
    t.ints = sorted;
    t.n_ints = ns;
    t.keepdims = keep;
    return emit1(I, &t, x->id, out_name(n), &os, NULL);
}

/* Tile: folded on constants; on an activation one Concat per repeated axis. */
static te_status op_tile(imp *I, onode *n)
{
    ival *x, *rp;
    te_status st;
    if ((st = in_req(I, n, 0, &x)) || (st = in_const(I, n, 1, 1, &rp, "repeats")))
        return st;
    int r = x->shape.ndim;
    if (numel(&rp->shape) != r)
        return bad(I, n, TE_EINVAL, "repeats must have %d entries", r);
    te_shape os = x->shape;
    for (int d = 0; d < r; d++) {
        int64_t k = cget_i(rp, d);
        if (k < 1 || k > MAX_NUMEL || os.d[d] * k > MAX_NUMEL)
            return bad(I, n, TE_EINVAL, "repeat %lld on axis %d", (long long)k, d);
        os.d[d] *= k;
    }
    if (numel(&os) > MAX_NUMEL)
        return bad(I, n, TE_ESHAPE, "output too large");
    if (x->is_const) {
        int64_t ne = numel(&os);
        float *f = x->is_int ? NULL : malloc((size_t)ne * sizeof *f);
        int64_t *iv = x->is_int ? malloc((size_t)ne * sizeof *iv) : NULL;
        if (!f && !iv)
            return nomem(I);
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
        return new_const(I, out_name(n), &os, f, iv);
    }
    ival *cur = x;
    int last = -1;
    for (int d = 0; d < r; d++)
        if (os.d[d] != x->shape.d[d])
            last = d;
    if (last < 0)
        return reshape_to(I, n, x, &x->shape);
    for (int d = 0; d <= last; d++) {
        int64_t k = os.d[d] / x->shape.d[d];
        if (k == 1)
            continue;
        int *ids = malloc((size_t)k * sizeof *ids);
        if (!ids)
            return nomem(I);
        for (int64_t j = 0; j < k; j++)
            ids[j] = cur->id;
        te_shape ns = cur->shape;
        ns.d[d] = os.d[d];
        char nm[300];
        snprintf(nm, sizeof nm, "%s/axis%d", nname(n), d);
        te_node t;
        node_init(&t, TE_OP_CONCAT, d == last ? nname(n) : nm);
        t.axis = d;
        st = emit(I, &t, ids, (int)k, d == last ? out_name(n) : nm, &ns, &cur);
        free(ids);
        if (st)
            return st;
    }
    return TE_OK;
}

/* ------------------------------------------------------------------ */
/* constant folding of element-wise ops (shape arithmetic, masks) */

typedef enum ew_code {
    EW_ADD, EW_SUB, EW_MUL, EW_DIV, EW_POW, EW_MOD, EW_MIN, EW_MAX, EW_EQUAL, EW_LESS, EW_LESS_EQ, EW_GREATER,
    EW_GREATER_EQ, EW_AND, EW_OR, EW_XOR, EW_WHERE, EW_NOT, EW_NEG, EW_ABS, EW_FLOOR, EW_CEIL, EW_SQRT, EW_RELU,
    EW_EXP, EW_LOG, EW_RECIP, EW_SIGMOID, EW_TANH, EW_ERF, EW_SIGN, EW_ROUND, EW_IDENT, EW_SOFTPLUS
} ew_code;

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
static te_status fold_ew(imp *I, onode *n, ew_code code, int n_in)
{
    ival *x[3] = {0};
    te_status st;
    te_shape os = {0};
    for (int k = 0; k < n_in; k++) {
        if ((st = in_req(I, n, (size_t)k, &x[k])))
            return st;
        te_shape t;
        if (bcast(&os, &x[k]->shape, &t))
            return bad(I, n, TE_ESHAPE, "constant operands do not broadcast");
        os = t;
    }
    /* integers stay integers (Where: its two value operands decide) */
    int isint = 1;
    for (int k = code == EW_WHERE ? 1 : 0; k < n_in; k++)
        isint &= x[k]->is_int;
    int out_int = isint || ew_bool(code);
    int64_t ne = numel(&os);
    float *f = out_int ? NULL : malloc((size_t)(ne ? ne : 1) * sizeof *f);
    int64_t *iv = out_int ? malloc((size_t)(ne ? ne : 1) * sizeof *iv) : NULL;
    if (!f && !iv)
        return nomem(I);
    for (int64_t k = 0; k < ne; k++) {
        int64_t ix[3] = {0};
        for (int j = 0; j < n_in; j++)
            ix[j] = bidx(&os, &x[j]->shape, k);
        if (isint) {
            int64_t a = x[0]->i[ix[0]], b = n_in > 1 ? x[1]->i[ix[1]] : 0, d = n_in > 2 ? x[2]->i[ix[2]] : 0;
            if (code == EW_WHERE)
                a = cget_i(x[0], ix[0]);
            if (ew_i(code, a, b, d, &iv[k])) {
                free(iv);
                return bad(I, n, TE_EINVAL, "integer division by zero in a constant");
            }
        } else {
            double a = cget(x[0], ix[0]), b = n_in > 1 ? cget(x[1], ix[1]) : 0, d = n_in > 2 ? cget(x[2], ix[2]) : 0;
            double r = ew_f(code, a, b, d);
            if (iv)
                iv[k] = d2i(r);
            else
                f[k] = (float)r;
        }
    }
    return new_const(I, out_name(n), &os, f, iv);
}

/* ------------------------------------------------------------------ */
/* Slice, Split, Range, Expand, Size (folded on constants, on the device otherwise) */

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
        if (norm_axis(&ax, s->ndim) || seen[ax])
            return bad(I, n, TE_EINVAL, "bad or repeated axis %lld", (long long)(ax0 ? ax0[j] : j));
        seen[ax] = 1;
        int64_t D = s->d[ax], b = st0[j], e = en0[j], t = sp0 ? sp0[j] : 1, cnt;
        if (t == 0)
            return bad(I, n, TE_EINVAL, "step 0");
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
            return bad(I, n, TE_ESHAPE, "the slice of axis %lld is empty", (long long)ax);
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
        int64_t ne = numel(os), istr[TE_MAX_DIMS], acc = 1;
        for (int j = r - 1; j >= 0; j--) {
            istr[j] = acc;
            acc *= x->shape.d[j];
        }
        float *f = x->is_int ? NULL : malloc((size_t)(ne ? ne : 1) * sizeof *f);
        int64_t *iv = x->is_int ? malloc((size_t)(ne ? ne : 1) * sizeof *iv) : NULL;
        if (!f && !iv)
            return nomem(I);
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
        return new_const(I, oname, os, f, iv);
    }
    int same = 1;
    for (int j = 0; j < r; j++)
        same &= start[j] == 0 && step[j] == 1 && os->d[j] == x->shape.d[j];
    te_node t;
    node_init(&t, same ? TE_OP_RESHAPE : TE_OP_SLICE, nodename);
    int64_t ints[2 * TE_MAX_DIMS];
    for (int j = 0; j < r && !same; j++) {
        ints[2 * j] = start[j];
        ints[2 * j + 1] = step[j];
    }
    t.ints = ints;
    t.n_ints = same ? 0 : 2 * r;
    (void)n;
    return emit1(I, &t, x->id, oname, os, NULL);
}

/* A 1-D integer list from constant input k or attribute aname; count, -1 absent. */
static te_status ints_in_or_attr(imp *I, onode *n, size_t k, const char *aname, int64_t *out, int *count)
{
    ival *v = NULL;
    te_status st;
    *count = -1;
    if (I->opset >= 10 || !aname) {
        if ((st = in_const(I, n, k, 0, &v, aname ? aname : "input")))
            return st;
    }
    if (v) {
        int64_t c = numel(&v->shape);
        if (c > TE_MAX_DIMS)
            return bad(I, n, TE_EINVAL, "too many entries in '%s'", v->name);
        for (int j = 0; j < (int)c; j++)
            out[j] = cget_i(v, j);
        *count = (int)c;
        return TE_OK;
    }
    if (aname) {
        int c = attr_ints(n, aname, out, TE_MAX_DIMS);
        if (c == -2)
            return bad(I, n, TE_EINVAL, "too many entries in '%s'", aname);
        *count = c;
    }
    return TE_OK;
}

static te_status op_slice(imp *I, onode *n)
{
    ival *x;
    te_status st;
    int64_t b[TE_MAX_DIMS], e[TE_MAX_DIMS], ax[TE_MAX_DIMS], sp[TE_MAX_DIMS];
    int nb, ne, na, ns = -1;
    if ((st = in_req(I, n, 0, &x)))
        return st;
    if (I->opset < 10) { /* starts, ends, axes as attributes */
        nb = attr_ints(n, "starts", b, TE_MAX_DIMS);
        ne = attr_ints(n, "ends", e, TE_MAX_DIMS);
        na = attr_ints(n, "axes", ax, TE_MAX_DIMS);
    } else if ((st = ints_in_or_attr(I, n, 1, NULL, b, &nb)) || (st = ints_in_or_attr(I, n, 2, NULL, e, &ne)) ||
               (st = ints_in_or_attr(I, n, 3, NULL, ax, &na)) || (st = ints_in_or_attr(I, n, 4, NULL, sp, &ns))) {
        return st;
    }
    if (nb < 0 || ne != nb || (na >= 0 && na != nb) || (ns >= 0 && ns != nb))
        return bad(I, n, TE_EINVAL, "starts, ends, axes and steps must have the same length");
    int64_t start[TE_MAX_DIMS], step[TE_MAX_DIMS];
    te_shape os;
    if ((st = slice_plan(I, n, &x->shape, nb, b, e, na >= 0 ? ax : NULL, ns >= 0 ? sp : NULL, start, step, &os)))
        return st;
    return emit_slice(I, n, nname(n), x, start, step, &os, out_name(n));
}

static te_status op_split(imp *I, onode *n)
{
    ival *x;
    te_status st;
    if ((st = in_req(I, n, 0, &x)))
        return st;
    int64_t axis = attr_i(n, "axis", 0);
    if (norm_axis(&axis, x->shape.ndim))
        return bad(I, n, TE_EINVAL, "axis out of range");
    int64_t parts[64];
    int np = -1, no = (int)n->n_output;
    if (no > 64)
        return bad(I, n, TE_EUNSUPPORTED, "more than 64 outputs");
    if (I->opset >= 13) {
        ival *sv;
        if ((st = in_const(I, n, 1, 0, &sv, "split")))
            return st;
        if (sv) {
            if (numel(&sv->shape) != no)
                return bad(I, n, TE_EINVAL, "split has %lld entries for %d outputs", (long long)numel(&sv->shape), no);
            for (int k = 0; k < no; k++)
                parts[k] = cget_i(sv, k);
            np = no;
        }
    } else {
        np = attr_ints(n, "split", parts, 64);
        if (np >= 0 && np != no)
            return bad(I, n, TE_EINVAL, "split has %d entries for %d outputs", np, no);
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
            return bad(I, n, TE_EINVAL, "split sizes do not add up to %lld", (long long)D);
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
        snprintf(nm, sizeof nm, "%s/%d", nname(n), k);
        if ((st = emit_slice(I, n, nm, x, start, step, &os, n->output[k])))
            return st;
    }
    if (off != D)
        return bad(I, n, TE_EINVAL, "split sizes add up to %lld, not %lld", (long long)off, (long long)D);
    return TE_OK;
}

static te_status op_range(imp *I, onode *n)
{
    ival *a, *l, *d;
    te_status st;
    if ((st = in_const(I, n, 0, 1, &a, "start")) || (st = in_const(I, n, 1, 1, &l, "limit")) ||
        (st = in_const(I, n, 2, 1, &d, "delta")))
        return st;
    double s0 = cget(a, 0), s1 = cget(l, 0), dd = cget(d, 0);
    if (dd == 0)
        return bad(I, n, TE_EINVAL, "delta 0");
    double c = ceil((s1 - s0) / dd);
    int64_t cnt = c > 0 ? (int64_t)c : 0;
    if (cnt < 1 || cnt > MAX_NUMEL)
        return bad(I, n, TE_ESHAPE, "range of %lld elements", (long long)cnt);
    te_shape os = {.ndim = 1, .d = {cnt}};
    int isint = a->is_int && l->is_int && d->is_int;
    float *f = isint ? NULL : malloc((size_t)cnt * sizeof *f);
    int64_t *iv = isint ? malloc((size_t)cnt * sizeof *iv) : NULL;
    if (!f && !iv)
        return nomem(I);
    for (int64_t k = 0; k < cnt; k++) {
        if (iv)
            iv[k] = a->i[0] + k * d->i[0];
        else
            f[k] = (float)(s0 + (double)k * dd);
    }
    return new_const(I, out_name(n), &os, f, iv);
}

static te_status op_expand(imp *I, onode *n)
{
    ival *x, *sh;
    te_status st;
    if ((st = in_req(I, n, 0, &x)) || (st = in_const(I, n, 1, 1, &sh, "the shape")))
        return st;
    int64_t k = numel(&sh->shape);
    if (k > TE_MAX_DIMS)
        return bad(I, n, TE_EUNSUPPORTED, "rank too large");
    te_shape ts = {.ndim = (int)k}, os;
    for (int j = 0; j < (int)k; j++)
        ts.d[j] = cget_i(sh, j);
    if (bcast(&x->shape, &ts, &os) || numel(&os) < 1 || numel(&os) > MAX_NUMEL)
        return bad(I, n, TE_ESHAPE, "the shape does not broadcast with the input");
    if (x->is_const) {
        int64_t ne = numel(&os);
        float *f = x->is_int ? NULL : malloc((size_t)ne * sizeof *f);
        int64_t *iv = x->is_int ? malloc((size_t)ne * sizeof *iv) : NULL;
        if (!f && !iv)
            return nomem(I);
        for (int64_t q = 0; q < ne; q++) {
            int64_t src = bidx(&os, &x->shape, q);
            if (iv)
                iv[q] = x->i[src];
            else
                f[q] = x->f[src];
        }
        return new_const(I, out_name(n), &os, f, iv);
    }
    if (numel(&os) == numel(&x->shape))
        return reshape_to(I, n, x, &os);
    /* x + zeros(shape): the device's broadcasting Add does the expansion */
    float *z = calloc((size_t)numel(&ts) > 0 ? (size_t)numel(&ts) : 1, sizeof *z);
    if (!z)
        return nomem(I);
    char nm[300];
    snprintf(nm, sizeof nm, "%s/zeros", nname(n));
    int ids[2] = {x->id, te_model_add_value(I->m, nm, &ts, z)};
    if (ids[1] < 0) {
        free(z);
        return nomem(I);
    }
    te_node t;
    node_init(&t, TE_OP_ADD, nname(n));
    return emit(I, &t, ids, 2, out_name(n), &os, NULL);
}

static te_status op_size(imp *I, onode *n)
{
    ival *x;
    te_status st;
    if ((st = in_req(I, n, 0, &x)))
        return st;
    int64_t *iv = malloc(sizeof *iv);
    if (!iv)
        return nomem(I);
    iv[0] = numel(&x->shape);
    te_shape s0 = {0};
    return new_const(I, out_name(n), &s0, NULL, iv);
}

/* ------------------------------------------------------------------ */
/* Resize (opset 10+) and Upsample (7..9) */

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
    attr_s_copy(n, aname, buf, sizeof buf);
    if (!attr(n, aname))
        snprintf(buf, sizeof buf, "%s", def);
    if (lookup_code(t, buf, code))
        return bad(I, n, TE_EUNSUPPORTED, "%s '%s' is not supported", aname, buf);
    return TE_OK;
}

/* Emits TE_OP_RESIZE.  Per dim: the scale of the coordinate transform
 * (scales_in, else sizes/in) and the output size (sizes, else floor(in *
 * roi span * scale)); roi: starts then ends (tf_crop_and_resize), or NULL. */
static te_status emit_resize(imp *I, onode *n, ival *x, const double *scales_in, const int64_t *sizes,
                             const double *roi, int mode, int coord, int nearest)
{
    int r = x->shape.ndim, nf = roi ? 3 * r : r;
    te_shape os = x->shape;
    float *sc = malloc((size_t)nf * sizeof *sc);
    if (!sc)
        return nomem(I);
    for (int d = 0; d < r; d++) {
        double span = roi ? roi[r + d] - roi[d] : 1;
        double s = scales_in ? scales_in[d] : (double)sizes[d] / (double)x->shape.d[d];
        /* floor(in * scale), guarding against 0.5*2 = 0.99999 style float noise */
        int64_t o = sizes ? sizes[d] : (int64_t)floor((double)x->shape.d[d] * span * s + 1e-9);
        if (!(s > 0) || !isfinite(s) || !isfinite(span) || o < 1 || o > MAX_NUMEL) {
            free(sc);
            return bad(I, n, TE_EINVAL, "scale %g for axis %d gives no output", s, d);
        }
        sc[d] = (float)s;
        if (roi) {
            sc[r + d] = (float)roi[d];
            sc[2 * r + d] = (float)roi[r + d];
        }
        os.d[d] = o;
    }
    if (numel(&os) > MAX_NUMEL) {
        free(sc);
        return bad(I, n, TE_ESHAPE, "output too large");
    }
    if (x->is_const) {
        free(sc);
        return bad(I, n, TE_EUNSUPPORTED, "resizing a constant is not supported");
    }
    char nm[300];
    snprintf(nm, sizeof nm, "%s/scales", nname(n));
    te_shape ss = {.ndim = 1, .d = {nf}};
    int ids[2] = {x->id, te_model_add_value(I->m, nm, &ss, sc)};
    if (ids[1] < 0) {
        free(sc);
        return nomem(I);
    }
    te_node t;
    node_init(&t, TE_OP_RESIZE, nname(n));
    int64_t ints[4] = {mode, coord, nearest, attr_i(n, "exclude_outside", 0) != 0};
    t.ints = ints;
    t.n_ints = mode == TE_RESIZE_CUBIC ? 4 : 3;
    t.alpha = attr_f(n, "cubic_coeff_a", -0.75f);
    t.pad_value = attr_f(n, "extrapolation_value", 0.0f);
    return emit(I, &t, ids, 2, out_name(n), &os, NULL);
}

static te_status op_upsample(imp *I, onode *n)
{
    ival *x, *sv = NULL;
    te_status st;
    if ((st = rt_input(I, n, &x)))
        return st;
    int r = x->shape.ndim, mode;
    double sc[TE_MAX_DIMS];
    if ((st = str_attr_code(I, n, "mode", "nearest", resize_modes, &mode)))
        return st;
    if (mode == TE_RESIZE_CUBIC)
        return bad(I, n, TE_EUNSUPPORTED, "Upsample has no cubic mode");
    if (I->opset >= 9) {
        if ((st = in_const(I, n, 1, 1, &sv, "scales")))
            return st;
        if (numel(&sv->shape) != r)
            return bad(I, n, TE_EINVAL, "scales must have %d entries", r);
        for (int d = 0; d < r; d++)
            sc[d] = cget(sv, d);
    } else {
        const Onnx__AttributeProto *a = attr(n, "scales");
        if (!a || a->n_floats != (size_t)r)
            return bad(I, n, TE_EINVAL, "the scales attribute must have %d entries", r);
        for (int d = 0; d < r; d++)
            sc[d] = a->floats[d];
    }
    /* Upsample: asymmetric coordinates, nearest rounds down */
    return emit_resize(I, n, x, sc, NULL, NULL, mode, TE_COORD_ASYMMETRIC, TE_NEAREST_FLOOR);
}

static te_status op_resize(imp *I, onode *n)
{
    ival *x, *sv = NULL, *zv = NULL;
    te_status st;
    if ((st = rt_input(I, n, &x)))
        return st;
    int r = x->shape.ndim, mode, coord = TE_COORD_ASYMMETRIC, nearest = TE_NEAREST_FLOOR;
    if ((st = str_attr_code(I, n, "mode", "nearest", resize_modes, &mode)))
        return st;
    ival *rv = NULL;
    if (I->opset == 10) {
        if ((st = in_const(I, n, 1, 1, &sv, "scales")))
            return st;
    } else {
        if ((st = str_attr_code(I, n, "coordinate_transformation_mode", "half_pixel", coord_modes, &coord)) ||
            (st = str_attr_code(I, n, "nearest_mode", "round_prefer_floor", nearest_modes, &nearest)))
            return st;
        if (attr_i(n, "antialias", 0))
            return bad(I, n, TE_EUNSUPPORTED, "antialias is not supported");
        if ((st = in_const(I, n, 1, 0, &rv, "roi")) || (st = in_const(I, n, 2, 0, &sv, "scales")) ||
            (st = in_const(I, n, 3, 0, &zv, "sizes")))
            return st;
        if (sv && numel(&sv->shape) == 0)
            sv = NULL;
        if (zv && numel(&zv->shape) == 0)
            zv = NULL;
    }
    if (!sv && !zv)
        return bad(I, n, TE_EINVAL, "neither scales nor sizes are given");
    int64_t axes[TE_MAX_DIMS];
    int na = attr_ints(n, "axes", axes, TE_MAX_DIMS);
    if (na < 0) {
        na = r;
        for (int d = 0; d < r; d++)
            axes[d] = d;
    }
    for (int j = 0; j < na; j++)
        if (norm_axis(&axes[j], r))
            return bad(I, n, TE_EINVAL, "axis out of range");
    ival *given = zv ? zv : sv;
    if (numel(&given->shape) != na)
        return bad(I, n, TE_EINVAL, "%s must have %d entries", zv ? "sizes" : "scales", na);
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
        if (!rv || numel(&rv->shape) != 2 * na)
            return bad(I, n, TE_EINVAL, "tf_crop_and_resize needs a constant roi of %d entries", 2 * na);
        for (int j = 0; j < na; j++) {
            roi[axes[j]] = cget(rv, j);
            roi[r + axes[j]] = cget(rv, na + j);
        }
    }
    if (zv) {
        char pol[32];
        attr_s_copy(n, "keep_aspect_ratio_policy", pol, sizeof pol);
        int larger = strcmp(pol, "not_larger") == 0, smaller = strcmp(pol, "not_smaller") == 0;
        if (pol[0] && !larger && !smaller && strcmp(pol, "stretch") != 0)
            return bad(I, n, TE_EUNSUPPORTED, "keep_aspect_ratio_policy '%s' is not supported", pol);
        if (!larger && !smaller) {
            for (int j = 0; j < na; j++)
                sz[axes[j]] = cget_i(zv, j);
            return emit_resize(I, n, x, NULL, sz, crop ? roi : NULL, mode, coord, nearest);
        }
        /* one scale for every resized axis: the largest that fits (not_larger)
         * or the smallest that covers (not_smaller); sizes round to nearest */
        double s = larger ? INFINITY : 0;
        for (int j = 0; j < na; j++) {
            double q = (double)cget_i(zv, j) / (double)x->shape.d[axes[j]];
            s = larger ? fmin(s, q) : fmax(s, q);
        }
        for (int j = 0; j < na; j++) {
            sc[axes[j]] = s;
            sz[axes[j]] = (int64_t)nearbyint(s * (double)x->shape.d[axes[j]]);
        }
        return emit_resize(I, n, x, sc, sz, crop ? roi : NULL, mode, coord, nearest);
    }
    for (int j = 0; j < na; j++)
        sc[axes[j]] = cget(sv, j);
    return emit_resize(I, n, x, sc, NULL, crop ? roi : NULL, mode, coord, nearest);
}

/* ------------------------------------------------------------------ */
/* ConvTranspose: zero insertion on the device, then an ordinary outsourced Conv */

static te_status op_conv_transpose(imp *I, onode *n)
{
    ival *x, *w, *b;
    te_status st;
    if ((st = rt_input(I, n, &x)) || (st = in_const(I, n, 1, 1, &w, "the weight")) ||
        (st = in_const(I, n, 2, 0, &b, "the bias")) || (st = need_4d(I, n, x)))
        return st;
    if (w->is_int || w->shape.ndim != 4)
        return bad(I, n, TE_EUNSUPPORTED, "weight must be a 4-D float tensor (2-D transposed convolution)");
    int64_t g = attr_i(n, "group", 1), C = x->shape.d[1];
    if (g < 1 || w->shape.d[0] != C || C % g)
        return bad(I, n, TE_ESHAPE, "weight [%lld,...] does not fit %lld input channels in %lld groups",
                   (long long)w->shape.d[0], (long long)C, (long long)g);
    int64_t Mg = w->shape.d[1], M = Mg * g, Cg = C / g, K[2] = {w->shape.d[2], w->shape.d[3]};
    int64_t s[2] = {1, 1}, d[2] = {1, 1}, pads[4] = {0}, op[2] = {0, 0}, oshape[2], tmp[8];
    int c;
    if ((c = attr_ints(n, "kernel_shape", tmp, 8)) >= 0 && (c != 2 || tmp[0] != K[0] || tmp[1] != K[1]))
        return bad(I, n, TE_ESHAPE, "kernel_shape does not match the weight");
    if ((c = attr_ints(n, "strides", tmp, 8)) >= 0 && (c != 2 || (s[0] = tmp[0], s[1] = tmp[1], 0)))
        return bad(I, n, TE_EUNSUPPORTED, "strides must have 2 entries");
    if ((c = attr_ints(n, "dilations", tmp, 8)) >= 0 && (c != 2 || (d[0] = tmp[0], d[1] = tmp[1], 0)))
        return bad(I, n, TE_EUNSUPPORTED, "dilations must have 2 entries");
    if ((c = attr_ints(n, "output_padding", tmp, 8)) >= 0 && (c != 2 || (op[0] = tmp[0], op[1] = tmp[1], 0)))
        return bad(I, n, TE_EUNSUPPORTED, "output_padding must have 2 entries");
    if ((c = attr_ints(n, "pads", tmp, 8)) >= 0) {
        if (c != 4)
            return bad(I, n, TE_EUNSUPPORTED, "pads must have 4 entries");
        memcpy(pads, tmp, sizeof pads);
    }
    int have_os = attr_ints(n, "output_shape", tmp, 8);
    if (have_os >= 0) {
        if (have_os != 2 && have_os != 4)
            return bad(I, n, TE_EUNSUPPORTED, "output_shape must have 2 entries");
        oshape[0] = tmp[have_os - 2];
        oshape[1] = tmp[have_os - 1];
    }
    int upper = attr_s_is(n, "auto_pad", "NOTSET", "SAME_UPPER"), lower = attr_s_is(n, "auto_pad", "NOTSET", "SAME_LOWER");
    int valid = attr_s_is(n, "auto_pad", "NOTSET", "VALID");
    if (!upper && !lower && !valid && !attr_s_is(n, "auto_pad", "NOTSET", "NOTSET"))
        return bad(I, n, TE_EUNSUPPORTED, "this auto_pad is not supported");
    int64_t out[2];
    for (int j = 0; j < 2; j++) {
        if (s[j] < 1 || d[j] < 1 || K[j] < 1 || op[j] < 0 || s[j] > GEOM_MAX || d[j] > GEOM_MAX || K[j] > GEOM_MAX ||
            op[j] > GEOM_MAX || pads[j] < 0 || pads[j + 2] < 0 || pads[j] > GEOM_MAX || pads[j + 2] > GEOM_MAX)
            return bad(I, n, TE_EINVAL, "invalid kernel, stride, dilation, output_padding or pads");
        int64_t full = s[j] * (x->shape.d[2 + j] - 1) + op[j] + d[j] * (K[j] - 1) + 1;
        if (have_os >= 0 || upper || lower) {
            int64_t want = have_os >= 0 ? oshape[j] : x->shape.d[2 + j] * s[j], total = full - want;
            if (total < 0)
                return bad(I, n, TE_ESHAPE, "output_shape larger than the full transposed convolution");
            /* the odd pixel goes to the end for SAME_UPPER, to the start otherwise */
            pads[j] = upper ? total / 2 : total - total / 2;
            pads[j + 2] = total - pads[j];
        } else if (valid) {
            pads[j] = pads[j + 2] = 0;
        }
        out[j] = full - pads[j] - pads[j + 2];
        if (out[j] < 1)
            return bad(I, n, TE_ESHAPE, "empty output");
    }
    if (b && (b->is_int || numel(&b->shape) != M))
        return bad(I, n, TE_ESHAPE, "bias must have %lld floats", (long long)M);
    /* spread: x[i] lands at d*(K-1) - pad_begin + i*s in a zero plane of out + d*(K-1) */
    int64_t span[2] = {out[0] + d[0] * (K[0] - 1), out[1] + d[1] * (K[1] - 1)};
    int64_t ints[4] = {s[0], s[1], d[0] * (K[0] - 1) - pads[0], d[1] * (K[1] - 1) - pads[1]};
    te_shape ss = {.ndim = 4, .d = {x->shape.d[0], C, span[0], span[1]}};
    if (numel(&ss) > MAX_NUMEL)
        return bad(I, n, TE_ESHAPE, "zero-inserted input too large");
    char nm[300];
    snprintf(nm, sizeof nm, "%s/spread", nname(n));
    te_node t;
    node_init(&t, TE_OP_SPREAD, nm);
    t.ints = ints;
    t.n_ints = 4;
    ival *sv;
    if ((st = emit1(I, &t, x->id, nm, &ss, &sv)))
        return st;
    /* conv weight [M][C/g][kh][kw] = W[g*Cg + c][m][K-1-kh][K-1-kw] */
    float *wf = malloc((size_t)(M * Cg * K[0] * K[1]) * sizeof *wf);
    float *bias = b ? copy_floats(b->f, M) : NULL;
    if (!wf || (b && !bias)) {
        free(wf);
        free(bias);
        return nomem(I);
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
    L.name = (char *)nname(n);
    L.geom = (te_linear_geom){.kind = TE_LIN_CONV, .batch = x->shape.d[0], .in_c = C, .in_h = span[0],
                              .in_w = span[1], .out_c = M, .out_h = out[0], .out_w = out[1], .k_h = K[0],
                              .k_w = K[1], .stride_h = 1, .stride_w = 1, .dil_h = d[0], .dil_w = d[1], .group = g};
    L.w_float = wf;
    L.bias = bias;
    te_shape os = {.ndim = 4, .d = {x->shape.d[0], M, out[0], out[1]}};
    return add_linear(I, n, &L, sv->id, out_name(n), &os, NULL);
}

/* ------------------------------------------------------------------ */
/* products of activations, normalisation, reductions, element-wise */

static te_status op_matmul_any(imp *I, onode *n)
{
    ival *a, *b;
    te_status st;
    if ((st = in_req(I, n, 0, &a)) || (st = in_req(I, n, 1, &b)))
        return st;
    if (a->is_const != b->is_const || (a->is_const && b->is_const))
        return a->is_const && b->is_const ? bad(I, n, TE_EUNSUPPORTED, "a product of two constants")
                                          : op_matmul(I, n);
    /* two activations: on the device */
    const te_shape *sa = &a->shape, *sb = &b->shape;
    if (sa->ndim < 2 || sb->ndim < 2)
        return bad(I, n, TE_EUNSUPPORTED, "1-D operands of an activation product are not supported");
    if (sa->d[sa->ndim - 1] != sb->d[sb->ndim - 2])
        return bad(I, n, TE_ESHAPE, "inner dimensions differ (%lld vs %lld)", (long long)sa->d[sa->ndim - 1],
                   (long long)sb->d[sb->ndim - 2]);
    te_shape ba = {.ndim = sa->ndim - 2}, bb = {.ndim = sb->ndim - 2}, bo;
    memcpy(ba.d, sa->d, (size_t)ba.ndim * sizeof ba.d[0]);
    memcpy(bb.d, sb->d, (size_t)bb.ndim * sizeof bb.d[0]);
    if (bcast(&ba, &bb, &bo) || bo.ndim + 2 > TE_MAX_DIMS)
        return bad(I, n, TE_ESHAPE, "batch dimensions do not broadcast");
    te_shape os = bo;
    os.d[os.ndim++] = sa->d[sa->ndim - 2];
    os.d[os.ndim++] = sb->d[sb->ndim - 1];
    int ids[2] = {a->id, b->id};
    te_node t;
    node_init(&t, TE_OP_MATMUL, nname(n));
    return emit(I, &t, ids, 2, out_name(n), &os, NULL);
}

static te_status op_layer_norm(imp *I, onode *n)
{
    ival *x, *sc, *bi;
    te_status st;
    if ((st = rt_input(I, n, &x)) || (st = only_first_output(I, n)) ||
        (st = in_const(I, n, 1, 1, &sc, "scale")) || (st = in_const(I, n, 2, 0, &bi, "bias")))
        return st;
    int64_t axis = attr_i(n, "axis", -1);
    if (norm_axis(&axis, x->shape.ndim))
        return bad(I, n, TE_EINVAL, "axis out of range");
    te_shape ns = {.ndim = x->shape.ndim - (int)axis};
    memcpy(ns.d, x->shape.d + axis, (size_t)ns.ndim * sizeof ns.d[0]);
    int64_t inner = numel(&ns);
    int ids[3] = {x->id, -1, -1};
    ival *cs[2] = {sc, bi};
    for (int k = 0; k < 2; k++) {
        if (!cs[k])
            continue;
        te_shape o;
        if (bcast(&ns, &cs[k]->shape, &o) || numel(&o) != inner)
            return bad(I, n, TE_ESHAPE, "%s does not broadcast to the normalised shape", k ? "bias" : "scale");
        float *f = malloc((size_t)inner * sizeof *f); /* expanded to the normalised shape */
        if (!f)
            return nomem(I);
        for (int64_t q = 0; q < inner; q++)
            f[q] = (float)cget(cs[k], bidx(&ns, &cs[k]->shape, q));
        char nm[300];
        snprintf(nm, sizeof nm, "%s/%s", nname(n), k ? "bias" : "scale");
        if ((ids[k + 1] = te_model_add_value(I->m, nm, &ns, f)) < 0) {
            free(f);
            return nomem(I);
        }
    }
    te_node t;
    node_init(&t, TE_OP_LAYER_NORM, nname(n));
    t.axis = axis;
    t.alpha = attr_f(n, "epsilon", 1e-5f);
    return emit(I, &t, ids, bi ? 3 : 2, out_name(n), &x->shape, NULL);
}

/* A binary device node between value in_id and a scalar constant c. */
static te_status emit_scalar_binary(imp *I, const char *nodename, te_op op, int in_id, const te_shape *s, float c,
                                    int const_first, const char *oname, ival **out)
{
    float *f = malloc(sizeof *f);
    if (!f)
        return nomem(I);
    f[0] = c;
    char nm[300];
    snprintf(nm, sizeof nm, "%s/const", nodename);
    te_shape s0 = {0};
    int cid = te_model_add_value(I->m, nm, &s0, f);
    if (cid < 0) {
        free(f);
        return nomem(I);
    }
    int ids[2] = {const_first ? cid : in_id, const_first ? in_id : cid};
    te_node t;
    node_init(&t, op, nodename);
    return emit(I, &t, ids, 2, oname, s, out);
}

/* Neg / Reciprocal as a binary op with a scalar constant. */
static te_status op_scalar_binary(imp *I, onode *n, te_op op, float c, int const_first)
{
    ival *x;
    te_status st;
    if ((st = rt_input(I, n, &x)))
        return st;
    return emit_scalar_binary(I, nname(n), op, x->id, &x->shape, c, const_first, out_name(n), NULL);
}

/* Sum and Mean of several activations: a chain of Adds (Mean: then x 1/n). */
static te_status op_sum(imp *I, onode *n, int mean)
{
    if (n->n_input < 1)
        return bad(I, n, TE_EFORMAT, "no inputs");
    ival *acc, *x;
    te_status st;
    if ((st = in_req(I, n, 0, &acc)))
        return st;
    int single = n->n_input == 1 && !mean;
    for (size_t k = 1; k < n->n_input || single; k++) {
        if (single)
            return reshape_to(I, n, acc, &acc->shape);
        if ((st = in_req(I, n, k, &x)))
            return st;
        te_shape os;
        if (bcast(&acc->shape, &x->shape, &os))
            return bad(I, n, TE_ESHAPE, "inputs do not broadcast");
        int ids[2];
        if ((st = rt_id(I, acc, &ids[0])) || (st = rt_id(I, x, &ids[1])))
            return st;
        char nm[300];
        snprintf(nm, sizeof nm, "%s/%zu", nname(n), k);
        int last = k + 1 == n->n_input && !mean;
        te_node t;
        node_init(&t, TE_OP_ADD, last ? nname(n) : nm);
        if ((st = emit(I, &t, ids, 2, last ? out_name(n) : nm, &os, &acc)))
            return st;
    }
    if (!mean)
        return TE_OK;
    int id;
    if ((st = rt_id(I, acc, &id)))
        return st;
    return emit_scalar_binary(I, nname(n), TE_OP_MUL, id, &acc->shape, 1.0f / (float)n->n_input, 0, out_name(n),
                              NULL);
}

/* Mish (18) = x * tanh(softplus(x)); Gelu (20, approximate="none") =
 * x * (1 + erf(x / sqrt 2)) / 2: chains of existing device ops. */
static te_status op_mish_gelu(imp *I, onode *n, int gelu)
{
    ival *x, *a, *b;
    te_status st;
    if ((st = rt_input(I, n, &x)))
        return st;
    char nm[300], nm2[300];
    te_node t;
    if (gelu) {
        char ap[16];
        attr_s_copy(n, "approximate", ap, sizeof ap);
        if (ap[0] && strcmp(ap, "none") != 0)
            return bad(I, n, TE_EUNSUPPORTED, "approximate='%s' is not supported", ap);
        snprintf(nm, sizeof nm, "%s/scaled", nname(n));
        if ((st = emit_scalar_binary(I, nm, TE_OP_MUL, x->id, &x->shape, 0.70710678118654752f /* 1/sqrt 2 */, 0, nm, &a)))
            return st;
        snprintf(nm, sizeof nm, "%s/erf", nname(n));
        node_init(&t, TE_OP_ERF, nm);
        if ((st = emit1(I, &t, a->id, nm, &x->shape, &b)))
            return st;
        snprintf(nm, sizeof nm, "%s/half", nname(n));
        if ((st = emit_scalar_binary(I, nm, TE_OP_ADD, b->id, &x->shape, 1.0f, 0, nm, &a)) ||
            (st = emit_scalar_binary(I, nm2, TE_OP_MUL, a->id, &x->shape, 0.5f, 0,
                                     (snprintf(nm2, sizeof nm2, "%s/gate", nname(n)), nm2), &b)))
            return st;
    } else {
        snprintf(nm, sizeof nm, "%s/softplus", nname(n));
        node_init(&t, TE_OP_SOFTPLUS, nm);
        if ((st = emit1(I, &t, x->id, nm, &x->shape, &a)))
            return st;
        snprintf(nm, sizeof nm, "%s/tanh", nname(n));
        node_init(&t, TE_OP_TANH, nm);
        if ((st = emit1(I, &t, a->id, nm, &x->shape, &b)))
            return st;
    }
    int ids[2] = {x->id, b->id};
    node_init(&t, TE_OP_MUL, nname(n));
    return emit(I, &t, ids, 2, out_name(n), &x->shape, NULL);
}

/* ImageScaler (experimental, opsets < 10): y = scale * x + bias[c]. */
static te_status op_image_scaler(imp *I, onode *n)
{
    ival *x, *a;
    te_status st;
    if ((st = rt_input(I, n, &x)) || (st = need_4d(I, n, x)))
        return st;
    int64_t C = x->shape.d[1];
    const Onnx__AttributeProto *bias = attr(n, "bias");
    if (bias && bias->n_floats != (size_t)C)
        return bad(I, n, TE_EINVAL, "bias must have %lld entries", (long long)C);
    char nm[300];
    snprintf(nm, sizeof nm, "%s/scale", nname(n));
    if ((st = emit_scalar_binary(I, nm, TE_OP_MUL, x->id, &x->shape, attr_f(n, "scale", 1.0f), 0,
                                 bias ? nm : out_name(n), &a)) ||
        !bias)
        return st;
    float *f = malloc((size_t)C * sizeof *f);
    if (!f)
        return nomem(I);
    for (int64_t c = 0; c < C; c++)
        f[c] = bias->floats[c];
    te_shape cs = {.ndim = 3, .d = {C, 1, 1}};
    snprintf(nm, sizeof nm, "%s/bias", nname(n));
    int ids[2] = {a->id, te_model_add_value(I->m, nm, &cs, f)};
    if (ids[1] < 0) {
        free(f);
        return nomem(I);
    }
    te_node t;
    node_init(&t, TE_OP_ADD, nname(n));
    return emit(I, &t, ids, 2, out_name(n), &x->shape, NULL);
}

/* DepthToSpace (DCR, CRD) and SpaceToDepth: Reshape + Transpose + Reshape. */
static te_status op_depth_space(imp *I, onode *n, int to_space)
{
    ival *x, *a, *b;
    te_status st;
    if ((st = rt_input(I, n, &x)) || (st = need_4d(I, n, x)))
        return st;
    int64_t bs = attr_i(n, "blocksize", 0), N = x->shape.d[0], C = x->shape.d[1], H = x->shape.d[2],
            W = x->shape.d[3];
    if (bs < 1 || bs > GEOM_MAX || (to_space ? C % (bs * bs) : (H % bs || W % bs)))
        return bad(I, n, TE_EINVAL, "blocksize %lld does not divide the input", (long long)bs);
    int crd = to_space && attr_s_is(n, "mode", "DCR", "CRD");
    if (to_space && !crd && !attr_s_is(n, "mode", "DCR", "DCR"))
        return bad(I, n, TE_EUNSUPPORTED, "mode must be DCR or CRD");
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
    snprintf(nm, sizeof nm, "%s/split", nname(n));
    node_init(&t, TE_OP_RESHAPE, nm);
    if ((st = emit1(I, &t, x->id, nm, &s6, &a)))
        return st;
    snprintf(nm, sizeof nm, "%s/perm", nname(n));
    if ((st = transpose_shape(I, n, &s6, perm, &s6t)) || (st = emit_transpose(I, n, nm, a->id, &s6, perm, nm, &b)))
        return st;
    node_init(&t, TE_OP_RESHAPE, nname(n));
    return emit1(I, &t, b->id, out_name(n), &os, NULL);
}

static te_status op_gather_any(imp *I, onode *n)
{
    ival *x, *ix;
    te_status st;
    if ((st = in_req(I, n, 0, &x)) || (st = in_const(I, n, 1, 1, &ix, "Gather indices")))
        return st;
    if (x->is_const)
        return op_gather(I, n);
    int64_t axis = attr_i(n, "axis", 0);
    if (norm_axis(&axis, x->shape.ndim))
        return bad(I, n, TE_EINVAL, "axis out of range");
    if (x->shape.ndim - 1 + ix->shape.ndim > TE_MAX_DIMS)
        return bad(I, n, TE_EUNSUPPORTED, "result rank too large");
    te_shape os = {0};
    for (int j = 0; j < axis; j++)
        os.d[os.ndim++] = x->shape.d[j];
    for (int j = 0; j < ix->shape.ndim; j++)
        os.d[os.ndim++] = ix->shape.d[j];
    for (int j = (int)axis + 1; j < x->shape.ndim; j++)
        os.d[os.ndim++] = x->shape.d[j];
    int64_t ni = numel(&ix->shape), dim = x->shape.d[axis];
    float *f = malloc((size_t)(ni ? ni : 1) * sizeof *f);
    if (!f)
        return nomem(I);
    for (int64_t q = 0; q < ni; q++) {
        int64_t id = cget_i(ix, q);
        if (id < 0)
            id += dim;
        if (id < 0 || id >= dim) {
            free(f);
            return bad(I, n, TE_EINVAL, "index out of range");
        }
        f[q] = (float)id;
    }
    char nm[300];
    snprintf(nm, sizeof nm, "%s/indices", nname(n));
    int ids[2] = {x->id, te_model_add_value(I->m, nm, &ix->shape, f)};
    if (ids[1] < 0) {
        free(f);
        return nomem(I);
    }
    te_node t;
    node_init(&t, TE_OP_GATHER, nname(n));
    t.axis = axis;
    return emit(I, &t, ids, 2, out_name(n), &os, NULL);
}

/* ------------------------------------------------------------------ */
/* dispatch */

static int all_inputs_const(imp *I, onode *n)
{
    for (size_t k = 0; k < n->n_input; k++) {
        if (!n->input[k][0])
            continue;
        ival *v = lookup(I, n->input[k]);
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
        return f(I, n);                                                                                               \
    }
PLAIN(op_constant)
PLAIN(op_shape)
PLAIN(op_cast)
PLAIN(op_constant_of_shape)
PLAIN(op_reshape)
PLAIN(op_flatten)
PLAIN(op_identity)
PLAIN(op_binary)
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
static te_status h_squeeze(imp *I, onode *n, int unsq) { return op_squeeze(I, n, unsq); }
static te_status h_unary(imp *I, onode *n, int op) { return op_unary(I, n, (te_op)op); }
static te_status h_pool(imp *I, onode *n, int op) { return op_pool(I, n, (te_op)op); }
static te_status h_reduce(imp *I, onode *n, int op) { return op_reduce(I, n, op); }
PLAIN(op_tile)
PLAIN(op_image_scaler)
static te_status h_sum(imp *I, onode *n, int mean) { return op_sum(I, n, mean); }
static te_status h_mish_gelu(imp *I, onode *n, int gelu) { return op_mish_gelu(I, n, gelu); }
static te_status h_depth_space(imp *I, onode *n, int to_space) { return op_depth_space(I, n, to_space); }
static te_status h_neg(imp *I, onode *n, int arg) { (void)arg; return op_scalar_binary(I, n, TE_OP_MUL, -1.0f, 0); }
static te_status h_recip(imp *I, onode *n, int arg) { (void)arg; return op_scalar_binary(I, n, TE_OP_DIV, 1.0f, 1); }

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
    {"Add", h_op_binary, 0, 2, EW_ADD, 0},
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
    {"Div", h_op_binary, 0, 2, EW_DIV, 0},
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
    {"Mul", h_op_binary, 0, 2, EW_MUL, 0},
    {"Neg", h_neg, 0, 1, EW_NEG, 0},
    {"Not", NULL, 0, 1, EW_NOT, 0},
    {"Or", NULL, 0, 2, EW_OR, 0},
    {"PRelu", h_op_prelu, 0, 0, 0, 0},
    {"Pad", h_op_pad, 0, 0, 0, 0},
    {"Pow", h_op_binary, 0, 2, EW_POW, 0},
    {"Range", h_op_range, 0, 0, 0, 0},
    {"Reciprocal", h_recip, 0, 1, EW_RECIP, 0},
    {"ReduceL2", h_reduce, TE_OP_REDUCE_L2, 0, 0, 0},
    {"ReduceMax", h_reduce, TE_OP_REDUCE_MAX, 0, 0, 0},
    {"ReduceMean", h_reduce, TE_OP_REDUCE_MEAN, 0, 0, 0},
    {"ReduceMin", h_reduce, REDUCE_MIN, 0, 0, 0},
    {"ReduceProd", h_reduce, REDUCE_PROD, 0, 0, 0},
    {"ReduceSum", h_reduce, TE_OP_REDUCE_SUM, 0, 0, 0},
    {"Relu", h_unary, TE_OP_RELU, 1, EW_RELU, 0},
    {"Reshape", h_op_reshape, 0, 0, 0, 0},
    {"Resize", h_op_resize, 0, 0, 0, 10},
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
    {"Sub", h_op_binary, 0, 2, EW_SUB, 0},
    {"Sum", h_sum, 0, 0, 0, 0},
    {"Tanh", h_unary, TE_OP_TANH, 1, EW_TANH, 0},
    {"Tile", h_op_tile, 0, 0, 0, 0},
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

static te_status lower(imp *I, onode *n)
{
    const char *t = n->op_type ? n->op_type : "";
    if (n->domain && n->domain[0] && strcmp(n->domain, "ai.onnx") != 0)
        return te_errf(I->err, TE_EUNSUPPORTED, "unsupported ONNX op '%s' (domain '%s') in node '%s'", t, n->domain,
                       nname(n));
    if (n->n_output < 1 || !n->output[0][0])
        return bad(I, n, TE_EFORMAT, "node has no output");
    const op_entry *e = bsearch(t, op_entries, sizeof op_entries / sizeof op_entries[0], sizeof op_entries[0],
                                entry_cmp);
    if (!e || I->opset < e->min_opset)
        return te_errf(I->err, TE_EUNSUPPORTED, "unsupported ONNX op '%s' in node '%s'", t, nname(n));
    if (e->fold_n && all_inputs_const(I, n)) {
        if ((int)n->n_input != e->fold_n)
            return bad(I, n, TE_EUNSUPPORTED, "%zu inputs (only %d are supported)", n->n_input, e->fold_n);
        return fold_ew(I, n, e->fold, e->fold_n);
    }
    if (!e->fn)
        return te_errf(I->err, TE_EUNSUPPORTED,
                       "unsupported ONNX op '%s' in node '%s': it is folded on constants only, and an input is an "
                       "activation",
                       t, nname(n));
    return e->fn(I, n, e->arg);
}

/* ------------------------------------------------------------------ */
/* graph input / output, driver */

int te_parse_input_shape(const char *text, te_input_shape *out)
{
    memset(out, 0, sizeof *out);
    const char *colon = text ? strrchr(text, ':') : NULL;
    if (!colon || colon == text || (size_t)(colon - text) >= sizeof out->name)
        return -1;
    memcpy(out->name, text, (size_t)(colon - text));
    const char *p = colon + 1;
    while (*p) {
        char *end;
        long long d = strtoll(p, &end, 10);
        if (end == p || d < 1 || d > MAX_NUMEL || out->shape.ndim == TE_MAX_DIMS)
            return -1;
        out->shape.d[out->shape.ndim++] = d;
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            return -1;
    }
    return out->shape.ndim > 0 ? 0 : -1;
}

static te_status graph_input(imp *I)
{
    const Onnx__GraphProto *g = I->g;
    const Onnx__ValueInfoProto *in = NULL;
    int count = 0;
    char sb[128], hb[128];
    for (size_t k = 0; k < g->n_input; k++) {
        if (!g->input[k]->name || lookup(I, g->input[k]->name))
            continue; /* an initializer listed as an input */
        in = g->input[k];
        count++;
    }
    if (count != 1)
        return te_errf(I->err, TE_EUNSUPPORTED, "the model must have exactly one (non-initializer) input, it has %d",
                       count);
    const Onnx__TypeProto *tp = in->type;
    if (!tp || tp->value_case != ONNX__TYPE_PROTO__VALUE_TENSOR_TYPE || !tp->tensor_type ||
        !tp->tensor_type->shape)
        return te_errf(I->err, TE_EUNSUPPORTED, "model input '%s' has no tensor type with a shape", in->name);
    if (tp->tensor_type->elem_type != ONNX__TENSOR_PROTO__DATA_TYPE__FLOAT)
        return te_errf(I->err, TE_EUNSUPPORTED, "model input '%s' must be float32", in->name);
    const Onnx__TensorShapeProto *sp = tp->tensor_type->shape;
    if (sp->n_dim < 1 || sp->n_dim > TE_MAX_DIMS)
        return te_errf(I->err, TE_EUNSUPPORTED, "model input '%s' has rank %zu", in->name, sp->n_dim);
    const te_import_opts *o = I->opts;
    const te_shape *given = NULL;
    for (int k = 0; k < o->n_shapes; k++) {
        if (strcmp(o->shapes[k].name, in->name) == 0)
            given = &o->shapes[k].shape;
        else
            return te_errf(I->err, TE_EINVAL, "--input-shape names '%s', but the model's input is '%s'",
                           o->shapes[k].name, in->name);
    }
    if (given && given->ndim != (int)sp->n_dim)
        return te_errf(I->err, TE_ESHAPE, "--input-shape %s: %d dimensions, the model input '%s' has %zu", in->name,
                       given->ndim, in->name, sp->n_dim);
    /* the hint's per-sample shape at the input's rank */
    te_shape hint = {0};
    int have_hint = 0;
    if (o->hint) {
        const te_shape *h = o->hint;
        int r = (int)sp->n_dim;
        if (h->ndim == r + 1 && o->hint_stacked) {
            hint.ndim = r;
            memcpy(hint.d, h->d + 1, (size_t)r * sizeof hint.d[0]);
            have_hint = 1;
        } else if (h->ndim == r) {
            hint = *h;
            if (o->hint_stacked)
                hint.d[0] = -1; /* S*N samples: the batch stays open */
            have_hint = 1;
        } else if (h->ndim == r - 1 && !o->hint_stacked) {
            hint.ndim = r; /* one sample without its batch axis */
            hint.d[0] = 1;
            memcpy(hint.d + 1, h->d, (size_t)h->ndim * sizeof hint.d[0]);
            have_hint = 1;
        }
    }
    te_shape s = {.ndim = (int)sp->n_dim};
    for (size_t k = 0; k < sp->n_dim; k++) {
        const Onnx__TensorShapeProto__Dimension *d = sp->dim[k];
        int fixed = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_VALUE && d->dim_value > 0;
        const char *sym = d->value_case == ONNX__TENSOR_SHAPE_PROTO__DIMENSION__VALUE_DIM_PARAM ? d->dim_param : "";
        if (given) {
            if (fixed && given->d[k] != d->dim_value)
                return te_errf(I->err, TE_ESHAPE, "--input-shape %s:%s: dimension %zu is fixed to %lld in the model",
                               in->name, te_shape_str(given, sb, sizeof sb) , k, (long long)d->dim_value);
            s.d[k] = given->d[k];
        } else if (fixed) {
            s.d[k] = d->dim_value;
        } else if (have_hint && hint.d[k] > 0) {
            s.d[k] = hint.d[k];
        } else if (k == 0) {
            s.d[k] = 1; /* dynamic batch: one sample */
        } else {
            if (o->hint)
                return te_errf(I->err, TE_ESHAPE,
                               "model input '%s': dimension %zu ('%s') is not fixed and the tensor of shape %s "
                               "does not fit the input's rank %zu; give --input-shape %s:D0,D1,...",
                               in->name, k, sym, te_shape_str(o->hint, hb, sizeof hb), sp->n_dim, in->name);
            return te_errf(I->err, TE_EUNSUPPORTED,
                           "model input '%s': dimension %zu ('%s') is not fixed; give --input-shape %s:D0,D1,... "
                           "(or calibration data of that shape)",
                           in->name, k, sym, in->name);
        }
    }
    if (numel(&s) > MAX_NUMEL || numel(&s) < 1)
        return te_errf(I->err, TE_EUNSUPPORTED, "model input '%s' is too large", in->name);
    ival *v;
    te_status st = new_rt(I, in->name, &s, &v);
    if (st == TE_OK)
        I->m->input = v->id;
    return st;
}

static te_status import_graph(imp *I, const Onnx__ModelProto *mp)
{
    const Onnx__GraphProto *g = mp->graph;
    te_status st;
    I->opset = -1;
    for (size_t k = 0; k < mp->n_opset_import; k++) {
        const Onnx__OperatorSetIdProto *o = mp->opset_import[k];
        if (!o->domain || !o->domain[0] || !strcmp(o->domain, "ai.onnx"))
            I->opset = o->has_version ? o->version : 1;
    }
    if (I->opset < 0)
        return te_errf(I->err, TE_EUNSUPPORTED, "the model imports no default-domain ONNX opset");
    if (I->opset < OPSET_MIN || I->opset > OPSET_MAX)
        return te_errf(I->err, TE_EUNSUPPORTED, "ONNX opset %lld is not supported (supported: %d..%d)",
                       (long long)I->opset, OPSET_MIN, OPSET_MAX);
    if (!g)
        return te_errf(I->err, TE_EFORMAT, "the model has no graph");
    for (size_t k = 0; k < g->n_initializer; k++) {
        const Onnx__TensorProto *t = g->initializer[k];
        if (!t->name || !t->name[0])
            return te_errf(I->err, TE_EFORMAT, "initializer %zu has no name", k);
        if ((st = load_tensor(I, t, t->name, NULL)))
            return st;
    }
    if ((st = graph_input(I)))
        return st;
    for (size_t k = 0; k < g->n_node; k++)
        if ((st = lower(I, g->node[k])))
            return st;
    if (g->n_output != 1)
        return te_errf(I->err, TE_EUNSUPPORTED, "the model must have exactly one output, it has %zu", g->n_output);
    ival *o = lookup(I, g->output[0]->name ? g->output[0]->name : "");
    if (!o)
        return te_errf(I->err, TE_EFORMAT, "model output '%s' is not produced by any node", g->output[0]->name);
    if (o->is_const)
        return te_errf(I->err, TE_EUNSUPPORTED, "model output '%s' is a constant", o->name);
    I->m->output = o->id;
    return TE_OK;
}

te_status te_onnx_import_buffer(const uint8_t *buf, size_t len, const char *model_name, te_model **out,
                                te_err *err)
{
    return te_onnx_import_buffer_opts(buf, len, model_name, NULL, out, err);
}

te_status te_onnx_import_buffer_opts(const uint8_t *buf, size_t len, const char *model_name,
                                     const te_import_opts *opts, te_model **out, te_err *err)
{
    static const te_import_opts none = {0};
    *out = NULL;
    Onnx__ModelProto *mp = onnx__model_proto__unpack(NULL, len, buf);
    if (!mp)
        return te_errf(err, TE_EFORMAT, "not a valid ONNX model (protobuf parse failed)");
    imp I = {.err = err, .opts = opts ? opts : &none};
    I.m = te_model_new();
    te_status st = TE_OK;
    if (!I.m) {
        st = te_errf(err, TE_ENOMEM, "out of memory");
    } else {
        I.m->name = xstrdup(model_name ? model_name
                                       : (mp->graph && mp->graph->name && mp->graph->name[0] ? mp->graph->name
                                                                                              : "model"));
        st = I.m->name ? TE_OK : te_errf(err, TE_ENOMEM, "out of memory");
    }
    if (st == TE_OK) {
        I.g = mp->graph;
        st = import_graph(&I, mp);
    }
    for (int k = 0; k < I.nv; k++)
        ival_free(I.v[k]);
    free(I.v);
    onnx__model_proto__free_unpacked(mp, NULL);
    if (st != TE_OK) {
        te_model_free(I.m);
        return st;
    }
    *out = I.m;
    return TE_OK;
}

te_status te_onnx_import(const char *path, te_model **m, te_err *err)
{
    return te_onnx_import_opts(path, NULL, m, err);
}

te_status te_onnx_import_opts(const char *path, const te_import_opts *opts, te_model **m, te_err *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    *m = NULL;
    te_status st = te_file_read(path, TE_ONNX_MAX_FILE, &buf, &len, err);
    if (st != TE_OK)
        return st;
    /* model name: file name without directory and .onnx */
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    char name[256];
    snprintf(name, sizeof name, "%s", base);
    size_t nl = strlen(name);
    if (nl > 5 && strcmp(name + nl - 5, ".onnx") == 0)
        name[nl - 5] = '\0';
    st = te_onnx_import_buffer_opts(buf, len, name, opts, m, err);
    free(buf);
    if (st != TE_OK)
        te_err_wrap(err, "%s", path);
    return st;
}
