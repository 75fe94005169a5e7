#include "te_linear.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "te_prf.h"
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

void te_linear_row_l1(const te_linear_geom *g, const int32_t *w, uint64_t *l1)
{
    /* weights are output-channel-major, dot_len per channel (FC and conv) */
    int64_t row = te_geom_dot_len(g);
    for (int64_t o = 0; o < g->out_c; o++) {
        uint64_t sum = 0;
        for (int64_t k = 0; k < row; k++) {
            int64_t v = w[o * row + k];
            sum += (uint64_t)(v < 0 ? -v : v);
        }
        l1[o] = sum;
    }
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

/* Weight-major rather than through lin_visit: the owner runs this on whole
 * models, so it avoids a call per tap.  Same geometry, checked in the tests
 * against r.(W x) == (W^T r).x. */
void te_linear_transpose_fp(const te_linear_geom *g, const int32_t *w, const uint64_t *r, uint64_t *s)
{
    memset(s, 0, (size_t)lin_in_len(g) * sizeof *s);
    if (g->kind == TE_LIN_FC) {
        for (int64_t o = 0; o < g->out_c; o++)
            for (int64_t k = 0; k < g->in_c; k++)
                s[k] = te_fp_add(s[k], te_fp_mul(te_fp_from_signed(w[o * g->in_c + k]), r[o]));
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
                                si[iw] = te_fp_add(si[iw], te_fp_mul(wf, ro[ow]));
                        }
                    }
                }
        }
    }
}

#if defined(__GNUC__) || defined(__clang__)
#define TE_ELEM static inline __attribute__((always_inline))
#else
#define TE_ELEM static inline
#endif

/* With GCC on x86-64 and glibc's ifunc the device's element loops are
 * compiled twice, for AVX2 (four doubles a vector instead of SSE2's two)
 * and for the baseline, and the loader picks one for the CPU.  The same C
 * either way, and AVX2 brings no FMA, so the results are the same bits.
 * (clang 14 exports the resolvers of static functions: not used there.)
 * TE_NO_CLONES builds the baseline alone (test_linear_generic runs it). */
#if defined(__has_attribute) && !defined(__clang__)
#if __has_attribute(target_clones) && defined(__x86_64__) && defined(__GLIBC__) && !defined(TE_NO_CLONES)
#define TE_CLONES __attribute__((target_clones("avx2", "default")))
#endif
#endif
#ifndef TE_CLONES
#define TE_CLONES
#endif

static const char *lname(const te_layer *L)
{
    return L->name ? L->name : "(unnamed)";
}

/* The reference encoder over elements [begin, n) of the input, in blocks of
 * 256 counted from begin; out (indexed from 0 = element 0) may be NULL when
 * only the verdict is wanted. */
static te_status encode_ref(const te_layer *L, unsigned l, const float *x, size_t begin, size_t n, uint64_t *out,
                            te_err *err)
{
    int64_t lo = l >= 64 ? INT64_MIN : -((int64_t)1 << (l - 1));
    int64_t hi = l >= 64 ? INT64_MAX : ((int64_t)1 << (l - 1)) - 1;
    int64_t buf[256];
    for (size_t i0 = begin; i0 < n; i0 += 256) {
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
            if (out)
                out[i0 + k] = te_ring_from_signed(buf[k], l);
        }
    }
    return TE_OK;
}

te_status te_layer_encode(const te_layer *L, unsigned l, const float *x, uint64_t *out, te_err *err)
{
    if (l < 1 || l > 64)
        return te_errf(err, TE_EINVAL, "layer %s: ring width %u out of range 1..64", lname(L), l);
    size_t n = (size_t)(L->geom.batch * lin_in_len(&L->geom));
    return encode_ref(L, l, x, 0, n, out, err);
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

/* The error of a failed check on sample b (named only when there are several). */
static te_status integrity_failed(const te_layer *L, int64_t b, te_err *err)
{
    if (L->geom.batch > 1)
        return te_errf(err, TE_EINTEGRITY,
                       "integrity check failed at linear layer %s (sample %lld of %lld): result rejected", lname(L),
                       (long long)b, (long long)L->geom.batch);
    return te_errf(err, TE_EINTEGRITY, "integrity check failed at linear layer %s: result rejected", lname(L));
}

/* a * b, saturated at UINT64_MAX */
static uint64_t mul_sat(uint64_t a, uint64_t b)
{
    return a && b > UINT64_MAX / a ? UINT64_MAX : a * b;
}

/* Output channel o's bound: no honest |y| of that channel exceeds it. */
static uint64_t chan_bound(const te_layer *L, int64_t o, uint64_t max_abs_x)
{
    return mul_sat(L->w_l1[o], max_abs_x);
}

/* The largest w_l1[o] * max_abs_x over the layer's channels (saturated). */
static uint64_t layer_bound(const te_layer *L, uint64_t max_abs_x)
{
    uint64_t b = 0;
    for (int64_t o = 0; o < L->geom.out_c; o++) {
        uint64_t v = chan_bound(L, o, max_abs_x);
        b = v > b ? v : b;
    }
    return b;
}

static te_status unbounded(const te_layer *L, uint64_t max_abs_x, te_err *err)
{
    return te_errf(err, TE_EOVERFLOW,
                   "input of linear layer %s is too large to verify: its largest encoded magnitude %llu times the "
                   "weights' row sums admits results of 2^60 and more, where the check over F_p is no longer sound",
                   lname(L), (unsigned long long)max_abs_x);
}

/* max |x[i]| over n floats, and whether all are finite: eight running
 * maxima, each a select between floats, which GCC vectorises (a float max
 * reduction needs -ffast-math); a NaN never wins a comparison, so
 * non-finite elements are flagged apart. */
TE_CLONES static float max_abs(const float *x, size_t n, int *finite)
{
    float am[8] = {0}, bad[8] = {0};
    size_t i = 0;
    for (; i + 8 <= n; i += 8)
        for (size_t j = 0; j < 8; j++) {
            float a = fabsf(x[i + j]);
            am[j] = a > am[j] ? a : am[j];
            bad[j] = a <= FLT_MAX ? bad[j] : 1.0f; /* false for NaN and infinities */
        }
    for (; i < n; i++) {
        float a = fabsf(x[i]);
        am[0] = a > am[0] ? a : am[0];
        bad[0] = a <= FLT_MAX ? bad[0] : 1.0f;
    }
    float amax = 0.0f;
    *finite = 1;
    for (size_t j = 0; j < 8; j++) {
        amax = am[j] > amax ? am[j] : amax;
        *finite &= bad[j] == 0.0f;
    }
    return amax;
}

te_status te_layer_plan_input(const te_layer *L, const float *x, te_layer_plan *plan, te_err *err)
{
    memset(plan, 0, sizeof *plan);
    if (!L->w_l1)
        return te_errf(err, TE_EINVAL, "linear layer %s has no weight bounds: result could not be verified",
                       lname(L));
    const size_t n = (size_t)(L->geom.batch * lin_in_len(&L->geom));
    int finite;
    float amax = max_abs(x, n, &finite);
    if (!finite) {
        for (size_t k = 0; k < n; k++)
            if (!isfinite(x[k]))
                return te_errf(err, TE_EOVERFLOW, "input of linear layer %s: element %zu is %g, not a finite number",
                               lname(L), k, (double)x[k]);
    }
    /* rounding is monotone: the largest |round(x * 2^f)| is round(max|x| * 2^f) */
    double m = round(ldexp((double)amax, L->frac_bits));
    if (m > (double)TE_BOUND_MAX)
        return unbounded(L, UINT64_MAX, err);
    plan->max_abs_x = (uint64_t)m;
    plan->bound = layer_bound(L, plan->max_abs_x);
    if (plan->bound > TE_BOUND_MAX)
        return unbounded(L, plan->max_abs_x, err);
    /* The calibrated ring holds x and every honest y iff both stay within
     * its signed range; else widen to 64 bits (bound < 2^60 fits). */
    unsigned l = (unsigned)L->ring_bits;
    uint64_t top = l >= 64 ? (uint64_t)INT64_MAX : ((uint64_t)1 << (l - 1)) - 1;
    plan->widened = l < 64 && (plan->max_abs_x > top || plan->bound > top);
    plan->l = plan->widened ? 64 : l;
    return TE_OK;
}

/* Whether some lifted element of y[0..n) of channel o lies outside the
 * bound (branch-free, so that it vectorises). */
static int out_of_bound(const int64_t *y, size_t n, uint64_t bound)
{
#ifdef TE_NEGCTL_NO_BOUND
    /* the negative-control build of the attack tests: the old check */
    (void)y, (void)n, (void)bound;
    return 0;
#else
    int bad = 0;
    for (size_t k = 0; k < n; k++)
        bad |= (uint64_t)y[k] + bound > 2 * bound; /* |y| > bound; 2 * bound < 2^61 when it matters */
    return bad;
#endif
}

te_status te_layer_verify(const te_layer *L, unsigned l, const uint64_t *x, const uint64_t *y, te_err *err)
{
    const te_linear_geom *g = &L->geom;
    int64_t n_in = lin_in_len(g), n_out = lin_out_len(g);
    if (!L->r || !L->s || !L->w_l1)
        return te_errf(err, TE_EINVAL, "linear layer %s has no integrity keys: result rejected", lname(L));
    if (l < 1 || l > 64)
        return te_errf(err, TE_EINVAL, "linear layer %s: ring width %u out of range 1..64", lname(L), l);
    uint64_t max_abs_x = 0;
    for (int64_t i = 0; i < g->batch * n_in; i++) {
        int64_t v = te_ring_to_signed(x[i], l);
        uint64_t a = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
        max_abs_x = a > max_abs_x ? a : max_abs_x;
    }
    if (layer_bound(L, max_abs_x) > TE_BOUND_MAX)
        return unbounded(L, max_abs_x, err);
    for (int64_t b = 0; b < g->batch; b++) {
        for (int64_t k = 0; k < n_out; k++) {
            int64_t v = te_ring_to_signed(y[b * n_out + k], l);
            if (out_of_bound(&v, 1, chan_bound(L, te_linear_out_channel(g, k), max_abs_x)))
                return integrity_failed(L, b, err);
        }
        uint64_t lhs = te_fp_dot_ring(L->r, y + b * n_out, (size_t)n_out, l);
        uint64_t rhs = te_fp_dot_ring(L->s, x + b * n_in, (size_t)n_in, l);
        if (lhs != rhs)
            return integrity_failed(L, b, err);
    }
    return TE_OK;
}

/* ---- the device's fused passes ----
 *
 * Both passes walk the layer in chunks of TE_FUSE_CHUNK elements that stay
 * in L1 between their steps.  The chunk is a multiple of 256 (the reference
 * encoder's block, so an error is reported exactly as te_layer_encode reports
 * it) and of 8 (eight l-bit elements are l whole bytes, so each chunk packs
 * on its own at byte offset chunk_start / 8 * l). */
#define TE_FUSE_CHUNK 512

/* x * 2^f equals ldexp(x, f) exactly for every float x when no result is
 * subnormal or infinite: |f| <= 800 keeps every float (|x| in [2^-149,
 * 2^128]) and every decode product (|y * scale| in [2^-149, 2^191]) normal. */
#define TE_FAST_EXP 800

/* round(x[i] * 2^f) as te_fx_encode computes it (round half away from
 * zero), for |f| <= TE_FAST_EXP.  Returns nonzero if some element is not
 * finite, not below 2^62 in magnitude, or outside [lo, hi]; out is then
 * garbage.  Branch-free so that it vectorises. */
static int encode_fast(const float *x, size_t n, double scale, int64_t lo, int64_t hi, int64_t *out)
{
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = (double)x[i] * scale;
        int ok = fabs(d) < 0x1p62; /* false for NaN */
        double dd = ok ? d : 0.0;
        int64_t t = (int64_t)dd;   /* trunc(d): exact, |d| < 2^62 */
        double fr = dd - (double)t; /* exact: trunc(d) is a double */
        int64_t v = t + (fr >= 0.5) - (fr <= -0.5);
        bad |= !ok | (v < lo) | (v > hi);
        out[i] = v;
    }
    return bad;
}

/* ---- exact element kernels for rings of at most 52 bits ----
 *
 * Every value they handle is an integer of magnitude at most 2^51, and
 * for those the conversions between int64 and double go through the bits
 * of TE_MAGIC = 1.5 * 2^52: M + v lies in [2^52, 2^53), where doubles are
 * exactly the integers, so bits(M + v) - bits(M) = v, and adding M to a
 * double d rounds d to the nearest integer, ties to even.  Only 64-bit
 * integer adds, logic and double arithmetic remain, which the compilers
 * vectorise (packed int64 <-> double conversions are not in SSE2 or NEON
 * before ARMv8).  The loops take blocks of TE_BLOCK elements so that even
 * GCC's -O2 cost model vectorises them, and a scalar tail of the same
 * element function. */
#define TE_MAGIC 0x1.8p52
#define TE_MAGIC_BITS ((uint64_t)0x4338000000000000ULL)
#define TE_BLOCK 8
/* The rounding by adding M needs double arithmetic evaluated in double (not
 * x87's extended precision); elsewhere the generic loops run. */
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
#define TE_DOUBLE_EVAL 1
#else
#define TE_DOUBLE_EVAL 0
#endif


TE_ELEM uint64_t dbits(double d)
{
    uint64_t b;
    memcpy(&b, &d, sizeof b);
    return b;
}

TE_ELEM double bitsd(uint64_t b)
{
    double d;
    memcpy(&d, &b, sizeof d);
    return d;
}

/* One element of the mask pass for l <= 52: v = round(x * 2^f) (half away
 * from zero) and a = v + mask mod 2^l; returns nonzero when x * 2^f is
 * outside (lo - 0.5, hi + 0.5) or NaN (round half away from zero lands in
 * [lo, hi] iff it is inside, both bounds exact below 2^53).  r, the nearest
 * integer (ties to even), differs from the wanted rounding only at exact
 * ties on the side towards zero: fr = d - r is exact (|fr| <= 0.5, d and r
 * within a factor of 2 or r = 0), and such a tie (fr = 0.5 towards d's
 * sign) moves r one away from zero.  Conditions are selects between
 * doubles, the form GCC 12 if-converts and vectorises. */
TE_ELEM uint64_t mask_elem(double d, double dlo, double dhi, uint64_t mask, uint64_t m, int64_t *v, uint64_t *a)
{
    /* no select keeps NaN or huge d out: its v and a are garbage but
     * computed without undefined behaviour, and the element is refused */
    uint64_t bad = dbits(d > dlo ? 0.0 : 1.0) | dbits(d < dhi ? 0.0 : 1.0); /* NaN fails both */
    double r = (d + TE_MAGIC) - TE_MAGIC;
    double sg = d < 0.0 ? -1.0 : 1.0;
    r += (d - r) * sg == 0.5 ? sg : 0.0;
    uint64_t k = dbits(r + TE_MAGIC) - TE_MAGIC_BITS;
    *v = (int64_t)k;
    *a = (mask + k) & m;
    return bad;
}

/* The mask pass's encoder and mask addition over n elements (l <= 52, f
 * with |f| <= TE_FAST_EXP); nonzero if some element is refused (v and a are
 * then garbage). */
TE_CLONES static uint64_t mask_narrow(const float *restrict x, size_t n, double scale, int64_t lo, int64_t hi,
                                      unsigned l, const uint64_t *restrict mask, int64_t *restrict v,
                                      uint64_t *restrict a)
{
    const double dlo = (double)lo - 0.5, dhi = (double)hi + 0.5;
    const uint64_t m = te_ring_mask(l);
    uint64_t bad = 0;
    size_t i = 0;
    double d[TE_BLOCK]; /* x * 2^f first: a loop mixing floats and 64-bit lanes does not vectorise */
    for (; i + TE_BLOCK <= n; i += TE_BLOCK) {
        for (size_t j = 0; j < TE_BLOCK; j++)
            d[j] = (double)x[i + j] * scale;
        for (size_t j = 0; j < TE_BLOCK; j++)
            bad |= mask_elem(d[j], dlo, dhi, mask[i + j], m, &v[i + j], &a[i + j]);
    }
    for (; i < n; i++)
        bad |= mask_elem((double)x[i] * scale, dlo, dhi, mask[i], m, &v[i], &a[i]);
    return bad;
}

/* One element of the finish pass for l <= 52: y = y + w mod 2^l, lifted to
 * the signed s (into sv) and decoded as te_layer_decode does; returns
 * nonzero when |s| > the bound bd.  u = y ^ 2^(l-1) is s + 2^(l-1) in
 * [0, 2^l), so u + bits(M) - 2^(l-1) are the bits of M + s. */
TE_ELEM uint64_t finish_elem(uint64_t *y, uint64_t w, uint64_t m, uint64_t half, double bd, double scale, double pw,
                             int has_bias, double bv, int64_t *sv, float *out)
{
    uint64_t u = ((*y + w) & m) ^ half;
    *y = u ^ half;
    *sv = (int64_t)(u - half);
    double d = bitsd(u + (TE_MAGIC_BITS - half)) - TE_MAGIC;
    /* the expressions of decode_run's fast path, bias or not (x + 0 would
     * turn -0 into +0) */
    *out = has_bias ? (float)(d * scale * pw + bv) : (float)(d * scale * pw);
    return dbits(fabs(d) > bd ? 1.0 : 0.0); /* a select between doubles vectorises (see mask_elem) */
}

TE_ELEM uint64_t finish_loop(uint64_t *restrict y, const uint64_t *restrict w, size_t n, unsigned l, double bd,
                             double scale, double pw, int has_bias, double bv, int64_t *restrict sv,
                             float *restrict out)
{
    const uint64_t m = te_ring_mask(l), half = (uint64_t)1 << (l - 1);
    uint64_t bad = 0;
    size_t i = 0;
    for (; i + TE_BLOCK <= n; i += TE_BLOCK)
        for (size_t j = i; j < i + TE_BLOCK; j++)
            bad |= finish_elem(&y[j], w[j], m, half, bd, scale, pw, has_bias, bv, &sv[j], &out[j]);
    for (; i < n; i++)
        bad |= finish_elem(&y[i], w[i], m, half, bd, scale, pw, has_bias, bv, &sv[i], &out[i]);
    return bad;
}

/* The finish pass over one run of output channel o (l <= 52, |f| <=
 * TE_FAST_EXP): y = y + w, lifted into sv, decoded with o's scale and bias
 * into out; nonzero if some |y| exceeds bd. */
TE_CLONES static uint64_t finish_narrow(uint64_t *restrict y, const uint64_t *restrict w, size_t n, unsigned l,
                                        double bd, double scale, double pw, const float *bias, int64_t *restrict sv,
                                        float *restrict out)
{
    if (bias)
        return finish_loop(y, w, n, l, bd, scale, pw, 1, (double)*bias, sv, out);
    return finish_loop(y, w, n, l, bd, scale, pw, 0, 0.0, sv, out);
}

/* A channel's bound for finish_narrow, as a double compared with |y| <=
 * 2^51: exact up to 2^52, and any larger bound holds every such y.  The
 * negative-control build of the attack tests (TE_NEGCTL_NO_BOUND) checks
 * nothing, as out_of_bound. */
static double bound_double(uint64_t bound)
{
#ifdef TE_NEGCTL_NO_BOUND
    (void)bound;
    return INFINITY;
#else
    return bound > ((uint64_t)1 << 52) ? 0x1p52 : (double)bound;
#endif
}

te_status te_layer_mask(const te_layer *L, unsigned l, const float *x, te_prf_stream *mask, uint8_t *packed,
                        uint64_t *rhs, te_err *err)
{
    if (l < 1 || l > 64)
        return te_errf(err, TE_EINVAL, "layer %s: ring width %u out of range 1..64", lname(L), l);
    const te_linear_geom *g = &L->geom;
    const size_t n_s = (size_t)lin_in_len(g), n = (size_t)g->batch * n_s;
    const uint64_t m = te_ring_mask(l);
    const int64_t lo = l >= 64 ? INT64_MIN : -((int64_t)1 << (l - 1));
    const int64_t hi = l >= 64 ? INT64_MAX : ((int64_t)1 << (l - 1)) - 1;
    const int fast = L->frac_bits >= -TE_FAST_EXP && L->frac_bits <= TE_FAST_EXP;
    const double scale = fast ? ldexp(1.0, L->frac_bits) : 1.0;
    for (int64_t b = 0; b < g->batch; b++)
        rhs[b] = 0;
    int64_t v[TE_FUSE_CHUNK];
    uint64_t w[TE_FUSE_CHUNK], a[TE_FUSE_CHUNK];
    for (size_t c0 = 0; c0 < n; c0 += TE_FUSE_CHUNK) {
        const size_t cn = n - c0 < TE_FUSE_CHUNK ? n - c0 : TE_FUSE_CHUNK;
        /* M first, so that rings of up to 52 bits encode and add it in one
         * loop (A = x + M into a) */
        te_status st = te_prf_stream_read(mask, w, cn, err);
        if (st != TE_OK)
            return st;
        int added = TE_DOUBLE_EVAL && fast && l <= 52;
        if (!fast || (added ? mask_narrow(x + c0, cn, scale, lo, hi, l, w, v, a)
                            : (uint64_t)encode_fast(x + c0, cn, scale, lo, hi, v))) {
            /* the reference decides and words the error (or, off the fast
             * path, computes the chunk) */
            st = encode_ref(L, l, x + c0, 0, cn, a, err);
            if (st != TE_OK) {
                /* re-run from the chunk's start for the message's element index */
                return encode_ref(L, l, x, c0, n, NULL, err);
            }
            for (size_t k = 0; k < cn; k++)
                v[k] = te_ring_to_signed(a[k], l);
            added = 0;
        }
        if (!added)
            for (size_t k = 0; k < cn; k++)
                a[k] = (w[k] + (uint64_t)v[k]) & m;
        /* rhs = s . x per sample (x fits in l bits signed) */
        if (L->s) {
            for (size_t k = 0; k < cn;) {
                size_t i = c0 + k, b = i / n_s, j = i % n_s;
                size_t seg = n_s - j < cn - k ? n_s - j : cn - k;
                rhs[b] = te_fp_add(rhs[b], te_fp_dot_small(L->s + j, v + k, seg, l));
                k += seg;
            }
        }
        te_pack(a, cn, l, packed + c0 / 8 * l);
    }
    return TE_OK;
}

/* out[k] = (float)(y[k] * scale * 2^-f + bias) as te_layer_decode computes
 * it; pw = 2^-f when fast, else ldexp is called. */
static void decode_run(const int64_t *y, size_t n, double scale, int fast, double pw, int frac_bits,
                       const float *bias, float *out)
{
    if (fast && bias) {
        const double bv = (double)*bias;
        for (size_t k = 0; k < n; k++)
            out[k] = (float)((double)y[k] * scale * pw + bv);
    } else if (fast) {
        for (size_t k = 0; k < n; k++)
            out[k] = (float)((double)y[k] * scale * pw);
    } else {
        for (size_t k = 0; k < n; k++) {
            double d = ldexp((double)y[k] * scale, -frac_bits);
            if (bias)
                d += (double)*bias;
            out[k] = (float)d;
        }
    }
}

/* Elements [first, first + n) of a bit-packed array of width l, read bit by
 * bit: only for a chunk that does not start on an 8-element boundary (a
 * batch whose samples are not a multiple of 8 long). */
static void unpack_at(const uint8_t *p, size_t first, size_t n, unsigned l, uint64_t *out)
{
    for (size_t k = 0; k < n; k++) {
        uint64_t bit = (uint64_t)(first + k) * l, v = 0;
        for (unsigned j = 0; j < l; j++, bit++)
            v |= (uint64_t)((p[bit >> 3] >> (bit & 7)) & 1) << j;
        out[k] = v;
    }
}

/* te_layer_finish over y, or over the packed result yp (then y is not
 * used): the same walk, with each chunk of yp unpacked into L1 first. */
static te_status finish_impl(const te_layer *L, unsigned l, uint64_t *y, const uint8_t *yp, te_prf_stream *z,
                             const uint64_t *share, const uint64_t *rhs, uint64_t max_abs_x, float *out, te_err *err)
{
    const te_linear_geom *g = &L->geom;
    if (!L->r || !L->s || !L->w_l1)
        return te_errf(err, TE_EINVAL, "linear layer %s has no integrity keys: result rejected", lname(L));
    if (l < 1 || l > 64)
        return te_errf(err, TE_EINVAL, "linear layer %s: ring width %u out of range 1..64", lname(L), l);
    const size_t n_s = (size_t)lin_out_len(g);
    const uint64_t m = te_ring_mask(l), half = (uint64_t)1 << (l - 1);
    const int fast = L->frac_bits >= -TE_FAST_EXP && L->frac_bits <= TE_FAST_EXP;
    const double pw = fast ? ldexp(1.0, -L->frac_bits) : 1.0;
    const size_t plane = g->kind == TE_LIN_FC ? 1 : (size_t)(g->out_h * g->out_w);
    if (layer_bound(L, max_abs_x) > TE_BOUND_MAX)
        return unbounded(L, max_abs_x, err);
    uint64_t w[TE_FUSE_CHUNK], u[TE_FUSE_CHUNK];
    int64_t sv[TE_FUSE_CHUNK];
    /* rings of up to 52 bits take the exact double kernels */
    const int narrow = TE_DOUBLE_EVAL && fast && l <= 52;
    /* chunks start on whole bytes of yp when every sample does */
    const int aligned = g->batch == 1 || n_s % 8 == 0;
    for (int64_t b = 0; b < g->batch; b++) {
        uint64_t bad = 0;
        float *ob = out + (size_t)b * n_s;
        uint64_t lhs = 0;
        for (size_t c0 = 0; c0 < n_s; c0 += TE_FUSE_CHUNK) {
            const size_t cn = n_s - c0 < TE_FUSE_CHUNK ? n_s - c0 : TE_FUSE_CHUNK;
            const size_t first = (size_t)b * n_s + c0;
            uint64_t *yc = yp ? u : y + first;
            if (yp && !aligned)
                unpack_at(yp, first, cn, l, u);
            else if (yp && te_unpack(yp + first / 8 * l, te_pack_bytes(cn, l), cn, l, u, err) != TE_OK) {
                memset(out, 0, (size_t)g->batch * n_s * sizeof *out);
                return te_err_wrap(err, "linear layer %s", lname(L));
            }
            if (z) {
                te_status st = te_prf_stream_read(z, w, cn, err);
                if (st != TE_OK)
                    return st;
            } else if (share) {
                const uint64_t *sc = share + first;
                for (size_t k = 0; k < cn; k++)
                    w[k] = 0 - sc[k];
            } else {
                memset(w, 0, cn * sizeof *w);
            }
            /* y = y + Z, y - share or y mod 2^l, lifted into sv, then each
             * run of one output channel bounded and decoded */
            if (!narrow) {
                for (size_t k = 0; k < cn; k++)
                    yc[k] = (yc[k] + w[k]) & m;
                for (size_t k = 0; k < cn; k++)
                    sv[k] = (int64_t)((yc[k] ^ half) - half);
            }
            for (size_t k = 0; k < cn;) {
                size_t i = c0 + k, o = i / plane % (size_t)g->out_c;
                size_t run = plane - i % plane < cn - k ? plane - i % plane : cn - k;
                double scale = L->w_scale ? (double)L->w_scale[o] : 1.0;
                uint64_t cb = chan_bound(L, (int64_t)o, max_abs_x);
                const float *bo = L->bias ? L->bias + o : NULL;
                if (narrow) {
                    bad |= finish_narrow(yc + k, w + k, run, l, bound_double(cb), scale, pw, bo, sv + k, ob + c0 + k);
                } else {
                    bad |= out_of_bound(sv + k, run, cb);
                    decode_run(sv + k, run, scale, fast, pw, L->frac_bits, bo, ob + c0 + k);
                }
                k += run;
            }
            lhs = te_fp_add(lhs, te_fp_dot_small(L->r + c0, sv, cn, l));
        }
        if (bad || lhs != rhs[b]) {
            /* nothing from a rejected result leaves this function */
            memset(out, 0, (size_t)g->batch * n_s * sizeof *out);
            return integrity_failed(L, b, err);
        }
    }
    return TE_OK;
}

te_status te_layer_finish(const te_layer *L, unsigned l, uint64_t *y, te_prf_stream *z, const uint64_t *share,
                          const uint64_t *rhs, uint64_t max_abs_x, float *out, te_err *err)
{
    return finish_impl(L, l, y, NULL, z, share, rhs, max_abs_x, out, err);
}

te_status te_layer_finish_packed(const te_layer *L, unsigned l, const uint8_t *yp, te_prf_stream *z,
                                 const uint64_t *share, const uint64_t *rhs, uint64_t max_abs_x, float *out,
                                 te_err *err)
{
    return finish_impl(L, l, NULL, yp, z, share, rhs, max_abs_x, out, err);
}
