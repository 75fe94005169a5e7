/* Serving a decoded, authorized layer request: the replay guard, then
 * role A (W.A; relay mode: minus EdgeB's W.M + Z, fetched meanwhile), role
 * B (W.M, plus Z for EdgeA), or the plaintext baseline. */
#include "host_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "te_ring.h"
#include "te_wire.h"

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
    te_status st = host_run_layer(h, hl, q->ring_bits, q->batch, in, out, err);
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
        if ((st = host_run_layer_f32(h, hl, batch, fin, fout, err)) == TE_OK)
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

/* Role A: W.A (relay: minus EdgeB's W.M + Z), or the plaintext baseline. */
static te_status serve_a(te_host *h, const host_request *r, uint64_t *in, uint64_t *out, te_err *err)
{
    const Twinedge__LayerRequest *q = r->q;
    te_status st;
    if (!r->plain && (st = admit(h, q, err)) != TE_OK)
        return st;
    if ((st = te_unpack(q->data.data, q->data.len, r->in_n, r->l, in, err)) != TE_OK)
        return st;
    if (r->plain)
        return run_plain(h, &r->hl, q->batch, in, r->in_n, out, r->out_n, err);
    if (!r->relay)
        return host_run_layer(h, &r->hl, r->l, q->batch, in, out, err);
    /* W.M + Z fetched ahead (after the replay guard above: served once) */
    uint64_t *wmz = host_ahead_take(h, q, r->l, r->out_n);
    if (wmz) {
        if ((st = host_run_layer(h, &r->hl, r->l, q->batch, in, out, err)) == TE_OK)
            te_ring_vsub(out, out, wmz, r->out_n, r->l);
        free(wmz);
    } else {
        st = run_relay(h, &r->hl, q, in, out, r->out_n, err);
    }
    if (st == TE_OK)
        host_ahead_note(h, q, r->l, r->n_layers);
    return st;
}

/* Role B: W.M (precomputed, or computed now), plus Z for EdgeA in relay
 * mode.  *out may be replaced by the cache's buffer. */
static te_status serve_b(te_host *h, const host_request *r, uint64_t *in, uint64_t **out, te_err *err)
{
    const Twinedge__LayerRequest *q = r->q;
    unsigned l = r->l;
    uint8_t dkey[TE_KEY_BYTES], key[TE_KEY_BYTES];
    te_status st;
    /* EdgeA's fetch ahead is not spent: the device's own request for the
     * same share may still come, and repeating W.M + Z tells EdgeA nothing */
    if ((st = host_find_key(h, q->deployment_id, q->device_id, dkey, err)) == TE_OK &&
        (q->ahead || (st = admit(h, q, err)) == TE_OK))
        st = te_prf_session_key(dkey, q->session.data, key, err); /* key: this session's K_s */
    memset(dkey, 0, sizeof dkey);
    /* W.M: precomputed (taken out of the cache), or computed now */
    uint64_t *wm = st == TE_OK ? host_pre_take(h, q, l, r->out_n) : NULL;
    if (wm) {
        free(*out);
        *out = wm;
    }
    if (st == TE_OK && !wm)
        st = te_prf_ring(key, q->counter, q->layer, TE_PRF_MASK, l, in, r->in_n, err);
    if (st == TE_OK && !wm)
        st = host_run_layer(h, &r->hl, l, q->batch, in, *out, err);
    if (st == TE_OK && r->relay) {
        /* reuse `in` for Z when it is large enough, else a new buffer */
        uint64_t *z = r->out_n <= r->in_n ? in : malloc(r->out_n * sizeof *z);
        if (!z)
            st = te_errf(err, TE_ENOMEM, "out of memory");
        else if ((st = te_prf_ring(key, q->counter, q->layer, TE_PRF_OUT, l, z, r->out_n, err)) == TE_OK)
            te_ring_vadd(*out, *out, z, r->out_n, l);
        if (z && z != in)
            free(z);
    }
    if (st == TE_OK && !q->ahead)
        host_pre_note(h, q, l, r->n_layers, key, r->pre_gen);
    memset(key, 0, sizeof key);
    return st;
}

te_status host_serve(te_host *h, const host_request *r, uint8_t **packed, size_t *packed_len, te_err *err)
{
    uint64_t *in = malloc((r->in_n ? r->in_n : 1) * sizeof *in), *out = malloc((r->out_n ? r->out_n : 1) * sizeof *out);
    te_status st;
    if (!in || !out)
        st = te_errf(err, TE_ENOMEM, "out of memory");
    else
        st = h->role == TE_ROLE_A ? serve_a(h, r, in, out, err) : serve_b(h, r, in, &out, err);
    if (st == TE_OK) {
        *packed_len = te_pack_bytes(r->out_n, r->l);
        *packed = malloc(*packed_len ? *packed_len : 1);
        if (!*packed)
            st = te_errf(err, TE_ENOMEM, "out of memory");
        else
            te_pack(out, r->out_n, r->l, *packed);
    }
    free(in);
    free(out);
    return st;
}
