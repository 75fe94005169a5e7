/* The host core: one edge server's half of the protocol (DESIGN.md).  This
 * file holds the host's life and te_host_serve, which takes a request
 * through the stages of host_internal.h. */
#include "host_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "te_wire.h"

te_role te_host_role(const te_host *h) { return h->role; }

const char *te_host_plugin_name(const te_host *h) { return te_plugin_get_ops(h->plugin)->name; }

void te_host_plugin_device(const te_host *h, char *name, size_t cap)
{
    const te_plugin_ops *ops = te_plugin_get_ops(h->plugin);
    te_plugin_caps caps;
    te_err err;
    memset(&caps, 0, sizeof caps);
    if (ops->caps && ops->caps(te_plugin_get_ctx(h->plugin), &caps, &err) == TE_OK)
        snprintf(name, cap, "%.*s", (int)sizeof caps.device_name, caps.device_name);
    else if (cap)
        name[0] = '\0';
}

void host_logf(const te_host *h, te_log_level level, const char *fmt, ...)
{
    if (!h->log)
        return;
    char msg[TE_ERR_MSG_MAX + 256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    h->log(h->log_ctx, level, "host", msg);
}

_Static_assert((int)TE_LOG_ERROR == (int)TE_PLUGIN_LOG_ERROR && (int)TE_LOG_WARN == (int)TE_PLUGIN_LOG_WARN &&
                   (int)TE_LOG_INFO == (int)TE_PLUGIN_LOG_INFO && (int)TE_LOG_DEBUG == (int)TE_PLUGIN_LOG_DEBUG,
               "host and plugin log levels differ");

/* The plugin's lines (te_plugin_host.log) into the host's log. */
static void plugin_log(void *ctx, int level, const char *plugin, const char *msg)
{
    const te_host *h = ctx;
    char source[96];
    snprintf(source, sizeof source, "plugin %s", plugin);
    h->log(h->log_ctx, (te_log_level)level, source, msg);
}

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
    h->allow_plaintext = cfg->allow_plaintext;
    h->log = cfg->log;
    h->log_ctx = cfg->log_ctx;
    if (pthread_rwlock_init(&h->lock, NULL) != 0) {
        free(h);
        return te_errf(err, TE_ENOMEM, "cannot create host lock");
    }
    const char *want = cfg->plugin ? cfg->plugin : "cpu";
    te_plugin_log_sink sink = h->log ? plugin_log : NULL;
    te_status st = te_plugin_open_logged(want, cfg->plugin_config, sink, h, &h->plugin, err);
    if (st != TE_OK && cfg->fallback_plugin) {
        host_logf(h, TE_LOG_WARN, "compute plugin '%s' unavailable (%s); falling back to '%s' as configured", want,
                  err ? err->msg : "error", cfg->fallback_plugin);
        st = te_plugin_open_logged(cfg->fallback_plugin, NULL, sink, h, &h->plugin, err);
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
    if ((st = host_batch_init(h, cfg->batch_window_us, err)) != TE_OK ||
        (st = te_replay_new(TE_HOST_REPLAY_SESSIONS, &h->replay, err)) != TE_OK) {
        te_host_free(h);
        return st;
    }
    if (cfg->precompute_mb && h->role == TE_ROLE_A)
        host_logf(h, TE_LOG_WARN, "precompute_mb is an EdgeB setting; EdgeA ignores it");
    if (cfg->precompute_mb && h->role == TE_ROLE_B && (st = host_pre_init(h, cfg->precompute_mb, err)) != TE_OK) {
        te_host_free(h);
        return st;
    }
    if (cfg->relay_ahead_kb && h->role == TE_ROLE_B)
        host_logf(h, TE_LOG_WARN, "relay_ahead_kb is an EdgeA setting; EdgeB ignores it");
    if (cfg->relay_ahead_kb && h->role == TE_ROLE_A && (st = host_ahead_init(h, cfg->relay_ahead_kb, err)) != TE_OK) {
        te_host_free(h);
        return st;
    }
    *out = h;
    return TE_OK;
}

void te_host_free(te_host *h)
{
    if (!h)
        return;
    host_ahead_fini(h); /* first: the workers run layers through the plugin */
    host_pre_fini(h);
    for (int i = 0; i < h->n_deployments; i++)
        host_deployment_release(h, &h->deployments[i]);
    free(h->deployments);
    if (h->devices)
        memset(h->devices, 0, (size_t)h->n_devices * sizeof *h->devices); /* keys */
    free(h->devices);
    te_plugin_close(h->plugin);
    pthread_rwlock_destroy(&h->lock);
    host_batch_fini(h);
    te_replay_free(h->replay);
    free(h);
}

void te_host_set_peer(te_host *h, te_transport *peer) { host_ahead_set_peer(h, peer); }

void te_host_stream_ended(te_host *h, const char *device_id) { host_ahead_stream_ended(h, device_id); }

te_status te_host_serve(te_host *h, const te_caller *caller, const uint8_t *req, size_t req_len, uint8_t **resp,
                        size_t *resp_len, te_host_outcome *outcome, te_err *err)
{
    *resp = NULL;
    *resp_len = 0;
    te_err e;
    te_err_clear(&e);
    host_request r;
    uint8_t *packed = NULL;
    size_t packed_len = 0;
    host_in_flight(h, 1);
    /* decode once, check who asks, then serve: nothing is computed (and no
     * (session, counter, layer) spent) before every check has passed */
    te_status st = host_request_decode(h, req, req_len, &r, &e);
    if (st == TE_OK)
        st = host_request_authorize(h, caller, &r, &e);
    if (st == TE_OK)
        st = host_request_check_data(h, &r, &e);
    if (st == TE_OK)
        st = host_serve(h, &r, &packed, &packed_len, &e);
    host_in_flight(h, -1);
    if (outcome) {
        memset(outcome, 0, sizeof *outcome);
        outcome->status = st;
        if (r.q) {
            snprintf(outcome->deployment, sizeof outcome->deployment, "%s",
                     r.q->deployment_id ? r.q->deployment_id : "");
            outcome->layer = r.q->layer;
        }
        if (st != TE_OK)
            snprintf(outcome->error, sizeof outcome->error, "%s", e.msg);
    }
    host_request_free(&r);
    if (st == TE_ENOMEM)
        return te_errf(err, TE_ENOMEM, "%s", e.msg);
    st = st == TE_OK ? te_wire_write_response(TE_OK, NULL, packed, packed_len, resp, resp_len, err)
                     : te_wire_write_response(st, e.msg, NULL, 0, resp, resp_len, err);
    free(packed);
    return st;
}

te_status te_host_handle(te_host *h, const te_caller *caller, const uint8_t *req, size_t req_len, uint8_t **resp,
                         size_t *resp_len, te_err *err)
{
    return te_host_serve(h, caller, req, req_len, resp, resp_len, NULL, err);
}
