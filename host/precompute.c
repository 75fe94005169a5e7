/* EdgeB's precompute cache (te_host_config.precompute_mb; the types are in
 * host_internal.h). */
#include "host_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "te_ring.h"
#include "te_wire.h"

static void pre_job_free(host_job *hj)
{
    pre_job *j = (pre_job *)hj;
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
    for (host_job **p = &h->pre_w.queue; *p;) {
        pre_job *j = (pre_job *)*p;
        if (!pre_is(j->deployment, j->device, dep, dev) || (!all && j->counter >= below)) {
            p = &j->base.next;
        } else {
            *p = j->base.next;
            h->pre_w.n_jobs--;
            pre_job_free(&j->base);
        }
    }
    pre_job *c = (pre_job *)h->pre_w.current;
    if (c && pre_is(c->deployment, c->device, dep, dev) && (all || c->counter < below))
        c->stale = 1;
}

/* A key or a deployment changed: what was computed with the old one goes,
 * and requests that read the old one schedule nothing (pre_gen). */
void host_pre_forget(te_host *h, const char *deployment, const char *device)
{
    if (!h->pre_w.ready)
        return;
    pthread_mutex_lock(&h->pre_w.mu);
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
    pthread_mutex_unlock(&h->pre_w.mu);
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
    for (const host_job *hj = h->pre_w.queue; hj; hj = hj->next) {
        const pre_job *j = (const pre_job *)hj;
        if (j->counter >= next && pre_is(j->deployment, j->device, r->deployment, r->device))
            return;
    }
    const pre_job *c = (const pre_job *)h->pre_w.current;
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
    host_worker_push(&h->pre_w, &j->base);
}

/* After a role-B request served (all checks passed): remember the width of
 * its layer, and after the deployment's last layer schedule counter + 1.
 * `gen`: pre_gen when the request began (its key may be outdated else). */
void host_pre_note(te_host *h, const Twinedge__LayerRequest *q, unsigned l, int n_layers,
                     const uint8_t key[TE_KEY_BYTES], uint64_t gen)
{
    if (!h->pre_w.ready || n_layers <= 0 || q->layer >= (uint32_t)n_layers)
        return;
    pthread_mutex_lock(&h->pre_w.mu);
    if (atomic_load(&h->pre_gen) != gen || h->pre_w.stop)
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
    pthread_mutex_unlock(&h->pre_w.mu);
}

/* serve(), role B, after every check: W.M for this request from the cache
 * (taken out: each entry is handed out once), or NULL for a miss.  Waits
 * for an entry being computed; drops one not yet started (the request
 * computes it now). */
uint64_t *host_pre_take(te_host *h, const Twinedge__LayerRequest *q, unsigned l, size_t out_n)
{
    if (!h->pre_w.ready)
        return NULL;
    uint64_t *wm = NULL;
    char ident[PRE_ID_LEN];
    pre_ident(q, ident);
    pthread_mutex_lock(&h->pre_w.mu);
    for (;;) {
        pre_entry **p = pre_find(h, q->deployment_id, ident, q->counter, q->layer, l);
        if (!p)
            break;
        pre_entry *e = *p;
        if (e->state == PRE_COMPUTING) {
            pthread_cond_wait(&h->pre_w.change, &h->pre_w.mu);
            continue; /* look again: it may be gone */
        }
        if (e->state == PRE_READY && e->batch == q->batch && e->out_n == out_n) {
            wm = e->wm;
            e->wm = NULL;
        }
        pre_entry_drop(h, p);
        break;
    }
    pthread_mutex_unlock(&h->pre_w.mu);
    atomic_fetch_add_explicit(wm ? &h->pre_hits : &h->pre_misses, 1, memory_order_relaxed);
    return wm;
}

/* Compute one job, layer by layer; called without pre_w.mu. */
static void pre_run_job(te_host *h, host_job *hj)
{
    pre_job *j = (pre_job *)hj;
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
        memset(&hl, 0, sizeof hl);
        if (host_find_layer(h, j->deployment, (uint32_t)i, &hl, &n, &e) != TE_OK || n != j->n_layers) {
            host_layer_put(&hl);
            free(outs);
            return; /* the deployment changed under the job */
        }
        uint64_t in_b = (uint64_t)te_geom_in_len(&hl.geom) * 8;
        outs[i] = (size_t)te_geom_out_len(&hl.geom);
        host_layer_put(&hl); /* only its size was needed */
        total += (uint64_t)outs[i] * 8;
        if (in_b > scratch)
            scratch = in_b;
    }
    char msg[256] = "";
    pthread_mutex_lock(&h->pre_w.mu);
    int go = !j->stale && !h->pre_w.stop;
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
    pthread_mutex_unlock(&h->pre_w.mu);
    free(outs);
    if (msg[0])
        host_logf(h, TE_LOG_WARN, "%s", msg);
    if (!go)
        return;

    uint64_t *in = malloc(scratch ? (size_t)scratch : 1);
    for (int i = 0; in && i < j->n_layers; i++) {
        unsigned l = j->widths[i];
        if (!l)
            continue;
        pthread_mutex_lock(&h->pre_w.mu);
        if (j->stale || h->pre_w.stop) {
            pthread_mutex_unlock(&h->pre_w.mu);
            break;
        }
        pre_entry **p = pre_find(h, j->deployment, j->device, j->counter, (uint32_t)i, l);
        pre_entry *en = p && (*p)->state == PRE_PENDING ? *p : NULL;
        if (en)
            en->state = PRE_COMPUTING;
        pthread_mutex_unlock(&h->pre_w.mu);
        if (!en)
            continue; /* served on demand meanwhile */

        /* the same path as serve(): te_prf_ring, then host_run_layer */
        host_layer hl;
        int n = 0;
        te_err e;
        te_err_clear(&e);
        uint64_t *out = NULL;
        memset(&hl, 0, sizeof hl);
        te_status st = host_find_layer(h, j->deployment, (uint32_t)i, &hl, &n, &e);
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
            st = host_run_layer(h, &hl, l, 1, in, out, &e);
        host_layer_put(&hl);

        pthread_mutex_lock(&h->pre_w.mu);
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
        pthread_cond_broadcast(&h->pre_w.change);
        pthread_mutex_unlock(&h->pre_w.mu);
        if (fail[0])
            host_logf(h, TE_LOG_WARN, "%s", fail);
    }
    free(in);
    pthread_mutex_lock(&h->pre_w.mu);
    h->pre_bytes -= scratch;
    if (!in || j->stale) /* entries this job will never fill */
        pre_purge(h, j->deployment, j->device, 0, j->counter + 1);
    pthread_mutex_unlock(&h->pre_w.mu);
}

te_status host_pre_init(te_host *h, uint32_t mb, te_err *err)
{
    h->pre_cap = (uint64_t)mb << 20;
    return host_worker_start(&h->pre_w, "precompute", h, PRE_MAX_JOBS, pre_run_job, pre_job_free, err);
}

void host_pre_fini(te_host *h)
{
    if (!h->pre_w.ready)
        return;
    host_worker_join(&h->pre_w);
    while (h->pre_entries)
        pre_entry_drop(h, &h->pre_entries);
    while (h->pre_seen) {
        pre_seen *r = h->pre_seen;
        h->pre_seen = r->next;
        pre_seen_free(r);
    }
    host_worker_destroy(&h->pre_w);
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
