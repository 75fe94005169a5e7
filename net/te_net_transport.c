/* te_transport over gRPC (see te_net_transport.h). */
#include "te_net_transport.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* Replicas of one role named in one target ("ipv4:H:P,H:P,..."). */
#define TE_NET_MAX_REPLICAS 16

typedef struct net_transport {
    /* by te_party, one channel per replica; pick: the device's replica */
    te_net_channel *ch[2][TE_NET_MAX_REPLICAS];
    int n_ch[2], pick[2];
    uint64_t pick_key[2];        /* the request key pick[] was chosen for (EdgeB) */
    int no_affinity;             /* TE_NET_NO_AFFINITY=1: round robin, the negative control */
    atomic_uint next_rr;         /* the peer link's round robin (no_affinity) */
    int timeout_ms;
    int peer_link;
    te_traffic *traffic;
    pthread_mutex_t lock;        /* guards *traffic: EdgeA's workers share the peer link */
    /* Between begin and end (one inference of one device): one Infer stream
     * per host, opened on first use and carrying every layer's exchange. */
    int in_session;
    te_net_stream *session[2];
} net_transport;

static void close_session(net_transport *nt, int party)
{
    if (nt->session[party]) {
        te_err ignored;
        te_net_stream_close(nt->session[party], &ignored);
        te_net_stream_free(nt->session[party]);
        nt->session[party] = NULL;
    }
}

/* FNV-1a, 64 bits: spreading, not security. */
#define FNV_BASIS 14695981039346656037ull
static uint64_t fnv1a(uint64_t h, const uint8_t *p, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    return h;
}

/* "ipv4:A,B,..." / "ipv6:A,B,...": one single-address target per replica
 * ("ipv4:A", ...); anything else (HOST:PORT, dns:///NAME) is one target,
 * gRPC's to resolve (a dns: name with several addresses keeps gRPC's round
 * robin).  The count, or -1. */
static int split_replicas(const char *target, char out[][1024], int cap)
{
    const char *scheme = strncmp(target, "ipv4:", 5) == 0 ? "ipv4:" : strncmp(target, "ipv6:", 5) == 0 ? "ipv6:" : NULL;
    if (!scheme || !strchr(target, ',')) {
        if (strlen(target) >= 1024)
            return -1;
        snprintf(out[0], 1024, "%s", target);
        return 1;
    }
    int n = 0;
    const char *p = target + 5;
    while (*p) {
        const char *e = strchr(p, ',');
        size_t len = e ? (size_t)(e - p) : strlen(p);
        if (len) {
            if (n == cap || len + 6 > 1024)
                return -1;
            snprintf(out[n++], 1024, "%s%.*s", scheme, (int)len, p);
        }
        p += len + (e ? 1 : 0);
    }
    return n ? n : -1;
}

/* EdgeA's key for a MaskShare request: its device and session (fields 2
 * and 9 of the LayerRequest), found by walking the message's fields.  All
 * of one device session's layers then go to one EdgeB replica, where the
 * shares precomputed for that session are (and EdgeA replicas with the same
 * peer list agree).  A message that does not parse hashes as a whole: it
 * goes somewhere, and EdgeB refuses it. */
static uint64_t request_affinity(const uint8_t *m, size_t n)
{
    uint64_t h = FNV_BASIS;
    size_t i = 0;
    int found = 0;
    while (i < n) {
        uint64_t tag = 0;
        for (int shift = 0; i < n && shift < 64; shift += 7) {
            tag |= (uint64_t)(m[i] & 0x7f) << shift;
            if (!(m[i++] & 0x80))
                break;
        }
        unsigned field = (unsigned)(tag >> 3), type = (unsigned)(tag & 7);
        if (type == 0) {
            while (i < n && (m[i++] & 0x80)) {
            }
        } else if (type == 1 || type == 5) {
            i += type == 1 ? 8 : 4;
        } else if (type == 2) {
            uint64_t len = 0;
            for (int shift = 0; i < n && shift < 64; shift += 7) {
                len |= (uint64_t)(m[i] & 0x7f) << shift;
                if (!(m[i++] & 0x80))
                    break;
            }
            if (len > n - i)
                break;
            if (field == 2 || field == 9) {
                h = fnv1a(h, m + i, (size_t)len);
                h = fnv1a(h, (const uint8_t *)"|", 1);
                found++;
            }
            i += (size_t)len;
        } else {
            break;
        }
    }
    return found == 2 ? h : fnv1a(FNV_BASIS, m, n);
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

/* One exchange on the inference's stream (or, outside an inference, on a
 * stream of its own).
 *
 * A host that is overloaded refuses a message before serving it and says
 * so ("te-not-served"); the stream then ends, and the very same bytes go
 * again on a new stream after a randomised pause, within this call's
 * deadline.  Security: only these bytes are ever sent again, never a new
 * request for the same (session, counter, layer): the device encoded and
 * masked them once, so no mask ever covers two different inputs.  A host
 * that lied about not serving sees the same message twice and learns
 * nothing new; an honest host that did serve it refuses the repeat (replay
 * guard), and the device gets an error.  Nothing else is retried here: a
 * broken stream, a timeout or an answer of any kind (a failed integrity
 * check included, which the device handles) goes back to the caller. */
static te_status device_exchange(net_transport *nt, te_party to, const uint8_t *req, size_t req_len, uint8_t **resp,
                                 size_t *resp_len, te_err *err)
{
    double until = now_ms() + nt->timeout_ms;
    unsigned seed = te_net_backoff_seed(nt);
    for (int attempt = 0;; attempt++) {
        te_net_stream *one = NULL;
        te_net_stream **s = nt->in_session ? &nt->session[to] : &one;
        te_status st = TE_OK;
        if (!*s && nt->n_ch[to] > 1) {
            /* A new stream's replica: EdgeA's stays the one chosen from the
             * certificate; EdgeB's is the one EdgeA's peer link picks for
             * this device session (same key, same list order), so the
             * shares EdgeB precomputed for the session are found in either
             * mode.  TE_NET_NO_AFFINITY: the next replica each time. */
            uint64_t k = to == TE_PARTY_EDGE_B ? request_affinity(req, req_len) : nt->pick_key[to];
            if (nt->no_affinity)
                nt->pick[to] = (nt->pick[to] + 1) % nt->n_ch[to];
            else if (k != nt->pick_key[to])
                nt->pick[to] = (int)((nt->pick_key[to] = k) % (uint64_t)nt->n_ch[to]);
        }
        /* A replica that cannot be reached when a stream opens (nothing has
         * been sent on it yet) is left for the next one, which the device
         * then keeps. */
        for (int tried = 0; !*s && tried < nt->n_ch[to]; tried++) {
            int left = nt->in_session ? nt->timeout_ms : (int)(until - now_ms());
            st = te_net_stream_open(nt->ch[to][nt->pick[to]], TE_SVC_INFER, left > 1 ? left : 1, s, err);
            if (st != TE_ETRANSPORT || now_ms() >= until)
                break;
            nt->pick[to] = (nt->pick[to] + 1) % nt->n_ch[to];
        }
        if (st == TE_OK)
            st = te_net_stream_exchange(*s, req, req_len, resp, resp_len, err);
        if (st == TE_OK && !nt->in_session && (st = te_net_stream_close(*s, err)) != TE_OK) {
            free(*resp);
            *resp = NULL;
            *resp_len = 0;
        }
        int unserved = te_net_stream_unserved(*s);
        if (nt->in_session) {
            if (st != TE_OK)
                close_session(nt, to); /* a broken stream is not reused */
        } else {
            te_net_stream_free(one);
        }
        if (st == TE_OK || !unserved)
            return st;
        int pause = te_net_backoff_ms(attempt, &seed);
        if (now_ms() + pause >= until)
            return te_err_wrap(err, "gave up after %d tries within %d ms", attempt + 1, nt->timeout_ms);
        nanosleep(&(struct timespec){pause / 1000, (long)(pause % 1000) * 1000000L}, NULL);
    }
}

static te_status net_call(te_transport *t, te_party to, const uint8_t *req, size_t req_len, uint8_t **resp,
                          size_t *resp_len, te_err *err)
{
    net_transport *nt = t->impl;
    *resp = NULL;
    *resp_len = 0;
    if (to != TE_PARTY_EDGE_A && to != TE_PARTY_EDGE_B)
        return te_errf(err, TE_EINVAL, "no such party");
    if (!nt->n_ch[to])
        return te_errf(err, TE_ETRANSPORT, "no address configured for Edge%c", to == TE_PARTY_EDGE_A ? 'A' : 'B');
    te_status st;
    if (nt->peer_link) {
        if (to != TE_PARTY_EDGE_B)
            return te_errf(err, TE_ETRANSPORT, "EdgeA's peer link reaches EdgeB only");
        /* te_net_unary sends a call refused unserved again itself */
        uint64_t k = nt->no_affinity ? atomic_fetch_add(&nt->next_rr, 1u) : request_affinity(req, req_len);
        int r = nt->n_ch[to] > 1 ? (int)(k % (uint64_t)nt->n_ch[to]) : 0;
        st = te_net_unary(nt->ch[to][r], TE_SVC_MASK_SHARE, req, req_len, resp, resp_len, nt->timeout_ms, err);
    } else {
        st = device_exchange(nt, to, req, req_len, resp, resp_len, err);
    }
    if (st != TE_OK)
        return st;
    if (nt->traffic) {
        pthread_mutex_lock(&nt->lock);
        te_traffic_add(nt->traffic, nt->peer_link, to, req_len, *resp_len);
        pthread_mutex_unlock(&nt->lock);
    }
    return TE_OK;
}

/* EdgeB's half of a pair, on a thread of its own. */
typedef struct pair_half {
    net_transport *nt;
    const uint8_t *req;
    size_t req_len;
    uint8_t *resp;
    size_t resp_len;
    te_status st;
    te_err err;
} pair_half;

static void *pair_half_main(void *arg)
{
    pair_half *h = arg;
    h->st = device_exchange(h->nt, TE_PARTY_EDGE_B, h->req, h->req_len, &h->resp, &h->resp_len, &h->err);
    return NULL;
}

/* Device-mediated mode: EdgeB's exchange runs on a second thread while this
 * one does EdgeA's, so a layer costs one round trip, not two.  The two use
 * disjoint state (each party's stream, completion queue and replica pick);
 * only the traffic counters are shared, under the lock. */
static te_status net_call_pair(te_transport *t, const uint8_t *const req[2], const size_t req_len[2],
                               uint8_t *resp[2], size_t resp_len[2], te_party *failed, te_err *err)
{
    net_transport *nt = t->impl;
    if (nt->peer_link || !nt->n_ch[TE_PARTY_EDGE_A] || !nt->n_ch[TE_PARTY_EDGE_B]) {
        /* not a device's link to both hosts: net_call's errors, in order */
        te_status st = TE_OK;
        for (int p = 0; p < 2 && st == TE_OK; p++)
            if ((st = net_call(t, (te_party)p, req[p], req_len[p], &resp[p], &resp_len[p], err)) != TE_OK)
                *failed = (te_party)p;
        if (st != TE_OK) {
            free(resp[0]);
            resp[0] = resp[1] = NULL;
            resp_len[0] = resp_len[1] = 0;
        }
        return st;
    }
    pair_half b = {.nt = nt, .req = req[1], .req_len = req_len[1], .st = TE_OK};
    pthread_t th;
    int threaded = pthread_create(&th, NULL, pair_half_main, &b) == 0;
    te_status sa = device_exchange(nt, TE_PARTY_EDGE_A, req[0], req_len[0], &resp[0], &resp_len[0], err);
    if (threaded)
        pthread_join(th, NULL);
    else
        pair_half_main(&b); /* no thread to be had: one after the other, still correct */
    if (nt->traffic) {
        pthread_mutex_lock(&nt->lock);
        if (sa == TE_OK)
            te_traffic_add(nt->traffic, 0, TE_PARTY_EDGE_A, req_len[0], resp_len[0]);
        if (b.st == TE_OK)
            te_traffic_add(nt->traffic, 0, TE_PARTY_EDGE_B, req_len[1], b.resp_len);
        pthread_mutex_unlock(&nt->lock);
    }
    if (sa == TE_OK && b.st == TE_OK) {
        resp[1] = b.resp;
        resp_len[1] = b.resp_len;
        return TE_OK;
    }
    free(resp[0]);
    free(b.resp);
    resp[0] = resp[1] = NULL;
    resp_len[0] = resp_len[1] = 0;
    if (sa != TE_OK) {
        *failed = TE_PARTY_EDGE_A;
        return sa;
    }
    *failed = TE_PARTY_EDGE_B;
    *err = b.err;
    return b.st;
}

static void net_destroy(te_transport *t)
{
    net_transport *nt = t->impl;
    close_session(nt, 0);
    close_session(nt, 1);
    for (int p = 0; p < 2; p++)
        for (int i = 0; i < nt->n_ch[p]; i++)
            te_net_channel_free(nt->ch[p][i]);
    pthread_mutex_destroy(&nt->lock);
    free(nt);
    free(t);
}

static te_status net_begin(te_transport *t, te_err *err)
{
    (void)err;
    net_transport *nt = t->impl;
    if (!nt->peer_link)
        nt->in_session = 1;
    return TE_OK;
}

typedef struct closer {
    net_transport *nt;
    int party;
} closer;

static void *closer_main(void *arg)
{
    closer *c = arg;
    close_session(c->nt, c->party);
    return NULL;
}

static void net_end(te_transport *t)
{
    net_transport *nt = t->impl;
    /* closing waits for the host's status: with both streams open (mediated
     * mode) the two closes overlap, one round trip instead of two */
    closer cb = {nt, 1};
    pthread_t th;
    int threaded = nt->session[0] && nt->session[1] && pthread_create(&th, NULL, closer_main, &cb) == 0;
    close_session(nt, 0);
    if (threaded)
        pthread_join(th, NULL);
    else
        close_session(nt, 1);
    nt->in_session = 0;
}

static const te_transport_ops net_ops = {.call = net_call, .destroy = net_destroy, .begin = net_begin, .end = net_end,
                                         .call_pair = net_call_pair};

te_status te_net_transport_new(const te_net_transport_config *cfg, te_transport **out, te_err *err)
{
    *out = NULL;
    te_transport *t = calloc(1, sizeof *t);
    net_transport *nt = calloc(1, sizeof *nt);
    if (!t || !nt) {
        free(t);
        free(nt);
        return te_errf(err, TE_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&nt->lock, NULL);
    atomic_init(&nt->next_rr, 0u);
    nt->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 30000;
    nt->peer_link = cfg->peer_link;
    const char *no_aff = getenv("TE_NET_NO_AFFINITY");
    nt->no_affinity = no_aff && strcmp(no_aff, "1") == 0;
    nt->traffic = cfg->traffic;
    t->ops = &net_ops;
    t->impl = nt;
    const char *addr[2] = {cfg->edge_a, cfg->edge_b};
    /* The server's certificate must name the role we expect there. */
    const char *names[2] = {TE_CN_EDGE_A, TE_CN_EDGE_B};
    uint64_t who = fnv1a(FNV_BASIS, (const uint8_t *)(cfg->creds && cfg->creds->cert_pem ? cfg->creds->cert_pem : ""),
                         cfg->creds && cfg->creds->cert_pem ? strlen(cfg->creds->cert_pem) : 0);
    for (int i = 0; i < 2; i++) {
        if (!addr[i] || !*addr[i])
            continue;
        char replicas[TE_NET_MAX_REPLICAS][1024];
        int n = split_replicas(addr[i], replicas, TE_NET_MAX_REPLICAS);
        if (n < 0) {
            net_destroy(t);
            return te_errf(err, TE_EINVAL, "%s: more than %d replicas, or an address too long", addr[i],
                           TE_NET_MAX_REPLICAS);
        }
        for (int k = 0; k < n; k++) {
            te_net_channel_config cc = {replicas[k], cfg->creds, names[i], 0};
            te_status st = te_net_channel_new(&cc, &nt->ch[i][k], err);
            if (st != TE_OK) {
                net_destroy(t);
                return st;
            }
            nt->n_ch[i]++;
        }
        /* the device's replica: from its certificate, so the same device
         * comes back to the same replica, and devices spread over them */
        nt->pick[i] = (int)((who >> (8 * i)) % (uint64_t)n);
    }
    *out = t;
    return TE_OK;
}
