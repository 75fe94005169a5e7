/* The host's store: what the owner deployed survives restarts. */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "hostd.h"

static te_status mkdir_one(const char *p, te_err *err)
{
    if (mkdir(p, 0700) != 0 && errno != EEXIST)
        return te_errf(err, TE_EIO, "cannot create %s: %s", p, strerror(errno));
    return TE_OK;
}

te_status hostd_store_init(const char *store, te_err *err)
{
    char p[4200];
    te_status st = mkdir_one(store, err);
    if (st != TE_OK)
        return st;
    snprintf(p, sizeof p, "%s/bundles", store);
    if ((st = mkdir_one(p, err)) != TE_OK)
        return st;
    snprintf(p, sizeof p, "%s/devices", store);
    return mkdir_one(p, err);
}

/* Names that are safe as file names. */
static int name_ok(const char *s)
{
    if (!*s || strlen(s) > 63 || strcmp(s, ".") == 0 || strcmp(s, "..") == 0)
        return 0;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') || strchr("-_.", *s)))
            return 0;
    return 1;
}

te_status hostd_store_put_bundle(const char *store, const char *id, const uint8_t *buf, size_t len, te_err *err)
{
    if (!name_ok(id))
        return te_errf(err, TE_EINVAL, "deployment id '%.40s' is not a valid name", id);
    char p[4200];
    snprintf(p, sizeof p, "%s/bundles/%s.bundle", store, id);
    return te_file_write_atomic(p, buf, len, err);
}

te_status hostd_store_put_device(const char *store, const te_device_key *key, te_err *err)
{
    if (!name_ok(key->device_id))
        return te_errf(err, TE_EINVAL, "device id '%.64s' is not a valid name", key->device_id);
    char p[4200];
    snprintf(p, sizeof p, "%s/devices/%s.key", store, key->device_id);
    return te_device_key_write(p, key, err);
}

static int has_suffix(const char *s, const char *suf)
{
    size_t n = strlen(s), m = strlen(suf);
    return n > m && strcmp(s + n - m, suf) == 0;
}

/* Whether path (a file of the store) is new or changed since it was last
 * loaded; records it as loaded when so. */
static int store_changed(hostd_store_state *seen, const char *path, te_err *err, te_status *st)
{
    struct stat sb;
    if (stat(path, &sb) != 0) {
        *st = te_errf(err, TE_EIO, "cannot read %s: %s", path, strerror(errno));
        return 0;
    }
    long long mt = (long long)sb.st_mtim.tv_sec * 1000000000LL + sb.st_mtim.tv_nsec;
    for (int i = 0; i < seen->n; i++) {
        if (strcmp(seen->v[i].path, path) != 0)
            continue;
        if (seen->v[i].mtime_ns == mt && seen->v[i].size == (long long)sb.st_size)
            return 0;
        seen->v[i].mtime_ns = mt;
        seen->v[i].size = (long long)sb.st_size;
        return 1;
    }
    if (seen->n == seen->cap) {
        int cap = seen->cap ? 2 * seen->cap : 16;
        hostd_store_file *v = realloc(seen->v, (size_t)cap * sizeof *v);
        if (!v) {
            *st = te_errf(err, TE_ENOMEM, "out of memory");
            return 0;
        }
        seen->v = v;
        seen->cap = cap;
    }
    hostd_store_file *f = &seen->v[seen->n];
    if (!(f->path = strdup(path))) {
        *st = te_errf(err, TE_ENOMEM, "out of memory");
        return 0;
    }
    seen->n++;
    f->mtime_ns = mt;
    f->size = (long long)sb.st_size;
    return 1;
}

void hostd_store_state_free(hostd_store_state *seen)
{
    for (int i = 0; i < seen->n; i++)
        free(seen->v[i].path);
    free(seen->v);
    memset(seen, 0, sizeof *seen);
}

/* Files of the store loaded and in use (a failed load is marked -1). */
static int count_loaded(const hostd_store_state *seen, const char *suffix)
{
    int n = 0;
    for (int i = 0; i < seen->n; i++)
        n += seen->v[i].mtime_ns != -1 && has_suffix(seen->v[i].path, suffix);
    return n;
}

static te_status store_load(const char *store, te_host *h, hostd_store_state *seen, hostd_store_counts *n,
                            te_err *err);

te_status hostd_store_load(const char *store, te_host *h, hostd_store_state *seen, hostd_store_counts *n,
                           te_err *err)
{
    te_status st = store_load(store, h, seen, n, err);
    n->bundles = count_loaded(seen, ".bundle");
    n->devices = count_loaded(seen, ".key");
    return st;
}

static te_status store_load(const char *store, te_host *h, hostd_store_state *seen, hostd_store_counts *n,
                            te_err *err)
{
    memset(n, 0, sizeof *n);
    char dir[4200], p[4500];
    te_status st = TE_OK;
    snprintf(dir, sizeof dir, "%s/bundles", store);
    DIR *d = opendir(dir);
    if (!d)
        return te_errf(err, TE_EIO, "cannot read %s: %s", dir, strerror(errno));
    struct dirent *e;
    while (st == TE_OK && (e = readdir(d)) != NULL) {
        if (!has_suffix(e->d_name, ".bundle"))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (!store_changed(seen, p, err, &st))
            continue;
        if ((st = te_host_deploy_file(h, p, err)) != TE_OK) {
            te_err_wrap(err, "%s", p);
            seen->v[seen->n - 1].mtime_ns = -1; /* not loaded: try again next time */
        } else {
            n->bundles_loaded++;
        }
    }
    closedir(d);
    if (st != TE_OK || te_host_role(h) != TE_ROLE_B)
        return st;
    snprintf(dir, sizeof dir, "%s/devices", store);
    if (!(d = opendir(dir)))
        return te_errf(err, TE_EIO, "cannot read %s: %s", dir, strerror(errno));
    while (st == TE_OK && (e = readdir(d)) != NULL) {
        if (!has_suffix(e->d_name, ".key"))
            continue;
        te_device_key k;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        if (!store_changed(seen, p, err, &st))
            continue;
        if ((st = te_device_key_read(p, &k, err)) == TE_OK && (st = te_host_register_device(h, &k, err)) == TE_OK) {
            n->devices_loaded++;
        } else {
            te_err_wrap(err, "%s", p);
            seen->v[seen->n - 1].mtime_ns = -1;
        }
        memset(&k, 0, sizeof k);
    }
    closedir(d);
    return st;
}

