/* Deployment files: round trips of a small hand-built model through device
 * bundles, edge bundles and device keys; corruption, truncation, wrong
 * kinds; payloads that parse but do not validate. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/stat.h>
#include <unistd.h>
#include <math.h>
#include <cmocka.h>

#include "te_bundle.h"
#include "te_linear.h"
#include "te_ring.h"
#include "bundle.pb-c.h"
#include <openssl/evp.h>

static uint64_t rng_next(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static char tmpdir[256];

static const char *tpath(const char *name)
{
    static char p[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(p[k], sizeof p[k], "%s/%s", tmpdir, name);
    return p[k];
}

/* ---- a small model: conv(+bias) -> relu -> reshape -> fc -> add const ---- */

static float *fvec(size_t n, uint64_t *s)
{
    float *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = (float)((int64_t)(rng_next(s) % 20001) - 10000) / 997.0f;
    return v;
}

static uint64_t *fpvec(size_t n, uint64_t *s)
{
    uint64_t *v = malloc(n * sizeof *v);
    assert_non_null(v);
    for (size_t i = 0; i < n; i++)
        v[i] = rng_next(s) % TE_P61;
    v[0] = TE_P61 - 1;
    return v;
}

static int32_t *wvec(size_t n, int bits, uint64_t *s)
{
    int32_t *v = malloc(n * sizeof *v);
    assert_non_null(v);
    int64_t range = (int64_t)1 << bits;
    for (size_t i = 0; i < n; i++)
        v[i] = (int32_t)((int64_t)(rng_next(s) % (uint64_t)range) - range / 2);
    v[0] = (int32_t)(-range / 2);
    v[1] = (int32_t)(range / 2 - 1);
    return v;
}

static te_model *build_model(void)
{
    uint64_t s = 2024;
    te_model *m = te_model_new();
    assert_non_null(m);
    m->name = strdup("tiny-cnn");
    strcpy(m->deployment_id, "0123456789abcdef0123456789abcdef");
    te_shape sx = {4, {1, 1, 5, 5}}, sc = {4, {1, 2, 5, 5}}, sf = {2, {1, 50}}, so = {2, {1, 3}}, sk = {1, {3}};
    assert_int_equal(te_model_add_value(m, "x", &sx, NULL), 0);
    assert_int_equal(te_model_add_value(m, "conv_out", &sc, NULL), 1);
    assert_int_equal(te_model_add_value(m, "relu_out", &sc, NULL), 2);
    assert_int_equal(te_model_add_value(m, "flat", &sf, NULL), 3);
    assert_int_equal(te_model_add_value(m, "fc_out", &so, NULL), 4);
    assert_int_equal(te_model_add_value(m, "offset", &sk, fvec(3, &s)), 5);
    assert_int_equal(te_model_add_value(m, "y", &so, NULL), 6);
    m->input = 0;
    m->output = 6;

    te_layer conv;
    memset(&conv, 0, sizeof conv);
    conv.name = "conv1";
    conv.geom = (te_linear_geom){.kind = TE_LIN_CONV, .batch = 1, .in_c = 1, .in_h = 5, .in_w = 5, .out_c = 2,
                                 .out_h = 5, .out_w = 5, .k_h = 3, .k_w = 3, .stride_h = 1, .stride_w = 1,
                                 .pad_t = 1, .pad_l = 1, .pad_b = 1, .pad_r = 1, .dil_h = 1, .dil_w = 1, .group = 1};
    conv.frac_bits = 12;
    conv.ring_bits = 37;
    conv.weight_bits = 8;
    conv.w_scale = fvec(2, &s);
    conv.bias = fvec(2, &s);
    conv.r = fpvec(50, &s);
    conv.s = fpvec(25, &s);
    conv.w = wvec(18, 8, &s);
    conv.w_l1 = calloc(2, sizeof *conv.w_l1);
    te_linear_row_l1(&conv.geom, conv.w, conv.w_l1);
    assert_int_equal(te_model_add_layer(m, &conv), 0);

    te_layer fc;
    memset(&fc, 0, sizeof fc);
    fc.name = "fc1";
    fc.geom = (te_linear_geom){.kind = TE_LIN_FC, .batch = 1, .in_c = 50, .in_h = 1, .in_w = 1, .out_c = 3,
                               .out_h = 1, .out_w = 1, .k_h = 1, .k_w = 1, .stride_h = 1, .stride_w = 1,
                               .dil_h = 1, .dil_w = 1, .group = 1};
    fc.frac_bits = 10;
    fc.ring_bits = 64;
    fc.weight_bits = 16;
    fc.w_scale = fvec(3, &s);
    fc.bias = NULL;
    fc.r = fpvec(3, &s);
    fc.s = fpvec(50, &s);
    fc.w = wvec(150, 16, &s);
    fc.w_l1 = calloc(3, sizeof *fc.w_l1);
    te_linear_row_l1(&fc.geom, fc.w, fc.w_l1);
    assert_int_equal(te_model_add_layer(m, &fc), 1);

    te_node n;
    int in1[1], in2[2];
    int64_t ints[3] = {7, -8, 9};
    memset(&n, 0, sizeof n);
    n.op = TE_OP_LINEAR, n.name = "Conv_0", n.n_in = 1, n.in = in1, in1[0] = 0, n.out = 1, n.layer = 0;
    assert_int_equal(te_model_add_node(m, &n), 0);
    /* a node with every field set to something distinctive */
    memset(&n, 0, sizeof n);
    n.op = TE_OP_RELU, n.name = "Relu_1", n.n_in = 1, n.in = in1, in1[0] = 1, n.out = 2;
    n.axis = -3, n.kernel[0] = 2, n.kernel[1] = 3, n.stride[0] = 4, n.stride[1] = 5;
    n.dilation[0] = 6, n.dilation[1] = 7, n.pads[0] = 1, n.pads[1] = 2, n.pads[2] = 3, n.pads[3] = 4;
    n.ceil_mode = 1, n.count_include_pad = 1, n.alpha = 0.25f, n.beta = -1.5f, n.bias = 2.0f, n.size = 5;
    n.p = 2, n.fmin = -INFINITY, n.fmax = 6.0f, n.n_ints = 3, n.ints = ints, n.pad_mode = TE_PAD_REFLECT;
    n.pad_value = -0.5f, n.keepdims = 1, n.layer = -1;
    assert_int_equal(te_model_add_node(m, &n), 1);
    memset(&n, 0, sizeof n);
    n.op = TE_OP_RESHAPE, n.name = "Flatten_2", n.n_in = 1, n.in = in1, in1[0] = 2, n.out = 3, n.axis = 1;
    assert_int_equal(te_model_add_node(m, &n), 2);
    memset(&n, 0, sizeof n);
    n.op = TE_OP_LINEAR, n.name = "Gemm_3", n.n_in = 1, n.in = in1, in1[0] = 3, n.out = 4, n.layer = 1;
    assert_int_equal(te_model_add_node(m, &n), 3);
    memset(&n, 0, sizeof n);
    n.op = TE_OP_ADD, n.name = "Add_4", n.n_in = 2, n.in = in2, in2[0] = 4, in2[1] = 5, n.out = 6;
    assert_int_equal(te_model_add_node(m, &n), 4);

    m->pre.present = 1;
    m->pre.channels = 3;
    const float mean[3] = {0.485f, 0.456f, 0.406f}, sd[3] = {0.229f, 0.224f, 0.225f};
    memcpy(m->pre.mean, mean, sizeof mean);
    memcpy(m->pre.std, sd, sizeof sd);
    return m;
}

static void same_floats(const float *a, const float *b, int64_t n)
{
    if (!a || !b) {
        assert_true(a == b);
        return;
    }
    assert_memory_equal(a, b, (size_t)n * sizeof *a);
}

static void compare_geom(const te_linear_geom *a, const te_linear_geom *b)
{
    assert_int_equal(a->kind, b->kind);
    const int64_t fa[] = {a->batch, a->in_c, a->in_h, a->in_w, a->out_c, a->out_h, a->out_w, a->k_h, a->k_w,
                          a->stride_h, a->stride_w, a->pad_t, a->pad_l, a->pad_b, a->pad_r, a->dil_h, a->dil_w,
                          a->group};
    const int64_t fb[] = {b->batch, b->in_c, b->in_h, b->in_w, b->out_c, b->out_h, b->out_w, b->k_h, b->k_w,
                          b->stride_h, b->stride_w, b->pad_t, b->pad_l, b->pad_b, b->pad_r, b->dil_h, b->dil_w,
                          b->group};
    assert_memory_equal(fa, fb, sizeof fa);
}

static void compare_device(const te_model *a, const te_model *b)
{
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->deployment_id, b->deployment_id);
    assert_int_equal(a->n_values, b->n_values);
    for (int i = 0; i < a->n_values; i++) {
        const te_value *x = &a->values[i], *y = &b->values[i];
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->shape.ndim, y->shape.ndim);
        assert_memory_equal(x->shape.d, y->shape.d, (size_t)x->shape.ndim * sizeof x->shape.d[0]);
        same_floats(x->data, y->data, te_shape_numel(&x->shape));
    }
    assert_int_equal(a->n_nodes, b->n_nodes);
    for (int i = 0; i < a->n_nodes; i++) {
        const te_node *x = &a->nodes[i], *y = &b->nodes[i];
        assert_int_equal(x->op, y->op);
        assert_string_equal(x->name, y->name);
        assert_int_equal(x->n_in, y->n_in);
        assert_memory_equal(x->in, y->in, (size_t)x->n_in * sizeof *x->in);
        assert_int_equal(x->out, y->out);
        assert_int_equal(x->axis, y->axis);
        assert_memory_equal(x->kernel, y->kernel, sizeof x->kernel);
        assert_memory_equal(x->stride, y->stride, sizeof x->stride);
        assert_memory_equal(x->dilation, y->dilation, sizeof x->dilation);
        assert_memory_equal(x->pads, y->pads, sizeof x->pads);
        assert_int_equal(x->ceil_mode, y->ceil_mode);
        assert_int_equal(x->count_include_pad, y->count_include_pad);
        assert_true(x->alpha == y->alpha && x->beta == y->beta && x->bias == y->bias);
        assert_int_equal(x->size, y->size);
        assert_int_equal(x->p, y->p);
        assert_true(x->fmin == y->fmin && x->fmax == y->fmax);
        assert_int_equal(x->n_ints, y->n_ints);
        if (x->n_ints)
            assert_memory_equal(x->ints, y->ints, (size_t)x->n_ints * sizeof *x->ints);
        assert_int_equal(x->pad_mode, y->pad_mode);
        assert_true(x->pad_value == y->pad_value);
        assert_int_equal(x->keepdims, y->keepdims);
        assert_int_equal(x->layer, y->layer);
    }
    assert_int_equal(a->n_layers, b->n_layers);
    for (int i = 0; i < a->n_layers; i++) {
        const te_layer *x = &a->layers[i], *y = &b->layers[i];
        assert_string_equal(x->name, y->name);
        compare_geom(&x->geom, &y->geom);
        assert_int_equal(x->frac_bits, y->frac_bits);
        assert_int_equal(x->ring_bits, y->ring_bits);
        assert_int_equal(x->weight_bits, y->weight_bits);
        same_floats(x->w_scale, y->w_scale, x->geom.out_c);
        same_floats(x->bias, y->bias, x->geom.out_c);
        assert_memory_equal(x->r, y->r, (size_t)te_geom_out_len(&x->geom) * 8);
        assert_memory_equal(x->s, y->s, (size_t)te_geom_in_len(&x->geom) * 8);
        assert_null(y->w); /* weights never reach the device */
        assert_null(y->w_float);
    }
    assert_int_equal(a->input, b->input);
    assert_int_equal(a->output, b->output);
    assert_int_equal(a->pre.present, b->pre.present);
    assert_int_equal(a->pre.channels, b->pre.channels);
    assert_memory_equal(a->pre.mean, b->pre.mean, sizeof a->pre.mean);
    assert_memory_equal(a->pre.std, b->pre.std, sizeof a->pre.std);
}

static void compare_edge(const te_model *a, const te_model *b)
{
    assert_string_equal(a->name, b->name);
    assert_string_equal(a->deployment_id, b->deployment_id);
    assert_int_equal(b->n_values, 0);
    assert_int_equal(b->n_nodes, 0);
    assert_int_equal(a->n_layers, b->n_layers);
    for (int i = 0; i < a->n_layers; i++) {
        const te_layer *x = &a->layers[i], *y = &b->layers[i];
        assert_string_equal(x->name, y->name);
        compare_geom(&x->geom, &y->geom);
        assert_int_equal(x->weight_bits, y->weight_bits);
        assert_memory_equal(x->w, y->w, (size_t)te_geom_weight_len(&x->geom) * 4);
        /* nothing secret from the device side */
        assert_null(y->r);
        assert_null(y->s);
        assert_null(y->w_scale);
        assert_null(y->bias);
    }
}

static uint8_t *slurp(const char *path, size_t *len)
{
    uint8_t *b;
    te_err err;
    assert_int_equal(te_file_read(path, (size_t)1 << 24, &b, len, &err), TE_OK);
    return b;
}

/* ---- tests ---- */

static void test_geometry_helpers(void **state)
{
    (void)state;
    te_model *m = build_model();
    const te_linear_geom *c = &m->layers[0].geom, *f = &m->layers[1].geom;
    assert_int_equal(te_geom_in_len(c), 25);
    assert_int_equal(te_geom_out_len(c), 50);
    assert_int_equal(te_geom_dot_len(c), 9);
    assert_int_equal(te_geom_weight_len(c), 18);
    assert_int_equal(te_geom_macs(c), 450);
    assert_int_equal(te_geom_in_len(f), 50);
    assert_int_equal(te_geom_out_len(f), 3);
    assert_int_equal(te_geom_dot_len(f), 50);
    assert_int_equal(te_geom_weight_len(f), 150);
    assert_int_equal(te_geom_macs(f), 150);
    te_linear_geom g = *c;
    g.in_c = 8, g.out_c = 4, g.group = 4;
    assert_int_equal(te_geom_dot_len(&g), 18);
    assert_int_equal(te_geom_weight_len(&g), 72);
    te_shape s = {3, {2, 3, 4}}, z = {0, {0}};
    assert_int_equal(te_shape_numel(&s), 24);
    assert_int_equal(te_shape_numel(&z), 1);
    for (int op = 0; op < TE_OP_COUNT_; op++)
        assert_string_not_equal(te_op_name((te_op)op), "Unknown");
    assert_string_equal(te_op_name(TE_OP_MAXPOOL), "MaxPool");
    assert_string_equal(te_op_name(TE_OP_LINEAR), "Linear");
    assert_string_equal(te_op_name(TE_OP_COUNT_), "Unknown");
    te_model_free(m);
}

static void test_device_round_trip(void **state)
{
    (void)state;
    te_model *m = build_model(), *r = NULL;
    te_err err = {TE_OK, ""};
    if (te_device_bundle_write(tpath("dev.bundle"), m, &err) != TE_OK)
        fail_msg("write: %s", err.msg);
    if (te_device_bundle_read(tpath("dev.bundle"), &r, &err) != TE_OK)
        fail_msg("read: %s", err.msg);
    compare_device(m, r);
    te_model_free(r);
    /* no preprocessing, no constants */
    m->pre.present = 0;
    m->pre.channels = 0;
    memset(m->pre.mean, 0, sizeof m->pre.mean);
    memset(m->pre.std, 0, sizeof m->pre.std);
    assert_int_equal(te_device_bundle_write(tpath("dev2.bundle"), m, &err), TE_OK);
    assert_int_equal(te_device_bundle_read(tpath("dev2.bundle"), &r, &err), TE_OK);
    compare_device(m, r);
    te_model_free(r);
    te_model_free(m);
}

static void test_edge_round_trip(void **state)
{
    (void)state;
    te_model *m = build_model(), *r = NULL;
    te_err err = {TE_OK, ""};
    if (te_edge_bundle_write(tpath("edge.bundle"), m, &err) != TE_OK)
        fail_msg("write: %s", err.msg);
    if (te_edge_bundle_read(tpath("edge.bundle"), &r, &err) != TE_OK)
        fail_msg("read: %s", err.msg);
    compare_edge(m, r);
    te_model_free(r);
    /* the edge bundle is Brotli-compressed (flag word at offset 16) */
    size_t len;
    uint8_t *b = slurp(tpath("edge.bundle"), &len);
    assert_int_equal(b[16], TE_CONTAINER_BROTLI);
    free(b);
    te_model_free(m);
}

static void test_key_round_trip(void **state)
{
    (void)state;
    te_device_key k, r;
    memset(&k, 0, sizeof k);
    strcpy(k.device_id, "sensor-0042");
    strcpy(k.deployment_id, "0123456789abcdef0123456789abcdef");
    for (int i = 0; i < TE_KEY_BYTES; i++)
        k.key[i] = (uint8_t)(i * 37 + 1);
    te_err err;
    assert_int_equal(te_device_key_write(tpath("dev.key"), &k, &err), TE_OK);
    memset(&r, 0x77, sizeof r);
    assert_int_equal(te_device_key_read(tpath("dev.key"), &r, &err), TE_OK);
    assert_string_equal(r.device_id, k.device_id);
    assert_string_equal(r.deployment_id, k.deployment_id);
    assert_memory_equal(r.key, k.key, TE_KEY_BYTES);
    struct stat st;
    assert_int_equal(stat(tpath("dev.key"), &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
}

typedef te_status (*parse_fn)(const uint8_t *, size_t, te_err *);

static te_status parse_dev(const uint8_t *b, size_t n, te_err *err)
{
    te_model *m = NULL;
    te_status st = te_device_bundle_parse(b, n, &m, err);
    assert_true((st == TE_OK) == (m != NULL));
    te_model_free(m);
    return st;
}

static te_status parse_edge(const uint8_t *b, size_t n, te_err *err)
{
    te_model *m = NULL;
    te_status st = te_edge_bundle_parse(b, n, &m, err);
    assert_true((st == TE_OK) == (m != NULL));
    te_model_free(m);
    return st;
}

/* Device keys have no in-memory parser: go through a file. */
static te_status parse_key(const uint8_t *b, size_t n, te_err *err)
{
    te_err e2;
    assert_int_equal(te_file_write_atomic(tpath("scratch.key"), b, n, &e2), TE_OK);
    te_device_key k;
    return te_device_key_read(tpath("scratch.key"), &k, err);
}

static void write_all(void)
{
    te_model *m = build_model();
    te_err err;
    assert_int_equal(te_device_bundle_write(tpath("c.dev"), m, &err), TE_OK);
    assert_int_equal(te_edge_bundle_write(tpath("c.edge"), m, &err), TE_OK);
    te_device_key k;
    memset(&k, 0, sizeof k);
    strcpy(k.device_id, "d1");
    assert_int_equal(te_device_key_write(tpath("c.key"), &k, &err), TE_OK);
    te_model_free(m);
}

static void check_corruption(const char *file, parse_fn parse, int step)
{
    size_t len;
    uint8_t *b = slurp(tpath(file), &len);
    te_err err;
    assert_int_equal(parse(b, len, &err), TE_OK);
    /* flip one byte anywhere */
    for (size_t pos = 0; pos < len; pos += (pos < 80 ? 1 : (size_t)step)) {
        for (int bit = 0; bit < 8; bit += (pos < 80 && step > 1 ? 1 : 7)) {
            b[pos] ^= (uint8_t)(1u << bit);
            err.msg[0] = '\0';
            te_status st = parse(b, len, &err);
            if (st != TE_EFORMAT)
                fail_msg("%s: flipping bit %d of byte %zu gave %d (%s)", file, bit, pos, st, err.msg);
            /* past the header fields: the checksum or the stored bytes */
            if (pos >= 36 && !strstr(err.msg, "checksum"))
                fail_msg("%s: byte %zu: message does not mention the checksum: %s", file, pos, err.msg);
            b[pos] ^= (uint8_t)(1u << bit);
        }
    }
    /* truncation */
    for (size_t n = 0; n < len; n += (n < 80 ? 1 : (size_t)step))
        assert_int_equal(parse(b, n, &err), TE_EFORMAT);
    assert_int_equal(parse(b, len - 1, &err), TE_EFORMAT);
    /* trailing bytes */
    uint8_t *c = malloc(len + 1);
    memcpy(c, b, len);
    c[len] = 0;
    assert_int_equal(parse(c, len + 1, &err), TE_EFORMAT);
    /* bad magic */
    memcpy(c, b, len);
    c[0] = 'X';
    assert_int_equal(parse(c, len, &err), TE_EFORMAT);
    assert_non_null(strstr(err.msg, "magic"));
    /* unknown version */
    memcpy(c, b, len);
    c[8] = 2;
    assert_int_equal(parse(c, len, &err), TE_EFORMAT);
    assert_non_null(strstr(err.msg, "version"));
    free(c);
    free(b);
}

static void test_corruption(void **state)
{
    (void)state;
    write_all();
    check_corruption("c.dev", parse_dev, 3);
    check_corruption("c.edge", parse_edge, 2);
    check_corruption("c.key", parse_key, 1); /* every byte, two bits each (one file write per try) */
}

static void test_wrong_kind(void **state)
{
    (void)state;
    write_all();
    size_t ld, le, lk;
    uint8_t *d = slurp(tpath("c.dev"), &ld), *e = slurp(tpath("c.edge"), &le), *k = slurp(tpath("c.key"), &lk);
    te_err err;
    assert_int_equal(parse_edge(d, ld, &err), TE_EFORMAT);
    assert_non_null(strstr(err.msg, "wrong file kind"));
    assert_non_null(strstr(err.msg, "device bundle"));
    assert_int_equal(parse_dev(e, le, &err), TE_EFORMAT);
    assert_non_null(strstr(err.msg, "wrong file kind"));
    assert_int_equal(parse_dev(k, lk, &err), TE_EFORMAT);
    assert_int_equal(parse_key(d, ld, &err), TE_EFORMAT);
    assert_non_null(strstr(err.msg, "wrong file kind"));
    te_model *m = NULL;
    assert_int_equal(te_device_bundle_read(tpath("does-not-exist"), &m, &err), TE_EIO);
    free(d);
    free(e);
    free(k);
}

/* ---- payloads with a valid checksum that must not validate ---- */

static uint8_t *wrap(const ProtobufCMessage *msg, uint32_t kind, int brotli, size_t *len)
{
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *p = malloc(n + 1), *out;
    protobuf_c_message_pack(msg, p);
    te_err err;
    assert_int_equal(te_container_encode(kind, brotli, p, n, &out, len, &err), TE_OK);
    free(p);
    return out;
}

static Twinedge__DeviceBundle *load_dev_pb(void)
{
    size_t len, plen;
    uint8_t *b = slurp(tpath("c.dev"), &len), *p;
    te_err err;
    assert_int_equal(te_container_decode(b, len, TE_KIND_DEVICE_BUNDLE, &p, &plen, &err), TE_OK);
    Twinedge__DeviceBundle *d = twinedge__device_bundle__unpack(NULL, plen, p);
    assert_non_null(d);
    free(p);
    free(b);
    return d;
}

static void expect_invalid_dev(Twinedge__DeviceBundle *d, const char *what, const char *needle)
{
    size_t len;
    uint8_t *b = wrap(&d->base, TE_KIND_DEVICE_BUNDLE, 0, &len);
    te_err err = {TE_OK, ""};
    te_status st = parse_dev(b, len, &err);
    if (st != TE_EFORMAT)
        fail_msg("%s: accepted (status %d)", what, st);
    if (needle && !strstr(err.msg, needle))
        fail_msg("%s: message '%s' lacks '%s'", what, err.msg, needle);
    free(b);
}

static void test_invalid_device_payloads(void **state)
{
    (void)state;
    write_all();
    Twinedge__DeviceBundle *d = load_dev_pb();
    size_t len;
    uint8_t *b = wrap(&d->base, TE_KIND_DEVICE_BUNDLE, 1, &len); /* Brotli device bundles are read too */
    te_err err;
    assert_int_equal(parse_dev(b, len, &err), TE_OK);
    free(b);

#define MUTATE(field, val, needle)                                                                        \
    do {                                                                                                   \
        __typeof__(field) saved_ = (field);                                                                \
        (field) = (val);                                                                                   \
        expect_invalid_dev(d, #field " = " #val, needle);                                                  \
        (field) = saved_;                                                                                  \
    } while (0)

    MUTATE(d->version, 3, "version");
    MUTATE(d->version, 1, "no longer accepted");
    MUTATE(d->input, 7, "input");
    MUTATE(d->output, -1, "output");
    MUTATE(d->deployment_id, "0123456789abcdef0123456789abcdef0", "deployment");
    MUTATE(d->values[0]->dims[2], 0, "shape");
    MUTATE(d->values[0]->dims[2], -5, "shape");
    MUTATE(d->values[0]->dims[2], (int64_t)1 << 40, "shape");
    {
        int64_t nine[9] = {1, 1, 1, 1, 1, 1, 1, 1, 1};
        int64_t *saved = d->values[0]->dims;
        d->values[0]->dims = nine;
        MUTATE(d->values[0]->n_dims, 9, "dimensions");
        d->values[0]->dims = saved;
    }
    MUTATE(d->values[5]->data.len, 8, "constant data");
    MUTATE(d->values[5]->dims[0], 4, "constant data");
    MUTATE(d->nodes[0]->op, 99, "op");
    MUTATE(d->nodes[0]->op, 0, "op");
    MUTATE(d->nodes[0]->layer, 2, "layer index");
    MUTATE(d->nodes[0]->layer, -1, "layer index");
    MUTATE(d->nodes[0]->inputs[0], 7, "input value id");
    MUTATE(d->nodes[0]->inputs[0], -1, "input value id");
    MUTATE(d->nodes[0]->output, 100, "output value id");
    MUTATE(d->nodes[0]->n_inputs, 0, "input count");
    MUTATE(d->nodes[4]->n_inputs, 1, "needs 2 to 2 inputs");
    MUTATE(d->nodes[1]->n_kernel, 1, "kernel");
    {
        int64_t many[17] = {0};
        int64_t *saved = d->nodes[1]->ints;
        d->nodes[1]->ints = many;
        MUTATE(d->nodes[1]->n_ints, 17, "ints");
        d->nodes[1]->ints = saved;
    }
    MUTATE(d->nodes[1]->pad_mode, 3, "pad mode");
    MUTATE(d->layers[0]->geom->kind, 3, "kind");
    MUTATE(d->layers[0]->geom->out_h, 6, "inconsistent");
    MUTATE(d->layers[0]->geom->group, 2, "group");
    MUTATE(d->layers[0]->geom->group, 0, "out of range");
    MUTATE(d->layers[0]->geom->stride_h, 0, "out of range");
    MUTATE(d->layers[0]->geom->k_h, 9, "kernel larger");
    MUTATE(d->layers[0]->geom->pad_t, -1, "padding");
    MUTATE(d->layers[0]->geom->batch, 0, "batch");
    MUTATE(d->layers[0]->geom, NULL, "geometry");
    MUTATE(d->layers[1]->geom->in_h, 2, "FC");
    /* the device's bound and the per-device keys */
    MUTATE(d->layers[0]->w_l1.len, 0, "w_l1");
    MUTATE(d->layers[1]->r.len, 0, "integrity keys");
    {
        /* keys on the first layer only: a device would run the second unchecked */
        ProtobufCBinaryData r1 = d->layers[1]->r, s1 = d->layers[1]->s;
        d->layers[1]->r.len = d->layers[1]->s.len = 0;
        expect_invalid_dev(d, "keys on one layer only", "integrity keys");
        d->layers[1]->r = r1, d->layers[1]->s = s1;
    }
    {
        uint64_t big[3] = {1, (uint64_t)1 << 60, 1};
        ProtobufCBinaryData saved = d->layers[1]->w_l1;
        d->layers[1]->w_l1.data = (uint8_t *)big;
        expect_invalid_dev(d, "w_l1 at 2^60", "w_l1");
        d->layers[1]->w_l1 = saved;
    }
    MUTATE(d->layers[1]->geom->pad_l, 1, "FC");
    MUTATE(d->layers[1]->geom->in_c, (int64_t)1 << 23, "s has");
    MUTATE(d->layers[0]->r.len, d->layers[0]->r.len - 8, "r has");
    MUTATE(d->layers[0]->w_scale.len, 4, "w_scale");
    MUTATE(d->layers[0]->bias.len, 4, "bias");
    MUTATE(d->layers[0]->s.len, 0, "integrity keys");
    MUTATE(d->layers[0]->ring_bits, 65, "ring_bits");
    MUTATE(d->layers[0]->ring_bits, 0, "ring_bits");
    MUTATE(d->layers[0]->frac_bits, -1, "frac_bits");
    MUTATE(d->layers[0]->weight_bits, 33, "weight_bits");
    MUTATE(d->preprocess->channels, 5, "preprocess");
    MUTATE(d->preprocess->n_mean, 2, "preprocess");
    {
        uint64_t saved, bad = TE_P61;
        memcpy(&saved, d->layers[0]->r.data + 24, 8);
        memcpy(d->layers[0]->r.data + 24, &bad, 8);
        expect_invalid_dev(d, "r >= p", "not reduced");
        memcpy(d->layers[0]->r.data + 24, &saved, 8);
    }
#undef MUTATE
    twinedge__device_bundle__free_unpacked(d, NULL);
}

static void test_invalid_edge_payloads(void **state)
{
    (void)state;
    write_all();
    size_t len, plen;
    uint8_t *b = slurp(tpath("c.edge"), &len), *p;
    te_err err;
    assert_int_equal(te_container_decode(b, len, TE_KIND_EDGE_BUNDLE, &p, &plen, &err), TE_OK);
    free(b);
    Twinedge__EdgeBundle *e = twinedge__edge_bundle__unpack(NULL, plen, p);
    assert_non_null(e);
    free(p);
    struct {
        const char *what, *needle;
    } cases[] = {{"weight out of range", "does not fit"}, {"weights too short", "weights has"},
                 {"weight_bits 0", "weight_bits"},        {"version", "version"},
                 {"geometry", "inconsistent"}};
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        int32_t w0;
        memcpy(&w0, e->layers[0]->weights.data, 4);
        size_t wl = e->layers[0]->weights.len;
        int wb = e->layers[0]->weight_bits;
        uint32_t ver = e->version;
        int64_t oh = e->layers[0]->geom->out_h;
        if (c == 0) {
            int32_t big = 128; /* layer 0 has 8-bit weights */
            memcpy(e->layers[0]->weights.data, &big, 4);
        } else if (c == 1) {
            e->layers[0]->weights.len -= 4;
        } else if (c == 2) {
            e->layers[0]->weight_bits = 0;
        } else if (c == 3) {
            e->version = 0;
        } else {
            e->layers[0]->geom->out_h = 4;
        }
        b = wrap(&e->base, TE_KIND_EDGE_BUNDLE, 1, &len);
        err.msg[0] = '\0';
        assert_int_equal(parse_edge(b, len, &err), TE_EFORMAT);
        if (!strstr(err.msg, cases[c].needle))
            fail_msg("%s: message '%s' lacks '%s'", cases[c].what, err.msg, cases[c].needle);
        free(b);
        memcpy(e->layers[0]->weights.data, &w0, 4);
        e->layers[0]->weights.len = wl;
        e->layers[0]->weight_bits = wb;
        e->version = ver;
        e->layers[0]->geom->out_h = oh;
    }
    b = wrap(&e->base, TE_KIND_EDGE_BUNDLE, 0, &len);
    assert_int_equal(parse_edge(b, len, &err), TE_OK);
    free(b);
    twinedge__edge_bundle__free_unpacked(e, NULL);
}

/* Random mutations of the payload, re-wrapped with a valid checksum: the
 * reader must reject or accept cleanly, never crash (run under ASan). */
static void test_payload_mutations(void **state)
{
    (void)state;
    write_all();
    const char *files[] = {"c.dev", "c.edge"};
    const uint32_t kinds[] = {TE_KIND_DEVICE_BUNDLE, TE_KIND_EDGE_BUNDLE};
    uint64_t s = 77;
    for (int f = 0; f < 2; f++) {
        size_t len, plen;
        uint8_t *b = slurp(tpath(files[f]), &len), *p;
        te_err err;
        assert_int_equal(te_container_decode(b, len, kinds[f], &p, &plen, &err), TE_OK);
        free(b);
        uint8_t *q = malloc(plen);
        for (int it = 0; it < 3000; it++) {
            memcpy(q, p, plen);
            int nm = 1 + (int)(rng_next(&s) % 3);
            for (int k = 0; k < nm; k++)
                q[rng_next(&s) % plen] = (uint8_t)rng_next(&s);
            size_t ql = (rng_next(&s) % 5 == 0) ? (size_t)(rng_next(&s) % plen) : plen;
            uint8_t *c;
            size_t clen;
            assert_int_equal(te_container_encode(kinds[f], 0, q, ql, &c, &clen, &err), TE_OK);
            te_status st = f == 0 ? parse_dev(c, clen, &err) : parse_edge(c, clen, &err);
            assert_true(st == TE_OK || st == TE_EFORMAT);
            free(c);
        }
        free(q);
        free(p);
    }
}

static void test_container_brotli_bounds(void **state)
{
    (void)state;
    uint8_t payload[10000];
    for (size_t i = 0; i < sizeof payload; i++)
        payload[i] = (uint8_t)(i % 7);
    uint8_t *c, *p;
    size_t clen, plen;
    te_err err;
    assert_int_equal(te_container_encode(TE_KIND_EDGE_BUNDLE, 1, payload, sizeof payload, &c, &clen, &err), TE_OK);
    assert_true(clen < 200); /* repetitive data compresses */
    assert_int_equal(te_container_decode(c, clen, TE_KIND_EDGE_BUNDLE, &p, &plen, &err), TE_OK);
    assert_int_equal(plen, sizeof payload);
    assert_memory_equal(p, payload, plen);
    free(p);
    {
        /* a valid Brotli stream followed by a junk byte, with a matching checksum */
        uint8_t *t = malloc(clen + 1);
        memcpy(t, c, clen);
        t[clen] = 0;
        uint64_t sl = clen + 1 - 68;
        for (int k = 0; k < 8; k++)
            t[28 + k] = (uint8_t)(sl >> (8 * k));
        unsigned int dl = 0;
        assert_int_equal(EVP_Digest(t + 68, (size_t)sl, t + 36, &dl, EVP_sha256(), NULL), 1);
        assert_int_equal(te_container_decode(t, clen + 1, TE_KIND_EDGE_BUNDLE, &p, &plen, &err), TE_EFORMAT);
        assert_non_null(strstr(err.msg, "trailing"));
        free(t);
    }
    /* the stated length (not covered by the checksum) is a hard bound */
    c[20] = (uint8_t)((sizeof payload - 1) & 0xff);
    c[21] = (uint8_t)((sizeof payload - 1) >> 8);
    assert_int_equal(te_container_decode(c, clen, TE_KIND_EDGE_BUNDLE, &p, &plen, &err), TE_EFORMAT);
    assert_non_null(strstr(err.msg, "9999"));
    c[20] = (uint8_t)((sizeof payload + 1) & 0xff);
    c[21] = (uint8_t)((sizeof payload + 1) >> 8);
    assert_int_equal(te_container_decode(c, clen, TE_KIND_EDGE_BUNDLE, &p, &plen, &err), TE_EFORMAT);
    c[20] = c[21] = c[22] = c[23] = 0xff; /* 4 GiB - 1: never allocated up front */
    assert_int_equal(te_container_decode(c, clen, TE_KIND_EDGE_BUNDLE, &p, &plen, &err), TE_EFORMAT);
    c[24] = 0x10;                        /* beyond the payload limit */
    assert_int_equal(te_container_decode(c, clen, TE_KIND_EDGE_BUNDLE, &p, &plen, &err), TE_EFORMAT);
    free(c);
    /* unknown flags, empty payloads */
    assert_int_equal(te_container_encode(TE_KIND_DEVICE_KEY, 0, payload, 0, &c, &clen, &err), TE_OK);
    assert_int_equal(te_container_decode(c, clen, TE_KIND_DEVICE_KEY, &p, &plen, &err), TE_OK);
    assert_int_equal(plen, 0);
    free(p);
    c[16] = 4;
    assert_int_equal(te_container_decode(c, clen, TE_KIND_DEVICE_KEY, &p, &plen, &err), TE_EFORMAT);
    assert_non_null(strstr(err.msg, "flags"));
    free(c);
    assert_int_equal(te_container_encode(TE_KIND_DEVICE_KEY, 1, payload, 0, &c, &clen, &err), TE_OK);
    assert_int_equal(te_container_decode(c, clen, TE_KIND_DEVICE_KEY, &p, &plen, &err), TE_OK);
    assert_int_equal(plen, 0);
    free(p);
    free(c);
    assert_int_equal(te_container_encode(9, 0, payload, 1, &c, &clen, &err), TE_EINVAL);
}

static void test_writer_refuses_invalid(void **state)
{
    (void)state;
    te_model *m = build_model();
    te_err err;
    m->nodes[0].layer = 5;
    assert_int_equal(te_device_bundle_write(tpath("bad.dev"), m, &err), TE_EINVAL);
    m->nodes[0].layer = 0;
    m->layers[0].w[3] = 1000; /* does not fit in 8 bits */
    assert_int_equal(te_edge_bundle_write(tpath("bad.edge"), m, &err), TE_EINVAL);
    assert_int_equal(access(tpath("bad.dev"), F_OK), -1);
    te_model_free(m);
}

static void test_atomic_write(void **state)
{
    (void)state;
    te_err err;
    const uint8_t a[] = "first", b2[] = "second version";
    assert_int_equal(te_file_write_atomic(tpath("atomic.bin"), a, sizeof a, &err), TE_OK);
    assert_int_equal(te_file_write_atomic(tpath("atomic.bin"), b2, sizeof b2, &err), TE_OK);
    size_t len;
    uint8_t *r = slurp(tpath("atomic.bin"), &len);
    assert_int_equal(len, sizeof b2);
    assert_memory_equal(r, b2, len);
    free(r);
    /* no temporary files left behind */
    DIR *d = opendir(tmpdir);
    assert_non_null(d);
    struct dirent *e;
    while ((e = readdir(d)))
        assert_null(strstr(e->d_name, ".tmp."));
    closedir(d);
    /* size limit and missing directory */
    assert_int_equal(te_file_read(tpath("atomic.bin"), 3, &r, &len, &err), TE_EFORMAT);
    assert_int_equal(te_file_write_atomic(tpath("no/such/dir/x"), a, sizeof a, &err), TE_EIO);
}

static int setup(void **state)
{
    (void)state;
    const char *base = getenv("TE_TEST_DATA");
    snprintf(tmpdir, sizeof tmpdir, "%s/bundleXXXXXX", base && *base ? base : "/tmp");
    return mkdtemp(tmpdir) ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmpdir);
    return system(cmd) == 0 ? 0 : -1;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_geometry_helpers),
        cmocka_unit_test(test_device_round_trip),
        cmocka_unit_test(test_edge_round_trip),
        cmocka_unit_test(test_key_round_trip),
        cmocka_unit_test(test_corruption),
        cmocka_unit_test(test_wrong_kind),
        cmocka_unit_test(test_invalid_device_payloads),
        cmocka_unit_test(test_invalid_edge_payloads),
        cmocka_unit_test(test_payload_mutations),
        cmocka_unit_test(test_container_brotli_bounds),
        cmocka_unit_test(test_writer_refuses_invalid),
        cmocka_unit_test(test_atomic_write),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
