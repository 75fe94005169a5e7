/* Both edge hosts in one process: the in-process twin of a deployment. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "te_host.h"

te_status te_local_pair_start(const te_local_config *cfg, te_local_pair **out, te_err *err)
{
    *out = NULL;
    te_local_pair *p = calloc(1, sizeof *p);
    if (!p)
        return te_errf(err, TE_ENOMEM, "out of memory");
    char bundle[4096];
    te_device_key key;
    te_status st;
    te_host_config ca = {.role = TE_ROLE_A, .plugin = cfg->plugin_a ? cfg->plugin_a : "cpu", .plugin_config = cfg->plugin_config};
    te_host_config cb = {.role = TE_ROLE_B, .plugin = cfg->plugin_b ? cfg->plugin_b : "cpu", .plugin_config = cfg->plugin_config};
    if ((size_t)snprintf(bundle, sizeof bundle, "%s/edge.bundle", cfg->deploy_dir) >= sizeof bundle) {
        st = te_errf(err, TE_EINVAL, "deployment path too long");
        goto fail;
    }
    if ((st = te_host_new(&ca, &p->a, err)) != TE_OK || (st = te_host_new(&cb, &p->b, err)) != TE_OK)
        goto fail;
    if ((st = te_host_deploy_file(p->a, bundle, err)) != TE_OK || (st = te_host_deploy_file(p->b, bundle, err)) != TE_OK)
        goto fail;
    char device_id[64] = "";
    if (cfg->device_key) {
        if ((st = te_device_key_read(cfg->device_key, &key, err)) != TE_OK)
            goto fail;
        snprintf(device_id, sizeof device_id, "%s", key.device_id);
        st = te_host_register_device(p->b, &key, err);
        memset(&key, 0, sizeof key);
        if (st != TE_OK)
            goto fail;
    }
    te_inproc_config ic = {p->a, p->b, device_id, &p->traffic, cfg->tap, cfg->tap_ctx};
    if ((st = te_inproc_transport_new(&ic, &p->device_link, err)) != TE_OK ||
        (st = te_inproc_peer_new(&ic, &p->peer_link, err)) != TE_OK)
        goto fail;
    te_host_set_peer(p->a, p->peer_link);
    *out = p;
    return TE_OK;
fail:
    te_local_pair_stop(p);
    return st;
}

void te_local_pair_stop(te_local_pair *p)
{
    if (!p)
        return;
    te_transport_free(p->device_link);
    te_transport_free(p->peer_link);
    te_host_free(p->a);
    te_host_free(p->b);
    free(p);
}
