/* The twinedge.EdgeHost service: who may call what, and the figures. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "health.pb-c.h"
#include "hostd.h"
#include "service.pb-c.h"
#include "te_net_transport.h"
#include "wire.pb-c.h"

#define HOSTD_MAX_LAYER_STATS 4096

te_status hostd_service_init(hostd_service *svc, te_host *h, te_role role, const char *store, hostd_log_fn log,
                             te_err *err)
{
    memset(svc, 0, sizeof *svc);
    svc->host = h;
    svc->role = role;
    svc->store = store;
    svc->log = log;
    atomic_init(&svc->peer_ok, 1);
    if (pthread_mutex_init(&svc->lock, NULL) != 0)
        return te_errf(err, TE_ENOMEM, "cannot create a lock");
    return TE_OK;
}

void hostd_service_free(hostd_service *svc)
{
    pthread_mutex_destroy(&svc->lock);
    free(svc->layers);
    svc->layers = NULL;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void deny(te_net_reply *r, int code, const char *fmt, const char *who)
{
    r->code = code;
    snprintf(r->msg, sizeof r->msg, fmt, who);
}

static void account(hostd_service *svc, const char *deployment, uint32_t layer, int failed, size_t in, size_t out,
                    double ms)
{
    if (svc->metrics) {
        hostd_metrics_layer(svc->metrics, svc->role == TE_ROLE_A ? "a" : "b", deployment, layer, ms);
        if (failed)
            hostd_metrics_error(svc->metrics, te_status_name((te_status)failed));
    }
    pthread_mutex_lock(&svc->lock);
    svc->requests++;
    svc->errors += failed != 0;
    svc->bytes_in += in;
    svc->bytes_out += out;
    hostd_layer_stats *ls = NULL;
    for (int i = 0; i < svc->n_layers && !ls; i++)
        if (svc->layers[i].layer == layer && strcmp(svc->layers[i].deployment, deployment) == 0)
            ls = &svc->layers[i];
    if (!ls && svc->n_layers < HOSTD_MAX_LAYER_STATS) {
        hostd_layer_stats *nl = realloc(svc->layers, (size_t)(svc->n_layers + 1) * sizeof *nl);
        if (nl) {
            svc->layers = nl;
            ls = &nl[svc->n_layers++];
            memset(ls, 0, sizeof *ls);
            snprintf(ls->deployment, sizeof ls->deployment, "%s", deployment);
            ls->layer = layer;
        }
    }
    if (ls) {
        ls->requests++;
        ls->errors += failed != 0;
        ls->total_ms += ms;
        if (ms > ls->max_ms)
            ls->max_ms = ms;
    }
    pthread_mutex_unlock(&svc->lock);
}

/* One LayerRequest through the host core, with the figures: the core says
 * what became of it, so nothing here parses the messages again. */
static void handle_layer(hostd_service *svc, const te_caller *caller, const te_net_msg *m, te_net_reply *r)
{
    double t0 = now_ms();
    te_err err;
    te_err_clear(&err);
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    te_host_outcome oc;
    te_status st = te_host_serve(svc->host, caller, m->data, m->len, &resp, &resp_len, &oc, &err);
    if (st != TE_OK) {
        r->code = TE_NET_INTERNAL;
        snprintf(r->msg, sizeof r->msg, "%s", err.msg);
        return;
    }
    int failed = (int)oc.status; /* a te_status: 0 when served, else the reason (metrics) */
    if (failed && svc->log) /* a refusal is an error for the operator, whoever caused it */
        hostd_logf(HOSTD_ERROR, "%s request for layer %u refused: %s",
                   caller->kind == TE_CALLER_EDGE_A ? "EdgeA" : caller->name, oc.layer, oc.error);
    account(svc, oc.deployment[0] ? oc.deployment : "?", oc.layer, failed, m->len, resp_len, now_ms() - t0);
    r->data = resp;
    r->len = resp_len;
}

static void infer_fn(void *ctx, const char *peer, const te_net_msg *msgs, size_t n, te_net_reply *r)
{
    hostd_service *svc = ctx;
    size_t pl = strlen(TE_CN_DEVICE_PREFIX);
    if (strncmp(peer, TE_CN_DEVICE_PREFIX, pl) != 0 || !peer[pl]) {
        deny(r, TE_NET_PERMISSION_DENIED, "Infer is for devices; '%s' is not one", peer);
        return;
    }
    te_caller caller = {TE_CALLER_DEVICE, peer + pl};
    handle_layer(svc, &caller, &msgs[0], r);
}

static void infer_ended(void *ctx, const char *peer)
{
    hostd_service *svc = ctx;
    size_t pl = strlen(TE_CN_DEVICE_PREFIX);
    if (strncmp(peer, TE_CN_DEVICE_PREFIX, pl) == 0 && peer[pl])
        te_host_stream_ended(svc->host, peer + pl);
}

static void mask_share_fn(void *ctx, const char *peer, const te_net_msg *msgs, size_t n, te_net_reply *r)
{
    hostd_service *svc = ctx;
    if (svc->role != TE_ROLE_B) {
        deny(r, TE_NET_UNIMPLEMENTED, "MaskShare is served by EdgeB (asked by %s)", peer);
        return;
    }
    if (strcmp(peer, TE_CN_EDGE_A) != 0) {
        deny(r, TE_NET_PERMISSION_DENIED, "MaskShare is for EdgeA only; '%s' may not ask", peer);
        return;
    }
    te_caller caller = {TE_CALLER_EDGE_A, NULL};
    handle_layer(svc, &caller, &msgs[0], r);
}

static void deploy_fn(void *ctx, const char *peer, const te_net_msg *msgs, size_t n, te_net_reply *r)
{
    hostd_service *svc = ctx;
    if (strcmp(peer, TE_CN_OWNER) != 0) {
        deny(r, TE_NET_PERMISSION_DENIED, "only the owner may deploy; '%s' may not", peer);
        return;
    }
    size_t total = 0;
    Twinedge__DeployChunk **chunks = calloc(n ? n : 1, sizeof *chunks);
    if (!chunks) {
        deny(r, TE_NET_RESOURCE_EXHAUSTED, "out of memory%s", "");
        return;
    }
    int ok = 1;
    for (size_t i = 0; i < n && ok; i++) {
        chunks[i] = twinedge__deploy_chunk__unpack(NULL, msgs[i].len, msgs[i].data);
        ok = chunks[i] != NULL;
        if (ok)
            total += chunks[i]->data.len;
    }
    uint8_t *buf = ok ? malloc(total ? total : 1) : NULL;
    te_model *m = NULL;
    te_err err;
    te_err_clear(&err);
    if (!ok) {
        deny(r, TE_NET_INVALID_ARGUMENT, "malformed DeployChunk%s", "");
    } else if (!buf) {
        deny(r, TE_NET_RESOURCE_EXHAUSTED, "out of memory%s", "");
    } else {
        size_t off = 0;
        for (size_t i = 0; i < n; i++) {
            if (chunks[i]->data.len) /* an empty chunk has no data pointer */
                memcpy(buf + off, chunks[i]->data.data, chunks[i]->data.len);
            off += chunks[i]->data.len;
        }
        if (te_edge_bundle_parse(buf, total, &m, &err) != TE_OK) {
            deny(r, TE_NET_INVALID_ARGUMENT, "not an edge bundle: %s", err.msg);
        } else if (te_host_deploy(svc->host, m, &err) != TE_OK) {
            deny(r, TE_NET_FAILED_PRECONDITION, "cannot deploy: %s", err.msg);
        } else if (hostd_store_put_bundle(svc->store, m->deployment_id, buf, total, &err) != TE_OK) {
            deny(r, TE_NET_INTERNAL, "deployed but not stored: %s", err.msg);
        } else {
            Twinedge__DeployReply rep = TWINEDGE__DEPLOY_REPLY__INIT;
            rep.deployment_id = m->deployment_id;
            rep.layers = (uint32_t)m->n_layers;
            r->len = twinedge__deploy_reply__get_packed_size(&rep);
            r->data = malloc(r->len ? r->len : 1);
            if (!r->data) {
                deny(r, TE_NET_RESOURCE_EXHAUSTED, "out of memory%s", "");
            } else {
                twinedge__deploy_reply__pack(&rep, r->data);
                pthread_mutex_lock(&svc->lock);
                svc->deployments++;
                pthread_mutex_unlock(&svc->lock);
                if (svc->log)
                    svc->log("deployed %s (%d linear layers, %zu bytes), stored", m->deployment_id, m->n_layers,
                             total);
            }
        }
    }
    te_model_free(m);
    free(buf);
    for (size_t i = 0; i < n; i++)
        if (chunks[i])
            twinedge__deploy_chunk__free_unpacked(chunks[i], NULL);
    free(chunks);
}

static int pack_ack(te_net_reply *r, const char *msg)
{
    Twinedge__Ack a = TWINEDGE__ACK__INIT;
    a.message = (char *)msg;
    r->len = twinedge__ack__get_packed_size(&a);
    r->data = malloc(r->len ? r->len : 1);
    if (!r->data)
        return 0;
    twinedge__ack__pack(&a, r->data);
    return 1;
}

static void register_fn(void *ctx, const char *peer, const te_net_msg *msgs, size_t n, te_net_reply *r)
{
    hostd_service *svc = ctx;
    if (svc->role != TE_ROLE_B) {
        deny(r, TE_NET_UNIMPLEMENTED, "only EdgeB holds device keys (asked by %s)", peer);
        return;
    }
    if (strcmp(peer, TE_CN_OWNER) != 0) {
        deny(r, TE_NET_PERMISSION_DENIED, "only the owner may register devices; '%s' may not", peer);
        return;
    }
    Twinedge__DeviceKeyMsg *km = twinedge__device_key_msg__unpack(NULL, msgs[0].len, msgs[0].data);
    if (!km) {
        deny(r, TE_NET_INVALID_ARGUMENT, "malformed DeviceKeyMsg%s", "");
        return;
    }
    te_device_key k;
    memset(&k, 0, sizeof k);
    te_err err;
    te_err_clear(&err);
    if (!km->device_id || !km->deployment_id || strlen(km->device_id) >= sizeof k.device_id ||
        strlen(km->deployment_id) >= sizeof k.deployment_id || km->key.len != TE_KEY_BYTES) {
        deny(r, TE_NET_INVALID_ARGUMENT, "device key message with bad fields%s", "");
    } else {
        memcpy(k.device_id, km->device_id, strlen(km->device_id) + 1);
        memcpy(k.deployment_id, km->deployment_id, strlen(km->deployment_id) + 1);
        memcpy(k.key, km->key.data, TE_KEY_BYTES);
        if (hostd_store_put_device(svc->store, &k, &err) != TE_OK)
            deny(r, TE_NET_INVALID_ARGUMENT, "cannot store the key: %s", err.msg);
        else if (te_host_register_device(svc->host, &k, &err) != TE_OK)
            deny(r, TE_NET_INTERNAL, "cannot register: %s", err.msg);
        else if (!pack_ack(r, "registered"))
            deny(r, TE_NET_RESOURCE_EXHAUSTED, "out of memory%s", "");
        else {
            pthread_mutex_lock(&svc->lock);
            svc->devices++;
            pthread_mutex_unlock(&svc->lock);
            if (svc->log)
                svc->log("registered device %s for deployment %s", k.device_id, k.deployment_id);
        }
    }
    if (km->key.data)
        memset(km->key.data, 0, km->key.len);
    twinedge__device_key_msg__free_unpacked(km, NULL);
    memset(&k, 0, sizeof k);
}

static void stats_fn(void *ctx, const char *peer, const te_net_msg *msgs, size_t n, te_net_reply *r)
{
    hostd_service *svc = ctx;
    /* The figures tell when and how much each device asks: the owner's only. */
    if (strcmp(peer, TE_CN_OWNER) != 0) {
        deny(r, TE_NET_PERMISSION_DENIED, "only the owner may read the figures; '%s' may not", peer);
        return;
    }
    Twinedge__StatsReply rep = TWINEDGE__STATS_REPLY__INIT;
    pthread_mutex_lock(&svc->lock);
    rep.role = svc->role == TE_ROLE_A ? "A" : "B";
    rep.requests = svc->requests;
    rep.errors = svc->errors;
    rep.bytes_in = svc->bytes_in;
    rep.bytes_out = svc->bytes_out;
    rep.deployments = (uint32_t)svc->deployments;
    rep.devices = (uint32_t)svc->devices;
    int nl = svc->n_layers;
    Twinedge__LayerStats *ls = calloc((size_t)(nl ? nl : 1), sizeof *ls);
    Twinedge__LayerStats **lp = calloc((size_t)(nl ? nl : 1), sizeof *lp);
    if (ls && lp) {
        for (int i = 0; i < nl; i++) {
            twinedge__layer_stats__init(&ls[i]);
            ls[i].deployment_id = svc->layers[i].deployment;
            ls[i].layer = svc->layers[i].layer;
            ls[i].requests = svc->layers[i].requests;
            ls[i].errors = svc->layers[i].errors;
            ls[i].total_ms = svc->layers[i].total_ms;
            ls[i].max_ms = svc->layers[i].max_ms;
            lp[i] = &ls[i];
        }
        rep.n_layers = (size_t)nl;
        rep.layers = lp;
        r->len = twinedge__stats_reply__get_packed_size(&rep);
        r->data = malloc(r->len ? r->len : 1);
        if (r->data)
            twinedge__stats_reply__pack(&rep, r->data);
    }
    pthread_mutex_unlock(&svc->lock);
    if (!r->data)
        deny(r, TE_NET_RESOURCE_EXHAUSTED, "out of memory%s", "");
    free(ls);
    free(lp);
}

int hostd_service_serving(hostd_service *svc)
{
    pthread_mutex_lock(&svc->lock);
    int deployed = svc->deployments > 0;
    pthread_mutex_unlock(&svc->lock);
    return deployed && atomic_load(&svc->peer_ok);
}

static void health_fn(void *ctx, const char *peer, const te_net_msg *msgs, size_t n, te_net_reply *r)
{
    hostd_service *svc = ctx;
    Grpc__Health__V1__HealthCheckRequest *q = grpc__health__v1__health_check_request__unpack(NULL, msgs[0].len,
                                                                                          msgs[0].data);
    if (!q) {
        deny(r, TE_NET_INVALID_ARGUMENT, "malformed HealthCheckRequest%s", "");
        return;
    }
    int known = !q->service || !*q->service || strcmp(q->service, "twinedge.EdgeHost") == 0;
    grpc__health__v1__health_check_request__free_unpacked(q, NULL);
    if (!known) {
        deny(r, TE_NET_NOT_FOUND, "unknown service%s", "");
        return;
    }
    Grpc__Health__V1__HealthCheckResponse rep = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
    rep.status = hostd_service_serving(svc) ? GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING
                                            : GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING;
    r->len = grpc__health__v1__health_check_response__get_packed_size(&rep);
    r->data = malloc(r->len ? r->len : 1);
    if (!r->data)
        deny(r, TE_NET_RESOURCE_EXHAUSTED, "out of memory%s", "");
    else
        grpc__health__v1__health_check_response__pack(&rep, r->data);
}

int hostd_service_methods(hostd_service *svc, te_net_method *m, int cap)
{
    const te_net_method all[] = {
        {TE_SVC_INFER, TE_NET_BIDI, infer_fn, svc, 0, infer_ended},
        {TE_SVC_MASK_SHARE, TE_NET_UNARY, mask_share_fn, svc, 0, NULL},
        {TE_SVC_DEPLOY, TE_NET_CLIENT_STREAM, deploy_fn, svc, 0, NULL},
        {TE_SVC_REGISTER_DEVICE, TE_NET_UNARY, register_fn, svc, 0, NULL},
        /* quick, never queued behind layer requests */
        {TE_SVC_STATS, TE_NET_UNARY, stats_fn, svc, 1, NULL},
        {TE_SVC_HEALTH_CHECK, TE_NET_UNARY, health_fn, svc, 1, NULL},
        /* the same answer, sent again whenever it changes */
        {TE_SVC_HEALTH_WATCH, TE_NET_SERVER_STREAM, health_fn, svc, 1, NULL},
    };
    int n = (int)(sizeof all / sizeof all[0]);
    if (n > cap)
        n = cap;
    memcpy(m, all, (size_t)n * sizeof *m);
    return n;
}
