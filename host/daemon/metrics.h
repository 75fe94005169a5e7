/* Prometheus metrics of one twinedge-host, served as text (exposition
 * format 0.0.4) over plain HTTP by libmicrohttpd on a port of its own.
 *
 * What is exposed is operational only: counts, latencies, batch sizes,
 * precompute hits, connected devices, versions.  No device identity, input
 * size beyond the layer or value leaves through it, but it is unauthenticated:
 * bind it to an address only the monitoring network reaches.
 *
 * Every function is thread-safe.  Families:
 *   twinedge_calls_total{method,code}            counter
 *   twinedge_call_seconds{method}                histogram
 *   twinedge_errors_total{kind}                  counter (refusals inside streams and calls)
 *   twinedge_layer_seconds{role,deployment,layer} histogram (one layer request computed)
 *   twinedge_open_calls, twinedge_devices_connected, twinedge_deployments, twinedge_devices_registered  gauges
 *   twinedge_plugin_runs_total, twinedge_requests_batched_total (their ratio: the mean batch size),
 *   twinedge_precompute_hits_total, twinedge_precompute_misses_total  counters read from the host
 *   twinedge_relay_ahead_hits_total, _misses_total, _evictions_total counters, twinedge_relay_ahead_bytes gauge
 *   twinedge_build_info{version,role,plugin,plugin_device} 1 */
#ifndef TE_HOSTD_METRICS_H
#define TE_HOSTD_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "te_error.h"

typedef struct hostd_metrics hostd_metrics;

/* Figures read from the host at scrape time. */
typedef struct hostd_gauges {
    int open_calls;
    int devices_connected;
    int deployments;
    int devices_registered;
    uint64_t plugin_runs, requests_batched;   /* since start */
    uint64_t precompute_hits, precompute_misses;
    uint64_t ahead_hits, ahead_misses, ahead_evictions, ahead_bytes; /* EdgeA's relay-ahead cache */
} hostd_gauges;
typedef void (*hostd_gauges_fn)(void *ctx, hostd_gauges *g);

te_status hostd_metrics_new(const char *version, const char *role, const char *plugin, const char *plugin_device,
                            hostd_metrics **m, te_err *err);
/* Stop the HTTP server (scrapes end); NULL is fine. */
void hostd_metrics_close(hostd_metrics *m);
/* Stops the HTTP server first; NULL is fine. */
void hostd_metrics_free(hostd_metrics *m);

void hostd_metrics_set_gauges(hostd_metrics *m, hostd_gauges_fn fn, void *ctx);
/* code: gRPC status code (0 OK). */
void hostd_metrics_call(hostd_metrics *m, const char *method, int code, double ms);
void hostd_metrics_error(hostd_metrics *m, const char *kind);
void hostd_metrics_layer(hostd_metrics *m, const char *role, const char *deployment, uint32_t layer, double ms);

/* The exposition text (malloc'd, NUL-terminated). */
char *hostd_metrics_render(hostd_metrics *m, size_t *len);

/* Serve GET /metrics on HOST:PORT (port 0: a free one, returned in *port). */
te_status hostd_metrics_listen(hostd_metrics *m, const char *listen, int *port, te_err *err);

#endif
