/* The OpenCL plugin (on PoCL here) in real deployments:
 * - bit-identical to the CPU plugin on every linear layer of every test
 *   model, for ring widths 16, 32, 48 and 64;
 * - a mixed pair (EdgeA on OpenCL, EdgeB on CPU) gives the same private
 *   results as CPU on both, in both modes;
 * - plugin selection by configuration, with a fallback only when configured. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "te_bundle.h"
#include "te_plugin.h"
#include "te_prf.h"
#include "te_ring.h"

static const char *const arch[] = {"lenet5", "alexnet", "vgg16", "resnet18", "resnet50",
                                   "mobilenetv2", "squeezenet11", "facenet"};

static void test_every_layer_matches_cpu(void **state)
{
    (void)state;
    te_err err;
    te_plugin *cpu = NULL, *ocl = NULL;
    if (te_plugin_open("cpu", NULL, &cpu, &err) != TE_OK || te_plugin_open("opencl", NULL, &ocl, &err) != TE_OK)
        fail_msg("%s", err.msg);
    const te_plugin_ops *co = te_plugin_get_ops(cpu), *oo = te_plugin_get_ops(ocl);
    const unsigned widths[] = {16, 32, 48, 64};
    uint8_t key[TE_KEY_BYTES] = {42};
    int layers = 0;
    for (size_t a = 0; a < sizeof arch / sizeof *arch; a++) {
        te_fixture f;
        fx_setup(&f, arch[a], NULL, NULL);
        char path[700];
        snprintf(path, sizeof path, "%s/edge.bundle", f.deploy);
        te_model *m = NULL;
        if (te_edge_bundle_read(path, &m, &err) != TE_OK)
            fail_msg("%s", err.msg);
        for (int i = 0; i < m->n_layers; i++) {
            const te_layer *L = &m->layers[i];
            te_plugin_layer *cl = NULL, *ol = NULL;
            if (co->load_layer(te_plugin_get_ctx(cpu), &L->geom, L->w, &cl, &err) != TE_OK ||
                oo->load_layer(te_plugin_get_ctx(ocl), &L->geom, L->w, &ol, &err) != TE_OK)
                fail_msg("%s layer %d: %s", arch[a], i, err.msg);
            size_t n_in = (size_t)te_geom_in_len(&L->geom), n_out = (size_t)te_geom_out_len(&L->geom);
            uint64_t *in = malloc(n_in * sizeof *in), *yc = malloc(n_out * sizeof *yc), *yo = malloc(n_out * sizeof *yo);
            for (size_t w = 0; w < sizeof widths / sizeof *widths; w++) {
                unsigned l = widths[w];
                assert_int_equal(te_prf_ring(key, (uint64_t)a, (uint32_t)(i * 8 + (int)w), TE_PRF_MASK, l, in, n_in, &err), TE_OK);
                if (co->run(te_plugin_get_ctx(cpu), cl, l, 1, in, yc, &err) != TE_OK ||
                    oo->run(te_plugin_get_ctx(ocl), ol, l, 1, in, yo, &err) != TE_OK)
                    fail_msg("%s layer %d l=%u: %s", arch[a], i, l, err.msg);
                if (memcmp(yc, yo, n_out * sizeof *yc) != 0)
                    fail_msg("%s layer %d (%s) l=%u: OpenCL differs from CPU", arch[a], i, L->name, l);
            }
            free(in);
            free(yc);
            free(yo);
            co->release_layer(te_plugin_get_ctx(cpu), cl);
            oo->release_layer(te_plugin_get_ctx(ocl), ol);
            layers++;
        }
        te_model_free(m);
        fx_teardown(&f);
    }
    printf("%d layers of %zu models bit-identical on OpenCL and CPU at l = 16, 32, 48, 64\n", layers,
           sizeof arch / sizeof *arch);
    te_plugin_close(cpu);
    te_plugin_close(ocl);
}

static void run_model(const char *name, const char *pa, const char *pb, float **relay, float **mediated, size_t *n)
{
    te_fixture f;
    fx_setup_plugins(&f, name, pa, pb);
    assert_string_equal(te_host_plugin_name(f.pair->a), pa ? pa : "cpu");
    *n = f.n_out;
    *relay = calloc(f.n_out, sizeof **relay);
    *mediated = calloc(f.n_out, sizeof **mediated);
    if (twinedge_infer(f.dev, TWINEDGE_RELAY, f.input, f.n_in, *relay, f.n_out) != TWINEDGE_OK ||
        twinedge_infer(f.dev, TWINEDGE_MEDIATED, f.input, f.n_in, *mediated, f.n_out) != TWINEDGE_OK)
        fail_msg("%s on %s/%s: %s", name, pa ? pa : "cpu", pb ? pb : "cpu", twinedge_errmsg(f.dev));
    fx_teardown(&f);
}

static void test_mixed_pair_matches_cpu(void **state)
{
    (void)state;
    const char *models[] = {"lenet5", "alexnet", "resnet18", "mobilenetv2"};
    for (size_t i = 0; i < sizeof models / sizeof *models; i++) {
        float *r1, *m1, *r2, *m2;
        size_t n1, n2;
        run_model(models[i], NULL, NULL, &r1, &m1, &n1);
        run_model(models[i], "opencl", "cpu", &r2, &m2, &n2);
        assert_int_equal(n1, n2);
        /* different deployments (keys) but the same quantisation: same answers */
        assert_memory_equal(r1, r2, n1 * sizeof *r1);
        assert_memory_equal(m1, m2, n1 * sizeof *m1);
        assert_memory_equal(r1, m1, n1 * sizeof *m1);
        free(r1);
        free(m1);
        free(r2);
        free(m2);
    }
}

typedef struct logbuf {
    char text[4096]; /* "level source: msg" lines */
} logbuf;

static void logger(void *ctx, te_log_level level, const char *source, const char *msg)
{
    logbuf *b = ctx;
    size_t n = strlen(b->text);
    snprintf(b->text + n, sizeof b->text - n, "%d %s: %s\n", (int)level, source, msg);
}

static void test_selection_and_fallback(void **state)
{
    (void)state;
    te_err err;
    te_host *h = NULL;
    logbuf lb = {""};
    /* no such OpenCL platform, no fallback configured: refused with a clear message */
    te_host_config strict = {.role = TE_ROLE_A, .plugin = "opencl", .plugin_config = "platform=99"};
    assert_int_equal(te_host_new(&strict, &h, &err), TE_EPLUGIN);
    printf("without fallback: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "platform"));
    /* the same with a configured fallback: runs on the CPU and says so */
    te_host_config lenient = strict;
    lenient.fallback_plugin = "cpu";
    lenient.log = logger;
    lenient.log_ctx = &lb;
    assert_int_equal(te_host_new(&lenient, &h, &err), TE_OK);
    assert_string_equal(te_host_plugin_name(h), "cpu");
    printf("with fallback:\n%s", lb.text);
    assert_non_null(strstr(lb.text, "1 host: compute plugin 'opencl' unavailable"));
    assert_non_null(strstr(lb.text, "falling back to 'cpu'"));
    /* the plugin's own lines come through the host's logger, named */
    assert_non_null(strstr(lb.text, "2 plugin cpu: ready"));
    te_host_free(h);
    /* selection by configuration */
    te_host_config ocl = {.role = TE_ROLE_B, .plugin = "opencl"};
    assert_int_equal(te_host_new(&ocl, &h, &err), TE_OK);
    assert_string_equal(te_host_plugin_name(h), "opencl");
    te_host_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_selection_and_fallback),
        cmocka_unit_test(test_mixed_pair_matches_cpu),
        cmocka_unit_test(test_every_layer_matches_cpu),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
