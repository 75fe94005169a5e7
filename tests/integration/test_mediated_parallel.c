/* Device-mediated mode asks EdgeA and EdgeB at once: one round trip per
 * layer.  Two real twinedge-host processes on loopback, each behind a
 * user-space link emulator (tools/bench/linkemu.h) that delays every byte by
 * D/2 each way, so any exchange with a host takes at least D.  A mediated
 * inference of N linear layers must then take under 1.5 N D with the SDK's
 * gRPC transport (both requests of a layer in flight together), while the
 * same transport without its pair call (the one-after-the-other fallback an
 * app's transport gets) takes at least 2 N D: the negative control, which
 * shows the delay is large enough to tell the two apart.  Every output is
 * the owner's fixed-point reference, bit for bit. */
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "deploy.h"
#include "harness.h"
#include "linkemu.h"
#include "owner.h"
#include "pki.h"
#include "runlib.h"
#include "te_net.h"
#include "te_net_transport.h"
#include "te_npy.h"
#include "te_transport.h"
#include "twinedge_device.h"

#ifndef TE_HOST_BIN
#error "TE_HOST_BIN must name the twinedge-host executable"
#endif

/* enough linear layers (21) that the per-inference constant (stream set-up
 * and close) stays small beside N D, and small enough layers to be quick */
#define MODEL "resnet18"
/* D = 120 ms per exchange: the hosts' and the device's work (under 0.1 s
 * per inference on a quiet machine, over 0.5 s on a loaded one) must stay
 * well inside the 0.5 N D of slack */
#define ONE_WAY_MS 60.0
#define LINK_MBIT 10000.0               /* the rate plays no part */
#define TIMEOUT_MS 60000

typedef struct world {
    char dir[256], deploy[300], device[300];
    fx_host a, b;
    te_linkemu *emu[2];
    char emu_addr[2][64];
    float *input, *ref;
    size_t n_in, n_out;
} world;

/* The transport under test without its call_pair: what an app's transport
 * with call() alone gets (te_transport_call_each). */
static te_status seq_call(te_transport *t, te_party to, const uint8_t *req, size_t req_len, uint8_t **resp,
                          size_t *resp_len, te_err *err)
{
    return te_transport_call(t->impl, to, req, req_len, resp, resp_len, err);
}
static te_status seq_begin(te_transport *t, te_err *err) { return te_transport_begin(t->impl, err); }
static void seq_end(te_transport *t) { te_transport_end(t->impl); }
static void seq_destroy(te_transport *t) { (void)t; }
static const te_transport_ops seq_ops = {.call = seq_call, .destroy = seq_destroy, .begin = seq_begin, .end = seq_end};

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    te_err err;
    snprintf(w->dir, sizeof w->dir, "/tmp/te-mediated-XXXXXX");
    fx_net_deploy(w->dir, w->deploy, sizeof w->deploy, MODEL);
    snprintf(w->device, sizeof w->device, "%s/device", w->dir);
    fx_net_device(w->deploy, "d1", w->device);
    w->input = fx_read_input(MODEL, &w->n_in);

    w->n_out = fx_device_n_out(w->device);
    w->ref = calloc(w->n_out, sizeof *w->ref);
    assert_non_null(w->ref);
    fx_must(te_reference_fixed(w->deploy, w->input, w->n_in, w->ref, w->n_out, &err), &err, "reference");

    fx_host_start(&w->b, TE_HOST_BIN, w->dir, w->deploy, 'b', NULL, 0, NULL, NULL);
    fx_host_start(&w->a, TE_HOST_BIN, w->dir, w->deploy, 'a', NULL, 0, w->b.addr, NULL);
    fx_must(te_owner_deploy(w->deploy, w->a.addr, w->b.addr, &err), &err, "deploy");
    const char *up[2] = {w->a.addr, w->b.addr};
    for (int i = 0; i < 2; i++)
        fx_must(te_linkemu_start(up[i], LINK_MBIT, ONE_WAY_MS, w->emu_addr[i], sizeof w->emu_addr[i], &w->emu[i], &err),
                &err, "link emulator");
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    te_linkemu_stop(w->emu[0]);
    te_linkemu_stop(w->emu[1]);
    int sa = fx_host_stop(&w->a, SIGTERM), sb = fx_host_stop(&w->b, SIGTERM);
    assert_true(WIFEXITED(sa) && WEXITSTATUS(sa) == 0);
    assert_true(WIFEXITED(sb) && WEXITSTATUS(sb) == 0);
    te_err err;
    te_rm_rf(w->dir, &err);
    free(w->input);
    free(w->ref);
    free(w);
    return 0;
}

/* The fastest of `reps` mediated inferences through t (after one that sets
 * up the connections), each checked bit for bit; *layers: N. */
static double best_mediated_s(world *w, te_transport *t, int reps, int *layers)
{
    twinedge_device *dev = NULL;
    if (twinedge_open(w->device, &dev) != TWINEDGE_OK)
        fail_msg("open: %s", twinedge_errmsg(dev));
    twinedge_use_transport(dev, t);
    float *y = calloc(w->n_out, sizeof *y);
    assert_non_null(y);
    double best = 1e9;
    for (int r = -1; r < reps; r++) {
        memset(y, 0, w->n_out * sizeof *y);
        double t0 = fx_now_s();
        if (twinedge_infer(dev, TWINEDGE_MEDIATED, w->input, w->n_in, y, w->n_out) != TWINEDGE_OK)
            fail_msg("mediated inference: %s", twinedge_errmsg(dev));
        double dt = fx_now_s() - t0;
        assert_memory_equal(y, w->ref, w->n_out * sizeof *y);
        if (r >= 0 && dt < best)
            best = dt;
    }
    twinedge_report rep;
    twinedge_last_report(dev, &rep);
    assert_int_equal(rep.layers_checked, rep.linear_layers);
    *layers = rep.linear_layers;
    free(y);
    twinedge_close(dev);
    return best;
}

static void test_one_round_trip_per_layer(void **state)
{
    world *w = *state;
    te_err err;
    char tls[400];
    snprintf(tls, sizeof tls, "%s/tls", w->device);
    te_net_creds creds;
    memset(&creds, 0, sizeof creds);
    fx_must(te_net_creds_load(tls, &creds, &err), &err, "credentials");
    te_traffic traffic;
    memset(&traffic, 0, sizeof traffic);
    te_net_transport_config tc = {w->emu_addr[0], w->emu_addr[1], &creds, TIMEOUT_MS, 0, &traffic};
    te_transport *net = NULL;
    fx_must(te_net_transport_new(&tc, &net, &err), &err, "transport");
    te_net_creds_free(&creds);
    assert_non_null(net->ops->call_pair);

    const double d = 2 * ONE_WAY_MS / 1e3;
    int n_par = 0, n_seq = 0;
    double par = best_mediated_s(w, net, 3, &n_par);
    te_transport seq = {&seq_ops, net};
    double sq = best_mediated_s(w, &seq, 1, &n_seq);
    assert_int_equal(n_par, n_seq);
    assert_true(n_par > 1);
    print_message("mediated, %d layers, D = %.0f ms: both hosts at once %.3f s (%.2f N D), one after the other "
                  "%.3f s (%.2f N D)\n", n_par, d * 1e3, par, par / (n_par * d), sq, sq / (n_par * d));
    /* the negative control: the delay is there and the fallback pays it twice */
    assert_true(sq >= 2 * n_par * d);
    assert_true(par < 1.5 * n_par * d);
    te_transport_free(net);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_one_round_trip_per_layer),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
