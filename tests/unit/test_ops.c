/* Non-linear ops against reference vectors from tests/unit/gen_ops_vectors.py
 * (PyTorch / NumPy in float64), plus hand-computed and error cases. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "te_exec.h"
#include "te_npy.h"

#define MAX_IN 4

static int parse_list(const char *s, int64_t *out, int max)
{
    if (strcmp(s, "-") == 0)
        return 0;
    int n = 0;
    while (n < max) {
        char *end;
        out[n++] = strtoll(s, &end, 10);
        if (*end != ',')
            break;
        s = end + 1;
    }
    return n;
}

/* Fill node attributes from "key=value" tokens of one manifest line. */
static void parse_attrs(char *tok, te_node *nd, int64_t *ints)
{
    for (; tok; tok = strtok(NULL, " \n")) {
        char *eq = strchr(tok, '=');
        assert_non_null(eq);
        *eq = '\0';
        const char *k = tok, *v = eq + 1;
        if (!strcmp(k, "axis"))
            nd->axis = strtoll(v, NULL, 10);
        else if (!strcmp(k, "kernel"))
            assert_int_equal(parse_list(v, nd->kernel, 2), 2);
        else if (!strcmp(k, "stride"))
            assert_int_equal(parse_list(v, nd->stride, 2), 2);
        else if (!strcmp(k, "dilation"))
            assert_int_equal(parse_list(v, nd->dilation, 2), 2);
        else if (!strcmp(k, "pads"))
            assert_int_equal(parse_list(v, nd->pads, 4), 4);
        else if (!strcmp(k, "ceil"))
            nd->ceil_mode = atoi(v);
        else if (!strcmp(k, "cip"))
            nd->count_include_pad = atoi(v);
        else if (!strcmp(k, "alpha"))
            nd->alpha = strtof(v, NULL);
        else if (!strcmp(k, "beta"))
            nd->beta = strtof(v, NULL);
        else if (!strcmp(k, "bias"))
            nd->bias = strtof(v, NULL);
        else if (!strcmp(k, "size"))
            nd->size = strtoll(v, NULL, 10);
        else if (!strcmp(k, "p"))
            nd->p = strtoll(v, NULL, 10);
        else if (!strcmp(k, "fmin"))
            nd->fmin = strtof(v, NULL);
        else if (!strcmp(k, "fmax"))
            nd->fmax = strtof(v, NULL);
        else if (!strcmp(k, "ints")) {
            nd->n_ints = parse_list(v, ints, 2 * TE_MAX_DIMS);
            nd->ints = ints;
        } else if (!strcmp(k, "mode"))
            nd->pad_mode = atoi(v);
        else if (!strcmp(k, "pad_value"))
            nd->pad_value = strtof(v, NULL);
        else if (!strcmp(k, "keepdims"))
            nd->keepdims = atoi(v);
        else
            fail_msg("unknown manifest key '%s'", k);
    }
}

/* Run one manifest case; returns the number of mismatching elements. */
static int run_case(const char *dir, char *line, int *n_checked)
{
    char *name = strtok(line, " \n");
    if (!name)
        return 0;
    int op = atoi(strtok(NULL, " \n"));
    int n_in = atoi(strtok(NULL, " \n"));
    assert_true(n_in >= 1 && n_in <= MAX_IN);

    te_node nd;
    memset(&nd, 0, sizeof nd);
    int64_t ints[2 * TE_MAX_DIMS];
    int in_ids[MAX_IN];
    nd.op = (te_op)op;
    nd.name = name;
    nd.n_in = n_in;
    nd.in = in_ids;
    nd.out = n_in;
    parse_attrs(strtok(NULL, " \n"), &nd, ints);

    te_value vals[MAX_IN + 1];
    float *data[MAX_IN + 1];
    char path[1024];
    te_err err = {0};
    memset(vals, 0, sizeof vals);
    for (int k = 0; k <= n_in; k++) {
        if (k < n_in)
            snprintf(path, sizeof path, "%s/%s_in%d.npy", dir, name, k);
        else
            snprintf(path, sizeof path, "%s/%s_out.npy", dir, name);
        te_status st = te_npy_read(path, &vals[k].shape, &data[k], &err);
        if (st != TE_OK)
            fail_msg("%s: %s", path, err.msg);
        if (k < n_in)
            in_ids[k] = k;
    }
    te_model m;
    memset(&m, 0, sizeof m);
    m.values = vals;
    m.n_values = n_in + 1;

    int64_t n = te_shape_numel(&vals[n_in].shape);
    float *y = malloc((size_t)(n > 0 ? n : 1) * sizeof *y);
    assert_non_null(y);
    for (int64_t i = 0; i < n; i++)
        y[i] = NAN;
    const float *in[MAX_IN];
    for (int k = 0; k < n_in; k++)
        in[k] = data[k];
    te_status st = te_op_run(&m, &nd, in, y, &err);
    int bad = 0;
    if (st != TE_OK) {
        print_error("case %s: te_op_run failed: %s\n", name, err.msg);
        bad = 1;
    }
    for (int64_t i = 0; st == TE_OK && i < n; i++) {
        float want = data[n_in][i];
        double tol = 1e-6 + 1e-5 * fabs(want);
        if (!(fabs((double)y[i] - want) <= tol)) {
            if (bad < 5)
                print_error("case %s: element %lld: got %.9g, want %.9g\n", name, (long long)i, y[i], want);
            bad++;
        }
    }
    free(y);
    for (int k = 0; k <= n_in; k++)
        free(data[k]);
    (*n_checked)++;
    return bad;
}

static void test_reference_vectors(void **state)
{
    (void)state;
    const char *base = getenv("TE_TEST_DATA");
    assert_non_null(base);
    char dir[900], path[1024], line[1024];
    snprintf(dir, sizeof dir, "%s/ops", base);
    snprintf(path, sizeof path, "%s/manifest.txt", dir);
    FILE *f = fopen(path, "r");
    if (!f)
        fail_msg("cannot open %s (generated by gen_ops_vectors.py at build time)", path);
    int failed_cases = 0, checked = 0;
    while (fgets(line, sizeof line, f))
        if (run_case(dir, line, &checked) != 0)
            failed_cases++;
    fclose(f);
    assert_true(checked >= 90); /* the generator writes ~95 cases */
    assert_int_equal(failed_cases, 0);
}

/* ---- hand-computed cases ------------------------------------------------ */

static void set_shape(te_shape *s, int nd, const int64_t *d)
{
    s->ndim = nd;
    for (int i = 0; i < nd; i++)
        s->d[i] = d[i];
}

/* 3x3 input 1..9, 2x2 kernel, stride 2, ceil mode: the overhang is never
 * counted, with or without count_include_pad. */
static void test_avgpool_ceil_by_hand(void **state)
{
    (void)state;
    float x[9] = {1, 2, 3, 4, 5, 6, 7, 8, 9}, y[4];
    te_value v[2];
    memset(v, 0, sizeof v);
    set_shape(&v[0].shape, 4, (int64_t[]){1, 1, 3, 3});
    set_shape(&v[1].shape, 4, (int64_t[]){1, 1, 2, 2});
    te_model m = {.values = v, .n_values = 2};
    int in_id = 0;
    te_node nd = {.op = TE_OP_AVGPOOL, .n_in = 1, .in = &in_id, .out = 1, .kernel = {2, 2}, .stride = {2, 2},
                  .ceil_mode = 1};
    const float *in[1] = {x};
    for (int cip = 0; cip < 2; cip++) {
        nd.count_include_pad = cip;
        te_err err = {0};
        assert_int_equal(te_op_run(&m, &nd, in, y, &err), TE_OK);
        assert_float_equal(y[0], 3.0f, 1e-6);
        assert_float_equal(y[1], 4.5f, 1e-6);
        assert_float_equal(y[2], 7.5f, 1e-6);
        assert_float_equal(y[3], 9.0f, 1e-6);
    }
    /* with one pixel of declared padding on every side: 1x1 kernel-3 windows */
    float y2[4];
    nd.kernel[0] = nd.kernel[1] = 3;
    nd.pads[0] = nd.pads[1] = nd.pads[2] = nd.pads[3] = 1;
    nd.count_include_pad = 1;
    te_err err = {0};
    assert_int_equal(te_op_run(&m, &nd, in, y2, &err), TE_OK);
    assert_float_equal(y2[0], (1 + 2 + 4 + 5) / 9.0f, 1e-6);
    assert_float_equal(y2[3], (5 + 6 + 8 + 9) / 9.0f, 1e-6);
    nd.count_include_pad = 0;
    assert_int_equal(te_op_run(&m, &nd, in, y2, &err), TE_OK);
    assert_float_equal(y2[0], (1 + 2 + 4 + 5) / 4.0f, 1e-6);
    assert_float_equal(y2[1], (2 + 3 + 5 + 6) / 4.0f, 1e-6);
}

static void test_errors(void **state)
{
    (void)state;
    float a[6] = {0}, b[6] = {1, 1, 1, 1, 1, 1}, y[12];
    te_value v[3];
    memset(v, 0, sizeof v);
    set_shape(&v[0].shape, 2, (int64_t[]){2, 3});
    set_shape(&v[1].shape, 2, (int64_t[]){3, 2});
    set_shape(&v[2].shape, 2, (int64_t[]){2, 3});
    te_model m = {.values = v, .n_values = 3};
    int ids[2] = {0, 1};
    const float *in[2] = {a, b};
    te_err err = {0};

    te_node add = {.op = TE_OP_ADD, .n_in = 2, .in = ids, .out = 2};
    assert_int_equal(te_op_run(&m, &add, in, y, &err), TE_ESHAPE);
    assert_non_null(strstr(err.msg, "broadcast"));

    /* an output shape that is not the broadcast shape */
    set_shape(&v[1].shape, 1, (int64_t[]){3});
    set_shape(&v[2].shape, 2, (int64_t[]){4, 3});
    assert_int_equal(te_op_run(&m, &add, in, y, &err), TE_ESHAPE);

    te_node relu = {.op = TE_OP_RELU, .n_in = 1, .in = ids, .out = 2};
    assert_int_equal(te_op_run(&m, &relu, in, y, &err), TE_ESHAPE);

    set_shape(&v[2].shape, 2, (int64_t[]){2, 3});
    te_node lp = {.op = TE_OP_LPNORM, .n_in = 1, .in = ids, .out = 2, .axis = 1, .p = 3};
    assert_int_equal(te_op_run(&m, &lp, in, y, &err), TE_EUNSUPPORTED);

    te_node sm = {.op = TE_OP_SOFTMAX, .n_in = 1, .in = ids, .out = 2, .axis = 2};
    assert_int_equal(te_op_run(&m, &sm, in, y, &err), TE_EINVAL);

    te_node lin = {.op = TE_OP_LINEAR, .n_in = 1, .in = ids, .out = 2};
    assert_int_not_equal(te_op_run(&m, &lin, in, y, &err), TE_OK);

    te_node pool = {.op = TE_OP_MAXPOOL, .n_in = 1, .in = ids, .out = 2, .kernel = {2, 2}};
    assert_int_equal(te_op_run(&m, &pool, in, y, &err), TE_ESHAPE);

    /* a zero norm gives zeros, not NaN */
    lp.p = 2;
    assert_int_equal(te_op_run(&m, &lp, in, y, &err), TE_OK);
    for (int i = 0; i < 6; i++)
        assert_true(y[i] == 0.0f);
}

/* Issue 12's device ops by hand: values, and parameters a forged bundle
 * could carry refused without reading outside any buffer. */
static void test_new_ops_by_hand(void **state)
{
    (void)state;
    te_value v[4];
    memset(v, 0, sizeof v);
    te_model m = {.values = v, .n_values = 4};
    int ids[3] = {0, 1, 2};
    te_err err = {0};
    float x[6] = {1, 2, 3, 4, 5, 6}, y[64];
    const float *in[3] = {x, NULL, NULL};

    /* Spread: 1x1x2x3 into 1x1x4x6 with stride 2, offset (1, 0) */
    set_shape(&v[0].shape, 4, (int64_t[]){1, 1, 2, 3});
    set_shape(&v[1].shape, 4, (int64_t[]){1, 1, 4, 6});
    int64_t sp[4] = {2, 2, 1, 0};
    te_node spread = {.op = TE_OP_SPREAD, .n_in = 1, .in = ids, .out = 1, .ints = sp, .n_ints = 4};
    assert_int_equal(te_op_run(&m, &spread, in, y, &err), TE_OK);
    float want_sp[24] = {0, 0, 0, 0, 0, 0, 1, 0, 2, 0, 3, 0, 0, 0, 0, 0, 0, 0, 4, 0, 5, 0, 6, 0};
    assert_memory_equal(y, want_sp, sizeof want_sp);
    sp[2] = -1; /* the first row falls outside: dropped */
    assert_int_equal(te_op_run(&m, &spread, in, y, &err), TE_OK);
    assert_true(y[0 * 6 + 0] == 0 && y[1 * 6 + 0] == 4);
    sp[2] = INT64_MIN;
    assert_int_equal(te_op_run(&m, &spread, in, y, &err), TE_EINVAL);
    sp[2] = 0;
    sp[0] = 0;
    assert_int_equal(te_op_run(&m, &spread, in, y, &err), TE_EINVAL);

    /* Slice: [2,3] -> rows 1..0 step -1, columns 2, 0 (step -2) */
    set_shape(&v[0].shape, 2, (int64_t[]){2, 3});
    set_shape(&v[1].shape, 2, (int64_t[]){2, 2});
    int64_t sl[4] = {1, -1, 2, -2};
    te_node slice = {.op = TE_OP_SLICE, .n_in = 1, .in = ids, .out = 1, .ints = sl, .n_ints = 4};
    assert_int_equal(te_op_run(&m, &slice, in, y, &err), TE_OK);
    float want_sl[4] = {6, 4, 3, 1};
    assert_memory_equal(y, want_sl, sizeof want_sl);
    sl[3] = INT64_MAX; /* a step that leaves the input */
    assert_int_equal(te_op_run(&m, &slice, in, y, &err), TE_EINVAL);
    sl[3] = -2;
    sl[0] = 2; /* a start outside */
    assert_int_equal(te_op_run(&m, &slice, in, y, &err), TE_EINVAL);

    /* Gather along axis 1 with indices [2, 0]; an index out of range is refused */
    float idx[2] = {2, 0};
    in[1] = idx;
    set_shape(&v[1].shape, 1, (int64_t[]){2});
    set_shape(&v[2].shape, 2, (int64_t[]){2, 2});
    te_node gather = {.op = TE_OP_GATHER, .n_in = 2, .in = ids, .out = 2, .axis = 1};
    assert_int_equal(te_op_run(&m, &gather, in, y, &err), TE_OK);
    float want_g[4] = {3, 1, 6, 4};
    assert_memory_equal(y, want_g, sizeof want_g);
    idx[0] = 3;
    assert_int_equal(te_op_run(&m, &gather, in, y, &err), TE_EINVAL);
    idx[0] = 0.5f;
    assert_int_equal(te_op_run(&m, &gather, in, y, &err), TE_EINVAL);

    /* MatMul [2,3] x [3,2] */
    float b[6] = {1, 0, 0, 1, 1, 1};
    in[1] = b;
    set_shape(&v[1].shape, 2, (int64_t[]){3, 2});
    te_node mm = {.op = TE_OP_MATMUL, .n_in = 2, .in = ids, .out = 2};
    assert_int_equal(te_op_run(&m, &mm, in, y, &err), TE_OK);
    float want_mm[4] = {4, 5, 10, 11};
    assert_memory_equal(y, want_mm, sizeof want_mm);
    set_shape(&v[1].shape, 2, (int64_t[]){2, 3});
    assert_int_equal(te_op_run(&m, &mm, in, y, &err), TE_ESHAPE);

    /* Resize 1x1x2x3 -> 1x1x4x6, x2: nearest/asymmetric/floor repeats, linear/align_corners interpolates */
    float sc[4] = {1, 1, 2, 2};
    in[1] = sc;
    set_shape(&v[0].shape, 4, (int64_t[]){1, 1, 2, 3});
    set_shape(&v[1].shape, 1, (int64_t[]){4});
    set_shape(&v[2].shape, 4, (int64_t[]){1, 1, 4, 6});
    int64_t rz[3] = {TE_RESIZE_NEAREST, TE_COORD_ASYMMETRIC, TE_NEAREST_FLOOR};
    te_node resize = {.op = TE_OP_RESIZE, .n_in = 2, .in = ids, .out = 2, .ints = rz, .n_ints = 3};
    assert_int_equal(te_op_run(&m, &resize, in, y, &err), TE_OK);
    assert_true(y[0] == 1 && y[1] == 1 && y[2] == 2 && y[5] == 3 && y[6] == 1 && y[12] == 4 && y[23] == 6);
    rz[0] = TE_RESIZE_LINEAR;
    rz[1] = TE_COORD_ALIGN_CORNERS;
    assert_int_equal(te_op_run(&m, &resize, in, y, &err), TE_OK);
    assert_float_equal(y[0], 1, 1e-6);
    assert_float_equal(y[1], 1.4f, 1e-6); /* x = 1 * 2/5 */
    assert_float_equal(y[5], 3, 1e-6);
    assert_float_equal(y[6], 2, 1e-6);    /* row 1 of 4: y = 1/3, (1 + 3) * 2/3 + ... */
    assert_float_equal(y[23], 6, 1e-6);
    sc[3] = 1e-30f; /* absurd scales clamp, they do not overflow */
    rz[1] = TE_COORD_ASYMMETRIC;
    assert_int_equal(te_op_run(&m, &resize, in, y, &err), TE_OK);
    sc[3] = -1;
    assert_int_equal(te_op_run(&m, &resize, in, y, &err), TE_EINVAL);
    sc[3] = 2;
    rz[1] = 99;
    assert_int_equal(te_op_run(&m, &resize, in, y, &err), TE_EINVAL);

    /* LayerNormalization over the last axis of [2,3], scale 2, bias 1 */
    float s3[3] = {2, 2, 2}, b3[3] = {1, 1, 1};
    in[1] = s3;
    in[2] = b3;
    set_shape(&v[0].shape, 2, (int64_t[]){2, 3});
    set_shape(&v[1].shape, 1, (int64_t[]){3});
    set_shape(&v[2].shape, 1, (int64_t[]){3});
    set_shape(&v[3].shape, 2, (int64_t[]){2, 3});
    te_node ln = {.op = TE_OP_LAYER_NORM, .n_in = 3, .in = ids, .out = 3, .axis = 1, .alpha = 0};
    assert_int_equal(te_op_run(&m, &ln, in, y, &err), TE_OK);
    assert_float_equal(y[0], 1 - 2 * sqrtf(1.5f), 1e-5);
    assert_float_equal(y[1], 1, 1e-6);
    assert_float_equal(y[5], 1 + 2 * sqrtf(1.5f), 1e-5);
    ln.axis = 2;
    assert_int_equal(te_op_run(&m, &ln, in, y, &err), TE_EINVAL);
    ln.n_in = 4; /* more inputs than the op takes */
    assert_int_equal(te_op_run(&m, &ln, in, y, &err), TE_EINVAL);

    /* ReduceMean / ReduceMax over axis 1 of [2,3] */
    int64_t ax[1] = {1};
    set_shape(&v[1].shape, 2, (int64_t[]){2, 1});
    te_node rm = {.op = TE_OP_REDUCE_MEAN, .n_in = 1, .in = ids, .out = 1, .ints = ax, .n_ints = 1, .keepdims = 1};
    assert_int_equal(te_op_run(&m, &rm, in, y, &err), TE_OK);
    assert_true(y[0] == 2 && y[1] == 5);
    rm.op = TE_OP_REDUCE_MAX;
    assert_int_equal(te_op_run(&m, &rm, in, y, &err), TE_OK);
    assert_true(y[0] == 3 && y[1] == 6);
}

/* TopK: ties (the lower index first), largest and smallest, sorted 0 (the
 * same order), an inner axis, the indices output, NaN, and the refusals (k
 * larger than the axis, k 0, an output of another shape). */
static void test_topk_by_hand(void **state)
{
    (void)state;
    te_value v[2];
    memset(v, 0, sizeof v);
    te_model m = {.values = v, .n_values = 2};
    int ids[1] = {0};
    te_err err = {0};
    float y[16];
    /* [2, 5] along axis 1: ties at 3 (indices 1, 3) and at 0 (0, 2, 4) */
    float x[10] = {0, 3, 0, 3, 0, 5, -1, 7, 5, 2};
    const float *in[1] = {x};
    set_shape(&v[0].shape, 2, (int64_t[]){2, 5});
    set_shape(&v[1].shape, 2, (int64_t[]){2, 3});
    int64_t p[4] = {3, 1, 1, 0};
    te_node nd = {.op = TE_OP_TOPK, .n_in = 1, .in = ids, .out = 1, .axis = -1, .ints = p, .n_ints = 4};
    assert_int_equal(te_op_run(&m, &nd, in, y, &err), TE_OK);
    float want_v[6] = {3, 3, 0, 7, 5, 5};
    assert_memory_equal(y, want_v, sizeof want_v);
    p[3] = 1;
    assert_int_equal(te_op_run(&m, &nd, in, y, &err), TE_OK);
    float want_i[6] = {1, 3, 0, 2, 0, 3};
    assert_memory_equal(y, want_i, sizeof want_i);
    p[2] = 0; /* sorted 0: the same order */
    assert_int_equal(te_op_run(&m, &nd, in, y, &err), TE_OK);
    assert_memory_equal(y, want_i, sizeof want_i);
    p[1] = 0; /* smallest: ties at 0 in index order */
    assert_int_equal(te_op_run(&m, &nd, in, y, &err), TE_OK);
    float want_s[6] = {0, 2, 4, 1, 4, 0};
    assert_memory_equal(y, want_s, sizeof want_s);
    /* axis 0 of the same [2, 5], k 1: the larger row per column, row 0 on ties */
    p[0] = 1, p[1] = 1, p[3] = 1;
    nd.axis = 0;
    set_shape(&v[1].shape, 2, (int64_t[]){1, 5});
    float x2[10] = {1, 2, 3, 4, 5, 1, 9, 0, 4, 6};
    in[0] = x2;
    assert_int_equal(te_op_run(&m, &nd, in, y, &err), TE_OK);
    float want_a0[5] = {0, 1, 0, 0, 1};
    assert_memory_equal(y, want_a0, sizeof want_a0);
    /* NaN counts as the largest */
    float x3[10] = {1, NAN, 3, 4, 5, 1, 9, 0, 4, 6};
    in[0] = x3;
    assert_int_equal(te_op_run(&m, &nd, in, y, &err), TE_OK);
    assert_true(y[1] == 0);
    /* k larger than the axis, k 0, an output that does not match k: refused */
    p[0] = 3;
    set_shape(&v[1].shape, 2, (int64_t[]){3, 5});
    assert_int_equal(te_op_run(&m, &nd, in, y, &err), TE_EINVAL);
    p[0] = 0;
    assert_int_equal(te_op_run(&m, &nd, in, y, &err), TE_EINVAL);
    p[0] = 1;
    assert_int_equal(te_op_run(&m, &nd, in, y, &err), TE_ESHAPE);
    nd.n_ints = 3;
    set_shape(&v[1].shape, 2, (int64_t[]){1, 5});
    assert_int_equal(te_op_run(&m, &nd, in, y, &err), TE_EINVAL);
}

/* NonMaxSuppression: suppression by IoU (above the threshold only),
 * corners given in either order, center_point_box, the score threshold
 * (strictly greater), max boxes per class, ties (the lower index first),
 * an empty selection, and the rows reported. */
static void test_nms_by_hand(void **state)
{
    (void)state;
    te_value v[3];
    memset(v, 0, sizeof v);
    te_model m = {.values = v, .n_values = 3};
    int ids[2] = {0, 1};
    te_err err = {0};
    float y[3 * 8];
    /* 4 boxes [y1, x1, y2, x2]: 1 lies inside 0 with IoU 0.81 / 1 (box 1
     * written with its corners swapped), 2 is apart, 3 is empty */
    float boxes[16] = {0, 0, 1, 1, 1.0f, 1.0f, 0.1f, 0.1f, 2, 2, 3, 3, 5, 5, 5, 6};
    float scores[8] = {0.9f, 0.95f, 0.5f, 0.99f, 0.2f, 0.2f, 0.1f, 0.0f};
    const float *in[2] = {boxes, scores};
    set_shape(&v[0].shape, 3, (int64_t[]){1, 4, 4});
    set_shape(&v[1].shape, 3, (int64_t[]){1, 2, 4});
    set_shape(&v[2].shape, 2, (int64_t[]){8, 3});
    int64_t p[3] = {4, 0, 0};
    te_node nd = {.op = TE_OP_NMS, .n_in = 2, .in = ids, .out = 2, .ints = p, .n_ints = 3, .alpha = 0.5f};
    int64_t rows = -1;
    assert_int_equal(te_op_run_rows(&m, &nd, in, y, &rows, &err), TE_OK);
    /* class 0: 3 (empty box: never suppresses or is suppressed), 1, not 0
     * (IoU 0.81 > 0.5 with 1), 2; class 1: 0 and 1 tie at 0.2 (0 first, 1
     * suppressed), 2, 3 */
    float want[] = {0, 0, 3, 0, 0, 1, 0, 0, 2, 0, 1, 0, 0, 1, 2, 0, 1, 3};
    assert_int_equal(rows, 6);
    assert_memory_equal(y, want, sizeof want);
    /* an IoU threshold above 0.81 keeps box 0; max 2 boxes per class */
    nd.alpha = 0.85f;
    p[0] = 2;
    assert_int_equal(te_op_run_rows(&m, &nd, in, y, &rows, &err), TE_OK);
    float want2[] = {0, 0, 3, 0, 0, 1, 0, 1, 0, 0, 1, 1};
    assert_int_equal(rows, 4);
    assert_memory_equal(y, want2, sizeof want2);
    /* a score threshold no box passes (0.99 is not greater than 0.99): no rows */
    p[0] = 4, p[2] = 1;
    nd.beta = 0.99f;
    assert_int_equal(te_op_run_rows(&m, &nd, in, y, &rows, &err), TE_OK);
    assert_int_equal(rows, 0);
    /* center_point_box: [xc, yc, w, h]; boxes 0 and 1 the same square */
    float cboxes[16] = {0.5f, 0.5f, 1, 1, 0.5f, 0.5f, 1, 1, 9, 9, 1, 1, 0, 0, 0, 0};
    in[0] = cboxes;
    p[1] = 1, p[2] = 0;
    nd.alpha = 0.99f; /* IoU 1 > 0.99 */
    assert_int_equal(te_op_run_rows(&m, &nd, in, y, &rows, &err), TE_OK);
    assert_int_equal(rows, 6);
    assert_true(y[0] == 0 && y[1] == 0 && y[2] == 3 && y[5] == 1 && y[8] == 2);
    /* max 0: nothing; an output too small, a negative max: refused */
    p[0] = 0;
    assert_int_equal(te_op_run_rows(&m, &nd, in, y, &rows, &err), TE_OK);
    assert_int_equal(rows, 0);
    p[0] = 4;
    set_shape(&v[2].shape, 2, (int64_t[]){7, 3});
    assert_int_equal(te_op_run_rows(&m, &nd, in, y, &rows, &err), TE_ESHAPE);
    p[0] = -1;
    assert_int_equal(te_op_run_rows(&m, &nd, in, y, &rows, &err), TE_EINVAL);
}

/* RoiAlign on a 4x4 plane holding 0..15 (bilinear interpolation of it is
 * exact: value = 4y + x): one sample at the centre, the adaptive grid
 * (sampling_ratio 0), half_pixel's shift, max mode, a roi outside the
 * image, and a batch index out of range. */
static void test_roi_align_by_hand(void **state)
{
    (void)state;
    te_value v[4];
    memset(v, 0, sizeof v);
    te_model m = {.values = v, .n_values = 4};
    int ids[3] = {0, 1, 2};
    te_err err = {0};
    float x[16], y[4];
    for (int i = 0; i < 16; i++)
        x[i] = (float)i;
    float roi[4] = {0, 0, 3, 3}, bi[1] = {0};
    const float *in[3] = {x, roi, bi};
    set_shape(&v[0].shape, 4, (int64_t[]){1, 1, 4, 4});
    set_shape(&v[1].shape, 2, (int64_t[]){1, 4});
    set_shape(&v[2].shape, 1, (int64_t[]){1});
    set_shape(&v[3].shape, 4, (int64_t[]){1, 1, 1, 1});
    int64_t p[5] = {0, 1, 1, 1, 0}; /* avg, 1x1, one sample, output_half_pixel */
    te_node nd = {.op = TE_OP_ROI_ALIGN, .n_in = 3, .in = ids, .out = 3, .ints = p, .n_ints = 5, .alpha = 1.0f};
    assert_int_equal(te_op_run(&m, &nd, in, y, &err), TE_OK);
    assert_float_equal(y[0], 7.5f, 1e-6); /* (1.5, 1.5) */
    p[4] = 1; /* half_pixel: the roi moves by -0.5 */
    assert_int_equal(te_op_run(&m, &nd, in, y, &err), TE_OK);
    assert_float_equal(y[0], 5.0f, 1e-6);
    p[4] = 0, p[3] = 0; /* adaptive: 3x3 samples at 0.5, 1.5, 2.5; their mean is the centre's value */
    assert_int_equal(te_op_run(&m, &nd, in, y, &err), TE_OK);
    assert_float_equal(y[0], 7.5f, 1e-5);
    p[0] = 1, p[3] = 1; /* max: the largest weighted corner, 0.25 * 10 */
    assert_int_equal(te_op_run(&m, &nd, in, y, &err), TE_OK);
    assert_float_equal(y[0], 2.5f, 1e-6);
    /* 2x2 bins of the roi [0, 0, 2, 2], one sample each: (0.5, 0.5), (0.5, 1.5), ... */
    p[0] = 0, p[1] = 2, p[2] = 2;
    roi[2] = roi[3] = 2;
    set_shape(&v[3].shape, 4, (int64_t[]){1, 1, 2, 2});
    assert_int_equal(te_op_run(&m, &nd, in, y, &err), TE_OK);
    float want[4] = {2.5f, 3.5f, 6.5f, 7.5f};
    for (int i = 0; i < 4; i++)
        assert_float_equal(y[i], want[i], 1e-6);
    /* a roi beyond the image: every sample outside, 0 */
    float far[4] = {10, 10, 12, 12};
    in[1] = far;
    assert_int_equal(te_op_run(&m, &nd, in, y, &err), TE_OK);
    for (int i = 0; i < 4; i++)
        assert_float_equal(y[i], 0.0f, 0);
    bi[0] = 1; /* N is 1 */
    assert_int_equal(te_op_run(&m, &nd, in, y, &err), TE_EINVAL);
    bi[0] = 0;
    set_shape(&v[3].shape, 4, (int64_t[]){1, 1, 3, 2}); /* not the output size */
    assert_int_equal(te_op_run(&m, &nd, in, y, &err), TE_ESHAPE);
}

/* A detector's post-processing on a data-dependent number of rows (the
 * executor, te_dyn.h): NonMaxSuppression over 4 boxes [1, 4, 4] (the model
 * input) and 2 classes, the box column gathered, the kept boxes gathered on
 * axis 1 ([1, K, 4]), reshaped, scaled, concatenated with the column, the
 * first 2 rows sliced off, and the box column gathering a constant [3, 4]
 * (box 3 is out of its range).  bad: one more node that must be refused. */
enum { DYN_OK, DYN_REDUCE, DYN_CONCAT_STATIC, DYN_GATHER_ROWS, DYN_TWO_NMS };

static int add_v(te_model *m, const char *name, int nd, const int64_t *d, const float *data)
{
    te_shape s;
    set_shape(&s, nd, d);
    float *c = NULL;
    if (data) {
        size_t n = (size_t)te_shape_numel(&s);
        c = malloc(n * sizeof *c);
        assert_non_null(c);
        memcpy(c, data, n * sizeof *c);
    }
    int id = te_model_add_value(m, name, &s, c);
    assert_true(id >= 0);
    return id;
}

static void add_n(te_model *m, te_op op, const char *name, int n_in, const int *in, int out, int64_t axis,
                  int n_ints, const int64_t *ints)
{
    te_node t = {.op = op, .name = (char *)name, .n_in = n_in, .in = (int *)in, .out = out, .axis = axis,
                 .n_ints = n_ints, .ints = (int64_t *)ints, .keepdims = 1};
    assert_true(te_model_add_node(m, &t) >= 0);
}

static te_model *dyn_model(int bad)
{
    te_model *m = te_model_new();
    assert_non_null(m);
    static const float scores[8] = {0.9f, 0.8f, 0.7f, 0.6f, 0.5f, 0.4f, 0.3f, 0.2f};
    static const float scale[4] = {1, 10, 100, 1000}, col[1] = {2}, table[12] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11};
    int bx = add_v(m, "boxes", 3, (int64_t[]){1, 4, 4}, NULL);
    int sc = add_v(m, "scores", 3, (int64_t[]){1, 2, 4}, scores);
    int sel = add_v(m, "sel", 2, (int64_t[]){8, 3}, NULL);
    int c2 = add_v(m, "col2", 1, (int64_t[]){1}, col);
    int icol = add_v(m, "icol", 2, (int64_t[]){8, 1}, NULL);
    int idx = add_v(m, "idx", 1, (int64_t[]){8}, NULL);
    int kb3 = add_v(m, "kb3", 3, (int64_t[]){1, 8, 4}, NULL);
    int kb = add_v(m, "kb", 2, (int64_t[]){8, 4}, NULL);
    int sca = add_v(m, "scale", 2, (int64_t[]){1, 4}, scale);
    int kbs = add_v(m, "kbs", 2, (int64_t[]){8, 4}, NULL);
    int det = add_v(m, "det", 2, (int64_t[]){8, 5}, NULL);
    int top = add_v(m, "top", 2, (int64_t[]){2, 5}, NULL);
    int tab = add_v(m, "table", 2, (int64_t[]){3, 4}, table);
    int rows = add_v(m, "rows", 2, (int64_t[]){8, 4}, NULL);
    m->input = bx;
    int64_t nms[3] = {4, 0, 1}, sl[4] = {0, 1, 0, 1};
    add_n(m, TE_OP_NMS, "nms", 2, (int[]){bx, sc}, sel, 0, 3, nms);
    m->nodes[0].alpha = 0.5f;
    add_n(m, TE_OP_GATHER, "col", 2, (int[]){sel, c2}, icol, 1, 0, NULL);
    add_n(m, TE_OP_RESHAPE, "squeeze", 1, (int[]){icol}, idx, 0, 0, NULL);
    add_n(m, TE_OP_GATHER, "keep", 2, (int[]){bx, idx}, kb3, 1, 0, NULL);
    add_n(m, TE_OP_RESHAPE, "flat", 1, (int[]){kb3}, kb, 0, 0, NULL);
    add_n(m, TE_OP_MUL, "scale", 2, (int[]){kb, sca}, kbs, 0, 0, NULL);
    add_n(m, TE_OP_CONCAT, "cat", 2, (int[]){kbs, icol}, det, 1, 0, NULL);
    add_n(m, TE_OP_SLICE, "top2", 1, (int[]){det}, top, 0, 4, sl);
    add_n(m, TE_OP_GATHER, "table", 2, (int[]){tab, idx}, rows, 0, 0, NULL);
    int outs[5] = {det, top, idx, rows}, n_out = 4;
    int extra = -1;
    if (bad == DYN_REDUCE) {
        extra = add_v(m, "sum", 1, (int64_t[]){5}, NULL);
        int64_t ax[1] = {0};
        add_n(m, TE_OP_REDUCE_SUM, "bad", 1, (int[]){det}, extra, 0, 1, ax);
        m->nodes[m->n_nodes - 1].keepdims = 0;
    } else if (bad == DYN_CONCAT_STATIC) {
        extra = add_v(m, "cat2", 2, (int64_t[]){8, 5}, NULL);
        int st = add_v(m, "static", 2, (int64_t[]){8, 1}, NULL);
        add_n(m, TE_OP_RELU, "relu", 1, (int[]){tab}, st, 0, 0, NULL); /* fixed rows (the shape is what counts) */
        add_n(m, TE_OP_CONCAT, "bad", 2, (int[]){kbs, st}, extra, 1, 0, NULL);
    } else if (bad == DYN_GATHER_ROWS) {
        extra = add_v(m, "row0", 2, (int64_t[]){1, 5}, NULL);
        int z = add_v(m, "zero", 1, (int64_t[]){1}, (const float[]){0});
        add_n(m, TE_OP_GATHER, "bad", 2, (int[]){det, z}, extra, 0, 0, NULL);
    } else if (bad == DYN_TWO_NMS) {
        int sel2 = add_v(m, "sel2", 2, (int64_t[]){8, 3}, NULL);
        add_n(m, TE_OP_NMS, "nms2", 2, (int[]){bx, sc}, sel2, 0, 3, nms);
        extra = add_v(m, "sum2", 2, (int64_t[]){8, 3}, NULL);
        add_n(m, TE_OP_ADD, "bad", 2, (int[]){sel, sel2}, extra, 0, 0, NULL);
    }
    if (extra >= 0)
        outs[n_out++] = extra;
    assert_int_equal(te_model_set_outputs(m, outs, n_out), 0);
    return m;
}

static void check_out(const te_exec *ex, int k, int nd, const int64_t *dims, const float *want)
{
    te_shape s;
    const float *y = te_exec_output_at(ex, k, &s);
    assert_non_null(y);
    assert_int_equal(s.ndim, nd);
    for (int i = 0; i < nd; i++)
        assert_int_equal(s.d[i], dims[i]);
    if (te_shape_numel(&s))
        assert_memory_equal(y, want, (size_t)te_shape_numel(&s) * sizeof *y);
}

/* Gather with indices computed on the device: ONNX's [-dim, dim), the
 * negative ones from the end; anything else refused, never read. */
static void test_gather_device_indices(void **state)
{
    (void)state;
    te_model *m = te_model_new();
    assert_non_null(m);
    static const float table[6] = {10, 11, 20, 21, 30, 31};
    int ix = add_v(m, "ix", 1, (int64_t[]){4}, NULL);
    int tab = add_v(m, "table", 2, (int64_t[]){3, 2}, table);
    int out = add_v(m, "rows", 2, (int64_t[]){4, 2}, NULL);
    m->input = ix;
    add_n(m, TE_OP_GATHER, "g", 2, (int[]){tab, ix}, out, 0, 0, NULL);
    assert_int_equal(te_model_set_outputs(m, &out, 1), 0);
    te_err err = {0};
    te_exec *ex = NULL;
    assert_int_equal(te_exec_new(m, &ex, &err), TE_OK);
    assert_int_equal(te_exec_run(ex, (const float[]){0, -1, 2, -3}, 4, te_linear_fn_float, NULL, &err), TE_OK);
    check_out(ex, 0, 2, (int64_t[]){4, 2}, (const float[]){10, 11, 30, 31, 30, 31, 10, 11});
    const float bad[][4] = {{0, 3, 0, 0}, {-4, 0, 0, 0}, {0, 0, 0.5f, 0}, {0, 0, 0, NAN}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        assert_int_equal(te_exec_run(ex, bad[k], 4, te_linear_fn_float, NULL, &err), TE_EINVAL);
        assert_non_null(strstr(err.msg, "out of range -3..2"));
    }
    te_exec_free(ex);
    te_model_free(m);
}

static void test_dyn_rows_tail(void **state)
{
    (void)state;
    te_err err = {0};
    te_exec *ex = NULL;
    te_model *m = dyn_model(DYN_OK);
    assert_int_equal(te_exec_new(m, &ex, &err), TE_OK);
    /* 4 boxes apart from each other: nothing suppressed */
    const float boxes[16] = {0, 0, 1, 1, 2, 2, 3, 3, 4, 4, 5, 5, 6, 6, 7, 7};
    float copy[8 * 5 + 2 * 5 + 8 + 8 * 4];
    /* a threshold of 0.65: class 0's boxes 0, 1, 2 only */
    m->nodes[0].beta = 0.65f;
    assert_int_equal(te_exec_run(ex, boxes, 16, te_linear_fn_float, NULL, &err), TE_OK);
    const float det3[15] = {0, 0, 100, 1000, 0, 2, 20, 300, 3000, 1, 4, 40, 500, 5000, 2};
    check_out(ex, 0, 2, (int64_t[]){3, 5}, det3);
    check_out(ex, 1, 2, (int64_t[]){2, 5}, det3);
    check_out(ex, 2, 1, (int64_t[]){3}, (const float[]){0, 1, 2});
    check_out(ex, 3, 2, (int64_t[]){3, 4}, (const float[]){0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11});
    /* every box of both classes: the declared maximum, 8 rows; box 3
     * indexes the [3, 4] table out of its range: refused, not read */
    m->nodes[0].beta = 0.0f;
    assert_int_equal(te_exec_run(ex, boxes, 16, te_linear_fn_float, NULL, &err), TE_EINVAL);
    printf("index out of range: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "node 'table' (Gather): Gather: index 3 out of range -3..2"));
    assert_null(te_exec_output_at(ex, 0, NULL));
    te_exec_free(ex);
    te_model_free(m);
    /* the same without the table: 8 rows */
    m = dyn_model(DYN_OK);
    te_node *last = &m->nodes[--m->n_nodes]; /* the model no longer owns it */
    free(last->name);
    free(last->in);
    free(last->ints);
    int outs[3] = {m->outputs[0], m->outputs[1], m->outputs[2]};
    assert_int_equal(te_model_set_outputs(m, outs, 3), 0);
    assert_int_equal(te_exec_new(m, &ex, &err), TE_OK);
    assert_int_equal(te_exec_run(ex, boxes, 16, te_linear_fn_float, NULL, &err), TE_OK);
    te_shape s;
    const float *y = te_exec_output_at(ex, 0, &s);
    assert_int_equal(s.d[0], 8);
    for (int r = 0; r < 8; r++) {
        float box = (float)(r % 4);
        const float want[5] = {2 * box, 20 * box, 200 * box + 100, 2000 * box + 1000, box};
        assert_memory_equal(y + r * 5, want, sizeof want);
    }
    check_out(ex, 2, 1, (int64_t[]){8}, (const float[]){0, 1, 2, 3, 0, 1, 2, 3});
    /* no box passes: no rows, and nothing of the run before in the copy */
    m->nodes[0].beta = 0.95f;
    assert_int_equal(te_exec_run(ex, boxes, 16, te_linear_fn_float, NULL, &err), TE_OK);
    check_out(ex, 0, 2, (int64_t[]){0, 5}, NULL);
    check_out(ex, 1, 2, (int64_t[]){0, 5}, NULL);
    check_out(ex, 2, 1, (int64_t[]){0}, NULL);
    memset(copy, 0xff, sizeof copy);
    size_t n = te_exec_outputs_copy(ex, copy);
    assert_int_equal(n, 8 * 5 + 2 * 5 + 8);
    for (size_t i = 0; i < n; i++)
        assert_true(copy[i] == 0.0f);
    te_exec_free(ex);
    te_model_free(m);
    /* what the executor cannot follow is refused when the model is loaded, naming the node */
    static const struct {
        int bad;
        const char *why;
    } refused[] = {
        {DYN_REDUCE, "ReduceSum node 'bad' reads 'det', whose length is data-dependent (from 'sel'), and it "
                     "reduces over the data-dependent dimension"},
        {DYN_CONCAT_STATIC, "Concat node 'bad' reads 'kbs'"},
        {DYN_GATHER_ROWS, "Gather node 'bad' reads 'det', whose length is data-dependent (from 'sel'), and it "
                          "indexes along the data-dependent dimension with fixed indices"},
        {DYN_TWO_NMS, "Add node 'bad': inputs 'sel' and 'sel2' have data-dependent lengths from different nodes"},
    };
    for (size_t i = 0; i < sizeof refused / sizeof *refused; i++) {
        m = dyn_model(refused[i].bad);
        ex = NULL;
        assert_int_equal(te_exec_new(m, &ex, &err), TE_EUNSUPPORTED);
        assert_null(ex);
        if (!strstr(err.msg, refused[i].why))
            fail_msg("refusal %zu: '%s' lacks '%s'", i, err.msg, refused[i].why);
        te_model_free(m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_reference_vectors),
        cmocka_unit_test(test_avgpool_ceil_by_hand),
        cmocka_unit_test(test_errors),
        cmocka_unit_test(test_new_ops_by_hand),
        cmocka_unit_test(test_topk_by_hand),
        cmocka_unit_test(test_nms_by_hand),
        cmocka_unit_test(test_roi_align_by_hand),
        cmocka_unit_test(test_dyn_rows_tail),
        cmocka_unit_test(test_gather_device_indices),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
