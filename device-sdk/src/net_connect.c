/* The device's network link: the gRPC te_transport attached to a device. */
#include <stdlib.h>
#include <string.h>

#include "te_net_transport.h"
#include "twinedge_net.h"

struct twinedge_net {
    te_transport *t;
    te_traffic traffic;
    te_err err;
    int owns_grpc; /* no one else held gRPC when the link opened */
};

static const char net_nomem[] = "out of memory";

int twinedge_connect(twinedge_device *dev, const char *edge_a, const char *edge_b, const char *tls_dir,
                     int timeout_ms, twinedge_net **out)
{
    twinedge_net *n = calloc(1, sizeof *n);
    *out = n;
    if (!n)
        return TWINEDGE_ENOMEM;
    if (!dev || !edge_a || !edge_b || !tls_dir)
        return te_errf(&n->err, TE_EINVAL, "twinedge_connect needs a device, both host addresses and a TLS directory");
    te_net_creds creds;
    te_status st = te_net_creds_load(tls_dir, &creds, &n->err);
    if (st != TE_OK)
        return st;
    if (!creds.cert_pem) {
        te_net_creds_free(&creds);
        return te_errf(&n->err, TE_EAUTH, "%s has no device certificate (cert.pem, key.pem)", tls_dir);
    }
    n->owns_grpc = !te_net_in_use();
    te_net_transport_config tc = {edge_a, edge_b, &creds, timeout_ms, 0, &n->traffic};
    st = te_net_transport_new(&tc, &n->t, &n->err);
    te_net_creds_free(&creds);
    if (st != TE_OK)
        return st;
    return twinedge_use_transport(dev, n->t);
}

void twinedge_disconnect(twinedge_net *n)
{
    if (!n)
        return;
    if (n->t)
        n->t->ops->destroy(n->t);
    /* The app may exit right after: let gRPC's threads finish with our
     * channels first (te_net.h), unless the app holds gRPC itself. */
    if (n->t && n->owns_grpc)
        te_net_quiesce(TE_NET_QUIESCE_MS);
    free(n);
}

const char *twinedge_net_errmsg(const twinedge_net *n) { return n ? n->err.msg : net_nomem; }

int twinedge_net_get_stats(const twinedge_net *n, twinedge_net_stats *s)
{
    if (!n || !s)
        return TWINEDGE_EINVAL;
    s->bytes_up = n->traffic.device_up;
    s->bytes_down = n->traffic.device_down;
    s->bytes_to_a = n->traffic.edge_a_in;
    s->bytes_from_a = n->traffic.edge_a_out;
    s->bytes_to_b = n->traffic.edge_b_in;
    s->bytes_from_b = n->traffic.edge_b_out;
    s->messages = n->traffic.messages;
    return TWINEDGE_OK;
}
