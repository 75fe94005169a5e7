/* Exactness and accuracy of private inference on one test model (argv[1]):
 * relay and mediated outputs are bit-identical to the plaintext fixed-point
 * reference of the same deployment, and close to PyTorch's float output. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"

static const char *model_name;

static void test_exact(void **state)
{
    (void)state;
    te_fixture f;
    fx_setup(&f, model_name, NULL, NULL);
    float *relay = calloc(f.n_out, sizeof *relay), *mediated = calloc(f.n_out, sizeof *mediated);
    float *fixed = calloc(f.n_out, sizeof *fixed);
    assert_non_null(relay);
    assert_non_null(mediated);
    assert_non_null(fixed);

    if (twinedge_infer(f.dev, TWINEDGE_RELAY, f.input, f.n_in, relay, f.n_out) != TWINEDGE_OK)
        fail_msg("relay: %s", twinedge_errmsg(f.dev));
    twinedge_report rep;
    twinedge_last_report(f.dev, &rep);
    assert_true(rep.linear_layers > 0);
    assert_int_equal(rep.layers_checked, rep.linear_layers);
    if (twinedge_infer(f.dev, TWINEDGE_MEDIATED, f.input, f.n_in, mediated, f.n_out) != TWINEDGE_OK)
        fail_msg("mediated: %s", twinedge_errmsg(f.dev));
    fx_reference_fixed(&f, f.input, fixed);

    assert_memory_equal(relay, fixed, f.n_out * sizeof *relay);
    assert_memory_equal(mediated, fixed, f.n_out * sizeof *relay);
    double cos = fx_cosine(relay, f.ref, f.n_out);
    printf("%s: %d linear layers, cosine to PyTorch float32 = %.7f\n", model_name, rep.linear_layers, cos);
    if (!(cos >= 0.9999))
        fail_msg("%s: cosine similarity %.7f < 0.9999", model_name, cos);
    free(relay);
    free(mediated);
    free(fixed);
    fx_teardown(&f);
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: test_exact MODEL\n");
        return 2;
    }
    model_name = argv[1];
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_exact)};
    return cmocka_run_group_tests_name(model_name, tests, NULL, NULL);
}
