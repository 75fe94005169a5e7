#include "te_outputs.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "te_npy.h"

te_status te_device_outputs_write(twinedge_device *dev, const char *base, te_err *err)
{
    int n = 0;
    if (twinedge_output_count(dev, &n) != TWINEDGE_OK)
        return te_errf(err, TE_EINVAL, "no device");
    for (int k = 0; k < n; k++) {
        te_shape s;
        memset(&s, 0, sizeof s);
        if (twinedge_output_shape_at(dev, k, s.d, &s.ndim) != TWINEDGE_OK)
            return te_errf(err, TE_EINVAL, "output %d: no shape", k);
        size_t len = (size_t)te_shape_numel(&s);
        float *y = malloc((len ? len : 1) * sizeof *y);
        if (!y)
            return te_errf(err, TE_ENOMEM, "output %d: out of memory", k);
        char path[4200];
        te_npy_output_path(base, k, path, sizeof path);
        te_status st = TE_OK;
        if (twinedge_output_get(dev, k, y, len) != TWINEDGE_OK)
            st = te_errf(err, (te_status)twinedge_errcode(dev), "%s", twinedge_errmsg(dev));
        else
            st = te_npy_write(path, &s, y, err);
        free(y);
        if (st != TE_OK)
            return st;
    }
    return TE_OK;
}
