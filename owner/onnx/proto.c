/* ONNX import: reading ONNX messages (node names, attributes, tensors). */
#include "onnx_internal.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

const char *te_imp_nname(onode *n)
{
    if (n->name && n->name[0])
        return n->name;
    if (n->n_output > 0 && n->output[0][0])
        return n->output[0];
    return n->op_type ? n->op_type : "?";
}

const Onnx__AttributeProto *te_imp_attr(onode *n, const char *name)
{
    for (size_t k = 0; k < n->n_attribute; k++)
        if (n->attribute[k]->name && strcmp(n->attribute[k]->name, name) == 0)
            return n->attribute[k];
    return NULL;
}

int64_t te_imp_attr_i(onode *n, const char *name, int64_t def)
{
    const Onnx__AttributeProto *a = te_imp_attr(n, name);
    return a && a->has_i ? a->i : def;
}

float te_imp_attr_f(onode *n, const char *name, float def)
{
    const Onnx__AttributeProto *a = te_imp_attr(n, name);
    return a && a->has_f ? a->f : def;
}

/* String attribute compared with s (absent -> def compared). */
int te_imp_attr_s_is(onode *n, const char *name, const char *def, const char *s)
{
    const Onnx__AttributeProto *a = te_imp_attr(n, name);
    if (!a || !a->has_s)
        return strcmp(def, s) == 0;
    return a->s.len == strlen(s) && memcmp(a->s.data, s, a->s.len) == 0;
}

void te_imp_attr_s_copy(onode *n, const char *name, char *buf, size_t cap)
{
    const Onnx__AttributeProto *a = te_imp_attr(n, name);
    size_t len = (a && a->has_s) ? a->s.len : 0;
    if (len >= cap)
        len = cap - 1;
    if (len)
        memcpy(buf, a->s.data, len);
    buf[len] = '\0';
}

/* An ints attribute into out: *count entries, -1 when absent.  More than
 * max entries is the node's error, so that no caller can take a long
 * attribute for a missing one (and its default). */
te_status te_imp_attr_ints(imp *I, onode *n, const char *name, int64_t *out, int max, int *count)
{
    const Onnx__AttributeProto *a = te_imp_attr(n, name);
    *count = -1;
    if (!a)
        return TE_OK;
    if (a->n_ints > (size_t)max)
        return te_imp_bad(I, n, TE_EINVAL, "attribute '%s' has %zu entries (at most %d)", name, a->n_ints, max);
    for (size_t k = 0; k < a->n_ints; k++)
        out[k] = a->ints[k];
    *count = (int)a->n_ints;
    return TE_OK;
}

te_status te_imp_load_tensor(imp *I, const Onnx__TensorProto *t, const char *name, ival **out)
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
    int64_t n = te_imp_numel(&s);
    if (n < 0 || n > MAX_NUMEL)
        return te_errf(I->err, TE_EFORMAT, "tensor '%s': bad or too large shape", name);
    if (t->has_data_location && t->data_location == ONNX__TENSOR_PROTO__DATA_LOCATION__EXTERNAL)
        return te_errf(I->err, TE_EUNSUPPORTED, "tensor '%s': external data is not supported", name);
    int32_t dt = t->has_data_type ? t->data_type : 0;
    const uint8_t *raw = t->has_raw_data ? t->raw_data.data : NULL;
    size_t raw_len = t->has_raw_data ? t->raw_data.len : 0;
    int use_raw = t->has_raw_data;

    ival *v = te_imp_ival_new(name, &s);
    if (!v)
        return te_imp_nomem(I);
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
                st = te_imp_nomem(I);
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
            st = te_imp_nomem(I);
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
            st = te_imp_nomem(I);
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
        te_imp_ival_free(v);
        return st;
    }
    if (out) {
        *out = v;
        return TE_OK;
    }
    return te_imp_add_ival(I, v);
}
