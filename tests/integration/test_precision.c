/* Precision by measurement (owner/precision.h, --precision auto) on one
 * test model, argv[1]:
 *
 * - auto (the default with calibration data) gives no layer more weight bits
 *   than the fixed default and some fewer, narrower rings overall (fewer
 *   bytes on the device's link), and the cosine between the fixed-point and
 *   the float model's outputs, measured here on every calibration input, is
 *   at least the target; negative control: fixed 6-bit weights and
 *   activations fall below it in the same measurement;
 * - a stricter target gives every layer at least the bits of a looser one;
 * - the auto deployment's private (relay) inference is bit-identical to its
 *   plaintext fixed-point reference, with no ring widened for the test input
 *   (which is not a calibration input) at the default headroom;
 * - a target outside (0, 1) is refused with a message naming --min-cosine. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "te_exec.h"
#include "te_npy.h"

static const char *model_name;

/* The smallest cosine over the calibration inputs between m's fixed-point
 * output (te_linear_fn_fixed, what the device computes) and its float output. */
static double calib_cosine(const te_model *m)
{
    char base[400], path[512];
    fx_data(base, sizeof base, model_name);
    snprintf(path, sizeof path, "%s.calib.npy", base);
    te_shape s;
    float *x = NULL;
    te_err err;
    fx_must(te_npy_read(path, &s, &x, &err), &err, path);
    size_t per = (size_t)te_shape_numel(&m->values[m->input].shape), n = (size_t)te_shape_numel(&s) / per;
    size_t n_out = (size_t)te_shape_numel(&m->values[m->output].shape);
    float *yf = malloc(n_out * sizeof *yf);
    assert_non_null(yf);
    te_exec *ex = NULL;
    fx_must(te_exec_new(m, &ex, &err), &err, "executor");
    double mc = 1.0;
    for (size_t k = 0; k < n; k++) {
        fx_must(te_exec_run(ex, x + k * per, per, te_linear_fn_float, NULL, &err), &err, "float run");
        memcpy(yf, te_exec_output(ex, NULL), n_out * sizeof *yf);
        fx_must(te_exec_run(ex, x + k * per, per, te_linear_fn_fixed, NULL, &err), &err, "fixed-point run");
        double c = fx_cosine(yf, te_exec_output(ex, NULL), n_out);
        mc = c < mc ? c : mc;
    }
    te_exec_free(ex);
    free(yf);
    free(x);
    return mc;
}

/* Ring bits times the elements they carry up and down: the device's link. */
static double link_bits(const te_model *m)
{
    double b = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const te_linear_geom *g = &m->layers[i].geom;
        b += (double)(g->batch * (te_geom_in_len(g) + te_geom_out_len(g))) * m->layers[i].ring_bits;
    }
    return b;
}

/* Activation bits of a layer: those of its largest calibrated |x_int|. */
static int act_bits(const te_layer *L)
{
    return L->calib_max_abs_x > 0 ? (int)ceil(log2(L->calib_max_abs_x)) + L->frac_bits : 0;
}

static void test_fewer_bits(void **state)
{
    (void)state;
    te_owner_options fixed, aut;
    te_owner_options_init(&fixed);
    te_owner_options_init(&aut);
    fixed.precision = TE_PREC_FIXED;
    assert_int_equal(aut.precision, TE_PREC_AUTO); /* the default */
    te_model *mf = fx_build_model_opts(model_name, &fixed), *ma = fx_build_model_opts(model_name, &aut);
    assert_int_equal(mf->n_layers, ma->n_layers);
    int fewer = 0;
    for (int i = 0; i < ma->n_layers; i++) {
        const te_layer *A = &ma->layers[i], *F = &mf->layers[i];
        printf("%-40.40s  w %2d -> %2d  a %2d -> %2d  ring %2d -> %2d\n", A->name, F->weight_bits, A->weight_bits,
               act_bits(F), act_bits(A), F->ring_bits, A->ring_bits);
        assert_true(A->weight_bits <= F->weight_bits);
        assert_true(act_bits(A) <= act_bits(F));
        assert_true(A->ring_bits <= F->ring_bits);
        fewer += A->weight_bits < F->weight_bits;
    }
    assert_true(fewer > 0);
    double lf = link_bits(mf), la = link_bits(ma);
    printf("%s: link bits %.0f -> %.0f (%.3f)\n", model_name, lf, la, la / lf);
    assert_true(la < lf);
    double c = calib_cosine(ma);
    printf("%s: smallest calibration cosine %.7f (compile reported %.7f), target %g\n", model_name, c,
           ma->calib_cosine, aut.min_cosine);
    assert_true(c >= aut.min_cosine);
    assert_true(ma->calib_cosine >= aut.min_cosine);
    /* negative control: the same measurement sees a deployment that misses */
    te_owner_options low = fixed;
    low.weight_bits = low.act_bits = 6;
    te_model *ml = fx_build_model_opts(model_name, &low);
    double cl = calib_cosine(ml);
    printf("%s: fixed 6-bit weights and activations: cosine %.7f\n", model_name, cl);
    assert_true(cl < aut.min_cosine);
    te_model_free(ml);
    te_model_free(mf);
    te_model_free(ma);
}

static void test_stricter(void **state)
{
    (void)state;
    te_owner_options loose, strict;
    te_owner_options_init(&loose);
    te_owner_options_init(&strict);
    loose.min_cosine = 0.999;
    strict.min_cosine = 0.99999;
    te_model *ml = fx_build_model_opts(model_name, &loose), *ms = fx_build_model_opts(model_name, &strict);
    int more = 0;
    for (int i = 0; i < ms->n_layers; i++) {
        const te_layer *S = &ms->layers[i], *L = &ml->layers[i];
        assert_true(S->weight_bits >= L->weight_bits);
        assert_true(act_bits(S) >= act_bits(L));
        more += S->weight_bits + act_bits(S) - L->weight_bits - act_bits(L);
    }
    printf("%s: cosine %.7f (target %g), %.7f (target %g); %d more bits in all\n", model_name, ml->calib_cosine,
           loose.min_cosine, ms->calib_cosine, strict.min_cosine, more);
    assert_true(more > 0);
    assert_true(ml->calib_cosine >= loose.min_cosine);
    assert_true(ms->calib_cosine >= strict.min_cosine);
    te_model_free(ml);
    te_model_free(ms);
}

static void test_private_exact(void **state)
{
    (void)state;
    te_fixture f;
    fx_setup_opts(&f, model_name, NULL);
    float *y = calloc(f.n_out, sizeof *y), *ref = calloc(f.n_out, sizeof *ref);
    assert_non_null(y);
    assert_non_null(ref);
    if (twinedge_infer(f.dev, TWINEDGE_RELAY, f.input, f.n_in, y, f.n_out) != TWINEDGE_OK)
        fail_msg("relay: %s", twinedge_errmsg(f.dev));
    fx_reference_fixed(&f, f.input, ref);
    assert_memory_equal(y, ref, f.n_out * sizeof *y);
    /* the test input is not a calibration input: one bit of headroom keeps every ring */
    twinedge_report rep;
    twinedge_last_report(f.dev, &rep);
    assert_int_equal(rep.layers_checked, rep.linear_layers);
    assert_int_equal(rep.widened_layers, 0);
    printf("%s: private output bit-identical to the fixed-point reference; cosine to the float reference %.7f\n",
           model_name, fx_cosine(y, f.ref, f.n_out));
    free(y);
    free(ref);
    fx_teardown(&f);
}

static void test_bad_target(void **state)
{
    (void)state;
    static const double bad[] = {0.0, 1.0, 1.5, -0.5};
    char base[400], onnx[512], calib[512];
    fx_data(base, sizeof base, model_name);
    snprintf(onnx, sizeof onnx, "%s.onnx", base);
    snprintf(calib, sizeof calib, "%s.calib.npy", base);
    for (size_t k = 0; k < sizeof bad / sizeof bad[0] + 1; k++) {
        te_owner_options o;
        te_owner_options_init(&o);
        o.min_cosine = k < sizeof bad / sizeof bad[0] ? bad[k] : nan("");
        te_model *m = NULL;
        te_err err = {0};
        assert_int_equal(te_owner_build(onnx, calib, &o, &m, &err), TE_EINVAL);
        assert_null(m);
        assert_non_null(strstr(err.msg, "--min-cosine"));
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_precision MODEL\n");
        return 2;
    }
    model_name = argv[1];
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fewer_bits), cmocka_unit_test(test_stricter),
                                       cmocka_unit_test(test_private_exact), cmocka_unit_test(test_bad_target)};
    return cmocka_run_group_tests_name(model_name, tests, NULL, NULL);
}
