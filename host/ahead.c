/* EdgeA's relay-ahead cache (te_host_config.relay_ahead_kb; the types are
 * in host_internal.h).
 *
 * EdgeA pulls W.M + Z for a device session's next request from EdgeB as
 * soon as the current one has been served through its last layer, so the
 * next request's online path involves EdgeA alone.  Why this is safe:
 * - EdgeA learns nothing new: in relay mode it receives W.M + Z for every
 *   layer anyway, and Z = PRF(K_s; t, i, out) stays unknown to it.  EdgeB
 *   still gives W.M + Z only to an EdgeA certificate (request.c), never W.M
 *   alone; an entry fetched at another ring width is a truncation of the
 *   same PRF words, so nothing more either.
 * - An entry is keyed by the device id of the request that caused it (the
 *   caller's certificate name, request.c) and its session, and served only
 *   to a request with the same id, session, counter, layer and width,
 *   which authorize() has matched to the caller's certificate.
 * - The replay guard runs before the cache is looked at (roles.c), and an
 *   entry is taken out when used: a (session, counter, layer) is served at
 *   most once, from the cache or not.
 * - The device's checks are unchanged: a wrong entry fails them. */
#include "host_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "te_wire.h"

static double mono_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int key_set(ahead_key *k, const char *deployment, const char *device, const uint8_t *session)
{
    snprintf(k->deployment, sizeof k->deployment, "%s", deployment);
    memcpy(k->session, session, TE_SESSION_BYTES);
    k->device = strdup(device);
    return k->device != NULL;
}

static int key_is(const ahead_key *k, const char *deployment, const char *device, const uint8_t *session)
{
    return strcmp(k->deployment, deployment) == 0 && strcmp(k->device, device) == 0 &&
           memcmp(k->session, session, TE_SESSION_BYTES) == 0;
}

static int key_eq(const ahead_key *a, const ahead_key *b) { return key_is(a, b->deployment, b->device, b->session); }

static void job_free(host_job *hj)
{
    ahead_job *j = (ahead_job *)hj;
    if (!j)
        return;
    free(j->k.device);
    free(j->widths);
    free(j);
}

static void seen_free(ahead_seen *s)
{
    if (!s)
        return;
    free(s->k.device);
    free(s->widths);
    free(s);
}

/* Unlink *link and free it, releasing its bytes; `evicted`: it goes unused. */
static void entry_drop(te_host *h, ahead_entry **link, int evicted)
{
    ahead_entry *e = *link;
    *link = e->next;
    atomic_fetch_sub(&h->ahead_bytes, e->bytes);
    if (evicted && e->state == AHEAD_READY)
        atomic_fetch_add_explicit(&h->ahead_evictions, 1, memory_order_relaxed);
    free(e->k.device);
    free(e->wmz);
    free(e);
}

void host_ahead_forget(te_host *h, const char *deployment)
{
    if (!h->ahead_w.ready)
        return;
    pthread_mutex_lock(&h->ahead_w.mu);
    h->ahead_gen++; /* jobs and fetches of the old layers are dropped */
    for (ahead_entry **p = &h->ahead_entries; *p;) {
        if (strcmp((*p)->k.deployment, deployment) != 0) {
            p = &(*p)->next;
        } else if ((*p)->state == AHEAD_FETCHING) {
            (*p)->stale = 1;
            p = &(*p)->next;
        } else {
            entry_drop(h, p, 0);
        }
    }
    for (ahead_seen **p = &h->ahead_seen; *p;) {
        if (strcmp((*p)->k.deployment, deployment) == 0) {
            ahead_seen *s = *p;
            *p = s->next;
            h->ahead_n_seen--;
            seen_free(s);
        } else {
            p = &(*p)->next;
        }
    }
    pthread_mutex_unlock(&h->ahead_w.mu);
}

void host_ahead_set_peer(te_host *h, te_transport *peer)
{
    if (!h->ahead_w.ready) {
        h->peer = peer;
        return;
    }
    /* the caller may free the old transport once this returns */
    pthread_mutex_lock(&h->ahead_w.mu);
    while (h->ahead_calling)
        pthread_cond_wait(&h->ahead_w.change, &h->ahead_w.mu);
    h->peer = peer;
    pthread_mutex_unlock(&h->ahead_w.mu);
}

/* serve(), role A relay, after the replay guard: this layer's W.M + Z from
 * the cache (taken out), or NULL for a miss.  Waits for an entry whose
 * fetch is in flight; drops one not yet asked for (the request asks EdgeB
 * itself) or one at another width. */
uint64_t *host_ahead_take(te_host *h, const Twinedge__LayerRequest *q, unsigned l, size_t out_n)
{
    if (!h->ahead_w.ready || q->batch != 1 || !q->device_id || q->session.len != TE_SESSION_BYTES)
        return NULL;
    uint64_t *wmz = NULL;
    pthread_mutex_lock(&h->ahead_w.mu);
    for (;;) {
        ahead_entry **p = &h->ahead_entries;
        while (*p && ((*p)->stale || (*p)->counter != q->counter || (*p)->layer != q->layer ||
                      !key_is(&(*p)->k, q->deployment_id, q->device_id, q->session.data)))
            p = &(*p)->next;
        if (!*p)
            break;
        ahead_entry *e = *p;
        if (e->state == AHEAD_FETCHING) {
            pthread_cond_wait(&h->ahead_w.change, &h->ahead_w.mu);
            continue; /* look again: it may be gone */
        }
        if (e->state == AHEAD_READY && e->l == l && e->out_n == out_n && e->gen == h->ahead_gen) {
            wmz = e->wmz;
            e->wmz = NULL;
        }
        entry_drop(h, p, 0);
        break;
    }
    pthread_mutex_unlock(&h->ahead_w.mu);
    atomic_fetch_add_explicit(wmz ? &h->ahead_hits : &h->ahead_misses, 1, memory_order_relaxed);
    return wmz;
}

/* Queue the fetch of request counter + 1 with the widths of s. */
static void schedule(te_host *h, const ahead_seen *s)
{
    ahead_job *j = calloc(1, sizeof *j);
    uint8_t *w = malloc((size_t)s->n_layers);
    if (!j || !w || !key_set(&j->k, s->k.deployment, s->k.device, s->k.session)) {
        free(w); /* an optimisation only: the next request asks EdgeB */
        if (j)
            job_free(&j->base);
        return;
    }
    memcpy(w, s->widths, (size_t)s->n_layers);
    j->widths = w;
    j->n_layers = s->n_layers;
    j->counter = s->counter + 1;
    j->gen = h->ahead_gen;
    /* the session's older entries will not be asked for: the device moves forward */
    for (ahead_entry **p = &h->ahead_entries; *p;) {
        if ((*p)->counter < j->counter && (*p)->state != AHEAD_FETCHING && key_eq(&(*p)->k, &j->k))
            entry_drop(h, p, 1);
        else
            p = &(*p)->next;
    }
    host_worker_push(&h->ahead_w, &j->base);
}

/* After a relay request served: remember its layer's width, and after the
 * deployment's last layer fetch counter + 1. */
void host_ahead_note(te_host *h, const Twinedge__LayerRequest *q, unsigned l, int n_layers)
{
    if (!h->ahead_w.ready || n_layers <= 0 || q->layer >= (uint32_t)n_layers || !q->device_id ||
        q->session.len != TE_SESSION_BYTES)
        return;
    pthread_mutex_lock(&h->ahead_w.mu);
    if (h->ahead_w.stop)
        goto out;
    ahead_seen **p = &h->ahead_seen, *s;
    while (*p && !key_is(&(*p)->k, q->deployment_id, q->device_id, q->session.data))
        p = &(*p)->next;
    if (*p) {
        s = *p; /* to the front: the list is most recently used first */
        *p = s->next;
    } else {
        s = calloc(1, sizeof *s);
        if (!s || !key_set(&s->k, q->deployment_id, q->device_id, q->session.data)) {
            seen_free(s);
            goto out;
        }
        h->ahead_n_seen++;
    }
    s->next = h->ahead_seen;
    h->ahead_seen = s;
    if (h->ahead_n_seen > AHEAD_MAX_SEEN) { /* forget the least recently used */
        ahead_seen **last = &h->ahead_seen;
        while ((*last)->next)
            last = &(*last)->next;
        seen_free(*last);
        *last = NULL;
        h->ahead_n_seen--;
    }
    if (s->n_layers != n_layers || !s->widths) {
        uint8_t *w = calloc((size_t)n_layers, 1);
        if (!w)
            goto out;
        free(s->widths);
        s->widths = w;
        s->n_layers = n_layers;
        s->counter = q->counter;
    }
    if (s->counter != q->counter) {
        memset(s->widths, 0, (size_t)n_layers);
        s->counter = q->counter;
    }
    s->widths[q->layer] = q->batch == 1 ? (uint8_t)l : 0; /* entries are batch 1 */
    s->due = q->layer == (uint32_t)n_layers - 1 && q->counter != UINT64_MAX;
out:
    pthread_mutex_unlock(&h->ahead_w.mu);
}

/* The fetch waits for the end of the device's inference stream: started
 * at the last layer, it would take CPU and bandwidth from the device's own
 * inference while it finishes (on a small edge box, the same cores). */
void host_ahead_stream_ended(te_host *h, const char *device)
{
    if (!h->ahead_w.ready || !device)
        return;
    pthread_mutex_lock(&h->ahead_w.mu);
    for (ahead_seen *s = h->ahead_seen; s && !h->ahead_w.stop; s = s->next) {
        if (s->due && strcmp(s->k.device, device) == 0 && h->peer)
            schedule(h, s);
        if (strcmp(s->k.device, device) == 0)
            s->due = 0;
    }
    pthread_mutex_unlock(&h->ahead_w.mu);
}

/* One layer's W.M + Z from EdgeB, asked as EdgeA's relay request is, marked
 * `ahead`; called without ahead_w.mu, with ahead_calling set. */
static te_status fetch(te_transport *peer, const ahead_job *j, uint32_t layer, unsigned l, size_t out_n,
                       uint64_t *wmz, te_err *err)
{
    Twinedge__LayerRequest q = TWINEDGE__LAYER_REQUEST__INIT;
    q.deployment_id = (char *)j->k.deployment;
    q.device_id = j->k.device;
    q.counter = j->counter;
    q.layer = layer;
    q.ring_bits = l;
    q.batch = 1;
    q.mode = TWINEDGE__MODE__MODE_RELAY;
    q.session.data = (uint8_t *)j->k.session;
    q.session.len = TE_SESSION_BYTES;
    q.ahead = 1;
    size_t n = twinedge__layer_request__get_packed_size(&q);
    uint8_t *buf = malloc(n ? n : 1), *resp = NULL;
    size_t resp_len = 0;
    if (!buf)
        return te_errf(err, TE_ENOMEM, "out of memory");
    twinedge__layer_request__pack(&q, buf);
    te_status st = te_transport_call(peer, TE_PARTY_EDGE_B, buf, n, &resp, &resp_len, err);
    free(buf);
    if (st == TE_OK)
        st = te_wire_read_response(resp, resp_len, "EdgeB", layer, out_n, l, wmz, err);
    free(resp);
    return st;
}

/* Make room for `need` more bytes: the oldest entries not in flight go
 * (and any unused too long).  Returns whether it fits. */
static int make_room(te_host *h, uint64_t need)
{
    double now = mono_s();
    for (ahead_entry **p = &h->ahead_entries; *p;) {
        if ((*p)->state != AHEAD_FETCHING && now - (*p)->born > AHEAD_MAX_AGE_S)
            entry_drop(h, p, 1);
        else
            p = &(*p)->next;
    }
    for (ahead_entry **p = &h->ahead_entries; *p && atomic_load(&h->ahead_bytes) + need > h->ahead_cap;) {
        if ((*p)->state != AHEAD_FETCHING)
            entry_drop(h, p, 1);
        else
            p = &(*p)->next;
    }
    return atomic_load(&h->ahead_bytes) + need <= h->ahead_cap;
}

static void run_job(te_host *h, host_job *hj)
{
    ahead_job *j = (ahead_job *)hj;
    size_t *outs = calloc((size_t)j->n_layers, sizeof *outs);
    if (!outs)
        return;
    uint64_t total = 0;
    for (int i = 0; i < j->n_layers; i++) {
        if (!j->widths[i])
            continue;
        host_layer hl;
        int n = 0;
        te_err e;
        memset(&hl, 0, sizeof hl);
        if (host_find_layer(h, j->k.deployment, (uint32_t)i, &hl, &n, &e) != TE_OK || n != j->n_layers) {
            host_layer_put(&hl);
            free(outs);
            return; /* the deployment changed under the job */
        }
        outs[i] = (size_t)te_geom_out_len(&hl.geom);
        host_layer_put(&hl);
        total += (uint64_t)outs[i] * sizeof(uint64_t);
    }
    char msg[256] = "";
    pthread_mutex_lock(&h->ahead_w.mu);
    int go = !h->ahead_w.stop && j->gen == h->ahead_gen;
    if (go && !make_room(h, total)) {
        go = 0;
        if (!h->ahead_logged_skip) {
            h->ahead_logged_skip = 1;
            snprintf(msg, sizeof msg,
                     "relay ahead: a request of deployment %s needs %.1f KiB, over relay_ahead_kb = %llu; "
                     "such requests ask EdgeB online (logged once)",
                     j->k.deployment, (double)total / 1024.0, (unsigned long long)(h->ahead_cap >> 10));
        }
    }
    double now = mono_s();
    ahead_entry **tail = &h->ahead_entries;
    while (go && *tail)
        tail = &(*tail)->next;
    for (int i = 0; go && i < j->n_layers; i++) {
        if (!j->widths[i])
            continue;
        ahead_entry *en = calloc(1, sizeof *en);
        if (!en || !key_set(&en->k, j->k.deployment, j->k.device, j->k.session)) {
            free(en);
            break;
        }
        en->counter = j->counter;
        en->layer = (uint32_t)i;
        en->l = j->widths[i];
        en->out_n = outs[i];
        en->state = AHEAD_QUEUED;
        en->gen = j->gen;
        en->born = now;
        en->bytes = outs[i] * sizeof(uint64_t);
        atomic_fetch_add(&h->ahead_bytes, en->bytes);
        *tail = en;
        tail = &en->next;
    }
    pthread_mutex_unlock(&h->ahead_w.mu);
    free(outs);
    if (msg[0])
        host_logf(h, TE_LOG_WARN, "%s", msg);

    for (int i = 0; go && i < j->n_layers; i++) {
        if (!j->widths[i])
            continue;
        pthread_mutex_lock(&h->ahead_w.mu);
        ahead_entry *en = h->ahead_entries;
        while (en && (en->state != AHEAD_QUEUED || en->stale || en->counter != j->counter ||
                      en->layer != (uint32_t)i || !key_eq(&en->k, &j->k)))
            en = en->next;
        te_transport *peer = h->peer;
        int stop = h->ahead_w.stop || j->gen != h->ahead_gen || !peer;
        if (en && !stop) {
            en->state = AHEAD_FETCHING;
            h->ahead_calling = 1;
        }
        pthread_mutex_unlock(&h->ahead_w.mu);
        if (stop)
            break;
        if (!en)
            continue; /* asked for meanwhile, or evicted */

        te_err e;
        te_err_clear(&e);
        uint64_t *wmz = malloc(en->out_n ? en->out_n * sizeof *wmz : 1);
        te_status st = wmz ? fetch(peer, j, (uint32_t)i, en->l, en->out_n, wmz, &e)
                           : te_errf(&e, TE_ENOMEM, "out of memory");

        pthread_mutex_lock(&h->ahead_w.mu);
        h->ahead_calling = 0;
        char fail[TE_ERR_MSG_MAX + 160] = "";
        if (st != TE_OK && !h->ahead_logged_fail) {
            h->ahead_logged_fail = 1;
            snprintf(fail, sizeof fail, "relay ahead: fetching layer %d from EdgeB failed (%s); such layers ask "
                     "EdgeB online (logged once)", i, e.msg);
        }
        if (st != TE_OK || en->stale || en->gen != h->ahead_gen) {
            ahead_entry **p = &h->ahead_entries;
            while (*p && *p != en)
                p = &(*p)->next;
            if (*p)
                entry_drop(h, p, 0);
            free(wmz);
        } else {
            en->wmz = wmz;
            en->state = AHEAD_READY;
        }
        pthread_cond_broadcast(&h->ahead_w.change);
        pthread_mutex_unlock(&h->ahead_w.mu);
        if (fail[0])
            host_logf(h, TE_LOG_WARN, "%s", fail);
        if (st != TE_OK)
            break; /* EdgeB unreachable: the rest would fail alike */
    }
    /* entries this job reserved and will not fetch */
    pthread_mutex_lock(&h->ahead_w.mu);
    for (ahead_entry **p = &h->ahead_entries; *p;) {
        if ((*p)->state == AHEAD_QUEUED && (*p)->counter == j->counter && key_eq(&(*p)->k, &j->k))
            entry_drop(h, p, 0);
        else
            p = &(*p)->next;
    }
    pthread_mutex_unlock(&h->ahead_w.mu);
}

te_status host_ahead_init(te_host *h, uint32_t kb, te_err *err)
{
    h->ahead_cap = (uint64_t)kb << 10;
    return host_worker_start(&h->ahead_w, "relay-ahead", h, AHEAD_MAX_JOBS, run_job, job_free, err);
}

void host_ahead_fini(te_host *h)
{
    if (!h->ahead_w.ready)
        return;
    host_worker_join(&h->ahead_w);
    while (h->ahead_entries)
        entry_drop(h, &h->ahead_entries, 0);
    while (h->ahead_seen) {
        ahead_seen *s = h->ahead_seen;
        h->ahead_seen = s->next;
        seen_free(s);
    }
    host_worker_destroy(&h->ahead_w);
}

void te_host_relay_ahead_figures(const te_host *h, uint64_t *hits, uint64_t *misses, uint64_t *evictions,
                                 uint64_t *bytes)
{
    if (hits)
        *hits = atomic_load_explicit(&h->ahead_hits, memory_order_relaxed);
    if (misses)
        *misses = atomic_load_explicit(&h->ahead_misses, memory_order_relaxed);
    if (evictions)
        *evictions = atomic_load_explicit(&h->ahead_evictions, memory_order_relaxed);
    if (bytes)
        *bytes = atomic_load_explicit(&h->ahead_bytes, memory_order_relaxed);
}
