/* te_linear: reference ring arithmetic, transpose over F_p, encode / decode /
 * verify.  Checked against an independently written reference (scatter form,
 * exact __int128 over signed lifts) and hand-computed values. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>

#include <cmocka.h>

#include "te_linear.h"
#include "te_prf.h"
#include "te_ring.h"

typedef struct rng {
    uint64_t s;
} rng;

static uint64_t rnd(rng *r)
{
    uint64_t z = (r->s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

static int64_t rnd_signed(rng *r, unsigned bits) /* uniform in [-2^(bits-1), 2^(bits-1)) */
{
    return te_ring_to_signed(rnd(r) & te_ring_mask(bits), bits);
}

static int64_t in_len(const te_linear_geom *g)
{
    return g->kind == TE_LIN_FC ? g->in_c : g->in_c * g->in_h * g->in_w;
}
static int64_t out_len(const te_linear_geom *g)
{
    return g->kind == TE_LIN_FC ? g->out_c : g->out_c * g->out_h * g->out_w;
}
static int64_t w_len(const te_linear_geom *g)
{
    return g->kind == TE_LIN_FC ? g->in_c * g->out_c : g->out_c * (g->in_c / g->group) * g->k_h * g->k_w;
}

static te_linear_geom conv(int64_t batch, int64_t in_c, int64_t h, int64_t w, int64_t out_c, int64_t kh, int64_t kw,
                           int64_t sh, int64_t sw, int64_t pt, int64_t pl, int64_t pb, int64_t pr, int64_t dh,
                           int64_t dw, int64_t group)
{
    te_linear_geom g = { TE_LIN_CONV, batch, in_c, h, w, out_c, 0, 0, kh, kw, sh, sw, pt, pl, pb, pr, dh, dw, group };
    g.out_h = (h + pt + pb - dh * (kh - 1) - 1) / sh + 1;
    g.out_w = (w + pl + pr - dw * (kw - 1) - 1) / sw + 1;
    return g;
}

static te_linear_geom fc(int64_t rows, int64_t k, int64_t n)
{
    te_linear_geom g = { TE_LIN_FC, rows, k, 1, 1, n, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1 };
    return g;
}

/* Independent reference: scatter every input element through every kernel
 * tap onto the outputs it reaches, exact in __int128 over signed values. */
static void indep_int128(const te_linear_geom *g, const int32_t *w, const int64_t *x, __int128 *y)
{
    int64_t ni = in_len(g), no = out_len(g);
    for (int64_t b = 0; b < g->batch; b++) {
        const int64_t *xb = x + b * ni;
        __int128 *yb = y + b * no;
        for (int64_t o = 0; o < no; o++)
            yb[o] = 0;
        if (g->kind == TE_LIN_FC) {
            for (int64_t k = 0; k < g->in_c; k++)
                for (int64_t o = 0; o < g->out_c; o++)
                    yb[o] += (__int128)w[o * g->in_c + k] * xb[k];
            continue;
        }
        int64_t icg = g->in_c / g->group, ocg = g->out_c / g->group;
        for (int64_t ic = 0; ic < g->in_c; ic++) {
            int64_t grp = ic / icg, ci = ic % icg;
            for (int64_t ih = 0; ih < g->in_h; ih++)
                for (int64_t iw = 0; iw < g->in_w; iw++) {
                    int64_t v = xb[(ic * g->in_h + ih) * g->in_w + iw];
                    for (int64_t kh = 0; kh < g->k_h; kh++) {
                        int64_t th = ih + g->pad_t - kh * g->dil_h;
                        if (th < 0 || th % g->stride_h)
                            continue;
                        int64_t oh = th / g->stride_h;
                        if (oh >= g->out_h)
                            continue;
                        for (int64_t kw = 0; kw < g->k_w; kw++) {
                            int64_t tw = iw + g->pad_l - kw * g->dil_w;
                            if (tw < 0 || tw % g->stride_w)
                                continue;
                            int64_t ow = tw / g->stride_w;
                            if (ow >= g->out_w)
                                continue;
                            for (int64_t oo = 0; oo < ocg; oo++) {
                                int64_t oc = grp * ocg + oo;
                                int32_t wv = w[((oc * icg + ci) * g->k_h + kh) * g->k_w + kw];
                                yb[(oc * g->out_h + oh) * g->out_w + ow] += (__int128)wv * v;
                            }
                        }
                    }
                }
        }
    }
}

static const te_linear_geom *test_geoms(size_t *n)
{
    static te_linear_geom gs[16];
    size_t k = 0;
    gs[k++] = conv(1, 3, 7, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1);
    gs[k++] = conv(2, 4, 9, 8, 6, 3, 3, 2, 2, 1, 1, 1, 1, 1, 1, 2);  /* groups 2, stride 2 */
    gs[k++] = conv(1, 5, 8, 8, 5, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 5);  /* depthwise */
    gs[k++] = conv(1, 3, 11, 10, 2, 3, 3, 1, 1, 2, 2, 2, 2, 2, 2, 1); /* dilation 2 */
    gs[k++] = conv(1, 2, 9, 7, 3, 3, 2, 2, 1, 0, 2, 1, 0, 1, 1, 1);  /* asymmetric pads, rectangular kernel */
    gs[k++] = conv(3, 2, 12, 12, 3, 5, 5, 4, 4, 2, 2, 2, 2, 1, 1, 1); /* 5x5 stride 4 */
    gs[k++] = conv(1, 6, 5, 5, 8, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 2);  /* 1x1 grouped */
    gs[k++] = conv(2, 4, 6, 6, 8, 3, 3, 1, 2, 0, 1, 2, 0, 1, 2, 4);  /* mixed everything, channel multiplier 2 */
    gs[k++] = fc(1, 17, 5);
    gs[k++] = fc(3, 9, 4);
    *n = k;
    return gs;
}

static void test_hand_example(void **state)
{
    (void)state;
    /* 3x3 input 1..9, 2x2 kernel [[1,2],[3,4]], pad 1, stride 2. */
    te_linear_geom g = conv(1, 1, 3, 3, 1, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1);
    assert_int_equal(g.out_h, 2);
    assert_int_equal(g.out_w, 2);
    int32_t w[4] = { 1, 2, 3, 4 };
    uint64_t x[9];
    for (int i = 0; i < 9; i++)
        x[i] = (uint64_t)(i + 1);
    uint64_t y[4];
    te_linear_ref_ring(&g, w, 16, x, y);
    assert_int_equal(y[0], 4);
    assert_int_equal(y[1], 18);
    assert_int_equal(y[2], 36);
    assert_int_equal(y[3], 77);
    float wf[4] = { 1, 2, 3, 4 }, xf[9], yf[4];
    for (int i = 0; i < 9; i++)
        xf[i] = (float)(i + 1);
    te_linear_float(&g, wf, xf, yf);
    assert_true(yf[0] == 4.0f && yf[1] == 18.0f && yf[2] == 36.0f && yf[3] == 77.0f);
    /* negative weights wrap: -1 * 1 mod 2^5 = 31 */
    w[3] = -1;
    te_linear_ref_ring(&g, w, 5, x, y);
    assert_int_equal(y[0], 31);
    assert_int_equal(te_linear_out_channel(&g, 3), 0);
    te_linear_geom g2 = conv(2, 2, 4, 4, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1);
    assert_int_equal(te_linear_out_channel(&g2, 15), 0);
    assert_int_equal(te_linear_out_channel(&g2, 16), 1);
    assert_int_equal(te_linear_out_channel(&g2, 47), 2);
    te_linear_geom f = fc(2, 4, 3);
    assert_int_equal(te_linear_out_channel(&f, 2), 2);
}

static void test_ref_ring_vs_int128(void **state)
{
    (void)state;
    rng r = { 42 };
    static const unsigned ls[] = { 1, 5, 8, 16, 31, 32, 33, 47, 63, 64 };
    size_t ng;
    const te_linear_geom *gs = test_geoms(&ng);
    for (size_t gi = 0; gi < ng; gi++) {
        const te_linear_geom *g = &gs[gi];
        size_t ni = (size_t)(in_len(g) * g->batch), no = (size_t)(out_len(g) * g->batch), nw = (size_t)w_len(g);
        int32_t *w = malloc(nw * sizeof *w);
        int64_t *xs = malloc(ni * sizeof *xs);
        uint64_t *xr = malloc(ni * sizeof *xr), *y = malloc(no * sizeof *y);
        __int128 *yi = malloc(no * sizeof *yi);
        assert_non_null(w);
        assert_non_null(xs);
        assert_non_null(xr);
        assert_non_null(y);
        assert_non_null(yi);
        for (size_t li = 0; li < sizeof ls / sizeof ls[0]; li++) {
            unsigned l = ls[li];
            for (size_t i = 0; i < nw; i++)
                w[i] = (int32_t)rnd_signed(&r, li % 3 == 2 ? 32 : 16);
            /* uniform ring elements, lifted to signed for the independent reference */
            for (size_t i = 0; i < ni; i++) {
                xr[i] = rnd(&r) & te_ring_mask(l);
                xs[i] = te_ring_to_signed(xr[i], l);
            }
            te_linear_ref_ring(g, w, l, xr, y);
            indep_int128(g, w, xs, yi);
            for (size_t i = 0; i < no; i++) {
                uint64_t want = (uint64_t)(unsigned __int128)yi[i] & te_ring_mask(l);
                if (y[i] != want)
                    fail_msg("geom %zu l=%u out %zu: got %llu want %llu", gi, l, i, (unsigned long long)y[i],
                             (unsigned long long)want);
            }
        }
        free(w);
        free(xs);
        free(xr);
        free(y);
        free(yi);
    }
}

static void test_float_matches_exact(void **state)
{
    (void)state;
    rng r = { 7 };
    size_t ng;
    const te_linear_geom *gs = test_geoms(&ng);
    for (size_t gi = 0; gi < ng; gi++) {
        const te_linear_geom *g = &gs[gi];
        size_t ni = (size_t)(in_len(g) * g->batch), no = (size_t)(out_len(g) * g->batch), nw = (size_t)w_len(g);
        int32_t *w = malloc(nw * sizeof *w);
        float *wf = malloc(nw * sizeof *wf), *xf = malloc(ni * sizeof *xf), *yf = malloc(no * sizeof *yf);
        int64_t *xs = malloc(ni * sizeof *xs);
        __int128 *yi = malloc(no * sizeof *yi);
        assert_true(w && wf && xf && yf && xs && yi);
        for (size_t i = 0; i < nw; i++) {
            w[i] = (int32_t)rnd_signed(&r, 8);
            wf[i] = (float)w[i];
        }
        for (size_t i = 0; i < ni; i++) {
            xs[i] = rnd_signed(&r, 8);
            xf[i] = (float)xs[i];
        }
        te_linear_float(g, wf, xf, yf);
        indep_int128(g, w, xs, yi);
        for (size_t i = 0; i < no; i++) /* |y| < 2^24: exact in float */
            assert_true(yf[i] == (float)(int64_t)yi[i]);
        free(w);
        free(wf);
        free(xf);
        free(yf);
        free(xs);
        free(yi);
    }
}

static uint64_t modp(__int128 v)
{
    __int128 m = v % (__int128)TE_P61;
    if (m < 0)
        m += TE_P61;
    return (uint64_t)m;
}

static uint64_t mulmodp(uint64_t a, uint64_t b)
{
    return (uint64_t)(((unsigned __int128)a * b) % TE_P61);
}

static void test_transpose_identity(void **state)
{
    (void)state;
    rng r = { 99 };
    size_t ng;
    const te_linear_geom *gs = test_geoms(&ng);
    for (size_t gi = 0; gi < ng; gi++) {
        te_linear_geom g = gs[gi];
        g.batch = 1;
        size_t ni = (size_t)in_len(&g), no = (size_t)out_len(&g), nw = (size_t)w_len(&g);
        int32_t *w = malloc(nw * sizeof *w);
        int64_t *x = malloc(ni * sizeof *x);
        uint64_t *rr = malloc(no * sizeof *rr), *s = malloc(ni * sizeof *s);
        __int128 *y = malloc(no * sizeof *y);
        assert_true(w && x && rr && s && y);
        for (int trial = 0; trial < 3; trial++) {
            for (size_t i = 0; i < nw; i++)
                w[i] = (int32_t)rnd_signed(&r, trial == 2 ? 32 : 12);
            for (size_t i = 0; i < ni; i++)
                x[i] = rnd_signed(&r, trial == 0 ? 20 : 64);
            for (size_t i = 0; i < no; i++)
                rr[i] = rnd(&r) % TE_P61;
            te_linear_transpose_fp(&g, w, rr, s);
            indep_int128(&g, w, x, y);
            uint64_t lhs = 0, rhs = 0;
            for (size_t i = 0; i < no; i++)
                lhs = (lhs + mulmodp(rr[i], modp(y[i]))) % TE_P61;
            for (size_t i = 0; i < ni; i++) {
                assert_true(s[i] < TE_P61);
                rhs = (rhs + mulmodp(s[i], modp(x[i]))) % TE_P61;
            }
            assert_true(lhs == rhs);
            /* and an explicit entry: s[j] for FC is sum_o W[o][j] r[o] */
            if (g.kind == TE_LIN_FC) {
                uint64_t want = 0;
                for (int64_t o = 0; o < g.out_c; o++)
                    want = (want + mulmodp(modp(w[o * g.in_c + 1]), rr[o])) % TE_P61;
                assert_true(s[1] == want);
            }
        }
        free(w);
        free(x);
        free(rr);
        free(s);
        free(y);
    }
}

/* A complete te_layer around a geometry, with random weights and keys. */
typedef struct layer_fix {
    te_layer L;
    int32_t w[4096];
    float scale[64], bias[64];
    uint64_t r[4096], s[4096], l1[64];
} layer_fix;

/* w_l1 and s from the current weights (after a test changes them). */
static void layer_keys(layer_fix *f)
{
    te_linear_row_l1(&f->L.geom, f->w, f->l1);
    te_linear_transpose_fp(&f->L.geom, f->w, f->r, f->s);
}

static void make_layer(layer_fix *f, const te_linear_geom *g, int frac_bits, rng *r)
{
    memset(f, 0, sizeof *f);
    f->L.name = (char *)"conv2";
    f->L.geom = *g;
    f->L.frac_bits = frac_bits;
    f->L.ring_bits = 32;
    f->L.weight_bits = 8;
    f->L.w_scale = f->scale;
    f->L.bias = f->bias;
    f->L.r = f->r;
    f->L.s = f->s;
    f->L.w_l1 = f->l1;
    f->L.w = f->w;
    assert_true(w_len(g) <= 4096 && out_len(g) <= 4096 && in_len(g) <= 4096 && g->out_c <= 64);
    for (int64_t i = 0; i < w_len(g); i++)
        f->w[i] = (int32_t)rnd_signed(r, 8);
    for (int64_t o = 0; o < g->out_c; o++) {
        f->scale[o] = 0.01f * (float)(o + 1);
        f->bias[o] = 0.5f - 0.25f * (float)o;
    }
    for (int64_t i = 0; i < out_len(g); i++)
        f->r[i] = rnd(r) % TE_P61;
    layer_keys(f);
}

static void test_encode_decode_verify(void **state)
{
    (void)state;
    rng r = { 5 };
    static layer_fix f;
    te_linear_geom g = conv(2, 3, 6, 6, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1);
    make_layer(&f, &g, 8, &r);
    const unsigned l = 32;
    size_t ni = (size_t)(in_len(&g) * g.batch), no = (size_t)(out_len(&g) * g.batch);
    float x[2 * 108];
    uint64_t xe[2 * 108], y[2 * 144], y2[2 * 144];
    float out[2 * 144];
    assert_true(ni <= 216 && no <= 288);
    for (size_t i = 0; i < ni; i++)
        x[i] = (float)rnd_signed(&r, 12) / 256.0f; /* exact at frac_bits 8 */
    x[0] = 1.00390625f * 0.5f;                      /* 128.5 / 256 encodes to 129 (half away from zero) */
    x[1] = -x[0];
    te_err err;
    te_err_clear(&err);
    assert_int_equal(te_layer_encode(&f.L, l, x, xe, &err), TE_OK);
    assert_int_equal(xe[0], 129);
    assert_int_equal(xe[1], te_ring_from_signed(-129, l));
    for (size_t i = 2; i < ni; i++)
        assert_int_equal(xe[i], te_ring_from_signed((int64_t)lround((double)x[i] * 256.0), l));

    te_linear_ref_ring(&g, f.w, l, xe, y);
    assert_int_equal(te_layer_verify(&f.L, l, xe, y, &err), TE_OK);

    /* decode: signed(y) * scale * 2^-8 + bias */
    te_layer_decode(&f.L, l, y, out);
    for (size_t i = 0; i < no; i++) {
        int64_t o = ((int64_t)i % out_len(&g)) / 36;
        double want = (double)te_ring_to_signed(y[i], l) * (double)f.scale[o] / 256.0 + (double)f.bias[o];
        assert_true(fabs((double)out[i] - want) <= 1e-6 * (1.0 + fabs(want)));
    }
    /* decode against the float reference: W_int * scale applied to x */
    {
        float wf[108];
        float yf[2 * 144], xq[2 * 108];
        for (int64_t i = 0; i < w_len(&g); i++)
            wf[i] = (float)f.w[i];
        for (size_t i = 0; i < ni; i++) /* the encoded (rounded) input */
            xq[i] = (float)te_ring_to_signed(xe[i], l) / 256.0f;
        te_linear_float(&g, wf, xq, yf);
        for (size_t i = 0; i < no; i++) {
            int64_t o = ((int64_t)i % out_len(&g)) / 36;
            double want = (double)yf[i] * (double)f.scale[o] + (double)f.bias[o];
            assert_true(fabs((double)out[i] - want) <= 1e-4 * (1.0 + fabs(want)));
        }
    }

    /* any single corruption is caught, in either sample */
    for (size_t pos = 0; pos < no; pos += 37) {
        memcpy(y2, y, no * sizeof *y);
        y2[pos] = te_ring_add(y2[pos], 1, l);
        te_err_clear(&err);
        assert_int_equal(te_layer_verify(&f.L, l, xe, y2, &err), TE_EINTEGRITY);
        assert_non_null(strstr(err.msg, "conv2"));
        assert_non_null(strstr(err.msg, "integrity check failed"));
        memcpy(y2, y, no * sizeof *y);
        y2[pos] ^= (uint64_t)1 << (pos % l);
        assert_int_equal(te_layer_verify(&f.L, l, xe, y2, &err), TE_EINTEGRITY);
    }
    /* a corrupted input (x and y inconsistent) is caught too */
    xe[ni - 1] = te_ring_add(xe[ni - 1], 1, l);
    assert_int_equal(te_layer_verify(&f.L, l, xe, y, &err), TE_EINTEGRITY);
}

static void test_verify_catches_ring_overflow(void **state)
{
    (void)state;
    rng r = { 11 };
    static layer_fix f;
    te_linear_geom g = fc(1, 64, 8);
    make_layer(&f, &g, 0, &r);
    for (int i = 0; i < 64 * 8; i++)
        f.w[i] = 100;
    layer_keys(&f);
    uint64_t x[64], y[8];
    for (int i = 0; i < 64; i++)
        x[i] = 100; /* true y = 640000 needs 21 bits: wraps in 16 */
    te_linear_ref_ring(&g, f.w, 16, x, y);
    te_err err;
    assert_int_equal(te_layer_verify(&f.L, 16, x, y, &err), TE_EINTEGRITY);
    te_linear_ref_ring(&g, f.w, 24, x, y);
    assert_int_equal(te_layer_verify(&f.L, 24, x, y, &err), TE_OK);
    /* the device never lets it come to that: its plan widens the ring
     * before sending, from the input alone */
    float xf[64];
    for (int i = 0; i < 64; i++)
        xf[i] = 100.0f;
    f.L.ring_bits = 16;
    te_layer_plan plan;
    assert_int_equal(te_layer_plan_input(&f.L, xf, &plan, &err), TE_OK);
    assert_true(plan.widened && plan.l == 64 && plan.max_abs_x == 100 && plan.bound == 640000);
    f.L.ring_bits = 24; /* 640000 < 2^23: the calibrated ring holds it */
    assert_int_equal(te_layer_plan_input(&f.L, xf, &plan, &err), TE_OK);
    assert_true(!plan.widened && plan.l == 24);
    xf[3] = -8388.0f; /* 8388 * 64 * 100 = 53683200 >= 2^23: widen */
    assert_int_equal(te_layer_plan_input(&f.L, xf, &plan, &err), TE_OK);
    assert_true(plan.widened && plan.l == 64 && plan.max_abs_x == 8388);
}

/* The attack of the security review: at a 62-bit ring or wider, y + k*p
 * still fits and r.(y + k*p) == r.y (mod p) for every r, so the dot product
 * alone accepts it.  The bound refuses it. */
static void test_bound_refuses_multiples_of_p(void **state)
{
    (void)state;
    rng r = { 17 };
    static layer_fix f;
    te_linear_geom g = fc(1, 32, 8);
    make_layer(&f, &g, 0, &r);
    uint64_t x[32], y[8], y2[8];
    for (int i = 0; i < 32; i++)
        x[i] = te_ring_from_signed((int64_t)rnd_signed(&r, 10), 64);
    te_linear_ref_ring(&g, f.w, 64, x, y);
    te_err err;
    assert_int_equal(te_layer_verify(&f.L, 64, x, y, &err), TE_OK);
    for (int k = 0; k < 8; k++)
        for (int sign = -1; sign <= 1; sign += 2) {
            memcpy(y2, y, sizeof y);
            y2[k] += (uint64_t)(int64_t)sign * TE_P61 * (uint64_t)(k % 3 + 1);
            /* negative control: the congruence the old check relied on holds */
            assert_true(te_fp_dot_ring(f.r, y2, 8, 64) == te_fp_dot_ring(f.r, y, 8, 64));
            te_err_clear(&err);
            assert_int_equal(te_layer_verify(&f.L, 64, x, y2, &err), TE_EINTEGRITY);
            assert_non_null(strstr(err.msg, "integrity check failed at linear layer conv2"));
        }
    /* an honest result exactly at the bound passes: all weights and inputs at their extremes */
    for (int i = 0; i < 32 * 8; i++)
        f.w[i] = i % 2 ? 127 : -127;
    layer_keys(&f);
    for (int i = 0; i < 32; i++)
        x[i] = te_ring_from_signed(i % 2 ? 1000 : -1000, 64);
    te_linear_ref_ring(&g, f.w, 64, x, y);
    assert_true(te_ring_to_signed(y[0], 64) == 32 * 127 * 1000);
    assert_int_equal(te_layer_verify(&f.L, 64, x, y, &err), TE_OK);
    y[0] += 1; /* one past it */
    assert_int_equal(te_layer_verify(&f.L, 64, x, y, &err), TE_EINTEGRITY);
}

/* Inputs whose results could reach p/2 cannot be verified: refused before
 * anything is sent, naming the layer; so are non-finite inputs. */
static void test_plan_refuses_unverifiable_inputs(void **state)
{
    (void)state;
    rng r = { 23 };
    static layer_fix f;
    te_linear_geom g = fc(1, 4, 2);
    make_layer(&f, &g, 8, &r);
    f.l1[0] = f.l1[1] = (uint64_t)1 << 40;
    float x[4] = { 1.0f, 2.0f, -3.0f, 0.5f };
    te_layer_plan plan;
    te_err err;
    assert_int_equal(te_layer_plan_input(&f.L, x, &plan, &err), TE_OK); /* 768 * 2^40 < 2^60 */
    assert_true(plan.max_abs_x == 768 && plan.l == 64);
    x[1] = 4096.0f; /* 2^20 * 2^40 = 2^60: not below p/2 */
    te_err_clear(&err);
    assert_int_equal(te_layer_plan_input(&f.L, x, &plan, &err), TE_EOVERFLOW);
    assert_non_null(strstr(err.msg, "conv2"));
    x[1] = NAN;
    te_err_clear(&err);
    assert_int_equal(te_layer_plan_input(&f.L, x, &plan, &err), TE_EOVERFLOW);
    assert_non_null(strstr(err.msg, "not a finite number"));
    x[1] = INFINITY;
    assert_int_equal(te_layer_plan_input(&f.L, x, &plan, &err), TE_EOVERFLOW);
}

static void test_encode_overflow(void **state)
{
    (void)state;
    rng r = { 3 };
    static layer_fix f;
    te_linear_geom g = fc(1, 4, 2);
    make_layer(&f, &g, 8, &r);
    float x[4] = { 0.5f, -127.99f, 127.99f, 1.0f };
    uint64_t xe[4];
    te_err err;
    /* 127.99 * 256 = 32765 fits 16 bits; 128 * 256 = 32768 does not; -128 does */
    assert_int_equal(te_layer_encode(&f.L, 16, x, xe, &err), TE_OK);
    x[2] = 128.0f;
    te_err_clear(&err);
    assert_int_equal(te_layer_encode(&f.L, 16, x, xe, &err), TE_EOVERFLOW);
    assert_non_null(strstr(err.msg, "conv2"));
    x[2] = -128.0f;
    assert_int_equal(te_layer_encode(&f.L, 16, x, xe, &err), TE_OK);
    assert_int_equal(xe[2], 0x8000);
    x[2] = -128.01f;
    assert_int_equal(te_layer_encode(&f.L, 16, x, xe, &err), TE_EOVERFLOW);
    x[2] = 1e30f;
    assert_int_equal(te_layer_encode(&f.L, 64, x, xe, &err), TE_EOVERFLOW);
    x[2] = NAN;
    assert_int_not_equal(te_layer_encode(&f.L, 64, x, xe, &err), TE_OK);
    /* l = 1: only -1 and 0 fit */
    float y1[4] = { 0.0f, -1.0f / 256.0f, 0.0f, 0.0f };
    assert_int_equal(te_layer_encode(&f.L, 1, y1, xe, &err), TE_OK);
    assert_int_equal(xe[1], 1);
    y1[2] = 1.0f / 256.0f;
    assert_int_equal(te_layer_encode(&f.L, 1, y1, xe, &err), TE_EOVERFLOW);
}

/* The device's fused passes against the reference steps they replace:
 * te_layer_encode + te_prf_ring + te_ring_vadd + te_pack, and
 * te_ring_vadd (Z) / te_ring_vsub (share) + te_layer_verify + te_layer_decode. */
static void check_fused(layer_fix *f, unsigned l, const float *x, rng *r)
{
    const te_layer *L = &f->L;
    const te_linear_geom *g = &L->geom;
    size_t nb = (size_t)g->batch, ni = nb * (size_t)in_len(g), no = nb * (size_t)out_len(g);
    uint8_t key[TE_KEY_BYTES];
    for (int i = 0; i < TE_KEY_BYTES; i++)
        key[i] = (uint8_t)(rnd(r) & 0xff);
    uint64_t *xe = malloc(ni * 8), *mk = malloc(ni * 8), *y = malloc(no * 8), *z = malloc(no * 8);
    uint64_t *resp = malloc(no * 8), *share = malloc(no * 8), rhs[8];
    uint8_t *want = malloc(te_pack_bytes(ni, l) + 1), *got = malloc(te_pack_bytes(ni, l) + 1);
    float *dref = malloc(no * sizeof(float)), *dgot = malloc(no * sizeof(float));
    assert_true(xe && mk && y && z && resp && share && want && got && dref && dgot && nb <= 8);
    te_err err;
    assert_int_equal(te_layer_encode(L, l, x, xe, &err), TE_OK);
    uint64_t mx = 0;
    for (size_t i = 0; i < ni; i++) {
        int64_t v = te_ring_to_signed(xe[i], l);
        mx = (uint64_t)llabs((long long)v) > mx ? (uint64_t)llabs((long long)v) : mx;
    }
    te_layer_plan plan;
    if (te_layer_plan_input(L, x, &plan, &err) == TE_OK)
        assert_true(plan.max_abs_x == mx);
    assert_int_equal(te_prf_ring(key, 99, 5, TE_PRF_MASK, l, mk, ni, &err), TE_OK);
    te_ring_vadd(mk, mk, xe, ni, l);
    te_pack(mk, ni, l, want);
    te_prf_stream ps;
    assert_int_equal(te_prf_stream_open(&ps, key, 99, 5, TE_PRF_MASK, &err), TE_OK);
    memset(got, 0xEE, te_pack_bytes(ni, l) + 1);
    assert_int_equal(te_layer_mask(L, l, x, &ps, got, rhs, &err), TE_OK);
    te_prf_stream_close(&ps);
    assert_memory_equal(got, want, te_pack_bytes(ni, l));
    assert_int_equal(got[te_pack_bytes(ni, l)], 0xEE);
    for (size_t b = 0; b < nb; b++)
        assert_true(rhs[b] == te_fp_dot_ring(L->s, xe + b * (size_t)in_len(g), (size_t)in_len(g), l));

    te_linear_ref_ring(g, L->w, l, xe, y);
    assert_int_equal(te_layer_verify(L, l, xe, y, &err), TE_OK);
    te_layer_decode(L, l, y, dref);
    /* relay: EdgeA's answer is y - Z */
    assert_int_equal(te_prf_ring(key, 99, 5, TE_PRF_OUT, l, z, no, &err), TE_OK);
    te_ring_vsub(resp, y, z, no, l);
    assert_int_equal(te_prf_stream_open(&ps, key, 99, 5, TE_PRF_OUT, &err), TE_OK);
    assert_int_equal(te_layer_finish(L, l, resp, &ps, NULL, rhs, mx, dgot, &err), TE_OK);
    te_prf_stream_close(&ps);
    assert_memory_equal(resp, y, no * 8);
    assert_memory_equal(dgot, dref, no * sizeof(float));
    /* relay, on the result as it came, bit-packed (one pass from the
     * response's bytes): the same floats; a batch of samples 5 long (fc)
     * starts its samples inside bytes */
    uint8_t *rp = malloc(te_pack_bytes(no, l) + 1);
    float *dpk = malloc(no * sizeof(float));
    assert_true(rp && dpk);
    te_ring_vsub(resp, y, z, no, l);
    te_pack(resp, no, l, rp);
    assert_int_equal(te_prf_stream_open(&ps, key, 99, 5, TE_PRF_OUT, &err), TE_OK);
    assert_int_equal(te_layer_finish_packed(L, l, rp, &ps, NULL, rhs, mx, dpk, &err), TE_OK);
    te_prf_stream_close(&ps);
    assert_memory_equal(dpk, dref, no * sizeof(float));
    /* negative control: one bit of one element of the packed result flipped
     * is caught by the fused check, and nothing is returned */
    for (int rep = 0; rep < 4; rep++) {
        uint64_t bit = rnd(r) % ((uint64_t)no * l);
        rp[bit >> 3] ^= (uint8_t)(1u << (bit & 7));
        assert_int_equal(te_prf_stream_open(&ps, key, 99, 5, TE_PRF_OUT, &err), TE_OK);
        assert_int_equal(te_layer_finish_packed(L, l, rp, &ps, NULL, rhs, mx, dpk, &err), TE_EINTEGRITY);
        te_prf_stream_close(&ps);
        assert_non_null(strstr(err.msg, "integrity check failed at linear layer conv2"));
        for (size_t i = 0; i < no; i++)
            assert_true(dpk[i] == 0.0f);
        rp[bit >> 3] ^= (uint8_t)(1u << (bit & 7));
    }
    free(rp);
    free(dpk);
    /* mediated: y + share from EdgeA, share from EdgeB */
    for (size_t i = 0; i < no; i++) {
        share[i] = rnd(r) & te_ring_mask(l);
        resp[i] = te_ring_add(y[i], share[i], l);
    }
    assert_int_equal(te_layer_finish(L, l, resp, NULL, share, rhs, mx, dgot, &err), TE_OK);
    assert_memory_equal(dgot, dref, no * sizeof(float));
    /* any wrong element of any sample is caught, and nothing is returned */
    for (int rep = 0; rep < 4; rep++) {
        size_t bad = (size_t)(rnd(r) % no);
        memcpy(z, y, no * 8); /* z: the wrong result */
        z[bad] = te_ring_add(z[bad], (uint64_t)1 << (rnd(r) % l), l);
        te_ring_vadd(resp, z, share, no, l);
        assert_int_equal(te_layer_finish(L, l, resp, NULL, share, rhs, mx, dgot, &err), TE_EINTEGRITY);
        assert_non_null(strstr(err.msg, "integrity check failed at linear layer conv2"));
        for (size_t i = 0; i < no; i++)
            assert_true(dgot[i] == 0.0f);
        assert_int_equal(te_layer_verify(L, l, xe, z, &err), TE_EINTEGRITY);
    }
    free(xe);
    free(mk);
    free(y);
    free(z);
    free(resp);
    free(share);
    free(want);
    free(got);
    free(dref);
    free(dgot);
}

static void test_fused_passes(void **state)
{
    (void)state;
    rng r = { 77 };
    static layer_fix f;
    const te_linear_geom geoms[] = {
        conv(2, 3, 20, 20, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1, 1), /* 1200 inputs per sample: crosses chunks */
        fc(3, 700, 5),
        conv(1, 2, 7, 9, 3, 2, 2, 1, 1, 0, 0, 0, 0, 1, 1, 1),
    };
    const unsigned ls[] = {24, 33, 38, 50, 52, 53, 64}; /* 52, 53: both sides of the narrow encoder */
    const int fracs[] = {8, 0, -850};
    float *x = malloc(4096 * 8 * sizeof *x);
    assert_non_null(x);
    for (size_t gi = 0; gi < sizeof geoms / sizeof geoms[0]; gi++)
        for (size_t li = 0; li < sizeof ls / sizeof ls[0]; li++)
            for (size_t fi = 0; fi < sizeof fracs / sizeof fracs[0]; fi++) {
                make_layer(&f, &geoms[gi], fracs[fi], &r);
                if (gi == 1)
                    f.L.bias = NULL;
                if (gi == 2)
                    f.L.w_scale = NULL;
                size_t ni = (size_t)(geoms[gi].batch * in_len(&geoms[gi]));
                for (size_t i = 0; i < ni; i++) {
                    double u = (double)(rnd(&r) >> 11) * 0x1p-53 * 2.0 - 1.0;
                    x[i] = (float)u;
                    /* exact halves and near-halves after scaling by 2^8 */
                    if (i % 5 == 0)
                        x[i] = (float)((double)((int64_t)(rnd(&r) % 2001) - 1000) + 0.5) / 256.0f;
                    if (i % 7 == 0)
                        x[i] = nextafterf(x[i], i % 2 ? 1.0f : -1.0f);
                }
                check_fused(&f, ls[li], x, &r);
            }
    /* encode errors: the same code and message as te_layer_encode */
    make_layer(&f, &geoms[0], 8, &r);
    size_t ni = (size_t)(geoms[0].batch * in_len(&geoms[0]));
    uint64_t *xe = malloc(ni * 8);
    uint8_t *pk = malloc(te_pack_bytes(ni, 20));
    assert_non_null(xe);
    assert_non_null(pk);
    const float bad[] = {NAN, INFINITY, 1e30f, 2048.0f, -2048.5f, 2047.99f};
    const size_t at[] = {0, 511, 512, 1300, 2399};
    uint8_t key[TE_KEY_BYTES] = {1};
    for (size_t bi = 0; bi < sizeof bad / sizeof bad[0]; bi++)
        for (size_t ai = 0; ai < sizeof at / sizeof at[0]; ai++) {
            for (size_t i = 0; i < ni; i++)
                x[i] = (float)((int)(i % 200) - 100) / 50.0f;
            x[at[ai]] = bad[bi];
            if (ai == 4)
                x[700] = 1e20f; /* an earlier error wins */
            te_err e1, e2;
            uint64_t rhs[2];
            te_status s1 = te_layer_encode(&f.L, 20, x, xe, &e1);
            te_prf_stream ps;
            assert_int_equal(te_prf_stream_open(&ps, key, 1, 1, TE_PRF_MASK, &e2), TE_OK);
            te_status s2 = te_layer_mask(&f.L, 20, x, &ps, pk, rhs, &e2);
            te_prf_stream_close(&ps);
            assert_int_equal(s1, s2);
            if (s1 != TE_OK)
                assert_string_equal(e1.msg, e2.msg);
            else
                assert_true(bad[bi] == 2047.99f);
        }
    free(xe);
    free(pk);
    free(x);
}

/* The mask pass's encoder against te_layer_encode, element by element, at
 * the edges where a shortcut could differ: every exponent of float, exact
 * halves, the values just inside and outside [lo - 0.5, hi + 0.5), -0.0,
 * NaN and infinities, at ring widths 1..64.  A value the reference refuses
 * must be refused with its message; any other must pack to the same bytes. */
static void test_mask_encoder_edges(void **state)
{
    (void)state;
    rng r = { 91 };
    static layer_fix f;
    enum { N = 600 };
    const te_linear_geom g = fc(1, N, 1);
    const unsigned ls[] = {1, 2, 8, 16, 31, 32, 33, 51, 52, 53, 63, 64};
    const int fracs[] = {-3, 0, 5, 20};
    float x[N];
    uint64_t xe[N], mk[N];
    uint8_t want[N * 8 + 8], got[N * 8 + 8];
    uint8_t key[TE_KEY_BYTES] = {7};
    int refused = 0, accepted = 0;
    for (size_t li = 0; li < sizeof ls / sizeof ls[0]; li++)
        for (size_t fi = 0; fi < sizeof fracs / sizeof fracs[0]; fi++) {
            unsigned l = ls[li];
            make_layer(&f, &g, fracs[fi], &r);
            double hi = l >= 64 ? 0x1p63 : ldexp(1.0, (int)l - 1) - 1.0;
            double lo = l >= 64 ? -0x1p63 : -ldexp(1.0, (int)l - 1);
            const double edge[] = {hi + 0.5, lo - 0.5, hi, lo, 0.5, -0.5, 1.5, -1.5, 0.25, -0.25, 0.0};
            for (int trial = 0; trial < 40; trial++) {
                for (size_t i = 0; i < N; i++) {
                    double e = ldexp(edge[i % (sizeof edge / sizeof edge[0])], -fracs[fi]);
                    float v = (float)e;
                    switch ((i + (size_t)trial) % 4) {
                    case 0: v = nextafterf(v, INFINITY); break;
                    case 1: v = nextafterf(v, -INFINITY); break;
                    case 2: break;
                    default: { /* any float bits but NaN and infinities, scaled into range */
                        uint32_t b = (uint32_t)rnd(&r);
                        memcpy(&v, &b, sizeof v);
                        if (!isfinite(v))
                            v = 0.0f;
                        v = ldexpf(v, -(int)(rnd(&r) % 200));
                    }
                    }
                    /* odd trials: only values the ring holds, so that they pass */
                    double d = ldexp((double)v, fracs[fi]);
                    if (trial % 2 && !(d > lo - 0.5 && d < hi + 0.5 && fabs(d) < 0x1p62))
                        v = 0.0f;
                    x[i] = v;
                }
                if (trial == 0)
                    x[0] = -0.0f;
                /* one value a half outside the ring among values inside it */
                double half_out = ldexp(trial % 4 == 1 ? hi + 0.5 : lo - 0.5, -fracs[fi]);
                if (trial % 4 >= 1 && trial % 2 && (double)(float)half_out == half_out)
                    x[rnd(&r) % N] = (float)half_out;
                /* a bad value placed late in a few trials (the rest refused early anyway) */
                if (trial == 39)
                    x[N - 1] = (rnd(&r) & 1) ? NAN : -INFINITY;
                te_err e1, e2;
                te_status s1 = te_layer_encode(&f.L, l, x, xe, &e1);
                te_prf_stream ps;
                uint64_t rhs[1];
                assert_int_equal(te_prf_stream_open(&ps, key, 3, 1, TE_PRF_MASK, &e2), TE_OK);
                te_status s2 = te_layer_mask(&f.L, l, x, &ps, got, rhs, &e2);
                te_prf_stream_close(&ps);
                assert_int_equal(s1, s2);
                if (s1 != TE_OK) {
                    assert_string_equal(e1.msg, e2.msg);
                    refused++;
                    continue;
                }
                accepted++;
                assert_int_equal(te_prf_ring(key, 3, 1, TE_PRF_MASK, l, mk, N, &e1), TE_OK);
                te_ring_vadd(mk, mk, xe, N, l);
                te_pack(mk, N, l, want);
                assert_memory_equal(got, want, te_pack_bytes(N, l));
            }
        }
    /* both outcomes were exercised */
    assert_true(refused > 0 && accepted > 0);
}

/* Input for the sweeps below: n floats whose encodings at frac_bits 8 lie in
 * [-K, K] (l = 1: in {-1, 0}), with fractions and exact halves from 4 bits
 * on, so that with weights in {-1, 0, 1} every honest output fits the ring
 * and the bound stays far below it (K <= 2^(l-3)). */
static void ring_inputs(float *x, size_t n, unsigned l, rng *r)
{
    int64_t K = l >= 61 ? ((int64_t)1 << 58) : l >= 3 ? ((int64_t)1 << (l - 3)) : 1;
    for (size_t i = 0; i < n; i++) {
        int64_t k = l == 1 ? -(int64_t)(rnd(r) & 1) : (int64_t)(rnd(r) % (uint64_t)(2 * K + 1)) - K;
        double u = 0.0;
        if (l >= 4 && k > -K && k < K)
            u = i % 3 == 0 ? (rnd(r) & 1 ? 0.5 : -0.5) : ((double)(rnd(r) >> 11) * 0x1p-53 - 0.5) * 0.99;
        x[i] = (float)(((double)k + u) / 256.0);
    }
}

/* A 1x1 convolution of one input channel into two output channels of n
 * elements each, weights in {-1, 0, 1} ({0, 1} at l = 1). */
static void small_layer(layer_fix *f, int64_t n, unsigned l, rng *r)
{
    const te_linear_geom g = conv(1, 1, 1, n, 2, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1);
    make_layer(f, &g, 8, r);
    for (int o = 0; o < 2; o++)
        f->w[o] = (int32_t)(rnd(r) % (l == 1 ? 2 : 3)) - (l == 1 ? 0 : 1);
    layer_keys(f);
}

/* te_layer_mask refuses x (n elements) with te_layer_encode's status and
 * message. */
static void encode_refused_alike(const te_layer *L, unsigned l, const float *x, size_t n)
{
    uint64_t *xe = malloc(n * 8);
    uint8_t *pk = malloc(te_pack_bytes(n, l));
    assert_true(xe && pk);
    uint8_t key[TE_KEY_BYTES] = { 9 };
    te_err e1, e2;
    uint64_t rhs[1];
    te_prf_stream ps;
    assert_int_equal(te_layer_encode(L, l, x, xe, &e1), TE_EOVERFLOW);
    assert_int_equal(te_prf_stream_open(&ps, key, 1, 1, TE_PRF_MASK, &e2), TE_OK);
    assert_int_equal(te_layer_mask(L, l, x, &ps, pk, rhs, &e2), TE_EOVERFLOW);
    te_prf_stream_close(&ps);
    assert_string_equal(e1.msg, e2.msg);
    free(xe);
    free(pk);
}

/* The fused passes (element kernels, blocks and tails, the narrow and the
 * wide paths) against the reference steps at every ring width 1..64, every
 * length 1..67 and a few long ones (several chunks, a partial last block),
 * with the input and the packed buffers at odd addresses; check_fused also
 * flips bits of the result and expects a refusal. */
static void test_fused_every_width(void **state)
{
    (void)state;
    rng r = { 4242 };
    static layer_fix f;
    static const int64_t longer[] = { 511, 512, 513, 1031, 2048 };
    const size_t n_len = 67 + sizeof longer / sizeof longer[0];
    float *xb = malloc((2048 + 1) * sizeof *xb);
    assert_non_null(xb);
    float *x = xb + 1; /* not 8- or 16-byte aligned */
    for (unsigned l = 1; l <= 64; l++)
        for (size_t li = 0; li < n_len; li++) {
            int64_t n = li < 67 ? (int64_t)li + 1 : longer[li - 67];
            if (li >= 67 && l % 4 != 1 && l != 52 && l != 53 && l != 64)
                continue; /* long lengths at every fourth width and at the edges of the narrow path */
            small_layer(&f, n, l, &r);
            ring_inputs(x, (size_t)n, l, &r);
            check_fused(&f, l, x, &r);
            /* one element outside the ring, anywhere (a block or the tail):
             * refused as te_layer_encode refuses it */
            const float out_of_ring[] = { NAN, -INFINITY, ldexpf(1.0f, (int)l - 1 - 8), -ldexpf(1.0f, (int)l - 8) };
            size_t pos = (size_t)(rnd(&r) % (uint64_t)n);
            x[pos] = out_of_ring[rnd(&r) % 4];
            encode_refused_alike(&f.L, l, x, (size_t)n);
        }
    /* an empty layer: nothing packed, s.x = 0, accepted */
    small_layer(&f, 0, 32, &r);
    uint64_t rhs[1] = { 7 };
    uint8_t pk[1] = { 0xAB };
    te_err err;
    uint8_t key[TE_KEY_BYTES] = { 3 };
    te_prf_stream ps;
    assert_int_equal(te_prf_stream_open(&ps, key, 1, 1, TE_PRF_MASK, &err), TE_OK);
    assert_int_equal(te_layer_mask(&f.L, 32, x, &ps, pk, rhs, &err), TE_OK);
    te_prf_stream_close(&ps);
    assert_true(rhs[0] == 0 && pk[0] == 0xAB);
    assert_int_equal(te_layer_finish_packed(&f.L, 32, pk, NULL, NULL, rhs, 0, x, &err), TE_OK);
    free(xb);
}

/* One output over its channel's bound, at every position, with the r . y
 * == s . x check satisfied (every r_k equal, and the excess taken back from
 * another element of the same sum), so that only the bound can refuse it:
 * te_layer_finish, te_layer_finish_packed (at an odd address) and the
 * reference te_layer_verify must all refuse, and nothing be returned.
 * Widths 4..64 (the bound and the excess fit the ring there). */
static void test_bound_every_position(void **state)
{
    (void)state;
    rng r = { 5151 };
    static layer_fix f;
    static const int64_t lens[] = { 1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 67, 300 };
    float *x = malloc(300 * sizeof *x), *out = malloc(600 * sizeof *out);
    uint64_t *xe = malloc(300 * 8), *y = malloc(600 * 8), *yb = malloc(600 * 8);
    uint8_t *pb = malloc(600 * 8 + 1);
    assert_true(x && out && xe && y && yb && pb);
    uint8_t *pk = pb + 1;
    te_err err;
    int refused = 0;
    for (unsigned l = 4; l <= 64; l++)
        for (size_t li = 0; li < sizeof lens / sizeof lens[0]; li++) {
            const int64_t n = lens[li];
            const size_t no = 2 * (size_t)n;
            small_layer(&f, n, l, &r);
            f.w[0] = 1; /* both channels with a nonzero bound: -1 or 1 */
            f.w[1] = rnd(&r) & 1 ? 1 : -1;
            uint64_t c = rnd(&r) % TE_P61;
            for (size_t k = 0; k < no; k++)
                f.r[k] = c;
            layer_keys(&f);
            ring_inputs(x, (size_t)n, l, &r);
            assert_int_equal(te_layer_encode(&f.L, l, x, xe, &err), TE_OK);
            uint64_t mx = 0;
            for (int64_t i = 0; i < n; i++) {
                int64_t v = te_ring_to_signed(xe[i], l);
                mx = (uint64_t)llabs((long long)v) > mx ? (uint64_t)llabs((long long)v) : mx;
            }
            uint64_t rhs[1] = { te_fp_dot_ring(f.L.s, xe, (size_t)n, l) };
            te_linear_ref_ring(&f.L.geom, f.L.w, l, xe, y);
            /* the honest result passes both ways */
            memcpy(yb, y, no * 8);
            assert_int_equal(te_layer_finish(&f.L, l, yb, NULL, NULL, rhs, mx, out, &err), TE_OK);
            te_pack(y, no, l, pk);
            assert_int_equal(te_layer_finish_packed(&f.L, l, pk, NULL, NULL, rhs, mx, out, &err), TE_OK);
            for (size_t pos = 0; pos < no; pos++) {
                size_t q = (pos + 1) % no, o = pos / (size_t)n;
                int64_t bound = (int64_t)(f.l1[o] * mx);
                int64_t target = rnd(&r) & 1 ? bound + 1 : -bound - 1;
                int64_t d = target - te_ring_to_signed(y[pos], l);
                memcpy(yb, y, no * 8);
                yb[pos] = te_ring_from_signed(target, l);
                yb[q] = te_ring_from_signed(te_ring_to_signed(y[q], l) - d, l);
                /* only the bound can tell: the sum, and so r . y, is unchanged */
                assert_true(te_fp_dot_ring(f.L.r, yb, no, l) == te_fp_dot_ring(f.L.r, y, no, l));
                assert_int_equal(te_layer_verify(&f.L, l, xe, yb, &err), TE_EINTEGRITY);
                te_pack(yb, no, l, pk);
                assert_int_equal(te_layer_finish(&f.L, l, yb, NULL, NULL, rhs, mx, out, &err), TE_EINTEGRITY);
                for (size_t k = 0; k < no; k++)
                    assert_true(out[k] == 0.0f);
                out[0] = 1.0f;
                assert_int_equal(te_layer_finish_packed(&f.L, l, pk, NULL, NULL, rhs, mx, out, &err),
                                 TE_EINTEGRITY);
                assert_non_null(strstr(err.msg, "integrity check failed at linear layer conv2"));
                for (size_t k = 0; k < no; k++)
                    assert_true(out[k] == 0.0f);
                refused++;
            }
        }
    assert_true(refused > 0);
    free(x);
    free(out);
    free(xe);
    free(y);
    free(yb);
    free(pb);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_hand_example),
        cmocka_unit_test(test_ref_ring_vs_int128),
        cmocka_unit_test(test_float_matches_exact),
        cmocka_unit_test(test_transpose_identity),
        cmocka_unit_test(test_encode_decode_verify),
        cmocka_unit_test(test_verify_catches_ring_overflow),
        cmocka_unit_test(test_bound_refuses_multiples_of_p),
        cmocka_unit_test(test_plan_refuses_unverifiable_inputs),
        cmocka_unit_test(test_encode_overflow),
        cmocka_unit_test(test_fused_passes),
        cmocka_unit_test(test_mask_encoder_edges),
        cmocka_unit_test(test_fused_every_width),
        cmocka_unit_test(test_bound_every_position),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
