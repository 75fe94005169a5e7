/* What tests/sdk/test_plugin_abi.c compares between te_plugin.h's own
 * definitions (plugin_abi_standalone.c, built without TE_IN_TREE) and the
 * tree's (te_error.h, te_model.h). */
#ifndef TE_PLUGIN_ABI_LAYOUT_H
#define TE_PLUGIN_ABI_LAYOUT_H
#include <stddef.h>

#define TE_ABI_FIELDS(X)                                                                                         \
    X(TE_OK) X(TE_EINVAL) X(TE_ENOMEM) X(TE_EIO) X(TE_EFORMAT) X(TE_EUNSUPPORTED) X(TE_ESHAPE) X(TE_EINTEGRITY)  \
    X(TE_EOVERFLOW) X(TE_ETRANSPORT) X(TE_EAUTH) X(TE_EPLUGIN) X(TE_ECOUNTER) X(TE_ESERVER) X(TE_ERR_MSG_MAX)   \
    X(sizeof(te_status)) X(sizeof(te_err)) X(offsetof(te_err, msg)) X(TE_LIN_FC) X(TE_LIN_CONV)                 \
    X(sizeof(te_linear_geom)) X(offsetof(te_linear_geom, batch)) X(offsetof(te_linear_geom, in_c))              \
    X(offsetof(te_linear_geom, out_c)) X(offsetof(te_linear_geom, k_h)) X(offsetof(te_linear_geom, stride_h))   \
    X(offsetof(te_linear_geom, pad_t)) X(offsetof(te_linear_geom, pad_r)) X(offsetof(te_linear_geom, dil_h))    \
    X(offsetof(te_linear_geom, group)) X(sizeof(te_plugin_ops)) X(offsetof(te_plugin_ops, run_f32))             \
    X(sizeof(te_plugin_caps)) X(TE_PLUGIN_ABI_VERSION)

/* Writes the values above, in order, into out (at most cap); returns how many. */
size_t te_abi_standalone(long long *out, size_t cap);
size_t te_abi_in_tree(long long *out, size_t cap);
#endif
