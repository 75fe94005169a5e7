/* twinedge device SDK: the network link to EdgeA and EdgeB (gRPC, mutual TLS).
 *
 *     twinedge_net *net = NULL;
 *     if (twinedge_connect(dev, "edge-a.example:7001", "edge-b.example:7002",
 *                          "/etc/myapp/device/tls", 30000, &net) != TWINEDGE_OK) {
 *         fprintf(stderr, "%s\n", twinedge_net_errmsg(net));
 *         twinedge_disconnect(net);
 *         ...
 *     }
 *     twinedge_infer(dev, TWINEDGE_RELAY, ...);   // errors: twinedge_errmsg(dev)
 *     twinedge_close(dev);
 *     twinedge_disconnect(net);
 *
 * tls_dir holds ca.pem (the deployment CA) and the device's cert.pem and
 * key.pem (written by provisioning).  Each host's certificate must name its
 * role ("edge-a", "edge-b").  A host that cannot be reached or does not
 * answer within timeout_ms fails the inference with TWINEDGE_ETRANSPORT
 * (naming the address); refused credentials give TWINEDGE_EAUTH.  Nothing
 * is contacted before the first inference. */
#ifndef TWINEDGE_NET_H
#define TWINEDGE_NET_H

#include <stdint.h>

#include "twinedge_device.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct twinedge_net twinedge_net;

/* Open the link and attach it to dev (in place of any other transport).  *net is
 * set even on failure (then it holds the error; NULL only when out of
 * memory); free it with twinedge_disconnect once dev no longer uses it.
 * twinedge_disconnect returns once gRPC's own threads are done with the
 * link (at most 3 s), so the app may exit right after; an app that holds
 * gRPC itself (initialized before twinedge_connect) is not waited for. */
TWINEDGE_API int twinedge_connect(twinedge_device *dev, const char *edge_a, const char *edge_b, const char *tls_dir,
                     int timeout_ms, twinedge_net **net);
TWINEDGE_API void twinedge_disconnect(twinedge_net *net);
TWINEDGE_API const char *twinedge_net_errmsg(const twinedge_net *net);

/* Bytes of the serialized messages, counted as the in-process transport counts them. */
typedef struct twinedge_net_stats {
    uint64_t bytes_up, bytes_down;        /* device <-> both hosts */
    uint64_t bytes_to_a, bytes_from_a;
    uint64_t bytes_to_b, bytes_from_b;
    uint64_t messages;
} twinedge_net_stats;
TWINEDGE_API int twinedge_net_get_stats(const twinedge_net *net, twinedge_net_stats *s);

#ifdef __cplusplus
}
#endif
#endif
