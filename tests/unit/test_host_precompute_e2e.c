/* EdgeB's precompute cache end to end: a provisioned device (the device
 * SDK) runs lenet5 twice in each mode against an in-process edge pair whose
 * EdgeB precomputes; the second inference of each pair is served from the
 * cache for every linear layer and gives the same result as the first. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "owner.h"
#include "runlib.h"
#include "te_bundle.h"
#include "te_host.h"
#include "te_npy.h"
#include "twinedge_device.h"

#define MODEL "lenet5"
#define WAIT_MS 60000

static void must(te_status st, const te_err *err, const char *what)
{
    if (st != TE_OK)
        fail_msg("%s: %s", what, err->msg);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void wait_computed(const te_host *h, uint64_t n)
{
    uint64_t until = now_ms() + WAIT_MS, c = 0;
    while ((te_host_precompute_figures(h, NULL, NULL, &c), c) < n) {
        if (now_ms() > until)
            fail_msg("the precompute worker computed %llu shares in %d ms, want %llu", (unsigned long long)c,
                     WAIT_MS, (unsigned long long)n);
        struct timespec ms = {0, 1000000L};
        nanosleep(&ms, NULL);
    }
}

static void test_device_two_inferences(void **state)
{
    (void)state;
    te_err err;
    te_err_clear(&err);
    const char *data = getenv("TE_TEST_DATA");
    char dir[256], deploy[300], device[300], onnx[512], calib[512], input[512], bundle[400], keyf[400];
    snprintf(dir, sizeof dir, "/tmp/te-test-precompute-XXXXXX");
    assert_non_null(mkdtemp(dir));
    snprintf(deploy, sizeof deploy, "%s/deploy", dir);
    snprintf(device, sizeof device, "%s/device", dir);
    snprintf(onnx, sizeof onnx, "%s/%s.onnx", data ? data : ".", MODEL);
    snprintf(calib, sizeof calib, "%s/%s.calib.npy", data ? data : ".", MODEL);
    snprintf(input, sizeof input, "%s/%s.input.npy", data ? data : ".", MODEL);
    snprintf(bundle, sizeof bundle, "%s/edge.bundle", deploy);
    snprintf(keyf, sizeof keyf, "%s/device.key", device);
    must(te_owner_compile(onnx, calib, NULL, deploy, &err), &err, "compile");
    must(te_owner_provision(deploy, "dev-pre", device, &err), &err, "provision");

    te_host_config ca = {.role = TE_ROLE_A, .plugin = "cpu", .plugin_config = "threads=1"};
    te_host_config cb = {.role = TE_ROLE_B, .plugin = "cpu", .plugin_config = "threads=1", .precompute_mb = 16};
    te_host *a = NULL, *b = NULL;
    must(te_host_new(&ca, &a, &err), &err, "EdgeA");
    must(te_host_new(&cb, &b, &err), &err, "EdgeB");
    must(te_host_deploy_file(a, bundle, &err), &err, "deploy A");
    must(te_host_deploy_file(b, bundle, &err), &err, "deploy B");
    te_device_key key;
    must(te_device_key_read(keyf, &key, &err), &err, "device key");
    must(te_host_register_device(b, &key, &err), &err, "register");
    te_inproc_config ic = {a, b, key.device_id, NULL, NULL, NULL};
    te_transport *link = NULL, *peer = NULL;
    must(te_inproc_transport_new(&ic, &link, &err), &err, "device link");
    must(te_inproc_peer_new(&ic, &peer, &err), &err, "peer link");
    memset(&key, 0, sizeof key); /* the links copied the device id */
    te_host_set_peer(a, peer);

    twinedge_device *dev = NULL;
    if (twinedge_open(device, &dev) != TWINEDGE_OK)
        fail_msg("open device: %s", twinedge_errmsg(dev));
    twinedge_use_transport(dev, link);
    te_shape shape;
    float *x = NULL;
    must(te_npy_read(input, &shape, &x, &err), &err, input);
    size_t n_in = (size_t)te_shape_numel(&shape), n_out = 1;
    int64_t dims[8];
    int nd = 0;
    twinedge_output_shape(dev, dims, &nd);
    for (int i = 0; i < nd; i++)
        n_out *= (size_t)dims[i];
    float *y1 = calloc(n_out, sizeof *y1), *y2 = calloc(n_out, sizeof *y2);
    assert_true(y1 && y2);

    /* four inferences: mediated, mediated, relay, relay.  The first is
     * computed on demand; each schedules the next, which the cache serves
     * (a share computed after a mediated request serves a relayed one) */
    const twinedge_mode modes[] = {TWINEDGE_MEDIATED, TWINEDGE_MEDIATED, TWINEDGE_RELAY, TWINEDGE_RELAY};
    uint64_t computed_so_far = 0, first_counter = 0;
    for (int k = 0; k < 4; k++) {
        twinedge_report r;
        float *y = k ? y2 : y1;
        if (twinedge_infer(dev, modes[k], x, n_in, y, n_out) != TWINEDGE_OK)
            fail_msg("inference %d: %s", k, twinedge_errmsg(dev));
        twinedge_last_report(dev, &r);
        if (k == 0)
            first_counter = r.counter;
        assert_int_equal(r.counter, first_counter + (uint64_t)k);
        assert_int_equal(r.widened_layers, 0);
        assert_int_equal(r.layers_checked, r.linear_layers);
        if (k)
            assert_memory_equal(y1, y2, n_out * sizeof *y1);
        uint64_t hits = 0, misses = 0, computed = 0;
        te_host_precompute_figures(b, &hits, &misses, &computed);
        print_message("inference %d (%s): %d layers; precompute %llu hits, %llu misses, %llu computed\n", k,
                      modes[k] == TWINEDGE_RELAY ? "relay" : "mediated", r.linear_layers,
                      (unsigned long long)hits, (unsigned long long)misses, (unsigned long long)computed);
        assert_int_equal(hits, (uint64_t)k * (uint64_t)r.linear_layers);
        assert_int_equal(misses, (uint64_t)r.linear_layers);
        computed_so_far += (uint64_t)r.linear_layers;
        wait_computed(b, computed_so_far);
    }

    free(x);
    free(y1);
    free(y2);
    twinedge_close(dev);
    te_host_set_peer(a, NULL);
    te_transport_free(link);
    te_transport_free(peer);
    te_host_free(a);
    te_host_free(b);
    must(te_rm_rf(dir, &err), &err, "remove the test directory");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_device_two_inferences),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
