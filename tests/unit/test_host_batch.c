/* Cross-device batching on an edge host (te_host_config.batch_window_us):
 * concurrent role-A requests for the same layer and ring width run as one
 * plugin call, every caller still gets exactly W.A for its own input, and
 * requests of different ring widths are never combined. */
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

#include "te_host.h"
#include "te_linear.h"
#include "te_ring.h"
#include "te_wire.h"
#include "wire.pb-c.h"

#define N_THREADS 8
#define DEPLOY_ID "0123456789abcdef0123456789abcdef"
#define LAYER_CONV 0
#define LAYER_FC 1
#define LAYER_BIG 2

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

static const te_linear_geom conv_geom = {.kind = TE_LIN_CONV, .batch = 1, .in_c = 2, .in_h = 6, .in_w = 6,
                                         .out_c = 3, .out_h = 6, .out_w = 6, .k_h = 3, .k_w = 3, .stride_h = 1,
                                         .stride_w = 1, .pad_t = 1, .pad_l = 1, .pad_b = 1, .pad_r = 1,
                                         .dil_h = 1, .dil_w = 1, .group = 1};
/* Big enough that one run takes a while: a request that arrives while
 * another is in flight waits for the window (a request alone runs at once). */
static const te_linear_geom big_geom = {.kind = TE_LIN_FC, .batch = 1, .in_c = 4096, .in_h = 1, .in_w = 1,
                                        .out_c = 2048, .out_h = 1, .out_w = 1, .k_h = 1, .k_w = 1, .stride_h = 1,
                                        .stride_w = 1, .dil_h = 1, .dil_w = 1, .group = 1};
static const te_linear_geom fc_geom = {.kind = TE_LIN_FC, .batch = 1, .in_c = 50, .in_h = 1, .in_w = 1,
                                       .out_c = 10, .out_h = 1, .out_w = 1, .k_h = 1, .k_w = 1, .stride_h = 1,
                                       .stride_w = 1, .dil_h = 1, .dil_w = 1, .group = 1};

/* One device's request and what it got back. */
typedef struct job {
    te_host *host;
    pthread_barrier_t *start;
    const te_linear_geom *geom;
    const int32_t *w;
    char device[16];
    uint32_t layer;
    unsigned l;
    uint64_t batch;
    uint64_t *x, *want, *got;   /* batch * in_len, batch * out_len, batch * out_len */
    te_status st;
    char msg[TE_ERR_MSG_MAX];
} job;

typedef struct fixture {
    te_model *m;    /* the edge model deployed (holds the weights) */
} fixture;

static int32_t *rand_weights(rng *r, const te_linear_geom *g)
{
    size_t n = (size_t)te_geom_weight_len(g);
    int32_t *w = malloc(n * sizeof *w);
    assert_non_null(w);
    for (size_t i = 0; i < n; i++)
        w[i] = (int32_t)(rng_next(r) % 4001) - 2000;
    return w;
}

static int setup(void **state)
{
    rng r = {0x2545f4914f6cdd1dULL};
    fixture *f = calloc(1, sizeof *f);
    assert_non_null(f);
    f->m = te_model_new();
    assert_non_null(f->m);
    memcpy(f->m->deployment_id, DEPLOY_ID, sizeof f->m->deployment_id);
    te_layer conv = {0};
    conv.name = "conv";
    conv.geom = conv_geom;
    conv.w = rand_weights(&r, &conv.geom);
    assert_int_equal(te_model_add_layer(f->m, &conv), LAYER_CONV);
    te_layer fc = {0};
    fc.name = "fc";
    fc.geom = fc_geom;
    fc.w = rand_weights(&r, &fc.geom);
    assert_int_equal(te_model_add_layer(f->m, &fc), LAYER_FC);
    te_layer big = {0};
    big.name = "big";
    big.geom = big_geom;
    big.w = rand_weights(&r, &big.geom);
    assert_int_equal(te_model_add_layer(f->m, &big), LAYER_BIG);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fixture *f = *state;
    te_model_free(f->m);
    free(f);
    return 0;
}

static te_host *host_new(const fixture *f, uint32_t window_us, uint64_t max_batch)
{
    te_host_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.role = TE_ROLE_A;
    cfg.plugin = "cpu";
    cfg.max_batch = max_batch;
    cfg.batch_window_us = window_us;
    te_host *h = NULL;
    te_err err;
    te_err_clear(&err);
    if (te_host_new(&cfg, &h, &err) != TE_OK)
        fail_msg("te_host_new: %s", err.msg);
    if (te_host_deploy(h, f->m, &err) != TE_OK)
        fail_msg("te_host_deploy: %s", err.msg);
    return h;
}

/* One device: a mediated role-A request with its blinded input, sent once
 * every thread is ready. */
static void *device_thread(void *arg)
{
    job *j = arg;
    size_t in_n = (size_t)(te_geom_in_len(j->geom) * (int64_t)j->batch);
    size_t out_n = (size_t)(te_geom_out_len(j->geom) * (int64_t)j->batch);
    size_t packed_len = te_pack_bytes(in_n, j->l);
    uint8_t *packed = malloc(packed_len ? packed_len : 1);
    uint8_t *req = NULL, *resp = NULL;
    size_t resp_len = 0;
    te_err err;
    te_err_clear(&err);
    j->st = TE_ENOMEM;
    snprintf(j->msg, sizeof j->msg, "out of memory");
    if (packed) {
        te_pack(j->x, in_n, j->l, packed);
        Twinedge__LayerRequest q = TWINEDGE__LAYER_REQUEST__INIT;
        q.deployment_id = (char *)DEPLOY_ID;
        q.device_id = j->device;
        static const uint8_t session[TE_SESSION_BYTES] = {42};
        q.session.data = (uint8_t *)session;
        q.session.len = sizeof session;
        static _Atomic uint64_t next_counter = 1; /* never one (session, counter, layer) twice */
        q.counter = atomic_fetch_add(&next_counter, 1);
        q.layer = j->layer;
        q.ring_bits = j->l;
        q.batch = j->batch;
        q.mode = TWINEDGE__MODE__MODE_MEDIATED;
        q.data.data = packed;
        q.data.len = packed_len;
        size_t n = twinedge__layer_request__get_packed_size(&q);
        req = malloc(n ? n : 1);
        if (req) {
            twinedge__layer_request__pack(&q, req);
            te_caller caller = {TE_CALLER_DEVICE, j->device};
            pthread_barrier_wait(j->start);
            j->st = te_host_handle(j->host, &caller, req, n, &resp, &resp_len, &err);
            if (j->st == TE_OK)
                j->st = te_wire_read_response(resp, resp_len, "EdgeA", j->layer, out_n, j->l, j->got, &err);
            snprintf(j->msg, sizeof j->msg, "%s", err.msg);
        }
    }
    if (!req)
        pthread_barrier_wait(j->start); /* never leave the others waiting */
    free(packed);
    free(req);
    free(resp);
    return NULL;
}

/* Run N_THREADS devices at once; job i asks for layers[i], width ls[i],
 * batch batches[i].  Every result must be W.A of its own input. */
static void run_devices(const fixture *f, te_host *h, const uint32_t *layers, const unsigned *ls,
                        const uint64_t *batches, uint64_t seed)
{
    rng r = {seed};
    pthread_barrier_t start;
    assert_int_equal(pthread_barrier_init(&start, NULL, N_THREADS), 0);
    job jobs[N_THREADS];
    pthread_t tids[N_THREADS];
    memset(jobs, 0, sizeof jobs);
    for (int i = 0; i < N_THREADS; i++) {
        job *j = &jobs[i];
        j->host = h;
        j->start = &start;
        j->layer = layers[i];
        j->geom = &f->m->layers[j->layer].geom;
        j->w = f->m->layers[j->layer].w;
        j->l = ls[i];
        j->batch = batches[i];
        snprintf(j->device, sizeof j->device, "dev-%d", i);
        size_t in_n = (size_t)(te_geom_in_len(j->geom) * (int64_t)j->batch);
        size_t out_n = (size_t)(te_geom_out_len(j->geom) * (int64_t)j->batch);
        j->x = malloc(in_n * sizeof *j->x);
        j->want = malloc(out_n * sizeof *j->want);
        j->got = calloc(out_n, sizeof *j->got);
        assert_true(j->x && j->want && j->got);
        for (size_t k = 0; k < in_n; k++)
            j->x[k] = te_ring_reduce(rng_next(&r), j->l); /* A = x + M is uniform */
        te_linear_geom g = *j->geom;
        g.batch = (int64_t)j->batch;
        te_linear_ref_ring(&g, j->w, j->l, j->x, j->want);
    }
    for (int i = 0; i < N_THREADS; i++)
        assert_int_equal(pthread_create(&tids[i], NULL, device_thread, &jobs[i]), 0);
    for (int i = 0; i < N_THREADS; i++)
        pthread_join(tids[i], NULL);
    pthread_barrier_destroy(&start);
    for (int i = 0; i < N_THREADS; i++) {
        job *j = &jobs[i];
        if (j->st != TE_OK)
            fail_msg("device %d (layer %u, l = %u, batch %llu): %s", i, j->layer, j->l,
                     (unsigned long long)j->batch, j->msg);
        size_t out_n = (size_t)(te_geom_out_len(j->geom) * (int64_t)j->batch);
        for (size_t k = 0; k < out_n; k++)
            if (j->got[k] != j->want[k])
                fail_msg("device %d (layer %u, l = %u): element %zu is %llu, want %llu", i, j->layer, j->l, k,
                         (unsigned long long)j->got[k], (unsigned long long)j->want[k]);
        free(j->x);
        free(j->want);
        free(j->got);
    }
}

/* Eight devices, one layer, one width, within a 20 ms window: fewer plugin
 * runs than requests, each device gets its own slice (batches of 1..3).
 * The first request finds no other in flight and runs alone; those that
 * arrive while it runs find each other. */
static void test_batched_same_layer(void **state)
{
    const fixture *f = *state;
    te_host *h = host_new(f, 20000, 0);
    uint32_t layers[N_THREADS];
    unsigned ls[N_THREADS];
    uint64_t batches[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        layers[i] = LAYER_BIG;
        ls[i] = 40;
        batches[i] = 1 + (uint64_t)(i % 3);
    }
    run_devices(f, h, layers, ls, batches, 0x1234567ULL);
    uint64_t runs = 0, served = 0;
    te_host_batch_figures(h, &runs, &served);
    print_message("batched: %llu plugin runs for %llu requests\n", (unsigned long long)runs,
                  (unsigned long long)served);
    assert_true(runs < N_THREADS);
    assert_true(runs >= 1);
    assert_int_equal(served, N_THREADS);
    te_host_free(h);
}

/* batch_window_us = 0: every request is its own plugin run. */
static void test_unbatched(void **state)
{
    const fixture *f = *state;
    te_host *h = host_new(f, 0, 0);
    uint32_t layers[N_THREADS];
    unsigned ls[N_THREADS];
    uint64_t batches[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        layers[i] = LAYER_CONV;
        ls[i] = 40;
        batches[i] = 1 + (uint64_t)(i % 2);
    }
    run_devices(f, h, layers, ls, batches, 0x7654321ULL);
    uint64_t runs = 0, served = 0;
    te_host_batch_figures(h, &runs, &served);
    assert_int_equal(runs, N_THREADS);
    assert_int_equal(served, N_THREADS);
    te_host_free(h);
}

/* Two ring widths on the same layer at once (and an FC layer beside them):
 * never combined across kinds, every result still exact. */
static void test_two_widths(void **state)
{
    const fixture *f = *state;
    te_host *h = host_new(f, 20000, 0);
    uint32_t layers[N_THREADS];
    unsigned ls[N_THREADS];
    uint64_t batches[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        layers[i] = i == N_THREADS - 1 ? LAYER_FC : LAYER_CONV;
        ls[i] = i % 2 ? 24 : 40;
        batches[i] = 1 + (uint64_t)(i % 3);
    }
    run_devices(f, h, layers, ls, batches, 0xabcdefULL);
    uint64_t runs = 0, served = 0;
    te_host_batch_figures(h, &runs, &served);
    print_message("two widths: %llu plugin runs for %llu requests\n", (unsigned long long)runs,
                  (unsigned long long)served);
    assert_true(runs >= 3); /* conv l=40, conv l=24, fc l=24 are three kinds at least */
    assert_int_equal(served, N_THREADS);
    te_host_free(h);
}

/* A host whose batch is capped at 4: groups close when full, the plugin
 * never sees more than 4 samples, and results stay exact. */
static void test_group_cap(void **state)
{
    const fixture *f = *state;
    te_host *h = host_new(f, 20000, 4);
    uint32_t layers[N_THREADS];
    unsigned ls[N_THREADS];
    uint64_t batches[N_THREADS];
    for (int i = 0; i < N_THREADS; i++) {
        layers[i] = LAYER_FC;
        ls[i] = 48;
        batches[i] = 1;
    }
    run_devices(f, h, layers, ls, batches, 0x5151ULL);
    uint64_t runs = 0, served = 0;
    te_host_batch_figures(h, &runs, &served);
    assert_true(runs >= 2); /* 8 samples, at most 4 per run */
    assert_int_equal(served, N_THREADS);
    te_host_free(h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_batched_same_layer),
        cmocka_unit_test(test_unbatched),
        cmocka_unit_test(test_two_widths),
        cmocka_unit_test(test_group_cap),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
