/* The compute plugin ABI.
 *
 * A plugin is a shared object exporting one symbol, te_plugin_entry.  The
 * host passes the ABI version it was built against; the plugin fills in its
 * ops table (it may refuse an ABI it does not speak).  The host refuses a
 * table whose abi_version differs from its own, so a plugin built against an
 * older header is rejected with a message instead of being called through a
 * mismatched struct.
 *
 * Handles are opaque.  Every call that can fail returns a te_status and
 * writes a message into err.  Capabilities are queried, never assumed.
 *
 * The one computation: for a loaded linear layer and ring width l,
 *     out[b][o] = sum_j W[o][j] * in[b][j]   (mod 2^l)
 * over blinded inputs (uniform in Z_2^l): it must be exact for every l in
 * [min_ring_bits, max_ring_bits].  Inputs and outputs are reduced ring
 * elements in uint64_t, laid out as in te_linear.h. */
#ifndef TE_PLUGIN_H
#define TE_PLUGIN_H

#include <stdint.h>
#include <stddef.h>
#include "te_error.h"
#include "te_model.h"

#define TE_PLUGIN_ABI_VERSION 2u
#define TE_PLUGIN_ENTRY_SYMBOL "te_plugin_entry"

typedef struct te_plugin_caps {
    unsigned min_ring_bits;   /* usually 1 */
    unsigned max_ring_bits;   /* usually 64 */
    uint64_t max_batch;       /* largest batch one run() accepts */
    uint64_t device_memory;   /* bytes available for weights, 0 if unknown */
    char device_name[128];    /* human-readable, e.g. "CPU (AVX2, 2 threads)" */
} te_plugin_caps;

typedef struct te_plugin_ctx te_plugin_ctx;     /* opaque, per host */
typedef struct te_plugin_layer te_plugin_layer; /* opaque, per loaded layer */

typedef struct te_plugin_ops {
    uint32_t abi_version;     /* TE_PLUGIN_ABI_VERSION the plugin was built with */
    const char *name;         /* "cpu", "opencl" */

    /* config: "key=value" pairs separated by ';' (may be NULL or ""). */
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
        return te_errf(err, TE_EINVAL, "%s plugin: no ops pointer", table->name);
    *ops = NULL;
    if (host_abi_version != TE_PLUGIN_ABI_VERSION)
        return te_errf(err, TE_EPLUGIN, "%s plugin speaks plugin ABI version %u, the host version %u", table->name,
                       (unsigned)TE_PLUGIN_ABI_VERSION, (unsigned)host_abi_version);
    *ops = table;
    return TE_OK;
}

/* Host side: dlopen a plugin by path, or by short name ("cpu", "opencl"),
 * resolved as <dir>/libtwinedge-plugin-<name>.so where dir is, in order,
 * $TWINEDGE_PLUGIN_DIR, the build tree, and the installed lib/twinedge. */
typedef struct te_plugin te_plugin;
te_status te_plugin_open(const char *name_or_path, const char *config, te_plugin **p, te_err *err);
void te_plugin_close(te_plugin *p);
const te_plugin_ops *te_plugin_get_ops(const te_plugin *p);
te_plugin_ctx *te_plugin_get_ctx(const te_plugin *p);

#endif
