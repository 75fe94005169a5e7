/* Device bundle, edge bundle and device key: te_model <-> bundle.proto,
 * with full validation of everything read (the readers are fuzzed). */
#include "te_bundle.h"
#include "te_container_int.h"
#include "te_ring.h"

#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>

#include "bundle.pb-c.h"

#define TE_PAYLOAD_VERSION 1u
/* 2: per-device r and s (absent in a deployment's template), w_l1 */
#define TE_DEVICE_BUNDLE_VERSION 2u
_Static_assert(sizeof(int) == sizeof(int32_t), "node input ids are passed to protobuf-c as int32_t");
#define TE_MAX_NUMEL ((int64_t)0x7fffffff)     /* per tensor / per array */
#define TE_MAX_GEOM_DIM ((int64_t)1 << 24)
#define TE_MAX_PAD ((int64_t)1 << 16)
#define TE_MAX_BATCH ((int64_t)1 << 20)
#define TE_MAX_MACS ((int64_t)1 << 50)
#define TE_MAX_NODE_IN 65536
#define TE_MAX_NODE_INTS (2 * TE_MAX_DIMS)

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define TE_HOST_LE 1
#else
#define TE_HOST_LE 0
#endif

/* ---- little-endian arrays <-> bytes fields ---- */

/* View n elements of size esz as LE bytes; on big-endian hosts a swapped
 * copy is made and returned in *owned (free it after packing). */
static te_status le_view(const void *src, size_t n, size_t esz, ProtobufCBinaryData *bd, uint8_t **owned,
                         te_err *err)
{
    *owned = NULL;
    bd->len = n * esz;
    bd->data = NULL;
    if (n == 0)
        return TE_OK;
#if TE_HOST_LE
    bd->data = (uint8_t *)(uintptr_t)src;
#else
    uint8_t *c = malloc(n * esz);
    if (!c)
        return te_errf(err, TE_ENOMEM, "bundle: out of memory");
    const uint8_t *s = src;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < esz; k++)
            c[i * esz + k] = s[i * esz + esz - 1 - k];
    bd->data = c;
    *owned = c;
#endif
    return TE_OK;
}

/* Copy a bytes field of exactly n elements of size esz into a new array. */
static void *le_copy(const ProtobufCBinaryData *bd, size_t n, size_t esz)
{
    void *d = malloc(n ? n * esz : 1);
    if (!d)
        return NULL;
    if (n)
        memcpy(d, bd->data, n * esz);
#if !TE_HOST_LE
    uint8_t *b = d;
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < esz / 2; k++) {
            uint8_t t = b[i * esz + k];
            b[i * esz + k] = b[i * esz + esz - 1 - k];
            b[i * esz + esz - 1 - k] = t;
        }
#endif
    return d;
}

static char *dup_str(const char *s)
{
    if (!s)
        s = "";
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d)
        memcpy(d, s, n);
    return d;
}

/* ---- validation (shared by writers and readers) ---- */

static int in_range(int64_t v, int64_t lo, int64_t hi)
{
    return v >= lo && v <= hi;
}

static te_status check_geom(const te_linear_geom *g, const char *lname, te_err *err)
{
    if (g->kind != TE_LIN_FC && g->kind != TE_LIN_CONV)
        return te_errf(err, TE_EFORMAT, "layer '%s': unknown kind %d", lname, (int)g->kind);
    if (!in_range(g->batch, 1, TE_MAX_BATCH))
        return te_errf(err, TE_EFORMAT, "layer '%s': batch %lld out of range", lname, (long long)g->batch);
    const int64_t dims[] = {g->in_c, g->in_h, g->in_w, g->out_c, g->out_h, g->out_w, g->k_h,
                            g->k_w, g->stride_h, g->stride_w, g->dil_h, g->dil_w, g->group};
    for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
        if (!in_range(dims[i], 1, TE_MAX_GEOM_DIM))
            return te_errf(err, TE_EFORMAT, "layer '%s': geometry field %zu = %lld out of range", lname, i,
                           (long long)dims[i]);
    const int64_t pads[] = {g->pad_t, g->pad_l, g->pad_b, g->pad_r};
    for (size_t i = 0; i < 4; i++)
        if (!in_range(pads[i], 0, TE_MAX_PAD))
            return te_errf(err, TE_EFORMAT, "layer '%s': padding %lld out of range", lname, (long long)pads[i]);
    if (g->kind == TE_LIN_FC) {
        for (size_t i = 0; i < sizeof dims / sizeof dims[0]; i++)
            if (i != 0 && i != 3 && dims[i] != 1)
                return te_errf(err, TE_EFORMAT, "layer '%s': FC geometry field %zu must be 1", lname, i);
        if (g->pad_t || g->pad_l || g->pad_b || g->pad_r)
            return te_errf(err, TE_EFORMAT, "layer '%s': FC layer with padding", lname);
    } else {
        if (g->in_c % g->group || g->out_c % g->group)
            return te_errf(err, TE_EFORMAT, "layer '%s': group %lld does not divide channels %lld/%lld", lname,
                           (long long)g->group, (long long)g->in_c, (long long)g->out_c);
        int64_t eh = g->dil_h * (g->k_h - 1) + 1, ew = g->dil_w * (g->k_w - 1) + 1;
        int64_t ph = g->in_h + g->pad_t + g->pad_b, pw = g->in_w + g->pad_l + g->pad_r;
        if (eh > ph || ew > pw)
            return te_errf(err, TE_EFORMAT, "layer '%s': kernel larger than the padded input", lname);
        if (g->out_h != (ph - eh) / g->stride_h + 1 || g->out_w != (pw - ew) / g->stride_w + 1)
            return te_errf(err, TE_EFORMAT, "layer '%s': output %lldx%lld inconsistent with input, kernel and stride",
                           lname, (long long)g->out_h, (long long)g->out_w);
    }
    int64_t in_len, out_len, dot, wl, macs, t;
    if (__builtin_mul_overflow(g->in_c, g->in_h, &t) || __builtin_mul_overflow(t, g->in_w, &in_len) ||
        __builtin_mul_overflow(g->out_c, g->out_h, &t) || __builtin_mul_overflow(t, g->out_w, &out_len) ||
        __builtin_mul_overflow(g->in_c / g->group, g->k_h, &t) || __builtin_mul_overflow(t, g->k_w, &dot) ||
        __builtin_mul_overflow(g->out_c, dot, &wl) || __builtin_mul_overflow(out_len, dot, &macs) ||
        in_len > TE_MAX_NUMEL || out_len > TE_MAX_NUMEL || wl > TE_MAX_NUMEL || macs > TE_MAX_MACS ||
        in_len * g->batch > TE_MAX_NUMEL || out_len * g->batch > TE_MAX_NUMEL)
        return te_errf(err, TE_EFORMAT, "layer '%s': layer too large", lname);
    return TE_OK;
}

static te_status check_shape(const te_shape *s, const char *vname, te_err *err)
{
    if (s->ndim < 0 || s->ndim > TE_MAX_DIMS)
        return te_errf(err, TE_EFORMAT, "value '%s': %d dimensions (at most %d)", vname, s->ndim, TE_MAX_DIMS);
    int64_t n = 1;
    for (int i = 0; i < s->ndim; i++) {
        if (!in_range(s->d[i], 1, TE_MAX_NUMEL) || __builtin_mul_overflow(n, s->d[i], &n) || n > TE_MAX_NUMEL)
            return te_errf(err, TE_EFORMAT, "value '%s': invalid or too large shape", vname);
    }
    return TE_OK;
}

static te_status check_fp_vec(const uint64_t *v, int64_t n, const char *what, const char *lname, te_err *err)
{
    for (int64_t i = 0; i < n; i++)
        if (v[i] >= TE_P61)
            return te_errf(err, TE_EFORMAT, "layer '%s': %s[%lld] is not reduced mod 2^61-1", lname, what,
                           (long long)i);
    return TE_OK;
}

static te_status check_weights(const te_layer *L, te_err *err)
{
    if (!in_range(L->weight_bits, 1, 32))
        return te_errf(err, TE_EFORMAT, "layer '%s': weight_bits %d out of range 1..32", L->name, L->weight_bits);
    if (!L->w)
        return te_errf(err, TE_EFORMAT, "layer '%s': missing weights", L->name);
    int64_t n = te_geom_weight_len(&L->geom);
    int64_t hi = ((int64_t)1 << (L->weight_bits - 1)) - 1, lo = -hi - 1;
    for (int64_t i = 0; i < n; i++)
        if (L->w[i] < lo || L->w[i] > hi)
            return te_errf(err, TE_EFORMAT, "layer '%s': weight %lld = %ld does not fit in %d bits", L->name,
                           (long long)i, (long)L->w[i], L->weight_bits);
    return TE_OK;
}

/* Everything the device bundle carries, cross-references included. */
static te_status check_device_model(const te_model *m, te_err *err)
{
    te_status st;
    if (strlen(m->deployment_id) > 32)
        return te_errf(err, TE_EFORMAT, "deployment id longer than 32 characters");
    if (m->n_values < 0 || m->n_nodes < 0 || m->n_layers < 0)
        return te_errf(err, TE_EFORMAT, "negative element count");
    for (int i = 0; i < m->n_values; i++)
        if ((st = check_shape(&m->values[i].shape, m->values[i].name ? m->values[i].name : "", err)) != TE_OK)
            return st;
    for (int i = 0; i < m->n_layers; i++) {
        const te_layer *L = &m->layers[i];
        const char *ln = L->name ? L->name : "";
        if ((st = check_geom(&L->geom, ln, err)) != TE_OK)
            return st;
        if (!in_range(L->frac_bits, 0, 62) || !in_range(L->ring_bits, 1, 64) || !in_range(L->weight_bits, 1, 32))
            return te_errf(err, TE_EFORMAT, "layer '%s': frac_bits %d, ring_bits %d or weight_bits %d out of range",
                           ln, L->frac_bits, L->ring_bits, L->weight_bits);
        if (!L->w_scale || !L->w_l1)
            return te_errf(err, TE_EFORMAT, "layer '%s': missing w_scale or w_l1", ln);
        /* r and s come together (a provisioned device) or not at all (the
         * deployment's template) */
        if (!L->r != !L->s || (i > 0 && !L->r != !m->layers[0].r))
            return te_errf(err, TE_EFORMAT, "layer '%s': integrity keys r and s must be present on every layer "
                           "or on none", ln);
        if (L->r && ((st = check_fp_vec(L->r, te_geom_out_len(&L->geom), "r", ln, err)) != TE_OK ||
                     (st = check_fp_vec(L->s, te_geom_in_len(&L->geom), "s", ln, err)) != TE_OK))
            return st;
        /* the device's bound must stay below p/2 for every admissible input
         * (te_linear.h); a row sum at or above 2^60 admits none */
        for (int64_t o = 0; o < L->geom.out_c; o++)
            if (L->w_l1[o] >= ((uint64_t)1 << 60))
                return te_errf(err, TE_EFORMAT, "layer '%s': w_l1[%lld] out of range", ln, (long long)o);
    }
    for (int i = 0; i < m->n_nodes; i++) {
        const te_node *n = &m->nodes[i];
        const char *nn = n->name ? n->name : "";
        if (n->op <= TE_OP_INVALID || n->op >= TE_OP_COUNT_)
            return te_errf(err, TE_EFORMAT, "node %d '%s': unknown op %d", i, nn, (int)n->op);
        if (n->n_in < 1 || n->n_in > TE_MAX_NODE_IN || !n->in)
            return te_errf(err, TE_EFORMAT, "node %d '%s' (%s): bad input count %d", i, nn, te_op_name(n->op), n->n_in);
        const te_op_desc *d = te_op_info(n->op);
        if (n->n_in < d->min_in || n->n_in > d->max_in)
            return te_errf(err, TE_EFORMAT, "node %d '%s' (%s): needs %d to %d inputs, has %d", i, nn,
                           te_op_name(n->op), d->min_in, d->max_in, n->n_in);
        for (int k = 0; k < n->n_in; k++)
            if (n->in[k] < 0 || n->in[k] >= m->n_values)
                return te_errf(err, TE_EFORMAT, "node %d '%s': input value id %d out of range", i, nn, n->in[k]);
        if (n->out < 0 || n->out >= m->n_values)
            return te_errf(err, TE_EFORMAT, "node %d '%s': output value id %d out of range", i, nn, n->out);
        if (n->n_ints < 0 || n->n_ints > TE_MAX_NODE_INTS || (n->n_ints && !n->ints))
            return te_errf(err, TE_EFORMAT, "node %d '%s': bad ints count %d", i, nn, n->n_ints);
        if (n->pad_mode < TE_PAD_CONSTANT || n->pad_mode > TE_PAD_EDGE)
            return te_errf(err, TE_EFORMAT, "node %d '%s': unknown pad mode %d", i, nn, n->pad_mode);
        if (n->op == TE_OP_LINEAR && (n->layer < 0 || n->layer >= m->n_layers))
            return te_errf(err, TE_EFORMAT, "node %d '%s': layer index %d out of range", i, nn, n->layer);
    }
    if (m->input < 0 || m->input >= m->n_values || m->output < 0 || m->output >= m->n_values)
        return te_errf(err, TE_EFORMAT, "model input %d or output %d is not a value id", m->input, m->output);
    if (m->n_outputs < 0 || m->n_outputs > m->n_values ||
        (m->n_outputs > 1 && (!m->outputs || m->outputs[0] != m->output)))
        return te_errf(err, TE_EFORMAT, "bad model output list (%d outputs)", m->n_outputs);
    for (int k = 0; k < te_model_n_outputs(m); k++)
        if (te_model_output(m, k) < 0 || te_model_output(m, k) >= m->n_values)
            return te_errf(err, TE_EFORMAT, "model output %d: %d is not a value id", k, te_model_output(m, k));
    if (m->pre.present && !in_range(m->pre.channels, 1, 4))
        return te_errf(err, TE_EFORMAT, "preprocess: %d channels (1..4)", m->pre.channels);
    return TE_OK;
}

static te_status check_edge_model(const te_model *m, te_err *err)
{
    te_status st;
    if (strlen(m->deployment_id) > 32)
        return te_errf(err, TE_EFORMAT, "deployment id longer than 32 characters");
    for (int i = 0; i < m->n_layers; i++) {
        const te_layer *L = &m->layers[i];
        if ((st = check_geom(&L->geom, L->name ? L->name : "", err)) != TE_OK)
            return st;
        if ((st = check_weights(L, err)) != TE_OK)
            return st;
    }
    return TE_OK;
}

/* ---- geometry <-> proto ---- */

static void geom_to_pb(const te_linear_geom *g, Twinedge__Geom *p)
{
    twinedge__geom__init(p);
    p->kind = (uint32_t)g->kind;
    p->batch = g->batch;
    p->in_c = g->in_c, p->in_h = g->in_h, p->in_w = g->in_w;
    p->out_c = g->out_c, p->out_h = g->out_h, p->out_w = g->out_w;
    p->k_h = g->k_h, p->k_w = g->k_w;
    p->stride_h = g->stride_h, p->stride_w = g->stride_w;
    p->pad_t = g->pad_t, p->pad_l = g->pad_l, p->pad_b = g->pad_b, p->pad_r = g->pad_r;
    p->dil_h = g->dil_h, p->dil_w = g->dil_w;
    p->group = g->group;
}

static te_status geom_from_pb(const Twinedge__Geom *p, te_linear_geom *g, const char *lname, te_err *err)
{
    if (!p)
        return te_errf(err, TE_EFORMAT, "layer '%s': missing geometry", lname);
    if (p->kind != TE_LIN_FC && p->kind != TE_LIN_CONV)
        return te_errf(err, TE_EFORMAT, "layer '%s': unknown kind %u", lname, (unsigned)p->kind);
    g->kind = (te_lin_kind)p->kind;
    g->batch = p->batch;
    g->in_c = p->in_c, g->in_h = p->in_h, g->in_w = p->in_w;
    g->out_c = p->out_c, g->out_h = p->out_h, g->out_w = p->out_w;
    g->k_h = p->k_h, g->k_w = p->k_w;
    g->stride_h = p->stride_h, g->stride_w = p->stride_w;
    g->pad_t = p->pad_t, g->pad_l = p->pad_l, g->pad_b = p->pad_b, g->pad_r = p->pad_r;
    g->dil_h = p->dil_h, g->dil_w = p->dil_w;
    g->group = p->group;
    return check_geom(g, lname, err);
}

/* A bytes field holding exactly n elements of esz bytes, copied out. */
static te_status take_array(const ProtobufCBinaryData *bd, int64_t n, size_t esz, void **out, const char *what,
                            const char *owner, te_err *err)
{
    if ((uint64_t)bd->len != (uint64_t)n * esz)
        return te_errf(err, TE_EFORMAT, "%s: %s has %zu bytes, geometry implies %llu", owner, what, bd->len,
                       (unsigned long long)((uint64_t)n * esz));
    *out = le_copy(bd, (size_t)n, esz);
    if (!*out)
        return te_errf(err, TE_ENOMEM, "%s: cannot allocate %s", owner, what);
    return TE_OK;
}

static te_status pack_payload(const ProtobufCMessage *msg, uint32_t kind, int brotli, const char *path, unsigned mode,
                              te_err *err)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return te_errf(err, TE_ENOMEM, "%s: cannot allocate %zu bytes", path, n);
    protobuf_c_message_pack(msg, buf);
    uint8_t *file;
    size_t flen;
    te_status st = te_container_encode(kind, brotli, buf, n, &file, &flen, err);
    free(buf);
    if (st != TE_OK)
        return te_err_wrap(err, "%s", path);
    st = te_file_write_mode(path, file, flen, mode, err);
    free(file);
    return st;
}

/* ---- device bundle ---- */

te_status te_device_bundle_write(const char *path, const te_model *m, te_err *err)
{
    if (!path || !m)
        return te_errf(err, TE_EINVAL, "device bundle: null argument");
    te_status st = check_device_model(m, err);
    if (st != TE_OK) {
        if (err)
            err->code = TE_EINVAL;
        te_err_wrap(err, "device bundle: refusing to write an invalid model");
        return TE_EINVAL;
    }
    size_t nv = (size_t)m->n_values, nn = (size_t)m->n_nodes, nl = (size_t)m->n_layers;
    Twinedge__Value *vals = calloc(nv ? nv : 1, sizeof *vals);
    Twinedge__Value **vptr = calloc(nv ? nv : 1, sizeof *vptr);
    Twinedge__Node *nodes = calloc(nn ? nn : 1, sizeof *nodes);
    Twinedge__Node **nptr = calloc(nn ? nn : 1, sizeof *nptr);
    Twinedge__DeviceLayer *lays = calloc(nl ? nl : 1, sizeof *lays);
    Twinedge__DeviceLayer **lptr = calloc(nl ? nl : 1, sizeof *lptr);
    Twinedge__Geom *geoms = calloc(nl ? nl : 1, sizeof *geoms);
    int64_t *nints = calloc(nn ? nn : 1, 10 * sizeof(int64_t)); /* kernel, stride, dilation, pads */
    uint8_t **owned = calloc(nv + 4 * nl + 1, sizeof *owned);
    size_t n_owned = 0;
    if (!vals || !vptr || !nodes || !nptr || !lays || !lptr || !geoms || !nints || !owned) {
        st = te_errf(err, TE_ENOMEM, "device bundle: out of memory");
        goto out;
    }
    for (size_t i = 0; i < nv; i++) {
        const te_value *v = &m->values[i];
        Twinedge__Value *p = &vals[i];
        twinedge__value__init(p);
        p->name = (char *)(v->name ? v->name : "");
        p->n_dims = (size_t)v->shape.ndim;
        p->dims = (int64_t *)(uintptr_t)v->shape.d;
        if (v->data) {
            if ((st = le_view(v->data, (size_t)te_shape_numel(&v->shape), 4, &p->data, &owned[n_owned++], err)) != TE_OK)
                goto out;
        }
        vptr[i] = p;
    }
    for (size_t i = 0; i < nn; i++) {
        const te_node *n = &m->nodes[i];
        Twinedge__Node *p = &nodes[i];
        int64_t *a = nints + 10 * i;
        twinedge__node__init(p);
        p->op = (uint32_t)n->op;
        p->name = (char *)(n->name ? n->name : "");
        p->n_inputs = (size_t)n->n_in;
        p->inputs = (int32_t *)(uintptr_t)n->in;
        p->output = n->out;
        p->axis = n->axis;
        memcpy(a, n->kernel, 2 * sizeof *a);
        memcpy(a + 2, n->stride, 2 * sizeof *a);
        memcpy(a + 4, n->dilation, 2 * sizeof *a);
        memcpy(a + 6, n->pads, 4 * sizeof *a);
        p->n_kernel = 2, p->kernel = a;
        p->n_stride = 2, p->stride = a + 2;
        p->n_dilation = 2, p->dilation = a + 4;
        p->n_pads = 4, p->pads = a + 6;
        p->ceil_mode = n->ceil_mode;
        p->count_include_pad = n->count_include_pad;
        p->alpha = n->alpha, p->beta = n->beta, p->bias = n->bias;
        p->size = n->size;
        p->p = n->p;
        p->fmin = n->fmin, p->fmax = n->fmax;
        p->n_ints = (size_t)n->n_ints;
        p->ints = n->ints;
        p->pad_mode = n->pad_mode;
        p->pad_value = n->pad_value;
        p->keepdims = n->keepdims;
        p->layer = n->layer;
        nptr[i] = p;
    }
    for (size_t i = 0; i < nl; i++) {
        const te_layer *L = &m->layers[i];
        Twinedge__DeviceLayer *p = &lays[i];
        twinedge__device_layer__init(p);
        p->name = (char *)(L->name ? L->name : "");
        geom_to_pb(&L->geom, &geoms[i]);
        p->geom = &geoms[i];
        p->frac_bits = L->frac_bits;
        p->ring_bits = L->ring_bits;
        p->weight_bits = L->weight_bits;
        size_t oc = (size_t)L->geom.out_c;
        if ((st = le_view(L->w_scale, oc, 4, &p->w_scale, &owned[n_owned++], err)) != TE_OK ||
            (L->bias && (st = le_view(L->bias, oc, 4, &p->bias, &owned[n_owned++], err)) != TE_OK) ||
            (st = le_view(L->w_l1, oc, 8, &p->w_l1, &owned[n_owned++], err)) != TE_OK ||
            (L->r && (st = le_view(L->r, (size_t)te_geom_out_len(&L->geom), 8, &p->r, &owned[n_owned++], err)) != TE_OK) ||
            (L->s && (st = le_view(L->s, (size_t)te_geom_in_len(&L->geom), 8, &p->s, &owned[n_owned++], err)) != TE_OK))
            goto out;
        lptr[i] = p;
    }
    Twinedge__Preprocess pre = TWINEDGE__PREPROCESS__INIT;
    if (m->pre.present) {
        pre.present = 1;
        pre.channels = m->pre.channels;
        pre.n_mean = pre.n_std = (size_t)m->pre.channels;
        pre.mean = (float *)(uintptr_t)m->pre.mean;
        pre.std = (float *)(uintptr_t)m->pre.std;
    }
    Twinedge__DeviceBundle b = TWINEDGE__DEVICE_BUNDLE__INIT;
    b.version = TE_DEVICE_BUNDLE_VERSION;
    b.deployment_id = (char *)(uintptr_t)m->deployment_id;
    b.name = (char *)(m->name ? m->name : "");
    b.n_values = nv, b.values = vptr;
    b.n_nodes = nn, b.nodes = nptr;
    b.n_layers = nl, b.layers = lptr;
    b.input = m->input;
    b.output = m->output;
    if (m->n_outputs > 1) {
        b.n_outputs = (size_t)m->n_outputs;
        b.outputs = (int32_t *)(uintptr_t)m->outputs;
    }
    b.preprocess = &pre;
    /* r and s are uniform over F_p and dominate the size: not worth
     * compressing.  They are this device's secret: a host holding them could
     * forge results that pass its check, so the file is the owner's alone. */
    st = pack_payload(&b.base, TE_KIND_DEVICE_BUNDLE, 0, path, 0600, err);
out:
    if (owned)
        for (size_t i = 0; i < n_owned; i++)
            free(owned[i]);
    free(owned);
    free(vals);
    free(vptr);
    free(nodes);
    free(nptr);
    free(lays);
    free(lptr);
    free(geoms);
    free(nints);
    return st;
}

static te_status device_from_pb(const Twinedge__DeviceBundle *b, te_model *m, te_err *err)
{
    te_status st;
    if (b->version == 1)
        return te_errf(err, TE_EFORMAT, "device bundle version 1 (shared integrity keys, no bounds) is no longer "
                       "accepted: compile the model again and provision the device again");
    if (b->version != TE_DEVICE_BUNDLE_VERSION)
        return te_errf(err, TE_EFORMAT, "unsupported device bundle version %u", (unsigned)b->version);
    if (strlen(b->deployment_id) > 32)
        return te_errf(err, TE_EFORMAT, "deployment id longer than 32 characters");
    memcpy(m->deployment_id, b->deployment_id, strlen(b->deployment_id) + 1);
    if (!(m->name = dup_str(b->name)))
        return te_errf(err, TE_ENOMEM, "out of memory");
    if (b->n_values > INT32_MAX || b->n_nodes > INT32_MAX || b->n_layers > INT32_MAX)
        return te_errf(err, TE_EFORMAT, "too many elements");

    if (b->n_values && !(m->values = calloc(b->n_values, sizeof *m->values)))
        return te_errf(err, TE_ENOMEM, "out of memory");
    m->n_values = (int)b->n_values;
    for (size_t i = 0; i < b->n_values; i++) {
        const Twinedge__Value *p = b->values[i];
        te_value *v = &m->values[i];
        if (!(v->name = dup_str(p->name)))
            return te_errf(err, TE_ENOMEM, "out of memory");
        if (p->n_dims > TE_MAX_DIMS)
            return te_errf(err, TE_EFORMAT, "value '%s': %zu dimensions (at most %d)", v->name, p->n_dims, TE_MAX_DIMS);
        v->shape.ndim = (int)p->n_dims;
        for (size_t k = 0; k < p->n_dims; k++)
            v->shape.d[k] = p->dims[k];
        if ((st = check_shape(&v->shape, v->name, err)) != TE_OK)
            return st;
        if (p->data.len &&
            (st = take_array(&p->data, te_shape_numel(&v->shape), 4, (void **)&v->data, "constant data", v->name, err)) != TE_OK)
            return st;
    }

    if (b->n_layers && !(m->layers = calloc(b->n_layers, sizeof *m->layers)))
        return te_errf(err, TE_ENOMEM, "out of memory");
    m->n_layers = (int)b->n_layers;
    for (size_t i = 0; i < b->n_layers; i++) {
        const Twinedge__DeviceLayer *p = b->layers[i];
        te_layer *L = &m->layers[i];
        if (!(L->name = dup_str(p->name)))
            return te_errf(err, TE_ENOMEM, "out of memory");
        if ((st = geom_from_pb(p->geom, &L->geom, L->name, err)) != TE_OK)
            return st;
        L->frac_bits = p->frac_bits;
        L->ring_bits = p->ring_bits;
        L->weight_bits = p->weight_bits;
        int64_t oc = L->geom.out_c;
        if ((st = take_array(&p->w_scale, oc, 4, (void **)&L->w_scale, "w_scale", L->name, err)) != TE_OK ||
            (p->bias.len && (st = take_array(&p->bias, oc, 4, (void **)&L->bias, "bias", L->name, err)) != TE_OK) ||
            (st = take_array(&p->w_l1, oc, 8, (void **)&L->w_l1, "w_l1", L->name, err)) != TE_OK ||
            (p->r.len && (st = take_array(&p->r, te_geom_out_len(&L->geom), 8, (void **)&L->r, "r", L->name, err)) != TE_OK) ||
            (p->s.len && (st = take_array(&p->s, te_geom_in_len(&L->geom), 8, (void **)&L->s, "s", L->name, err)) != TE_OK))
            return st;
    }

    if (b->n_nodes && !(m->nodes = calloc(b->n_nodes, sizeof *m->nodes)))
        return te_errf(err, TE_ENOMEM, "out of memory");
    m->n_nodes = (int)b->n_nodes;
    for (size_t i = 0; i < b->n_nodes; i++) {
        const Twinedge__Node *p = b->nodes[i];
        te_node *n = &m->nodes[i];
        if (!(n->name = dup_str(p->name)))
            return te_errf(err, TE_ENOMEM, "out of memory");
        if (p->op == TE_OP_INVALID || p->op >= TE_OP_COUNT_)
            return te_errf(err, TE_EFORMAT, "node %zu '%s': unknown op %u", i, n->name, (unsigned)p->op);
        n->op = (te_op)p->op;
        if (p->n_inputs < 1 || p->n_inputs > TE_MAX_NODE_IN)
            return te_errf(err, TE_EFORMAT, "node %zu '%s': bad input count %zu", i, n->name, p->n_inputs);
        if (p->n_kernel != 2 || p->n_stride != 2 || p->n_dilation != 2 || p->n_pads != 4)
            return te_errf(err, TE_EFORMAT, "node %zu '%s': kernel/stride/dilation/pads need 2/2/2/4 entries", i,
                           n->name);
        if (p->n_ints > TE_MAX_NODE_INTS)
            return te_errf(err, TE_EFORMAT, "node %zu '%s': %zu ints (at most %d)", i, n->name, p->n_ints,
                           TE_MAX_NODE_INTS);
        n->n_in = (int)p->n_inputs;
        if (!(n->in = malloc(p->n_inputs * sizeof *n->in)))
            return te_errf(err, TE_ENOMEM, "out of memory");
        for (size_t k = 0; k < p->n_inputs; k++)
            n->in[k] = p->inputs[k];
        n->out = p->output;
        n->axis = p->axis;
        memcpy(n->kernel, p->kernel, sizeof n->kernel);
        memcpy(n->stride, p->stride, sizeof n->stride);
        memcpy(n->dilation, p->dilation, sizeof n->dilation);
        memcpy(n->pads, p->pads, sizeof n->pads);
        n->ceil_mode = p->ceil_mode;
        n->count_include_pad = p->count_include_pad;
        n->alpha = p->alpha, n->beta = p->beta, n->bias = p->bias;
        n->size = p->size;
        n->p = p->p;
        n->fmin = p->fmin, n->fmax = p->fmax;
        n->n_ints = (int)p->n_ints;
        if (p->n_ints) {
            if (!(n->ints = malloc(p->n_ints * sizeof *n->ints)))
                return te_errf(err, TE_ENOMEM, "out of memory");
            memcpy(n->ints, p->ints, p->n_ints * sizeof *n->ints);
        }
        n->pad_mode = p->pad_mode;
        n->pad_value = p->pad_value;
        n->keepdims = p->keepdims;
        n->layer = p->layer;
    }
    m->input = b->input;
    m->output = b->output;
    if (b->n_outputs > 1) {
        if (b->n_outputs > (size_t)m->n_values || b->outputs[0] != b->output)
            return te_errf(err, TE_EFORMAT, "bad model output list (%zu outputs)", b->n_outputs);
        if (te_model_set_outputs(m, b->outputs, (int)b->n_outputs) != 0)
            return te_errf(err, TE_ENOMEM, "out of memory");
    }
    if (b->preprocess && b->preprocess->present) {
        const Twinedge__Preprocess *p = b->preprocess;
        if (p->channels < 1 || p->channels > 4 || p->n_mean != (size_t)p->channels || p->n_std != (size_t)p->channels)
            return te_errf(err, TE_EFORMAT, "preprocess: %d channels with %zu means and %zu stds", p->channels,
                           p->n_mean, p->n_std);
        m->pre.present = 1;
        m->pre.channels = p->channels;
        memcpy(m->pre.mean, p->mean, (size_t)p->channels * sizeof(float));
        memcpy(m->pre.std, p->std, (size_t)p->channels * sizeof(float));
    }
    return check_device_model(m, err);
}

/* Unwrap the container and decode the protobuf; msg must be freed with
 * protobuf_c_message_free_unpacked. */
static te_status unwrap(const uint8_t *buf, size_t len, uint32_t kind, const ProtobufCMessageDescriptor *desc,
                        ProtobufCMessage **msg, te_err *err)
{
    uint8_t *payload;
    size_t plen;
    te_status st = te_container_decode(buf, len, kind, &payload, &plen, err);
    if (st != TE_OK)
        return st;
    *msg = protobuf_c_message_unpack(desc, NULL, plen, payload);
    if (kind == TE_KIND_DEVICE_KEY)
        OPENSSL_cleanse(payload, plen);
    free(payload);
    if (!*msg)
        return te_errf(err, TE_EFORMAT, "%s: payload is not a valid %s message", te_kind_name(kind), desc->short_name);
    return TE_OK;
}

te_status te_device_bundle_parse(const uint8_t *buf, size_t len, te_model **out, te_err *err)
{
    if (!buf || !out)
        return te_errf(err, TE_EINVAL, "device bundle: null argument");
    *out = NULL;
    ProtobufCMessage *msg;
    te_status st = unwrap(buf, len, TE_KIND_DEVICE_BUNDLE, &twinedge__device_bundle__descriptor, &msg, err);
    if (st != TE_OK)
        return st;
    te_model *m = te_model_new();
    if (!m)
        st = te_errf(err, TE_ENOMEM, "device bundle: out of memory");
    else if ((st = device_from_pb((const Twinedge__DeviceBundle *)msg, m, err)) != TE_OK)
        te_err_wrap(err, "device bundle");
    protobuf_c_message_free_unpacked(msg, NULL);
    if (st != TE_OK) {
        te_model_free(m);
        return st;
    }
    *out = m;
    return TE_OK;
}

static te_status read_and_parse(const char *path, te_model **m, te_err *err,
                                te_status (*parse)(const uint8_t *, size_t, te_model **, te_err *))
{
    if (!path || !m)
        return te_errf(err, TE_EINVAL, "null argument");
    uint8_t *buf;
    size_t len;
    te_status st = te_file_read(path, TE_BUNDLE_MAX_FILE, &buf, &len, err);
    if (st != TE_OK)
        return st;
    st = parse(buf, len, m, err);
    free(buf);
    if (st != TE_OK)
        te_err_wrap(err, "%s", path);
    return st;
}

te_status te_device_bundle_read(const char *path, te_model **m, te_err *err)
{
    return read_and_parse(path, m, err, te_device_bundle_parse);
}

/* ---- edge bundle ---- */

te_status te_edge_bundle_write(const char *path, const te_model *m, te_err *err)
{
    if (!path || !m)
        return te_errf(err, TE_EINVAL, "edge bundle: null argument");
    te_status st = check_edge_model(m, err);
    if (st != TE_OK) {
        if (err)
            err->code = TE_EINVAL;
        te_err_wrap(err, "edge bundle: refusing to write an invalid model");
        return TE_EINVAL;
    }
    size_t nl = (size_t)m->n_layers;
    Twinedge__EdgeLayer *lays = calloc(nl ? nl : 1, sizeof *lays);
    Twinedge__EdgeLayer **lptr = calloc(nl ? nl : 1, sizeof *lptr);
    Twinedge__Geom *geoms = calloc(nl ? nl : 1, sizeof *geoms);
    uint8_t **owned = calloc(nl ? nl : 1, sizeof *owned);
    if (!lays || !lptr || !geoms || !owned) {
        st = te_errf(err, TE_ENOMEM, "edge bundle: out of memory");
        goto out;
    }
    for (size_t i = 0; i < nl; i++) {
        const te_layer *L = &m->layers[i];
        Twinedge__EdgeLayer *p = &lays[i];
        twinedge__edge_layer__init(p);
        p->name = (char *)(L->name ? L->name : "");
        geom_to_pb(&L->geom, &geoms[i]);
        p->geom = &geoms[i];
        p->weight_bits = L->weight_bits;
        if ((st = le_view(L->w, (size_t)te_geom_weight_len(&L->geom), 4, &p->weights, &owned[i], err)) != TE_OK)
            goto out;
        lptr[i] = p;
    }
    Twinedge__EdgeBundle b = TWINEDGE__EDGE_BUNDLE__INIT;
    b.version = TE_PAYLOAD_VERSION;
    b.deployment_id = (char *)(uintptr_t)m->deployment_id;
    b.name = (char *)(m->name ? m->name : "");
    b.n_layers = nl;
    b.layers = lptr;
    st = pack_payload(&b.base, TE_KIND_EDGE_BUNDLE, 1, path, 0644, err);
out:
    if (owned)
        for (size_t i = 0; i < nl; i++)
            free(owned[i]);
    free(owned);
    free(lays);
    free(lptr);
    free(geoms);
    return st;
}

static te_status edge_from_pb(const Twinedge__EdgeBundle *b, te_model *m, te_err *err)
{
    te_status st;
    if (b->version != TE_PAYLOAD_VERSION)
        return te_errf(err, TE_EFORMAT, "unsupported edge bundle version %u", (unsigned)b->version);
    if (strlen(b->deployment_id) > 32)
        return te_errf(err, TE_EFORMAT, "deployment id longer than 32 characters");
    memcpy(m->deployment_id, b->deployment_id, strlen(b->deployment_id) + 1);
    if (!(m->name = dup_str(b->name)))
        return te_errf(err, TE_ENOMEM, "out of memory");
    if (b->n_layers > INT32_MAX)
        return te_errf(err, TE_EFORMAT, "too many layers");
    if (b->n_layers && !(m->layers = calloc(b->n_layers, sizeof *m->layers)))
        return te_errf(err, TE_ENOMEM, "out of memory");
    m->n_layers = (int)b->n_layers;
    for (size_t i = 0; i < b->n_layers; i++) {
        const Twinedge__EdgeLayer *p = b->layers[i];
        te_layer *L = &m->layers[i];
        if (!(L->name = dup_str(p->name)))
            return te_errf(err, TE_ENOMEM, "out of memory");
        if ((st = geom_from_pb(p->geom, &L->geom, L->name, err)) != TE_OK)
            return st;
        L->weight_bits = p->weight_bits;
        if ((st = take_array(&p->weights, te_geom_weight_len(&L->geom), 4, (void **)&L->w, "weights", L->name,
                             err)) != TE_OK)
            return st;
    }
    return check_edge_model(m, err);
}

te_status te_edge_bundle_parse(const uint8_t *buf, size_t len, te_model **out, te_err *err)
{
    if (!buf || !out)
        return te_errf(err, TE_EINVAL, "edge bundle: null argument");
    *out = NULL;
    ProtobufCMessage *msg;
    te_status st = unwrap(buf, len, TE_KIND_EDGE_BUNDLE, &twinedge__edge_bundle__descriptor, &msg, err);
    if (st != TE_OK)
        return st;
    te_model *m = te_model_new();
    if (!m)
        st = te_errf(err, TE_ENOMEM, "edge bundle: out of memory");
    else if ((st = edge_from_pb((const Twinedge__EdgeBundle *)msg, m, err)) != TE_OK)
        te_err_wrap(err, "edge bundle");
    protobuf_c_message_free_unpacked(msg, NULL);
    if (st != TE_OK) {
        te_model_free(m);
        return st;
    }
    *out = m;
    return TE_OK;
}

te_status te_edge_bundle_read(const char *path, te_model **m, te_err *err)
{
    return read_and_parse(path, m, err, te_edge_bundle_parse);
}

/* ---- device key ---- */

te_status te_device_key_write(const char *path, const te_device_key *k, te_err *err)
{
    if (!path || !k)
        return te_errf(err, TE_EINVAL, "device key: null argument");
    if (!memchr(k->device_id, '\0', sizeof k->device_id) || !memchr(k->deployment_id, '\0', sizeof k->deployment_id))
        return te_errf(err, TE_EINVAL, "device key: device id or deployment id not terminated");
    Twinedge__DeviceKey p = TWINEDGE__DEVICE_KEY__INIT;
    p.version = TE_PAYLOAD_VERSION;
    p.device_id = (char *)(uintptr_t)k->device_id;
    p.deployment_id = (char *)(uintptr_t)k->deployment_id;
    p.key.len = TE_KEY_BYTES;
    p.key.data = (uint8_t *)(uintptr_t)k->key;
    return pack_payload(&p.base, TE_KIND_DEVICE_KEY, 0, path, 0600, err);
}

te_status te_device_key_parse(const uint8_t *buf, size_t len, te_device_key *k, te_err *err)
{
    if (!buf || !k)
        return te_errf(err, TE_EINVAL, "device key: null argument");
    ProtobufCMessage *msg = NULL;
    te_status st = unwrap(buf, len, TE_KIND_DEVICE_KEY, &twinedge__device_key__descriptor, &msg, err);
    if (st != TE_OK)
        return st;
    const Twinedge__DeviceKey *p = (const Twinedge__DeviceKey *)msg;
    if (p->version != TE_PAYLOAD_VERSION)
        st = te_errf(err, TE_EFORMAT, "device key: unsupported version %u", (unsigned)p->version);
    else if (strlen(p->device_id) >= sizeof k->device_id || strlen(p->deployment_id) >= sizeof k->deployment_id)
        st = te_errf(err, TE_EFORMAT, "device key: device id or deployment id too long");
    else if (p->key.len != TE_KEY_BYTES)
        st = te_errf(err, TE_EFORMAT, "device key: key has %zu bytes, expected %d", p->key.len, TE_KEY_BYTES);
    else {
        memset(k, 0, sizeof *k);
        memcpy(k->device_id, p->device_id, strlen(p->device_id) + 1);
        memcpy(k->deployment_id, p->deployment_id, strlen(p->deployment_id) + 1);
        memcpy(k->key, p->key.data, TE_KEY_BYTES);
    }
    if (p->key.len)
        OPENSSL_cleanse(p->key.data, p->key.len);
    protobuf_c_message_free_unpacked(msg, NULL);
    return st;
}

te_status te_device_key_read(const char *path, te_device_key *k, te_err *err)
{
    if (!path || !k)
        return te_errf(err, TE_EINVAL, "device key: null argument");
    uint8_t *buf;
    size_t len;
    te_status st = te_file_read(path, 1 << 20, &buf, &len, err);
    if (st != TE_OK)
        return st;
    st = te_device_key_parse(buf, len, k, err);
    OPENSSL_cleanse(buf, len);
    free(buf);
    if (st != TE_OK)
        te_err_wrap(err, "%s", path);
    return st;
}
