/* The benchmarks' plaintext-outsourcing baseline (MODE_PLAIN): a host
 * serves it only when configured to (te_host_config.allow_plaintext), only
 * as EdgeA, only with 32-bit elements; and what it serves is W.x in float32
 * with the deployment's integer weights (te_linear_float as the reference).
 * Also te_f32_layer, the SGEMM path behind it, against the same reference
 * over conv geometries with groups, stride, dilation, padding and batch > 1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "te_f32.h"
#include "te_host.h"
#include "te_linear.h"
#include "te_ring.h"
#include "te_wire.h"
#include "wire.pb-c.h"

#define DEPLOY_ID "0123456789abcdef0123456789abcdef"

static uint64_t next(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static const te_linear_geom conv_geom = {.kind = TE_LIN_CONV, .batch = 1, .in_c = 4, .in_h = 7, .in_w = 6,
                                         .out_c = 6, .out_h = 4, .out_w = 3, .k_h = 3, .k_w = 2, .stride_h = 2,
                                         .stride_w = 2, .pad_t = 1, .pad_l = 0, .pad_b = 1, .pad_r = 0,
                                         .dil_h = 1, .dil_w = 1, .group = 2};

static te_model *one_layer_model(const te_linear_geom *g, uint64_t seed)
{
    te_model *m = te_model_new();
    assert_non_null(m);
    memcpy(m->deployment_id, DEPLOY_ID, sizeof m->deployment_id);
    te_layer L = {0};
    L.name = "conv";
    L.geom = *g;
    size_t n = (size_t)te_geom_weight_len(g);
    L.w = malloc(n * sizeof *L.w);
    assert_non_null(L.w);
    for (size_t i = 0; i < n; i++)
        L.w[i] = (int32_t)(next(&seed) % 65535) - 32767;
    assert_int_equal(te_model_add_layer(m, &L), 0);
    return m;
}

static te_host *host(te_role role, int allow, const te_model *m)
{
    te_host_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.role = role;
    cfg.plugin = "cpu";
    cfg.allow_plaintext = allow;
    te_host *h = NULL;
    te_err err;
    te_err_clear(&err);
    if (te_host_new(&cfg, &h, &err) != TE_OK || te_host_deploy(h, m, &err) != TE_OK)
        fail_msg("host: %s", err.msg);
    return h;
}

/* Send x (float32) as a MODE_PLAIN request with ring width l; returns the
 * response status and, when OK, the floats in y. */
static te_status plain_request(te_host *h, te_caller_kind who, unsigned l, const te_linear_geom *g, const float *x,
                               float *y, char *msg, size_t msg_len)
{
    size_t n_in = (size_t)te_geom_in_len(g), n_out = (size_t)te_geom_out_len(g);
    uint64_t *bits = calloc(n_in > n_out ? n_in : n_out, sizeof *bits);
    uint8_t *packed = calloc(te_pack_bytes(n_in, 32) + 1, 1);
    assert_non_null(bits);
    assert_non_null(packed);
    for (size_t i = 0; i < n_in; i++) {
        uint32_t b;
        memcpy(&b, &x[i], sizeof b);
        bits[i] = b;
    }
    te_pack(bits, n_in, 32, packed);
    Twinedge__LayerRequest q = TWINEDGE__LAYER_REQUEST__INIT;
    q.deployment_id = DEPLOY_ID;
    q.device_id = "dev";
    q.ring_bits = l;
    q.batch = 1;
    q.mode = TWINEDGE__MODE__MODE_PLAIN;
    q.data.data = packed;
    q.data.len = te_pack_bytes(n_in, 32);
    size_t n = twinedge__layer_request__get_packed_size(&q);
    uint8_t *req = malloc(n);
    assert_non_null(req);
    twinedge__layer_request__pack(&q, req);
    te_caller caller = {who, "dev"};
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    te_err err;
    te_err_clear(&err);
    assert_int_equal(te_host_handle(h, &caller, req, n, &resp, &resp_len, &err), TE_OK);
    te_status st = te_wire_read_response(resp, resp_len, "host", 0, n_out, 32, bits, &err);
    snprintf(msg, msg_len, "%s", err.msg);
    for (size_t i = 0; st == TE_OK && i < n_out; i++) {
        uint32_t b = (uint32_t)bits[i];
        memcpy(&y[i], &b, sizeof b);
    }
    free(bits);
    free(packed);
    free(req);
    free(resp);
    return st;
}

static void random_floats(float *x, size_t n, uint64_t seed)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)((double)(next(&seed) >> 11) * 0x1p-53 * 2.0 - 1.0);
}

/* |a - b| within float32 rounding of sums of |w x| terms */
static void assert_close(const float *a, const float *b, size_t n, double scale)
{
    for (size_t i = 0; i < n; i++)
        if (fabs((double)a[i] - (double)b[i]) > 1e-4 * scale)
            fail_msg("element %zu: %.6g vs %.6g", i, (double)a[i], (double)b[i]);
}

static void test_refused_unless_allowed(void **state)
{
    (void)state;
    te_model *m = one_layer_model(&conv_geom, 7);
    size_t n_in = (size_t)te_geom_in_len(&conv_geom), n_out = (size_t)te_geom_out_len(&conv_geom);
    float *x = malloc(n_in * sizeof *x), *y = malloc(n_out * sizeof *y);
    assert_non_null(x);
    assert_non_null(y);
    random_floats(x, n_in, 3);
    char msg[TE_ERR_MSG_MAX];
    /* off by default: refused, naming what was asked */
    te_host *a = host(TE_ROLE_A, 0, m);
    assert_int_equal(plain_request(a, TE_CALLER_DEVICE, 32, &conv_geom, x, y, msg, sizeof msg), TE_ESERVER);
    assert_non_null(strstr(msg, "plaintext requests"));
    te_host_free(a);
    /* EdgeB never serves it, even when configured */
    te_host *b = host(TE_ROLE_B, 1, m);
    assert_int_equal(plain_request(b, TE_CALLER_DEVICE, 32, &conv_geom, x, y, msg, sizeof msg), TE_ESERVER);
    assert_non_null(strstr(msg, "not enabled"));
    te_host_free(b);
    /* only 32-bit elements */
    a = host(TE_ROLE_A, 1, m);
    assert_int_equal(plain_request(a, TE_CALLER_DEVICE, 24, &conv_geom, x, y, msg, sizeof msg), TE_ESERVER);
    assert_non_null(strstr(msg, "ring width 32"));
    te_host_free(a);
    free(x);
    free(y);
    te_model_free(m);
}

static void test_allowed_computes_float(void **state)
{
    (void)state;
    te_model *m = one_layer_model(&conv_geom, 11);
    size_t n_in = (size_t)te_geom_in_len(&conv_geom), n_out = (size_t)te_geom_out_len(&conv_geom);
    size_t nw = (size_t)te_geom_weight_len(&conv_geom);
    float *x = malloc(n_in * sizeof *x), *y = malloc(n_out * sizeof *y), *ref = malloc(n_out * sizeof *ref);
    float *wf = malloc(nw * sizeof *wf);
    assert_non_null(x);
    assert_non_null(y);
    assert_non_null(ref);
    assert_non_null(wf);
    random_floats(x, n_in, 5);
    for (size_t i = 0; i < nw; i++)
        wf[i] = (float)m->layers[0].w[i];
    te_linear_float(&conv_geom, wf, x, ref);
    te_host *a = host(TE_ROLE_A, 1, m);
    char msg[TE_ERR_MSG_MAX];
    assert_int_equal(plain_request(a, TE_CALLER_DEVICE, 32, &conv_geom, x, y, msg, sizeof msg), TE_OK);
    assert_close(y, ref, n_out, 32767.0 * 12);
    te_host_free(a);
    free(x);
    free(y);
    free(ref);
    free(wf);
    te_model_free(m);
}

/* te_f32_layer (im2col + SGEMM, sample-major) equals te_linear_float. */
static void test_f32_layer_matches_reference(void **state)
{
    (void)state;
    te_linear_geom geoms[3] = {conv_geom, conv_geom, {0}};
    geoms[1].dil_h = 2, geoms[1].dil_w = 1, geoms[1].in_h = 9, geoms[1].group = 1, geoms[1].pad_l = 1;
    geoms[1].out_w = 4;
    geoms[2] = (te_linear_geom){.kind = TE_LIN_FC, .batch = 1, .in_c = 37, .in_h = 1, .in_w = 1, .out_c = 9,
                                .out_h = 1, .out_w = 1, .k_h = 1, .k_w = 1, .stride_h = 1, .stride_w = 1,
                                .dil_h = 1, .dil_w = 1, .group = 1};
    for (int gi = 0; gi < 3; gi++) {
        for (int64_t batch = 1; batch <= 5; batch += 4) {
            te_linear_geom g = geoms[gi];
            g.batch = batch;
            size_t n_in = (size_t)(batch * te_geom_in_len(&g)), n_out = (size_t)(batch * te_geom_out_len(&g));
            size_t nw = (size_t)te_geom_weight_len(&g);
            float *x = malloc(n_in * sizeof *x), *w = malloc(nw * sizeof *w);
            float *y = malloc(n_out * sizeof *y), *ref = malloc(n_out * sizeof *ref);
            float *scratch = malloc((size_t)te_f32_scratch_len(&g, batch) * sizeof *scratch);
            assert_non_null(x);
            assert_non_null(w);
            assert_non_null(y);
            assert_non_null(ref);
            assert_non_null(scratch);
            random_floats(x, n_in, 17 + (uint64_t)gi);
            random_floats(w, nw, 29 + (uint64_t)gi);
            te_linear_float(&g, w, x, ref);
            te_f32_layer(&g, w, x, batch, scratch, y);
            assert_close(y, ref, n_out, 40.0);
            free(x), free(w), free(y), free(ref), free(scratch);
        }
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_refused_unless_allowed),
        cmocka_unit_test(test_allowed_computes_float),
        cmocka_unit_test(test_f32_layer_matches_reference),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
