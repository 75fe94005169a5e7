#define _XOPEN_SOURCE 700
#include "runlib.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "te_bundle.h"
#include "te_exec.h"

te_status te_reference_fixed(const char *deploy_dir, const float *input, size_t n_in, float *output, size_t n_out,
                             te_err *err)
{
    char path[4096];
    te_model *dev = NULL, *edge = NULL;
    te_exec *ex = NULL;
    te_status st;
    snprintf(path, sizeof path, "%s/device.bundle", deploy_dir);
    if ((st = te_device_bundle_read(path, &dev, err)) != TE_OK)
        goto done;
    snprintf(path, sizeof path, "%s/edge.bundle", deploy_dir);
    if ((st = te_edge_bundle_read(path, &edge, err)) != TE_OK)
        goto done;
    if (edge->n_layers != dev->n_layers || strcmp(edge->deployment_id, dev->deployment_id) != 0) {
        st = te_errf(err, TE_EFORMAT, "device and edge bundles in %s are not from one deployment", deploy_dir);
        goto done;
    }
    for (int i = 0; i < dev->n_layers; i++) {
        /* lend the edge weights to the device graph for this run */
        dev->layers[i].w = edge->layers[i].w;
    }
    if ((st = te_exec_new(dev, &ex, err)) != TE_OK)
        goto done;
    if ((st = te_exec_run(ex, input, n_in, te_linear_fn_fixed, NULL, err)) != TE_OK)
        goto done;
    te_shape shape;
    const float *y = te_exec_output(ex, &shape);
    if ((size_t)te_shape_numel(&shape) != n_out) {
        st = te_errf(err, TE_ESHAPE, "output has %lld elements, caller expects %zu", (long long)te_shape_numel(&shape),
                     n_out);
        goto done;
    }
    memcpy(output, y, n_out * sizeof *output);
done:
    if (dev)
        for (int i = 0; i < dev->n_layers; i++)
            dev->layers[i].w = NULL;
    te_exec_free(ex);
    te_model_free(dev);
    te_model_free(edge);
    return st;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

te_status te_rm_rf(const char *path, te_err *err)
{
    if (access(path, F_OK) != 0)
        return TE_OK;
    if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return te_errf(err, TE_EIO, "cannot remove %s", path);
    return TE_OK;
}
