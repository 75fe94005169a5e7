/* te_plugin.h alone, as a third-party plugin sees it (no TE_IN_TREE). */
#ifdef TE_IN_TREE
#error "built with TE_IN_TREE: this file must see te_plugin.h's own definitions"
#endif
#include "te_plugin.h"
#include "plugin_abi_layout.h"

#ifdef TE_ERROR_H
#error "te_plugin.h pulled in te_error.h"
#endif
#ifdef TE_MODEL_H
#error "te_plugin.h pulled in te_model.h"
#endif

size_t te_abi_standalone(long long *out, size_t cap)
{
    size_t n = 0;
#define TE_ABI_PUT(v) if (n < cap) out[n++] = (long long)(v);
    TE_ABI_FIELDS(TE_ABI_PUT)
    return n;
}
