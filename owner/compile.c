#include "compile.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "te_exec.h"
#include "te_linear.h"
#include "te_ring.h"

#define FRAC_BITS_MAX 40

te_status te_owner_quantize_rows(const te_layer *L, int weight_bits, int32_t *w, float *scale, te_err *err)
{
    if (weight_bits < 2 || weight_bits > 24)
        return te_errf(err, TE_EINVAL, "weight bits must be in 2..24, got %d", weight_bits);
    double qmax = (double)(((int64_t)1 << (weight_bits - 1)) - 1);
    int64_t oc = L->geom.out_c, len = te_geom_weight_len(&L->geom);
    if (!L->w_float || oc <= 0 || len <= 0 || len % oc)
        return te_errf(err, TE_EINVAL, "layer '%s' has no float weights", L->name);
    int64_t per = len / oc;
    for (int64_t o = 0; o < oc; o++) {
        const float *row = L->w_float + o * per;
        double mx = 0;
        for (int64_t k = 0; k < per; k++) {
            double a = fabs((double)row[k]);
            if (!isfinite(a))
                return te_errf(err, TE_EINVAL, "layer '%s' has a non-finite weight", L->name);
            mx = a > mx ? a : mx;
        }
        scale[o] = mx > 0 ? (float)(mx / qmax) : 1.0f;
        if (!(scale[o] > 0))
            scale[o] = 1.0f; /* denormal underflow */
        for (int64_t k = 0; k < per; k++) {
            double q = round((double)row[k] / (double)scale[o]);
            q = q > qmax ? qmax : q < -qmax ? -qmax : q;
            w[o * per + k] = (int32_t)q;
        }
    }
    return TE_OK;
}

te_status te_owner_quantize_layer(te_layer *L, int weight_bits, te_err *err)
{
    int64_t oc = L->geom.out_c, len = te_geom_weight_len(&L->geom);
    if (oc <= 0 || len <= 0)
        return te_errf(err, TE_EINVAL, "layer '%s' has no float weights", L->name);
    float *scale = malloc((size_t)oc * sizeof *scale);
    int32_t *w = malloc((size_t)len * sizeof *w);
    if (!scale || !w) {
        free(scale);
        free(w);
        return te_errf(err, TE_ENOMEM, "out of memory quantising layer '%s'", L->name);
    }
    te_status st = te_owner_quantize_rows(L, weight_bits, w, scale, err);
    if (st != TE_OK) {
        free(scale);
        free(w);
        return st;
    }
    free(L->w_scale);
    free(L->w);
    L->w_scale = scale;
    L->w = w;
    L->weight_bits = weight_bits;
    return TE_OK;
}

te_status te_owner_quantize(te_model *m, int weight_bits, te_err *err)
{
    for (int i = 0; i < m->n_layers; i++) {
        te_status st = te_owner_quantize_layer(&m->layers[i], weight_bits, err);
        if (st != TE_OK)
            return st;
    }
    return TE_OK;
}

int te_owner_frac_bits(double max_abs_x, int act_bits, int default_frac_bits)
{
    int f = default_frac_bits;
    if (max_abs_x > 0)
        f = act_bits - (int)ceil(log2(max_abs_x));
    return f < 0 ? 0 : f > FRAC_BITS_MAX ? FRAC_BITS_MAX : f;
}

void te_owner_default_bits(te_model *m, const te_owner_options *opt)
{
    for (int i = 0; i < m->n_layers; i++) {
        m->layers[i].frac_bits = opt->default_frac_bits;
        m->layers[i].ring_bits = opt->default_ring_bits;
    }
}

/* ---- calibration callbacks ---- */

typedef struct calib_ctx {
    double *max_x;      /* pass 1: max |x| per layer */
    uint64_t *max_xint; /* pass 2: max |x_int| per layer */
    uint64_t *max_yint; /* pass 2: max |W_int x_int| per layer */
} calib_ctx;

static te_status calib_float(void *vctx, const te_model *m, int layer, const float *x, float *y, te_err *err)
{
    calib_ctx *c = vctx;
    const te_layer *L = &m->layers[layer];
    int64_t n = L->geom.batch * te_geom_in_len(&L->geom);
    double mx = c->max_x[layer];
    for (int64_t k = 0; k < n; k++) {
        double a = fabs((double)x[k]);
        if (!isfinite(a))
            return te_errf(err, TE_EINVAL, "calibration: non-finite input to layer '%s'", L->name);
        mx = a > mx ? a : mx;
    }
    c->max_x[layer] = mx;
    return te_linear_fn_float(NULL, m, layer, x, y, err);
}

static uint64_t mag(uint64_t v)
{
    int64_t s = (int64_t)v;
    return s < 0 ? (uint64_t)0 - v : v;
}

static te_status calib_fixed(void *vctx, const te_model *m, int layer, const float *x, float *y, te_err *err)
{
    calib_ctx *c = vctx;
    const te_layer *L = &m->layers[layer];
    size_t n_in = (size_t)(L->geom.batch * te_geom_in_len(&L->geom));
    size_t n_out = (size_t)(L->geom.batch * te_geom_out_len(&L->geom));
    uint64_t *xr = malloc(n_in * sizeof *xr), *yr = malloc(n_out * sizeof *yr);
    te_status st = TE_OK;
    if (!xr || !yr) {
        st = te_errf(err, TE_ENOMEM, "calibration: out of memory");
        goto out;
    }
    /* 64-bit ring: the exact integer product as long as it fits in 63 bits */
    if ((st = te_layer_encode(L, 64, x, xr, err)) != TE_OK)
        goto out;
    te_linear_ref_ring(&L->geom, L->w, 64, xr, yr);
    for (size_t k = 0; k < n_in; k++) {
        uint64_t a = mag(xr[k]);
        c->max_xint[layer] = a > c->max_xint[layer] ? a : c->max_xint[layer];
    }
    for (size_t k = 0; k < n_out; k++) {
        uint64_t a = mag(yr[k]);
        c->max_yint[layer] = a > c->max_yint[layer] ? a : c->max_yint[layer];
    }
    te_layer_decode(L, 64, yr, y);
out:
    free(xr);
    free(yr);
    return st;
}

static int bit_len(uint64_t v)
{
    return v ? 64 - __builtin_clzll(v) : 0;
}

static te_status run_pass(te_exec *ex, const float *inputs, int64_t n_samples, size_t per, te_linear_fn fn,
                          calib_ctx *c, float *outs, size_t n_out, te_err *err)
{
    for (int64_t s = 0; s < n_samples; s++) {
        te_status st = te_exec_run(ex, inputs + (size_t)s * per, per, fn, c, err);
        if (st != TE_OK) {
            te_err_wrap(err, "calibration sample %lld", (long long)s);
            return st;
        }
        te_exec_outputs_copy(ex, outs + (size_t)s * n_out); /* every output, one after the other */
    }
    return TE_OK;
}

double te_owner_cosine(const float *a, const float *b, size_t n)
{
    double dot = 0, na = 0, nb = 0;
    for (size_t k = 0; k < n; k++) {
        dot += (double)a[k] * b[k];
        na += (double)a[k] * a[k];
        nb += (double)b[k] * b[k];
    }
    if (na == 0 || nb == 0)
        return na == nb ? 1.0 : 0.0;
    return dot / sqrt(na * nb);
}

te_status te_owner_calibrate(te_model *m, const float *inputs, int64_t n_samples, const te_owner_options *opt,
                             const int *act_bits, double *min_cosine, te_err *err)
{
    if (n_samples < 1)
        return te_errf(err, TE_EINVAL, "calibration needs at least one sample");
    if (opt->act_bits < 1 || opt->act_bits > 40 || opt->headroom < 0 || opt->headroom > 32)
        return te_errf(err, TE_EINVAL, "act bits must be in 1..40 and headroom in 0..32");
    size_t per = (size_t)te_shape_numel(&m->values[m->input].shape);
    size_t n_out = (size_t)te_model_outputs_numel(m);
    size_t nl = (size_t)(m->n_layers > 0 ? m->n_layers : 1);
    calib_ctx c = {calloc(nl, sizeof(double)), calloc(nl, sizeof(uint64_t)), calloc(nl, sizeof(uint64_t))};
    float *ref = malloc((size_t)n_samples * n_out * sizeof *ref), *fix = malloc((size_t)n_samples * n_out * sizeof *fix);
    te_exec *ex = NULL;
    te_status st = TE_OK;
    if (!c.max_x || !c.max_xint || !c.max_yint || !ref || !fix) {
        st = te_errf(err, TE_ENOMEM, "calibration: out of memory");
        goto out;
    }
    if ((st = te_exec_new(m, &ex, err)) != TE_OK)
        goto out;
    if ((st = run_pass(ex, inputs, n_samples, per, calib_float, &c, ref, n_out, err)) != TE_OK)
        goto out;
    for (int i = 0; i < m->n_layers; i++) {
        te_layer *L = &m->layers[i];
        L->calib_max_abs_x = c.max_x[i];
        L->frac_bits = te_owner_frac_bits(c.max_x[i], act_bits ? act_bits[i] : opt->act_bits, opt->default_frac_bits);
        L->ring_bits = 64;
    }
    if ((st = run_pass(ex, inputs, n_samples, per, calib_fixed, &c, fix, n_out, err)) != TE_OK)
        goto out;
    if (min_cosine) {
        double mc = 1.0;
        for (int64_t s = 0; s < n_samples; s++) {
            double cs = te_owner_cosine(ref + (size_t)s * n_out, fix + (size_t)s * n_out, n_out);
            mc = cs < mc ? cs : mc;
        }
        *min_cosine = mc;
    }
    for (int i = 0; i < m->n_layers; i++) {
        te_layer *L = &m->layers[i];
        /* The device widens a layer whose ring could overflow by its bound
         * (w_l1[o] * max|x|, te_linear.h), so the ring is sized for the
         * bound on the calibration inputs, not just the values seen. */
        uint64_t mx = c.max_yint[i] > c.max_xint[i] ? c.max_yint[i] : c.max_xint[i];
        for (int64_t o = 0; L->w_l1 && o < L->geom.out_c; o++) {
            uint64_t b = L->w_l1[o] && c.max_xint[i] > UINT64_MAX / L->w_l1[o] ? UINT64_MAX
                                                                                  : L->w_l1[o] * c.max_xint[i];
            mx = b > mx ? b : mx;
        }
        int bits = bit_len(mx) + 1 + opt->headroom;
        L->ring_bits = bits > 64 ? 64 : bits < 2 ? 2 : bits;
        L->calib_max_abs_y = (double)c.max_yint[i];
    }
out:
    te_exec_free(ex);
    free(ref);
    free(fix);
    free(c.max_x);
    free(c.max_xint);
    free(c.max_yint);
    return st;
}
