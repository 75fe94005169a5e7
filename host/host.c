/* The host core: role A and role B of a secure linear layer (DESIGN.md). */
#include "te_host.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "te_plugin.h"
#include "te_prf.h"
#include "te_ring.h"
#include "te_wire.h"
#include "wire.pb-c.h"

#define TE_HOST_DEFAULT_MAX_BATCH 64
/* Cap on the elements one request may make a host compute (inputs or
 * outputs); bounds the memory a single request can claim. */
#define TE_HOST_MAX_ELEMS ((uint64_t)1 << 28)

typedef struct host_layer {
    te_linear_geom geom;
    te_plugin_layer *pl;
} host_layer;

typedef struct host_deployment {
    char id[33];
    int n_layers;
    host_layer *layers;
} host_deployment;

struct te_host {
    te_role role;
    uint64_t max_batch;
    te_plugin *plugin;
    te_transport *peer;
    pthread_rwlock_t lock;          /* guards deployments and devices */
    int n_deployments;
    host_deployment *deployments;
    int n_devices;
    te_device_key *devices;
};

te_role te_host_role(const te_host *h) { return h->role; }

const char *te_host_plugin_name(const te_host *h) { return te_plugin_get_ops(h->plugin)->name; }

te_status te_host_new(const te_host_config *cfg, te_host **out, te_err *err)
{
    *out = NULL;
    if (cfg->role != TE_ROLE_A && cfg->role != TE_ROLE_B)
        return te_errf(err, TE_EINVAL, "host role must be A or B");
    te_host *h = calloc(1, sizeof *h);
    if (!h)
        return te_errf(err, TE_ENOMEM, "out of memory");
    h->role = cfg->role;
    h->max_batch = cfg->max_batch ? cfg->max_batch : TE_HOST_DEFAULT_MAX_BATCH;
    if (pthread_rwlock_init(&h->lock, NULL) != 0) {
        free(h);
        return te_errf(err, TE_ENOMEM, "cannot create host lock");
    }
    const char *want = cfg->plugin ? cfg->plugin : "cpu";
    te_status st = te_plugin_open(want, cfg->plugin_config, &h->plugin, err);
    if (st != TE_OK && cfg->fallback_plugin) {
        char msg[TE_ERR_MSG_MAX + 128];
        snprintf(msg, sizeof msg, "compute plugin '%s' unavailable (%s); falling back to '%s' as configured", want,
                 err ? err->msg : "error", cfg->fallback_plugin);
        if (cfg->log)
            cfg->log(cfg->log_ctx, msg);
        st = te_plugin_open(cfg->fallback_plugin, NULL, &h->plugin, err);
    }
    if (st != TE_OK) {
        pthread_rwlock_destroy(&h->lock);
        free(h);
        return st;
    }
    te_plugin_caps caps;
    memset(&caps, 0, sizeof caps);
    const te_plugin_ops *ops = te_plugin_get_ops(h->plugin);
    st = ops->caps(te_plugin_get_ctx(h->plugin), &caps, err);
    if (st != TE_OK) {
        te_host_free(h);
        return st;
    }
    if (caps.min_ring_bits > 1 || caps.max_ring_bits < 64) {
        /* The device picks ring widths per layer up to 64; a plugin that
         * cannot serve them all would fail requests at random later. */
        te_host_free(h);
        return te_errf(err, TE_EPLUGIN, "plugin '%s' supports ring widths %u..%u only; twinedge needs 1..64",
                       ops->name, caps.min_ring_bits, caps.max_ring_bits);
    }
    if (caps.max_batch && caps.max_batch < h->max_batch)
        h->max_batch = caps.max_batch;
    *out = h;
    return TE_OK;
}

static void deployment_release(te_host *h, host_deployment *d)
{
    const te_plugin_ops *ops = te_plugin_get_ops(h->plugin);
    for (int i = 0; i < d->n_layers; i++)
        if (d->layers[i].pl)
            ops->release_layer(te_plugin_get_ctx(h->plugin), d->layers[i].pl);
    free(d->layers);
    d->layers = NULL;
    d->n_layers = 0;
}

void te_host_free(te_host *h)
{
    if (!h)
        return;
    for (int i = 0; i < h->n_deployments; i++)
        deployment_release(h, &h->deployments[i]);
    free(h->deployments);
    if (h->devices)
        memset(h->devices, 0, (size_t)h->n_devices * sizeof *h->devices); /* keys */
    free(h->devices);
    te_plugin_close(h->plugin);
    pthread_rwlock_destroy(&h->lock);
    free(h);
}

te_status te_host_deploy(te_host *h, const te_model *edge, te_err *err)
{
    if (strlen(edge->deployment_id) == 0)
        return te_errf(err, TE_EINVAL, "edge bundle has no deployment id");
    host_deployment d;
    memset(&d, 0, sizeof d);
    memcpy(d.id, edge->deployment_id, sizeof d.id);
    d.id[32] = '\0';
    d.n_layers = edge->n_layers;
    d.layers = calloc((size_t)(edge->n_layers ? edge->n_layers : 1), sizeof *d.layers);
    if (!d.layers)
        return te_errf(err, TE_ENOMEM, "out of memory");
    const te_plugin_ops *ops = te_plugin_get_ops(h->plugin);
    for (int i = 0; i < edge->n_layers; i++) {
        const te_layer *L = &edge->layers[i];
        if (!L->w) {
            deployment_release(h, &d);
            return te_errf(err, TE_EFORMAT, "edge layer %d has no weights", i);
        }
        d.layers[i].geom = L->geom;
        te_status st = ops->load_layer(te_plugin_get_ctx(h->plugin), &L->geom, L->w, &d.layers[i].pl, err);
        if (st != TE_OK) {
            deployment_release(h, &d);
            return te_err_wrap(err, "loading layer %d (%s) into plugin '%s'", i, L->name ? L->name : "?",
                               ops->name);
        }
    }
    pthread_rwlock_wrlock(&h->lock);
    for (int i = 0; i < h->n_deployments; i++) {
        if (strcmp(h->deployments[i].id, d.id) == 0) {
            host_deployment old = h->deployments[i];
            h->deployments[i] = d;
            pthread_rwlock_unlock(&h->lock);
            deployment_release(h, &old);
            return TE_OK;
        }
    }
    host_deployment *nd = realloc(h->deployments, (size_t)(h->n_deployments + 1) * sizeof *nd);
    if (!nd) {
        pthread_rwlock_unlock(&h->lock);
        deployment_release(h, &d);
        return te_errf(err, TE_ENOMEM, "out of memory");
    }
    h->deployments = nd;
    h->deployments[h->n_deployments++] = d;
    pthread_rwlock_unlock(&h->lock);
    return TE_OK;
}

te_status te_host_deploy_file(te_host *h, const char *path, te_err *err)
{
    te_model *m = NULL;
    te_status st = te_edge_bundle_read(path, &m, err);
    if (st != TE_OK)
        return st;
    st = te_host_deploy(h, m, err);
    te_model_free(m);
    return st;
}

te_status te_host_register_device(te_host *h, const te_device_key *key, te_err *err)
{
    if (h->role != TE_ROLE_B)
        return te_errf(err, TE_EINVAL, "only EdgeB holds device keys");
    pthread_rwlock_wrlock(&h->lock);
    for (int i = 0; i < h->n_devices; i++) {
        if (strcmp(h->devices[i].device_id, key->device_id) == 0) {
            h->devices[i] = *key;
            pthread_rwlock_unlock(&h->lock);
            return TE_OK;
        }
    }
    te_device_key *nd = realloc(h->devices, (size_t)(h->n_devices + 1) * sizeof *nd);
    if (!nd) {
        pthread_rwlock_unlock(&h->lock);
        return te_errf(err, TE_ENOMEM, "out of memory");
    }
    h->devices = nd;
    h->devices[h->n_devices++] = *key;
    pthread_rwlock_unlock(&h->lock);
    return TE_OK;
}

void te_host_set_peer(te_host *h, te_transport *peer) { h->peer = peer; }

/* Build a serialized LayerResponse. */
static te_status respond(te_status code, const char *msg, const uint8_t *data, size_t len, uint8_t **out,
                         size_t *out_len, te_err *err)
{
    Twinedge__LayerResponse r = TWINEDGE__LAYER_RESPONSE__INIT;
    r.status = (uint32_t)code;
    r.error = (char *)(msg ? msg : "");
    r.data.data = (uint8_t *)data;
    r.data.len = data ? len : 0;
    size_t n = twinedge__layer_response__get_packed_size(&r);
    *out = malloc(n ? n : 1);
    if (!*out)
        return te_errf(err, TE_ENOMEM, "out of memory");
    *out_len = twinedge__layer_response__pack(&r, *out);
    return TE_OK;
}

/* Look up the layer a request names; fills geom and the plugin handle. */
static te_status find_layer(te_host *h, const Twinedge__LayerRequest *q, host_layer *out, te_err *err)
{
    te_status st = TE_OK;
    pthread_rwlock_rdlock(&h->lock);
    const host_deployment *d = NULL;
    for (int i = 0; i < h->n_deployments; i++)
        if (q->deployment_id && strcmp(h->deployments[i].id, q->deployment_id) == 0)
            d = &h->deployments[i];
    if (!d)
        st = te_errf(err, TE_EINVAL, "unknown deployment '%.40s'", q->deployment_id ? q->deployment_id : "");
    else if (q->layer >= (uint32_t)d->n_layers)
        st = te_errf(err, TE_EINVAL, "unknown layer %u (deployment has %d linear layers)", q->layer, d->n_layers);
    else
        *out = d->layers[q->layer];
    pthread_rwlock_unlock(&h->lock);
    return st;
}

static te_status find_key(te_host *h, const char *deployment, const char *device, uint8_t key[TE_KEY_BYTES],
                          te_err *err)
{
    te_status st = te_errf(err, TE_EAUTH, "unknown device '%.64s'", device ? device : "");
    pthread_rwlock_rdlock(&h->lock);
    for (int i = 0; i < h->n_devices; i++) {
        if (device && strcmp(h->devices[i].device_id, device) == 0 &&
            strcmp(h->devices[i].deployment_id, deployment) == 0) {
            memcpy(key, h->devices[i].key, TE_KEY_BYTES);
            st = TE_OK;
            te_err_clear(err);
            break;
        }
    }
    pthread_rwlock_unlock(&h->lock);
    return st;
}

static te_status run_layer(te_host *h, const host_layer *hl, unsigned l, uint64_t batch, const uint64_t *in,
                           uint64_t *out, te_err *err)
{
    const te_plugin_ops *ops = te_plugin_get_ops(h->plugin);
    te_status st = ops->run(te_plugin_get_ctx(h->plugin), hl->pl, l, batch, in, out, err);
    if (st != TE_OK)
        return te_err_wrap(err, "plugin '%s'", ops->name);
    return TE_OK;
}

/* Ask EdgeB for W.M + Z (relay mode) and subtract it from wa in place. */
static te_status relay_from_b(te_host *h, const Twinedge__LayerRequest *q, size_t out_n, uint64_t *wa,
                              te_err *err)
{
    if (!h->peer)
        return te_errf(err, TE_EINVAL, "relay mode requested but this EdgeA has no EdgeB peer configured");
    Twinedge__LayerRequest bq = *q;
    bq.data.data = NULL;
    bq.data.len = 0;
    size_t n = twinedge__layer_request__get_packed_size(&bq);
    uint8_t *buf = malloc(n ? n : 1);
    if (!buf)
        return te_errf(err, TE_ENOMEM, "out of memory");
    twinedge__layer_request__pack(&bq, buf);
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    te_status st = te_transport_call(h->peer, TE_PARTY_EDGE_B, buf, n, &resp, &resp_len, err);
    free(buf);
    if (st != TE_OK)
        return te_err_wrap(err, "EdgeA -> EdgeB");
    uint64_t *wmz = malloc((out_n ? out_n : 1) * sizeof *wmz);
    if (!wmz)
        st = te_errf(err, TE_ENOMEM, "out of memory");
    else if ((st = te_wire_read_response(resp, resp_len, "EdgeB", q->layer, out_n, q->ring_bits, wmz, err)) == TE_OK)
        te_ring_vsub(wa, wa, wmz, out_n, q->ring_bits);
    free(resp);
    free(wmz);
    return st;
}

/* The body of a request; on error, err holds the message for the response. */
static te_status serve(te_host *h, const te_caller *caller, const Twinedge__LayerRequest *q, uint8_t **packed,
                       size_t *packed_len, te_err *err)
{
    host_layer hl;
    te_status st = find_layer(h, q, &hl, err);
    if (st != TE_OK)
        return st;
    unsigned l = q->ring_bits;
    if (l < 1 || l > 64)
        return te_errf(err, TE_EINVAL, "ring width %u out of range 1..64", l);
    if (q->batch < 1 || q->batch > h->max_batch)
        return te_errf(err, TE_EINVAL, "batch %llu out of range 1..%llu", (unsigned long long)q->batch,
                       (unsigned long long)h->max_batch);
    uint64_t in_len = (uint64_t)te_geom_in_len(&hl.geom), out_len = (uint64_t)te_geom_out_len(&hl.geom);
    if (in_len * q->batch > TE_HOST_MAX_ELEMS || out_len * q->batch > TE_HOST_MAX_ELEMS)
        return te_errf(err, TE_EINVAL, "request too large");
    size_t in_n = (size_t)(in_len * q->batch), out_n = (size_t)(out_len * q->batch);
    int relay = q->mode == TWINEDGE__MODE__MODE_RELAY;

    uint64_t *in = malloc(in_n * sizeof *in), *out = malloc(out_n * sizeof *out);
    if (!in || !out) {
        free(in);
        free(out);
        return te_errf(err, TE_ENOMEM, "out of memory");
    }
    if (h->role == TE_ROLE_A) {
        size_t want = te_pack_bytes(in_n, l);
        if (q->data.len != want) {
            st = te_errf(err, TE_ESHAPE,
                         "wrong shape: layer %u expects %zu elements of %u bits (%zu bytes), got %zu bytes",
                         q->layer, in_n, l, want, q->data.len);
        } else if ((st = te_unpack(q->data.data, q->data.len, in_n, l, in, err)) == TE_OK &&
                   (st = run_layer(h, &hl, l, q->batch, in, out, err)) == TE_OK && relay) {
            st = relay_from_b(h, q, out_n, out, err);
        }
    } else {
        /* EdgeB hands W.M in the clear only to the device it belongs to
         * (mediated), and only W.M + Z to EdgeA (relay): W.M in EdgeA's
         * hands would unmask W.x. */
        uint8_t key[TE_KEY_BYTES];
        if (caller->kind == TE_CALLER_EDGE_A && !relay)
            st = te_errf(err, TE_EAUTH, "EdgeB serves EdgeA in relay mode only");
        else if (caller->kind == TE_CALLER_DEVICE &&
                 (!caller->name || !q->device_id || strcmp(caller->name, q->device_id) != 0))
            st = te_errf(err, TE_EAUTH, "device '%.64s' may not ask for device '%.64s'",
                         caller->name ? caller->name : "", q->device_id ? q->device_id : "");
        else if (caller->kind == TE_CALLER_DEVICE && relay)
            st = te_errf(err, TE_EINVAL, "relay shares go to EdgeA, not to the device");
        else if (q->data.len != 0)
            st = te_errf(err, TE_EINVAL, "EdgeB requests carry no data");
        else
            st = find_key(h, q->deployment_id, q->device_id, key, err);
        if (st == TE_OK)
            st = te_prf_ring(key, q->counter, q->layer, TE_PRF_MASK, l, in, in_n, err);
        if (st == TE_OK)
            st = run_layer(h, &hl, l, q->batch, in, out, err);
        if (st == TE_OK && relay) {
            /* reuse `in` for Z when it is large enough, else a new buffer */
            uint64_t *z = out_n <= in_n ? in : malloc(out_n * sizeof *z);
            if (!z)
                st = te_errf(err, TE_ENOMEM, "out of memory");
            else if ((st = te_prf_ring(key, q->counter, q->layer, TE_PRF_OUT, l, z, out_n, err)) == TE_OK)
                te_ring_vadd(out, out, z, out_n, l);
            if (z && z != in)
                free(z);
        }
        memset(key, 0, sizeof key);
    }
    if (st == TE_OK) {
        *packed_len = te_pack_bytes(out_n, l);
        *packed = malloc(*packed_len ? *packed_len : 1);
        if (!*packed)
            st = te_errf(err, TE_ENOMEM, "out of memory");
        else
            te_pack(out, out_n, l, *packed);
    }
    free(in);
    free(out);
    return st;
}

te_status te_host_handle(te_host *h, const te_caller *caller, const uint8_t *req, size_t req_len, uint8_t **resp,
                         size_t *resp_len, te_err *err)
{
    *resp = NULL;
    *resp_len = 0;
    te_err e;
    te_err_clear(&e);
    Twinedge__LayerRequest *q = twinedge__layer_request__unpack(NULL, req_len, req);
    if (!q)
        return respond(TE_EFORMAT, "malformed LayerRequest", NULL, 0, resp, resp_len, err);
    uint8_t *packed = NULL;
    size_t packed_len = 0;
    te_status st = serve(h, caller, q, &packed, &packed_len, &e);
    twinedge__layer_request__free_unpacked(q, NULL);
    if (st == TE_ENOMEM)
        return te_errf(err, TE_ENOMEM, "%s", e.msg);
    st = st == TE_OK ? respond(TE_OK, NULL, packed, packed_len, resp, resp_len, err)
                     : respond(st, e.msg, NULL, 0, resp, resp_len, err);
    free(packed);
    return st;
}
