/* te_transport over gRPC (see te_net_transport.h). */
#include "te_net_transport.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

typedef struct net_transport {
    te_net_channel *ch[2];       /* by te_party */
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

static te_status net_call(te_transport *t, te_party to, const uint8_t *req, size_t req_len, uint8_t **resp,
                          size_t *resp_len, te_err *err)
{
    net_transport *nt = t->impl;
    *resp = NULL;
    *resp_len = 0;
    if (to != TE_PARTY_EDGE_A && to != TE_PARTY_EDGE_B)
        return te_errf(err, TE_EINVAL, "no such party");
    te_net_channel *ch = nt->ch[to];
    if (!ch)
        return te_errf(err, TE_ETRANSPORT, "no address configured for Edge%c", to == TE_PARTY_EDGE_A ? 'A' : 'B');
    te_status st;
    if (nt->peer_link) {
        if (to != TE_PARTY_EDGE_B)
            return te_errf(err, TE_ETRANSPORT, "EdgeA's peer link reaches EdgeB only");
        st = te_net_unary(ch, TE_SVC_MASK_SHARE, req, req_len, resp, resp_len, nt->timeout_ms, err);
    } else if (nt->in_session) {
        if (!nt->session[to])
            st = te_net_stream_open(ch, TE_SVC_INFER, nt->timeout_ms, &nt->session[to], err);
        else
            st = TE_OK;
        if (st == TE_OK)
            st = te_net_stream_exchange(nt->session[to], req, req_len, resp, resp_len, err);
        if (st != TE_OK)
            close_session(nt, to); /* a broken stream is not reused */
    } else {
        te_net_stream *s = NULL;
        st = te_net_stream_open(ch, TE_SVC_INFER, nt->timeout_ms, &s, err);
        if (st == TE_OK)
            st = te_net_stream_exchange(s, req, req_len, resp, resp_len, err);
        if (st == TE_OK && (st = te_net_stream_close(s, err)) != TE_OK) {
            free(*resp);
            *resp = NULL;
            *resp_len = 0;
        }
        te_net_stream_free(s);
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

static void net_destroy(te_transport *t)
{
    net_transport *nt = t->impl;
    close_session(nt, 0);
    close_session(nt, 1);
    te_net_channel_free(nt->ch[0]);
    te_net_channel_free(nt->ch[1]);
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

static void net_end(te_transport *t)
{
    net_transport *nt = t->impl;
    close_session(nt, 0);
    close_session(nt, 1);
    nt->in_session = 0;
}

static const te_transport_ops net_ops = {.call = net_call, .destroy = net_destroy, .begin = net_begin, .end = net_end};

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
    nt->timeout_ms = cfg->timeout_ms > 0 ? cfg->timeout_ms : 30000;
    nt->peer_link = cfg->peer_link;
    nt->traffic = cfg->traffic;
    t->ops = &net_ops;
    t->impl = nt;
    const char *addr[2] = {cfg->edge_a, cfg->edge_b};
    /* The server's certificate must name the role we expect there. */
    const char *names[2] = {TE_CN_EDGE_A, TE_CN_EDGE_B};
    for (int i = 0; i < 2; i++) {
        if (!addr[i] || !*addr[i])
            continue;
        te_net_channel_config cc = {addr[i], cfg->creds, names[i], 0};
        te_status st = te_net_channel_new(&cc, &nt->ch[i], err);
        if (st != TE_OK) {
            net_destroy(t);
            return st;
        }
    }
    *out = t;
    return TE_OK;
}
