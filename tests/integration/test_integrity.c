/* Faults injected into EdgeA's or EdgeB's results are always caught: the
 * device returns TWINEDGE_EINTEGRITY naming the layer and leaves the output
 * untouched.  A ring too narrow for a layer's input is widened by the device
 * before anything is sent.  (tests/attack/ attacks through real hosts.) */
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
#include "te_ring.h"
#include "wire.pb-c.h"

#define MODEL "lenet5"
#define TRIALS 200
#define MAX_LAYERS 64

typedef enum fault {
    F_FLIP_BIT, F_OFF_BY_ONE, F_OTHER_COUNTER, F_ZEROS, F_OTHER_LAYER, F_TRUNCATED, F_COUNT_
} fault;
static const char *fault_names[] = {"bit flip", "off by one", "another counter's result", "all zeros",
                                    "another layer's result", "truncated result"};

typedef struct injector {
    te_transport self;
    te_transport *inner;
    te_party target;        /* whose responses to corrupt */
    int active;
    fault kind;
    uint32_t layer;         /* which layer to corrupt */
    uint64_t rng;
    int injected;
    /* clean responses from an earlier inference, per layer */
    uint8_t *cache[MAX_LAYERS];
    size_t cache_len[MAX_LAYERS];
    int recording;
} injector;

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static void replace_data(uint8_t **resp, size_t *len, const uint8_t *data, size_t data_len, Twinedge__LayerResponse *r)
{
    ProtobufCBinaryData orig = r->data; /* owned by r: restored before r is freed */
    r->data.data = (uint8_t *)data;
    r->data.len = data_len;
    size_t n = twinedge__layer_response__get_packed_size(r);
    uint8_t *buf = malloc(n);
    twinedge__layer_response__pack(r, buf);
    r->data = orig;
    free(*resp);
    *resp = buf;
    *len = n;
}

static void corrupt(injector *in, uint32_t layer, unsigned l, uint8_t **resp, size_t *len)
{
    Twinedge__LayerResponse *r = twinedge__layer_response__unpack(NULL, *len, *resp);
    assert_non_null(r);
    assert_int_equal(r->status, 0);
    size_t n = r->data.len * 8 / l, bytes = r->data.len;
    uint64_t *v = calloc(n + 1, sizeof *v);
    uint8_t *buf = calloc(bytes + 1, 1);
    te_err err;
    assert_int_equal(te_unpack(r->data.data, bytes, n, l, v, &err), TE_OK);
    size_t j = (size_t)(rnd(&in->rng) % n);
    switch (in->kind) {
    case F_FLIP_BIT:
        v[j] ^= (uint64_t)1 << (rnd(&in->rng) % l);
        te_pack(v, n, l, buf);
        replace_data(resp, len, buf, bytes, r);
        break;
    case F_OFF_BY_ONE:
        v[j] = te_ring_add(v[j], (rnd(&in->rng) & 1) ? 1 : te_ring_mask(l), l);
        te_pack(v, n, l, buf);
        replace_data(resp, len, buf, bytes, r);
        break;
    case F_OTHER_COUNTER:
    case F_OTHER_LAYER: {
        uint32_t src = layer;
        if (in->kind == F_OTHER_LAYER) {
            do
                src = (uint32_t)(rnd(&in->rng) % MAX_LAYERS);
            while (!in->cache[src] || src == layer);
        }
        Twinedge__LayerResponse *old = twinedge__layer_response__unpack(NULL, in->cache_len[src], in->cache[src]);
        assert_non_null(old);
        replace_data(resp, len, old->data.data, old->data.len, r);
        twinedge__layer_response__free_unpacked(old, NULL);
        break;
    }
    case F_ZEROS:
        replace_data(resp, len, buf, bytes, r);
        break;
    case F_TRUNCATED:
        replace_data(resp, len, r->data.data, bytes - 1 - (size_t)(rnd(&in->rng) % (bytes > 8 ? bytes / 2 : 1)), r);
        break;
    default:
        fail();
    }
    free(v);
    free(buf);
    twinedge__layer_response__free_unpacked(r, NULL);
    in->injected++;
}

static te_status inj_call(te_transport *t, te_party to, const uint8_t *req, size_t req_len, uint8_t **resp,
                          size_t *resp_len, te_err *err)
{
    injector *in = t->impl;
    te_status st = te_transport_call(in->inner, to, req, req_len, resp, resp_len, err);
    if (st != TE_OK || to != in->target)
        return st;
    Twinedge__LayerRequest *q = twinedge__layer_request__unpack(NULL, req_len, req);
    assert_non_null(q);
    uint32_t layer = q->layer;
    unsigned l = q->ring_bits;
    twinedge__layer_request__free_unpacked(q, NULL);
    if (in->recording && layer < MAX_LAYERS) {
        free(in->cache[layer]);
        in->cache[layer] = malloc(*resp_len);
        memcpy(in->cache[layer], *resp, *resp_len);
        in->cache_len[layer] = *resp_len;
    }
    if (in->active && layer == in->layer)
        corrupt(in, layer, l, resp, resp_len);
    return TE_OK;
}

static void inj_destroy(te_transport *t) { (void)t; }
static te_status inj_begin(te_transport *t, te_err *err)
{
    return te_transport_begin(((injector *)t->impl)->inner, err);
}
static void inj_end(te_transport *t) { te_transport_end(((injector *)t->impl)->inner); }
static const te_transport_ops inj_ops = {.call = inj_call, .destroy = inj_destroy, .begin = inj_begin, .end = inj_end};

static int count_layers(const injector *in)
{
    int n = 0;
    while (n < MAX_LAYERS && in->cache[n])
        n++;
    return n;
}

static void run_faults(te_party target)
{
    te_fixture f;
    fx_setup(&f, MODEL, NULL, NULL);
    injector dev_inj = {.inner = f.pair->device_link, .target = target, .rng = 0x9e3779b97f4a7c15ull};
    injector peer_inj = {.inner = f.pair->peer_link, .target = target, .rng = 0x2545f4914f6cdd1dull};
    dev_inj.self.ops = &inj_ops;
    dev_inj.self.impl = &dev_inj;
    peer_inj.self.ops = &inj_ops;
    peer_inj.self.impl = &peer_inj;
    twinedge_use_transport(f.dev, &dev_inj.self);
    te_host_set_peer(f.pair->a, &peer_inj.self);

    float *out = malloc(f.n_out * sizeof *out), *clean = malloc(f.n_out * sizeof *out);
    /* clean runs fill the caches: mediated for the device link, relay for the peer link */
    for (int mode = 0; mode < 2; mode++) {
        dev_inj.recording = peer_inj.recording = 1;
        twinedge_mode md = mode ? TWINEDGE_MEDIATED : TWINEDGE_RELAY;
        assert_int_equal(twinedge_infer(f.dev, md, f.input, f.n_in, clean, f.n_out), TWINEDGE_OK);
        dev_inj.recording = peer_inj.recording = 0;
    }
    int n_layers = target == TE_PARTY_EDGE_A ? count_layers(&dev_inj) : count_layers(&peer_inj);
    assert_true(n_layers >= 2);

    for (int k = 0; k < F_COUNT_; k++) {
        int caught = 0;
        for (int trial = 0; trial < TRIALS; trial++) {
            /* EdgeA's results reach the device in both modes; EdgeB's reach it
             * directly in mediated mode and through EdgeA in relay mode. */
            twinedge_mode md = trial & 1 ? TWINEDGE_MEDIATED : TWINEDGE_RELAY;
            injector *in = (target == TE_PARTY_EDGE_B && md == TWINEDGE_RELAY) ? &peer_inj : &dev_inj;
            in->kind = (fault)k;
            in->layer = (uint32_t)(rnd(&in->rng) % (uint64_t)n_layers);
            in->injected = 0;
            in->active = 1;
            memset(out, 0x7f, f.n_out * sizeof *out);
            int rc = twinedge_infer(f.dev, md, f.input, f.n_in, out, f.n_out);
            in->active = 0;
            assert_true(in->injected > 0);
            if (rc != TWINEDGE_EINTEGRITY)
                fail_msg("fault '%s' in Edge%c at layer %u (trial %d) not caught: rc=%d %s", fault_names[k],
                         target == TE_PARTY_EDGE_A ? 'A' : 'B', in->layer, trial, rc, twinedge_errmsg(f.dev));
            assert_non_null(strstr(twinedge_errmsg(f.dev), "layer"));
            for (size_t i = 0; i < f.n_out; i++) {
                uint32_t bits;
                memcpy(&bits, &out[i], 4);
                assert_int_equal(bits, 0x7f7f7f7fu); /* nothing written */
            }
            caught++;
        }
        printf("Edge%c, %s: caught %d/%d\n", target == TE_PARTY_EDGE_A ? 'A' : 'B', fault_names[k], caught, TRIALS);
    }
    /* and the pair still works after all that */
    assert_int_equal(twinedge_infer(f.dev, TWINEDGE_RELAY, f.input, f.n_in, out, f.n_out), TWINEDGE_OK);
    assert_memory_equal(out, clean, f.n_out * sizeof *out);
    for (int i = 0; i < MAX_LAYERS; i++) {
        free(dev_inj.cache[i]);
        free(peer_inj.cache[i]);
    }
    free(out);
    free(clean);
    twinedge_use_transport(f.dev, f.pair->device_link);
    te_host_set_peer(f.pair->a, f.pair->peer_link);
    fx_teardown(&f);
}

static void test_faults_in_edge_a(void **state)
{
    (void)state;
    run_faults(TE_PARTY_EDGE_A);
}

static void test_faults_in_edge_b(void **state)
{
    (void)state;
    run_faults(TE_PARTY_EDGE_B);
}

static void test_too_narrow_ring(void **state)
{
    (void)state;
    te_fixture f;
    fx_setup(&f, MODEL, NULL, NULL);
    float *good = malloc(f.n_out * sizeof *good), *out = malloc(f.n_out * sizeof *out);
    assert_int_equal(twinedge_infer(f.dev, TWINEDGE_RELAY, f.input, f.n_in, good, f.n_out), TWINEDGE_OK);

    /* Squeeze layer 1's ring below what its values need, step by step: the
     * device must see from the input that the ring could overflow and widen
     * it before sending (no failed check, no retry), and the answer must
     * never change. */
    char path[700];
    snprintf(path, sizeof path, "%s/device.bundle", f.device);
    te_model *m = NULL;
    te_err err;
    assert_int_equal(te_device_bundle_read(path, &m, &err), TE_OK);
    assert_true(m->n_layers >= 2);
    int orig = m->layers[1].ring_bits, widened = 0;
    for (int rb = 4; rb < orig; rb += 2) {
        m->layers[1].ring_bits = rb;
        assert_int_equal(te_device_bundle_write(path, m, &err), TE_OK);
        fx_reopen_device(&f);
        if (twinedge_infer(f.dev, TWINEDGE_RELAY, f.input, f.n_in, out, f.n_out) != TWINEDGE_OK)
            fail_msg("ring %d: %s", rb, twinedge_errmsg(f.dev));
        twinedge_report rep;
        twinedge_last_report(f.dev, &rep);
        widened += rep.widened_layers > 0;
        assert_int_equal(rep.layers_checked, rep.linear_layers);
        if (rb == 4)
            assert_int_equal(rep.widened_layers, 1);
        assert_memory_equal(out, good, f.n_out * sizeof *out);
    }
    printf("layer 1 (ring %d bits): %d narrower rings widened by the device\n", orig, widened);
    te_model_free(m);
    free(good);
    free(out);
    fx_teardown(&f);
}

static void flip_byte(const char *path, long where)
{
    FILE *fp = fopen(path, "r+b");
    assert_non_null(fp);
    assert_int_equal(fseek(fp, where, SEEK_SET), 0);
    int c = fgetc(fp);
    assert_int_equal(fseek(fp, where, SEEK_SET), 0);
    fputc(c ^ 0x10, fp);
    fclose(fp);
}

/* A corrupted bundle is refused with a clear error, on the device and on a host. */
static void test_corrupted_bundles_refused(void **state)
{
    (void)state;
    te_fixture f;
    fx_setup(&f, MODEL, NULL, NULL);
    char path[700];
    snprintf(path, sizeof path, "%s/device.bundle", f.device);
    flip_byte(path, 200);
    twinedge_device *dev = NULL;
    assert_int_equal(twinedge_open(f.device, &dev), TWINEDGE_EFORMAT);
    printf("device: %s\n", twinedge_errmsg(dev));
    assert_non_null(strstr(twinedge_errmsg(dev), "checksum"));
    assert_non_null(strstr(twinedge_errmsg(dev), "device.bundle"));
    twinedge_close(dev);

    snprintf(path, sizeof path, "%s/edge.bundle", f.deploy);
    flip_byte(path, 100);
    te_host *h = NULL;
    te_host_config hc = {.role = TE_ROLE_A, .plugin = "cpu"};
    te_err err;
    assert_int_equal(te_host_new(&hc, &h, &err), TE_OK);
    assert_int_equal(te_host_deploy_file(h, path, &err), TE_EFORMAT);
    printf("host: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "checksum"));
    te_host_free(h);
    fx_teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_faults_in_edge_a),
        cmocka_unit_test(test_faults_in_edge_b),
        cmocka_unit_test(test_too_narrow_ring),
        cmocka_unit_test(test_corrupted_bundles_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
