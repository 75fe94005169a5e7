/* twinedge-host configuration: "key = value" lines. */
#include <ctype.h>
#include <stddef.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostd.h"

/* Every setting, once: the config file's key, its flag (the key with '-'
 * for '_'), how it is checked and its line in --help. */
typedef enum { K_STR, K_INT, K_ROLE, K_LEVEL, K_FORMAT } key_kind;

typedef struct hostd_key {
    const char *key;
    key_kind kind;
    size_t off, size; /* K_STR: the char array; others: an int */
    long lo, hi;
    const char *arg, *help;
} hostd_key;

#define STR(f) K_STR, offsetof(hostd_config, f), sizeof(((hostd_config *)0)->f), 0, 0
#define INT(f, lo, hi) K_INT, offsetof(hostd_config, f), sizeof(int), lo, hi

static const hostd_key keys[] = {
    {"role", K_ROLE, offsetof(hostd_config, role), sizeof(((hostd_config *)0)->role), 0, 0, "a|b",
     "EdgeA or EdgeB"},
    {"listen", STR(listen), "HOST:PORT", "address to serve on (port 0: any free port; default 127.0.0.1:50051)"},
    {"peer", STR(peer), "HOST:PORT", "EdgeA only: EdgeB's address (relay mode)"},
    {"plugin", STR(plugin), "cpu|opencl|PATH", "compute plugin (default cpu)"},
    {"plugin_config", STR(plugin_config), "STR", "passed to the plugin"},
    {"fallback_plugin", STR(fallback_plugin), "NAME", "used when the plugin cannot be loaded or started (e.g. cpu)"},
    {"store", STR(store), "DIR", "deployments and device keys, kept across restarts (re-read on SIGHUP)"},
    {"credentials", STR(credentials), "DIR", "ca.pem, cert.pem, key.pem of this host"},
    {"port_file", STR(port_file), "FILE", "write the port once serving"},
    {"metrics_listen", STR(metrics_listen), "HOST:PORT",
     "serve Prometheus metrics over plain HTTP at /metrics (default: off); monitoring network only"},
    {"log_level", K_LEVEL, offsetof(hostd_config, log_level), sizeof(int), 0, 0, "error|warn|info|debug",
     "what is logged (default info; every call at debug; re-read on SIGHUP)"},
    {"log_format", K_FORMAT, offsetof(hostd_config, log_json), sizeof(int), 0, 0, "text|json",
     "log lines as text or JSON lines (default text)"},
    {"workers", INT(workers, 1, 256), "N", "handler threads: layer requests computed at once (default 8)"},
    {"max_calls", INT(max_calls, 1, 1000000), "N", "calls open at once (default 10000); beyond: RESOURCE_EXHAUSTED"},
    {"max_queue", INT(max_queue, 1, 1000000), "N",
     "requests waiting for a worker (default 4096); beyond: refused unserved, devices retry"},
    {"max_queue_mb", INT(max_queue_mb, 1, 65536), "N", "their bytes, MiB (default 512)"},
    {"max_message_mb", INT(max_message_mb, 1, 1024), "N", "largest message accepted or sent, MiB (default 64)"},
    {"peer_timeout_ms", INT(peer_timeout_ms, 1, 3600000), "N", "deadline of EdgeA's calls to EdgeB (default 30000)"},
    {"grace_ms", INT(grace_ms, 0, 3600000), "N", "on SIGTERM: time for calls in flight (default 5000)"},
    {"batch_window_us", INT(batch_window_us, 0, 100000), "N",
     "combine concurrent requests for a layer within N us (default 0: off)"},
    {"allow_plaintext", INT(allow_plaintext, 0, 1), "0|1",
     "EdgeA: also serve the benchmarks' plaintext baseline (no privacy; default 0)"},
    {"precompute_mb", INT(precompute_mb, 0, 65536), "N",
     "EdgeB: precompute each device's next mask shares, in at most N MiB (default 0: off)"},
    {"relay_ahead_kb", INT(relay_ahead_kb, 0, 16777216), "N",
     "EdgeA: fetch each device's next relay shares from EdgeB ahead, in at most N KiB (default 0: off)"},
};
#define N_KEYS ((int)(sizeof keys / sizeof keys[0]))

void hostd_config_defaults(hostd_config *c)
{
    memset(c, 0, sizeof *c);
    snprintf(c->listen, sizeof c->listen, "127.0.0.1:50051");
    snprintf(c->plugin, sizeof c->plugin, "cpu");
    c->workers = 8;
    c->max_calls = 10000;
    c->max_queue = 4096;
    c->max_queue_mb = 512;
    c->max_message_mb = 64;
    c->peer_timeout_ms = 30000;
    c->grace_ms = 5000;
    c->log_level = HOSTD_INFO;
}

int hostd_config_n_keys(void) { return N_KEYS; }

const char *hostd_config_key_name(int i) { return i >= 0 && i < N_KEYS ? keys[i].key : NULL; }

void hostd_config_usage(FILE *f)
{
    for (int i = 0; i < N_KEYS; i++) {
        char flag[96];
        snprintf(flag, sizeof flag, "--%s %s", keys[i].key, keys[i].arg);
        for (char *p = flag; *p && *p != ' '; p++)
            if (*p == '_')
                *p = '-';
        fprintf(f, "  %-32s %s\n", flag, keys[i].help);
    }
}

te_status hostd_config_set(hostd_config *c, const char *key, const char *v, te_err *err)
{
    char k[64];
    if (strlen(key) >= sizeof k)
        return te_errf(err, TE_EINVAL, "unknown setting '%.40s'", key);
    for (size_t i = 0; i <= strlen(key); i++) /* plugin-config and plugin_config alike */
        k[i] = key[i] == '-' ? '_' : key[i];
    const hostd_key *d = NULL;
    for (int i = 0; i < N_KEYS && !d; i++)
        if (strcmp(keys[i].key, k) == 0)
            d = &keys[i];
    if (!d)
        return te_errf(err, TE_EINVAL, "unknown setting '%s'", key);
    char *field = (char *)c + d->off;
    int *ifield = (int *)(void *)field;
    switch (d->kind) {
    case K_STR:
        if (strlen(v) >= d->size)
            return te_errf(err, TE_EINVAL, "%s: value too long", d->key);
        memcpy(field, v, strlen(v) + 1);
        return TE_OK;
    case K_ROLE:
        if (strcmp(v, "a") && strcmp(v, "b") && strcmp(v, "A") && strcmp(v, "B"))
            return te_errf(err, TE_EINVAL, "role must be a or b, not '%s'", v);
        field[0] = (char)tolower((unsigned char)v[0]);
        field[1] = '\0';
        return TE_OK;
    case K_LEVEL: {
        int l = hostd_level_parse(v);
        if (l < 0)
            return te_errf(err, TE_EINVAL, "log_level must be error, warn, info or debug, not '%s'", v);
        *ifield = l;
        return TE_OK;
    }
    case K_FORMAT:
        if (strcmp(v, "text") && strcmp(v, "json"))
            return te_errf(err, TE_EINVAL, "log_format must be text or json, not '%s'", v);
        *ifield = strcmp(v, "json") == 0;
        return TE_OK;
    case K_INT: {
        char *end = NULL;
        errno = 0;
        long x = strtol(v, &end, 10);
        if (errno || !end || *end || end == v || x < d->lo || x > d->hi)
            return te_errf(err, TE_EINVAL, "%s: '%s' is not a number in %ld..%ld", d->key, v, d->lo, d->hi);
        *ifield = (int)x;
        return TE_OK;
    }
    }
    return te_errf(err, TE_EINVAL, "unknown setting '%s'", key);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s))
        s++;
    size_t n = strlen(s);
    while (n && isspace((unsigned char)s[n - 1]))
        s[--n] = '\0';
    return s;
}

te_status hostd_config_read(const char *path, hostd_config *c, te_err *err)
{
    FILE *f = fopen(path, "r");
    if (!f)
        return te_errf(err, TE_EIO, "cannot read %s: %s", path, strerror(errno));
    char line[4096];
    int no = 0;
    te_status st = TE_OK;
    while (st == TE_OK && fgets(line, sizeof line, f)) {
        no++;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *s = trim(line);
        if (!*s)
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            st = te_errf(err, TE_EINVAL, "%s:%d: expected 'key = value'", path, no);
            break;
        }
        *eq = '\0';
        if ((st = hostd_config_set(c, trim(s), trim(eq + 1), err)) != TE_OK)
            te_err_wrap(err, "%s:%d", path, no);
    }
    fclose(f);
    return st;
}

te_status hostd_config_check(const hostd_config *c, te_err *err)
{
    if (!c->role[0])
        return te_errf(err, TE_EINVAL, "no role (--role a|b)");
    if (!c->credentials[0])
        return te_errf(err, TE_EINVAL, "no credentials directory (--credentials DIR with ca.pem, cert.pem, key.pem)");
    if (!c->store[0])
        return te_errf(err, TE_EINVAL, "no store directory (--store DIR)");
    if (c->role[0] == 'b' && c->peer[0])
        return te_errf(err, TE_EINVAL, "--peer is EdgeA's link to EdgeB; EdgeB has none");
    return TE_OK;
}
