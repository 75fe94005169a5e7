/* Redeploying while serving: the owner's Deploy call, or a reload (SIGHUP)
 * of a changed store, replaces a deployment's layers while requests are
 * computing with them.  Two threads infer over and over while a third
 * redeploys the same edge bundle to both hosts; every inference must
 * succeed and equal the fixed-point reference bit for bit.  Hosts that freed
 * the old layers at once computed with freed weights: integrity failures
 * here, heap-use-after-free under ASan (which CI runs). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"

#define MODEL "lenet5"
#define INFERENCES 40 /* per thread */

typedef struct worker {
    te_fixture *f;
    twinedge_device *dev;
    const float *want;
    int ok, wrong;
    char first_error[256];
} worker;

typedef struct redeployer {
    te_fixture *f;
    atomic_int stop;
    int deploys;
    char error[TE_ERR_MSG_MAX];
} redeployer;

static void *infer_loop(void *arg)
{
    worker *w = arg;
    float *out = calloc(w->f->n_out, sizeof *out);
    for (int i = 0; out && i < INFERENCES; i++) {
        if (twinedge_infer(w->dev, TWINEDGE_RELAY, w->f->input, w->f->n_in, out, w->f->n_out) != TWINEDGE_OK) {
            if (!w->first_error[0])
                snprintf(w->first_error, sizeof w->first_error, "%s", twinedge_errmsg(w->dev));
            continue;
        }
        if (memcmp(out, w->want, w->f->n_out * sizeof *out) == 0)
            w->ok++;
        else
            w->wrong++;
    }
    free(out);
    return NULL;
}

static void *redeploy_loop(void *arg)
{
    redeployer *r = arg;
    char bundle[700];
    snprintf(bundle, sizeof bundle, "%s/edge.bundle", r->f->deploy);
    te_err err;
    while (!atomic_load(&r->stop)) {
        if (te_host_deploy_file(r->f->pair->a, bundle, &err) != TE_OK ||
            te_host_deploy_file(r->f->pair->b, bundle, &err) != TE_OK) {
            snprintf(r->error, sizeof r->error, "%s", err.msg);
            return NULL;
        }
        r->deploys++;
    }
    return NULL;
}

static void test_redeploy_while_serving(void **state)
{
    (void)state;
    te_fixture f;
    fx_setup(&f, MODEL, NULL, NULL);
    float *want = calloc(f.n_out, sizeof *want);
    assert_non_null(want);
    fx_reference_fixed(&f, f.input, want);

    worker w[2]; /* one device handle: its inferences are serialised, the redeploys are not */
    memset(w, 0, sizeof w);
    redeployer r;
    memset(&r, 0, sizeof r);
    r.f = &f;
    atomic_init(&r.stop, 0);
    pthread_t tw[2], tr;
    assert_int_equal(pthread_create(&tr, NULL, redeploy_loop, &r), 0);
    for (int i = 0; i < 2; i++) {
        w[i].f = &f;
        w[i].dev = f.dev;
        w[i].want = want;
        assert_int_equal(pthread_create(&tw[i], NULL, infer_loop, &w[i]), 0);
    }
    for (int i = 0; i < 2; i++)
        pthread_join(tw[i], NULL);
    atomic_store(&r.stop, 1);
    pthread_join(tr, NULL);
    print_message("%d and %d of %d inferences exact while the deployment was replaced %d times\n", w[0].ok, w[1].ok,
                  INFERENCES, r.deploys);
    if (r.error[0])
        fail_msg("redeploy: %s", r.error);
    assert_true(r.deploys >= 2); /* the race was run */
    for (int i = 0; i < 2; i++) {
        if (w[i].ok != INFERENCES)
            fail_msg("thread %d: %d exact, %d wrong, %d failed; first error: %s", i, w[i].ok, w[i].wrong,
                     INFERENCES - w[i].ok - w[i].wrong, w[i].first_error);
    }
    free(want);
    fx_teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_redeploy_while_serving),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
