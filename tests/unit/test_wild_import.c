/* Issue 12: models as other exporters write them (tests/models/wild_zoo.py,
 * generated into $TE_TEST_DATA/wild): every model imports with its open
 * dimensions fixed from the calibration data's shape and its float
 * execution on the device's executor matches the reference; --input-shape
 * fixes them instead and is checked against the file. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "onnx_import.h"
#include "te_exec.h"
#include "te_npy.h"

static void path_of(char *buf, size_t cap, const char *name, const char *suffix)
{
    const char *d = getenv("TE_TEST_DATA");
    snprintf(buf, cap, "%s/wild/%s%s", d ? d : ".", name, suffix);
}

static float *npy(const char *name, const char *suffix, te_shape *s)
{
    char p[1024];
    path_of(p, sizeof p, name, suffix);
    float *d = NULL;
    te_err err = {0};
    if (te_npy_read(p, s, &d, &err) != TE_OK)
        fail_msg("%s: %s", p, err.msg);
    return d;
}

static te_model *import_with(const char *name, const te_import_opts *o, te_err *err)
{
    char p[1024];
    path_of(p, sizeof p, name, ".onnx");
    te_model *m = NULL;
    te_status st = te_onnx_import_opts(p, o, &m, err);
    if (st != TE_OK)
        return NULL;
    return m;
}

static int count_op(const te_model *m, te_op op)
{
    int c = 0;
    for (int i = 0; i < m->n_nodes; i++)
        c += m->nodes[i].op == op;
    return c;
}

/* Import NAME with dims from its calibration data, run in float, compare. */
static void check_model(const char *name)
{
    te_shape cs, is, rs, os;
    float *cal = npy(name, ".calib.npy", &cs);
    float *in = npy(name, ".input.npy", &is);
    float *ref = npy(name, ".ref.npy", &rs);
    te_import_opts o = {.hint = &cs, .hint_stacked = 1};
    te_err err = {0};
    te_model *m = import_with(name, &o, &err);
    if (!m)
        fail_msg("%s: import: %s", name, err.msg);
    const te_shape *ms = &m->values[m->input].shape;
    if (te_shape_numel(ms) != te_shape_numel(&is))
        fail_msg("%s: input fixed to %lld elements, the sample has %lld", name, (long long)te_shape_numel(ms),
                 (long long)te_shape_numel(&is));
    assert_true(m->n_layers > 0);
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
    printf("%-24s %3d layers %4d device nodes  max err %.2e (max |ref| %.3g)\n", name, m->n_layers,
           m->n_nodes - m->n_layers, worst, mx);
    if (!(worst <= 2e-4 * (1 + mx)))
        fail_msg("%s: max error %g (max |ref| %g)", name, worst, mx);
    te_exec_free(ex);
    te_model_free(m);
    free(cal);
    free(in);
    free(ref);
}

static void test_models(void **state)
{
    (void)state;
    char p[1024], line[512];
    const char *d = getenv("TE_TEST_DATA");
    snprintf(p, sizeof p, "%s/wild/models.txt", d ? d : ".");
    FILE *f = fopen(p, "r");
    if (!f)
        fail_msg("cannot open %s", p);
    int n = 0;
    while (fgets(line, sizeof line, f)) {
        char name[128];
        if (sscanf(line, "%127s", name) == 1) {
            check_model(name);
            n++;
        }
    }
    fclose(f);
    assert_true(n >= 30);
}

/* The new ops really are what the importer produced. */
static void test_lowering(void **state)
{
    (void)state;
    te_shape cs;
    float *cal = npy("wild_unet_o11", ".calib.npy", &cs);
    te_import_opts o = {.hint = &cs, .hint_stacked = 1};
    te_err err = {0};
    te_model *m = import_with("wild_unet_o11", &o, &err);
    assert_non_null(m);
    assert_int_equal(count_op(m, TE_OP_SPREAD), 3); /* one per ConvTranspose, each followed by a Conv layer */
    assert_int_equal(m->n_layers, 8); /* 5 Conv + 3 ConvTranspose */
    te_model_free(m);
    free(cal);

    cal = npy("wild_vit_o11", ".calib.npy", &cs);
    m = import_with("wild_vit_o11", &o, &err);
    assert_non_null(m);
    assert_int_equal(count_op(m, TE_OP_MATMUL), 4); /* q.k^T and att.v in two blocks */
    assert_true(count_op(m, TE_OP_ERF) == 2);
    te_model_free(m);
    free(cal);

    cal = npy("wild_vit_o17", ".calib.npy", &cs);
    m = import_with("wild_vit_o17", &o, &err);
    assert_non_null(m);
    assert_int_equal(count_op(m, TE_OP_LAYER_NORM), 5);
    te_model_free(m);
    free(cal);

    /* no shape arithmetic is left for the device */
    cal = npy("v_shapes_o13", ".calib.npy", &cs);
    m = import_with("v_shapes_o13", &o, &err);
    assert_non_null(m);
    for (int i = 0; i < m->n_nodes; i++)
        assert_true(m->nodes[i].op == TE_OP_LINEAR || m->nodes[i].op == TE_OP_RESHAPE ||
                    m->nodes[i].op == TE_OP_DIV || m->nodes[i].op == TE_OP_MUL || m->nodes[i].op == TE_OP_CONCAT);
    te_model_free(m);
    free(cal);
}

static void test_input_shape(void **state)
{
    (void)state;
    te_err err = {0};
    te_input_shape is;
    /* without any hint: the open H, W are an error naming --input-shape */
    te_model *m = import_with("wild_fpn_o11", NULL, &err);
    assert_null(m);
    assert_non_null(strstr(err.msg, "--input-shape input:"));
    assert_non_null(strstr(err.msg, "'H'"));
    /* --input-shape fixes them (another size than the calibration's) */
    assert_int_equal(te_parse_input_shape("input:1,3,24,28", &is), 0);
    te_import_opts o = {.n_shapes = 1, .shapes = &is};
    m = import_with("wild_fpn_o11", &o, &err);
    if (!m)
        fail_msg("%s", err.msg);
    const te_shape *s = &m->values[m->input].shape;
    assert_int_equal(s->ndim, 4);
    assert_int_equal(s->d[2], 24);
    assert_int_equal(s->d[3], 28);
    assert_int_equal(m->values[m->output].shape.d[2], 24);
    /* the executor (the device's) refuses an input of another size, naming the fixed shape */
    te_shape ins;
    float *x = npy("wild_fpn_o11", ".input.npy", &ins); /* 1x3x16x20 */
    te_exec *ex = NULL;
    assert_int_equal(te_exec_new(m, &ex, &err), TE_OK);
    assert_int_equal(te_exec_run(ex, x, (size_t)te_shape_numel(&ins), te_linear_fn_float, NULL, &err), TE_ESHAPE);
    assert_non_null(strstr(err.msg, "[1,3,24,28]"));
    te_exec_free(ex);
    free(x);
    te_model_free(m);
    /* a fixed dimension that disagrees, a wrong rank, a wrong name */
    assert_int_equal(te_parse_input_shape("input:1,4,24,28", &is), 0);
    assert_null(import_with("wild_fpn_o11", &o, &err));
    assert_non_null(strstr(err.msg, "fixed to 3"));
    assert_int_equal(te_parse_input_shape("input:3,24,28", &is), 0);
    assert_null(import_with("wild_fpn_o11", &o, &err));
    assert_non_null(strstr(err.msg, "3 dimensions"));
    assert_int_equal(te_parse_input_shape("image:1,3,24,28", &is), 0);
    assert_null(import_with("wild_fpn_o11", &o, &err));
    assert_non_null(strstr(err.msg, "'image'"));
    /* malformed option text */
    assert_int_equal(te_parse_input_shape("input", &is), -1);
    assert_int_equal(te_parse_input_shape("input:", &is), -1);
    assert_int_equal(te_parse_input_shape("input:1,0,3", &is), -1);
    assert_int_equal(te_parse_input_shape("input:1,x", &is), -1);
    assert_int_equal(te_parse_input_shape(":1,2", &is), -1);
    /* a one-sample hint (twinedge-run's input tensor), with or without the batch axis */
    te_shape h = {.ndim = 4, .d = {1, 3, 20, 12}};
    te_import_opts oh = {.hint = &h};
    m = import_with("wild_unet_o11", &oh, &err);
    if (!m)
        fail_msg("%s", err.msg);
    assert_int_equal(m->values[m->input].shape.d[2], 20);
    assert_int_equal(m->values[m->output].shape.d[3], 12);
    te_model_free(m);
    te_shape h3 = {.ndim = 3, .d = {3, 8, 16}};
    oh.hint = &h3;
    m = import_with("wild_unet_o11", &oh, &err);
    if (!m)
        fail_msg("%s", err.msg);
    assert_int_equal(m->values[m->input].shape.d[0], 1);
    assert_int_equal(m->values[m->input].shape.d[3], 16);
    te_model_free(m);
}

static void expect_refused(const char *name, const char *s1, const char *s2)
{
    te_err err = {0};
    te_shape h = {.ndim = 4, .d = {1, 3, 5, 6}};
    te_import_opts o = {.hint = &h};
    te_model *m = import_with(name, &o, &err);
    if (m)
        fail_msg("%s: imported", name);
    if (!strstr(err.msg, s1) || (s2 && !strstr(err.msg, s2)))
        fail_msg("%s: message '%s' lacks '%s' / '%s'", name, err.msg, s1, s2 ? s2 : "");
}

/* what can be neither folded nor run is refused, naming the op and the node */
static void test_refused(void **state)
{
    (void)state;
    expect_refused("e_dropout_training", "training mode", "Dropout");
    expect_refused("e_where_activation", "'Greater' in node 'Greater_", "folded on constants only");
    expect_refused("e_opset6", "opset 6", NULL);
    /* malformed attributes and types: refused naming them, never misread */
    expect_refused("e_where_float_cond", "Where", "not a bool tensor");
    expect_refused("e_long_strides", "'strides' has 9 entries", "Conv");
    expect_refused("e_long_perm", "'perm' has 9 entries", "Transpose");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_models),
        cmocka_unit_test(test_lowering),
        cmocka_unit_test(test_input_shape),
        cmocka_unit_test(test_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
