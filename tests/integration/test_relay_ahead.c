/* EdgeA's relay-ahead cache (relay_ahead_kb, host/ahead.c) between two real
 * twinedge-host processes on loopback, mutual TLS:
 * - after a device's first inference, its next ones are answered by EdgeA
 *   from shares fetched ahead (hits in EdgeA's metrics), bit for bit as
 *   the fixed-point reference;
 * - EdgeB stopped after the fetch: the next inference still succeeds (the
 *   online path is EdgeA alone); negative control: without relay_ahead_kb
 *   the same inference fails;
 * - the cap holds (bytes held never above it) and evictions are counted;
 * - a fetched entry goes to no other device, other session, or twice;
 * - the fetch waits for the end of the device's inference stream. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "deploy.h"
#include "harness.h"
#include "owner.h"
#include "pki.h"
#include "runlib.h"
#include "service.pb-c.h"
#include "te_bundle.h"
#include "te_net.h"
#include "te_net_transport.h"
#include "te_npy.h"
#include "te_ring.h"
#include "twinedge_net.h"
#include "wire.pb-c.h"

#ifndef TE_HOST_BIN
#error "TE_HOST_BIN must name the twinedge-host executable"
#endif

#define MODEL "lenet5"
#define TIMEOUT_MS 5000

typedef struct world {
    char dir[256], deploy[300], dev[2][300];
    fx_host a, b;
    int starts;             /* host pairs started: a store each */
    int metrics_port;       /* EdgeA's */
    te_model *dm;           /* the device bundle (ring widths, shapes) */
    uint64_t request_bytes; /* what one request's fetched shares take */
    float *input, *expect;
    size_t n_in, n_out;
} world;

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* EdgeA's metrics port, from its log ("metrics on ... (port N)"). */
static int read_metrics_port(const world *w)
{
    char path[400], line[1024];
    snprintf(path, sizeof path, "%s/host-a%d.log", w->dir, w->starts);
    FILE *f = fopen(path, "r");
    assert_non_null(f);
    int port = 0;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "metrics on http://");
        if (p && (p = strstr(p, "(port ")))
            port = atoi(p + 6);
    }
    fclose(f);
    assert_true(port > 0);
    return port;
}

/* One sample of EdgeA's Prometheus text. */
static uint64_t metric(const world *w, const char *name)
{
    return fx_metric(w->metrics_port, name);
}

/* LayerRequests EdgeB has answered (the owner's Stats). */
static uint64_t b_requests(const world *w)
{
    te_err err;
    te_net_creds oc;
    char od[400];
    snprintf(od, sizeof od, "%s/owner", w->deploy);
    fx_must(te_net_creds_load(od, &oc, &err), &err, "owner creds");
    te_net_channel_config cc = {w->b.addr, &oc, TE_CN_EDGE_B, 0};
    te_net_channel *ch = NULL;
    fx_must(te_net_channel_new(&cc, &ch, &err), &err, "channel");
    uint8_t *resp = NULL;
    size_t len = 0;
    fx_must(te_net_unary(ch, TE_SVC_STATS, (const uint8_t *)"", 0, &resp, &len, TIMEOUT_MS, &err), &err, "stats");
    Twinedge__StatsReply *r = twinedge__stats_reply__unpack(NULL, len, resp);
    assert_non_null(r);
    uint64_t n = r->requests;
    twinedge__stats_reply__free_unpacked(r, NULL);
    free(resp);
    te_net_channel_free(ch);
    te_net_creds_free(&oc);
    return n;
}

/* Wait (10 s at most) until EdgeB has answered `want` requests, and EdgeA
 * has had a moment to store the last answer (a request for an entry whose
 * fetch is in flight waits for it anyway). */
static void wait_b_requests(const world *w, uint64_t want)
{
    for (int i = 0; i < 1000 && b_requests(w) < want; i++)
        sleep_ms(10);
    assert_true(b_requests(w) >= want);
    sleep_ms(50);
}

static void start_pair(world *w, const char *ahead_kb)
{
    char tag[16], peer[64];
    snprintf(tag, sizeof tag, "%d", ++w->starts);
    fx_host_start(&w->b, TE_HOST_BIN, w->dir, w->deploy, 'b', tag, 0, NULL, NULL);
    snprintf(peer, sizeof peer, "%s", w->b.addr);
    const char *extra[] = {"--relay-ahead-kb", ahead_kb, "--metrics-listen", "127.0.0.1:0", NULL};
    fx_host_start(&w->a, TE_HOST_BIN, w->dir, w->deploy, 'a', tag, 0, peer, extra);
    te_err err;
    fx_must(te_owner_deploy(w->deploy, w->a.addr, w->b.addr, &err), &err, "deploy");
    w->metrics_port = read_metrics_port(w);
}

/* Both hosts (those still running) exit cleanly on SIGTERM: EdgeA's fetch
 * thread stopped, nothing leaked (status 0 under the sanitizers too). */
static void stop_pair(world *w)
{
    fx_host *h[2] = {&w->a, &w->b};
    for (int i = 0; i < 2; i++) {
        if (h[i]->pid <= 0)
            continue;
        int status = fx_host_stop(h[i], SIGTERM);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
            fail_msg("Edge%c did not exit cleanly (status 0x%x; see its log in %s)", i ? 'B' : 'A', status, w->dir);
    }
}

typedef struct device {
    twinedge_device *dev;
    twinedge_net *net;
} device;

static void device_open(world *w, int which, device *d)
{
    char tls[400];
    snprintf(tls, sizeof tls, "%s/tls", w->dev[which]);
    d->dev = NULL;
    d->net = NULL;
    if (twinedge_open(w->dev[which], &d->dev) != TWINEDGE_OK)
        fail_msg("open: %s", twinedge_errmsg(d->dev));
    if (twinedge_connect(d->dev, w->a.addr, w->b.addr, tls, TIMEOUT_MS, &d->net) != TWINEDGE_OK)
        fail_msg("connect: %s", twinedge_net_errmsg(d->net));
}

static void device_close(device *d)
{
    twinedge_close(d->dev);
    twinedge_disconnect(d->net);
}

/* One relay inference: its status; a success must equal the reference. */
static int infer(world *w, device *d)
{
    float *y = calloc(w->n_out, sizeof *y);
    assert_non_null(y);
    int rc = twinedge_infer(d->dev, TWINEDGE_RELAY, w->input, w->n_in, y, w->n_out);
    if (rc == TWINEDGE_OK)
        assert_memory_equal(y, w->expect, w->n_out * sizeof *y);
    free(y);
    return rc;
}

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    assert_non_null(w);
    te_err err;
    char db[400];
    snprintf(w->dir, sizeof w->dir, "/tmp/te-relay-ahead-XXXXXX");
    fx_net_deploy(w->dir, w->deploy, sizeof w->deploy, MODEL);
    for (int i = 0; i < 2; i++) {
        char name[8];
        snprintf(name, sizeof name, "d%d", i + 1);
        snprintf(w->dev[i], sizeof w->dev[i], "%s/device%d", w->dir, i + 1);
        fx_net_device(w->deploy, name, w->dev[i]);
    }
    snprintf(db, sizeof db, "%s/device.bundle", w->deploy);
    fx_must(te_device_bundle_read(db, &w->dm, &err), &err, "device bundle");
    for (int i = 0; i < w->dm->n_layers; i++)
        w->request_bytes += (uint64_t)te_geom_out_len(&w->dm->layers[i].geom) * sizeof(uint64_t);
    w->input = fx_read_input(MODEL, &w->n_in);
    w->n_out = fx_device_n_out(w->dev[0]);
    w->expect = calloc(w->n_out, sizeof *w->expect);
    assert_non_null(w->expect);
    fx_must(te_reference_fixed(w->deploy, w->input, w->n_in, w->expect, w->n_out, &err), &err, "reference");
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", w->dir);
    if (system(cmd) != 0)
        print_message("could not remove %s\n", w->dir);
    te_model_free(w->dm);
    free(w->input);
    free(w->expect);
    free(w);
    return 0;
}

/* A host pair with relay_ahead_kb ahead_kb, device 0 opened in d, and its
 * first inference, which must succeed. */
static void start_and_infer_once(world *w, const char *ahead_kb, device *d)
{
    start_pair(w, ahead_kb);
    device_open(w, 0, d);
    assert_int_equal(infer(w, d), TWINEDGE_OK);
}

/* (a) hits after the first inference, bit-exact; (b) EdgeB down after the
 * fetch: the next inference is EdgeA's alone. */
static void test_hits_and_edge_b_down(void **state)
{
    world *w = *state;
    uint64_t L = (uint64_t)w->dm->n_layers;
    device d;
    start_and_infer_once(w, "4096", &d);
    assert_int_equal(metric(w, "twinedge_relay_ahead_hits_total"), 0);
    assert_int_equal(metric(w, "twinedge_relay_ahead_misses_total"), L);
    wait_b_requests(w, 2 * L); /* L online, L ahead */
    assert_int_equal(metric(w, "twinedge_relay_ahead_bytes"), w->request_bytes);
    assert_int_equal(infer(w, &d), TWINEDGE_OK);
    assert_int_equal(metric(w, "twinedge_relay_ahead_hits_total"), L);
    assert_int_equal(metric(w, "twinedge_relay_ahead_misses_total"), L);
    wait_b_requests(w, 3 * L); /* only the next fetch: nothing online */

    fx_host_stop(&w->b, SIGKILL);
    assert_int_equal(infer(w, &d), TWINEDGE_OK);
    assert_int_equal(metric(w, "twinedge_relay_ahead_hits_total"), 2 * L);
    /* and EdgeB is really gone: nothing was fetched for the one after */
    assert_int_not_equal(infer(w, &d), TWINEDGE_OK);
    device_close(&d);
    stop_pair(w);
}

/* Negative control of (b): the same sequence with relay_ahead off fails
 * once EdgeB is down. */
static void test_without_ahead_edge_b_down_fails(void **state)
{
    world *w = *state;
    uint64_t L = (uint64_t)w->dm->n_layers;
    device d;
    start_and_infer_once(w, "0", &d);
    wait_b_requests(w, L);
    sleep_ms(200); /* what a fetch ahead would have had */
    assert_int_equal(b_requests(w), L);
    fx_host_stop(&w->b, SIGKILL);
    assert_int_not_equal(infer(w, &d), TWINEDGE_OK);
    assert_int_equal(metric(w, "twinedge_relay_ahead_hits_total"), 0);
    device_close(&d);
    stop_pair(w);
}

/* (c) a cap that holds one request's shares, not two: two devices take
 * turns, each fetch evicts the oldest of the other's entries (as many as it
 * needs room for), the bytes held never pass the cap, and the layers
 * evicted are asked of EdgeB online. */
static void test_cap_and_eviction(void **state)
{
    world *w = *state;
    uint64_t L = (uint64_t)w->dm->n_layers, B = w->request_bytes;
    uint64_t kb = (B + B / 2) / 1024 + 1;
    assert_true(kb * 1024 >= B && kb * 1024 < 2 * B);
    char kbs[32];
    snprintf(kbs, sizeof kbs, "%llu", (unsigned long long)kb);
    start_pair(w, kbs);
    device d[2];
    device_open(w, 0, &d[0]);
    device_open(w, 1, &d[1]);
    for (int round = 0; round < 3; round++) {
        for (int i = 0; i < 2; i++) {
            uint64_t b0 = b_requests(w), m0 = metric(w, "twinedge_relay_ahead_misses_total");
            assert_int_equal(infer(w, &d[i]), TWINEDGE_OK);
            /* its misses went to EdgeB online, then its next request ahead */
            uint64_t missed = metric(w, "twinedge_relay_ahead_misses_total") - m0;
            assert_int_equal(missed, round == 0 ? L : missed);
            wait_b_requests(w, b0 + missed + L);
            uint64_t held = metric(w, "twinedge_relay_ahead_bytes");
            assert_true(held >= B && held <= kb * 1024);
        }
    }
    uint64_t hits = metric(w, "twinedge_relay_ahead_hits_total"),
             misses = metric(w, "twinedge_relay_ahead_misses_total"),
             evicted = metric(w, "twinedge_relay_ahead_evictions_total");
    print_message("cap %llu KiB, a request's shares %llu bytes: %llu hits, %llu misses, %llu evictions\n",
                  (unsigned long long)kb, (unsigned long long)B, (unsigned long long)hits,
                  (unsigned long long)misses, (unsigned long long)evicted);
    assert_int_equal(hits + misses, 6 * L);
    /* from the third inference on, each found the other's fetch had evicted
     * some of its entries: they missed, and were counted as evicted */
    assert_true(evicted > 0 && misses >= 2 * L + 4);
    assert_true(evicted >= misses - 2 * L);
    device_close(&d[0]);
    device_close(&d[1]);
    stop_pair(w);
}

/* An Infer stream to EdgeA as the device of `dir`. */
typedef struct raw_stream {
    te_net_creds dc;
    te_net_channel *ch;
    te_net_stream *s;
} raw_stream;

static te_status raw_open(world *w, const char *dir, raw_stream *rs)
{
    te_err err;
    char tls[400];
    memset(rs, 0, sizeof *rs);
    snprintf(tls, sizeof tls, "%s/tls", dir);
    fx_must(te_net_creds_load(tls, &rs->dc, &err), &err, "device creds");
    te_net_channel_config cc = {w->a.addr, &rs->dc, TE_CN_EDGE_A, 0};
    fx_must(te_net_channel_new(&cc, &rs->ch, &err), &err, "channel");
    return te_net_stream_open(rs->ch, TE_SVC_INFER, TIMEOUT_MS, &rs->s, &err);
}

/* Ends the stream (half-close, the host's status) when it is still up. */
static te_status raw_close(raw_stream *rs, te_status st)
{
    te_err err;
    if (st == TE_OK && rs->s)
        st = te_net_stream_close(rs->s, &err);
    te_net_stream_free(rs->s);
    te_net_channel_free(rs->ch);
    te_net_creds_free(&rs->dc);
    memset(rs, 0, sizeof *rs);
    return st;
}

/* One raw relay LayerRequest on the stream; returns the response's status
 * (or -1 - te_status). */
static int raw_send(world *w, raw_stream *rs, const char *device_id, const uint8_t *session, uint64_t counter,
                    uint32_t layer, int ahead, te_status *st)
{
    te_err err;
    const te_layer *L = &w->dm->layers[layer];
    size_t dl = te_pack_bytes((size_t)te_geom_in_len(&L->geom), (unsigned)L->ring_bits);
    uint8_t *data = calloc(dl ? dl : 1, 1);
    assert_non_null(data);
    Twinedge__LayerRequest q = TWINEDGE__LAYER_REQUEST__INIT;
    q.deployment_id = w->dm->deployment_id;
    q.device_id = (char *)device_id;
    q.counter = counter;
    q.layer = layer;
    q.ring_bits = (uint32_t)L->ring_bits;
    q.batch = 1;
    q.mode = TWINEDGE__MODE__MODE_RELAY;
    q.session.data = (uint8_t *)session;
    q.session.len = 16;
    q.data.data = data;
    q.data.len = dl;
    q.ahead = ahead;
    size_t n = twinedge__layer_request__get_packed_size(&q);
    uint8_t *buf = malloc(n), *resp = NULL;
    assert_non_null(buf);
    twinedge__layer_request__pack(&q, buf);
    size_t rl = 0;
    *st = te_net_stream_exchange(rs->s, buf, n, &resp, &rl, &err);
    free(buf);
    free(data);
    if (*st != TE_OK) {
        free(resp);
        return -1 - (int)*st;
    }
    Twinedge__LayerResponse *r = twinedge__layer_response__unpack(NULL, rl, resp);
    free(resp);
    assert_non_null(r);
    int code = (int)r->status;
    twinedge__layer_response__free_unpacked(r, NULL);
    return code;
}

/* One raw relay LayerRequest on an Infer stream of its own to EdgeA as the
 * device of `dir`; returns the response's status (or -1 - te_status). */
static int raw_relay_as(world *w, const char *dir, const char *device_id, const uint8_t *session, uint64_t counter,
                        uint32_t layer, int ahead)
{
    raw_stream rs;
    te_status st = raw_open(w, dir, &rs);
    int code = st == TE_OK ? raw_send(w, &rs, device_id, session, counter, layer, ahead, &st) : -1 - (int)st;
    st = raw_close(&rs, st);
    return st == TE_OK ? code : -1 - (int)st;
}

static int raw_relay(world *w, const char *dir, const char *device_id, const uint8_t *session, uint64_t counter,
                     uint32_t layer)
{
    return raw_relay_as(w, dir, device_id, session, counter, layer, 0);
}

/* (d) d1's entries for (session S, counter 1) are served to d1 alone, once. */
static void test_entry_only_to_its_device_once(void **state)
{
    world *w = *state;
    uint32_t L = (uint32_t)w->dm->n_layers;
    start_pair(w, "4096");
    uint8_t session[16], other[16];
    for (int i = 0; i < 16; i++) {
        session[i] = (uint8_t)(0x3c ^ (i * 29));
        other[i] = (uint8_t)(session[i] ^ 1);
    }
    for (uint32_t i = 0; i < L; i++) /* request 0 of d1's session S, through its last layer */
        assert_int_equal(raw_relay(w, w->dev[0], "d1", session, 0, i), TE_OK);
    wait_b_requests(w, 2 * (uint64_t)L);
    assert_int_equal(metric(w, "twinedge_relay_ahead_bytes"), w->request_bytes);
    uint64_t misses = metric(w, "twinedge_relay_ahead_misses_total");
    /* a fetch ahead is EdgeA's to EdgeB: a device's is refused */
    assert_int_equal(raw_relay_as(w, w->dev[0], "d1", session, 1, 0, 1), TE_EAUTH);
    /* d2's certificate naming d1: refused before the cache */
    assert_int_equal(raw_relay(w, w->dev[1], "d1", session, 1, 0), TE_EAUTH);
    /* d2 in its own name with d1's session, and d1 under another session:
     * not d1's entry (served on demand) */
    assert_int_equal(raw_relay(w, w->dev[1], "d2", session, 1, 0), TE_OK);
    assert_int_equal(raw_relay(w, w->dev[0], "d1", other, 1, 0), TE_OK);
    assert_int_equal(metric(w, "twinedge_relay_ahead_hits_total"), 0);
    assert_int_equal(metric(w, "twinedge_relay_ahead_misses_total"), misses + 2);
    /* d1 itself: a hit, once; the same request again is refused (replay) */
    assert_int_equal(raw_relay(w, w->dev[0], "d1", session, 1, 0), TE_OK);
    assert_int_equal(metric(w, "twinedge_relay_ahead_hits_total"), 1);
    assert_int_not_equal(raw_relay(w, w->dev[0], "d1", session, 1, 0), TE_OK);
    assert_int_equal(metric(w, "twinedge_relay_ahead_hits_total"), 1);
    /* the rest of d1's request 1 still comes from the cache */
    for (uint32_t i = 1; i < L; i++)
        assert_int_equal(raw_relay(w, w->dev[0], "d1", session, 1, i), TE_OK);
    assert_int_equal(metric(w, "twinedge_relay_ahead_hits_total"), L);
    stop_pair(w);
}

/* (e) the fetch for request t + 1 waits until the device's stream of
 * request t has ended: while the stream stays open after its last layer,
 * EdgeB sees no fetch and EdgeA holds nothing; once it ends, the fetch
 * comes.  (Fetching at the last layer took CPU and bandwidth from the
 * device's own inference while it finished.) */
static void test_fetch_waits_for_stream_end(void **state)
{
    world *w = *state;
    uint32_t L = (uint32_t)w->dm->n_layers;
    start_pair(w, "4096");
    uint8_t session[16];
    for (int i = 0; i < 16; i++)
        session[i] = (uint8_t)(0x5a ^ (i * 37));
    raw_stream rs;
    te_status st = raw_open(w, w->dev[0], &rs);
    assert_int_equal(st, TE_OK);
    for (uint32_t i = 0; i < L; i++) /* request 0, every layer, one stream */
        assert_int_equal(raw_send(w, &rs, "d1", session, 0, i, 0, &st), TE_OK);
    sleep_ms(500);
    assert_int_equal(b_requests(w), L); /* EdgeB: the L online relay requests, no fetch */
    assert_int_equal(metric(w, "twinedge_relay_ahead_bytes"), 0);
    assert_int_equal(raw_close(&rs, st), TE_OK);
    wait_b_requests(w, 2 * (uint64_t)L);
    assert_int_equal(metric(w, "twinedge_relay_ahead_bytes"), w->request_bytes);
    /* and request 1 is served from it */
    assert_int_equal(raw_open(w, w->dev[0], &rs), TE_OK);
    for (uint32_t i = 0; i < L; i++)
        assert_int_equal(raw_send(w, &rs, "d1", session, 1, i, 0, &st), TE_OK);
    assert_int_equal(raw_close(&rs, st), TE_OK);
    assert_int_equal(metric(w, "twinedge_relay_ahead_hits_total"), L);
    stop_pair(w);
}

/* A failed test leaves no host behind. */
static int stop_hosts(void **state)
{
    world *w = *state;
    fx_host_stop(&w->a, SIGKILL);
    fx_host_stop(&w->b, SIGKILL);
    return 0;
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_hits_and_edge_b_down, stop_hosts),
        cmocka_unit_test_teardown(test_without_ahead_edge_b_down_fails, stop_hosts),
        cmocka_unit_test_teardown(test_cap_and_eviction, stop_hosts),
        cmocka_unit_test_teardown(test_entry_only_to_its_device_once, stop_hosts),
        cmocka_unit_test_teardown(test_fetch_waits_for_stream_end, stop_hosts),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
