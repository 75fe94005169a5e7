/* The compute plugin ABI.
 *
 * A plugin is a shared object exporting one symbol, te_plugin_entry.  The
 * host passes the ABI version it was built against; the plugin fills in its
 * ops table (it may refuse an ABI it does not speak).  The host refuses a
 * table whose abi_version differs from its own, so a plugin built against an
 * older header is rejected with a message instead of being called through a
 * mismatched struct.
 *
 * Within one ABI version the table grows by addition only: new members are
 * optional and go at the end, and struct_size (sizeof(te_plugin_ops) as the
 * plugin was compiled; 0 reads as the 3.0 table) tells the host which ones
 * the plugin has, so a new entry needs no version change.  The host hands
 * plugins its services (te_plugin_host: logging) through create_host.
 *
 * Handles are opaque.  Every call that can fail returns a te_status and
 * writes a message into err.  Capabilities are queried, never assumed.
 *
 * The one computation: for a loaded linear layer and ring width l,
 *     out[b][o] = sum_j W[o][j] * in[b][j]   (mod 2^l)
 * over blinded inputs (uniform in Z_2^l): it must be exact for every l in
 * [min_ring_bits, max_ring_bits].  Inputs and outputs are reduced ring
 * elements in uint64_t, laid out as in te_linear.h.
 *
 * The header stands alone: a third-party plugin builds against the
 * installed copy (pkg-config twinedge-plugin, or find_package(twinedge) and
 * twinedge::plugin) with no other twinedge header or library.  Inside the
 * twinedge tree (TE_IN_TREE) the shared types come from te_error.h and
 * te_model.h instead; tests/unit/test_plugin_abi.c checks that both
 * definitions have the same values and layout. */
#ifndef TE_PLUGIN_H
#define TE_PLUGIN_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef TE_IN_TREE
#include "te_error.h"
#include "te_model.h"
#else
typedef enum te_status {
    TE_OK = 0,
    TE_EINVAL = 1,       /* bad argument or bad input data */
    TE_ENOMEM = 2,       /* allocation failed */
    TE_EIO = 3,          /* file or OS error */
    TE_EFORMAT = 4,      /* malformed data */
    TE_EUNSUPPORTED = 5, /* a geometry or feature the plugin does not offer */
    TE_ESHAPE = 6,
    TE_EINTEGRITY = 7,
    TE_EOVERFLOW = 8,
    TE_ETRANSPORT = 9,
    TE_EAUTH = 10,
    TE_EPLUGIN = 11,     /* the plugin failed to load or run */
    TE_ECOUNTER = 12,
    TE_ESERVER = 13
} te_status;

#define TE_ERR_MSG_MAX 512
typedef struct te_err {
    te_status code;
    char msg[TE_ERR_MSG_MAX];
} te_err;

typedef enum te_lin_kind {
    TE_LIN_FC = 1,       /* y[b][o] = sum_k W[o][k] x[b][k]; rows = batch */
    TE_LIN_CONV = 2      /* 2-D convolution, NCHW, weights [out_c][in_c/group][k_h][k_w] */
} te_lin_kind;

/* Geometry of one linear layer.  For FC: in_c = K, out_c = N, all of
 * in_h, in_w, out_h, out_w, k_h, k_w, stride, dil, group = 1 and pads 0;
 * batch = number of rows.  For CONV: batch = N of the NCHW input. */
typedef struct te_linear_geom {
    te_lin_kind kind;
    int64_t batch;
    int64_t in_c, in_h, in_w;
    int64_t out_c, out_h, out_w;
    int64_t k_h, k_w;
    int64_t stride_h, stride_w;
    int64_t pad_t, pad_l, pad_b, pad_r;
    int64_t dil_h, dil_w;
    int64_t group;
} te_linear_geom;
#endif

/* Fill err (may be NULL) with a printf-style message; returns code.  For
 * plugins, which need no twinedge library to report an error. */
static inline te_status te_plugin_errf(te_err *err, te_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline te_status te_plugin_errf(te_err *err, te_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

#define TE_PLUGIN_ABI_VERSION 3u
#define TE_PLUGIN_ENTRY_SYMBOL "te_plugin_entry"

typedef struct te_plugin_caps {
    unsigned min_ring_bits;   /* usually 1 */
    unsigned max_ring_bits;   /* usually 64 */
    uint64_t max_batch;       /* largest batch one run() accepts */
    uint64_t device_memory;   /* bytes available for weights, 0 if unknown */
    char device_name[128];    /* human-readable, e.g. "CPU (AVX2, 2 threads)" */
} te_plugin_caps;

/* What the host offers a plugin (valid from create_host until destroy).
 * Like the ops table it grows by addition: read a member only when
 * struct_size covers it. */
enum { TE_PLUGIN_LOG_ERROR = 0, TE_PLUGIN_LOG_WARN = 1, TE_PLUGIN_LOG_INFO = 2, TE_PLUGIN_LOG_DEBUG = 3 };
typedef struct te_plugin_host {
    uint32_t struct_size;   /* sizeof(te_plugin_host) as the host was compiled */
    uint32_t abi_version;   /* the host's TE_PLUGIN_ABI_VERSION */
    void *host_ctx;         /* pass back to the functions below */
    /* One line into the host's log, attributed to the plugin. */
    void (*log)(void *host_ctx, int level, const char *msg);
} te_plugin_host;

/* host->log with printf formatting (host may be NULL: nothing logged). */
static inline void te_plugin_log(const te_plugin_host *host, int level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static inline void te_plugin_log(const te_plugin_host *host, int level, const char *fmt, ...)
{
    if (!host || host->struct_size < offsetof(te_plugin_host, log) + sizeof host->log || !host->log)
        return;
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    host->log(host->host_ctx, level, line);
}

typedef struct te_plugin_ctx te_plugin_ctx;     /* opaque, per host */
typedef struct te_plugin_layer te_plugin_layer; /* opaque, per loaded layer */

typedef struct te_plugin_ops {
    uint32_t abi_version;     /* TE_PLUGIN_ABI_VERSION the plugin was built with */
    uint32_t struct_size;     /* sizeof(te_plugin_ops) the plugin was built with (0: the 3.0 table) */
    const char *name;         /* "cpu", "opencl" */

    /* config: "key=value" pairs separated by ';' (may be NULL or "").
     * Required unless create_host is given (which the host then calls). */
    te_status (*create)(const char *config, te_plugin_ctx **ctx, te_err *err);
    void (*destroy)(te_plugin_ctx *ctx);
    te_status (*caps)(te_plugin_ctx *ctx, te_plugin_caps *caps, te_err *err);
    /* The plugin copies what it needs from geom and w; the caller keeps
     * ownership of both.  geom->batch is ignored: batch is per run(). */
    te_status (*load_layer)(te_plugin_ctx *ctx, const te_linear_geom *geom, const int32_t *w,
                            te_plugin_layer **layer, te_err *err);
    te_status (*run)(te_plugin_ctx *ctx, te_plugin_layer *layer, unsigned ring_bits, uint64_t batch,
                     const uint64_t *in, uint64_t *out, te_err *err);
    void (*release_layer)(te_plugin_ctx *ctx, te_plugin_layer *layer);

    /* Optional (NULL: not offered).  The no-privacy baseline of the
     * benchmarks: out[b][o] = sum_j float(W[o][j]) * in[b][j] in float32, on
     * plaintext activations.  Hosts serve it only when configured to
     * (te_host_config.allow_plaintext); it is never part of the protocol. */
    te_status (*run_f32)(te_plugin_ctx *ctx, te_plugin_layer *layer, uint64_t batch, const float *in, float *out,
                         te_err *err);

    /* Optional (3.0): create with the host's services; used instead of
     * create when present. */
    te_status (*create_host)(const char *config, const te_plugin_host *host, te_plugin_ctx **ctx, te_err *err);
    /* New optional members go here (the host checks struct_size). */
} te_plugin_ops;

typedef te_status (*te_plugin_entry_fn)(uint32_t host_abi_version, const te_plugin_ops **ops, te_err *err);

/* Exported by every plugin. */
te_status te_plugin_entry(uint32_t host_abi_version, const te_plugin_ops **ops, te_err *err);

/* The body of a plugin's te_plugin_entry: refuse a host that speaks another
 * ABI version, else hand out the plugin's table. */
static inline te_status te_plugin_offer(const te_plugin_ops *table, uint32_t host_abi_version,
                                        const te_plugin_ops **ops, te_err *err)
{
    if (!ops)
        return te_plugin_errf(err, TE_EINVAL, "%s plugin: no ops pointer", table->name);
    *ops = NULL;
    if (host_abi_version != TE_PLUGIN_ABI_VERSION)
        return te_plugin_errf(err, TE_EPLUGIN, "%s plugin speaks plugin ABI version %u, the host version %u", table->name,
                       (unsigned)TE_PLUGIN_ABI_VERSION, (unsigned)host_abi_version);
    *ops = table;
    return TE_OK;
}

/* Host side (twinedge-host; plugins do not call these): dlopen a plugin by path, or by short name ("cpu", "opencl"),
 * resolved as <dir>/libtwinedge-plugin-<name>.so where dir is, in order,
 * $TWINEDGE_PLUGIN_DIR, the build tree, and the installed lib/twinedge. */
typedef struct te_plugin te_plugin;
te_status te_plugin_open(const char *name_or_path, const char *config, te_plugin **p, te_err *err);
/* Where the plugin's te_plugin_log lines go: sink(sink_ctx, level, the
 * plugin's name, line), from any thread the plugin logs on, until
 * te_plugin_close.  te_plugin_open (and a NULL sink) writes its errors and
 * warnings on stderr and drops the rest. */
typedef void (*te_plugin_log_sink)(void *sink_ctx, int level, const char *plugin, const char *msg);
te_status te_plugin_open_logged(const char *name_or_path, const char *config, te_plugin_log_sink sink,
                                void *sink_ctx, te_plugin **p, te_err *err);
void te_plugin_close(te_plugin *p);
const te_plugin_ops *te_plugin_get_ops(const te_plugin *p);
te_plugin_ctx *te_plugin_get_ctx(const te_plugin *p);

#endif
