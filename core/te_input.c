#include "te_input.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static int same_dims(const int64_t *a, const int64_t *b, int n)
{
    for (int i = 0; i < n; i++)
        if (a[i] != b[i])
            return 0;
    return 1;
}

te_status te_input_check_shape(const char *what, const te_shape *model, const te_shape *given, te_err *err)
{
    if (given->ndim == model->ndim && same_dims(given->d, model->d, model->ndim))
        return TE_OK;
    /* the batch dimension of 1 may be left out */
    if (model->ndim >= 2 && model->d[0] == 1 && given->ndim == model->ndim - 1 &&
        same_dims(given->d, model->d + 1, given->ndim))
        return TE_OK;
    char gs[128], ms[128];
    te_shape_str(given, gs, sizeof gs);
    te_shape_str(model, ms, sizeof ms);
    /* channels last: (N,)H,W,C for the model's N,C,H,W */
    const char *hint = "";
    if (model->ndim == 4) {
        const int64_t *m = model->d;
        int64_t nhwc[4] = {m[0], m[2], m[3], m[1]};
        if ((given->ndim == 4 && same_dims(given->d, nhwc, 4)) ||
            (m[0] == 1 && given->ndim == 3 && same_dims(given->d, nhwc + 1, 3)))
            hint = "; it looks like channels-last (NHWC): transpose it to NCHW (numpy: x.transpose(0, 3, 1, 2))";
    }
    return te_errf(err, TE_ESHAPE, "%s has shape %s, the model's input is %s (NCHW; a leading batch dimension of 1 "
                   "may be left out)%s", what, gs, ms, hint);
}

te_status te_input_check_finite(const char *what, const float *x, size_t n, te_err *err)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i]))
            return te_errf(err, TE_EINVAL, "%s: element %zu is %s; the model needs finite values", what, i,
                           isnan(x[i]) ? "NaN" : x[i] > 0 ? "+inf" : "-inf");
    return TE_OK;
}

te_status te_input_check_dtype(const char *what, const te_npy_info *info, int allow_inexact, char *note,
                               size_t note_cap, te_err *err)
{
    if (note_cap)
        note[0] = '\0';
    if (!info->converted)
        return TE_OK;
    if (info->inexact && !allow_inexact)
        return te_errf(err, TE_EINVAL, "%s has dtype %s and %zu of its values are not exact in float32 (the first at "
                       "index %zu): convert it to float32 yourself (numpy: x.astype(np.float32)) or allow the "
                       "rounding", what, info->descr, info->inexact, info->first_inexact);
    if (note_cap) {
        if (info->inexact)
            snprintf(note, note_cap, "%s has dtype %s: converted to float32, %zu value(s) rounded", what,
                     info->descr, info->inexact);
        else
            snprintf(note, note_cap, "%s has dtype %s: converted to float32 (every value exact)", what, info->descr);
    }
    return TE_OK;
}
