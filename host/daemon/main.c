/* twinedge-host: serve one edge host (EdgeA or EdgeB) over gRPC + mTLS. */
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <systemd/sd-daemon.h>
#include <time.h>
#include <unistd.h>

#include "health.pb-c.h"
#include "hostd.h"
#include "te_net_transport.h"
#include "twinedge_version.h"

/* How often EdgeA asks its EdgeB for its health (what EdgeA's own health
 * answers depends on it). */
#define PEER_CHECK_MS 2000
#define PEER_RETRY_MS 250

static void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void log_info(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    hostd_vlogf(HOSTD_INFO, fmt, ap);
    va_end(ap);
}

static void call_log(void *ctx, const char *method, const char *peer, int code, const char *msg, double ms)
{
    hostd_metrics_call(ctx, method, code, ms);
    if (code == 0)
        hostd_logf(HOSTD_DEBUG, "%s from %s: OK (%s) %.1f ms", method, peer, msg, ms);
    else /* refused or failed: always worth an operator's look */
        hostd_logf(HOSTD_ERROR, "%s from %s: status %d: %s (%.1f ms)", method, peer, code, msg, ms);
}

/* The host core's and its plugin's lines (te_log_level has hostd's values). */
static void host_log(void *ctx, te_log_level level, const char *source, const char *msg)
{
    (void)ctx;
    hostd_log_line((hostd_level)level, source, msg);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: twinedge-host [--config FILE] [options]\n"
               "\n"
               "Serves one edge host (EdgeA or EdgeB) over gRPC with mutual TLS.\n"
               "Options override the config file (\"key = value\" lines, the same names with _ for -):\n");
    hostd_config_usage(f);
    fprintf(f, "  %-32s %s\n  %-32s %s\n  %-32s %s\n  %-32s %s\n", "--config FILE", "read settings from FILE",
            "--check-config", "check the settings and exit (0: valid)", "--version", "print the version",
            "-h, --help", "this text");
    fprintf(f, "\nSignals: SIGTERM/SIGINT drain the calls in flight (grace_ms) and stop; SIGHUP re-reads the\n"
               "store (new or changed deployments and device keys) and the config file's log_level.\n");
}

static int fail(const char *msg)
{
    hostd_logf(HOSTD_ERROR, "%s", msg);
    return 1;
}

/* The config file named by --config FILE or --config=FILE (the last one). */
static const char *config_path(int argc, char **argv)
{
    const char *path = NULL;
    for (int i = 1; i < argc && strcmp(argv[i], "--") != 0; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strncmp(argv[i], "--config=", 9) == 0)
            path = argv[i] + 9;
    }
    return path;
}

/* EdgeA's view of its EdgeB, for EdgeA's health. */
typedef struct peer_watch {
    hostd_service *svc;
    te_net_channel *ch;
    pthread_t thread;
    pthread_mutex_t lock;
    pthread_cond_t cv;
    int stop, started;
} peer_watch;

static void *peer_watch_run(void *arg)
{
    peer_watch *w = arg;
    Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    q.service = (char *)"twinedge.EdgeHost";
    uint8_t req[64];
    size_t req_len = grpc__health__v1__health_check_request__pack(&q, req);
    int was = -1;
    pthread_mutex_lock(&w->lock);
    while (!w->stop) {
        pthread_mutex_unlock(&w->lock);
        uint8_t *resp = NULL;
        size_t len = 0;
        te_err err;
        int ok = 0;
        if (te_net_unary(w->ch, TE_SVC_HEALTH_CHECK, req, req_len, &resp, &len, PEER_CHECK_MS, &err) == TE_OK) {
            Grpc__Health__V1__HealthCheckResponse *r = grpc__health__v1__health_check_response__unpack(NULL, len,
                                                                                                    resp);
            ok = r && r->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
            if (!ok)
                snprintf(err.msg, sizeof err.msg, "EdgeB answers but is not serving (no deployment?)");
            if (r)
                grpc__health__v1__health_check_response__free_unpacked(r, NULL);
        }
        free(resp);
        atomic_store(&w->svc->peer_ok, ok);
        if (ok != was) {
            if (ok)
                hostd_logf(HOSTD_INFO, "EdgeB is serving: EdgeA is ready");
            else
                hostd_logf(HOSTD_WARN, "EdgeB not ready, EdgeA reports NOT_SERVING: %s", err.msg);
            was = ok;
        }
        /* not ready: ask again soon, so EdgeA is ready soon after EdgeB */
        long ms = ok ? PEER_CHECK_MS : PEER_RETRY_MS;
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += ms / 1000;
        until.tv_nsec += (ms % 1000) * 1000000L;
        if (until.tv_nsec >= 1000000000L) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000L;
        }
        pthread_mutex_lock(&w->lock);
        while (!w->stop && pthread_cond_timedwait(&w->cv, &w->lock, &until) != ETIMEDOUT)
            ;
    }
    pthread_mutex_unlock(&w->lock);
    return NULL;
}

static void peer_watch_stop(peer_watch *w)
{
    if (w->started) {
        pthread_mutex_lock(&w->lock);
        w->stop = 1;
        pthread_cond_signal(&w->cv);
        pthread_mutex_unlock(&w->lock);
        pthread_join(w->thread, NULL);
        w->started = 0;
    }
    te_net_channel_free(w->ch);
    w->ch = NULL;
}

/* The figures the metrics read at each scrape. */
typedef struct gauge_src {
    hostd_service *svc;
    te_net_server *server;
} gauge_src;

static void read_gauges(void *ctx, hostd_gauges *g)
{
    gauge_src *src = ctx;
    te_net_server_figures f;
    te_net_server_figures_get(src->server, &f);
    g->open_calls = f.open_calls;
    g->devices_connected = f.open_streams;
    pthread_mutex_lock(&src->svc->lock);
    g->deployments = src->svc->deployments;
    g->devices_registered = src->svc->devices;
    pthread_mutex_unlock(&src->svc->lock);
    te_host_batch_figures(src->svc->host, &g->plugin_runs, &g->requests_batched);
    te_host_precompute_figures(src->svc->host, &g->precompute_hits, &g->precompute_misses, NULL);
    te_host_relay_ahead_figures(src->svc->host, &g->ahead_hits, &g->ahead_misses, &g->ahead_evictions,
                                &g->ahead_bytes);
}

/* SIGHUP: the store's new or changed files and the log level, while the
 * calls in flight go on. */
static void reload(const char *path, hostd_config *cfg, hostd_service *svc, hostd_store_state *seen)
{
    struct timespec now;
    clock_gettime(CLOCK_MONOTONIC, &now);
    sd_notifyf(0, "RELOADING=1\nSTATUS=reloading the store\nMONOTONIC_USEC=%llu",
               (unsigned long long)now.tv_sec * 1000000ULL + (unsigned long long)now.tv_nsec / 1000ULL);
    te_err err;
    if (path) {
        hostd_config fresh;
        hostd_config_defaults(&fresh);
        if (hostd_config_read(path, &fresh, &err) != TE_OK) {
            hostd_logf(HOSTD_ERROR, "reload: %s (log level unchanged)", err.msg);
        } else if (fresh.log_level != cfg->log_level) {
            cfg->log_level = fresh.log_level;
            hostd_log_set_level((hostd_level)fresh.log_level);
            hostd_logf(HOSTD_INFO, "reload: log level %s", hostd_level_name((hostd_level)fresh.log_level));
        }
    }
    hostd_store_counts n;
    te_status st = hostd_store_load(cfg->store, svc->host, seen, &n, &err);
    pthread_mutex_lock(&svc->lock);
    svc->deployments = n.bundles;
    svc->devices = n.devices;
    pthread_mutex_unlock(&svc->lock);
    if (st != TE_OK)
        hostd_logf(HOSTD_ERROR, "reload: %s", err.msg);
    hostd_logf(HOSTD_INFO, "reload: store %s: %d deployment(s), %d device key(s) (loaded now: %d and %d)", cfg->store,
               n.bundles, n.devices, n.bundles_loaded, n.devices_loaded);
    sd_notify(0, "READY=1\nSTATUS=serving");
}

int main(int argc, char **argv)
{
    hostd_config cfg;
    hostd_config_defaults(&cfg);
    te_err err;
    te_err_clear(&err);
    hostd_log_init(HOSTD_INFO, 0);
    enum { O_CONFIG = 1000, O_CHECK, O_VERSION };
    int nk = hostd_config_n_keys();
    struct option *opts = calloc((size_t)nk + 5, sizeof *opts);
    char(*names)[64] = calloc((size_t)nk, sizeof *names);
    if (!opts || !names) {
        free(opts);
        free(names);
        return fail("out of memory");
    }
    /* one flag per setting, from the settings table */
    for (int i = 0; i < nk; i++) {
        snprintf(names[i], sizeof names[i], "%s", hostd_config_key_name(i));
        for (char *p = names[i]; *p; p++)
            if (*p == '_')
                *p = '-';
        opts[i] = (struct option){names[i], required_argument, NULL, i};
    }
    opts[nk] = (struct option){"config", required_argument, NULL, O_CONFIG};
    opts[nk + 1] = (struct option){"check-config", no_argument, NULL, O_CHECK};
    opts[nk + 2] = (struct option){"version", no_argument, NULL, O_VERSION};
    opts[nk + 3] = (struct option){"help", no_argument, NULL, 'h'};
    int check_only = 0, rc_early = -1;
    /* The config file first, wherever it is given, then the flags. */
    const char *cpath = config_path(argc, argv);
    if (cpath && hostd_config_read(cpath, &cfg, &err) != TE_OK)
        rc_early = fail(err.msg);
    int c;
    while (rc_early < 0 && (c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        if (c >= 0 && c < nk) {
            if (hostd_config_set(&cfg, hostd_config_key_name(c), optarg, &err) != TE_OK)
                rc_early = fail(err.msg);
            continue;
        }
        switch (c) {
        case O_CONFIG: break;
        case O_CHECK: check_only = 1; break;
        case O_VERSION: printf("twinedge-host %s\n", TWINEDGE_VERSION_STRING); rc_early = 0; break;
        case 'h': usage(stdout); rc_early = 0; break;
        default: usage(stderr); rc_early = 2; break;
        }
    }
    free(opts);
    free(names);
    if (rc_early >= 0)
        return rc_early;
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (hostd_config_check(&cfg, &err) != TE_OK)
        return fail(err.msg);
    if (check_only) {
        printf("configuration valid: Edge%c on %s\n", cfg.role[0] == 'a' ? 'A' : 'B', cfg.listen);
        return 0;
    }
    hostd_log_init((hostd_level)cfg.log_level, cfg.log_json);

    /* Signals go to the main thread's sigwait below, not to gRPC's threads. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGTERM);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGHUP);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    te_role role = cfg.role[0] == 'a' ? TE_ROLE_A : TE_ROLE_B;
    te_host_config hc = {.role = role,
                         .plugin = cfg.plugin,
                         .plugin_config = cfg.plugin_config[0] ? cfg.plugin_config : NULL,
                         .fallback_plugin = cfg.fallback_plugin[0] ? cfg.fallback_plugin : NULL,
                         .batch_window_us = (uint32_t)cfg.batch_window_us,
                         .allow_plaintext = cfg.allow_plaintext,
                         .precompute_mb = (uint32_t)cfg.precompute_mb,
                         .relay_ahead_kb = (uint32_t)cfg.relay_ahead_kb,
                         .log = host_log};
    te_host *host = NULL;
    te_transport *peer = NULL;
    te_net_server *server = NULL;
    te_net_creds creds;
    memset(&creds, 0, sizeof creds);
    hostd_service svc;
    hostd_metrics *metrics = NULL;
    hostd_store_state seen = {NULL, 0, 0};
    hostd_store_counts loaded;
    peer_watch watch;
    memset(&watch, 0, sizeof watch);
    pthread_mutex_init(&watch.lock, NULL);
    pthread_cond_init(&watch.cv, NULL);
    int svc_ok = 0, rc = 1;

    if (te_net_creds_load(cfg.credentials, &creds, &err) != TE_OK || !creds.cert_pem) {
        fail(creds.ca_pem ? "the credentials directory has no cert.pem/key.pem" : err.msg);
        goto out;
    }
    if (te_host_new(&hc, &host, &err) != TE_OK || hostd_store_init(cfg.store, &err) != TE_OK ||
        hostd_store_load(cfg.store, host, &seen, &loaded, &err) != TE_OK) {
        fail(err.msg);
        goto out;
    }
    if (cfg.allow_plaintext)
        hostd_logf(HOSTD_WARN, "allow_plaintext is on: plaintext (benchmark baseline) requests are served, without "
                               "privacy");
    log_info("twinedge-host %s, Edge%c: plugin %s%s%s; store %s: %d deployment(s), %d device key(s) loaded",
             TWINEDGE_VERSION_STRING, role == TE_ROLE_A ? 'A' : 'B', cfg.plugin,
             cfg.fallback_plugin[0] ? ", fallback " : "", cfg.fallback_plugin, cfg.store, loaded.bundles,
             loaded.devices);
    if (role == TE_ROLE_B && cfg.precompute_mb)
        log_info("precompute: each device's next mask shares are computed ahead, in at most %d MiB",
                 cfg.precompute_mb);
    if (role == TE_ROLE_A && cfg.relay_ahead_kb)
        log_info("relay ahead: each device's next relay shares are fetched from EdgeB ahead, in at most %d KiB",
                 cfg.relay_ahead_kb);
    if (hostd_service_init(&svc, host, role, cfg.store, log_info, &err) != TE_OK) {
        fail(err.msg);
        goto out;
    }
    svc_ok = 1;
    svc.deployments = loaded.bundles;
    svc.devices = loaded.devices;
    if (role == TE_ROLE_A && cfg.peer[0]) {
        te_net_transport_config tc = {NULL, cfg.peer, &creds, cfg.peer_timeout_ms, 1, NULL};
        te_net_channel_config cc = {cfg.peer, &creds, TE_CN_EDGE_B, 0};
        if (te_net_transport_new(&tc, &peer, &err) != TE_OK || te_net_channel_new(&cc, &watch.ch, &err) != TE_OK) {
            fail(err.msg);
            goto out;
        }
        te_host_set_peer(host, peer);
        log_info("EdgeB peer: %s", cfg.peer);
        atomic_store(&svc.peer_ok, 0); /* until EdgeB has answered */
        watch.svc = &svc;
        if (pthread_create(&watch.thread, NULL, peer_watch_run, &watch) != 0) {
            fail("cannot start the EdgeB health check");
            goto out;
        }
        watch.started = 1;
    }
    char plugin_device[128];
    te_host_plugin_device(host, plugin_device, sizeof plugin_device);
    if (cfg.metrics_listen[0] &&
        hostd_metrics_new(TWINEDGE_VERSION_STRING, role == TE_ROLE_A ? "a" : "b", te_host_plugin_name(host),
                          plugin_device, &metrics, &err) != TE_OK) {
        fail(err.msg);
        goto out;
    }
    svc.metrics = metrics;
    te_net_method methods[8];
    int nm = hostd_service_methods(&svc, methods, 8);
    te_net_server_config sc = {cfg.listen, &creds, methods, nm, cfg.workers, (size_t)cfg.max_message_mb << 20, 0, 0,
                               call_log, metrics, cfg.max_calls, cfg.max_queue, (size_t)cfg.max_queue_mb << 20};
    if (te_net_server_start(&sc, &server, &err) != TE_OK) {
        fail(err.msg);
        goto out;
    }
    int port = te_net_server_port(server);
    log_info("serving on %s (port %d), mutual TLS", cfg.listen, port);
    gauge_src gsrc = {&svc, server};
    if (metrics) {
        int mport = 0;
        hostd_metrics_set_gauges(metrics, read_gauges, &gsrc);
        if (hostd_metrics_listen(metrics, cfg.metrics_listen, &mport, &err) != TE_OK) {
            fail(err.msg);
            goto out;
        }
        log_info("metrics on http://%s/metrics (port %d)", cfg.metrics_listen, mport);
    }
    if (cfg.port_file[0]) {
        char tmp[HOSTD_STR + 8];
        snprintf(tmp, sizeof tmp, "%s.tmp", cfg.port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, cfg.port_file) != 0) {
            fail("cannot write the port file");
            goto out;
        }
    }
    sd_notifyf(0, "READY=1\nSTATUS=serving on %s", cfg.listen);
    int sig = 0;
    for (;;) {
        sigwait(&sigs, &sig);
        if (sig != SIGHUP)
            break;
        reload(cpath, &cfg, &svc, &seen);
    }
    sd_notify(0, "STOPPING=1\nSTATUS=draining calls in flight");
    log_info("signal %d: draining calls in flight (up to %d ms), then stopping", sig, cfg.grace_ms);
    rc = 0;
out:
    peer_watch_stop(&watch);
    /* the metrics endpoint reads the server: it stops first; the calls
     * draining still count into the metrics, freed after them */
    hostd_metrics_close(metrics);
    te_net_server_stop(server, cfg.grace_ms);
    hostd_metrics_free(metrics);
    if (host)
        te_host_set_peer(host, NULL);
    te_transport_free(peer);
    if (svc_ok)
        hostd_service_free(&svc);
    te_host_free(host);
    te_net_creds_free(&creds);
    hostd_store_state_free(&seen);
    pthread_mutex_destroy(&watch.lock);
    pthread_cond_destroy(&watch.cv);
    te_net_quiesce(TE_NET_QUIESCE_MS); /* gRPC's threads done before exit (te_net.h) */
    if (rc == 0)
        log_info("stopped");
    return rc;
}
