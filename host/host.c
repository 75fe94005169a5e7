/* The host core: role A and role B of a secure linear layer (DESIGN.md). */
#include "te_host.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "replay.h"
#include "te_plugin.h"
#include "te_prf.h"
#include "te_ring.h"
#include "te_wire.h"
#include "wire.pb-c.h"

#define TE_HOST_DEFAULT_MAX_BATCH 64
/* Cap on the elements one request may make a host compute (inputs or
 * outputs); bounds the memory a single request can claim. */
#define TE_HOST_MAX_ELEMS ((uint64_t)1 << 28)
/* Sessions the replay guard remembers (replay.h): about 200 bytes each. */
#define TE_HOST_REPLAY_SESSIONS 65536
/* The precompute cache's identity of a device session: "device/<session hex>" */
#define PRE_ID_LEN (64 + 1 + 2 * TE_SESSION_BYTES)

typedef struct host_layer {
    te_linear_geom geom;
    te_plugin_layer *pl;
} host_layer;

/* Cross-device batching (te_host_config.batch_window_us).  Requests for
 * the same plugin layer and the same kind (a ring width 1..64 over uint64
 * elements, or BATCH_KIND_F32 over floats) that arrive within one window
 * run as one plugin call.  A group lives on its leader's stack; followers
 * live on their own stacks and are linked into it.  Everything below is
 * guarded by te_host.batch_mu. */
#define BATCH_KIND_F32 0x100u /* outside the ring widths */

typedef struct batch_member {
    struct batch_member *next;
    const void *in;     /* batch * in_len elements, the caller's */
    void *out;          /* batch * out_len elements, the caller's */
    uint64_t batch;
    int done;           /* set by the leader once out / st / err are final */
    te_status st;
    te_err err;
} batch_member;

typedef struct batch_group {
    struct batch_group *next;   /* the host's open groups */
    te_plugin_layer *pl;
    unsigned kind;
    uint64_t batch;             /* samples so far, the leader's included */
    int n_req;                  /* requests in the group, the leader's included */
    uint64_t cap;               /* most samples one plugin call may take */
    int full;                   /* no further request fits: leader stops waiting */
    batch_member *members, **tail; /* followers in arrival order */
} batch_group;

/* EdgeB's precompute cache (te_host_config.precompute_mb).  M = PRF(K, t,
 * i, MASK) does not depend on the device's input, so once EdgeB has served
 * the last linear layer of request t for a device, one worker thread per
 * host computes W.M for (t + 1, every layer) with the ring widths the
 * device used in t, and serve() hands each entry out once, after the same
 * checks as an on-demand answer.  Entries hold W.M mod 2^l (not W.M + Z),
 * so one entry serves mediated and relay mode.  Everything below is guarded
 * by te_host.pre_mu. */
#define PRE_MAX_JOBS 64

typedef enum pre_state {
    PRE_PENDING = 1,    /* reserved by the current job, not started */
    PRE_COMPUTING,      /* the worker is on it: serve() waits */
    PRE_READY           /* wm holds the result */
} pre_state;

typedef struct pre_entry {
    struct pre_entry *next;
    char deployment[33];
    char device[PRE_ID_LEN];
    uint64_t counter;
    uint32_t layer;
    unsigned l;
    uint64_t batch;     /* always 1 today; a request must match it */
    size_t out_n;       /* elements of wm */
    pre_state state;
    int stale;          /* purged while COMPUTING: the worker frees it */
    uint64_t *wm;       /* PRE_READY: W.M mod 2^l */
    size_t bytes;       /* charged to te_host.pre_bytes */
} pre_entry;

typedef struct pre_job {
    struct pre_job *next;
    char deployment[33];
    char device[PRE_ID_LEN];
    uint64_t counter;
    int n_layers;
    uint8_t *widths;    /* per layer; 0: width not seen, layer skipped */
    uint8_t key[TE_KEY_BYTES]; /* the session's K_s, zeroed when the job is freed */
    int stale;          /* purged while running: stop */
} pre_job;

/* The ring widths a device used in its latest request, per deployment. */
typedef struct pre_seen {
    struct pre_seen *next;
    char deployment[33];
    char device[PRE_ID_LEN];
    uint64_t counter;
    int n_layers;
    uint8_t *widths;
} pre_seen;

typedef struct host_deployment {
    char id[33];
    int n_layers;
    host_layer *layers;
} host_deployment;

struct te_host {
    te_role role;
    uint64_t max_batch;
    int allow_plaintext;
    te_plugin *plugin;
    te_transport *peer;
    te_replay *replay;
    pthread_rwlock_t lock;          /* guards deployments and devices */
    int n_deployments;
    host_deployment *deployments;
    int n_devices;
    te_device_key *devices;
    /* cross-device batching; batch_ready: the primitives below exist */
    uint32_t batch_window_us;
    int batch_ready;
    pthread_mutex_t batch_mu;
    pthread_cond_t batch_lead;      /* a leader's group grew, or a request left the host */
    int batch_in_flight;            /* requests inside te_host_handle (under batch_mu) */
    pthread_cond_t batch_done;      /* some follower's result is in */
    batch_group *batch_open;
    _Atomic uint64_t batch_runs, batch_requests;
    te_log_fn log;
    void *log_ctx;
    /* precompute (EdgeB); pre_ready: the primitives below exist and the
     * worker runs */
    uint64_t pre_cap;               /* bytes */
    int pre_ready;
    pthread_t pre_thread;
    pthread_mutex_t pre_mu;
    pthread_cond_t pre_work;        /* a job was queued, or pre_stop */
    pthread_cond_t pre_change;      /* an entry left PRE_COMPUTING */
    int pre_stop;
    pre_job *pre_queue;             /* oldest first */
    int pre_n_jobs;
    pre_job *pre_current;           /* the job the worker is running */
    pre_entry *pre_entries;
    pre_seen *pre_seen;
    uint64_t pre_bytes;             /* entries plus the worker's scratch */
    int pre_logged_skip, pre_logged_fail;
    _Atomic uint64_t pre_gen;       /* bumped when a key or deployment changes */
    _Atomic uint64_t pre_hits, pre_misses, pre_computed;
};

static te_status pre_init(te_host *h, uint32_t mb, te_err *err);
static void pre_fini(te_host *h);
static void pre_forget(te_host *h, const char *deployment, const char *device);

/* Set up batching when the configuration asks for it (window > 0). */
static te_status batch_init(te_host *h, uint32_t window_us, te_err *err)
{
    h->batch_window_us = window_us;
    if (window_us == 0)
        return TE_OK;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        return te_errf(err, TE_ENOMEM, "cannot create the batching condition attributes");
    /* the window is measured on the monotonic clock, immune to clock steps */
    int bad = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC) != 0;
    if (!bad && pthread_mutex_init(&h->batch_mu, NULL) != 0)
        bad = 2;
    if (!bad && pthread_cond_init(&h->batch_lead, &ca) != 0)
        bad = 3;
    if (!bad && pthread_cond_init(&h->batch_done, &ca) != 0)
        bad = 4;
    pthread_condattr_destroy(&ca);
    if (bad >= 4)
        pthread_cond_destroy(&h->batch_lead);
    if (bad >= 3)
        pthread_mutex_destroy(&h->batch_mu);
    if (bad)
        return te_errf(err, TE_ENOMEM, "cannot create the batching lock");
    h->batch_ready = 1;
    return TE_OK;
}

static void batch_fini(te_host *h)
{
    if (!h->batch_ready)
        return;
    pthread_cond_destroy(&h->batch_done);
    pthread_cond_destroy(&h->batch_lead);
    pthread_mutex_destroy(&h->batch_mu);
    h->batch_ready = 0;
}

void te_host_batch_figures(const te_host *h, uint64_t *plugin_runs, uint64_t *requests_batched)
{
    if (plugin_runs)
        *plugin_runs = atomic_load_explicit(&h->batch_runs, memory_order_relaxed);
    if (requests_batched)
        *requests_batched = atomic_load_explicit(&h->batch_requests, memory_order_relaxed);
}

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
    h->allow_plaintext = cfg->allow_plaintext;
    h->log = cfg->log;
    h->log_ctx = cfg->log_ctx;
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
    if ((st = batch_init(h, cfg->batch_window_us, err)) != TE_OK ||
        (st = te_replay_new(TE_HOST_REPLAY_SESSIONS, &h->replay, err)) != TE_OK) {
        te_host_free(h);
        return st;
    }
    if (cfg->precompute_mb && h->role == TE_ROLE_A && h->log)
        h->log(h->log_ctx, "precompute_mb is an EdgeB setting; EdgeA ignores it");
    if (cfg->precompute_mb && h->role == TE_ROLE_B && (st = pre_init(h, cfg->precompute_mb, err)) != TE_OK) {
        te_host_free(h);
        return st;
    }
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
    pre_fini(h); /* first: the worker runs layers through the plugin */
    for (int i = 0; i < h->n_deployments; i++)
        deployment_release(h, &h->deployments[i]);
    free(h->deployments);
    if (h->devices)
        memset(h->devices, 0, (size_t)h->n_devices * sizeof *h->devices); /* keys */
    free(h->devices);
    te_plugin_close(h->plugin);
    pthread_rwlock_destroy(&h->lock);
    batch_fini(h);
    te_replay_free(h->replay);
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
            pre_forget(h, d.id, NULL); /* W.M of the old weights */
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
    pre_forget(h, d.id, NULL);
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
            pre_forget(h, key->deployment_id, key->device_id); /* W.M under the old key */
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
    pre_forget(h, key->deployment_id, key->device_id);
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

/* Look up a layer of a deployment; fills geom, the plugin handle and the
 * deployment's number of linear layers. */
static te_status find_layer_at(te_host *h, const char *deployment, uint32_t layer, host_layer *out, int *n_layers,
                               te_err *err)
{
    te_status st = TE_OK;
    pthread_rwlock_rdlock(&h->lock);
    const host_deployment *d = NULL;
    for (int i = 0; i < h->n_deployments; i++)
        if (deployment && strcmp(h->deployments[i].id, deployment) == 0)
            d = &h->deployments[i];
    if (!d)
        st = te_errf(err, TE_EINVAL, "unknown deployment '%.40s'", deployment ? deployment : "");
    else if (layer >= (uint32_t)d->n_layers)
        st = te_errf(err, TE_EINVAL, "unknown layer %u (deployment has %d linear layers)", layer, d->n_layers);
    else {
        *out = d->layers[layer];
        *n_layers = d->n_layers;
    }
    pthread_rwlock_unlock(&h->lock);
    return st;
}

/* The layer a request names. */
static te_status find_layer(te_host *h, const Twinedge__LayerRequest *q, host_layer *out, int *n_layers,
                            te_err *err)
{
    return find_layer_at(h, q->deployment_id, q->layer, out, n_layers, err);
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

/* One plugin call of `kind` serving n_req requests. */
static te_status plugin_exec(te_host *h, te_plugin_layer *pl, unsigned kind, uint64_t batch, const void *in,
                             void *out, uint64_t n_req, te_err *err)
{
    const te_plugin_ops *ops = te_plugin_get_ops(h->plugin);
    te_plugin_ctx *ctx = te_plugin_get_ctx(h->plugin);
    te_status st = kind == BATCH_KIND_F32 ? ops->run_f32(ctx, pl, batch, (const float *)in, (float *)out, err)
                                          : ops->run(ctx, pl, kind, batch, (const uint64_t *)in, (uint64_t *)out, err);
    atomic_fetch_add_explicit(&h->batch_runs, 1, memory_order_relaxed);
    atomic_fetch_add_explicit(&h->batch_requests, n_req, memory_order_relaxed);
    if (st != TE_OK)
        return te_err_wrap(err, "plugin '%s'", ops->name);
    return TE_OK;
}

/* The leader's half once its group is closed: concatenate the inputs
 * (leader first, then followers in arrival order), run once, scatter the
 * outputs, and give every follower the status and message.  Without memory
 * for the joint buffers, each request runs alone instead. */
static te_status batch_run_group(te_host *h, batch_group *g, size_t elem, uint64_t in_len, uint64_t out_len,
                                 const void *in, void *out, uint64_t batch, te_err *err)
{
    size_t in_row = (size_t)in_len * elem, out_row = (size_t)out_len * elem;
    uint64_t n_req = 1;
    for (batch_member *m = g->members; m; m = m->next)
        n_req++;
    size_t in_bytes = (size_t)g->batch * in_row, out_bytes = (size_t)g->batch * out_row;
    uint8_t *jin = malloc(in_bytes ? in_bytes : 1), *jout = malloc(out_bytes ? out_bytes : 1);
    if (!jin || !jout) {
        free(jin);
        free(jout);
        for (batch_member *m = g->members; m; m = m->next)
            m->st = plugin_exec(h, g->pl, g->kind, m->batch, m->in, m->out, 1, &m->err);
        return plugin_exec(h, g->pl, g->kind, batch, in, out, 1, err);
    }
    size_t off = (size_t)batch;
    memcpy(jin, in, (size_t)batch * in_row);
    for (batch_member *m = g->members; m; m = m->next) {
        memcpy(jin + off * in_row, m->in, (size_t)m->batch * in_row);
        off += (size_t)m->batch;
    }
    te_err e;
    te_err_clear(&e);
    te_status st = plugin_exec(h, g->pl, g->kind, g->batch, jin, jout, n_req, &e);
    if (st != TE_OK && err)
        *err = e;
    if (st == TE_OK) {
        memcpy(out, jout, (size_t)batch * out_row);
        off = (size_t)batch;
        for (batch_member *m = g->members; m; m = m->next) {
            memcpy(m->out, jout + off * out_row, (size_t)m->batch * out_row);
            off += (size_t)m->batch;
        }
    }
    for (batch_member *m = g->members; m; m = m->next) {
        m->st = st;
        if (st != TE_OK)
            m->err = e;
    }
    free(jin);
    free(jout);
    return st;
}

/* Run `batch` samples of a layer, combined with concurrent requests of the
 * same layer and kind when batching is on.  elem: bytes per element. */
static te_status batch_run(te_host *h, const host_layer *hl, unsigned kind, size_t elem, uint64_t batch,
                           const void *in, void *out, te_err *err)
{
    uint64_t in_len = (uint64_t)te_geom_in_len(&hl->geom), out_len = (uint64_t)te_geom_out_len(&hl->geom);
    uint64_t widest = in_len > out_len ? in_len : out_len;
    uint64_t cap = h->max_batch;
    if (widest && TE_HOST_MAX_ELEMS / widest < cap)
        cap = TE_HOST_MAX_ELEMS / widest;
    if (!h->batch_ready || batch >= cap)
        return plugin_exec(h, hl->pl, kind, batch, in, out, 1, err);

    pthread_mutex_lock(&h->batch_mu);
    for (batch_group *g = h->batch_open; g; g = g->next) {
        if (g->pl != hl->pl || g->kind != kind || g->full || g->batch + batch > g->cap)
            continue;
        /* follow: the leader fills m and sets m.done */
        batch_member m;
        memset(&m, 0, sizeof m);
        m.in = in;
        m.out = out;
        m.batch = batch;
        *g->tail = &m;
        g->tail = &m.next;
        g->batch += batch;
        g->n_req++;
        if (g->batch >= g->cap)
            g->full = 1;
        pthread_cond_broadcast(&h->batch_lead);
        while (!m.done)
            pthread_cond_wait(&h->batch_done, &h->batch_mu);
        pthread_mutex_unlock(&h->batch_mu);
        if (m.st != TE_OK && err)
            *err = m.err;
        return m.st;
    }

    /* lead a new group for one window (or until it is full) */
    batch_group g;
    memset(&g, 0, sizeof g);
    g.pl = hl->pl;
    g.kind = kind;
    g.batch = batch;
    g.n_req = 1;
    g.cap = cap;
    g.tail = &g.members;
    g.next = h->batch_open;
    h->batch_open = &g;
    struct timespec until;
    clock_gettime(CLOCK_MONOTONIC, &until);
    until.tv_sec += (time_t)(h->batch_window_us / 1000000u);
    until.tv_nsec += (long)(h->batch_window_us % 1000000u) * 1000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    /* Wait only while some request on this host that is not in the group
     * could still join it: a request alone runs at once, so batching costs
     * a single device no latency. */
    while (!g.full && h->batch_in_flight > g.n_req)
        if (pthread_cond_timedwait(&h->batch_lead, &h->batch_mu, &until) != 0)
            break; /* ETIMEDOUT: the window is over */
    for (batch_group **p = &h->batch_open; *p; p = &(*p)->next) {
        if (*p == &g) {
            *p = g.next;
            break;
        }
    }
    pthread_mutex_unlock(&h->batch_mu);

    if (!g.members)
        return plugin_exec(h, g.pl, kind, batch, in, out, 1, err);
    te_status st = batch_run_group(h, &g, elem, in_len, out_len, in, out, batch, err);
    pthread_mutex_lock(&h->batch_mu);
    for (batch_member *m = g.members; m; m = m->next)
        m->done = 1;
    pthread_cond_broadcast(&h->batch_done);
    pthread_mutex_unlock(&h->batch_mu);
    return st;
}

/* The ring run of a layer (every protocol path goes through here). */
static te_status run_layer(te_host *h, const host_layer *hl, unsigned l, uint64_t batch, const uint64_t *in,
                           uint64_t *out, te_err *err)
{
    return batch_run(h, hl, l, sizeof *in, batch, in, out, err);
}

/* ---- EdgeB's precompute cache ---- */

static void pre_job_free(pre_job *j)
{
    if (!j)
        return;
    memset(j->key, 0, sizeof j->key);
    free(j->widths);
    free(j);
}

static void pre_seen_free(pre_seen *r)
{
    if (!r)
        return;
    free(r->widths);
    free(r);
}

/* Unlink *link from the cache and free it, releasing its bytes. */
static void pre_entry_drop(te_host *h, pre_entry **link)
{
    pre_entry *e = *link;
    *link = e->next;
    h->pre_bytes -= e->bytes;
    free(e->wm);
    free(e);
}

/* dev is a session identity ("device/<session hex>"); want_dev one too, or
 * a bare device name that matches all of that device's sessions. */
static int pre_is(const char *dep, const char *dev, const char *want_dep, const char *want_dev)
{
    if (strcmp(dep, want_dep) != 0)
        return 0;
    if (!want_dev || strcmp(dev, want_dev) == 0)
        return 1;
    size_t n = strlen(want_dev);
    return strchr(want_dev, '/') == NULL && strncmp(dev, want_dev, n) == 0 && dev[n] == '/';
}

/* The session identity of a request's device (device ids hold no '/'). */
static void pre_ident(const Twinedge__LayerRequest *q, char out[PRE_ID_LEN])
{
    static const char hex[] = "0123456789abcdef";
    size_t n = strlen(q->device_id);
    n = n < 63 ? n : 63;
    memcpy(out, q->device_id, n);
    out[n++] = '/';
    for (size_t i = 0; i < q->session.len && i < TE_SESSION_BYTES; i++) {
        out[n++] = hex[q->session.data[i] >> 4];
        out[n++] = hex[q->session.data[i] & 15];
    }
    out[n] = '\0';
}

/* Drop the entries and jobs of `dep` (and `dev`, unless NULL) whose counter
 * is below `below` (all of them if `all`).  An entry being computed is
 * marked stale (the worker frees it), as is the running job. */
static void pre_purge(te_host *h, const char *dep, const char *dev, int all, uint64_t below)
{
    for (pre_entry **p = &h->pre_entries; *p;) {
        pre_entry *e = *p;
        if (!pre_is(e->deployment, e->device, dep, dev) || (!all && e->counter >= below)) {
            p = &e->next;
        } else if (e->state == PRE_COMPUTING) {
            e->stale = 1;
            p = &e->next;
        } else {
            pre_entry_drop(h, p);
        }
    }
    for (pre_job **p = &h->pre_queue; *p;) {
        pre_job *j = *p;
        if (!pre_is(j->deployment, j->device, dep, dev) || (!all && j->counter >= below)) {
            p = &j->next;
        } else {
            *p = j->next;
            h->pre_n_jobs--;
            pre_job_free(j);
        }
    }
    pre_job *c = h->pre_current;
    if (c && pre_is(c->deployment, c->device, dep, dev) && (all || c->counter < below))
        c->stale = 1;
}

/* A key or a deployment changed: what was computed with the old one goes,
 * and requests that read the old one schedule nothing (pre_gen). */
static void pre_forget(te_host *h, const char *deployment, const char *device)
{
    if (!h->pre_ready)
        return;
    pthread_mutex_lock(&h->pre_mu);
    atomic_fetch_add(&h->pre_gen, 1);
    pre_purge(h, deployment, device, 1, 0);
    if (!device) {
        /* the layers (and their number) may have changed */
        for (pre_seen **p = &h->pre_seen; *p;) {
            pre_seen *r = *p;
            if (strcmp(r->deployment, deployment) == 0) {
                *p = r->next;
                pre_seen_free(r);
            } else {
                p = &r->next;
            }
        }
    }
    pthread_mutex_unlock(&h->pre_mu);
}

/* The live (not stale) entry for these coordinates, as a link, or NULL. */
static pre_entry **pre_find(te_host *h, const char *dep, const char *dev, uint64_t counter, uint32_t layer,
                            unsigned l)
{
    for (pre_entry **p = &h->pre_entries; *p; p = &(*p)->next) {
        const pre_entry *e = *p;
        if (!e->stale && e->counter == counter && e->layer == layer && e->l == l &&
            pre_is(e->deployment, e->device, dep, dev))
            return p;
    }
    return NULL;
}

/* Queue (dep, dev, counter + 1) with the widths of r, unless it is queued,
 * running or cached already.  Older counters of the device go. */
static void pre_schedule(te_host *h, const pre_seen *r, const uint8_t key[TE_KEY_BYTES])
{
    uint64_t next = r->counter + 1;
    int any = 0;
    for (int i = 0; i < r->n_layers; i++)
        any |= r->widths[i] != 0;
    if (!any)
        return;
    for (const pre_entry *e = h->pre_entries; e; e = e->next)
        if (!e->stale && e->counter >= next && pre_is(e->deployment, e->device, r->deployment, r->device))
            return;
    for (const pre_job *j = h->pre_queue; j; j = j->next)
        if (j->counter >= next && pre_is(j->deployment, j->device, r->deployment, r->device))
            return;
    const pre_job *c = h->pre_current;
    if (c && !c->stale && c->counter >= next && pre_is(c->deployment, c->device, r->deployment, r->device))
        return;
    pre_purge(h, r->deployment, r->device, 0, next); /* a device only moves forward */

    pre_job *j = calloc(1, sizeof *j);
    uint8_t *w = malloc((size_t)r->n_layers);
    if (!j || !w) { /* an optimisation only: the request goes on demand */
        free(j);
        free(w);
        return;
    }
    memcpy(j->deployment, r->deployment, sizeof j->deployment);
    memcpy(j->device, r->device, sizeof j->device);
    j->counter = next;
    j->n_layers = r->n_layers;
    j->widths = w;
    memcpy(w, r->widths, (size_t)r->n_layers);
    memcpy(j->key, key, TE_KEY_BYTES);
    if (h->pre_n_jobs >= PRE_MAX_JOBS) { /* drop the oldest */
        pre_job *old = h->pre_queue;
        h->pre_queue = old->next;
        h->pre_n_jobs--;
        pre_job_free(old);
    }
    pre_job **tail = &h->pre_queue;
    while (*tail)
        tail = &(*tail)->next;
    *tail = j;
    h->pre_n_jobs++;
    pthread_cond_signal(&h->pre_work);
}

/* After a role-B request served (all checks passed): remember the width of
 * its layer, and after the deployment's last layer schedule counter + 1.
 * `gen`: pre_gen when the request began (its key may be outdated else). */
static void pre_note(te_host *h, const Twinedge__LayerRequest *q, unsigned l, int n_layers,
                     const uint8_t key[TE_KEY_BYTES], uint64_t gen)
{
    if (!h->pre_ready || n_layers <= 0 || q->layer >= (uint32_t)n_layers)
        return;
    pthread_mutex_lock(&h->pre_mu);
    if (atomic_load(&h->pre_gen) != gen || h->pre_stop)
        goto out;
    char ident[PRE_ID_LEN];
    pre_ident(q, ident);
    pre_seen *r = h->pre_seen;
    while (r && !pre_is(r->deployment, r->device, q->deployment_id, ident))
        r = r->next;
    if (!r) {
        /* a device's newest session replaces its older ones here, so the
         * list stays one entry per device */
        for (pre_seen **p = &h->pre_seen; *p;) {
            if (pre_is((*p)->deployment, (*p)->device, q->deployment_id, q->device_id)) {
                pre_seen *old = *p;
                *p = old->next;
                pre_seen_free(old);
            } else {
                p = &(*p)->next;
            }
        }
        r = calloc(1, sizeof *r);
        if (!r)
            goto out;
        snprintf(r->deployment, sizeof r->deployment, "%s", q->deployment_id);
        memcpy(r->device, ident, sizeof ident);
        r->next = h->pre_seen;
        h->pre_seen = r;
    }
    if (r->n_layers != n_layers || !r->widths) {
        uint8_t *w = calloc((size_t)n_layers, 1);
        if (!w)
            goto out;
        free(r->widths);
        r->widths = w;
        r->n_layers = n_layers;
    }
    if (r->counter != q->counter) {
        memset(r->widths, 0, (size_t)n_layers);
        r->counter = q->counter;
    }
    r->widths[q->layer] = q->batch == 1 ? (uint8_t)l : 0; /* entries are batch 1 */
    if (q->layer == (uint32_t)n_layers - 1 && q->counter != UINT64_MAX)
        pre_schedule(h, r, key);
out:
    pthread_mutex_unlock(&h->pre_mu);
}

/* serve(), role B, after every check: W.M for this request from the cache
 * (taken out: each entry is handed out once), or NULL for a miss.  Waits
 * for an entry being computed; drops one not yet started (the request
 * computes it now). */
static uint64_t *pre_take(te_host *h, const Twinedge__LayerRequest *q, unsigned l, size_t out_n)
{
    if (!h->pre_ready)
        return NULL;
    uint64_t *wm = NULL;
    char ident[PRE_ID_LEN];
    pre_ident(q, ident);
    pthread_mutex_lock(&h->pre_mu);
    for (;;) {
        pre_entry **p = pre_find(h, q->deployment_id, ident, q->counter, q->layer, l);
        if (!p)
            break;
        pre_entry *e = *p;
        if (e->state == PRE_COMPUTING) {
            pthread_cond_wait(&h->pre_change, &h->pre_mu);
            continue; /* look again: it may be gone */
        }
        if (e->state == PRE_READY && e->batch == q->batch && e->out_n == out_n) {
            wm = e->wm;
            e->wm = NULL;
        }
        pre_entry_drop(h, p);
        break;
    }
    pthread_mutex_unlock(&h->pre_mu);
    atomic_fetch_add_explicit(wm ? &h->pre_hits : &h->pre_misses, 1, memory_order_relaxed);
    return wm;
}

/* Compute one job, layer by layer; called without pre_mu. */
static void pre_run_job(te_host *h, pre_job *j)
{
    /* what the job needs: every output plus one input buffer (the widest) */
    size_t *outs = calloc((size_t)j->n_layers, sizeof *outs);
    if (!outs)
        return;
    uint64_t total = 0, scratch = 0;
    for (int i = 0; i < j->n_layers; i++) {
        if (!j->widths[i])
            continue;
        host_layer hl;
        int n = 0;
        te_err e;
        te_err_clear(&e);
        if (find_layer_at(h, j->deployment, (uint32_t)i, &hl, &n, &e) != TE_OK || n != j->n_layers) {
            free(outs);
            return; /* the deployment changed under the job */
        }
        uint64_t in_b = (uint64_t)te_geom_in_len(&hl.geom) * 8;
        outs[i] = (size_t)te_geom_out_len(&hl.geom);
        total += (uint64_t)outs[i] * 8;
        if (in_b > scratch)
            scratch = in_b;
    }
    char msg[256] = "";
    pthread_mutex_lock(&h->pre_mu);
    int go = !j->stale && !h->pre_stop;
    if (go && (total + scratch > h->pre_cap || h->pre_bytes > h->pre_cap - total - scratch)) {
        go = 0;
        if (!h->pre_logged_skip) {
            h->pre_logged_skip = 1;
            snprintf(msg, sizeof msg,
                     "precompute: request %llu of device '%.64s' needs %.1f MiB, over what precompute_mb = %llu "
                     "leaves free; skipped (such requests are answered on demand; logged once)",
                     (unsigned long long)j->counter, j->device, (double)(total + scratch) / 1048576.0,
                     (unsigned long long)(h->pre_cap >> 20));
        }
    }
    for (int i = 0; go && i < j->n_layers; i++) {
        if (!j->widths[i])
            continue;
        pre_entry *en = calloc(1, sizeof *en);
        if (!en)
            break;
        memcpy(en->deployment, j->deployment, sizeof en->deployment);
        memcpy(en->device, j->device, sizeof en->device);
        en->counter = j->counter;
        en->layer = (uint32_t)i;
        en->l = j->widths[i];
        en->batch = 1;
        en->out_n = outs[i];
        en->state = PRE_PENDING;
        en->bytes = en->out_n * 8;
        h->pre_bytes += en->bytes;
        en->next = h->pre_entries;
        h->pre_entries = en;
    }
    if (go)
        h->pre_bytes += scratch;
    pthread_mutex_unlock(&h->pre_mu);
    free(outs);
    if (msg[0] && h->log)
        h->log(h->log_ctx, msg);
    if (!go)
        return;

    uint64_t *in = malloc(scratch ? (size_t)scratch : 1);
    for (int i = 0; in && i < j->n_layers; i++) {
        unsigned l = j->widths[i];
        if (!l)
            continue;
        pthread_mutex_lock(&h->pre_mu);
        if (j->stale || h->pre_stop) {
            pthread_mutex_unlock(&h->pre_mu);
            break;
        }
        pre_entry **p = pre_find(h, j->deployment, j->device, j->counter, (uint32_t)i, l);
        pre_entry *en = p && (*p)->state == PRE_PENDING ? *p : NULL;
        if (en)
            en->state = PRE_COMPUTING;
        pthread_mutex_unlock(&h->pre_mu);
        if (!en)
            continue; /* served on demand meanwhile */

        /* the same path as serve(): te_prf_ring, then run_layer */
        host_layer hl;
        int n = 0;
        te_err e;
        te_err_clear(&e);
        uint64_t *out = NULL;
        te_status st = find_layer_at(h, j->deployment, (uint32_t)i, &hl, &n, &e);
        if (st == TE_OK && (size_t)te_geom_out_len(&hl.geom) != en->out_n)
            st = TE_ESHAPE;
        size_t in_n = st == TE_OK ? (size_t)te_geom_in_len(&hl.geom) : 0;
        if (st == TE_OK && (uint64_t)in_n * 8 > scratch)
            st = TE_ESHAPE;
        if (st == TE_OK && !(out = malloc(en->out_n ? en->out_n * sizeof *out : 1)))
            st = TE_ENOMEM;
        if (st == TE_OK)
            st = te_prf_ring(j->key, j->counter, (uint32_t)i, TE_PRF_MASK, l, in, in_n, &e);
        if (st == TE_OK)
            st = run_layer(h, &hl, l, 1, in, out, &e);

        pthread_mutex_lock(&h->pre_mu);
        char fail[TE_ERR_MSG_MAX + 256] = "";
        if (st != TE_OK && !en->stale && !h->pre_logged_fail) {
            h->pre_logged_fail = 1;
            snprintf(fail, sizeof fail,
                     "precompute: layer %d of request %llu of device '%.64s' failed (%s); such shares are "
                     "computed on demand (logged once)",
                     i, (unsigned long long)j->counter, j->device, st == TE_ESHAPE ? "the layer changed" : e.msg);
        }
        if (st != TE_OK || en->stale) {
            for (p = &h->pre_entries; *p && *p != en; p = &(*p)->next)
                ;
            if (*p)
                pre_entry_drop(h, p);
            free(out);
        } else {
            en->wm = out;
            en->state = PRE_READY;
            atomic_fetch_add_explicit(&h->pre_computed, 1, memory_order_relaxed);
        }
        pthread_cond_broadcast(&h->pre_change);
        pthread_mutex_unlock(&h->pre_mu);
        if (fail[0] && h->log)
            h->log(h->log_ctx, fail);
    }
    free(in);
    pthread_mutex_lock(&h->pre_mu);
    h->pre_bytes -= scratch;
    if (!in || j->stale) /* entries this job will never fill */
        pre_purge(h, j->deployment, j->device, 0, j->counter + 1);
    pthread_mutex_unlock(&h->pre_mu);
}

static void *pre_worker(void *arg)
{
    te_host *h = arg;
    pthread_mutex_lock(&h->pre_mu);
    for (;;) {
        while (!h->pre_stop && !h->pre_queue)
            pthread_cond_wait(&h->pre_work, &h->pre_mu);
        if (h->pre_stop)
            break;
        pre_job *j = h->pre_queue;
        h->pre_queue = j->next;
        h->pre_n_jobs--;
        j->next = NULL;
        h->pre_current = j;
        pthread_mutex_unlock(&h->pre_mu);
        pre_run_job(h, j);
        pthread_mutex_lock(&h->pre_mu);
        h->pre_current = NULL;
        pre_job_free(j);
    }
    pthread_mutex_unlock(&h->pre_mu);
    return NULL;
}

static te_status pre_init(te_host *h, uint32_t mb, te_err *err)
{
    h->pre_cap = (uint64_t)mb << 20;
    if (pthread_mutex_init(&h->pre_mu, NULL) != 0)
        return te_errf(err, TE_ENOMEM, "cannot create the precompute lock");
    if (pthread_cond_init(&h->pre_work, NULL) != 0) {
        pthread_mutex_destroy(&h->pre_mu);
        return te_errf(err, TE_ENOMEM, "cannot create the precompute condition");
    }
    if (pthread_cond_init(&h->pre_change, NULL) != 0) {
        pthread_cond_destroy(&h->pre_work);
        pthread_mutex_destroy(&h->pre_mu);
        return te_errf(err, TE_ENOMEM, "cannot create the precompute condition");
    }
    int rc = pthread_create(&h->pre_thread, NULL, pre_worker, h);
    if (rc != 0) {
        pthread_cond_destroy(&h->pre_change);
        pthread_cond_destroy(&h->pre_work);
        pthread_mutex_destroy(&h->pre_mu);
        return te_errf(err, TE_ENOMEM, "cannot start the precompute thread: %s", strerror(rc));
    }
    h->pre_ready = 1;
    return TE_OK;
}

static void pre_fini(te_host *h)
{
    if (!h->pre_ready)
        return;
    pthread_mutex_lock(&h->pre_mu);
    h->pre_stop = 1;
    pthread_cond_broadcast(&h->pre_work);
    pthread_mutex_unlock(&h->pre_mu);
    pthread_join(h->pre_thread, NULL);
    while (h->pre_entries)
        pre_entry_drop(h, &h->pre_entries);
    while (h->pre_queue) {
        pre_job *j = h->pre_queue;
        h->pre_queue = j->next;
        pre_job_free(j);
    }
    while (h->pre_seen) {
        pre_seen *r = h->pre_seen;
        h->pre_seen = r->next;
        pre_seen_free(r);
    }
    pthread_cond_destroy(&h->pre_change);
    pthread_cond_destroy(&h->pre_work);
    pthread_mutex_destroy(&h->pre_mu);
    h->pre_ready = 0;
}

void te_host_precompute_figures(const te_host *h, uint64_t *hits, uint64_t *misses, uint64_t *computed)
{
    if (hits)
        *hits = atomic_load_explicit(&h->pre_hits, memory_order_relaxed);
    if (misses)
        *misses = atomic_load_explicit(&h->pre_misses, memory_order_relaxed);
    if (computed)
        *computed = atomic_load_explicit(&h->pre_computed, memory_order_relaxed);
}

/* The float32 plaintext baseline (MODE_PLAIN), batched like ring runs but
 * never combined with them. */
static te_status run_layer_f32(te_host *h, const host_layer *hl, uint64_t batch,
                                                       const float *in, float *out, te_err *err)
{
    const te_plugin_ops *ops = te_plugin_get_ops(h->plugin);
    if (!ops->run_f32)
        return te_errf(err, TE_EUNSUPPORTED, "plugin '%s' does not offer the float32 plaintext baseline",
                       ops->name);
    return batch_run(h, hl, BATCH_KIND_F32, sizeof *in, batch, in, out, err);
}

/* Relay mode: EdgeA's call to EdgeB for W.M + Z, made while EdgeA computes
 * W.A (it does not depend on A), so the round trip hides behind the layer. */
typedef struct relay_fetch {
    te_host *h;
    const Twinedge__LayerRequest *q;
    size_t out_n;
    uint64_t *wmz;      /* out_n elements, W.M + Z */
    te_status st;
    te_err err;
} relay_fetch;

static void *relay_fetch_main(void *arg)
{
    relay_fetch *f = arg;
    te_err_clear(&f->err);
    Twinedge__LayerRequest bq = *f->q;
    bq.data.data = NULL;
    bq.data.len = 0;
    size_t n = twinedge__layer_request__get_packed_size(&bq);
    uint8_t *buf = malloc(n ? n : 1), *resp = NULL;
    size_t resp_len = 0;
    if (!buf) {
        f->st = te_errf(&f->err, TE_ENOMEM, "out of memory");
        return NULL;
    }
    twinedge__layer_request__pack(&bq, buf);
    f->st = te_transport_call(f->h->peer, TE_PARTY_EDGE_B, buf, n, &resp, &resp_len, &f->err);
    free(buf);
    if (f->st != TE_OK)
        te_err_wrap(&f->err, "EdgeA -> EdgeB");
    else
        f->st = te_wire_read_response(resp, resp_len, "EdgeB", f->q->layer, f->out_n, f->q->ring_bits, f->wmz,
                                      &f->err);
    free(resp);
    return NULL;
}

/* out = W.A - (W.M + Z): run the layer and fetch EdgeB's share at once. */
static te_status run_relay(te_host *h, const host_layer *hl, const Twinedge__LayerRequest *q, const uint64_t *in,
                           uint64_t *out, size_t out_n, te_err *err)
{
    if (!h->peer)
        return te_errf(err, TE_EINVAL, "relay mode requested but this EdgeA has no EdgeB peer configured");
    relay_fetch f = {h, q, out_n, malloc((out_n ? out_n : 1) * sizeof *f.wmz), TE_OK, {0}};
    if (!f.wmz)
        return te_errf(err, TE_ENOMEM, "out of memory");
    pthread_t tid;
    int threaded = pthread_create(&tid, NULL, relay_fetch_main, &f) == 0;
    if (!threaded)
        relay_fetch_main(&f); /* no thread to be had: one after the other */
    te_status st = run_layer(h, hl, q->ring_bits, q->batch, in, out, err);
    if (threaded)
        pthread_join(tid, NULL);
    if (st == TE_OK && f.st != TE_OK) {
        st = f.st;
        if (err)
            *err = f.err;
    }
    if (st == TE_OK)
        te_ring_vsub(out, out, f.wmz, out_n, q->ring_bits);
    free(f.wmz);
    return st;
}

/* MODE_PLAIN (the benchmarks' no-privacy baseline): in and out hold float32
 * bit patterns as 32-bit ring elements; the layer runs in float32. */
static te_status run_plain(te_host *h, const host_layer *hl, uint64_t batch, const uint64_t *in, size_t in_n,
                           uint64_t *out, size_t out_n, te_err *err)
{
    float *fin = malloc(in_n * sizeof *fin), *fout = malloc(out_n * sizeof *fout);
    te_status st = TE_OK;
    if (!fin || !fout) {
        st = te_errf(err, TE_ENOMEM, "out of memory");
    } else {
        for (size_t i = 0; i < in_n; i++) {
            uint32_t b = (uint32_t)in[i];
            memcpy(&fin[i], &b, sizeof b);
        }
        if ((st = run_layer_f32(h, hl, batch, fin, fout, err)) == TE_OK)
            for (size_t i = 0; i < out_n; i++) {
                uint32_t b;
                memcpy(&b, &fout[i], sizeof b);
                out[i] = b;
            }
    }
    free(fin);
    free(fout);
    return st;
}

/* Spend the request's (session, counter, layer), after every check of who
 * may ask and before anything is computed (replay.h). */
static te_status admit(te_host *h, const Twinedge__LayerRequest *q, te_err *err)
{
#ifdef TE_NEGCTL_NO_REPLAY_GUARD
    /* the negative-control build of the attack tests: the old hosts */
    (void)h, (void)q, (void)err;
    return TE_OK;
#else
    return te_replay_admit(h->replay, q->deployment_id, q->device_id ? q->device_id : "", q->session.data, q->counter,
                           q->layer, err);
#endif
}

/* The body of a request; on error, err holds the message for the response. */
static te_status serve(te_host *h, const te_caller *caller, const Twinedge__LayerRequest *q, uint8_t **packed,
                       size_t *packed_len, te_err *err)
{
    /* read before the layer and the key: pre_note schedules nothing from a
     * request that may have seen a key or layers replaced since */
    uint64_t pre_gen = atomic_load(&h->pre_gen);
    host_layer hl;
    int n_layers = 0;
    te_status st = find_layer(h, q, &hl, &n_layers, err);
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
    int relay = q->mode == TWINEDGE__MODE__MODE_RELAY, plain = q->mode == TWINEDGE__MODE__MODE_PLAIN;
    if (plain && (h->role != TE_ROLE_A || !h->allow_plaintext))
        return te_errf(err, TE_EUNSUPPORTED, "plaintext requests (the benchmarks' no-privacy baseline) are not "
                       "enabled on this host");
    if (plain && l != 32)
        return te_errf(err, TE_EINVAL, "plaintext requests carry float32 elements (ring width 32), not %u", l);
    /* A device answers for its own id only: the certificate's, not the
     * request's say-so (EdgeA too, or one device could spend another's
     * session counters or have results computed in its name). */
    if (caller->kind == TE_CALLER_DEVICE && (!caller->name || !q->device_id || strcmp(caller->name, q->device_id) != 0))
        return te_errf(err, TE_EAUTH, "device '%.64s' may not ask for device '%.64s'", caller->name ? caller->name : "",
                       q->device_id ? q->device_id : "");
    if (!plain && q->session.len != TE_SESSION_BYTES)
        return te_errf(err, TE_EINVAL, "request without a %d-byte session (got %zu bytes)", TE_SESSION_BYTES,
                       q->session.len);

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
        } else if ((plain || (st = admit(h, q, err)) == TE_OK) &&
                   (st = te_unpack(q->data.data, q->data.len, in_n, l, in, err)) == TE_OK) {
            st = plain ? run_plain(h, &hl, q->batch, in, in_n, out, out_n, err)
                 : relay ? run_relay(h, &hl, q, in, out, out_n, err)
                         : run_layer(h, &hl, l, q->batch, in, out, err);
        }
    } else {
        /* EdgeB hands W.M in the clear only to the device it belongs to
         * (mediated), and only W.M + Z to EdgeA (relay): W.M in EdgeA's
         * hands would unmask W.x. */
        uint8_t dkey[TE_KEY_BYTES], key[TE_KEY_BYTES];
        if (caller->kind == TE_CALLER_EDGE_A && !relay)
            st = te_errf(err, TE_EAUTH, "EdgeB serves EdgeA in relay mode only");
        else if (caller->kind == TE_CALLER_DEVICE && relay)
            st = te_errf(err, TE_EINVAL, "relay shares go to EdgeA, not to the device");
        else if (q->data.len != 0)
            st = te_errf(err, TE_EINVAL, "EdgeB requests carry no data");
        else if ((st = find_key(h, q->deployment_id, q->device_id, dkey, err)) == TE_OK &&
                 (st = admit(h, q, err)) == TE_OK)
            st = te_prf_session_key(dkey, q->session.data, key, err); /* key: this session's K_s */
        memset(dkey, 0, sizeof dkey);
        /* W.M: precomputed (taken out of the cache), or computed now */
        uint64_t *wm = st == TE_OK ? pre_take(h, q, l, out_n) : NULL;
        if (wm) {
            free(out);
            out = wm;
        }
        if (st == TE_OK && !wm)
            st = te_prf_ring(key, q->counter, q->layer, TE_PRF_MASK, l, in, in_n, err);
        if (st == TE_OK && !wm)
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
        if (st == TE_OK)
            pre_note(h, q, l, n_layers, key, pre_gen);
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

/* Count a request into or out of the host, for the batching window. */
static void in_flight(te_host *h, int delta)
{
    if (!h->batch_ready)
        return;
    pthread_mutex_lock(&h->batch_mu);
    h->batch_in_flight += delta;
    if (delta < 0)
        pthread_cond_broadcast(&h->batch_lead); /* a leader may be waiting for this one */
    pthread_mutex_unlock(&h->batch_mu);
}

te_status te_host_handle(te_host *h, const te_caller *caller, const uint8_t *req, size_t req_len, uint8_t **resp,
                         size_t *resp_len, te_err *err)
{
    *resp = NULL;
    *resp_len = 0;
    te_err e;
    te_err_clear(&e);
    in_flight(h, 1);
    Twinedge__LayerRequest *q = twinedge__layer_request__unpack(NULL, req_len, req);
    if (!q) {
        in_flight(h, -1);
        return respond(TE_EFORMAT, "malformed LayerRequest", NULL, 0, resp, resp_len, err);
    }
    uint8_t *packed = NULL;
    size_t packed_len = 0;
    te_status st = serve(h, caller, q, &packed, &packed_len, &e);
    in_flight(h, -1);
    twinedge__layer_request__free_unpacked(q, NULL);
    if (st == TE_ENOMEM)
        return te_errf(err, TE_ENOMEM, "%s", e.msg);
    st = st == TE_OK ? respond(TE_OK, NULL, packed, packed_len, resp, resp_len, err)
                     : respond(st, e.msg, NULL, 0, resp, resp_len, err);
    free(packed);
    return st;
}
