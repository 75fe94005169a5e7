/* twinedge-host: serve one edge host (EdgeA or EdgeB) over gRPC + mTLS. */
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "hostd.h"
#include "te_net_transport.h"

static void log_line(const char *fmt, ...)
{
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[32];
    strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%S", &tm);
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s.%03ldZ twinedge-host[%ld]: %s\n", ts, (long)(tv.tv_usec / 1000), (long)getpid(), msg);
}

static void call_log(void *ctx, const char *method, const char *peer, int code, const char *msg, double ms)
{
    (void)ctx;
    if (code == 0)
        log_line("%s from %s: OK (%s) %.1f ms", method, peer, msg, ms);
    else
        log_line("%s from %s: status %d: %s (%.1f ms)", method, peer, code, msg, ms);
}

static void host_log(void *ctx, const char *msg)
{
    (void)ctx;
    log_line("%s", msg);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: twinedge-host [--config FILE] [options]\n"
            "\n"
            "Serves one edge host (EdgeA or EdgeB) over gRPC with mutual TLS.\n"
            "Options override the config file (\"key = value\" lines, same names):\n"
            "  --role a|b              EdgeA or EdgeB\n"
            "  --listen HOST:PORT      address to serve on (port 0: any free port)\n"
            "  --peer HOST:PORT        EdgeA only: EdgeB's address (relay mode)\n"
            "  --plugin cpu|opencl|PATH  compute plugin (default cpu)\n"
            "  --plugin-config STR     passed to the plugin\n"
            "  --fallback-plugin NAME  used when --plugin cannot be loaded or started (e.g. cpu)\n"
            "  --store DIR             deployments and device keys, kept across restarts\n"
            "  --credentials DIR       ca.pem, cert.pem, key.pem of this host\n"
            "  --port-file FILE        write the port once serving\n"
            "  --workers N             handler threads: layer requests computed at once (default 8);\n"
            "                          open streams hold no thread\n"
            "  --max-calls N           calls open at once (default 10000); beyond: RESOURCE_EXHAUSTED\n"
            "  --max-queue N           requests waiting for a worker (default 4096); beyond: refused\n"
            "                          unserved (RESOURCE_EXHAUSTED), devices retry\n"
            "  --max-queue-mb N        their bytes, MiB (default 512)\n"
            "  --batch-window-us N     combine concurrent requests for a layer within N us (0..100000,\n"
            "                          default 0: off)\n"
            "  --allow-plaintext 0|1   EdgeA: also serve the benchmarks' plaintext baseline (no privacy;\n"
            "                          default 0)\n"
            "  --precompute-mb N       EdgeB: precompute each device's next mask shares, in at most N MiB\n"
            "                          (0..65536, default 0: off)\n"
            "  -h, --help\n");
}

static int fail(const char *msg)
{
    log_line("error: %s", msg);
    return 1;
}

int main(int argc, char **argv)
{
    hostd_config cfg;
    hostd_config_defaults(&cfg);
    te_err err;
    te_err_clear(&err);
    enum { O_CONFIG = 256, O_ROLE, O_LISTEN, O_PEER, O_PLUGIN, O_PCONF, O_STORE, O_CREDS, O_PORTFILE, O_WORKERS,
           O_FALLBACK, O_BATCH_WINDOW, O_PLAINTEXT, O_PRECOMPUTE, O_MAX_CALLS, O_MAX_QUEUE, O_MAX_QUEUE_MB };
    static const struct option opts[] = {
        {"config", required_argument, NULL, O_CONFIG},     {"role", required_argument, NULL, O_ROLE},
        {"listen", required_argument, NULL, O_LISTEN},     {"peer", required_argument, NULL, O_PEER},
        {"plugin", required_argument, NULL, O_PLUGIN},     {"plugin-config", required_argument, NULL, O_PCONF},
        {"store", required_argument, NULL, O_STORE},       {"credentials", required_argument, NULL, O_CREDS},
        {"port-file", required_argument, NULL, O_PORTFILE}, {"workers", required_argument, NULL, O_WORKERS},
        {"fallback-plugin", required_argument, NULL, O_FALLBACK},
        {"batch-window-us", required_argument, NULL, O_BATCH_WINDOW},
        {"allow-plaintext", required_argument, NULL, O_PLAINTEXT},
        {"precompute-mb", required_argument, NULL, O_PRECOMPUTE},
        {"max-calls", required_argument, NULL, O_MAX_CALLS},
        {"max-queue", required_argument, NULL, O_MAX_QUEUE},
        {"max-queue-mb", required_argument, NULL, O_MAX_QUEUE_MB},
        {"help", no_argument, NULL, 'h'},                  {NULL, 0, NULL, 0}};
    /* The config file first, whatever its position, then the flags. */
    for (int i = 1; i + 1 < argc; i++)
        if (strcmp(argv[i], "--config") == 0 && hostd_config_read(argv[i + 1], &cfg, &err) != TE_OK)
            return fail(err.msg);
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        const char *key = NULL;
        switch (c) {
        case O_CONFIG: continue;
        case O_ROLE: key = "role"; break;
        case O_LISTEN: key = "listen"; break;
        case O_PEER: key = "peer"; break;
        case O_PLUGIN: key = "plugin"; break;
        case O_PCONF: key = "plugin_config"; break;
        case O_STORE: key = "store"; break;
        case O_CREDS: key = "credentials"; break;
        case O_PORTFILE: key = "port_file"; break;
        case O_WORKERS: key = "workers"; break;
        case O_FALLBACK: key = "fallback_plugin"; break;
        case O_BATCH_WINDOW: key = "batch_window_us"; break;
        case O_PLAINTEXT: key = "allow_plaintext"; break;
        case O_PRECOMPUTE: key = "precompute_mb"; break;
        case O_MAX_CALLS: key = "max_calls"; break;
        case O_MAX_QUEUE: key = "max_queue"; break;
        case O_MAX_QUEUE_MB: key = "max_queue_mb"; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
        if (hostd_config_set(&cfg, key, optarg, &err) != TE_OK)
            return fail(err.msg);
    }
    if (optind != argc) {
        usage(stderr);
        return 2;
    }
    if (hostd_config_check(&cfg, &err) != TE_OK)
        return fail(err.msg);

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
                         .log = host_log};
    te_host *host = NULL;
    te_transport *peer = NULL;
    te_net_server *server = NULL;
    te_net_creds creds;
    memset(&creds, 0, sizeof creds);
    hostd_service svc;
    int svc_ok = 0, rc = 1;
    int nb = 0, nd = 0;

    if (te_net_creds_load(cfg.credentials, &creds, &err) != TE_OK || !creds.cert_pem) {
        fail(creds.ca_pem ? "the credentials directory has no cert.pem/key.pem" : err.msg);
        goto out;
    }
    if (te_host_new(&hc, &host, &err) != TE_OK || hostd_store_init(cfg.store, &err) != TE_OK ||
        hostd_store_load(cfg.store, host, &nb, &nd, &err) != TE_OK) {
        fail(err.msg);
        goto out;
    }
    if (cfg.allow_plaintext)
        log_line("warning: allow_plaintext is on: plaintext (benchmark baseline) requests are served, without "
                 "privacy");
    log_line("Edge%c: plugin %s%s%s; store %s: %d deployment(s), %d device key(s) loaded",
             role == TE_ROLE_A ? 'A' : 'B', cfg.plugin, cfg.fallback_plugin[0] ? ", fallback " : "",
             cfg.fallback_plugin, cfg.store, nb, nd);
    if (role == TE_ROLE_B && cfg.precompute_mb)
        log_line("precompute: each device's next mask shares are computed ahead, in at most %d MiB",
                 cfg.precompute_mb);
    if (role == TE_ROLE_A && cfg.peer[0]) {
        te_net_transport_config tc = {NULL, cfg.peer, &creds, cfg.peer_timeout_ms, 1, NULL};
        if (te_net_transport_new(&tc, &peer, &err) != TE_OK) {
            fail(err.msg);
            goto out;
        }
        te_host_set_peer(host, peer);
        log_line("EdgeB peer: %s", cfg.peer);
    }
    if (hostd_service_init(&svc, host, role, cfg.store, log_line, &err) != TE_OK) {
        fail(err.msg);
        goto out;
    }
    svc_ok = 1;
    svc.deployments = nb;
    svc.devices = nd;
    te_net_method methods[8];
    int nm = hostd_service_methods(&svc, methods, 8);
    te_net_server_config sc = {cfg.listen, &creds, methods, nm, cfg.workers, (size_t)cfg.max_message_mb << 20, 0, 0,
                               call_log, NULL, cfg.max_calls, cfg.max_queue, (size_t)cfg.max_queue_mb << 20};
    if (te_net_server_start(&sc, &server, &err) != TE_OK) {
        fail(err.msg);
        goto out;
    }
    int port = te_net_server_port(server);
    log_line("serving on %s (port %d), mutual TLS", cfg.listen, port);
    if (cfg.port_file[0]) {
        char tmp[HOSTD_STR + 8];
        snprintf(tmp, sizeof tmp, "%s.tmp", cfg.port_file);
        FILE *f = fopen(tmp, "w");
        if (!f || fprintf(f, "%d\n", port) < 0 || fclose(f) != 0 || rename(tmp, cfg.port_file) != 0) {
            fail("cannot write the port file");
            goto out;
        }
    }
    int sig = 0;
    sigwait(&sigs, &sig);
    log_line("signal %d: draining calls in flight (up to %d ms), then stopping", sig, cfg.grace_ms);
    rc = 0;
out:
    te_net_server_stop(server, cfg.grace_ms);
    if (host)
        te_host_set_peer(host, NULL);
    te_transport_free(peer);
    if (svc_ok)
        hostd_service_free(&svc);
    te_host_free(host);
    te_net_creds_free(&creds);
    if (rc == 0)
        log_line("stopped");
    return rc;
}
