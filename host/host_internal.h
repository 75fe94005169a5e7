/* The host's stages, private to host/ (te_host.h is the interface).
 *
 * A layer request goes through one stage per file:
 *   request.c    decode and validate the message once into a host_request
 *                (the layer it names, sizes, ring width, session), the
 *                caller's rights (authorize), then its data (the wire
 *                code itself, responses included, is core/te_wire.c);
 *   roles.c      the replay guard, then role A (W.A, relay: minus EdgeB's
 *                W.M + Z), role B (W.M, + Z for EdgeA) or the plaintext
 *                baseline;
 *   batcher.c    every plugin run, combined across devices when batching
 *                is on;
 *   precompute.c EdgeB's W.M computed ahead of the request;
 *   ahead.c      EdgeA's relay shares (W.M + Z) fetched from EdgeB ahead of
 *                the request;
 *   registry.c   deployments (layers in the plugin) and device keys;
 *   host.c       the host's life and te_host_serve, which strings the
 *                stages together. */
#ifndef TE_HOST_INTERNAL_H
#define TE_HOST_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include "replay.h"
#include "te_host.h"
#include "te_plugin.h"
#include "te_prf.h"
#include "wire.pb-c.h"

#define TE_HOST_DEFAULT_MAX_BATCH 64
/* Cap on the elements one request may make a host compute (inputs or
 * outputs); bounds the memory a single request can claim. */
#define TE_HOST_MAX_ELEMS ((uint64_t)1 << 28)
/* Sessions the replay guard remembers (replay.h): about 200 bytes each. */
#define TE_HOST_REPLAY_SESSIONS 65536
/* The precompute cache's identity of a device session: "device/<session hex>" */
#define PRE_ID_LEN (64 + 1 + 2 * TE_SESSION_BYTES)

struct host_layer_set;

/* A layer as a request sees it.  A copy from host_find_layer holds a
 * reference to its deployment's layers (owner): host_layer_put gives it back. */
typedef struct host_layer {
    te_linear_geom geom;
    te_plugin_layer *pl;
    struct host_layer_set *owner;
} host_layer;

/* A deployment's layers as loaded into the plugin.  Redeploying an id (the
 * Deploy call, a reload) swaps in a new set while requests may still be
 * computing with the old one: the old plugin layers are released only when
 * the last of them is done.  Releasing them earlier let a request compute
 * with freed weights (caught by the device's integrity check). */
typedef struct host_layer_set {
    te_host *h;
    atomic_int refs;          /* the deployment's own + one per host_layer copy in use */
    int n;
    host_layer *v;
} host_layer_set;

/* Cross-device batching (te_host_config.batch_window_us).  Requests for
 * the same plugin layer and the same kind (a ring width 1..64 over uint64
 * elements, or BATCH_KIND_F32 over floats) that arrive within one window
 * run as one plugin call.  A group lives on its leader's stack; followers
 * live on their own stacks and are linked into it.  Everything below is
 * guarded by te_host.batch_mu. */
#define BATCH_KIND_F32 0x100u /* outside the ring widths */

typedef struct batch_member {
    struct batch_member *next;
    const void *in;     /* batch * in_len elements, the caller's */
    void *out;          /* batch * out_len elements, the caller's */
    uint64_t batch;
    int done;           /* set by the leader once out / st / err are final */
    te_status st;
    te_err err;
} batch_member;

typedef struct batch_group {
    struct batch_group *next;   /* the host's open groups */
    te_plugin_layer *pl;
    unsigned kind;
    uint64_t batch;             /* samples so far, the leader's included */
    int n_req;                  /* requests in the group, the leader's included */
    uint64_t cap;               /* most samples one plugin call may take */
    int full;                   /* no further request fits: leader stops waiting */
    batch_member *members, **tail; /* followers in arrival order */
} batch_group;

/* EdgeB's precompute cache (te_host_config.precompute_mb).  M = PRF(K, t,
 * i, MASK) does not depend on the device's input, so once EdgeB has served
 * the last linear layer of request t for a device, one worker thread per
 * host computes W.M for (t + 1, every layer) with the ring widths the
 * device used in t, and serve() hands each entry out once, after the same
 * checks as an on-demand answer.  Entries hold W.M mod 2^l (not W.M + Z),
 * so one entry serves mediated and relay mode.  Everything below is guarded
 * by te_host.pre_w.mu. */
#define PRE_MAX_JOBS 64

typedef enum pre_state {
    PRE_PENDING = 1,    /* reserved by the current job, not started */
    PRE_COMPUTING,      /* the worker is on it: serve() waits */
    PRE_READY           /* wm holds the result */
} pre_state;

typedef struct pre_entry {
    struct pre_entry *next;
    char deployment[33];
    char device[PRE_ID_LEN];
    uint64_t counter;
    uint32_t layer;
    unsigned l;
    uint64_t batch;     /* always 1 today; a request must match it */
    size_t out_n;       /* elements of wm */
    pre_state state;
    int stale;          /* purged while COMPUTING: the worker frees it */
    uint64_t *wm;       /* PRE_READY: W.M mod 2^l */
    size_t bytes;       /* charged to te_host.pre_bytes */
} pre_entry;

/* A job of a worker's queue: the first member of each worker's job type. */
typedef struct host_job {
    struct host_job *next;
} host_job;

typedef struct pre_job {
    host_job base;
    char deployment[33];
    char device[PRE_ID_LEN];
    uint64_t counter;
    int n_layers;
    uint8_t *widths;    /* per layer; 0: width not seen, layer skipped */
    uint8_t key[TE_KEY_BYTES]; /* the session's K_s, zeroed when the job is freed */
    int stale;          /* purged while running: stop */
} pre_job;

/* The ring widths a device used in its latest request, per deployment. */
typedef struct pre_seen {
    struct pre_seen *next;
    char deployment[33];
    char device[PRE_ID_LEN];
    uint64_t counter;
    int n_layers;
    uint8_t *widths;
} pre_seen;

/* A background worker (worker.c): one thread; mu guards its owner's queue
 * and entries; work: a job was queued, or stop; change: its owner's. */
/* A background thread with its lock, conditions and job queue (worker.c);
 * the queue, n_jobs and current are guarded by mu. */
typedef struct host_worker {
    int ready;                  /* the primitives exist and the thread runs */
    int stop;                   /* under mu: the thread is to return */
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t work, change;
    host_job *queue;            /* oldest first */
    int n_jobs, max_jobs;       /* beyond max_jobs the oldest job is dropped */
    host_job *current;          /* the job running now (off the queue), or NULL */
    struct te_host *h;
    void (*run)(struct te_host *h, host_job *j);   /* called without mu */
    void (*free_job)(host_job *j);
} host_worker;

/* EdgeA's relay-ahead cache (te_host_config.relay_ahead_kb): W.M + Z of
 * a device session's next request, fetched from EdgeB by one worker thread
 * once the current request has been served through its last layer and the
 * device's inference stream has ended.
 * Everything below is guarded by te_host.ahead_w.mu. */
#define AHEAD_MAX_JOBS 64
#define AHEAD_MAX_SEEN 4096     /* device sessions whose widths are remembered */
#define AHEAD_MAX_AGE_S 300     /* an entry unused this long is evicted */

typedef enum ahead_state {
    AHEAD_QUEUED = 1,   /* reserved, not asked yet: serve() drops it and asks EdgeB itself */
    AHEAD_FETCHING,     /* the worker's call to EdgeB is in flight: serve() waits */
    AHEAD_READY         /* wmz holds W.M + Z mod 2^l */
} ahead_state;

/* A device session: the request's device id (the caller's certificate
 * name, as authorized) and its session bytes, compared in full. */
typedef struct ahead_key {
    char deployment[33];
    char *device;
    uint8_t session[TE_SESSION_BYTES];
} ahead_key;

typedef struct ahead_entry {
    struct ahead_entry *next;   /* oldest first */
    ahead_key k;
    uint64_t counter;
    uint32_t layer;
    unsigned l;
    size_t out_n;
    ahead_state state;
    int stale;          /* forgotten while FETCHING: the worker frees it */
    uint64_t gen;       /* te_host.ahead_gen when it was reserved */
    double born;        /* monotonic seconds */
    uint64_t *wmz;
    size_t bytes;       /* charged to te_host.ahead_bytes */
} ahead_entry;

typedef struct ahead_job {
    host_job base;
    ahead_key k;
    uint64_t counter;
    uint64_t gen;
    int n_layers;
    uint8_t *widths;    /* per layer; 0: not seen in the request before, skipped */
} ahead_job;

typedef struct ahead_seen {
    struct ahead_seen *next;    /* most recently used first */
    ahead_key k;
    uint64_t counter;
    int n_layers;
    uint8_t *widths;
    int due;                    /* request `counter` served through its last layer: fetch once the stream ends */
} ahead_seen;

typedef struct host_deployment {
    char id[33];
    int n_layers;
    host_layer_set *set;
} host_deployment;

struct te_host {
    te_role role;
    uint64_t max_batch;
    int allow_plaintext;
    te_plugin *plugin;
    te_transport *peer;
    te_replay *replay;
    pthread_rwlock_t lock;          /* guards deployments and devices */
    int n_deployments;
    host_deployment *deployments;
    int n_devices;
    te_device_key *devices;
    /* cross-device batching; batch_ready: the primitives below exist */
    uint32_t batch_window_us;
    int batch_ready;
    pthread_mutex_t batch_mu;
    pthread_cond_t batch_lead;      /* a leader's group grew, or a request left the host */
    int batch_in_flight;            /* requests inside te_host_handle (under batch_mu) */
    pthread_cond_t batch_done;      /* some follower's result is in */
    batch_group *batch_open;
    _Atomic uint64_t batch_runs, batch_requests;
    te_log_fn log;
    void *log_ctx;
    /* precompute (EdgeB): pre_w.change when an entry left PRE_COMPUTING */
    uint64_t pre_cap;               /* bytes */
    host_worker pre_w;
    pre_entry *pre_entries;
    pre_seen *pre_seen;
    uint64_t pre_bytes;             /* entries plus the worker's scratch */
    int pre_logged_skip, pre_logged_fail;
    _Atomic uint64_t pre_gen;       /* bumped when a key or deployment changes */
    _Atomic uint64_t pre_hits, pre_misses, pre_computed;
    /* relay-ahead (EdgeA): ahead_w.change when an entry left
     * AHEAD_FETCHING, or the worker's call returned */
    uint64_t ahead_cap;             /* bytes */
    host_worker ahead_w;
    int ahead_calling;              /* the worker is inside a call on h->peer */
    ahead_entry *ahead_entries;     /* oldest first */
    ahead_seen *ahead_seen;
    int ahead_n_seen;
    int ahead_logged_skip, ahead_logged_fail;
    uint64_t ahead_gen;             /* bumped when a deployment changes */
    _Atomic uint64_t ahead_bytes;
    _Atomic uint64_t ahead_hits, ahead_misses, ahead_evictions;
};

/* A layer request, decoded and checked once (request.c).  Every field
 * below q is derived from q and the host's registry; data and session
 * point into q. */
typedef struct host_request {
    Twinedge__LayerRequest *q;  /* owned */
    host_layer hl;              /* the layer it names */
    int n_layers;               /* its deployment's linear layers */
    unsigned l;                 /* ring width, 1..64 */
    size_t in_n, out_n;         /* elements in and out, batch included */
    int relay, plain;           /* the mode */
    uint64_t pre_gen;           /* read before the lookups (precompute.c) */
} host_request;

/* worker.c: start fn(arg) with the primitives (what names it in errors);
 * join asks it to stop and waits; destroy then frees the primitives */
te_status host_worker_start(host_worker *w, const char *what, struct te_host *h, int max_jobs,
                            void (*run)(struct te_host *h, host_job *j), void (*free_job)(host_job *j), te_err *err);
/* Under mu: queue j last (dropping the oldest job beyond max_jobs) and wake the thread. */
void host_worker_push(host_worker *w, host_job *j);
/* Stop the thread (after its current job) and free the jobs still queued. */
void host_worker_join(host_worker *w);
void host_worker_destroy(host_worker *w);

/* host.c: a line into the host's log (te_host_config.log), source "host" */
void host_logf(const te_host *h, te_log_level level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* request.c */
te_status host_request_decode(te_host *h, const uint8_t *buf, size_t len, host_request *r, te_err *err);
te_status host_request_authorize(const te_host *h, const te_caller *caller, const host_request *r, te_err *err);
te_status host_request_check_data(const te_host *h, const host_request *r, te_err *err);
void host_request_free(host_request *r);

/* roles.c: a decoded, authorized request; *packed: the response's data */
te_status host_serve(te_host *h, const host_request *r, uint8_t **packed, size_t *packed_len, te_err *err);

/* batcher.c */
te_status host_batch_init(te_host *h, uint32_t window_us, te_err *err);
void host_batch_fini(te_host *h);
te_status host_run_layer(te_host *h, const host_layer *hl, unsigned l, uint64_t batch, const uint64_t *in,
                         uint64_t *out, te_err *err);
te_status host_run_layer_f32(te_host *h, const host_layer *hl, uint64_t batch, const float *in, float *out,
                             te_err *err);
void host_in_flight(te_host *h, int delta);

/* precompute.c */
te_status host_pre_init(te_host *h, uint32_t mb, te_err *err);
void host_pre_fini(te_host *h);
void host_pre_forget(te_host *h, const char *deployment, const char *device);
uint64_t *host_pre_take(te_host *h, const Twinedge__LayerRequest *q, unsigned l, size_t out_n);
void host_pre_note(te_host *h, const Twinedge__LayerRequest *q, unsigned l, int n_layers,
                   const uint8_t key[TE_KEY_BYTES], uint64_t gen);

/* ahead.c (EdgeA, relay) */
te_status host_ahead_init(te_host *h, uint32_t kb, te_err *err);
void host_ahead_fini(te_host *h);
void host_ahead_forget(te_host *h, const char *deployment);
void host_ahead_set_peer(te_host *h, te_transport *peer);
uint64_t *host_ahead_take(te_host *h, const Twinedge__LayerRequest *q, unsigned l, size_t out_n);
void host_ahead_note(te_host *h, const Twinedge__LayerRequest *q, unsigned l, int n_layers);
void host_ahead_stream_ended(te_host *h, const char *device);

/* registry.c */
te_status host_find_layer(te_host *h, const char *deployment, uint32_t layer, host_layer *out, int *n_layers,
                          te_err *err);
te_status host_find_key(te_host *h, const char *deployment, const char *device, uint8_t key[TE_KEY_BYTES],
                        te_err *err);
void host_deployment_release(te_host *h, host_deployment *d);
/* Give back a layer from host_find_layer (NULL owner: nothing to do). */
void host_layer_put(host_layer *hl);

#endif
