/* Detection models (tests/models/detect_zoo.py, in $TE_TEST_DATA/detect):
 * models with several outputs imported and run in float against the
 * float64 reference, then compiled, provisioned and run privately (the
 * hosts in this process): every output through the SDK's
 * twinedge_output_get, bit-exact to the fixed-point reference
 * (te_reference_fixed_write, which writes the files twinedge-run writes)
 * and close to the float reference; and the SDK's refusals (no inference
 * yet, a failed one, an output out of range, a buffer of another size). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "onnx_import.h"
#include "runlib.h"
#include "te_exec.h"
#include "te_npy.h"

static float *npy_at(const char *path, te_shape *s)
{
    float *d = NULL;
    te_err err = {0};
    if (te_npy_read(path, s, &d, &err) != TE_OK)
        fail_msg("%s: %s", path, err.msg);
    return d;
}

static float *ref_of(const char *name, int k, te_shape *s)
{
    char base[600], p[700], f[200];
    snprintf(f, sizeof f, "%s.ref.npy", name);
    fx_data(base, sizeof base, f);
    te_npy_output_path(base, k, p, sizeof p);
    return npy_at(p, s);
}

static double max_abs_diff(const float *a, const float *b, int64_t n, double *max_ref)
{
    double worst = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        worst = fmax(worst, fabs((double)a[i] - b[i]));
        mx = fmax(mx, fabs(b[i]));
    }
    *max_ref = mx;
    return worst;
}

/* The float executor's reading of the file, every output. */
static void check_float(const char *name, int n_out)
{
    char p[600], f[200];
    snprintf(f, sizeof f, "%s.onnx", name);
    fx_data(p, sizeof p, f);
    te_shape is;
    snprintf(f, sizeof f, "%s.input.npy", name);
    char ip[600];
    float *x = npy_at(fx_data(ip, sizeof ip, f), &is);
    te_import_opts o = {.hint = &is};
    te_model *m = NULL;
    te_exec *ex = NULL;
    te_err err = {0};
    if (te_onnx_import_opts(p, &o, &m, &err) != TE_OK || te_exec_new(m, &ex, &err) != TE_OK ||
        te_exec_run(ex, x, (size_t)te_shape_numel(&is), te_linear_fn_float, NULL, &err) != TE_OK)
        fail_msg("%s: %s", name, err.msg);
    assert_int_equal(te_model_n_outputs(m), n_out);
    assert_null(te_exec_output_at(ex, n_out, NULL));
    for (int k = 0; k < n_out; k++) {
        te_shape rs, os;
        float *ref = ref_of(name, k, &rs);
        const float *y = te_exec_output_at(ex, k, &os);
        assert_non_null(y);
        assert_int_equal(te_shape_numel(&os), te_shape_numel(&rs));
        double mx, worst = max_abs_diff(y, ref, te_shape_numel(&rs), &mx);
        printf("%-24s float   output %d: max err %.2e (max |ref| %.3g)\n", name, k, worst, mx);
        if (!(worst <= 2e-4 * (1 + mx)))
            fail_msg("%s output %d: float max error %g", name, k, worst);
        free(ref);
    }
    te_exec_free(ex);
    te_model_free(m);
    free(x);
}

static void check_private(const char *name, int n_out)
{
    te_fixture f;
    fx_setup(&f, name, NULL, NULL);
    int n = 0;
    assert_int_equal(twinedge_output_count(f.dev, &n), TWINEDGE_OK);
    assert_int_equal(n, n_out);
    float one;
    /* nothing to take before an inference */
    assert_int_equal(twinedge_output_get(f.dev, 0, &one, 1), TWINEDGE_EINVAL);
    float *y0 = calloc(f.n_out, sizeof *y0);
    assert_non_null(y0);
    if (twinedge_infer(f.dev, TWINEDGE_RELAY, f.input, f.n_in, y0, f.n_out) != TWINEDGE_OK)
        fail_msg("%s: infer: %s", name, twinedge_errmsg(f.dev));
    char refbase[700];
    snprintf(refbase, sizeof refbase, "%s/fixed.npy", f.dir);
    te_err err = {0};
    if (te_reference_fixed_write(f.deploy, f.input, f.n_in, refbase, &err) != TE_OK)
        fail_msg("%s: reference: %s", name, err.msg);
    for (int k = 0; k < n_out; k++) {
        int64_t dims[8];
        int nd = 0;
        te_shape s = {0}, fs, rs;
        assert_int_equal(twinedge_output_shape_at(f.dev, k, dims, &nd), TWINEDGE_OK);
        s.ndim = nd;
        memcpy(s.d, dims, (size_t)nd * sizeof *dims);
        size_t len = (size_t)te_shape_numel(&s);
        float *y = calloc(len + 1, sizeof *y);
        assert_non_null(y);
        /* a buffer of another size is refused and left alone */
        assert_int_equal(twinedge_output_get(f.dev, k, y, len + 1), TWINEDGE_ESHAPE);
        assert_int_equal(twinedge_output_get(f.dev, k, y, len), TWINEDGE_OK);
        if (k == 0)
            assert_memory_equal(y, y0, len * sizeof *y);
        char p[800];
        te_npy_output_path(refbase, k, p, sizeof p);
        float *fix = npy_at(p, &fs);
        float *ref = ref_of(name, k, &rs);
        assert_int_equal(te_shape_numel(&fs), (int64_t)len);
        assert_memory_equal(y, fix, len * sizeof *y); /* bit-exact to the fixed-point reference */
        double cs = fx_cosine(y, ref, len);
        printf("%-24s private output %d: bit-exact to the fixed-point reference, cosine to float %.6f\n", name, k,
               cs);
        assert_true(cs >= 0.999);
        free(fix);
        free(ref);
        free(y);
    }
    assert_int_equal(twinedge_output_get(f.dev, n_out, &one, 1), TWINEDGE_EINVAL);
    assert_int_equal(twinedge_output_get(f.dev, -1, &one, 1), TWINEDGE_EINVAL);
    assert_int_equal(twinedge_output_shape_at(f.dev, n_out, NULL, NULL), TWINEDGE_EINVAL);
    /* a failed inference leaves nothing to take */
    assert_int_not_equal(twinedge_infer(f.dev, TWINEDGE_RELAY, f.input, f.n_in - 1, y0, f.n_out), TWINEDGE_OK);
    assert_int_equal(twinedge_output_get(f.dev, 0, y0, f.n_out), TWINEDGE_EINVAL);
    free(y0);
    fx_teardown(&f);
}

static void test_models(void **state)
{
    (void)state;
    char p[600], line[256];
    FILE *fp = fopen(fx_data(p, sizeof p, "models.txt"), "r");
    if (!fp)
        fail_msg("cannot open %s", p);
    int n = 0;
    while (fgets(line, sizeof line, fp)) {
        char name[128];
        int n_out;
        if (sscanf(line, "%127s %d", name, &n_out) != 2)
            continue;
        check_float(name, n_out);
        check_private(name, n_out);
        n++;
    }
    fclose(fp);
    assert_true(n >= 2);
}

/* What twinedge cannot run is refused at import, naming the op and the node. */
static void expect_refused(const char *name, const char *s1, const char *s2)
{
    char p[600], f[200];
    snprintf(f, sizeof f, "%s.onnx", name);
    fx_data(p, sizeof p, f);
    te_model *m = NULL;
    te_err err = {0};
    assert_int_not_equal(te_onnx_import(p, &m, &err), TE_OK);
    assert_null(m);
    printf("%-24s refused: %s\n", name, err.msg);
    if (!strstr(err.msg, s1) || !strstr(err.msg, s2))
        fail_msg("%s: message '%s' lacks '%s' or '%s'", name, err.msg, s1, s2);
}

static void test_refused(void **state)
{
    (void)state;
    expect_refused("e_topk_k_large", "TopK node 'TopK_", "k 7: axis 3 has 6 elements");
    expect_refused("e_nms_feeds", "Linear node 'Gemm_", "data-dependent (from 'nonmaxsuppression");
    expect_refused("e_nms_feeds", "Gemm_", "an outsourced linear layer has a fixed input length");
    expect_refused("e_nms_shape", "Shape node 'Shape_", "has a data-dependent length (from 'nonmaxsuppression");
    expect_refused("e_nms_reduce", "ReduceSum node 'ReduceSum_", "reduces over the data-dependent dimension");
    expect_refused("e_if_dynamic", "If node 'If_", "depends on the input: data-dependent control flow");
    expect_refused("e_loop", "unsupported ONNX op 'Loop' in node 'Loop_", "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_models),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
