/* Owner tool: ONNX import, quantisation/calibration, deployment writing.
 * Models and torch reference outputs come from owner/tests/make_owner_models.py
 * (run as a ctest fixture into $TE_TEST_DATA/owner). */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compile.h"
#include "keys.h"
#include "onnx_import.h"
#include "owner.h"
#include "te_bundle.h"
#include "te_exec.h"
#include "te_linear.h"
#include "te_npy.h"
#include "te_ring.h"

static void data_path(char *buf, size_t cap, const char *file)
{
    const char *d = getenv("TE_TEST_DATA");
    snprintf(buf, cap, "%s/owner/%s", d ? d : ".", file);
}

static te_model *import_ok(const char *name)
{
    char p[1024], f[256];
    snprintf(f, sizeof f, "%s.onnx", name);
    data_path(p, sizeof p, f);
    te_model *m = NULL;
    te_err err = {0};
    te_status st = te_onnx_import(p, &m, &err);
    if (st != TE_OK)
        fail_msg("import %s: %s", name, err.msg);
    assert_non_null(m);
    return m;
}

static float *load_npy(const char *name, const char *suffix, te_shape *s)
{
    char p[1024], f[256];
    snprintf(f, sizeof f, "%s.%s.npy", name, suffix);
    data_path(p, sizeof p, f);
    float *d = NULL;
    te_err err = {0};
    if (te_npy_read(p, s, &d, &err) != TE_OK)
        fail_msg("%s: %s", p, err.msg);
    return d;
}

static int same_shape(const te_shape *a, const te_shape *b)
{
    int64_t na = te_shape_numel(a), nb = te_shape_numel(b);
    if (a->ndim != b->ndim)
        return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->d[i] != b->d[i])
            return 0;
    return na == nb;
}

/* Run m on NAME.input.npy and compare with NAME.ref.npy: |y - ref| <= tol * (1 + max|ref|). */
static void check_run(te_model *m, const char *name, te_linear_fn fn, double tol)
{
    te_shape is, rs, os;
    float *in = load_npy(name, "input", &is);
    float *ref = load_npy(name, "ref", &rs);
    assert_true(same_shape(&is, &m->values[m->input].shape));
    assert_true(same_shape(&rs, &m->values[m->output].shape));
    te_exec *ex = NULL;
    te_err err = {0};
    if (te_exec_new(m, &ex, &err) != TE_OK || te_exec_run(ex, in, (size_t)te_shape_numel(&is), fn, NULL, &err) != TE_OK)
        fail_msg("%s: run: %s", name, err.msg);
    const float *y = te_exec_output(ex, &os);
    assert_true(same_shape(&os, &rs));
    int64_t n = te_shape_numel(&rs);
    double mx = 0, worst = 0;
    for (int64_t k = 0; k < n; k++)
        mx = fmax(mx, fabs(ref[k]));
    for (int64_t k = 0; k < n; k++)
        worst = fmax(worst, fabs((double)y[k] - ref[k]));
    if (worst > tol * (1 + mx))
        fail_msg("%s: max error %g (max |ref| %g, tol %g)", name, worst, mx, tol);
    te_exec_free(ex);
    free(in);
    free(ref);
}

static int count_op(const te_model *m, te_op op)
{
    int c = 0;
    for (int i = 0; i < m->n_nodes; i++)
        c += m->nodes[i].op == op;
    return c;
}

static void test_conv_bn_folded(void **state)
{
    (void)state;
    te_model *m = import_ok("conv_bn");
    assert_int_equal(m->n_layers, 1);
    assert_int_equal(m->n_nodes, 2); /* BN folded: Conv, Relu */
    assert_int_equal(count_op(m, TE_OP_LINEAR), 1);
    assert_int_equal(count_op(m, TE_OP_RELU), 1);
    const te_linear_geom *g = &m->layers[0].geom;
    assert_int_equal(g->kind, TE_LIN_CONV);
    assert_int_equal(g->pad_t, 1);
    assert_int_equal(g->pad_l, 0);
    assert_int_equal(g->pad_b, 2);
    assert_int_equal(g->pad_r, 1);
    assert_int_equal(g->stride_h, 2);
    assert_int_equal(g->stride_w, 1);
    assert_int_equal(g->out_h, 5);
    assert_int_equal(g->out_w, 8);
    assert_non_null(m->layers[0].bias);
    assert_string_equal(m->layers[0].name, "conv1");
    check_run(m, "conv_bn", te_linear_fn_float, 1e-5);
    te_model_free(m);
}

static void test_depthwise_bn_kept(void **state)
{
    (void)state;
    te_model *m = import_ok("dw_nofold");
    /* the conv output also feeds the residual Add: BN stays as Mul + Add */
    assert_int_equal(m->n_layers, 1);
    assert_int_equal(count_op(m, TE_OP_MUL), 1);
    assert_int_equal(count_op(m, TE_OP_ADD), 2);
    const te_linear_geom *g = &m->layers[0].geom;
    assert_int_equal(g->group, 4);
    assert_int_equal(g->dil_h, 2);
    assert_int_equal(g->pad_t, 2);
    assert_int_equal(g->pad_r, 2);
    assert_int_equal(g->out_h, 8);
    assert_null(m->layers[0].bias);
    check_run(m, "dw_nofold", te_linear_fn_float, 1e-5);
    te_model_free(m);
}

static void test_same_lower(void **state)
{
    (void)state;
    te_model *m = import_ok("same_lower");
    const te_linear_geom *g = &m->layers[0].geom;
    assert_int_equal(g->pad_t, 1);
    assert_int_equal(g->pad_l, 1);
    assert_int_equal(g->pad_b, 0);
    assert_int_equal(g->pad_r, 0);
    check_run(m, "same_lower", te_linear_fn_float, 1e-5);
    te_model_free(m);
}

static void test_gemm(void **state)
{
    (void)state;
    te_model *m = import_ok("gemm");
    assert_int_equal(m->n_layers, 2);
    for (int i = 0; i < 2; i++) {
        assert_int_equal(m->layers[i].geom.kind, TE_LIN_FC);
        assert_int_equal(m->layers[i].geom.batch, 2);
        assert_non_null(m->layers[i].bias);
    }
    assert_int_equal(m->layers[0].geom.in_c, 5);
    assert_int_equal(m->layers[0].geom.out_c, 3);
    assert_int_equal(m->layers[1].geom.out_c, 4);
    check_run(m, "gemm", te_linear_fn_float, 1e-5);
    te_model_free(m);

    m = import_ok("gemm_ta");
    assert_int_equal(count_op(m, TE_OP_TRANSPOSE), 1);
    assert_int_equal(m->layers[0].geom.batch, 2);
    assert_int_equal(m->layers[0].geom.in_c, 5);
    check_run(m, "gemm_ta", te_linear_fn_float, 1e-5);
    te_model_free(m);
}

static void test_matmul(void **state)
{
    (void)state;
    te_model *m = import_ok("matmul");
    assert_int_equal(m->n_nodes, 1); /* the Add folded into the bias */
    assert_int_equal(m->layers[0].geom.batch, 6);
    assert_int_equal(m->layers[0].geom.in_c, 4);
    assert_int_equal(m->layers[0].geom.out_c, 6);
    assert_non_null(m->layers[0].bias);
    check_run(m, "matmul", te_linear_fn_float, 1e-5);
    te_model_free(m);

    m = import_ok("matmul_left");
    assert_int_equal(count_op(m, TE_OP_TRANSPOSE), 2);
    assert_int_equal(m->layers[0].geom.out_c, 5);
    assert_int_equal(m->layers[0].geom.batch, 6);
    check_run(m, "matmul_left", te_linear_fn_float, 1e-5);
    te_model_free(m);
}

static void test_op_zoo(void **state)
{
    (void)state;
    te_model *m = import_ok("ops11");
    /* opset 11 Softmax(axis=1) on 4-D: flatten, softmax, unflatten */
    assert_int_equal(count_op(m, TE_OP_SOFTMAX), 1);
    for (int i = 0; i < m->n_nodes; i++)
        if (m->nodes[i].op == TE_OP_SOFTMAX)
            assert_int_equal(m->values[m->nodes[i].out].shape.ndim, 2);
    check_run(m, "ops11", te_linear_fn_float, 1e-5);
    te_model_free(m);

    m = import_ok("ops13");
    /* Shape/Gather/Unsqueeze/Concat folded to a constant shape */
    assert_int_equal(count_op(m, TE_OP_RESHAPE), 1);
    assert_int_equal(count_op(m, TE_OP_PAD), 1);
    te_shape os = m->values[m->output].shape;
    assert_int_equal(os.ndim, 2);
    assert_int_equal(os.d[1], 4);
    check_run(m, "ops13", te_linear_fn_float, 1e-5);
    te_model_free(m);
}

static void test_torch_export(void **state)
{
    (void)state;
    te_model *m = import_ok("torch_cnn");
    assert_int_equal(m->values[m->input].shape.d[0], 1); /* dynamic N -> 1 */
    assert_int_equal(m->n_layers, 3);
    check_run(m, "torch_cnn", te_linear_fn_float, 1e-5);
    te_model_free(m);
}

static void expect_error(const char *file, te_status code, const char *s1, const char *s2)
{
    char p[1024];
    data_path(p, sizeof p, file);
    te_model *m = NULL;
    te_err err = {0};
    te_status st = te_onnx_import(p, &m, &err);
    assert_null(m);
    if (st != code)
        fail_msg("%s: status %d (%s), expected %d", file, st, err.msg, code);
    if (s1 && !strstr(err.msg, s1))
        fail_msg("%s: message '%s' lacks '%s'", file, err.msg, s1);
    if (s2 && !strstr(err.msg, s2))
        fail_msg("%s: message '%s' lacks '%s'", file, err.msg, s2);
}

static void test_errors(void **state)
{
    (void)state;
    expect_error("unsupported_cos.onnx", TE_EUNSUPPORTED, "'Cos'", "'my_unsupported_node'");
    expect_error("opset6.onnx", TE_EUNSUPPORTED, "opset 6", NULL);
    expect_error("malformed.onnx", TE_EFORMAT, NULL, NULL);
    expect_error("truncated.onnx", TE_EFORMAT, NULL, NULL);
    expect_error("does-not-exist.onnx", TE_EIO, NULL, NULL);
}

/* Quantised weights, keys and the fixed-point path of a calibrated build. */
static void test_build_calibrated(void **state)
{
    (void)state;
    char onnx[1024], calib[1024];
    data_path(onnx, sizeof onnx, "torch_cnn.onnx");
    data_path(calib, sizeof calib, "torch_cnn.calib.npy");
    te_owner_options opt;
    te_owner_options_init(&opt);
    opt.precision = TE_PREC_FIXED; /* 16-bit weights in every layer (auto: tests/integration/test_precision.c) */
    te_model *m = NULL;
    te_err err = {0};
    if (te_owner_build(onnx, calib, &opt, &m, &err) != TE_OK)
        fail_msg("build: %s", err.msg);
    assert_int_equal(strlen(m->deployment_id), 32);
    for (int i = 0; i < m->n_layers; i++) {
        te_layer *L = &m->layers[i];
        assert_int_equal(L->weight_bits, 16);
        assert_in_range(L->frac_bits, 8, 24);
        assert_in_range(L->ring_bits, 16, 48);
        int64_t oc = L->geom.out_c, per = te_geom_weight_len(&L->geom) / oc;
        for (int64_t o = 0; o < oc; o++) {
            int32_t mx = 0;
            for (int64_t k = 0; k < per; k++) {
                int32_t a = abs(L->w[o * per + k]);
                mx = a > mx ? a : mx;
                /* w_int * scale reproduces w_float to half a step */
                double back = (double)L->w[o * per + k] * L->w_scale[o];
                assert_true(fabs(back - L->w_float[o * per + k]) <= 0.5001 * L->w_scale[o]);
            }
            assert_int_equal(mx, 32767); /* the largest weight of each row uses the full range */
        }
        /* the deployment carries the bounds, and no integrity keys: those are
         * drawn per device at provisioning */
        assert_null(L->r);
        assert_null(L->s);
        assert_non_null(L->w_l1);
        for (int64_t o = 0; o < L->geom.out_c; o++) {
            uint64_t l1 = 0;
            for (int64_t k = 0; k < per; k++)
                l1 += (uint64_t)abs(L->w[o * per + k]);
            assert_true(L->w_l1[o] == l1);
        }
    }
    assert_int_equal(te_owner_make_keys(m, &err), TE_OK);
    for (int i = 0; i < m->n_layers; i++) {
        const te_layer *L = &m->layers[i];
        /* integrity keys: r.(W x) == s.x (mod p) for a random integer x */
        int64_t nin = te_geom_in_len(&L->geom), nout = te_geom_out_len(&L->geom);
        te_linear_geom g1 = L->geom;
        g1.batch = 1;
        uint64_t *x = malloc((size_t)nin * 8), *y = malloc((size_t)nout * 8);
        for (int64_t k = 0; k < nin; k++)
            x[k] = te_ring_from_signed((int64_t)(rand() % 20001) - 10000, 64);
        te_linear_ref_ring(&g1, L->w, 64, x, y);
        for (int64_t k = 0; k < nout; k++)
            assert_true(L->r[k] < TE_P61);
        assert_true(te_fp_dot_ring(L->r, y, (size_t)nout, 64) == te_fp_dot_ring(L->s, x, (size_t)nin, 64));
        y[0] ^= 1; /* a wrong result is caught */
        assert_true(te_fp_dot_ring(L->r, y, (size_t)nout, 64) != te_fp_dot_ring(L->s, x, (size_t)nin, 64));
        free(x);
        free(y);
    }
    /* the deployment's fixed-point arithmetic stays close to the float model */
    check_run(m, "torch_cnn", te_linear_fn_fixed, 2e-3);
    te_model_free(m);

    /* without calibration: documented defaults */
    if (te_owner_build(onnx, NULL, &opt, &m, &err) != TE_OK)
        fail_msg("build: %s", err.msg);
    for (int i = 0; i < m->n_layers; i++) {
        assert_int_equal(m->layers[i].frac_bits, 16);
        assert_int_equal(m->layers[i].ring_bits, 64);
    }
    te_model_free(m);

    /* calibration data of the wrong shape */
    char bad[1024];
    data_path(bad, sizeof bad, "gemm.input.npy");
    assert_int_equal(te_owner_build(onnx, bad, &opt, &m, &err), TE_ESHAPE);
    assert_null(m);
    opt.weight_bits = 1;
    assert_int_equal(te_owner_build(onnx, NULL, &opt, &m, &err), TE_EINVAL);
}

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static void test_compile_provision(void **state)
{
    (void)state;
    char onnx[1024], dir[1024], dev[1024], p[1200], q[1200], nm[64];
    data_path(onnx, sizeof onnx, "torch_cnn.onnx");
    snprintf(nm, sizeof nm, "deploy_%d", (int)getpid());
    data_path(dir, sizeof dir, nm);
    snprintf(nm, sizeof nm, "device_%d", (int)getpid());
    data_path(dev, sizeof dev, nm);
    te_err err = {0};

    /* a failing compile leaves nothing behind */
    char unsup[1024];
    data_path(unsup, sizeof unsup, "unsupported.onnx");
    assert_int_equal(te_owner_compile(unsup, NULL, NULL, dir, &err), TE_EUNSUPPORTED);
    assert_false(is_dir(dir));

    if (te_owner_compile(onnx, NULL, NULL, dir, &err) != TE_OK)
        fail_msg("compile: %s", err.msg);
    te_model *dm = NULL, *em = NULL;
    snprintf(p, sizeof p, "%s/device.bundle", dir);
    if (te_device_bundle_read(p, &dm, &err) != TE_OK)
        fail_msg("device bundle: %s", err.msg);
    snprintf(p, sizeof p, "%s/edge.bundle", dir);
    if (te_edge_bundle_read(p, &em, &err) != TE_OK)
        fail_msg("edge bundle: %s", err.msg);
    assert_int_equal(dm->n_layers, 3);
    assert_int_equal(em->n_layers, 3);
    assert_string_equal(dm->deployment_id, em->deployment_id);
    assert_null(dm->layers[0].w);
    assert_non_null(em->layers[0].w);

    assert_int_equal(te_owner_provision(dir, "bad/name", dev, &err), TE_EINVAL);
    assert_int_equal(te_owner_provision(dir, "..", dev, &err), TE_EINVAL);
    if (te_owner_provision(dir, "cam-01", dev, &err) != TE_OK)
        fail_msg("provision: %s", err.msg);
    te_device_key k1, k2;
    snprintf(p, sizeof p, "%s/device.key", dev);
    snprintf(q, sizeof q, "%s/hosts/b/devices/cam-01.key", dir);
    if (te_device_key_read(p, &k1, &err) != TE_OK || te_device_key_read(q, &k2, &err) != TE_OK)
        fail_msg("key: %s", err.msg);
    assert_string_equal(k1.device_id, "cam-01");
    assert_string_equal(k1.deployment_id, dm->deployment_id);
    assert_memory_equal(k1.key, k2.key, TE_KEY_BYTES);
    te_model *cm = NULL;
    snprintf(p, sizeof p, "%s/device.bundle", dev);
    if (te_device_bundle_read(p, &cm, &err) != TE_OK)
        fail_msg("copied bundle: %s", err.msg);
    assert_string_equal(cm->deployment_id, dm->deployment_id);
    te_model_free(cm);

    /* recompiling into the existing directory keeps the registrations */
    if (te_owner_compile(onnx, NULL, NULL, dir, &err) != TE_OK)
        fail_msg("recompile: %s", err.msg);
    assert_int_equal(access(q, F_OK), 0);

    te_model_free(dm);
    te_model_free(em);
    unlink(q);
    snprintf(p, sizeof p, "%s/hosts/b/devices", dir);
    rmdir(p);
    snprintf(p, sizeof p, "%s/hosts/b", dir);
    rmdir(p);
    snprintf(p, sizeof p, "%s/hosts", dir);
    rmdir(p);
    snprintf(p, sizeof p, "%s/device.bundle", dir);
    unlink(p);
    snprintf(p, sizeof p, "%s/edge.bundle", dir);
    unlink(p);
    rmdir(dir);
    snprintf(p, sizeof p, "%s/device.bundle", dev);
    unlink(p);
    snprintf(p, sizeof p, "%s/device.key", dev);
    unlink(p);
    rmdir(dev);
}

/* Every model of the shared test-model set ($TE_TEST_DATA/models.txt from
 * tests/models/make_testdata.py): "arch"/"op" models import and match the
 * reference in float; "error" models are refused naming the op. */
static void test_zoo_models(void **state)
{
    (void)state;
    const char *d = getenv("TE_TEST_DATA");
    char p[1024], line[512];
    snprintf(p, sizeof p, "%s/models.txt", d ? d : ".");
    FILE *f = fopen(p, "r");
    if (!f)
        skip();
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        char name[128], shape[64], size[32], kind[32];
        if (line[0] == '#' || sscanf(line, "%127s %63s %31s %31s", name, shape, size, kind) != 4)
            continue;
        char mp[1200];
        snprintf(mp, sizeof mp, "%s/%s.onnx", d, name);
        te_model *m = NULL;
        te_err err = {0};
        te_status st = te_onnx_import(mp, &m, &err);
        if (!strcmp(kind, "error")) {
            if (st != TE_EUNSUPPORTED || !strstr(err.msg, "unsupported ONNX op"))
                fail_msg("%s: expected an unsupported-op error, got %d: %s", name, st, err.msg);
            continue;
        }
        if (st != TE_OK)
            fail_msg("%s: %s", name, err.msg);
        te_shape is, rs, os;
        float *in = NULL, *ref = NULL;
        snprintf(mp, sizeof mp, "%s/%s.input.npy", d, name);
        assert_int_equal(te_npy_read(mp, &is, &in, &err), TE_OK);
        snprintf(mp, sizeof mp, "%s/%s.ref.npy", d, name);
        assert_int_equal(te_npy_read(mp, &rs, &ref, &err), TE_OK);
        te_exec *ex = NULL;
        if (te_exec_new(m, &ex, &err) != TE_OK ||
            te_exec_run(ex, in, (size_t)te_shape_numel(&is), te_linear_fn_float, NULL, &err) != TE_OK)
            fail_msg("%s: run: %s", name, err.msg);
        const float *y = te_exec_output(ex, &os);
        if (te_shape_numel(&os) != te_shape_numel(&rs))
            fail_msg("%s: output has %lld elements, reference %lld", name, (long long)te_shape_numel(&os),
                     (long long)te_shape_numel(&rs));
        double mx = 0, worst = 0;
        for (int64_t k = 0; k < te_shape_numel(&rs); k++) {
            mx = fmax(mx, fabs(ref[k]));
            worst = fmax(worst, fabs((double)y[k] - ref[k]));
        }
        if (worst > 1e-4 * (1 + mx))
            fail_msg("%s: max error %g (max |ref| %g)", name, worst, mx);
        te_exec_free(ex);
        free(in);
        free(ref);
        te_model_free(m);
        n++;
    }
    fclose(f);
    assert_true(n > 0);
}

int main(int argc, char **argv)
{
    if (argc > 1 && !strcmp(argv[1], "zoo")) {
        const struct CMUnitTest zoo[] = {cmocka_unit_test(test_zoo_models)};
        return cmocka_run_group_tests(zoo, NULL, NULL);
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conv_bn_folded),  cmocka_unit_test(test_depthwise_bn_kept),
        cmocka_unit_test(test_same_lower),      cmocka_unit_test(test_gemm),
        cmocka_unit_test(test_matmul),          cmocka_unit_test(test_op_zoo),
        cmocka_unit_test(test_torch_export),    cmocka_unit_test(test_errors),
        cmocka_unit_test(test_build_calibrated), cmocka_unit_test(test_compile_provision),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
