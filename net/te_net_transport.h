/* te_transport over gRPC (the network twin of host/inproc.c).
 *
 * Device link: an inference is one Infer stream per host (between begin
 * and end), one LayerRequest/LayerResponse exchange per layer; the
 * channels, one TLS connection per host, are kept.  Peer link (EdgeA ->
 * EdgeB): each call is a MaskShare call.  A target "ipv4:A,B,..." names
 * replicas: one channel each; a device session keeps one replica per role
 * (EdgeA's from the certificate; EdgeB's from the request's device and
 * session, as EdgeA's peer link picks it: host/daemon/README.md,
 * Replicas; TE_NET_NO_AFFINITY=1 makes it round robin, for tests).  Calls a host refused unserved
 * (overload) are sent again, the same bytes, within the deadline.  Bytes are counted exactly as the in-process
 * transport counts them: the serialized message sizes. */
#ifndef TE_NET_TRANSPORT_H
#define TE_NET_TRANSPORT_H

#include "te_net.h"
#include "te_transport.h"

/* Method paths of the twinedge.EdgeHost service (proto/service.proto). */
#define TE_SVC_INFER "/twinedge.EdgeHost/Infer"
#define TE_SVC_MASK_SHARE "/twinedge.EdgeHost/MaskShare"
#define TE_SVC_DEPLOY "/twinedge.EdgeHost/Deploy"
#define TE_SVC_REGISTER_DEVICE "/twinedge.EdgeHost/RegisterDevice"
#define TE_SVC_STATS "/twinedge.EdgeHost/Stats"
#define TE_SVC_HEALTH_CHECK "/grpc.health.v1.Health/Check"
#define TE_SVC_HEALTH_WATCH "/grpc.health.v1.Health/Watch"

/* The names the hosts' certificates carry (owner/pki.h). */
#define TE_CN_EDGE_A "edge-a"
#define TE_CN_EDGE_B "edge-b"
#define TE_CN_OWNER "owner"
#define TE_CN_DEVICE_PREFIX "device:"

typedef struct te_net_transport_config {
    const char *edge_a;          /* "HOST:PORT"; NULL: none */
    const char *edge_b;
    const te_net_creds *creds;   /* this party's credentials */
    int timeout_ms;              /* per call; 0: 30000 */
    int peer_link;               /* 1: EdgeA's link to EdgeB (MaskShare) */
    te_traffic *traffic;         /* may be NULL */
} te_net_transport_config;

te_status te_net_transport_new(const te_net_transport_config *cfg, te_transport **t, te_err *err);

#endif
