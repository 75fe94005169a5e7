#include "te_linear.h"

#include <math.h>
#include <string.h>

#include "te_ring.h"

/* Per-sample lengths, computed here from the geometry alone so the reference
 * does not depend on anything but te_model.h's documented semantics. */
static int64_t lin_in_len(const te_linear_geom *g)
{
    return g->kind == TE_LIN_FC ? g->in_c : g->in_c * g->in_h * g->in_w;
}

static int64_t lin_out_len(const te_linear_geom *g)
{
    return g->kind == TE_LIN_FC ? g->out_c : g->out_c * g->out_h * g->out_w;
}

int64_t te_linear_out_channel(const te_linear_geom *g, int64_t idx)
{
    if (g->kind == TE_LIN_FC)
        return idx % g->out_c;
    int64_t plane = g->out_h * g->out_w;
    return plane > 0 ? (idx / plane) % g->out_c : 0;
}

/* Visits every (output index, input index, weight index) triple of one
 * sample with a non-padding input: the single definition of the geometry
 * that the reference functions below share.  The callback form keeps
 * the loops in one place; speed is not a goal here. */
typedef void (*lin_visit_fn)(void *st, int64_t o_idx, int64_t i_idx, int64_t w_idx);

static void lin_visit(const te_linear_geom *g, lin_visit_fn fn, void *st)
{
    if (g->kind == TE_LIN_FC) {
        for (int64_t o = 0; o < g->out_c; o++)
            for (int64_t k = 0; k < g->in_c; k++)
                fn(st, o, k, o * g->in_c + k);
        return;
    }
    int64_t icg = g->in_c / g->group, ocg = g->out_c / g->group;
    for (int64_t oc = 0; oc < g->out_c; oc++) {
        int64_t grp = oc / ocg;
        for (int64_t oh = 0; oh < g->out_h; oh++)
            for (int64_t ow = 0; ow < g->out_w; ow++) {
                int64_t o_idx = (oc * g->out_h + oh) * g->out_w + ow;
                for (int64_t ci = 0; ci < icg; ci++) {
                    int64_t ic = grp * icg + ci;
                    for (int64_t kh = 0; kh < g->k_h; kh++) {
                        int64_t ih = oh * g->stride_h - g->pad_t + kh * g->dil_h;
                        if (ih < 0 || ih >= g->in_h)
                            continue;
                        for (int64_t kw = 0; kw < g->k_w; kw++) {
                            int64_t iw = ow * g->stride_w - g->pad_l + kw * g->dil_w;
                            if (iw < 0 || iw >= g->in_w)
                                continue;
                            int64_t i_idx = (ic * g->in_h + ih) * g->in_w + iw;
                            int64_t w_idx = ((oc * icg + ci) * g->k_h + kh) * g->k_w + kw;
                            fn(st, o_idx, i_idx, w_idx);
                        }
                    }
                }
            }
    }
}

typedef struct ring_st {
    const int32_t *w;
    const uint64_t *in;
    uint64_t *out;
} ring_st;

static void ring_visit(void *p, int64_t o, int64_t i, int64_t wi)
{
    ring_st *st = p;
    /* uint64_t wraps mod 2^64, a multiple of 2^l: exact mod 2^l. */
    st->out[o] += (uint64_t)(int64_t)st->w[wi] * st->in[i];
}

void te_linear_ref_ring(const te_linear_geom *g, const int32_t *w, unsigned l,
                        const uint64_t *in, uint64_t *out)
{
    int64_t n_in = lin_in_len(g), n_out = lin_out_len(g);
    uint64_t mask = te_ring_mask(l);
    for (int64_t b = 0; b < g->batch; b++) {
        ring_st st = { w, in + b * n_in, out + b * n_out };
        memset(st.out, 0, (size_t)n_out * sizeof *out);
        lin_visit(g, ring_visit, &st);
        for (int64_t o = 0; o < n_out; o++)
            st.out[o] &= mask;
    }
}

/* lin_visit is output-major: all taps of one output arrive consecutively, so
 * one double accumulator suffices (flushed when the output index changes). */
typedef struct float_st {
    const float *w;
    const float *in;
    float *out;
    int64_t cur;
    double acc;
} float_st;

static void float_flush(float_st *st)
{
    if (st->cur >= 0)
        st->out[st->cur] = (float)st->acc;
}

static void float_visit(void *p, int64_t o, int64_t i, int64_t wi)
{
    float_st *st = p;
    if (o != st->cur) {
        float_flush(st);
        st->cur = o;
        st->acc = 0.0;
    }
    st->acc += (double)st->w[wi] * (double)st->in[i];
}

void te_linear_float(const te_linear_geom *g, const float *w, const float *in, float *out)
{
    int64_t n_in = lin_in_len(g), n_out = lin_out_len(g);
    for (int64_t b = 0; b < g->batch; b++) {
        float_st st = { w, in + b * n_in, out + b * n_out, -1, 0.0 };
        memset(st.out, 0, (size_t)n_out * sizeof *out);
        lin_visit(g, float_visit, &st);
        float_flush(&st);
    }
}

/* a * b mod p for any a, b < 2^64 (2^61 == 1 mod p: fold the high bits). */
static inline uint64_t mulmod_p61(uint64_t a, uint64_t b)
{
    unsigned __int128 v = (unsigned __int128)a * b;
    unsigned __int128 x = (v & TE_P61) + (v >> 61);
    uint64_t y = (uint64_t)(x & TE_P61) + (uint64_t)(x >> 61);
    y = (y & TE_P61) + (y >> 61);
    return y >= TE_P61 ? y - TE_P61 : y;
}

/* Weight-major rather than through lin_visit: the owner runs this on whole
 * models, so it avoids a call per tap.  Same geometry, checked in the tests
 * against r.(W x) == (W^T r).x. */
void te_linear_transpose_fp(const te_linear_geom *g, const int32_t *w, const uint64_t *r, uint64_t *s)
{
    memset(s, 0, (size_t)lin_in_len(g) * sizeof *s);
    if (g->kind == TE_LIN_FC) {
        for (int64_t o = 0; o < g->out_c; o++)
            for (int64_t k = 0; k < g->in_c; k++)
                s[k] = te_fp_add(s[k], mulmod_p61(te_fp_from_signed(w[o * g->in_c + k]), r[o]));
        return;
    }
    int64_t icg = g->in_c / g->group, ocg = g->out_c / g->group;
    for (int64_t oc = 0; oc < g->out_c; oc++) {
        int64_t grp = oc / ocg;
        for (int64_t ci = 0; ci < icg; ci++) {
            int64_t ic = grp * icg + ci;
            for (int64_t kh = 0; kh < g->k_h; kh++)
                for (int64_t kw = 0; kw < g->k_w; kw++) {
                    uint64_t wf = te_fp_from_signed(w[((oc * icg + ci) * g->k_h + kh) * g->k_w + kw]);
                    if (wf == 0)
                        continue;
                    for (int64_t oh = 0; oh < g->out_h; oh++) {
                        int64_t ih = oh * g->stride_h - g->pad_t + kh * g->dil_h;
                        if (ih < 0 || ih >= g->in_h)
                            continue;
                        const uint64_t *ro = r + (oc * g->out_h + oh) * g->out_w;
                        uint64_t *si = s + (ic * g->in_h + ih) * g->in_w;
                        for (int64_t ow = 0; ow < g->out_w; ow++) {
                            int64_t iw = ow * g->stride_w - g->pad_l + kw * g->dil_w;
                            if (iw >= 0 && iw < g->in_w)
                                si[iw] = te_fp_add(si[iw], mulmod_p61(wf, ro[ow]));
                        }
                    }
                }
        }
    }
}

static const char *lname(const te_layer *L)
{
    return L->name ? L->name : "(unnamed)";
}

te_status te_layer_encode(const te_layer *L, unsigned l, const float *x, uint64_t *out, te_err *err)
{
    if (l < 1 || l > 64)
        return te_errf(err, TE_EINVAL, "layer %s: ring width %u out of range 1..64", lname(L), l);
    size_t n = (size_t)(L->geom.batch * lin_in_len(&L->geom));
    int64_t lo = l >= 64 ? INT64_MIN : -((int64_t)1 << (l - 1));
    int64_t hi = l >= 64 ? INT64_MAX : ((int64_t)1 << (l - 1)) - 1;
    int64_t buf[256];
    for (size_t i0 = 0; i0 < n; i0 += 256) {
        size_t m = n - i0 < 256 ? n - i0 : 256;
        te_status st = te_fx_encode(x + i0, m, L->frac_bits, buf, err);
        if (st != TE_OK) {
            te_err_wrap(err, "encoding the input of linear layer %s", lname(L));
            return st;
        }
        for (size_t k = 0; k < m; k++) {
            if (buf[k] < lo || buf[k] > hi)
                return te_errf(err, TE_EOVERFLOW,
                               "input of linear layer %s overflows the ring: element %zu = %g encodes to %lld, "
                               "outside the %u-bit signed range [%lld, %lld] (frac_bits %d)",
                               lname(L), i0 + k, (double)x[i0 + k], (long long)buf[k], l,
                               (long long)lo, (long long)hi, L->frac_bits);
            out[i0 + k] = te_ring_from_signed(buf[k], l);
        }
    }
    return TE_OK;
}

/* The one definition of the decoded value (kept in double, rounded to float
 * once): signed(y) * w_scale[o] * 2^-frac_bits + bias[o]. */
void te_layer_decode(const te_layer *L, unsigned l, const uint64_t *y, float *out)
{
    const te_linear_geom *g = &L->geom;
    int64_t n_out = lin_out_len(g);
    for (int64_t b = 0; b < g->batch; b++)
        for (int64_t i = 0; i < n_out; i++) {
            int64_t o = te_linear_out_channel(g, i);
            double scale = L->w_scale ? (double)L->w_scale[o] : 1.0;
            double v = ldexp((double)te_ring_to_signed(y[b * n_out + i], l) * scale, -L->frac_bits);
            if (L->bias)
                v += (double)L->bias[o];
            out[b * n_out + i] = (float)v;
        }
}

te_status te_layer_verify(const te_layer *L, unsigned l, const uint64_t *x, const uint64_t *y, te_err *err)
{
    const te_linear_geom *g = &L->geom;
    int64_t n_in = lin_in_len(g), n_out = lin_out_len(g);
    if (!L->r || !L->s)
        return te_errf(err, TE_EINVAL, "linear layer %s has no integrity keys: result rejected", lname(L));
    if (l < 1 || l > 64)
        return te_errf(err, TE_EINVAL, "linear layer %s: ring width %u out of range 1..64", lname(L), l);
    for (int64_t b = 0; b < g->batch; b++) {
        uint64_t lhs = te_fp_dot_ring(L->r, y + b * n_out, (size_t)n_out, l);
        uint64_t rhs = te_fp_dot_ring(L->s, x + b * n_in, (size_t)n_in, l);
        if (lhs != rhs) {
            if (g->batch > 1)
                return te_errf(err, TE_EINTEGRITY,
                               "integrity check failed at linear layer %s (sample %lld of %lld): result rejected",
                               lname(L), (long long)b, (long long)g->batch);
            return te_errf(err, TE_EINTEGRITY, "integrity check failed at linear layer %s: result rejected",
                           lname(L));
        }
    }
    return TE_OK;
}
