/* EdgeB's precompute cache (te_host_config.precompute_mb): after a device's
 * request t has gone through the last linear layer, EdgeB computes W.M for
 * request t + 1 in the background; the next request is answered from the
 * cache, exactly as on demand, only to whom the checks let through, and
 * each share at most once. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "te_host.h"
#include "te_linear.h"
#include "te_prf.h"
#include "te_ring.h"
#include "te_wire.h"
#include "wire.pb-c.h"

#define SMALL_ID "00112233445566778899aabbccddeeff"
#define LARGE_ID "ffeeddccbbaa99887766554433221100"
#define N_SMALL 3
#define N_LARGE 3
#define DEV1 "dev-1"
#define DEV2 "dev-2"
#define DEV_BIG "dev-big"
#define WAIT_MS 60000

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rng_next(rng *r)
{
    r->s ^= r->s << 13;
    r->s ^= r->s >> 7;
    r->s ^= r->s << 17;
    return r->s;
}

static te_linear_geom conv(int64_t in_c, int64_t in_hw, int64_t out_c, int64_t stride)
{
    te_linear_geom g;
    memset(&g, 0, sizeof g);
    g.kind = TE_LIN_CONV;
    g.batch = 1;
    g.in_c = in_c;
    g.in_h = g.in_w = in_hw;
    g.out_c = out_c;
    g.out_h = g.out_w = (in_hw + 2 - 3) / stride + 1;
    g.k_h = g.k_w = 3;
    g.stride_h = g.stride_w = stride;
    g.pad_t = g.pad_l = g.pad_b = g.pad_r = 1;
    g.dil_h = g.dil_w = 1;
    g.group = 1;
    return g;
}

static te_linear_geom fc(int64_t in, int64_t out)
{
    te_linear_geom g;
    memset(&g, 0, sizeof g);
    g.kind = TE_LIN_FC;
    g.batch = 1;
    g.in_c = in;
    g.in_h = g.in_w = 1;
    g.out_c = out;
    g.out_h = g.out_w = 1;
    g.k_h = g.k_w = 1;
    g.stride_h = g.stride_w = 1;
    g.dil_h = g.dil_w = 1;
    g.group = 1;
    return g;
}

typedef struct fixture {
    te_model *small;    /* 3 layers, a few hundred outputs */
    te_model *large;    /* 3 layers, over 1 MiB of outputs */
    te_device_key k1, k2, kbig;
} fixture;

static void add_layer(te_model *m, rng *r, const char *name, te_linear_geom g)
{
    te_layer L;
    memset(&L, 0, sizeof L);
    L.name = (char *)name;
    L.geom = g;
    size_t n = (size_t)te_geom_weight_len(&g);
    L.w = malloc(n * sizeof *L.w);
    assert_non_null(L.w);
    for (size_t i = 0; i < n; i++)
        L.w[i] = (int32_t)(rng_next(r) % 4001) - 2000;
    assert_true(te_model_add_layer(m, &L) >= 0);
}

static void make_key(te_device_key *k, const char *device, const char *deployment, rng *r)
{
    memset(k, 0, sizeof *k);
    snprintf(k->device_id, sizeof k->device_id, "%s", device);
    snprintf(k->deployment_id, sizeof k->deployment_id, "%s", deployment);
    for (size_t i = 0; i < TE_KEY_BYTES; i++)
        k->key[i] = (uint8_t)rng_next(r);
}

static int setup(void **state)
{
    rng r = {0x9e3779b97f4a7c15ULL};
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->small = te_model_new();
    f->large = te_model_new();
    assert_true(f->small && f->large);
    memcpy(f->small->deployment_id, SMALL_ID, sizeof f->small->deployment_id);
    memcpy(f->large->deployment_id, LARGE_ID, sizeof f->large->deployment_id);
    add_layer(f->small, &r, "conv1", conv(2, 8, 4, 1));   /* 256 outputs */
    add_layer(f->small, &r, "conv2", conv(4, 8, 4, 2));   /* 64 */
    add_layer(f->small, &r, "fc", fc(64, 10));
    add_layer(f->large, &r, "conv1", conv(3, 64, 16, 1)); /* 65536 outputs: 512 KiB */
    add_layer(f->large, &r, "conv2", conv(16, 64, 16, 1));
    add_layer(f->large, &r, "fc", fc(16 * 64 * 64, 10));
    make_key(&f->k1, DEV1, SMALL_ID, &r);
    make_key(&f->k2, DEV2, SMALL_ID, &r);
    make_key(&f->kbig, DEV_BIG, LARGE_ID, &r);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    te_model_free(f->small);
    te_model_free(f->large);
    memset(f, 0, sizeof *f);
    free(f);
    return 0;
}

/* What a host logged (the worker logs from its own thread). */
typedef struct logbuf {
    pthread_mutex_t mu;
    char text[2048];
} logbuf;

static void log_to(void *ctx, te_log_level level, const char *source, const char *msg)
{
    (void)level;
    (void)source;
    logbuf *b = ctx;
    pthread_mutex_lock(&b->mu);
    size_t n = strlen(b->text);
    snprintf(b->text + n, sizeof b->text - n, "%s\n", msg);
    pthread_mutex_unlock(&b->mu);
}

static te_host *host_b_log(const fixture *f, uint32_t precompute_mb, uint32_t window_us, logbuf *log)
{
    te_host_config cfg;
    memset(&cfg, 0, sizeof cfg);
    if (log) {
        cfg.log = log_to;
        cfg.log_ctx = log;
    }
    cfg.role = TE_ROLE_B;
    cfg.plugin = "cpu";
    cfg.plugin_config = "threads=1";
    cfg.batch_window_us = window_us;
    cfg.precompute_mb = precompute_mb;
    te_host *h = NULL;
    te_err err;
    te_err_clear(&err);
    if (te_host_new(&cfg, &h, &err) != TE_OK)
        fail_msg("te_host_new: %s", err.msg);
    if (te_host_deploy(h, f->small, &err) != TE_OK || te_host_deploy(h, f->large, &err) != TE_OK)
        fail_msg("te_host_deploy: %s", err.msg);
    if (te_host_register_device(h, &f->k1, &err) != TE_OK || te_host_register_device(h, &f->k2, &err) != TE_OK ||
        te_host_register_device(h, &f->kbig, &err) != TE_OK)
        fail_msg("te_host_register_device: %s", err.msg);
    return h;
}

static te_host *host_b(const fixture *f, uint32_t precompute_mb, uint32_t window_us)
{
    return host_b_log(f, precompute_mb, window_us, NULL);
}

/* One role-B request; *got gets the result (out_len * batch elements). */
typedef struct breq {
    te_caller_kind kind;
    const char *caller;     /* the authenticated name */
    const char *device;     /* the device the request names */
    const char *deployment;
    uint64_t counter;
    uint32_t layer;
    unsigned l;
    uint64_t batch;
    int relay;
} breq;

/* the session every request here belongs to */
static const uint8_t SESSION[TE_SESSION_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16};

static te_status ask_b(te_host *h, const breq *b, size_t out_n, uint64_t *got, te_err *err)
{
    Twinedge__LayerRequest q = TWINEDGE__LAYER_REQUEST__INIT;
    q.session.data = (uint8_t *)SESSION;
    q.session.len = sizeof SESSION;
    q.deployment_id = (char *)b->deployment;
    q.device_id = (char *)b->device;
    q.counter = b->counter;
    q.layer = b->layer;
    q.ring_bits = b->l;
    q.batch = b->batch;
    q.mode = b->relay ? TWINEDGE__MODE__MODE_RELAY : TWINEDGE__MODE__MODE_MEDIATED;
    size_t n = twinedge__layer_request__get_packed_size(&q);
    uint8_t *req = malloc(n ? n : 1);
    assert_non_null(req);
    twinedge__layer_request__pack(&q, req);
    te_caller caller = {b->kind, b->caller};
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    te_status st = te_host_handle(h, &caller, req, n, &resp, &resp_len, err);
    if (st == TE_OK)
        st = te_wire_read_response(resp, resp_len, "EdgeB", b->layer, out_n, b->l, got, err);
    free(req);
    free(resp);
    return st;
}

/* What EdgeB must answer, computed here from the key: W.M (+ Z in relay). */
static void want_b(const te_model *m, const te_device_key *k, const breq *b, uint64_t *want)
{
    te_linear_geom g = m->layers[b->layer].geom;
    g.batch = (int64_t)b->batch;
    size_t in_n = (size_t)(te_geom_in_len(&g) * (int64_t)b->batch);
    size_t out_n = (size_t)(te_geom_out_len(&g) * (int64_t)b->batch);
    uint64_t *mask = malloc(in_n * sizeof *mask);
    assert_non_null(mask);
    te_err err;
    te_err_clear(&err);
    uint8_t ks[TE_KEY_BYTES];
    assert_int_equal(te_prf_session_key(k->key, SESSION, ks, &err), TE_OK);
    assert_int_equal(te_prf_ring(ks, b->counter, b->layer, TE_PRF_MASK, b->l, mask, in_n, &err), TE_OK);
    te_linear_ref_ring(&g, m->layers[b->layer].w, b->l, mask, want);
    if (b->relay) {
        uint64_t *z = malloc(out_n * sizeof *z);
        assert_non_null(z);
        assert_int_equal(te_prf_ring(ks, b->counter, b->layer, TE_PRF_OUT, b->l, z, out_n, &err), TE_OK);
        te_ring_vadd(want, want, z, out_n, b->l);
        free(z);
    }
    free(mask);
}

/* Ask and check the answer against want_b. */
static void ask_check(te_host *h, const te_model *m, const te_device_key *k, const breq *b)
{
    size_t out_n = (size_t)(te_geom_out_len(&m->layers[b->layer].geom) * (int64_t)b->batch);
    uint64_t *got = calloc(out_n, sizeof *got), *want = malloc(out_n * sizeof *want);
    assert_true(got && want);
    te_err err;
    te_err_clear(&err);
    te_status st = ask_b(h, b, out_n, got, &err);
    if (st != TE_OK)
        fail_msg("counter %llu layer %u (l = %u): %s", (unsigned long long)b->counter, b->layer, b->l, err.msg);
    want_b(m, k, b, want);
    for (size_t i = 0; i < out_n; i++)
        if (got[i] != want[i])
            fail_msg("counter %llu layer %u (l = %u): element %zu is %llu, want %llu", (unsigned long long)b->counter,
                     b->layer, b->l, i, (unsigned long long)got[i], (unsigned long long)want[i]);
    free(got);
    free(want);
}

/* The EdgeB half of one inference of device k: every layer in order, at
 * widths ls, mediated by the device itself or relayed by EdgeA. */
static void run_request(te_host *h, const te_model *m, const te_device_key *k, uint64_t counter, const unsigned *ls,
                        int relay)
{
    for (int i = 0; i < m->n_layers; i++) {
        breq b = {relay ? TE_CALLER_EDGE_A : TE_CALLER_DEVICE, relay ? "edge-a" : k->device_id, k->device_id,
                  k->deployment_id, counter, (uint32_t)i, ls[i], 1, relay};
        ask_check(h, m, k, &b);
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* Until the worker has computed `n` shares in all (fails after WAIT_MS). */
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

static void figures(const te_host *h, uint64_t *hits, uint64_t *misses, uint64_t *computed)
{
    te_host_precompute_figures(h, hits, misses, computed);
    print_message("precompute: %llu hits, %llu misses, %llu computed\n", (unsigned long long)*hits,
                  (unsigned long long)*misses, (unsigned long long)*computed);
}

static const unsigned widths[N_SMALL] = {40, 36, 48};

/* (1) Request t on demand; t + 1 entirely from the cache, equal to the
 * on-demand answer; a share is handed out once (asking again misses). */
static void test_mediated_hits(void **state)
{
    const fixture *f = *state;
    te_host *h = host_b(f, 64, 0);
    uint64_t hits, misses, computed;
    run_request(h, f->small, &f->k1, 1000, widths, 0);
    figures(h, &hits, &misses, &computed);
    assert_int_equal(hits, 0);
    assert_int_equal(misses, N_SMALL);
    wait_computed(h, N_SMALL);
    run_request(h, f->small, &f->k1, 1001, widths, 0);
    figures(h, &hits, &misses, &computed);
    assert_int_equal(hits, N_SMALL);
    assert_int_equal(misses, N_SMALL);
    /* the same request again: refused by the replay guard before the cache
     * is asked (a repeated mask must never be served twice) */
    breq again = {TE_CALLER_DEVICE, DEV1, DEV1, SMALL_ID, 1001, 0, widths[0], 1, 0};
    uint64_t got[64];
    te_err err;
    te_err_clear(&err);
    assert_int_not_equal(ask_b(h, &again, 10, got, &err), TE_OK);
    assert_non_null(strstr(err.msg, "already served"));
    figures(h, &hits, &misses, &computed);
    assert_int_equal(hits, N_SMALL);
    assert_int_equal(misses, N_SMALL);
    /* and t + 2 was scheduled by t + 1's last layer */
    wait_computed(h, 2 * N_SMALL);
    run_request(h, f->small, &f->k1, 1002, widths, 0);
    figures(h, &hits, &misses, &computed);
    assert_int_equal(hits, 2 * N_SMALL);
    te_host_free(h);
}

/* (2) Relay mode (EdgeA asks for W.M + Z): the cached W.M gets its Z. */
static void test_relay_hits(void **state)
{
    const fixture *f = *state;
    te_host *h = host_b(f, 64, 0);
    uint64_t hits, misses, computed;
    run_request(h, f->small, &f->k1, 7, widths, 1);
    wait_computed(h, N_SMALL);
    run_request(h, f->small, &f->k1, 8, widths, 1);
    figures(h, &hits, &misses, &computed);
    assert_int_equal(hits, N_SMALL);
    assert_int_equal(misses, N_SMALL);
    /* a share computed after a relayed request serves a mediated one too */
    wait_computed(h, 2 * N_SMALL);
    run_request(h, f->small, &f->k1, 9, widths, 0);
    figures(h, &hits, &misses, &computed);
    assert_int_equal(hits, 2 * N_SMALL);
    te_host_free(h);
}

/* The error message a refused request gets. */
static void refused(te_host *h, const breq *b, te_status want, char *msg, size_t cap)
{
    uint64_t got[16];
    te_err err;
    te_err_clear(&err);
    te_status st = ask_b(h, b, 10, got, &err);
    if (st != want)
        fail_msg("caller '%s' asking for device '%s' (mode %s): status %d (%s), want %d", b->caller, b->device,
                 b->relay ? "relay" : "mediated", (int)st, err.msg, (int)want);
    snprintf(msg, cap, "%s", err.msg);
}

/* (3) Requests for the cached counter that the checks refuse: refused
 * exactly as by a host without precompute, and nothing is consumed. */
static void test_refused_keep_entry(void **state)
{
    const fixture *f = *state;
    te_host *h = host_b(f, 64, 0), *plain = host_b(f, 0, 0);
    uint64_t hits, misses, computed;
    run_request(h, f->small, &f->k1, 50, widths, 0);
    wait_computed(h, N_SMALL);
    const breq bad[] = {
        {TE_CALLER_DEVICE, DEV2, DEV1, SMALL_ID, 51, N_SMALL - 1, widths[N_SMALL - 1], 1, 0},   /* other device */
        {TE_CALLER_DEVICE, "mallory", DEV1, SMALL_ID, 51, N_SMALL - 1, widths[N_SMALL - 1], 1, 0},
        {TE_CALLER_EDGE_A, "edge-a", DEV1, SMALL_ID, 51, N_SMALL - 1, widths[N_SMALL - 1], 1, 0}, /* W.M to A */
        {TE_CALLER_DEVICE, DEV1, DEV1, SMALL_ID, 51, N_SMALL - 1, widths[N_SMALL - 1], 1, 1},   /* relay to device */
        {TE_CALLER_DEVICE, DEV2, DEV1, SMALL_ID, 51, 0, widths[0], 1, 0},
    };
    const te_status codes[] = {TE_EAUTH, TE_EAUTH, TE_EAUTH, TE_ESERVER, TE_EAUTH};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char with[TE_ERR_MSG_MAX], without[TE_ERR_MSG_MAX];
        refused(h, &bad[i], codes[i], with, sizeof with);
        refused(plain, &bad[i], codes[i], without, sizeof without);
        assert_string_equal(with, without);
    }
    figures(h, &hits, &misses, &computed);
    assert_int_equal(hits, 0);
    assert_int_equal(misses, N_SMALL); /* request 50 only: refusals never reach the cache */
    run_request(h, f->small, &f->k1, 51, widths, 0);
    figures(h, &hits, &misses, &computed);
    assert_int_equal(hits, N_SMALL);
    te_host_free(plain);
    te_host_free(h);
}

/* (4) A different ring width (a retry with a wider ring) or a batch above 1
 * misses that layer, and the answer is still right. */
static void test_other_width_misses(void **state)
{
    const fixture *f = *state;
    te_host *h = host_b(f, 64, 0);
    uint64_t hits, misses, computed;
    run_request(h, f->small, &f->k1, 300, widths, 0);
    wait_computed(h, N_SMALL);
    const unsigned wider[N_SMALL] = {widths[0], widths[1] + 8, widths[2]};
    run_request(h, f->small, &f->k1, 301, wider, 0);
    figures(h, &hits, &misses, &computed);
    assert_int_equal(hits, N_SMALL - 1);
    assert_int_equal(misses, N_SMALL + 1);
    /* request 302 was scheduled at the widths of 301 */
    wait_computed(h, 2 * N_SMALL);
    breq b2 = {TE_CALLER_DEVICE, DEV1, DEV1, SMALL_ID, 302, 0, wider[0], 2, 0};
    ask_check(h, f->small, &f->k1, &b2);
    for (uint32_t i = 1; i < N_SMALL; i++) {
        breq b = {TE_CALLER_DEVICE, DEV1, DEV1, SMALL_ID, 302, i, wider[i], 1, 0};
        ask_check(h, f->small, &f->k1, &b);
    }
    figures(h, &hits, &misses, &computed);
    assert_int_equal(hits, 2 * N_SMALL - 2);
    assert_int_equal(misses, N_SMALL + 2);
    te_host_free(h);
}

/* (5) precompute_mb = 0: no worker, nothing cached, nothing counted. */
static void test_off(void **state)
{
    const fixture *f = *state;
    te_host *h = host_b(f, 0, 0);
    uint64_t hits, misses, computed;
    run_request(h, f->small, &f->k1, 20, widths, 0);
    struct timespec pause = {0, 50000000L};
    nanosleep(&pause, NULL);
    run_request(h, f->small, &f->k1, 21, widths, 1);
    figures(h, &hits, &misses, &computed);
    assert_int_equal(hits, 0);
    assert_int_equal(misses, 0);
    assert_int_equal(computed, 0);
    te_host_free(h);
}

/* (6) A 1 MiB cap: the large model's next request (over 1 MiB of shares)
 * is skipped, the small one's is computed; every answer stays right. */
static void test_tiny_cap(void **state)
{
    const fixture *f = *state;
    logbuf log;
    memset(&log, 0, sizeof log);
    assert_int_equal(pthread_mutex_init(&log.mu, NULL), 0);
    te_host *h = host_b_log(f, 1, 0, &log);
    uint64_t hits, misses, computed;
    const unsigned lw[N_LARGE] = {44, 44, 56};
    run_request(h, f->large, &f->kbig, 5, lw, 0);
    run_request(h, f->small, &f->k1, 5, widths, 0);
    /* one worker, jobs in order: once the small job is done, the large one
     * has been dealt with */
    wait_computed(h, N_SMALL);
    figures(h, &hits, &misses, &computed);
    assert_int_equal(computed, N_SMALL);
    run_request(h, f->large, &f->kbig, 6, lw, 0);
    run_request(h, f->small, &f->k1, 6, widths, 0);
    figures(h, &hits, &misses, &computed);
    assert_int_equal(hits, N_SMALL);
    assert_int_equal(misses, N_LARGE + N_SMALL + N_LARGE);
    te_host_free(h);
    print_message("%s", log.text);
    assert_non_null(strstr(log.text, "precompute: request 6 of device 'dev-big/"));
    pthread_mutex_destroy(&log.mu);
}

/* Back to back, no waiting, with cross-device batching on and two devices:
 * a request may find its share pending, being computed (it waits) or
 * ready; every answer is right and every request is a hit or a miss. */
static void test_back_to_back(void **state)
{
    const fixture *f = *state;
    te_host *h = host_b(f, 64, 200);
    uint64_t hits, misses, computed;
    const int rounds = 6;
    for (int t = 0; t < rounds; t++) {
        run_request(h, f->small, &f->k1, 900 + (uint64_t)t, widths, t % 2);
        run_request(h, f->small, &f->k2, 40 + (uint64_t)t, widths, 0);
    }
    figures(h, &hits, &misses, &computed);
    assert_int_equal(hits + misses, 2 * rounds * N_SMALL);
    assert_true(hits <= computed);
    te_host_free(h);
}

/* A new key for the device drops what was computed with the old one. */
static void test_new_key_drops(void **state)
{
    const fixture *f = *state;
    te_host *h = host_b(f, 64, 0);
    uint64_t hits, misses, computed;
    run_request(h, f->small, &f->k1, 70, widths, 0);
    wait_computed(h, N_SMALL);
    te_device_key k = f->k1;
    for (size_t i = 0; i < TE_KEY_BYTES; i++)
        k.key[i] ^= 0x5a;
    te_err err;
    te_err_clear(&err);
    assert_int_equal(te_host_register_device(h, &k, &err), TE_OK);
    run_request(h, f->small, &k, 71, widths, 0);
    figures(h, &hits, &misses, &computed);
    assert_int_equal(hits, 0);
    memset(&k, 0, sizeof k);
    te_host_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_mediated_hits),
        cmocka_unit_test(test_relay_hits),
        cmocka_unit_test(test_refused_keep_entry),
        cmocka_unit_test(test_other_width_misses),
        cmocka_unit_test(test_off),
        cmocka_unit_test(test_tiny_cap),
        cmocka_unit_test(test_back_to_back),
        cmocka_unit_test(test_new_key_drops),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
