/* The transport interface: how a party's requests reach EdgeA and EdgeB.
 *
 * A transport moves opaque serialized messages (proto/wire.proto): one
 * request out, one response back.  The in-process transport (host/) calls
 * the hosts directly; the gRPC transport carries the same bytes over the
 * network.  Both count bytes per party the same way, so test and benchmark
 * numbers agree.  The math never changes for the network. */
#ifndef TE_TRANSPORT_H
#define TE_TRANSPORT_H

#include <stdint.h>
#include <stddef.h>
#include <stdlib.h>
#include "te_error.h"

typedef enum te_party {
    TE_PARTY_EDGE_A = 0,
    TE_PARTY_EDGE_B = 1
} te_party;

/* Bytes on the wire, message payloads (the serialized protobuf), by party. */
typedef struct te_traffic {
    uint64_t device_up;     /* sent by the device, to either host */
    uint64_t device_down;   /* received by the device */
    uint64_t edge_a_in;     /* received by EdgeA (from the device and from EdgeB) */
    uint64_t edge_a_out;
    uint64_t edge_b_in;     /* received by EdgeB (from the device or from EdgeA) */
    uint64_t edge_b_out;
    uint64_t messages;
} te_traffic;

/* Account one request/response exchange: sent by the device (from_edge_a
 * = 0) to `to`, or by EdgeA to EdgeB (from_edge_a = 1).  Every transport
 * counts through this one function, so their figures agree. */
void te_traffic_add(te_traffic *t, int from_edge_a, te_party to, size_t req_len, size_t resp_len);

typedef struct te_transport te_transport;

typedef struct te_transport_ops {
    /* Send one serialized LayerRequest to `to`, receive its serialized
     * LayerResponse in *resp (malloc'd, caller frees).  A failure here is a
     * transport failure (TE_ETRANSPORT, TE_EAUTH); an error the host reports
     * travels inside the response. */
    te_status (*call)(te_transport *t, te_party to, const uint8_t *req, size_t req_len,
                      uint8_t **resp, size_t *resp_len, te_err *err);
    void (*destroy)(te_transport *t);
    /* Optional (NULL: nothing to do).  One inference's calls are about to
     * start / have all been made; between the two a transport may keep
     * per-inference state (the gRPC transport keeps one Infer stream per
     * host open, so an inference is one stream). */
    te_status (*begin)(te_transport *t, te_err *err);
    void (*end)(te_transport *t);
    /* Optional (NULL: call() to EdgeA, then to EdgeB).  req[p] to party p
     * for both parties, the two in flight at once; returns once both have
     * answered or failed.  On TE_OK resp[0] and resp[1] are malloc'd (the
     * caller frees both); on failure neither is set and *failed names the
     * party whose call failed (EdgeA's when both did). */
    te_status (*call_pair)(te_transport *t, const uint8_t *const req[2], const size_t req_len[2], uint8_t *resp[2],
                           size_t resp_len[2], te_party *failed, te_err *err);
} te_transport_ops;

struct te_transport {
    const te_transport_ops *ops;
    void *impl;
};

static inline te_status te_transport_call(te_transport *t, te_party to, const uint8_t *req, size_t req_len,
                                          uint8_t **resp, size_t *resp_len, te_err *err)
{
    return t->ops->call(t, to, req, req_len, resp, resp_len, err);
}

/* call_pair's contract with call() to EdgeA, then call() to EdgeB: the
 * fallback for a transport that cannot have both in flight. */
static inline te_status te_transport_call_each(te_transport *t, const uint8_t *const req[2], const size_t req_len[2],
                                               uint8_t *resp[2], size_t resp_len[2], te_party *failed, te_err *err)
{
    resp[0] = resp[1] = NULL;
    resp_len[0] = resp_len[1] = 0;
    *failed = TE_PARTY_EDGE_A;
    for (int p = 0; p < 2; p++) {
        te_status st = t->ops->call(t, (te_party)p, req[p], req_len[p], &resp[p], &resp_len[p], err);
        if (st != TE_OK) {
            if (p == 1)
                free(resp[0]);
            resp[0] = resp[1] = NULL; /* a failed call() leaves no response */
            resp_len[0] = resp_len[1] = 0;
            *failed = (te_party)p;
            return st;
        }
    }
    return TE_OK;
}

/* One request to each host (device-mediated mode): both at once where the
 * transport can, else one after the other.  Contract as call_pair's. */
static inline te_status te_transport_call_pair(te_transport *t, const uint8_t *const req[2], const size_t req_len[2],
                                               uint8_t *resp[2], size_t resp_len[2], te_party *failed, te_err *err)
{
    resp[0] = resp[1] = NULL;
    resp_len[0] = resp_len[1] = 0;
    *failed = TE_PARTY_EDGE_A;
    if (t->ops->call_pair)
        return t->ops->call_pair(t, req, req_len, resp, resp_len, failed, err);
    return te_transport_call_each(t, req, req_len, resp, resp_len, failed, err);
}

static inline te_status te_transport_begin(te_transport *t, te_err *err)
{
    return t->ops->begin ? t->ops->begin(t, err) : TE_OK;
}

static inline void te_transport_end(te_transport *t)
{
    if (t->ops->end)
        t->ops->end(t);
}

/* Attach a transport (not owned) to a device handle: device-sdk/src/device.c.
 * Inside the tree only (tests, tools); the installed API has
 * twinedge_set_transport() with callbacks instead of this struct. */
struct twinedge_device;
int twinedge_use_transport(struct twinedge_device *dev, te_transport *t);

#endif
