/* Host side of the plugin ABI: find, dlopen, check and instantiate a plugin. */
#include "te_plugin.h"

#include <dlfcn.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef TE_PLUGIN_BUILD_DIR
#define TE_PLUGIN_BUILD_DIR ""
#endif
#ifndef TE_PLUGIN_INSTALL_DIR
#define TE_PLUGIN_INSTALL_DIR ""
#endif

#define PLUGIN_PATH_MAX 4096

struct te_plugin {
    void *handle;
    const te_plugin_ops *ops; /* &table once checked */
    te_plugin_ops table;      /* the plugin's table as this host knows it: members it lacks are NULL */
    te_plugin_host host;      /* the services handed to create_host */
    te_plugin_log_sink sink;  /* where host.log sends lines (NULL: stderr) */
    void *sink_ctx;
    te_plugin_ctx *ctx;
    char path[PLUGIN_PATH_MAX];
};

/* te_plugin_host.log: to the host's sink, or (errors and warnings only) a
 * line on stderr. */
static void host_log(void *host_ctx, int level, const char *msg)
{
    static const char *const names[] = {"error", "warn", "info", "debug"};
    const te_plugin *p = host_ctx;
    const char *name = p->table.name ? p->table.name : p->path;
    if (level < TE_PLUGIN_LOG_ERROR || level > TE_PLUGIN_LOG_DEBUG)
        level = TE_PLUGIN_LOG_INFO;
    if (p->sink)
        p->sink(p->sink_ctx, level, name, msg);
    else if (level <= TE_PLUGIN_LOG_WARN)
        fprintf(stderr, "compute plugin %s %s: %s\n", name, names[level], msg);
}

static int valid_short_name(const char *name)
{
    if (!*name)
        return 0;
    for (const char *c = name; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              *c == '-' || *c == '_'))
            return 0;
    return 1;
}

/* Append ", path" to tried, cut to its capacity: the error message lists
 * the paths tried as far as they fit (a copy loop rather than snprintf,
 * whose truncation gcc -O2 -Wformat-truncation reports). */
static void note_tried(char *tried, size_t cap, const char *path)
{
    size_t used = strlen(tried);
    for (const char *c = used ? ", " : ""; *c && used + 1 < cap; c++)
        tried[used++] = *c;
    for (const char *c = path; *c && used + 1 < cap; c++)
        tried[used++] = *c;
    tried[used] = '\0';
}

/* Try dir/libtwinedge-plugin-<name>.so; append what was tried to `tried`. */
static int try_dir(const char *dir, size_t dir_len, const char *name, char *out, char *tried, size_t tried_cap)
{
    if (dir_len == 0)
        return 0;
    int n = snprintf(out, PLUGIN_PATH_MAX, "%.*s/libtwinedge-plugin-%s.so", (int)dir_len, dir, name);
    if (n < 0 || n >= PLUGIN_PATH_MAX)
        return 0;
    note_tried(tried, tried_cap, out);
    return access(out, F_OK) == 0;
}

static te_status resolve(const char *name, char *path, te_err *err)
{
    if (strchr(name, '/')) {
        if (strlen(name) >= PLUGIN_PATH_MAX)
            return te_errf(err, TE_EPLUGIN, "compute plugin path too long");
        strcpy(path, name);
        if (access(path, F_OK) != 0)
            return te_errf(err, TE_EPLUGIN, "compute plugin file %s not found", path);
        return TE_OK;
    }
    if (!valid_short_name(name))
        return te_errf(err, TE_EPLUGIN,
                       "invalid compute plugin name '%s' (use a short name like \"cpu\" or a path)", name);
    char tried[TE_ERR_MSG_MAX] = "";
    /* $TWINEDGE_PLUGIN_DIR may hold several directories separated by ':'. */
    const char *env = getenv("TWINEDGE_PLUGIN_DIR");
    if (env) {
        const char *d = env;
        for (;;) {
            const char *end = strchr(d, ':');
            size_t len = end ? (size_t)(end - d) : strlen(d);
            if (try_dir(d, len, name, path, tried, sizeof tried))
                return TE_OK;
            if (!end)
                break;
            d = end + 1;
        }
    }
    /* beside an installed executable: <prefix>/bin/x -> <prefix>/lib/twinedge,
     * so an installation can be moved as a whole */
    char exe[PLUGIN_PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 32);
    if (n > 0) {
        exe[n] = '\0';
        char *slash = strrchr(exe, '/');
        if (slash) {
            strcpy(slash, "/../lib/twinedge");
            if (try_dir(exe, strlen(exe), name, path, tried, sizeof tried))
                return TE_OK;
        }
    }
    const char *fixed[2] = { TE_PLUGIN_BUILD_DIR, TE_PLUGIN_INSTALL_DIR };
    for (int i = 0; i < 2; i++)
        if (try_dir(fixed[i], strlen(fixed[i]), name, path, tried, sizeof tried))
            return TE_OK;
    return te_errf(err, TE_EPLUGIN, "compute plugin '%s' not found; tried: %s", name, tried[0] ? tried : "(no directories)");
}

static const char *missing_fn(const te_plugin_ops *ops)
{
    if (!ops->create && !ops->create_host)
        return "create";
    if (!ops->destroy)
        return "destroy";
    if (!ops->caps)
        return "caps";
    if (!ops->load_layer)
        return "load_layer";
    if (!ops->run)
        return "run";
    if (!ops->release_layer)
        return "release_layer";
    return NULL;
}

te_status te_plugin_open(const char *name_or_path, const char *config, te_plugin **out, te_err *err)
{
    return te_plugin_open_logged(name_or_path, config, NULL, NULL, out, err);
}

te_status te_plugin_open_logged(const char *name_or_path, const char *config, te_plugin_log_sink sink,
                                void *sink_ctx, te_plugin **out, te_err *err)
{
    if (!name_or_path || !out)
        return te_errf(err, TE_EINVAL, "te_plugin_open: missing plugin name or output handle");
    *out = NULL;
    te_plugin *p = calloc(1, sizeof *p);
    if (!p)
        return te_errf(err, TE_ENOMEM, "out of memory loading compute plugin %s", name_or_path);
    p->sink = sink;
    p->sink_ctx = sink_ctx;
    te_status st = resolve(name_or_path, p->path, err);
    if (st != TE_OK)
        goto fail;

    dlerror();
    p->handle = dlopen(p->path, RTLD_NOW | RTLD_LOCAL);
    if (!p->handle) {
        const char *e = dlerror();
        st = te_errf(err, TE_EPLUGIN, "cannot load compute plugin %s: %s", p->path, e ? e : "unknown dlopen error");
        goto fail;
    }
    dlerror();
    void *sym = dlsym(p->handle, TE_PLUGIN_ENTRY_SYMBOL);
    if (!sym) {
        const char *e = dlerror();
        st = te_errf(err, TE_EPLUGIN, "compute plugin %s does not export %s%s%s", p->path, TE_PLUGIN_ENTRY_SYMBOL,
                     e ? ": " : "", e ? e : "");
        goto fail;
    }
    te_plugin_entry_fn entry;
    /* POSIX guarantees data and function pointers convert through dlsym. */
    memcpy(&entry, &sym, sizeof entry);

    const te_plugin_ops *ops = NULL;
    te_err perr;
    te_err_clear(&perr);
    st = entry(TE_PLUGIN_ABI_VERSION, &ops, &perr);
    if (st != TE_OK) {
        st = te_errf(err, TE_EPLUGIN, "compute plugin %s refused to initialise (host plugin ABI version %u): %s",
                     p->path, (unsigned)TE_PLUGIN_ABI_VERSION, perr.msg[0] ? perr.msg : te_status_name(st));
        goto fail;
    }
    if (!ops) {
        st = te_errf(err, TE_EPLUGIN, "compute plugin %s returned no ops table", p->path);
        goto fail;
    }
    /* Only abi_version may be read before it has been checked: the rest of an
     * older table's layout is unknown. */
    if (ops->abi_version != TE_PLUGIN_ABI_VERSION) {
        st = te_errf(err, TE_EPLUGIN,
                     "compute plugin %s was built for plugin ABI version %u but this host speaks version %u: "
                     "refusing to load it (rebuild the plugin against this release)",
                     p->path, (unsigned)ops->abi_version, (unsigned)TE_PLUGIN_ABI_VERSION);
        goto fail;
    }
    /* the members the plugin's table has (struct_size; 0: the 3.0 table), the
     * rest left NULL: a table from an older or newer 3.x header works */
    size_t have = ops->struct_size ? ops->struct_size : sizeof(te_plugin_ops);
    if (have < offsetof(te_plugin_ops, run_f32)) {
        st = te_errf(err, TE_EPLUGIN, "compute plugin %s: its ops table is %zu bytes, shorter than any table of "
                     "plugin ABI version %u: refusing to load it", p->path, have, (unsigned)TE_PLUGIN_ABI_VERSION);
        goto fail;
    }
    memcpy(&p->table, ops, have < sizeof p->table ? have : sizeof p->table);
    p->table.struct_size = (uint32_t)sizeof p->table;
    ops = &p->table;
    const char *missing = missing_fn(ops);
    if (missing) {
        st = te_errf(err, TE_EPLUGIN, "compute plugin %s (ABI version %u) has no '%s' function: refusing to load it",
                     p->path, (unsigned)ops->abi_version, missing);
        goto fail;
    }
    p->ops = ops;
    p->host = (te_plugin_host){.struct_size = (uint32_t)sizeof p->host, .abi_version = TE_PLUGIN_ABI_VERSION,
                               .host_ctx = p, .log = host_log};
    te_err_clear(&perr);
    st = ops->create_host ? ops->create_host(config ? config : "", &p->host, &p->ctx, &perr)
                          : ops->create(config ? config : "", &p->ctx, &perr);
    if (st != TE_OK) {
        p->ctx = NULL;
        te_errf(err, st, "compute plugin %s (%s): %s", ops->name ? ops->name : "?", p->path,
                perr.msg[0] ? perr.msg : te_status_name(st));
        goto fail;
    }
    *out = p;
    return TE_OK;

fail:
    if (p->handle)
        dlclose(p->handle);
    free(p);
    return st;
}

void te_plugin_close(te_plugin *p)
{
    if (!p)
        return;
    if (p->ops && p->ctx)
        p->ops->destroy(p->ctx);
    if (p->handle)
        dlclose(p->handle);
    free(p);
}

const te_plugin_ops *te_plugin_get_ops(const te_plugin *p)
{
    return p ? p->ops : NULL;
}

te_plugin_ctx *te_plugin_get_ctx(const te_plugin *p)
{
    return p ? p->ctx : NULL;
}
