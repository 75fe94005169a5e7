/* A plugin the loader must refuse.  TE_TEST_VARIANT_OLD_ABI: a table laid
 * out as an imaginary ABI version 0 (a different, shorter struct).
 * TE_TEST_VARIANT_NULL_FN: the current ABI with a missing function. */
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
