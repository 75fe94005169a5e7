/* twinedge-host configuration: "key = value" lines. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostd.h"

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
}

static te_status set_str(char *dst, size_t cap, const char *key, const char *v, te_err *err)
{
    if (strlen(v) >= cap)
        return te_errf(err, TE_EINVAL, "%s: value too long", key);
    memcpy(dst, v, strlen(v) + 1);
    return TE_OK;
}

static te_status set_int(int *dst, const char *key, const char *v, long lo, long hi, te_err *err)
{
    char *end = NULL;
    errno = 0;
    long x = strtol(v, &end, 10);
    if (errno || !end || *end || end == v || x < lo || x > hi)
        return te_errf(err, TE_EINVAL, "%s: '%s' is not a number in %ld..%ld", key, v, lo, hi);
    *dst = (int)x;
    return TE_OK;
}

te_status hostd_config_set(hostd_config *c, const char *key, const char *v, te_err *err)
{
    if (strcmp(key, "role") == 0) {
        if (strcmp(v, "a") && strcmp(v, "b") && strcmp(v, "A") && strcmp(v, "B"))
            return te_errf(err, TE_EINVAL, "role must be a or b, not '%s'", v);
        c->role[0] = (char)tolower((unsigned char)v[0]);
        c->role[1] = '\0';
        return TE_OK;
    }
    if (strcmp(key, "listen") == 0)
        return set_str(c->listen, sizeof c->listen, key, v, err);
    if (strcmp(key, "peer") == 0)
        return set_str(c->peer, sizeof c->peer, key, v, err);
    if (strcmp(key, "plugin") == 0)
        return set_str(c->plugin, sizeof c->plugin, key, v, err);
    if (strcmp(key, "plugin_config") == 0 || strcmp(key, "plugin-config") == 0)
        return set_str(c->plugin_config, sizeof c->plugin_config, key, v, err);
    if (strcmp(key, "fallback_plugin") == 0 || strcmp(key, "fallback-plugin") == 0)
        return set_str(c->fallback_plugin, sizeof c->fallback_plugin, key, v, err);
    if (strcmp(key, "store") == 0)
        return set_str(c->store, sizeof c->store, key, v, err);
    if (strcmp(key, "credentials") == 0)
        return set_str(c->credentials, sizeof c->credentials, key, v, err);
    if (strcmp(key, "port_file") == 0 || strcmp(key, "port-file") == 0)
        return set_str(c->port_file, sizeof c->port_file, key, v, err);
    if (strcmp(key, "workers") == 0)
        return set_int(&c->workers, key, v, 1, 256, err);
    if (strcmp(key, "max_calls") == 0 || strcmp(key, "max-calls") == 0)
        return set_int(&c->max_calls, key, v, 1, 1000000, err);
    if (strcmp(key, "max_queue") == 0 || strcmp(key, "max-queue") == 0)
        return set_int(&c->max_queue, key, v, 1, 1000000, err);
    if (strcmp(key, "max_queue_mb") == 0 || strcmp(key, "max-queue-mb") == 0)
        return set_int(&c->max_queue_mb, key, v, 1, 65536, err);
    if (strcmp(key, "max_message_mb") == 0)
        return set_int(&c->max_message_mb, key, v, 1, 1024, err);
    if (strcmp(key, "peer_timeout_ms") == 0)
        return set_int(&c->peer_timeout_ms, key, v, 1, 3600000, err);
    if (strcmp(key, "grace_ms") == 0)
        return set_int(&c->grace_ms, key, v, 0, 3600000, err);
    if (strcmp(key, "batch_window_us") == 0 || strcmp(key, "batch-window-us") == 0)
        return set_int(&c->batch_window_us, key, v, 0, 100000, err);
    if (strcmp(key, "allow_plaintext") == 0 || strcmp(key, "allow-plaintext") == 0)
        return set_int(&c->allow_plaintext, key, v, 0, 1, err);
    if (strcmp(key, "precompute_mb") == 0 || strcmp(key, "precompute-mb") == 0)
        return set_int(&c->precompute_mb, key, v, 0, 65536, err);
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
