/* Every plugin run of the host, combined across devices when batching is on
 * (te_host_config.batch_window_us; the types are in host_internal.h). */
#include "host_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "te_ring.h"
#include "te_wire.h"

/* Set up batching when the configuration asks for it (window > 0). */
te_status host_batch_init(te_host *h, uint32_t window_us, te_err *err)
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

void host_batch_fini(te_host *h)
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
te_status host_run_layer(te_host *h, const host_layer *hl, unsigned l, uint64_t batch, const uint64_t *in,
                           uint64_t *out, te_err *err)
{
    return batch_run(h, hl, l, sizeof *in, batch, in, out, err);
}

/* The float32 plaintext baseline (MODE_PLAIN), batched like ring runs but
 * never combined with them. */
te_status host_run_layer_f32(te_host *h, const host_layer *hl, uint64_t batch,
                                                       const float *in, float *out, te_err *err)
{
    const te_plugin_ops *ops = te_plugin_get_ops(h->plugin);
    if (!ops->run_f32)
        return te_errf(err, TE_EUNSUPPORTED, "plugin '%s' does not offer the float32 plaintext baseline",
                       ops->name);
    return batch_run(h, hl, BATCH_KIND_F32, sizeof *in, batch, in, out, err);
}

/* Count a request into or out of the host, for the batching window. */
void host_in_flight(te_host *h, int delta)
{
    if (!h->batch_ready)
        return;
    pthread_mutex_lock(&h->batch_mu);
    h->batch_in_flight += delta;
    if (delta < 0)
        pthread_cond_broadcast(&h->batch_lead); /* a leader may be waiting for this one */
    pthread_mutex_unlock(&h->batch_mu);
}
