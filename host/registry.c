/* The host's registry: deployments (their layers loaded in the plugin) and
 * device keys (EdgeB), under te_host.lock. */
#include "host_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "te_ring.h"
#include "te_wire.h"

static void set_put(host_layer_set *set)
{
    if (!set || atomic_fetch_sub(&set->refs, 1) != 1)
        return;
    const te_plugin_ops *ops = te_plugin_get_ops(set->h->plugin);
    for (int i = 0; i < set->n; i++)
        if (set->v[i].pl)
            ops->release_layer(te_plugin_get_ctx(set->h->plugin), set->v[i].pl);
    free(set->v);
    free(set);
}

void host_layer_put(host_layer *hl)
{
    set_put(hl->owner);
    hl->owner = NULL;
}

void host_deployment_release(te_host *h, host_deployment *d)
{
    (void)h;
    set_put(d->set);
    d->set = NULL;
    d->n_layers = 0;
}

te_status te_host_deploy(te_host *h, const te_model *edge, te_err *err)
{
    if (strlen(edge->deployment_id) == 0)
        return te_errf(err, TE_EINVAL, "edge bundle has no deployment id");
    host_deployment d;
    memset(&d, 0, sizeof d);
    memcpy(d.id, edge->deployment_id, sizeof d.id);
    d.id[32] = '\0';
    d.n_layers = edge->n_layers;
    host_layer_set *set = d.set = calloc(1, sizeof *set);
    if (set)
        set->v = calloc((size_t)(edge->n_layers ? edge->n_layers : 1), sizeof *set->v);
    if (!set || !set->v) {
        free(set);
        return te_errf(err, TE_ENOMEM, "out of memory");
    }
    set->h = h;
    atomic_init(&set->refs, 1);
    set->n = edge->n_layers;
    const te_plugin_ops *ops = te_plugin_get_ops(h->plugin);
    for (int i = 0; i < edge->n_layers; i++) {
        const te_layer *L = &edge->layers[i];
        if (!L->w) {
            host_deployment_release(h, &d);
            return te_errf(err, TE_EFORMAT, "edge layer %d has no weights", i);
        }
        set->v[i].geom = L->geom;
        set->v[i].owner = set;
        te_status st = ops->load_layer(te_plugin_get_ctx(h->plugin), &L->geom, L->w, &set->v[i].pl, err);
        if (st != TE_OK) {
            host_deployment_release(h, &d);
            return te_err_wrap(err, "loading layer %d (%s) into plugin '%s'", i, L->name ? L->name : "?",
                               ops->name);
        }
    }
    pthread_rwlock_wrlock(&h->lock);
    for (int i = 0; i < h->n_deployments; i++) {
        if (strcmp(h->deployments[i].id, d.id) == 0) {
            host_deployment old = h->deployments[i];
            h->deployments[i] = d;
            pthread_rwlock_unlock(&h->lock);
            host_deployment_release(h, &old); /* freed once its requests are done */
            host_pre_forget(h, d.id, NULL); /* W.M of the old weights */
            host_ahead_forget(h, d.id);
            return TE_OK;
        }
    }
    host_deployment *nd = realloc(h->deployments, (size_t)(h->n_deployments + 1) * sizeof *nd);
    if (!nd) {
        pthread_rwlock_unlock(&h->lock);
        host_deployment_release(h, &d);
        return te_errf(err, TE_ENOMEM, "out of memory");
    }
    h->deployments = nd;
    h->deployments[h->n_deployments++] = d;
    pthread_rwlock_unlock(&h->lock);
    host_pre_forget(h, d.id, NULL);
    host_ahead_forget(h, d.id);
    return TE_OK;
}

te_status te_host_deploy_file(te_host *h, const char *path, te_err *err)
{
    te_model *m = NULL;
    te_status st = te_edge_bundle_read(path, &m, err);
    if (st != TE_OK)
        return st;
    st = te_host_deploy(h, m, err);
    te_model_free(m);
    return st;
}

te_status te_host_register_device(te_host *h, const te_device_key *key, te_err *err)
{
    if (h->role != TE_ROLE_B)
        return te_errf(err, TE_EINVAL, "only EdgeB holds device keys");
    pthread_rwlock_wrlock(&h->lock);
    for (int i = 0; i < h->n_devices; i++) {
        if (strcmp(h->devices[i].device_id, key->device_id) == 0) {
            h->devices[i] = *key;
            pthread_rwlock_unlock(&h->lock);
            host_pre_forget(h, key->deployment_id, key->device_id); /* W.M under the old key */
            return TE_OK;
        }
    }
    te_device_key *nd = realloc(h->devices, (size_t)(h->n_devices + 1) * sizeof *nd);
    if (!nd) {
        pthread_rwlock_unlock(&h->lock);
        return te_errf(err, TE_ENOMEM, "out of memory");
    }
    h->devices = nd;
    h->devices[h->n_devices++] = *key;
    pthread_rwlock_unlock(&h->lock);
    host_pre_forget(h, key->deployment_id, key->device_id);
    return TE_OK;
}

/* Look up a layer of a deployment; fills geom, the plugin handle and the
 * deployment's number of linear layers. */
te_status host_find_layer(te_host *h, const char *deployment, uint32_t layer, host_layer *out, int *n_layers,
                               te_err *err)
{
    te_status st = TE_OK;
    pthread_rwlock_rdlock(&h->lock);
    const host_deployment *d = NULL;
    for (int i = 0; i < h->n_deployments; i++)
        if (deployment && strcmp(h->deployments[i].id, deployment) == 0)
            d = &h->deployments[i];
    if (!d)
        st = te_errf(err, TE_EINVAL, "unknown deployment '%.40s'", deployment ? deployment : "");
    else if (layer >= (uint32_t)d->n_layers)
        st = te_errf(err, TE_EINVAL, "unknown layer %u (deployment has %d linear layers)", layer, d->n_layers);
    else {
        *out = d->set->v[layer];
        atomic_fetch_add(&d->set->refs, 1); /* until host_layer_put */
        *n_layers = d->n_layers;
    }
    pthread_rwlock_unlock(&h->lock);
    return st;
}

te_status host_find_key(te_host *h, const char *deployment, const char *device, uint8_t key[TE_KEY_BYTES],
                          te_err *err)
{
    /* says what to do: a device provisioned without --edge-b fails here */
    te_status st = te_errf(err, TE_EAUTH,
                           "unknown device '%.64s': EdgeB holds no key for it in deployment %.40s (register it: "
                           "twinedge-owner provision --edge-b, or twinedge-owner deploy, or put its key in EdgeB's "
                           "store and send EdgeB SIGHUP)",
                           device ? device : "", deployment ? deployment : "?");
    pthread_rwlock_rdlock(&h->lock);
    for (int i = 0; i < h->n_devices; i++) {
        if (device && strcmp(h->devices[i].device_id, device) == 0 &&
            strcmp(h->devices[i].deployment_id, deployment) == 0) {
            memcpy(key, h->devices[i].key, TE_KEY_BYTES);
            st = TE_OK;
            te_err_clear(err);
            break;
        }
    }
    pthread_rwlock_unlock(&h->lock);
    return st;
}
