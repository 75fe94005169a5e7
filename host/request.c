/* A layer request, decoded and checked once: the message's fields, the
 * layer it names and every size derived from them (host_request_decode),
 * whether the caller may ask for it (host_request_authorize), then its
 * data against the layer (host_request_check_data: after the caller's
 * rights, so a request in another's name is refused as such whatever it
 * carries), and the response's wire form (core/te_wire.c).  Nothing later
 * parses the message again. */
#include "host_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "te_ring.h"

void host_request_free(host_request *r)
{
    host_layer_put(&r->hl);
    if (r->q)
        twinedge__layer_request__free_unpacked(r->q, NULL);
    memset(r, 0, sizeof *r);
}

te_status host_request_decode(te_host *h, const uint8_t *buf, size_t len, host_request *r, te_err *err)
{
    memset(r, 0, sizeof *r);
    /* read before the layer and the key: pre_note schedules nothing from a
     * request that may have seen a key or layers replaced since */
    r->pre_gen = atomic_load(&h->pre_gen);
    Twinedge__LayerRequest *q = r->q = twinedge__layer_request__unpack(NULL, len, buf);
    if (!q)
        return te_errf(err, TE_EFORMAT, "malformed LayerRequest");
    te_status st = host_find_layer(h, q->deployment_id, q->layer, &r->hl, &r->n_layers, err);
    if (st != TE_OK)
        return st;
    r->l = q->ring_bits;
    if (r->l < 1 || r->l > 64)
        return te_errf(err, TE_EINVAL, "ring width %u out of range 1..64", r->l);
    if (q->batch < 1 || q->batch > h->max_batch)
        return te_errf(err, TE_EINVAL, "batch %llu out of range 1..%llu", (unsigned long long)q->batch,
                       (unsigned long long)h->max_batch);
    uint64_t in_len = (uint64_t)te_geom_in_len(&r->hl.geom), out_len = (uint64_t)te_geom_out_len(&r->hl.geom);
    if (in_len * q->batch > TE_HOST_MAX_ELEMS || out_len * q->batch > TE_HOST_MAX_ELEMS)
        return te_errf(err, TE_EINVAL, "request too large");
    r->in_n = (size_t)(in_len * q->batch);
    r->out_n = (size_t)(out_len * q->batch);
    r->relay = q->mode == TWINEDGE__MODE__MODE_RELAY;
    r->plain = q->mode == TWINEDGE__MODE__MODE_PLAIN;
    if (r->plain && (h->role != TE_ROLE_A || !h->allow_plaintext))
        return te_errf(err, TE_EUNSUPPORTED, "plaintext requests (the benchmarks' no-privacy baseline) are not "
                       "enabled on this host");
    if (r->plain && r->l != 32)
        return te_errf(err, TE_EINVAL, "plaintext requests carry float32 elements (ring width 32), not %u", r->l);
    if (!r->plain && q->session.len != TE_SESSION_BYTES)
        return te_errf(err, TE_EINVAL, "request without a %d-byte session (got %zu bytes)", TE_SESSION_BYTES,
                       q->session.len);
    return TE_OK;
}

te_status host_request_authorize(const te_host *h, const te_caller *caller, const host_request *r, te_err *err)
{
    const Twinedge__LayerRequest *q = r->q;
    /* A device answers for its own id only: the certificate's, not the
     * request's say-so (EdgeA too, or one device could spend another's
     * session counters or have results computed in its name). */
    if (caller->kind == TE_CALLER_DEVICE && (!caller->name || !q->device_id || strcmp(caller->name, q->device_id) != 0))
        return te_errf(err, TE_EAUTH, "device '%.64s' may not ask for device '%.64s'", caller->name ? caller->name : "",
                       q->device_id ? q->device_id : "");
    if (h->role == TE_ROLE_B) {
        /* EdgeB hands W.M in the clear only to the device it belongs to
         * (mediated), and only W.M + Z to EdgeA (relay): W.M in EdgeA's
         * hands would unmask W.x. */
        if (caller->kind == TE_CALLER_EDGE_A && !r->relay)
            return te_errf(err, TE_EAUTH, "EdgeB serves EdgeA in relay mode only");
        if (caller->kind == TE_CALLER_DEVICE && r->relay)
            return te_errf(err, TE_EINVAL, "relay shares go to EdgeA, not to the device");
    }
    /* A fetch ahead (not spent in EdgeB's replay guard) is EdgeA's, to EdgeB,
     * for W.M + Z only (host/ahead.c). */
    if (q->ahead && (h->role != TE_ROLE_B || caller->kind != TE_CALLER_EDGE_A || !r->relay))
        return te_errf(err, TE_EAUTH, "only EdgeA may fetch relay shares ahead, from EdgeB");
    return TE_OK;
}

te_status host_request_check_data(const te_host *h, const host_request *r, te_err *err)
{
    const Twinedge__LayerRequest *q = r->q;
    if (h->role == TE_ROLE_A) {
        size_t want = te_pack_bytes(r->in_n, r->l);
        if (q->data.len != want)
            return te_errf(err, TE_ESHAPE,
                           "wrong shape: layer %u expects %zu elements of %u bits (%zu bytes), got %zu bytes",
                           q->layer, r->in_n, r->l, want, q->data.len);
    } else if (q->data.len != 0) {
        return te_errf(err, TE_EINVAL, "EdgeB requests carry no data");
    }
    return TE_OK;
}
