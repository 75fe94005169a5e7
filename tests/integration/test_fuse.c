/* Branch fusion (owner/fuse.h) on one test model, argv[1]; with
 * --expect-fused the model must have layers that read one tensor, with
 * --calls EMBED SAME it must compile into that many outsourced layers in
 * the default (embed) and in the same-geometry mode.
 *
 * - the fused and the unfused compilation give bit-identical fixed-point
 *   outputs, and so do their private (relay) inferences, verified layer by
 *   layer;
 * - fusion takes calls and uploaded bytes away (--expect-fused) or changes
 *   nothing;
 * - negative control: a fused model whose split is moved by one channel
 *   gives another output, so the comparison sees a wrong split. */
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
static int expect_fused;
static int calls_embed = -1, calls_same = -1;

static float *load_input(size_t *n)
{
    char base[400], path[512];
    fx_data(base, sizeof base, model_name);
    snprintf(path, sizeof path, "%s.input.npy", base);
    te_shape s;
    float *x = NULL;
    te_err err;
    if (te_npy_read(path, &s, &x, &err) != TE_OK)
        fail_msg("%s: %s", path, err.msg);
    *n = (size_t)te_shape_numel(&s);
    return x;
}

/* The plaintext fixed-point output of m (what the device computes). */
static float *run_fixed(const te_model *m, const float *x, size_t n_in, size_t *n_out)
{
    te_exec *ex = NULL;
    te_err err;
    if (te_exec_new(m, &ex, &err) != TE_OK || te_exec_run(ex, x, n_in, te_linear_fn_fixed, NULL, &err) != TE_OK)
        fail_msg("%s: %s", model_name, err.msg);
    te_shape s;
    const float *y = te_exec_output(ex, &s);
    *n_out = (size_t)te_shape_numel(&s);
    float *out = malloc(*n_out * sizeof *out);
    assert_non_null(out);
    memcpy(out, y, *n_out * sizeof *out);
    te_exec_free(ex);
    return out;
}

/* What the device uploads: every call's input, packed at its ring width. */
static double upload_bytes(const te_model *m, int *n_fused)
{
    double b = 0;
    *n_fused = 0;
    for (int i = 0; i < m->n_layers; i++) {
        const te_layer *L = &m->layers[i];
        b += (double)(L->geom.batch * te_geom_in_len(&L->geom)) * L->ring_bits / 8.0;
        *n_fused += L->n_branches > 1;
    }
    return b;
}

static float *infer_private(const te_owner_options *opt, twinedge_report *rep, size_t *n_out)
{
    te_fixture f;
    fx_setup_opts(&f, model_name, opt);
    float *y = calloc(f.n_out, sizeof *y);
    assert_non_null(y);
    if (twinedge_infer(f.dev, TWINEDGE_RELAY, f.input, f.n_in, y, f.n_out) != TWINEDGE_OK)
        fail_msg("relay: %s", twinedge_errmsg(f.dev));
    twinedge_last_report(f.dev, rep);
    assert_int_equal(rep->layers_checked, rep->linear_layers);
    /* the tolerance test_exact holds every model to */
    double cos = fx_cosine(y, f.ref, f.n_out);
    printf("%s: cosine to the float reference %.7f\n", model_name, cos);
    assert_true(cos >= 0.9999);
    *n_out = f.n_out;
    fx_teardown(&f);
    return y;
}

static void test_fuse(void **state)
{
    (void)state;
    te_owner_options off, on;
    te_owner_options_init(&off);
    te_owner_options_init(&on);
    off.fuse = TE_FUSE_NONE;
    te_model *mu = fx_build_model_opts(model_name, &off), *mf = fx_build_model_opts(model_name, &on);
    size_t n_in, nu, nf;
    float *x = load_input(&n_in);
    float *yu = run_fixed(mu, x, n_in, &nu), *yf = run_fixed(mf, x, n_in, &nf);
    assert_int_equal(nu, nf);
    assert_memory_equal(yu, yf, nu * sizeof *yu);

    int fu, ff;
    double bu = upload_bytes(mu, &fu), bf = upload_bytes(mf, &ff);
    printf("%s: %d -> %d outsourced layers (%d fused), upload %.0f -> %.0f bytes\n", model_name, mu->n_layers,
           mf->n_layers, ff, bu, bf);
    assert_int_equal(fu, 0);
    if (calls_embed >= 0) {
        te_owner_options same = on;
        same.fuse = TE_FUSE_SAME;
        te_model *ms = fx_build_model_opts(model_name, &same);
        size_t ns;
        float *ys = run_fixed(ms, x, n_in, &ns);
        assert_int_equal(ns, nu);
        assert_memory_equal(ys, yu, nu * sizeof *yu);
        assert_int_equal(mf->n_layers, calls_embed);
        assert_int_equal(ms->n_layers, calls_same);
        free(ys);
        te_model_free(ms);
    }
    if (expect_fused) {
        assert_true(ff > 0);
        assert_true(mf->n_layers < mu->n_layers);
        assert_true(bf < bu);
    } else {
        assert_int_equal(mf->n_layers, mu->n_layers);
    }

    /* negative control: one branch's Slice moved by one channel */
    int moved = 0;
    for (int i = 0; i < mf->n_nodes && !moved; i++) {
        te_node *nd = &mf->nodes[i];
        int fused_out = 0;
        for (int j = 0; j < i && nd->op == TE_OP_SLICE; j++)
            fused_out |= mf->nodes[j].op == TE_OP_LINEAR && mf->nodes[j].out == nd->in[0] &&
                         mf->layers[mf->nodes[j].layer].n_branches > 1;
        if (!fused_out)
            continue;
        const te_shape *si = &mf->values[nd->in[0]].shape, *so = &mf->values[nd->out].shape;
        for (int d = 0; d < so->ndim && !moved; d++)
            if (so->d[d] < si->d[d]) {
                int64_t *start = &nd->ints[2 * d];
                *start += *start + so->d[d] < si->d[d] ? 1 : -1;
                moved = 1;
            }
    }
    if (expect_fused) {
        assert_true(moved);
        size_t nm;
        float *ym = run_fixed(mf, x, n_in, &nm);
        assert_int_equal(nm, nu);
        assert_true(memcmp(ym, yu, nu * sizeof *yu) != 0);
        free(ym);
    }

    /* private inference, both compilations: bit-identical, fewer calls and bytes */
    twinedge_report ru, rf;
    size_t pu, pf;
    float *zu = infer_private(&off, &ru, &pu), *zf = infer_private(&on, &rf, &pf);
    assert_int_equal(pu, nu);
    assert_int_equal(pf, nu);
    assert_memory_equal(zu, yu, nu * sizeof *yu);
    assert_memory_equal(zf, yu, nu * sizeof *yu);
    assert_int_equal(ru.linear_layers, mu->n_layers);
    assert_int_equal(rf.linear_layers, mf->n_layers);
    printf("%s: private relay: %d -> %d calls, device sent %llu -> %llu bytes, received %llu -> %llu\n", model_name,
           ru.linear_layers, rf.linear_layers, (unsigned long long)ru.bytes_up, (unsigned long long)rf.bytes_up,
           (unsigned long long)ru.bytes_down, (unsigned long long)rf.bytes_down);
    if (expect_fused)
        assert_true(rf.bytes_up < ru.bytes_up);
    free(zu);
    free(zf);
    free(x);
    free(yu);
    free(yf);
    te_model_free(mu);
    te_model_free(mf);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_fuse MODEL [--expect-fused]\n");
        return 2;
    }
    model_name = argv[1];
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--expect-fused"))
            expect_fused = 1;
        else if (!strcmp(argv[i], "--calls") && i + 2 < argc) {
            calls_embed = atoi(argv[i + 1]);
            calls_same = atoi(argv[i + 2]);
            i += 2;
        } else {
            fprintf(stderr, "test_fuse: unknown argument '%s'\n", argv[i]);
            return 2;
        }
    }
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fuse)};
    return cmocka_run_group_tests_name(model_name, tests, NULL, NULL);
}
