/* The executor on a hand-built model: conv -> relu -> maxpool -> flatten ->
 * FC -> softmax, checked against a direct computation in this file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "te_exec.h"
#include "te_linear.h"

#define IC 2
#define HW 6
#define OC 3
#define PH 3 /* pooled size */
#define FC_IN (OC * PH * PH)
#define FC_OUT 4

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}

static float rng_float(rng *r, float lo, float hi)
{
    return lo + (hi - lo) * (float)((rng_next(r) >> 11) * (1.0 / 9007199254740992.0));
}

static float *rand_floats(rng *r, size_t n, float lo, float hi)
{
    float *p = malloc(n * sizeof *p);
    assert_non_null(p);
    for (size_t i = 0; i < n; i++)
        p[i] = rng_float(r, lo, hi);
    return p;
}

static te_shape shape4(int64_t a, int64_t b, int64_t c, int64_t d)
{
    te_shape s = {4, {a, b, c, d}};
    return s;
}

static te_shape shape2(int64_t a, int64_t b)
{
    te_shape s = {2, {a, b}};
    return s;
}

/* Quantize w_float per output channel and fill w, w_scale, r, s. */
static void quantize_layer(te_layer *L, rng *r, int weight_bits, int frac_bits, int ring_bits)
{
    const te_linear_geom *g = &L->geom;
    int64_t nw = te_geom_weight_len(g), dot = te_geom_dot_len(g);
    int64_t in_len = te_geom_in_len(g), out_len = te_geom_out_len(g);
    double qmax = (double)((1 << (weight_bits - 1)) - 1);
    L->w = malloc((size_t)nw * sizeof *L->w);
    L->w_scale = malloc((size_t)g->out_c * sizeof *L->w_scale);
    L->r = malloc((size_t)out_len * sizeof *L->r);
    L->s = malloc((size_t)in_len * sizeof *L->s);
    L->w_l1 = malloc((size_t)g->out_c * sizeof *L->w_l1);
    assert_true(L->w && L->w_scale && L->r && L->s && L->w_l1);
    for (int64_t o = 0; o < g->out_c; o++) {
        double mx = 0.0;
        for (int64_t k = 0; k < dot; k++)
            mx = fmax(mx, fabs(L->w_float[o * dot + k]));
        L->w_scale[o] = (float)(mx / qmax);
        for (int64_t k = 0; k < dot; k++)
            L->w[o * dot + k] = (int32_t)lrint(L->w_float[o * dot + k] / L->w_scale[o]);
    }
    const uint64_t p = (UINT64_C(1) << 61) - 1;
    for (int64_t i = 0; i < out_len; i++)
        L->r[i] = rng_next(r) % p;
    te_linear_transpose_fp(g, L->w, L->r, L->s);
    te_linear_row_l1(g, L->w, L->w_l1);
    L->weight_bits = weight_bits;
    L->frac_bits = frac_bits;
    L->ring_bits = ring_bits;
}

typedef struct fixture {
    te_model *m;
    float *x; /* model input [1, IC, HW, HW] */
} fixture;

static int setup(void **state)
{
    rng r = {0x9e3779b97f4a7c15ULL};
    fixture *f = calloc(1, sizeof *f);
    te_model *m = te_model_new();
    assert_true(f && m);
    f->m = m;
    f->x = rand_floats(&r, IC * HW * HW, -1.0f, 1.0f);

    te_shape s;
    s = shape4(1, IC, HW, HW);
    int v_in = te_model_add_value(m, "input", &s, NULL);
    s = shape4(1, OC, HW, HW);
    int v_conv = te_model_add_value(m, "conv_out", &s, NULL);
    int v_relu = te_model_add_value(m, "relu_out", &s, NULL);
    s = shape4(1, OC, PH, PH);
    int v_pool = te_model_add_value(m, "pool_out", &s, NULL);
    s = shape2(1, FC_IN);
    int v_flat = te_model_add_value(m, "flat", &s, NULL);
    s = shape2(1, FC_OUT);
    int v_fc = te_model_add_value(m, "fc_out", &s, NULL);
    int v_prob = te_model_add_value(m, "prob", &s, NULL);
    assert_true(v_in >= 0 && v_prob >= 0);
    m->input = v_in;
    m->output = v_prob;

    te_layer conv = {0};
    conv.name = "conv";
    conv.geom = (te_linear_geom){.kind = TE_LIN_CONV, .batch = 1, .in_c = IC, .in_h = HW, .in_w = HW,
                                 .out_c = OC, .out_h = HW, .out_w = HW, .k_h = 3, .k_w = 3, .stride_h = 1,
                                 .stride_w = 1, .pad_t = 1, .pad_l = 1, .pad_b = 1, .pad_r = 1, .dil_h = 1,
                                 .dil_w = 1, .group = 1};
    conv.w_float = rand_floats(&r, (size_t)te_geom_weight_len(&conv.geom), -0.5f, 0.5f);
    conv.bias = rand_floats(&r, OC, -0.2f, 0.2f);
    quantize_layer(&conv, &r, 12, 14, 40);
    int l_conv = te_model_add_layer(m, &conv);

    te_layer fc = {0};
    fc.name = "fc";
    fc.geom = (te_linear_geom){.kind = TE_LIN_FC, .batch = 1, .in_c = FC_IN, .in_h = 1, .in_w = 1,
                               .out_c = FC_OUT, .out_h = 1, .out_w = 1, .k_h = 1, .k_w = 1, .stride_h = 1,
                               .stride_w = 1, .dil_h = 1, .dil_w = 1, .group = 1};
    fc.w_float = rand_floats(&r, FC_OUT * FC_IN, -0.5f, 0.5f);
    fc.bias = rand_floats(&r, FC_OUT, -0.2f, 0.2f);
    quantize_layer(&fc, &r, 12, 14, 40);
    int l_fc = te_model_add_layer(m, &fc);
    assert_true(l_conv == 0 && l_fc == 1);

    int in;
    te_node n = {0};
    n.n_in = 1;
    n.in = &in;

    in = v_in, n.op = TE_OP_LINEAR, n.name = "conv", n.out = v_conv, n.layer = l_conv;
    assert_true(te_model_add_node(m, &n) >= 0);
    in = v_conv, n.op = TE_OP_RELU, n.name = "relu", n.out = v_relu;
    assert_true(te_model_add_node(m, &n) >= 0);
    in = v_relu, n.op = TE_OP_MAXPOOL, n.name = "pool", n.out = v_pool;
    n.kernel[0] = n.kernel[1] = 2;
    n.stride[0] = n.stride[1] = 2;
    n.dilation[0] = n.dilation[1] = 1;
    assert_true(te_model_add_node(m, &n) >= 0);
    in = v_pool, n.op = TE_OP_RESHAPE, n.name = "flatten", n.out = v_flat;
    assert_true(te_model_add_node(m, &n) >= 0);
    in = v_flat, n.op = TE_OP_LINEAR, n.name = "fc", n.out = v_fc, n.layer = l_fc;
    assert_true(te_model_add_node(m, &n) >= 0);
    in = v_fc, n.op = TE_OP_SOFTMAX, n.name = "softmax", n.out = v_prob, n.axis = 1;
    assert_true(te_model_add_node(m, &n) >= 0);

    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    te_model_free(f->m);
    free(f->x);
    free(f);
    return 0;
}

/* The same network, computed directly in double. */
static void direct_forward(const te_model *m, const float *x, double *prob)
{
    const te_layer *cv = &m->layers[0], *fc = &m->layers[1];
    double conv[OC][HW][HW], pool[OC][PH][PH], logits[FC_OUT];
    for (int o = 0; o < OC; o++)
        for (int i = 0; i < HW; i++)
            for (int j = 0; j < HW; j++) {
                double acc = cv->bias[o];
                for (int c = 0; c < IC; c++)
                    for (int a = 0; a < 3; a++)
                        for (int b = 0; b < 3; b++) {
                            int ii = i + a - 1, jj = j + b - 1;
                            if (ii >= 0 && ii < HW && jj >= 0 && jj < HW)
                                acc += (double)cv->w_float[((o * IC + c) * 3 + a) * 3 + b] *
                                       x[(c * HW + ii) * HW + jj];
                        }
                conv[o][i][j] = acc > 0 ? acc : 0; /* relu */
            }
    for (int o = 0; o < OC; o++)
        for (int i = 0; i < PH; i++)
            for (int j = 0; j < PH; j++)
                pool[o][i][j] = fmax(fmax(conv[o][2 * i][2 * j], conv[o][2 * i][2 * j + 1]),
                                     fmax(conv[o][2 * i + 1][2 * j], conv[o][2 * i + 1][2 * j + 1]));
    double sum = 0.0;
    for (int o = 0; o < FC_OUT; o++) {
        double acc = fc->bias[o];
        for (int k = 0; k < FC_IN; k++)
            acc += (double)fc->w_float[o * FC_IN + k] * (&pool[0][0][0])[k];
        logits[o] = acc;
    }
    for (int o = 0; o < FC_OUT; o++)
        sum += exp(logits[o]);
    for (int o = 0; o < FC_OUT; o++)
        prob[o] = exp(logits[o]) / sum;
}

static void test_float_run(void **state)
{
    fixture *f = *state;
    te_exec *ex = NULL;
    te_err err = {0};
    assert_int_equal(te_exec_new(f->m, &ex, &err), TE_OK);
    te_shape s;
    assert_null(te_exec_output(ex, &s)); /* nothing run yet */
    assert_int_equal(te_exec_run(ex, f->x, IC * HW * HW, te_linear_fn_float, NULL, &err), TE_OK);
    const float *y = te_exec_output(ex, &s);
    assert_non_null(y);
    assert_int_equal(s.ndim, 2);
    assert_int_equal(s.d[1], FC_OUT);
    double want[FC_OUT];
    direct_forward(f->m, f->x, want);
    double total = 0;
    for (int o = 0; o < FC_OUT; o++) {
        assert_float_equal(y[o], want[o], 1e-5);
        total += y[o];
    }
    assert_float_equal(total, 1.0, 1e-5);
    /* a second run gives the same result */
    float first[FC_OUT];
    memcpy(first, y, sizeof first);
    assert_int_equal(te_exec_run(ex, f->x, IC * HW * HW, te_linear_fn_float, NULL, &err), TE_OK);
    assert_memory_equal(first, te_exec_output(ex, NULL), sizeof first);
    te_exec_free(ex);
}

static void test_wrong_input_size(void **state)
{
    fixture *f = *state;
    te_exec *ex = NULL;
    te_err err = {0};
    assert_int_equal(te_exec_new(f->m, &ex, &err), TE_OK);
    assert_int_equal(te_exec_run(ex, f->x, IC * HW * HW - 1, te_linear_fn_float, NULL, &err), TE_ESHAPE);
    assert_non_null(strstr(err.msg, "input has 71 elements"));
    assert_non_null(strstr(err.msg, "[1,2,6,6] (72 elements)"));
    assert_null(te_exec_output(ex, NULL));
    te_exec_free(ex);
}

static void test_fixed_close_to_float(void **state)
{
    fixture *f = *state;
    te_exec *ex = NULL;
    te_err err = {0};
    assert_int_equal(te_exec_new(f->m, &ex, &err), TE_OK);
    float yf[FC_OUT];
    assert_int_equal(te_exec_run(ex, f->x, IC * HW * HW, te_linear_fn_float, NULL, &err), TE_OK);
    memcpy(yf, te_exec_output(ex, NULL), sizeof yf);
    te_status st = te_exec_run(ex, f->x, IC * HW * HW, te_linear_fn_fixed, NULL, &err);
    if (st != TE_OK)
        fail_msg("fixed run failed: %s", err.msg);
    const float *yq = te_exec_output(ex, NULL);
    int differs = 0;
    for (int o = 0; o < FC_OUT; o++) {
        assert_float_equal(yq[o], yf[o], 2e-3);
        differs |= yq[o] != yf[o];
    }
    assert_true(differs); /* really went through the integer path */
    te_exec_free(ex);
}

static void test_fixed_integrity_failure_names_node(void **state)
{
    fixture *f = *state;
    te_exec *ex = NULL;
    te_err err = {0};
    assert_int_equal(te_exec_new(f->m, &ex, &err), TE_OK);
    te_layer *fc = &f->m->layers[1];
    /* a key that no longer matches W: s.x changes by sum(x) != 0 */
    for (int i = 0; i < FC_IN; i++)
        fc->s[i] = (fc->s[i] + 1) % ((UINT64_C(1) << 61) - 1);
    te_status st = te_exec_run(ex, f->x, IC * HW * HW, te_linear_fn_fixed, NULL, &err);
    assert_int_equal(st, TE_EINTEGRITY);
    assert_non_null(strstr(err.msg, "node 'fc' (Linear)"));
    assert_null(te_exec_output(ex, NULL));
    te_exec_free(ex);
}

static void test_missing_float_weights(void **state)
{
    fixture *f = *state;
    te_exec *ex = NULL;
    te_err err = {0};
    assert_int_equal(te_exec_new(f->m, &ex, &err), TE_OK);
    float *saved = f->m->layers[0].w_float;
    f->m->layers[0].w_float = NULL;
    te_status st = te_exec_run(ex, f->x, IC * HW * HW, te_linear_fn_float, NULL, &err);
    f->m->layers[0].w_float = saved;
    assert_int_equal(st, TE_EINVAL);
    assert_non_null(strstr(err.msg, "node 'conv' (Linear): "));
    assert_non_null(strstr(err.msg, "w_float"));
    te_exec_free(ex);
}

static void test_validation(void **state)
{
    fixture *f = *state;
    te_model *m = f->m;
    te_exec *ex = NULL;
    te_err err = {0};

    /* geometry that does not match the value shapes */
    m->layers[1].geom.in_c = FC_IN + 1;
    assert_int_equal(te_exec_new(m, &ex, &err), TE_ESHAPE);
    assert_null(ex);
    assert_non_null(strstr(err.msg, "fc"));
    m->layers[1].geom.in_c = FC_IN;

    /* layer index out of range */
    m->nodes[4].layer = 7;
    assert_int_equal(te_exec_new(m, &ex, &err), TE_EINVAL);
    m->nodes[4].layer = 1;

    /* a value read before it is computed */
    int saved = m->nodes[1].in[0];
    m->nodes[1].in[0] = m->nodes[3].out;
    assert_int_equal(te_exec_new(m, &ex, &err), TE_EINVAL);
    assert_non_null(strstr(err.msg, "before it is computed"));
    m->nodes[1].in[0] = saved;

    /* out-of-range value id */
    saved = m->nodes[2].in[0];
    m->nodes[2].in[0] = m->n_values;
    assert_int_equal(te_exec_new(m, &ex, &err), TE_EINVAL);
    m->nodes[2].in[0] = saved;

    assert_int_equal(te_exec_new(m, &ex, &err), TE_OK);
    te_exec_free(ex);
}

/* A constant operand (PRelu slope, Add bias) is read from the value's data. */
static void test_constant_operand(void **state)
{
    (void)state;
    te_model *m = te_model_new();
    assert_non_null(m);
    te_shape s = shape4(1, 2, 1, 2), sc = {3, {2, 1, 1}};
    float *c = malloc(2 * sizeof *c);
    assert_non_null(c);
    c[0] = 10.0f;
    c[1] = -1.0f;
    int vx = te_model_add_value(m, "x", &s, NULL);
    int vc = te_model_add_value(m, "c", &sc, c);
    int vy = te_model_add_value(m, "y", &s, NULL);
    m->input = vx;
    m->output = vy;
    int ins[2] = {vx, vc};
    te_node n = {.op = TE_OP_ADD, .name = "add", .n_in = 2, .in = ins, .out = vy};
    assert_true(te_model_add_node(m, &n) >= 0);
    te_exec *ex = NULL;
    te_err err = {0};
    assert_int_equal(te_exec_new(m, &ex, &err), TE_OK);
    float x[4] = {1, 2, 3, 4};
    assert_int_equal(te_exec_run(ex, x, 4, te_linear_fn_float, NULL, &err), TE_OK);
    const float *y = te_exec_output(ex, NULL);
    assert_float_equal(y[0], 11.0f, 0);
    assert_float_equal(y[1], 12.0f, 0);
    assert_float_equal(y[2], 2.0f, 0);
    assert_float_equal(y[3], 3.0f, 0);
    te_exec_free(ex);
    te_model_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_float_run, setup, teardown),
        cmocka_unit_test_setup_teardown(test_wrong_input_size, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fixed_close_to_float, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fixed_integrity_failure_names_node, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_float_weights, setup, teardown),
        cmocka_unit_test_setup_teardown(test_validation, setup, teardown),
        cmocka_unit_test(test_constant_operand),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
