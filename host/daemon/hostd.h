/* twinedge-host: an edge host served over gRPC with mutual TLS. */
#ifndef TE_HOSTD_H
#define TE_HOSTD_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdint.h>

#include "log.h"
#include "metrics.h"
#include "te_host.h"
#include "te_net.h"

/* ---- configuration (docs: host/daemon/README.md) ---- */

#define HOSTD_STR 1024

typedef struct hostd_config {
    char role[8];                 /* "a" or "b" */
    char listen[HOSTD_STR];       /* HOST:PORT (port 0: any free port) */
    char peer[HOSTD_STR];         /* EdgeA: EdgeB's HOST:PORT */
    char plugin[HOSTD_STR];       /* cpu | opencl | path */
    char plugin_config[HOSTD_STR];
    char fallback_plugin[HOSTD_STR]; /* used when `plugin` cannot be loaded or started; empty: fail */
    char store[HOSTD_STR];        /* deployments and device keys survive restarts here */
    char credentials[HOSTD_STR];  /* ca.pem, cert.pem, key.pem */
    char port_file[HOSTD_STR];    /* written with the bound port once serving */
    int workers;                  /* handler threads (layer requests computed at once) */
    int max_calls;                /* calls open at once; more: RESOURCE_EXHAUSTED, not served */
    int max_queue;                /* requests waiting for a worker; more: RESOURCE_EXHAUSTED */
    int max_queue_mb;             /* their bytes, MiB */
    int max_message_mb;
    int peer_timeout_ms;          /* EdgeA -> EdgeB calls */
    int grace_ms;                 /* on SIGTERM: time for calls in flight */
    int batch_window_us;          /* cross-device batching window; 0: off */
    int allow_plaintext;          /* 1: serve MODE_PLAIN (benchmark baseline, no privacy) */
    int precompute_mb;            /* EdgeB: cap of the W.M precompute cache, MiB; 0: off */
    int relay_ahead_kb;           /* EdgeA: cap of the relay-ahead cache, KiB; 0: off */
    char metrics_listen[HOSTD_STR]; /* Prometheus endpoint; empty: off */
    int log_level;                /* hostd_level */
    int log_json;                 /* 1: JSON lines */
} hostd_config;

void hostd_config_defaults(hostd_config *c);
/* The settings, in --help order: key i's name (its flag: '-' for '_'). */
int hostd_config_n_keys(void);
const char *hostd_config_key_name(int i);
/* One line per setting, for --help. */
void hostd_config_usage(FILE *f);
/* Read "key = value" lines (# comments).  Unknown keys are errors. */
te_status hostd_config_read(const char *path, hostd_config *c, te_err *err);
/* Set one key (also used for command-line flags). */
te_status hostd_config_set(hostd_config *c, const char *key, const char *value, te_err *err);
te_status hostd_config_check(const hostd_config *c, te_err *err);

/* ---- the store ---- */

/* STORE/bundles/<deployment id>.bundle, STORE/devices/<device id>.key */
te_status hostd_store_init(const char *store, te_err *err);
te_status hostd_store_put_bundle(const char *store, const char *deployment_id, const uint8_t *buf, size_t len,
                                 te_err *err);
te_status hostd_store_put_device(const char *store, const te_device_key *key, te_err *err);
/* The store's files already loaded (path, mtime, size), so that a reload
 * (SIGHUP) loads only what is new or changed. */
typedef struct hostd_store_file {
    char *path;
    long long mtime_ns, size;
} hostd_store_file;
typedef struct hostd_store_state {
    hostd_store_file *v;
    int n, cap;
} hostd_store_state;
typedef struct hostd_store_counts {
    int bundles_loaded, devices_loaded; /* by this call: new or changed files */
    int bundles, devices;               /* in use now, all calls together */
} hostd_store_counts;
void hostd_store_state_free(hostd_store_state *seen);
/* Load what in the store is new or changed since the last call with the
 * same state (everything, the first time) into h.  A deployment or key
 * loaded again replaces the old one; calls in flight go on. */
te_status hostd_store_load(const char *store, te_host *h, hostd_store_state *seen, hostd_store_counts *n,
                           te_err *err);

/* ---- the service ---- */

typedef void (*hostd_log_fn)(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

typedef struct hostd_layer_stats {
    char deployment[33];
    uint32_t layer;
    uint64_t requests, errors;
    double total_ms, max_ms;
} hostd_layer_stats;

typedef struct hostd_service {
    te_host *host;
    te_role role;
    const char *store;
    hostd_log_fn log;
    pthread_mutex_t lock;         /* guards the figures below */
    uint64_t requests, errors, bytes_in, bytes_out;
    int deployments, devices;
    hostd_layer_stats *layers;
    int n_layers;
    hostd_metrics *metrics;       /* NULL: none */
    /* EdgeA in relay mode: whether EdgeB answered its last health check
     * (1 when there is no EdgeB to ask) */
    atomic_int peer_ok;
} hostd_service;

te_status hostd_service_init(hostd_service *svc, te_host *h, te_role role, const char *store, hostd_log_fn log,
                             te_err *err);
void hostd_service_free(hostd_service *svc);
/* Health: a deployment is loaded and, for EdgeA, its EdgeB answers. */
int hostd_service_serving(hostd_service *svc);
/* The method table for te_net_server_start (7 entries). */
int hostd_service_methods(hostd_service *svc, te_net_method *methods, int cap);

#endif
