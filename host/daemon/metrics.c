/* Prometheus metrics (see metrics.h). */
#include "metrics.h"

#include <arpa/inet.h>
#include <microhttpd.h>
#include <netdb.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

enum { FAM_CALLS, FAM_CALL_SECONDS, FAM_ERRORS, FAM_LAYER_SECONDS, FAM_N };

#define MAX_BUCKETS 16
#define MAX_SERIES 4096 /* per family: labels come from the host's own names, never from callers */

typedef struct family {
    const char *name, *help, *type;
    const double *buckets; /* histograms */
    int n_buckets;
} family;

static const double seconds_buckets[] = {0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                         0.1,    0.25,  0.5,    1,     2.5,  5,     10};
#define NB(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const family families[FAM_N] = {
    [FAM_CALLS] = {"twinedge_calls_total", "gRPC calls finished, by method and status.", "counter", NULL, 0},
    [FAM_CALL_SECONDS] = {"twinedge_call_seconds", "Duration of finished gRPC calls.", "histogram", seconds_buckets,
                          NB(seconds_buckets)},
    [FAM_ERRORS] = {"twinedge_errors_total", "Requests refused or failed, by kind.", "counter", NULL, 0},
    [FAM_LAYER_SECONDS] = {"twinedge_layer_seconds", "Time to serve one layer request, by role and layer.",
                           "histogram", seconds_buckets, NB(seconds_buckets)},
};

typedef struct series {
    char labels[192]; /* rendered: name="value",... */
    double sum;
    uint64_t count;
    uint64_t bucket[MAX_BUCKETS];
} series;

struct hostd_metrics {
    pthread_mutex_t lock;
    series *s[FAM_N];
    int n[FAM_N], cap[FAM_N];
    char info_labels[512];
    hostd_gauges_fn gauges;
    void *gauges_ctx;
    struct MHD_Daemon *http;
};

/* Label values are escaped as the exposition format asks (\\, \", \n). */
static void put_label(char *dst, size_t cap, size_t *at, const char *name, const char *value, int first)
{
    int w = snprintf(dst + *at, cap - *at, "%s%s=\"", first ? "" : ",", name);
    if (w < 0 || (size_t)w >= cap - *at)
        return;
    *at += (size_t)w;
    for (const char *p = value ? value : ""; *p && *at + 3 < cap; p++) {
        if (*p == '\\' || *p == '"') {
            dst[(*at)++] = '\\';
            dst[(*at)++] = *p;
        } else if (*p == '\n') {
            dst[(*at)++] = '\\';
            dst[(*at)++] = 'n';
        } else {
            dst[(*at)++] = *p;
        }
    }
    if (*at + 1 < cap)
        dst[(*at)++] = '"';
    dst[*at] = 0;
}

/* Labels as NULL-terminated name, value pairs. */
static void labels_of(char *dst, size_t cap, const char *const *kv)
{
    size_t at = 0;
    dst[0] = 0;
    for (int i = 0; kv[i]; i += 2)
        put_label(dst, cap, &at, kv[i], kv[i + 1], i == 0);
}

/* Called with the lock held.  NULL when the family is full. */
static series *find(hostd_metrics *m, int fam, const char *labels)
{
    for (int i = 0; i < m->n[fam]; i++)
        if (strcmp(m->s[fam][i].labels, labels) == 0)
            return &m->s[fam][i];
    if (m->n[fam] == m->cap[fam]) {
        if (m->cap[fam] >= MAX_SERIES)
            return NULL;
        int cap = m->cap[fam] ? 2 * m->cap[fam] : 8;
        series *s = realloc(m->s[fam], (size_t)cap * sizeof *s);
        if (!s)
            return NULL;
        m->s[fam] = s;
        m->cap[fam] = cap;
    }
    series *s = &m->s[fam][m->n[fam]++];
    memset(s, 0, sizeof *s);
    snprintf(s->labels, sizeof s->labels, "%s", labels);
    return s;
}

static void observe(hostd_metrics *m, int fam, const char *const *kv, double v)
{
    if (!m)
        return;
    char labels[192];
    labels_of(labels, sizeof labels, kv);
    pthread_mutex_lock(&m->lock);
    series *s = find(m, fam, labels);
    if (s) {
        s->count++;
        s->sum += v;
        for (int b = 0; b < families[fam].n_buckets; b++)
            if (v <= families[fam].buckets[b])
                s->bucket[b]++;
    }
    pthread_mutex_unlock(&m->lock);
}

te_status hostd_metrics_new(const char *version, const char *role, const char *plugin, const char *plugin_device,
                            hostd_metrics **out, te_err *err)
{
    hostd_metrics *m = calloc(1, sizeof *m);
    if (!m)
        return te_errf(err, TE_ENOMEM, "out of memory for metrics");
    pthread_mutex_init(&m->lock, NULL);
    const char *kv[] = {"version", version, "role", role, "plugin", plugin, "plugin_device", plugin_device, NULL};
    labels_of(m->info_labels, sizeof m->info_labels, kv);
    *out = m;
    return TE_OK;
}

void hostd_metrics_close(hostd_metrics *m)
{
    if (m && m->http) {
        MHD_stop_daemon(m->http);
        m->http = NULL;
    }
}

void hostd_metrics_free(hostd_metrics *m)
{
    if (!m)
        return;
    hostd_metrics_close(m);
    for (int f = 0; f < FAM_N; f++)
        free(m->s[f]);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

void hostd_metrics_set_gauges(hostd_metrics *m, hostd_gauges_fn fn, void *ctx)
{
    pthread_mutex_lock(&m->lock);
    m->gauges = fn;
    m->gauges_ctx = ctx;
    pthread_mutex_unlock(&m->lock);
}

static const char *code_name(int code)
{
    static const char *const names[] = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED",
                                        "NOT_FOUND", "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED",
                                        "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED",
                                        "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"};
    return code >= 0 && code < NB(names) ? names[code] : "UNKNOWN";
}

void hostd_metrics_call(hostd_metrics *m, const char *method, int code, double ms)
{
    const char *kv[] = {"method", method, "code", code_name(code), NULL};
    observe(m, FAM_CALLS, kv, 0);
    const char *kh[] = {"method", method, NULL};
    observe(m, FAM_CALL_SECONDS, kh, ms / 1e3);
    if (code != 0) {
        const char *ke[] = {"kind", code_name(code), NULL};
        observe(m, FAM_ERRORS, ke, 0);
    }
}

void hostd_metrics_error(hostd_metrics *m, const char *kind)
{
    const char *kv[] = {"kind", kind, NULL};
    observe(m, FAM_ERRORS, kv, 0);
}

void hostd_metrics_layer(hostd_metrics *m, const char *role, const char *deployment, uint32_t layer, double ms)
{
    char l[16];
    snprintf(l, sizeof l, "%u", layer);
    const char *kv[] = {"role", role, "deployment", deployment, "layer", l, NULL};
    observe(m, FAM_LAYER_SECONDS, kv, ms / 1e3);
}

typedef struct text {
    char *buf;
    size_t len, cap;
    int oom;
} text;

static void tprintf(text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void tprintf(text *t, const char *fmt, ...)
{
    if (t->oom)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int w = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
        va_end(ap);
        if (w < 0) {
            t->oom = 1;
            return;
        }
        if ((size_t)w < t->cap - t->len) {
            t->len += (size_t)w;
            return;
        }
        size_t cap = 2 * t->cap + (size_t)w + 1;
        char *b = realloc(t->buf, cap);
        if (!b) {
            t->oom = 1;
            return;
        }
        t->buf = b;
        t->cap = cap;
    }
}

static void sampled(text *t, const char *type, const char *name, const char *help, unsigned long long v)
{
    tprintf(t, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, v);
}

char *hostd_metrics_render(hostd_metrics *m, size_t *len)
{
    text t = {malloc(4096), 0, 4096, 0};
    if (!t.buf)
        return NULL;
    t.buf[0] = 0;
    hostd_gauges g;
    memset(&g, 0, sizeof g);
    pthread_mutex_lock(&m->lock);
    hostd_gauges_fn fn = m->gauges;
    void *ctx = m->gauges_ctx;
    pthread_mutex_unlock(&m->lock);
    if (fn)
        fn(ctx, &g); /* outside our lock: it takes the host's */
    pthread_mutex_lock(&m->lock);
    tprintf(&t, "# HELP twinedge_build_info Version, role and compute plugin of this host.\n"
                "# TYPE twinedge_build_info gauge\ntwinedge_build_info{%s} 1\n", m->info_labels);
    for (int f = 0; f < FAM_N; f++) {
        const family *fa = &families[f];
        tprintf(&t, "# HELP %s %s\n# TYPE %s %s\n", fa->name, fa->help, fa->name, fa->type);
        for (int i = 0; i < m->n[f]; i++) {
            const series *s = &m->s[f][i];
            const char *sep = s->labels[0] ? "," : "";
            /* "name{labels}", or the bare name when there are none */
            const char *open = s->labels[0] ? "{" : "", *close = s->labels[0] ? "}" : "";
            if (!fa->buckets) {
                tprintf(&t, "%s%s%s%s %llu\n", fa->name, open, s->labels, close, (unsigned long long)s->count);
                continue;
            }
            for (int b = 0; b < fa->n_buckets; b++)
                tprintf(&t, "%s_bucket{%s%sle=\"%g\"} %llu\n", fa->name, s->labels, sep, fa->buckets[b],
                        (unsigned long long)s->bucket[b]);
            tprintf(&t, "%s_bucket{%s%sle=\"+Inf\"} %llu\n", fa->name, s->labels, sep,
                    (unsigned long long)s->count);
            tprintf(&t, "%s_sum%s%s%s %.9g\n%s_count%s%s%s %llu\n", fa->name, open, s->labels, close, s->sum,
                    fa->name, open, s->labels, close, (unsigned long long)s->count);
        }
    }
    pthread_mutex_unlock(&m->lock);
    sampled(&t, "gauge", "twinedge_open_calls", "gRPC calls open now.", (unsigned)g.open_calls);
    sampled(&t, "gauge", "twinedge_devices_connected", "Inference streams open now (one per device inferring).",
            (unsigned)g.devices_connected);
    sampled(&t, "gauge", "twinedge_deployments", "Deployments loaded.", (unsigned)g.deployments);
    sampled(&t, "gauge", "twinedge_devices_registered", "Device keys loaded (EdgeB).", (unsigned)g.devices_registered);
    sampled(&t, "counter", "twinedge_plugin_runs_total", "Compute plugin calls.", g.plugin_runs);
    sampled(&t, "counter", "twinedge_requests_batched_total",
            "Layer requests those calls served; over twinedge_plugin_runs_total: the mean batch size.",
            g.requests_batched);
    sampled(&t, "counter", "twinedge_precompute_hits_total", "EdgeB mask shares served from precompute.",
            g.precompute_hits);
    sampled(&t, "counter", "twinedge_precompute_misses_total", "EdgeB mask shares computed on demand.",
            g.precompute_misses);
    sampled(&t, "counter", "twinedge_relay_ahead_hits_total", "EdgeA relay layers served from shares fetched ahead.",
            g.ahead_hits);
    sampled(&t, "counter", "twinedge_relay_ahead_misses_total", "EdgeA relay layers that asked EdgeB online.",
            g.ahead_misses);
    sampled(&t, "counter", "twinedge_relay_ahead_evictions_total",
            "Shares fetched ahead and dropped unused (room, age, or the device moved on).", g.ahead_evictions);
    sampled(&t, "gauge", "twinedge_relay_ahead_bytes", "Bytes the relay-ahead cache holds.", g.ahead_bytes);
    if (t.oom) {
        free(t.buf);
        return NULL;
    }
    *len = t.len;
    return t.buf;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload, size_t *upload_len, void **con_cls)
{
    (void)version;
    (void)upload;
    (void)upload_len;
    (void)con_cls;
    hostd_metrics *m = cls;
    struct MHD_Response *r;
    unsigned status = MHD_HTTP_OK;
    if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
        static const char msg[] = "only GET\n";
        status = MHD_HTTP_METHOD_NOT_ALLOWED;
        r = MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
    } else if (strcmp(url, "/metrics") != 0) {
        static const char msg[] = "not found: the metrics are at /metrics\n";
        status = MHD_HTTP_NOT_FOUND;
        r = MHD_create_response_from_buffer(sizeof msg - 1, (void *)msg, MHD_RESPMEM_PERSISTENT);
    } else {
        size_t len = 0;
        char *body = hostd_metrics_render(m, &len);
        if (!body)
            return MHD_NO;
        r = MHD_create_response_from_buffer_with_free_callback(len, body, free);
        if (r)
            MHD_add_response_header(r, "Content-Type", "text/plain; version=0.0.4; charset=utf-8");
    }
    if (!r)
        return MHD_NO;
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

te_status hostd_metrics_listen(hostd_metrics *m, const char *listen, int *port, te_err *err)
{
    char host[256];
    const char *colon = strrchr(listen, ':');
    if (!colon || colon == listen || (size_t)(colon - listen) >= sizeof host || !colon[1])
        return te_errf(err, TE_EINVAL, "metrics listen address '%s' is not HOST:PORT", listen);
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = 0;
    if (host[0] == '[' && host[strlen(host) - 1] == ']') { /* [::1]:9464 */
        memmove(host, host + 1, strlen(host) - 2);
        host[strlen(host) - 2] = 0;
    }
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(host, colon + 1, &hints, &ai);
    if (rc != 0)
        return te_errf(err, TE_EINVAL, "metrics listen address '%s': %s", listen, gai_strerror(rc));
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_POLL;
    if (ai->ai_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    m->http = MHD_start_daemon(flags, 0, NULL, NULL, on_request, m, MHD_OPTION_SOCK_ADDR, ai->ai_addr,
                               MHD_OPTION_CONNECTION_LIMIT, (unsigned)64, MHD_OPTION_CONNECTION_TIMEOUT,
                               (unsigned)10, MHD_OPTION_END);
    freeaddrinfo(ai);
    if (!m->http)
        return te_errf(err, TE_EIO, "cannot serve metrics on %s (address in use?)", listen);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(m->http, MHD_DAEMON_INFO_BIND_PORT);
    if (port)
        *port = info ? (int)info->port : 0;
    return TE_OK;
}
