/* The host core: one edge server's half of the protocol, independent of the
 * network.  A host holds a deployment's linear layers in a compute plugin
 * and answers LayerRequests as role A or role B (DESIGN.md).
 *
 * te_host_handle is safe to call from several threads at once once the
 * deployment is loaded; deploy and register_device take an internal lock. */
#ifndef TE_HOST_H
#define TE_HOST_H

#include <stdint.h>
#include <stddef.h>
#include "te_error.h"
#include "te_model.h"
#include "te_bundle.h"
#include "te_transport.h"

typedef enum te_role {
    TE_ROLE_A = 1,  /* computes W.(x + M) on the blinded input */
    TE_ROLE_B = 2   /* holds device keys, computes W.M (+ Z in relay mode) */
} te_role;

/* Who is calling, as authenticated by the transport (mTLS in the network
 * service, construction in-process).  EdgeB refuses to hand W.M to anyone
 * but the device it belongs to: W.M in EdgeA's hands unmasks W.x. */
typedef enum te_caller_kind {
    TE_CALLER_DEVICE = 1,
    TE_CALLER_EDGE_A = 2
} te_caller_kind;

typedef struct te_caller {
    te_caller_kind kind;
    const char *name;   /* device id for TE_CALLER_DEVICE */
} te_caller;

/* The same values as the plugin ABI's TE_PLUGIN_LOG_*. */
typedef enum te_log_level { TE_LOG_ERROR = 0, TE_LOG_WARN = 1, TE_LOG_INFO = 2, TE_LOG_DEBUG = 3 } te_log_level;
/* One log line; source is "host" for the host's own, "plugin NAME" for
 * its compute plugin's (called from the plugin's threads too). */
typedef void (*te_log_fn)(void *ctx, te_log_level level, const char *source, const char *msg);

typedef struct te_host_config {
    te_role role;
    const char *plugin;         /* "cpu", "opencl" or a path */
    const char *plugin_config;  /* passed to the plugin's create() */
    uint64_t max_batch;         /* 0: 64 */
    /* If set and `plugin` cannot be loaded or started, use this one instead
     * (e.g. "cpu" behind "opencl"), and say so through log.  Unset: fail. */
    const char *fallback_plugin;
    te_log_fn log;              /* may be NULL */
    void *log_ctx;
    /* Cross-device batching: a request waits up to this long for requests
     * of other devices for the same layer and ring width, and all of them
     * run as one plugin call (0: off, each request runs alone).  It waits
     * only while other requests are in flight on this host that could
     * still join; a request alone runs at once. */
    uint32_t batch_window_us;
    /* Serve MODE_PLAIN requests (EdgeA only): float32 activations in the
     * clear, the benchmarks' plaintext-outsourcing baseline.  Off unless a
     * benchmark asks for it: such a request carries no privacy at all. */
    int allow_plaintext;
    /* EdgeB: precompute W.M ahead of the request (DESIGN.md: M does not
     * depend on x).  Once a device's request t has been served through its
     * deployment's last linear layer, a background thread computes W.M for
     * request t + 1, every layer, at the ring widths the device used in t;
     * the next request takes each share out of the cache (once), after the
     * same checks as an answer computed on demand, and anything else (a
     * different width, a batch above 1, an entry not ready) is computed on
     * demand as without precompute.  The value caps the memory the cache
     * and its thread hold, in MiB; a request whose shares do not fit is not
     * precomputed.  0: off, no thread.  EdgeA ignores it. */
    uint32_t precompute_mb;
    /* EdgeA, relay mode: once it has served a device session's request t
     * through the deployment's last linear layer, a background thread
     * fetches EdgeB's W.M + Z for request t + 1, every layer, at the ring
     * widths of t, and the next request is answered from memory without
     * EdgeB (host/ahead.c).  A layer whose ring width differs, or a batch
     * above 1, asks EdgeB on demand as without it.  The value caps the
     * bytes held, in KiB; the oldest entries are evicted to make room, and
     * each entry is used at most once.  0: off, no thread.  EdgeB ignores it. */
    uint32_t relay_ahead_kb;
} te_host_config;


typedef struct te_host te_host;

te_status te_host_new(const te_host_config *cfg, te_host **h, te_err *err);
void te_host_free(te_host *h);

/* Load an edge bundle's layers into the plugin (replacing any previous
 * deployment with the same id).  The model is copied. */
te_status te_host_deploy(te_host *h, const te_model *edge, te_err *err);
te_status te_host_deploy_file(te_host *h, const char *edge_bundle_path, te_err *err);

/* Role B: learn a device's mask key. */
te_status te_host_register_device(te_host *h, const te_device_key *key, te_err *err);

/* Role A, relay mode: how to reach EdgeB.  Not owned. */
void te_host_set_peer(te_host *h, te_transport *peer);

/* Role A: the device named device_id (its certificate's) has ended an
 * inference stream.  Relay ahead (relay_ahead_kb) fetches the next
 * request's shares only then, not while the device is still inferring. */
void te_host_stream_ended(te_host *h, const char *device_id);

/* Answer one serialized LayerRequest with a serialized LayerResponse
 * (malloc'd).  Errors in the request are reported inside the response;
 * only a failure to build any response returns non-OK. */
te_status te_host_handle(te_host *h, const te_caller *caller, const uint8_t *req, size_t req_len,
                         uint8_t **resp, size_t *resp_len, te_err *err);

/* What became of one request, for the daemon's figures and logs without
 * parsing the messages again: status TE_OK when it was served, otherwise
 * the error the response carries; deployment and layer as the request
 * named them (empty / 0 if it could not be decoded). */
typedef struct te_host_outcome {
    te_status status;
    char deployment[33];
    uint32_t layer;
    char error[TE_ERR_MSG_MAX];
} te_host_outcome;

/* te_host_handle, also filling *outcome (may be NULL). */
te_status te_host_serve(te_host *h, const te_caller *caller, const uint8_t *req, size_t req_len, uint8_t **resp,
                        size_t *resp_len, te_host_outcome *outcome, te_err *err);

/* Batching figures since te_host_new, read-only, for tests and benchmarks:
 * *plugin_runs counts the compute plugin's run calls (ring and float32),
 * *requests_batched the requests those calls served (each request is
 * counted once, whether it ran alone or combined with others).  Without
 * batching the two are equal; with it, plugin_runs < requests_batched shows
 * that requests were combined.  Either pointer may be NULL. */
void te_host_batch_figures(const te_host *h, uint64_t *plugin_runs, uint64_t *requests_batched);

/* Precompute figures since te_host_new (te_host_config.precompute_mb),
 * read-only, for tests and benchmarks: *hits counts role-B requests
 * answered from the cache, *misses those that passed every check but were
 * computed on demand (the cache had no matching share), *computed the
 * shares the background thread finished.  All zero when precompute is off.
 * Any pointer may be NULL. */
void te_host_precompute_figures(const te_host *h, uint64_t *hits, uint64_t *misses, uint64_t *computed);

/* Relay-ahead figures since te_host_new (te_host_config.relay_ahead_kb),
 * for the daemon's metrics and tests: *hits counts relay requests answered
 * from fetched entries, *misses those that had to ask EdgeB, *evictions the
 * entries dropped unused (to make room, or too old), *bytes what the cache
 * holds now.  All zero when it is off.  Any pointer may be NULL. */
void te_host_relay_ahead_figures(const te_host *h, uint64_t *hits, uint64_t *misses, uint64_t *evictions,
                                 uint64_t *bytes);

te_role te_host_role(const te_host *h);
/* Name of the plugin the host actually runs ("cpu", "opencl", ...). */
const char *te_host_plugin_name(const te_host *h);
/* The plugin's own description of its device (e.g. "CPU (AVX2, 2 threads)");
 * empty when it gives none. */
void te_host_plugin_device(const te_host *h, char *name, size_t cap);

/* The in-process transport: device and both hosts in one process.  Counts
 * bytes into *traffic (may be NULL).  `tap`, if set, sees every message a
 * host receives (requests from the device or EdgeA, EdgeB's responses to
 * EdgeA), for tests that check what each party learns. */
typedef void (*te_tap_fn)(void *ctx, te_party receiver, int is_response, const uint8_t *msg, size_t len);
typedef struct te_inproc_config {
    te_host *edge_a;
    te_host *edge_b;
    const char *device_id;      /* the caller identity presented to the hosts */
    te_traffic *traffic;
    te_tap_fn tap;
    void *tap_ctx;
} te_inproc_config;

te_status te_inproc_transport_new(const te_inproc_config *cfg, te_transport **t, te_err *err);
/* The link EdgeA uses to reach EdgeB in-process (caller = EDGE_A). */
te_status te_inproc_peer_new(const te_inproc_config *cfg, te_transport **t, te_err *err);
void te_transport_free(te_transport *t);

/* A whole edge pair in this process, for tools and tests: EdgeA and EdgeB
 * with their plugins, DEPLOY_DIR/edge.bundle deployed on both, the device
 * key registered with EdgeB, EdgeA linked to EdgeB, and a device-side
 * transport.  traffic counts every byte. */
typedef struct te_local_pair {
    te_host *a, *b;
    te_transport *device_link;  /* give this to twinedge_use_transport() */
    te_transport *peer_link;    /* EdgeA -> EdgeB */
    te_traffic traffic;
} te_local_pair;

typedef struct te_local_config {
    const char *deploy_dir;     /* holds edge.bundle */
    const char *device_key;     /* a device.key to register with EdgeB */
    const char *plugin_a;       /* NULL: "cpu" */
    const char *plugin_b;
    const char *plugin_config;
    te_tap_fn tap;
    void *tap_ctx;
} te_local_config;

te_status te_local_pair_start(const te_local_config *cfg, te_local_pair **pair, te_err *err);
void te_local_pair_stop(te_local_pair *pair);

#endif
