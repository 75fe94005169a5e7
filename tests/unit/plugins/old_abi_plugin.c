/* Plugins for the loader's tests.  Refused: TE_TEST_VARIANT_OLD_ABI, a
 * table laid out as an imaginary ABI version 0 (a different, shorter
 * struct); TE_TEST_VARIANT_NULL_FN, the current ABI with a missing
 * function; TE_TEST_VARIANT_SHORT, a struct_size too short for any table.
 * Loaded: TE_TEST_VARIANT_GROWTH, a table whose struct_size ends before
 * create_host (an older 3.x header), so the host must call create and
 * not read create_host, which is set here to a function that fails. */
#include <stdlib.h>
#include <string.h>

#include "te_plugin.h"

#ifdef TE_TEST_VARIANT_OLD_ABI
typedef struct ops_v0 {
    uint32_t abi_version;
    const char *name;
    int (*compute)(const void *w, const void *in, void *out);
} ops_v0;

static const ops_v0 table = { 0u, "old", NULL };

__attribute__((visibility("default"))) te_status te_plugin_entry(uint32_t host_abi_version, const te_plugin_ops **ops,
                                                                 te_err *err)
{
    (void)host_abi_version; /* an old plugin does not know to check */
    (void)err;
    *ops = (const te_plugin_ops *)(const void *)&table;
    return TE_OK;
}
#elif defined(TE_TEST_VARIANT_SHORT) || defined(TE_TEST_VARIANT_GROWTH)
struct te_plugin_ctx {
    int unused;
};
static te_status g_create(const char *config, te_plugin_ctx **ctx, te_err *err)
{
    (void)config;
    *ctx = calloc(1, sizeof **ctx);
    return *ctx ? TE_OK : te_plugin_errf(err, TE_ENOMEM, "out of memory");
}
static te_status g_create_host(const char *config, const te_plugin_host *host, te_plugin_ctx **ctx, te_err *err)
{
    (void)config, (void)host, (void)ctx;
    return te_plugin_errf(err, TE_EPLUGIN, "create_host called past struct_size");
}
static void g_destroy(te_plugin_ctx *ctx) { free(ctx); }
static te_status g_caps(te_plugin_ctx *ctx, te_plugin_caps *caps, te_err *err)
{
    (void)ctx, (void)err;
    memset(caps, 0, sizeof *caps);
    return TE_OK;
}
static te_status g_load(te_plugin_ctx *ctx, const te_linear_geom *geom, const int32_t *w, te_plugin_layer **layer,
                        te_err *err)
{
    (void)ctx, (void)geom, (void)w, (void)layer;
    return te_plugin_errf(err, TE_EUNSUPPORTED, "test plugin");
}
static te_status g_run(te_plugin_ctx *ctx, te_plugin_layer *layer, unsigned ring_bits, uint64_t batch,
                       const uint64_t *in, uint64_t *out, te_err *err)
{
    (void)ctx, (void)layer, (void)ring_bits, (void)batch, (void)in, (void)out;
    return te_plugin_errf(err, TE_EUNSUPPORTED, "test plugin");
}
static void g_release(te_plugin_ctx *ctx, te_plugin_layer *layer) { (void)ctx, (void)layer; }

static const te_plugin_ops table = {
    .abi_version = TE_PLUGIN_ABI_VERSION,
#ifdef TE_TEST_VARIANT_SHORT
    .struct_size = (uint32_t)offsetof(te_plugin_ops, create),
#else
    .struct_size = (uint32_t)offsetof(te_plugin_ops, create_host),
#endif
    .name = "growth",
    .create = g_create,
    .destroy = g_destroy,
    .caps = g_caps,
    .load_layer = g_load,
    .run = g_run,
    .release_layer = g_release,
    .create_host = g_create_host,
};

__attribute__((visibility("default"))) te_status te_plugin_entry(uint32_t host_abi_version, const te_plugin_ops **ops,
                                                                 te_err *err)
{
    return te_plugin_offer(&table, host_abi_version, ops, err);
}
#else
static te_status fake_create(const char *config, te_plugin_ctx **ctx, te_err *err)
{
    (void)config;
    (void)err;
    *ctx = NULL;
    return TE_OK;
}

static const te_plugin_ops table = {
    .abi_version = TE_PLUGIN_ABI_VERSION,
    .name = "nullfn",
    .create = fake_create,
    .run = NULL,
};

__attribute__((visibility("default"))) te_status te_plugin_entry(uint32_t host_abi_version, const te_plugin_ops **ops,
                                                                 te_err *err)
{
    (void)host_abi_version;
    (void)err;
    *ops = &table;
    return TE_OK;
}
#endif
