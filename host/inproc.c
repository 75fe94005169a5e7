/* The in-process transport: the device and both hosts in one process.
 * Same serialized messages and the same byte accounting as the network. */
#include <stdlib.h>
#include <stdio.h>
#include <string.h>

#include "te_host.h"

typedef struct inproc {
    te_inproc_config cfg;
    char device_id[64];
    int from_edge_a; /* this link is EdgeA's peer link to EdgeB */
} inproc;

static te_status inproc_call(te_transport *t, te_party to, const uint8_t *req, size_t req_len, uint8_t **resp,
                             size_t *resp_len, te_err *err)
{
    inproc *ip = t->impl;
    te_host *h = to == TE_PARTY_EDGE_A ? ip->cfg.edge_a : ip->cfg.edge_b;
    if (!h)
        return te_errf(err, TE_ETRANSPORT, "no Edge%c in this in-process transport", to == TE_PARTY_EDGE_A ? 'A' : 'B');
    if (ip->from_edge_a && to != TE_PARTY_EDGE_B)
        return te_errf(err, TE_ETRANSPORT, "EdgeA's peer link reaches EdgeB only");
    te_caller caller = {ip->from_edge_a ? TE_CALLER_EDGE_A : TE_CALLER_DEVICE, ip->device_id};
    te_traffic *tr = ip->cfg.traffic;
    if (ip->cfg.tap)
        ip->cfg.tap(ip->cfg.tap_ctx, to, 0, req, req_len);
    te_status st = te_host_handle(h, &caller, req, req_len, resp, resp_len, err);
    if (st != TE_OK)
        return st;
    if (ip->from_edge_a && ip->cfg.tap)
        ip->cfg.tap(ip->cfg.tap_ctx, TE_PARTY_EDGE_A, 1, *resp, *resp_len);
    te_traffic_add(tr, ip->from_edge_a, to, req_len, *resp_len);
    return TE_OK;
}

static void inproc_destroy(te_transport *t)
{
    free(t->impl);
    free(t);
}

static const te_transport_ops inproc_ops = {.call = inproc_call, .destroy = inproc_destroy};

static te_status make(const te_inproc_config *cfg, int from_edge_a, te_transport **out, te_err *err)
{
    *out = NULL;
    te_transport *t = calloc(1, sizeof *t);
    inproc *ip = calloc(1, sizeof *ip);
    if (!t || !ip) {
        free(t);
        free(ip);
        return te_errf(err, TE_ENOMEM, "out of memory");
    }
    ip->cfg = *cfg;
    if (cfg->device_id)
        snprintf(ip->device_id, sizeof ip->device_id, "%s", cfg->device_id);
    ip->cfg.device_id = ip->device_id;
    ip->from_edge_a = from_edge_a;
    t->ops = &inproc_ops;
    t->impl = ip;
    *out = t;
    return TE_OK;
}

te_status te_inproc_transport_new(const te_inproc_config *cfg, te_transport **t, te_err *err)
{
    return make(cfg, 0, t, err);
}

te_status te_inproc_peer_new(const te_inproc_config *cfg, te_transport **t, te_err *err)
{
    return make(cfg, 1, t, err);
}

void te_transport_free(te_transport *t)
{
    if (t)
        t->ops->destroy(t);
}
