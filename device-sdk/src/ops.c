/* Non-linear operators of the executor, float32 with ONNX semantics.
 *
 * Shapes come from m->values; every op checks that its input and output
 * shapes are consistent before touching the data. */
#include "te_exec.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int64_t prod_range(const te_shape *s, int from, int to)
{
    int64_t n = 1;
    for (int i = from; i < to; i++)
        n *= s->d[i];
    return n;
}

/* Normalise an ONNX axis (negative counts from the end) into [0, ndim). */
static te_status norm_axis(int64_t axis, int ndim, int *out, te_err *err)
{
    int64_t a = axis < 0 ? axis + ndim : axis;
    if (a < 0 || a >= ndim || ndim == 0)
        return te_errf(err, TE_EINVAL, "axis %lld out of range for a %d-d tensor", (long long)axis, ndim);
    *out = (int)a;
    return TE_OK;
}

static te_status same_numel(const te_shape *in, const te_shape *out, te_err *err)
{
    if (te_shape_numel(in) != te_shape_numel(out)) {
        char a[128], b[128];
        return te_errf(err, TE_ESHAPE, "input shape %s and output shape %s differ in size", te_shape_str(in, a, sizeof a),
                       te_shape_str(out, b, sizeof b));
    }
    return TE_OK;
}

/* ---- element-wise unary ---------------------------------------------- */

static float sigmoidf_stable(float x)
{
    if (x >= 0.0f)
        return 1.0f / (1.0f + expf(-x));
    float e = expf(x);
    return e / (1.0f + e);
}

static void run_unary(const te_node *nd, const float *x, float *y, int64_t n)
{
    switch (nd->op) {
    case TE_OP_RELU:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] > 0.0f ? x[i] : 0.0f;
        break;
    case TE_OP_LEAKY_RELU:
        for (int64_t i = 0; i < n; i++)
            y[i] = x[i] >= 0.0f ? x[i] : x[i] * nd->alpha;
        break;
    case TE_OP_CLIP:
        for (int64_t i = 0; i < n; i++) {
            float v = x[i] < nd->fmin ? nd->fmin : x[i];
            y[i] = v > nd->fmax ? nd->fmax : v;
        }
        break;
    case TE_OP_SIGMOID:
        for (int64_t i = 0; i < n; i++)
            y[i] = sigmoidf_stable(x[i]);
        break;
    case TE_OP_TANH:
        for (int64_t i = 0; i < n; i++)
            y[i] = tanhf(x[i]);
        break;
    case TE_OP_HARD_SIGMOID:
        for (int64_t i = 0; i < n; i++) {
            float v = nd->alpha * x[i] + nd->beta;
            y[i] = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
        }
        break;
    case TE_OP_HARD_SWISH:
        for (int64_t i = 0; i < n; i++) {
            float v = x[i] / 6.0f + 0.5f;
            v = v < 0.0f ? 0.0f : (v > 1.0f ? 1.0f : v);
            y[i] = x[i] * v;
        }
        break;
    case TE_OP_SQRT:
        for (int64_t i = 0; i < n; i++)
            y[i] = sqrtf(x[i]);
        break;
    case TE_OP_ERF:
        for (int64_t i = 0; i < n; i++)
            y[i] = erff(x[i]);
        break;
    case TE_OP_EXP:
        for (int64_t i = 0; i < n; i++)
            y[i] = expf(x[i]);
        break;
    case TE_OP_SOFTPLUS:
        for (int64_t i = 0; i < n; i++) /* log(1 + e^x) without overflow */
            y[i] = x[i] > 20.0f ? x[i] : log1pf(expf(x[i]));
        break;
    default:
        break;
    }
}

/* ---- broadcasting binary ops ------------------------------------------ */

/* Strides of `in` when broadcast (right-aligned) onto `out`; 0 on broadcast dims. */
static te_status bcast_strides(const te_shape *in, const te_shape *out, int64_t *st, const char *what, te_err *err)
{
    char a[128], b[128];
    if (in->ndim > out->ndim)
        return te_errf(err, TE_ESHAPE, "%s shape %s has more dimensions than output %s", what,
                       te_shape_str(in, a, sizeof a), te_shape_str(out, b, sizeof b));
    int64_t stride = 1;
    for (int i = out->ndim - 1; i >= 0; i--) {
        int j = i - (out->ndim - in->ndim);
        if (j < 0) {
            st[i] = 0;
            continue;
        }
        if (in->d[j] == out->d[i])
            st[i] = in->d[j] == 1 ? 0 : stride;
        else if (in->d[j] == 1)
            st[i] = 0;
        else
            return te_errf(err, TE_ESHAPE, "%s shape %s does not broadcast to %s", what, te_shape_str(in, a, sizeof a),
                           te_shape_str(out, b, sizeof b));
        stride *= in->d[j];
    }
    return TE_OK;
}

/* The numpy broadcast of a and b must be exactly out. */
static te_status check_bcast_shape(const te_shape *sa, const te_shape *sb, const te_shape *out, te_err *err)
{
    int nd = sa->ndim > sb->ndim ? sa->ndim : sb->ndim;
    int ok = nd == out->ndim;
    for (int i = 0; ok && i < nd; i++) {
        int ja = i - (nd - sa->ndim), jb = i - (nd - sb->ndim);
        int64_t da = ja >= 0 ? sa->d[ja] : 1, db = jb >= 0 ? sb->d[jb] : 1;
        int64_t d = da == 1 ? db : da;
        if ((da != 1 && db != 1 && da != db) || d != out->d[i])
            ok = 0;
    }
    if (!ok) {
        char a[128], b[128], c[128];
        return te_errf(err, TE_ESHAPE, "cannot broadcast %s and %s to output %s", te_shape_str(sa, a, sizeof a),
                       te_shape_str(sb, b, sizeof b), te_shape_str(out, c, sizeof c));
    }
    return TE_OK;
}

static void binary_inner(te_op op, const float *a, int64_t sa, const float *b, int64_t sb, float *y, int64_t n)
{
    switch (op) {
    case TE_OP_ADD:
        for (int64_t k = 0; k < n; k++)
            y[k] = a[k * sa] + b[k * sb];
        break;
    case TE_OP_SUB:
        for (int64_t k = 0; k < n; k++)
            y[k] = a[k * sa] - b[k * sb];
        break;
    case TE_OP_MUL:
        for (int64_t k = 0; k < n; k++)
            y[k] = a[k * sa] * b[k * sb];
        break;
    case TE_OP_DIV:
        for (int64_t k = 0; k < n; k++)
            y[k] = a[k * sa] / b[k * sb];
        break;
    case TE_OP_POW:
        for (int64_t k = 0; k < n; k++) {
            float e = b[k * sb];
            /* the common exponents exactly, as onnxruntime does */
            y[k] = e == 2.0f ? a[k * sa] * a[k * sa] : e == 1.0f ? a[k * sa] : powf(a[k * sa], e);
        }
        break;
    case TE_OP_PRELU:
        for (int64_t k = 0; k < n; k++) {
            float x = a[k * sa];
            y[k] = x >= 0.0f ? x : x * b[k * sb];
        }
        break;
    default:
        break;
    }
}

static te_status run_binary(te_op op, const te_shape *sha, const float *a, const te_shape *shb, const float *b,
                            const te_shape *sho, float *y, te_err *err)
{
    int64_t sta[TE_MAX_DIMS], stb[TE_MAX_DIMS], idx[TE_MAX_DIMS] = {0};
    te_shape one = {1, {1}};
    const te_shape *out = sho->ndim ? sho : &one;
    te_status st;
    if ((st = bcast_strides(sha, out, sta, op == TE_OP_PRELU ? "input" : "first input", err)) != TE_OK ||
        (st = bcast_strides(shb, out, stb, op == TE_OP_PRELU ? "slope" : "second input", err)) != TE_OK)
        return st;
    int nd = out->ndim;
    int64_t total = te_shape_numel(out), inner = out->d[nd - 1];
    if (total == 0)
        return TE_OK;
    int64_t oa = 0, ob = 0;
    for (int64_t o = 0; o < total; o += inner) {
        binary_inner(op, a + oa, sta[nd - 1], b + ob, stb[nd - 1], y + o, inner);
        for (int d = nd - 2; d >= 0; d--) {
            idx[d]++;
            oa += sta[d];
            ob += stb[d];
            if (idx[d] < out->d[d])
                break;
            oa -= sta[d] * out->d[d];
            ob -= stb[d] * out->d[d];
            idx[d] = 0;
        }
    }
    return TE_OK;
}

/* ---- pooling ----------------------------------------------------------- */

/* Taps i in [0, k) with lo <= start + i*d < hi form the range [*a, *b). */
static void tap_range(int64_t start, int64_t k, int64_t d, int64_t lo, int64_t hi, int64_t *a, int64_t *b)
{
    int64_t first = start >= lo ? 0 : (lo - start + d - 1) / d;
    int64_t last = hi - 1 - start < 0 ? 0 : (hi - 1 - start) / d + 1;
    if (last > k)
        last = k;
    if (first > last)
        first = last;
    *a = first;
    *b = last;
}

static te_status run_pool(const te_node *nd, const te_shape *si, const float *x, const te_shape *so, float *y,
                          te_err *err)
{
    char a[128], b[128];
    if (si->ndim != 4 || so->ndim != 4 || si->d[0] != so->d[0] || si->d[1] != so->d[1])
        return te_errf(err, TE_ESHAPE, "2-D pooling needs NCHW input and output with equal N, C; got %s -> %s",
                       te_shape_str(si, a, sizeof a), te_shape_str(so, b, sizeof b));
    int64_t kh = nd->kernel[0], kw = nd->kernel[1];
    int64_t sh = nd->stride[0] > 0 ? nd->stride[0] : 1, sw = nd->stride[1] > 0 ? nd->stride[1] : 1;
    int64_t dh = nd->dilation[0] > 0 ? nd->dilation[0] : 1, dw = nd->dilation[1] > 0 ? nd->dilation[1] : 1;
    int64_t pt = nd->pads[0], pl = nd->pads[1], pb = nd->pads[2], pr = nd->pads[3];
    if (kh < 1 || kw < 1 || pt < 0 || pl < 0 || pb < 0 || pr < 0)
        return te_errf(err, TE_EINVAL, "invalid pooling kernel %lldx%lld or pads (%lld,%lld,%lld,%lld)",
                       (long long)kh, (long long)kw, (long long)pt, (long long)pl, (long long)pb, (long long)pr);
    int64_t H = si->d[2], W = si->d[3], OH = so->d[2], OW = so->d[3];
    int64_t planes = si->d[0] * si->d[1];
    int is_max = nd->op == TE_OP_MAXPOOL;
    for (int64_t p = 0; p < planes; p++) {
        const float *xp = x + p * H * W;
        float *yp = y + p * OH * OW;
        for (int64_t oh = 0; oh < OH; oh++) {
            int64_t hs = oh * sh - pt, ha, hb, hpa, hpb;
            tap_range(hs, kh, dh, 0, H, &ha, &hb);
            tap_range(hs, kh, dh, -pt, H + pb, &hpa, &hpb);
            for (int64_t ow = 0; ow < OW; ow++) {
                int64_t ws = ow * sw - pl, wa, wb, wpa, wpb;
                tap_range(ws, kw, dw, 0, W, &wa, &wb);
                tap_range(ws, kw, dw, -pl, W + pr, &wpa, &wpb);
                float *dst = yp + oh * OW + ow;
                if (is_max) {
                    /* a window holding only padding (possible only with an
                     * unusual output shape) gives the lowest float, as onnxruntime */
                    float mx = -FLT_MAX;
                    for (int64_t i = ha; i < hb; i++) {
                        const float *row = xp + (hs + i * dh) * W + ws;
                        for (int64_t j = wa; j < wb; j++)
                            if (row[j * dw] > mx)
                                mx = row[j * dw];
                    }
                    *dst = mx;
                } else {
                    double sum = 0.0;
                    for (int64_t i = ha; i < hb; i++) {
                        const float *row = xp + (hs + i * dh) * W + ws;
                        for (int64_t j = wa; j < wb; j++)
                            sum += row[j * dw];
                    }
                    /* count_include_pad counts declared padding but not the
                     * ceil-mode overhang beyond it (ONNX / PyTorch) */
                    int64_t cnt = nd->count_include_pad ? (hpb - hpa) * (wpb - wpa) : (hb - ha) * (wb - wa);
                    *dst = cnt > 0 ? (float)(sum / (double)cnt) : 0.0f;
                }
            }
        }
    }
    return TE_OK;
}

static te_status run_global_avgpool(const te_shape *si, const float *x, const te_shape *so, float *y, te_err *err)
{
    char a[128], b[128];
    if (si->ndim < 3 || so->ndim != si->ndim || so->d[0] != si->d[0] || so->d[1] != si->d[1] ||
        te_shape_numel(so) != si->d[0] * si->d[1])
        return te_errf(err, TE_ESHAPE, "GlobalAveragePool: bad shapes %s -> %s", te_shape_str(si, a, sizeof a),
                       te_shape_str(so, b, sizeof b));
    int64_t planes = si->d[0] * si->d[1], inner = prod_range(si, 2, si->ndim);
    for (int64_t p = 0; p < planes; p++) {
        double sum = 0.0;
        for (int64_t i = 0; i < inner; i++)
            sum += x[p * inner + i];
        y[p] = inner > 0 ? (float)(sum / (double)inner) : 0.0f;
    }
    return TE_OK;
}

static te_status run_lrn(const te_node *nd, const te_shape *si, const float *x, const te_shape *so, float *y,
                         te_err *err)
{
    char a[128];
    te_status st = same_numel(si, so, err);
    if (st != TE_OK)
        return st;
    if (si->ndim < 2 || nd->size < 1)
        return te_errf(err, TE_EINVAL, "LRN needs an [N,C,...] input and size >= 1 (shape %s, size %lld)",
                       te_shape_str(si, a, sizeof a), (long long)nd->size);
    int64_t N = si->d[0], C = si->d[1], inner = prod_range(si, 2, si->ndim);
    int64_t before = (nd->size - 1) / 2, after = nd->size - 1 - before; /* floor / ceil of (size-1)/2 */
    double scale = (double)nd->alpha / (double)nd->size;
    for (int64_t n = 0; n < N; n++) {
        const float *xn = x + n * C * inner;
        float *yn = y + n * C * inner;
        for (int64_t c = 0; c < C; c++) {
            int64_t c0 = c - before < 0 ? 0 : c - before, c1 = c + after >= C ? C - 1 : c + after;
            for (int64_t i = 0; i < inner; i++) {
                double ss = 0.0;
                for (int64_t k = c0; k <= c1; k++) {
                    double v = xn[k * inner + i];
                    ss += v * v;
                }
                yn[c * inner + i] = (float)(xn[c * inner + i] / pow((double)nd->bias + scale * ss, (double)nd->beta));
            }
        }
    }
    return TE_OK;
}

/* ---- layout ops -------------------------------------------------------- */

static te_status run_concat(const te_model *m, const te_node *nd, const float *const *in, float *y, te_err *err)
{
    const te_shape *so = &m->values[nd->out].shape;
    char a[128], b[128];
    int ax = 0;
    te_status st = norm_axis(nd->axis, so->ndim, &ax, err);
    if (st != TE_OK)
        return st;
    int64_t total_axis = 0;
    for (int k = 0; k < nd->n_in; k++) {
        const te_shape *si = &m->values[nd->in[k]].shape;
        int ok = si->ndim == so->ndim;
        for (int d = 0; ok && d < so->ndim; d++)
            if (d != ax && si->d[d] != so->d[d])
                ok = 0;
        if (!ok)
            return te_errf(err, TE_ESHAPE, "Concat input %d shape %s does not match output %s on axis %d", k,
                           te_shape_str(si, a, sizeof a), te_shape_str(so, b, sizeof b), ax);
        total_axis += si->d[ax];
    }
    if (total_axis != so->d[ax])
        return te_errf(err, TE_ESHAPE, "Concat inputs sum to %lld along axis %d, output has %lld",
                       (long long)total_axis, ax, (long long)so->d[ax]);
    int64_t outer = prod_range(so, 0, ax), inner = prod_range(so, ax + 1, so->ndim);
    int64_t out_chunk = so->d[ax] * inner, off = 0;
    for (int k = 0; k < nd->n_in; k++) {
        int64_t chunk = m->values[nd->in[k]].shape.d[ax] * inner;
        for (int64_t o = 0; o < outer; o++)
            memcpy(y + o * out_chunk + off, in[k] + o * chunk, (size_t)chunk * sizeof(float));
        off += chunk;
    }
    return TE_OK;
}

static te_status run_softmax(const te_node *nd, const te_shape *si, const float *x, const te_shape *so, float *y,
                             te_err *err)
{
    int ax = 0;
    te_status st = same_numel(si, so, err);
    if (st != TE_OK || (st = norm_axis(nd->axis, si->ndim, &ax, err)) != TE_OK)
        return st;
    int64_t outer = prod_range(si, 0, ax), L = si->d[ax], inner = prod_range(si, ax + 1, si->ndim);
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < inner; i++) {
            const float *xs = x + o * L * inner + i;
            float *ys = y + o * L * inner + i;
            float mx = -INFINITY;
            for (int64_t k = 0; k < L; k++)
                if (xs[k * inner] > mx)
                    mx = xs[k * inner];
            double sum = 0.0;
            for (int64_t k = 0; k < L; k++)
                sum += exp((double)xs[k * inner] - mx);
            for (int64_t k = 0; k < L; k++)
                ys[k * inner] = (float)(exp((double)xs[k * inner] - mx) / sum);
        }
    }
    return TE_OK;
}

static int64_t reflect_index(int64_t c, int64_t n)
{
    if (n == 1)
        return 0;
    int64_t period = 2 * (n - 1);
    c %= period;
    if (c < 0)
        c += period;
    return c >= n ? period - c : c;
}

static te_status run_pad(const te_node *nd, const te_shape *si, const float *x, const te_shape *so, float *y,
                         te_err *err)
{
    char a[128], b[128];
    int r = si->ndim;
    if (so->ndim != r || nd->n_ints != 2 * r)
        return te_errf(err, TE_ESHAPE, "Pad: %d pads for input %s -> output %s (need %d)", nd->n_ints,
                       te_shape_str(si, a, sizeof a), te_shape_str(so, b, sizeof b), 2 * r);
    if (nd->pad_mode != TE_PAD_CONSTANT && nd->pad_mode != TE_PAD_REFLECT && nd->pad_mode != TE_PAD_EDGE)
        return te_errf(err, TE_EUNSUPPORTED, "Pad: unknown mode %d", nd->pad_mode);
    int64_t total_out = 0;
    for (int d = 0; d < r; d++) {
        if (si->d[d] + nd->ints[d] + nd->ints[r + d] != so->d[d])
            return te_errf(err, TE_ESHAPE, "Pad: input %s with pads does not give output %s",
                           te_shape_str(si, a, sizeof a), te_shape_str(so, b, sizeof b));
        if (si->d[d] == 0 && so->d[d] > 0 && nd->pad_mode != TE_PAD_CONSTANT)
            return te_errf(err, TE_EINVAL, "Pad: cannot reflect or extend an empty axis %d", d);
        total_out += so->d[d];
    }
    if (te_shape_numel(so) == 0)
        return TE_OK;
    if (r == 0) {
        y[0] = x[0];
        return TE_OK;
    }
    /* per axis: output coordinate -> input coordinate, or -1 for the constant */
    int64_t *map = malloc((size_t)total_out * sizeof *map);
    if (!map)
        return te_errf(err, TE_ENOMEM, "Pad: out of memory");
    int64_t *mp[TE_MAX_DIMS], ist[TE_MAX_DIMS], idx[TE_MAX_DIMS] = {0};
    int64_t off = 0, stride = 1;
    for (int d = r - 1; d >= 0; d--) {
        ist[d] = stride;
        stride *= si->d[d];
    }
    for (int d = 0; d < r; d++) {
        mp[d] = map + off;
        off += so->d[d];
        for (int64_t o = 0; o < so->d[d]; o++) {
            int64_t c = o - nd->ints[d], n = si->d[d];
            if (c < 0 || c >= n) {
                if (nd->pad_mode == TE_PAD_CONSTANT)
                    c = -1;
                else if (nd->pad_mode == TE_PAD_EDGE)
                    c = c < 0 ? 0 : n - 1;
                else
                    c = reflect_index(c, n);
            }
            mp[d][o] = c;
        }
    }
    int64_t total = te_shape_numel(so), inner = so->d[r - 1];
    for (int64_t o = 0; o < total; o += inner) {
        int64_t base = 0;
        int outside = 0;
        for (int d = 0; d < r - 1; d++) {
            if (mp[d][idx[d]] < 0)
                outside = 1;
            base += mp[d][idx[d]] * ist[d];
        }
        for (int64_t k = 0; k < inner; k++) {
            int64_t c = mp[r - 1][k];
            y[o + k] = outside || c < 0 ? nd->pad_value : x[base + c];
        }
        for (int d = r - 2; d >= 0; d--) {
            if (++idx[d] < so->d[d])
                break;
            idx[d] = 0;
        }
    }
    free(map);
    return TE_OK;
}

static te_status run_lpnorm(const te_node *nd, const te_shape *si, const float *x, const te_shape *so, float *y,
                            te_err *err)
{
    int ax = 0;
    te_status st = same_numel(si, so, err);
    if (st != TE_OK || (st = norm_axis(nd->axis, si->ndim, &ax, err)) != TE_OK)
        return st;
    if (nd->p != 1 && nd->p != 2)
        return te_errf(err, TE_EUNSUPPORTED, "LpNormalization: p must be 1 or 2, got %lld", (long long)nd->p);
    int64_t outer = prod_range(si, 0, ax), L = si->d[ax], inner = prod_range(si, ax + 1, si->ndim);
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < inner; i++) {
            const float *xs = x + o * L * inner + i;
            float *ys = y + o * L * inner + i;
            double acc = 0.0;
            for (int64_t k = 0; k < L; k++) {
                double v = xs[k * inner];
                acc += nd->p == 1 ? fabs(v) : v * v;
            }
            double norm = nd->p == 1 ? acc : sqrt(acc);
            /* a zero vector stays zero instead of becoming NaN */
            for (int64_t k = 0; k < L; k++)
                ys[k * inner] = norm > 0.0 ? (float)(xs[k * inner] / norm) : 0.0f;
        }
    }
    return TE_OK;
}

/* ReduceL2 / ReduceMean / ReduceSum / ReduceMax over ints (axes). */
static te_status run_reduce(const te_node *nd, const te_shape *si, const float *x, const te_shape *so, float *y,
                            te_err *err)
{
    const char *opn = te_op_name(nd->op);
    char a[128], b[128];
    int r = si->ndim, reduced[TE_MAX_DIMS] = {0};
    for (int k = 0; k < nd->n_ints; k++) {
        int ax = 0;
        te_status st = norm_axis(nd->ints[k], r, &ax, err);
        if (st != TE_OK)
            return st;
        reduced[ax] = 1;
    }
    if (nd->n_ints == 0) /* ONNX: no axes means reduce everything */
        for (int d = 0; d < r; d++)
            reduced[d] = 1;
    /* expected output shape */
    te_shape want = {0, {0}};
    for (int d = 0; d < r; d++) {
        if (!reduced[d])
            want.d[want.ndim++] = si->d[d];
        else if (nd->keepdims)
            want.d[want.ndim++] = 1;
    }
    int ok = want.ndim == so->ndim || (want.ndim == 0 && te_shape_numel(so) == 1);
    for (int d = 0; ok && d < want.ndim; d++)
        ok = want.d[d] == so->d[d];
    if (!ok)
        return te_errf(err, TE_ESHAPE, "%s: input %s does not reduce to output %s", opn, te_shape_str(si, a, sizeof a),
                       te_shape_str(so, b, sizeof b));
    int64_t nout = te_shape_numel(so), total = te_shape_numel(si);
    double *acc = calloc((size_t)(nout > 0 ? nout : 1), sizeof *acc);
    if (!acc)
        return te_errf(err, TE_ENOMEM, "%s: out of memory", opn);
    int is_max = nd->op == TE_OP_REDUCE_MAX, is_min = nd->op == TE_OP_REDUCE_MIN, is_prod = nd->op == TE_OP_REDUCE_PROD;
    int is_l2 = nd->op == TE_OP_REDUCE_L2;
    if (is_max || is_min || is_prod)
        for (int64_t k = 0; k < nout; k++)
            acc[k] = is_max ? -INFINITY : is_min ? INFINITY : 1;
    int64_t ost[TE_MAX_DIMS], idx[TE_MAX_DIMS] = {0}, stride = 1;
    for (int d = r - 1; d >= 0; d--) {
        ost[d] = reduced[d] ? 0 : stride;
        if (!reduced[d])
            stride *= si->d[d];
    }
    int64_t o = 0;
    for (int64_t i = 0; i < total; i++) {
        double v = x[i];
        if (is_max)
            acc[o] = v > acc[o] || v != v ? v : acc[o];
        else if (is_min)
            acc[o] = v < acc[o] || v != v ? v : acc[o];
        else if (is_prod)
            acc[o] *= v;
        else
            acc[o] += is_l2 ? v * v : v;
        for (int d = r - 1; d >= 0; d--) {
            o += ost[d];
            if (++idx[d] < si->d[d])
                break;
            o -= ost[d] * si->d[d];
            idx[d] = 0;
        }
    }
    double count = nout > 0 ? (double)total / (double)nout : 1;
    for (int64_t k = 0; k < nout; k++)
        y[k] = (float)(is_l2 ? sqrt(acc[k]) : nd->op == TE_OP_REDUCE_MEAN ? acc[k] / count : acc[k]);
    free(acc);
    return TE_OK;
}

static te_status run_transpose(const te_node *nd, const te_shape *si, const float *x, const te_shape *so, float *y,
                               te_err *err)
{
    char a[128], b[128];
    int r = si->ndim, perm[TE_MAX_DIMS], seen[TE_MAX_DIMS] = {0};
    if (nd->n_ints != 0 && nd->n_ints != r)
        return te_errf(err, TE_EINVAL, "Transpose: perm has %d entries for a %d-d input", nd->n_ints, r);
    for (int d = 0; d < r; d++) {
        int64_t p = nd->n_ints ? nd->ints[d] : r - 1 - d;
        if (p < 0)
            p += r;
        if (p < 0 || p >= r || seen[p])
            return te_errf(err, TE_EINVAL, "Transpose: perm is not a permutation of 0..%d", r - 1);
        seen[p] = 1;
        perm[d] = (int)p;
    }
    int ok = so->ndim == r;
    for (int d = 0; ok && d < r; d++)
        ok = so->d[d] == si->d[perm[d]];
    if (!ok)
        return te_errf(err, TE_ESHAPE, "Transpose: input %s permuted does not give output %s",
                       te_shape_str(si, a, sizeof a), te_shape_str(so, b, sizeof b));
    int64_t total = te_shape_numel(so);
    if (total == 0)
        return TE_OK;
    if (r == 0) {
        y[0] = x[0];
        return TE_OK;
    }
    int64_t ist[TE_MAX_DIMS], st[TE_MAX_DIMS], idx[TE_MAX_DIMS] = {0}, stride = 1;
    for (int d = r - 1; d >= 0; d--) {
        ist[d] = stride;
        stride *= si->d[d];
    }
    for (int d = 0; d < r; d++)
        st[d] = ist[perm[d]];
    int64_t inner = so->d[r - 1], sin = st[r - 1], off = 0;
    for (int64_t o = 0; o < total; o += inner) {
        for (int64_t k = 0; k < inner; k++)
            y[o + k] = x[off + k * sin];
        for (int d = r - 2; d >= 0; d--) {
            off += st[d];
            if (++idx[d] < so->d[d])
                break;
            off -= st[d] * so->d[d];
            idx[d] = 0;
        }
    }
    return TE_OK;
}

/* ---- ops added for exported models in the wild (issue 12) ------------- */

static int64_t shape_numel_from(const te_shape *s, int from)
{
    return prod_range(s, from, s->ndim);
}

/* y = (x - mean) / sqrt(var + eps) * scale + bias over the dims axis.. */
static te_status run_layer_norm(const te_model *m, const te_node *nd, const float *const *in, float *y, te_err *err)
{
    const te_shape *si = &m->values[nd->in[0]].shape, *so = &m->values[nd->out].shape;
    te_status st;
    if ((st = same_numel(si, so, err)) != TE_OK)
        return st;
    if (nd->axis < 0 || nd->axis >= si->ndim)
        return te_errf(err, TE_EINVAL, "LayerNormalization: axis %lld out of range", (long long)nd->axis);
    int64_t inner = shape_numel_from(si, (int)nd->axis), outer = prod_range(si, 0, (int)nd->axis);
    for (int k = 1; k < nd->n_in; k++)
        if (te_shape_numel(&m->values[nd->in[k]].shape) != inner)
            return te_errf(err, TE_ESHAPE, "LayerNormalization: %s must have %lld elements", k == 1 ? "scale" : "bias",
                           (long long)inner);
    const float *x = in[0], *sc = in[1], *bi = nd->n_in > 2 ? in[2] : NULL;
    for (int64_t o = 0; o < outer; o++) {
        const float *xo = x + o * inner;
        float *yo = y + o * inner;
        double mean = 0, var = 0;
        for (int64_t k = 0; k < inner; k++)
            mean += xo[k];
        mean /= (double)inner;
        for (int64_t k = 0; k < inner; k++)
            var += ((double)xo[k] - mean) * ((double)xo[k] - mean);
        var /= (double)inner;
        double inv = 1.0 / sqrt(var + (double)nd->alpha);
        for (int64_t k = 0; k < inner; k++)
            yo[k] = (float)(((double)xo[k] - mean) * inv * sc[k] + (bi ? bi[k] : 0.0));
    }
    return TE_OK;
}

static te_status run_slice(const te_node *nd, const te_shape *si, const float *x, const te_shape *so, float *y,
                           te_err *err)
{
    int r = si->ndim;
    if (so->ndim != r || nd->n_ints != 2 * r)
        return te_errf(err, TE_EINVAL, "Slice: %d ints for a %d-d input (output %d-d)", nd->n_ints, r, so->ndim);
    int64_t ist[TE_MAX_DIMS], st[TE_MAX_DIMS], idx[TE_MAX_DIMS] = {0}, stride = 1, off = 0;
    for (int d = r - 1; d >= 0; d--) {
        ist[d] = stride;
        stride *= si->d[d];
    }
    for (int d = 0; d < r; d++) {
        int64_t start = nd->ints[2 * d], step = nd->ints[2 * d + 1];
        /* the first and last element read must lie inside the input (a step
         * of the input's size or more reads one element at most: checked
         * first, so the products below cannot overflow) */
        if (so->d[d] > 1 && (step <= -si->d[d] || step >= si->d[d]))
            return te_errf(err, TE_EINVAL, "Slice: axis %d steps out of the input", d);
        if (so->d[d] > 0 && (start < 0 || start >= si->d[d] || start + (so->d[d] - 1) * step < 0 ||
                             start + (so->d[d] - 1) * step >= si->d[d]))
            return te_errf(err, TE_EINVAL, "Slice: axis %d reads outside the input", d);
        st[d] = step * ist[d];
        off += start * ist[d];
    }
    int64_t total = te_shape_numel(so);
    if (total == 0)
        return TE_OK;
    if (r == 0) {
        y[0] = x[0];
        return TE_OK;
    }
    int64_t inner = so->d[r - 1], sin = st[r - 1];
    for (int64_t o = 0; o < total; o += inner) {
        if (sin == 1) /* contiguous rows, e.g. splitting a fused layer's channels */
            memcpy(y + o, x + off, (size_t)inner * sizeof *y);
        else
            for (int64_t k = 0; k < inner; k++)
                y[o + k] = x[off + k * sin];
        for (int d = r - 2; d >= 0; d--) {
            off += st[d];
            if (++idx[d] < so->d[d])
                break;
            off -= st[d] * so->d[d];
            idx[d] = 0;
        }
    }
    return TE_OK;
}

static te_status run_gather(const te_model *m, const te_node *nd, const float *x, const float *ix, float *y,
                            te_err *err)
{
    const te_shape *si = &m->values[nd->in[0]].shape, *sx = &m->values[nd->in[1]].shape;
    const te_shape *so = &m->values[nd->out].shape;
    int ax = 0;
    te_status st = norm_axis(nd->axis, si->ndim, &ax, err);
    if (st != TE_OK)
        return st;
    int ok = so->ndim == si->ndim - 1 + sx->ndim;
    for (int d = 0; ok && d < so->ndim; d++) {
        int64_t want = d < ax ? si->d[d] : d < ax + sx->ndim ? sx->d[d - ax] : si->d[d - sx->ndim + 1];
        ok = so->d[d] == want;
    }
    if (!ok) {
        char a[128], b[128];
        return te_errf(err, TE_ESHAPE, "Gather: input %s does not give output %s", te_shape_str(si, a, sizeof a),
                       te_shape_str(so, b, sizeof b));
    }
    int64_t outer = prod_range(si, 0, ax), dim = si->d[ax], inner = shape_numel_from(si, ax + 1);
    int64_t ni = te_shape_numel(sx);
    /* indices computed on the device: ONNX's range [-dim, dim), negative
     * ones counting from the end */
    for (int64_t q = 0; q < ni; q++)
        if (!(ix[q] >= -(float)dim && ix[q] < (float)dim && ix[q] == floorf(ix[q])))
            return te_errf(err, TE_EINVAL, "Gather: index %g out of range %lld..%lld", (double)ix[q],
                           -(long long)dim, (long long)dim - 1);
    for (int64_t o = 0; o < outer; o++)
        for (int64_t q = 0; q < ni; q++) {
            int64_t i = (int64_t)ix[q];
            i += i < 0 ? dim : 0;
            memcpy(y + (o * ni + q) * inner, x + (o * dim + i) * inner, (size_t)inner * sizeof(float));
        }
    return TE_OK;
}

/* Source coordinate of output position o along one axis (ONNX Resize). */
static double resize_coord(int mode, double o, double scale, int64_t len_in, int64_t len_out)
{
    switch (mode) {
    case TE_COORD_ASYMMETRIC: return o / scale;
    case TE_COORD_ALIGN_CORNERS: return len_out > 1 ? o * (double)(len_in - 1) / (double)(len_out - 1) : 0.0;
    case TE_COORD_PYTORCH_HALF_PIXEL: return len_out > 1 ? (o + 0.5) / scale - 0.5 : 0.0;
    case TE_COORD_TF_HALF_PIXEL_FOR_NN: return (o + 0.5) / scale;
    case TE_COORD_HALF_PIXEL_SYMMETRIC: {
        double adj = (double)len_out / (scale * (double)len_in), center = (double)len_in / 2;
        return center * (1 - adj) + (o + 0.5) / scale - 0.5;
    }
    default: return (o + 0.5) / scale - 0.5; /* half_pixel */
    }
}

static int64_t clamp_i(int64_t v, int64_t n)
{
    return v < 0 ? 0 : v >= n ? n - 1 : v;
}

static int64_t nearest_index(int mode, double x)
{
    double f = floor(x);
    switch (mode) {
    case TE_NEAREST_FLOOR: return (int64_t)f;
    case TE_NEAREST_CEIL: return (int64_t)ceil(x);
    case TE_NEAREST_ROUND_PREFER_CEIL: return (int64_t)(x - f == 0.5 ? f + 1 : floor(x + 0.5));
    default: return (int64_t)(x - f == 0.5 ? f : floor(x + 0.5));
    }
}

/* Keys' cubic convolution weight of a tap at distance x (coefficient a). */
static double cubic_w(double x, double a)
{
    x = fabs(x);
    if (x <= 1)
        return ((a + 2) * x - (a + 3)) * x * x + 1;
    if (x < 2)
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a;
    return 0;
}

/* The 4 taps around source coordinate c: indices clamped to the input (edge
 * values), or with exclude_outside the outside taps dropped and the rest
 * renormalised. */
static void cubic_taps(double c, int64_t n_in, double a, int exclude, int64_t idx[4], double w[4])
{
    double f = floor(c), t = c - f, sum = 0;
    for (int j = 0; j < 4; j++) {
        int64_t i = (int64_t)f - 1 + j;
        w[j] = cubic_w(t + 1 - j, a);
        if (exclude && (i < 0 || i >= n_in))
            w[j] = 0;
        sum += w[j];
        idx[j] = clamp_i(i, n_in);
    }
    if (exclude && sum != 0)
        for (int j = 0; j < 4; j++)
            w[j] /= sum;
}

/* One axis of a separable resize: src [outer][n_in][inner] -> dst [outer][n_out][inner].
 * roi (tf_crop_and_resize only): this axis's start and end. */
static void resize_axis(const te_node *nd, double scale, const float *roi, const float *src, float *dst,
                        int64_t outer, int64_t n_in, int64_t n_out, int64_t inner)
{
    int linear = nd->ints[0] == TE_RESIZE_LINEAR;
    for (int64_t o = 0; o < n_out; o++) {
        double c;
        if (roi) {
            double a = roi[0], e = roi[1], span = (double)(n_in - 1);
            c = n_out > 1 ? a * span + (double)o * (e - a) * span / (double)(n_out - 1) : 0.5 * (a + e) * span;
            if (!(c >= 0 && c <= span)) { /* outside the input: extrapolation_value (NaN roi too) */
                for (int64_t b = 0; b < outer; b++)
                    for (int64_t k = 0; k < inner; k++)
                        dst[(b * n_out + o) * inner + k] = nd->pad_value;
                continue;
            }
        } else {
            c = resize_coord((int)nd->ints[1], (double)o, scale, n_in, n_out);
        }
        /* outside [-1, n_in] every index clamps the same way; keeps the casts defined */
        c = c < -1.0 ? -1.0 : c > (double)n_in ? (double)n_in : c;
        int64_t i0, i1;
        float w = 0;
        if (nd->ints[0] == TE_RESIZE_CUBIC) {
            int64_t idx[4];
            double cw[4];
            cubic_taps(c, n_in, nd->alpha, nd->n_ints > 3 && nd->ints[3], idx, cw);
            for (int64_t b = 0; b < outer; b++) {
                float *d = dst + (b * n_out + o) * inner;
                for (int64_t k = 0; k < inner; k++) {
                    double acc = 0;
                    for (int j = 0; j < 4; j++)
                        acc += cw[j] * src[(b * n_in + idx[j]) * inner + k];
                    d[k] = (float)acc;
                }
            }
            continue;
        }
        if (linear) {
            double f = floor(c);
            w = (float)(c - f);
            i0 = clamp_i((int64_t)f, n_in);
            i1 = clamp_i((int64_t)f + 1, n_in);
        } else {
            i0 = i1 = clamp_i(nearest_index((int)nd->ints[2], c), n_in);
        }
        for (int64_t b = 0; b < outer; b++) {
            const float *a0 = src + (b * n_in + i0) * inner, *a1 = src + (b * n_in + i1) * inner;
            float *d = dst + (b * n_out + o) * inner;
            if (!linear || i0 == i1)
                memcpy(d, a0, (size_t)inner * sizeof(float));
            else
                for (int64_t k = 0; k < inner; k++)
                    d[k] = a0[k] + w * (a1[k] - a0[k]);
        }
    }
}

static te_status run_resize(const te_model *m, const te_node *nd, const float *x, const float *scales, float *y,
                            te_err *err)
{
    const te_shape *si = &m->values[nd->in[0]].shape, *so = &m->values[nd->out].shape;
    int r = si->ndim;
    int crop = nd->n_ints >= 3 && nd->ints[1] == TE_COORD_TF_CROP_AND_RESIZE;
    if (so->ndim != r || te_shape_numel(&m->values[nd->in[1]].shape) != (crop ? 3 * r : r) || nd->n_ints < 3 ||
        nd->n_ints > 4 || nd->ints[0] < TE_RESIZE_NEAREST || nd->ints[0] > TE_RESIZE_CUBIC || nd->ints[1] < 0 ||
        nd->ints[1] > TE_COORD_TF_CROP_AND_RESIZE || nd->ints[2] < 0 || nd->ints[2] > TE_NEAREST_CEIL)
        return te_errf(err, TE_EINVAL, "Resize: bad scales, modes or ranks");
    for (int d = 0; d < r; d++)
        if (!(scales[d] > 0) || (so->d[d] > 0 && si->d[d] == 0))
            return te_errf(err, TE_EINVAL, "Resize: scale %g on axis %d", (double)scales[d], d);
    /* axis by axis (nearest and n-linear are separable), ping-ponging through scratch */
    te_shape cur = *si;
    const float *src = x;
    float *bufs[2] = {NULL, NULL};
    int which = 0;
    int64_t total = te_shape_numel(si);
    for (int d = 0; d < r; d++) {
        const float roi[2] = {crop ? scales[r + d] : 0, crop ? scales[2 * r + d] : 1};
        if (so->d[d] == si->d[d] && scales[d] == 1.0f && roi[0] == 0 && roi[1] == 1)
            continue;
        te_shape nx = cur;
        nx.d[d] = so->d[d];
        int64_t n = te_shape_numel(&nx);
        free(bufs[which]);
        bufs[which] = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
        if (!bufs[which]) {
            free(bufs[0]);
            free(bufs[1]);
            return te_errf(err, TE_ENOMEM, "Resize: out of memory");
        }
        resize_axis(nd, scales[d], crop ? roi : NULL, src, bufs[which], prod_range(&cur, 0, d), cur.d[d], nx.d[d],
                    shape_numel_from(&cur, d + 1));
        src = bufs[which];
        which ^= 1;
        cur = nx;
        total = n;
    }
    if (total != te_shape_numel(so)) {
        free(bufs[0]);
        free(bufs[1]);
        return te_errf(err, TE_ESHAPE, "Resize: output size mismatch");
    }
    memmove(y, src, (size_t)total * sizeof(float));
    free(bufs[0]);
    free(bufs[1]);
    return TE_OK;
}

static te_status run_matmul(const te_model *m, const te_node *nd, const float *a, const float *b, float *y,
                            te_err *err)
{
    const te_shape *sa = &m->values[nd->in[0]].shape, *sb = &m->values[nd->in[1]].shape;
    const te_shape *so = &m->values[nd->out].shape;
    char p[128], q[128];
    if (sa->ndim < 2 || sb->ndim < 2 || so->ndim < 2 || sa->d[sa->ndim - 1] != sb->d[sb->ndim - 2] ||
        so->d[so->ndim - 2] != sa->d[sa->ndim - 2] || so->d[so->ndim - 1] != sb->d[sb->ndim - 1])
        return te_errf(err, TE_ESHAPE, "MatMul: operands %s and %s do not multiply", te_shape_str(sa, p, sizeof p),
                       te_shape_str(sb, q, sizeof q));
    int64_t M = sa->d[sa->ndim - 2], K = sa->d[sa->ndim - 1], N = sb->d[sb->ndim - 1];
    /* batch dims: broadcast in units of whole matrices */
    te_shape ba = {sa->ndim - 2, {0}}, bb = {sb->ndim - 2, {0}}, bo = {so->ndim - 2, {0}};
    memcpy(ba.d, sa->d, (size_t)ba.ndim * sizeof ba.d[0]);
    memcpy(bb.d, sb->d, (size_t)bb.ndim * sizeof bb.d[0]);
    memcpy(bo.d, so->d, (size_t)bo.ndim * sizeof bo.d[0]);
    te_status st;
    int64_t sta[TE_MAX_DIMS] = {0}, stb[TE_MAX_DIMS] = {0}, idx[TE_MAX_DIMS] = {0};
    if (bo.ndim > 0 && ((st = check_bcast_shape(&ba, &bb, &bo, err)) != TE_OK ||
                        (st = bcast_strides(&ba, &bo, sta, "first operand", err)) != TE_OK ||
                        (st = bcast_strides(&bb, &bo, stb, "second operand", err)) != TE_OK))
        return st;
    int64_t nb = te_shape_numel(&bo), oa = 0, ob = 0;
    for (int64_t t = 0; t < nb; t++) {
        const float *A = a + oa * M * K, *B = b + ob * K * N;
        float *Y = y + t * M * N;
        for (int64_t i = 0; i < M; i++)
            for (int64_t j = 0; j < N; j++) {
                double acc = 0;
                for (int64_t k = 0; k < K; k++)
                    acc += (double)A[i * K + k] * B[k * N + j];
                Y[i * N + j] = (float)acc;
            }
        for (int d = bo.ndim - 1; d >= 0; d--) {
            oa += sta[d];
            ob += stb[d];
            if (++idx[d] < bo.d[d])
                break;
            oa -= sta[d] * bo.d[d];
            ob -= stb[d] * bo.d[d];
            idx[d] = 0;
        }
    }
    return TE_OK;
}

static te_status run_spread(const te_node *nd, const te_shape *si, const float *x, const te_shape *so, float *y,
                            te_err *err)
{
    const int64_t lim = (int64_t)1 << 31; /* bounds the index arithmetic below */
    if (si->ndim != 4 || so->ndim != 4 || nd->n_ints != 4 || si->d[0] != so->d[0] || si->d[1] != so->d[1] ||
        nd->ints[0] < 1 || nd->ints[1] < 1 || nd->ints[0] > lim || nd->ints[1] > lim || nd->ints[2] < -lim ||
        nd->ints[2] > lim || nd->ints[3] < -lim || nd->ints[3] > lim || si->d[2] > lim || si->d[3] > lim)
        return te_errf(err, TE_EINVAL, "Spread: needs 4-D NCHW input and output and 4 ints in range");
    int64_t sh = nd->ints[0], sw = nd->ints[1], ot = nd->ints[2], ol = nd->ints[3];
    int64_t H = si->d[2], W = si->d[3], OH = so->d[2], OW = so->d[3], planes = si->d[0] * si->d[1];
    memset(y, 0, (size_t)te_shape_numel(so) * sizeof(float));
    for (int64_t p = 0; p < planes; p++)
        for (int64_t i = 0; i < H; i++) {
            int64_t oi = ot + i * sh;
            if (oi < 0 || oi >= OH)
                continue;
            for (int64_t j = 0; j < W; j++) {
                int64_t oj = ol + j * sw;
                if (oj >= 0 && oj < OW)
                    y[(p * OH + oi) * OW + oj] = x[(p * H + i) * W + j];
            }
        }
    return TE_OK;
}

/* TopK's order: the larger (smaller) value first, the lower index first
 * among equals (ONNX); NaN counts as larger than every number, so that the
 * order is total. */
typedef struct topk_item {
    float v;
    int64_t i;
} topk_item;

static int topk_cmp_core(const topk_item *a, const topk_item *b, int largest)
{
    int an = isnan(a->v), bn = isnan(b->v);
    int c = an || bn ? an - bn : (a->v > b->v) - (a->v < b->v);
    if (!largest)
        c = -c;
    if (c)
        return -c;
    return (a->i > b->i) - (a->i < b->i);
}
static int topk_cmp_largest(const void *a, const void *b) { return topk_cmp_core(a, b, 1); }
static int topk_cmp_smallest(const void *a, const void *b) { return topk_cmp_core(a, b, 0); }

static te_status run_topk(const te_node *nd, const te_shape *si, const float *x, const te_shape *so, float *y,
                          te_err *err)
{
    int ax = 0;
    te_status st = norm_axis(nd->axis, si->ndim, &ax, err);
    if (st != TE_OK)
        return st;
    if (nd->n_ints != 4 || !nd->ints)
        return te_errf(err, TE_EINVAL, "TopK needs 4 ints (k, largest, sorted, want), has %d", nd->n_ints);
    int64_t k = nd->ints[0], L = si->d[ax], want = nd->ints[3];
    if (k < 1 || k > L || want < 0 || want > 1 || L > ((int64_t)1 << 24))
        return te_errf(err, TE_EINVAL, "TopK: k %lld out of 1..%lld, want %lld or an axis longer than 2^24",
                       (long long)k, (long long)L, (long long)want);
    for (int d = 0; d < si->ndim; d++)
        if (so->ndim != si->ndim || so->d[d] != (d == ax ? k : si->d[d]))
            return te_errf(err, TE_ESHAPE, "TopK: output shape does not match the input with k %lld", (long long)k);
    topk_item *it = malloc((size_t)L * sizeof *it);
    if (!it)
        return te_errf(err, TE_ENOMEM, "TopK: out of memory");
    int64_t outer = prod_range(si, 0, ax), inner = prod_range(si, ax + 1, si->ndim);
    for (int64_t o = 0; o < outer; o++) {
        for (int64_t i = 0; i < inner; i++) {
            const float *xs = x + o * L * inner + i;
            float *ys = y + o * k * inner + i;
            for (int64_t j = 0; j < L; j++)
                it[j] = (topk_item){xs[j * inner], j};
            qsort(it, (size_t)L, sizeof *it, nd->ints[1] ? topk_cmp_largest : topk_cmp_smallest);
            for (int64_t j = 0; j < k; j++)
                ys[j * inner] = want ? (float)it[j].i : it[j].v;
        }
    }
    free(it);
    return TE_OK;
}

/* NonMaxSuppression as onnxruntime runs it: per batch and class the boxes
 * whose score passes the threshold (strictly greater), by score (the lower
 * index first among equals), each kept unless its IoU with a box already
 * kept for that class is above iou_threshold, at most max_output_boxes_per_class
 * of them.  A box is any two opposite corners ([y1, x1, y2, x2] in either
 * order) or [x_center, y_center, width, height] (center_point_box 1). */
typedef struct nms_box {
    float y1, x1, y2, x2, area;
} nms_box;

static nms_box nms_corners(const float *b, int center)
{
    nms_box r;
    if (center) {
        r.x1 = b[0] - b[2] / 2, r.x2 = b[0] + b[2] / 2;
        r.y1 = b[1] - b[3] / 2, r.y2 = b[1] + b[3] / 2;
    } else {
        r.y1 = fminf(b[0], b[2]), r.y2 = fmaxf(b[0], b[2]);
        r.x1 = fminf(b[1], b[3]), r.x2 = fmaxf(b[1], b[3]);
    }
    r.area = (r.y2 - r.y1) * (r.x2 - r.x1);
    return r;
}

static int nms_suppress(const nms_box *a, const nms_box *b, float iou_threshold)
{
    if (a->area <= 0 || b->area <= 0)
        return 0;
    float iy1 = fmaxf(a->y1, b->y1), ix1 = fmaxf(a->x1, b->x1);
    float iy2 = fminf(a->y2, b->y2), ix2 = fminf(a->x2, b->x2);
    if (iy2 <= iy1 || ix2 <= ix1)
        return 0;
    float inter = (iy2 - iy1) * (ix2 - ix1);
    return inter / (a->area + b->area - inter) > iou_threshold;
}

static te_status run_nms(const te_model *m, const te_node *nd, const float *boxes, const float *scores, float *y,
                         int64_t *rows, te_err *err)
{
    const te_shape *sb = &m->values[nd->in[0]].shape, *ss = &m->values[nd->in[1]].shape;
    const te_shape *so = &m->values[nd->out].shape;
    if (sb->ndim != 3 || sb->d[2] != 4 || ss->ndim != 3 || ss->d[0] != sb->d[0] || ss->d[2] != sb->d[1])
        return te_errf(err, TE_ESHAPE, "NonMaxSuppression: boxes must be [B, N, 4] and scores [B, C, N]");
    if (nd->n_ints != 3 || !nd->ints || nd->ints[0] < 0)
        return te_errf(err, TE_EINVAL, "NonMaxSuppression needs 3 ints (max boxes >= 0, center, has threshold)");
    int64_t B = sb->d[0], N = sb->d[1], C = ss->d[1];
    int64_t per = nd->ints[0] < N ? nd->ints[0] : N;
    if (so->ndim != 2 || so->d[1] != 3 || so->d[0] < B * C * per)
        return te_errf(err, TE_ESHAPE, "NonMaxSuppression: output must be [>= %lld, 3]", (long long)(B * C * per));
    topk_item *it = malloc((size_t)(N ? N : 1) * sizeof *it);
    nms_box *bx = malloc((size_t)(N ? N : 1) * sizeof *bx);
    int64_t *kept = malloc((size_t)(per ? per : 1) * sizeof *kept);
    if (!it || !bx || !kept) {
        free(it), free(bx), free(kept);
        return te_errf(err, TE_ENOMEM, "NonMaxSuppression: out of memory");
    }
    int64_t out = 0;
    for (int64_t b = 0; b < B; b++) {
        for (int64_t i = 0; i < N; i++)
            bx[i] = nms_corners(boxes + (b * N + i) * 4, nd->ints[1] != 0);
        for (int64_t c = 0; c < C && per > 0; c++) {
            const float *sc = scores + (b * C + c) * N;
            int64_t n = 0, nk = 0;
            for (int64_t i = 0; i < N; i++)
                if (!nd->ints[2] || sc[i] > nd->beta)
                    it[n++] = (topk_item){sc[i], i};
            qsort(it, (size_t)n, sizeof *it, topk_cmp_largest);
            for (int64_t j = 0; j < n && nk < per; j++) {
                int drop = 0;
                for (int64_t q = 0; q < nk && !drop; q++)
                    drop = nms_suppress(&bx[it[j].i], &bx[kept[q]], nd->alpha);
                if (drop)
                    continue;
                kept[nk++] = it[j].i;
                y[out * 3] = (float)b, y[out * 3 + 1] = (float)c, y[out * 3 + 2] = (float)it[j].i;
                out++;
            }
        }
    }
    free(it), free(bx), free(kept);
    if (rows)
        *rows = out;
    return TE_OK;
}

/* RoiAlign as onnxruntime (and the ONNX reference) compute it: per output
 * bin a grid of sampling points (sampling_ratio, or ceil(roi size / output
 * size) when 0), each bilinearly interpolated (points more than one pixel
 * outside give 0, points just outside clamp to the edge); avg averages the
 * points, max takes the largest weighted corner of each point and the
 * largest over the points.  output_half_pixel (half_pixel 0, opset 10)
 * keeps roi coordinates as they are and makes each roi at least 1x1. */
static float roi_sample(const float *plane, int64_t H, int64_t W, double y, double x, int max_mode)
{
    if (y < -1.0 || y > (double)H || x < -1.0 || x > (double)W)
        return 0.0f;
    y = y <= 0 ? 0 : y;
    x = x <= 0 ? 0 : x;
    int64_t yl = (int64_t)y, xl = (int64_t)x, yh, xh;
    if (yl >= H - 1)
        yh = yl = H - 1, y = (double)yl;
    else
        yh = yl + 1;
    if (xl >= W - 1)
        xh = xl = W - 1, x = (double)xl;
    else
        xh = xl + 1;
    float ly = (float)(y - (double)yl), lx = (float)(x - (double)xl), hy = 1.0f - ly, hx = 1.0f - lx;
    float v1 = hy * hx * plane[yl * W + xl], v2 = hy * lx * plane[yl * W + xh];
    float v3 = ly * hx * plane[yh * W + xl], v4 = ly * lx * plane[yh * W + xh];
    return max_mode ? fmaxf(fmaxf(fmaxf(v1, v2), v3), v4) : v1 + v2 + v3 + v4;
}

static te_status run_roi_align(const te_model *m, const te_node *nd, const float *const *in, float *y, te_err *err)
{
    const te_shape *sx = &m->values[nd->in[0]].shape, *sr = &m->values[nd->in[1]].shape;
    const te_shape *sb = &m->values[nd->in[2]].shape, *so = &m->values[nd->out].shape;
    if (nd->n_ints != 5 || !nd->ints || nd->ints[1] < 1 || nd->ints[2] < 1 || nd->ints[3] < 0)
        return te_errf(err, TE_EINVAL, "RoiAlign needs 5 ints (mode, output size >= 1, sampling_ratio >= 0, "
                       "half_pixel)");
    int64_t R = sr->ndim == 2 ? sr->d[0] : -1, OH = nd->ints[1], OW = nd->ints[2];
    if (sx->ndim != 4 || sr->ndim != 2 || sr->d[1] != 4 || te_shape_numel(sb) != R || so->ndim != 4 ||
        so->d[0] != R || so->d[1] != sx->d[1] || so->d[2] != OH || so->d[3] != OW)
        return te_errf(err, TE_ESHAPE, "RoiAlign: X must be [N, C, H, W], rois [R, 4], batch indices [R] and the "
                       "output [R, C, %lld, %lld]", (long long)OH, (long long)OW);
    int64_t N = sx->d[0], C = sx->d[1], H = sx->d[2], W = sx->d[3];
    int max_mode = nd->ints[0] != 0;
    double off = nd->ints[4] ? 0.5 : 0.0, scale = nd->alpha;
    for (int64_t r = 0; r < R; r++) {
        float bf = in[2][r];
        if (!(bf >= 0 && bf < (float)N && bf == floorf(bf)))
            return te_errf(err, TE_EINVAL, "RoiAlign: roi %lld has batch index %g (0..%lld)", (long long)r, bf,
                           (long long)(N - 1));
        const float *roi = in[1] + r * 4;
        double x0 = roi[0] * scale - off, y0 = roi[1] * scale - off;
        double rw = roi[2] * scale - off - x0, rh = roi[3] * scale - off - y0;
        if (!nd->ints[4]) {
            rw = rw > 1 ? rw : 1;
            rh = rh > 1 ? rh : 1;
        }
        double bh = rh / (double)OH, bw = rw / (double)OW;
        int64_t gh = nd->ints[3] ? nd->ints[3] : (int64_t)ceil(rh / (double)OH);
        int64_t gw = nd->ints[3] ? nd->ints[3] : (int64_t)ceil(rw / (double)OW);
        double count = (double)(gh * gw > 1 ? gh * gw : 1);
        for (int64_t c = 0; c < C; c++) {
            const float *plane = in[0] + ((int64_t)bf * C + c) * H * W;
            float *out = y + (r * C + c) * OH * OW;
            for (int64_t ph = 0; ph < OH; ph++)
                for (int64_t pw = 0; pw < OW; pw++) {
                    double acc = 0;
                    float mx = 0;
                    for (int64_t iy = 0; iy < gh; iy++)
                        for (int64_t ix = 0; ix < gw; ix++) {
                            double yy = y0 + (double)ph * bh + ((double)iy + 0.5) * bh / (double)gh;
                            double xx = x0 + (double)pw * bw + ((double)ix + 0.5) * bw / (double)gw;
                            float v = roi_sample(plane, H, W, yy, xx, max_mode);
                            acc += v;
                            mx = iy == 0 && ix == 0 ? v : fmaxf(mx, v);
                        }
                    out[ph * OW + pw] = max_mode ? mx : (float)(acc / count);
                }
        }
    }
    return TE_OK;
}

/* ---- dispatch ---------------------------------------------------------- */

/* The executor's column of the op table (te_model.c has the rest): one
 * runner per te_op, NULL for the linear ops, which te_exec hands to a
 * te_linear_fn. */
typedef struct op_call {
    const te_model *m;
    const te_node *nd;
    const float *const *in;
    float *out;
    const te_shape *s0, *so; /* first input's and output's shapes */
    te_err *err;
    int64_t *rows;           /* a dyn_rows op's output rows (NULL: not wanted) */
} op_call;
typedef te_status (*op_runner)(const op_call *c);

static te_status r_unary(const op_call *c)
{
    te_status st = same_numel(c->s0, c->so, c->err);
    if (st == TE_OK)
        run_unary(c->nd, c->in[0], c->out, te_shape_numel(c->so));
    return st;
}

static te_status r_reshape(const op_call *c)
{
    te_status st = same_numel(c->s0, c->so, c->err);
    if (st == TE_OK && c->out != c->in[0])
        memmove(c->out, c->in[0], (size_t)te_shape_numel(c->so) * sizeof(float));
    return st;
}

static te_status r_prelu(const op_call *c)
{
    /* the slope broadcasts onto the input (unidirectionally) */
    char a[128], b[128];
    int same = c->s0->ndim == c->so->ndim;
    for (int d = 0; same && d < c->so->ndim; d++)
        same = c->s0->d[d] == c->so->d[d];
    if (!same)
        return te_errf(c->err, TE_ESHAPE, "PRelu: input %s and output %s differ", te_shape_str(c->s0, a, sizeof a),
                       te_shape_str(c->so, b, sizeof b));
    return run_binary(c->nd->op, c->so, c->in[0], &c->m->values[c->nd->in[1]].shape, c->in[1], c->so, c->out,
                      c->err);
}

static te_status r_binary(const op_call *c)
{
    const te_shape *s1 = &c->m->values[c->nd->in[1]].shape;
    te_status st = check_bcast_shape(c->s0, s1, c->so, c->err);
    return st != TE_OK ? st : run_binary(c->nd->op, c->s0, c->in[0], s1, c->in[1], c->so, c->out, c->err);
}

static te_status r_pool(const op_call *c) { return run_pool(c->nd, c->s0, c->in[0], c->so, c->out, c->err); }
static te_status r_gap(const op_call *c) { return run_global_avgpool(c->s0, c->in[0], c->so, c->out, c->err); }
static te_status r_lrn(const op_call *c) { return run_lrn(c->nd, c->s0, c->in[0], c->so, c->out, c->err); }
static te_status r_concat(const op_call *c) { return run_concat(c->m, c->nd, c->in, c->out, c->err); }
static te_status r_softmax(const op_call *c) { return run_softmax(c->nd, c->s0, c->in[0], c->so, c->out, c->err); }
static te_status r_pad(const op_call *c) { return run_pad(c->nd, c->s0, c->in[0], c->so, c->out, c->err); }
static te_status r_lpnorm(const op_call *c) { return run_lpnorm(c->nd, c->s0, c->in[0], c->so, c->out, c->err); }
static te_status r_reduce(const op_call *c) { return run_reduce(c->nd, c->s0, c->in[0], c->so, c->out, c->err); }
static te_status r_transpose(const op_call *c)
{
    return run_transpose(c->nd, c->s0, c->in[0], c->so, c->out, c->err);
}
static te_status r_layer_norm(const op_call *c) { return run_layer_norm(c->m, c->nd, c->in, c->out, c->err); }
static te_status r_slice(const op_call *c) { return run_slice(c->nd, c->s0, c->in[0], c->so, c->out, c->err); }
static te_status r_gather(const op_call *c) { return run_gather(c->m, c->nd, c->in[0], c->in[1], c->out, c->err); }
static te_status r_resize(const op_call *c) { return run_resize(c->m, c->nd, c->in[0], c->in[1], c->out, c->err); }
static te_status r_matmul(const op_call *c) { return run_matmul(c->m, c->nd, c->in[0], c->in[1], c->out, c->err); }
static te_status r_spread(const op_call *c) { return run_spread(c->nd, c->s0, c->in[0], c->so, c->out, c->err); }
static te_status r_topk(const op_call *c) { return run_topk(c->nd, c->s0, c->in[0], c->so, c->out, c->err); }
static te_status r_nms(const op_call *c) { return run_nms(c->m, c->nd, c->in[0], c->in[1], c->out, c->rows, c->err); }
static te_status r_roi_align(const op_call *c) { return run_roi_align(c->m, c->nd, c->in, c->out, c->err); }

#define r_none NULL /* te_ops.def: not run here (Linear: the caller's) */
static const op_runner runners[TE_OP_COUNT_] = {
#define TE_OP(ID, code, name, min_in, max_in, out_flops, in_flops, why, dyn_rows, dyn, run) [TE_OP_##ID] = run,
#include "te_ops.def"
#undef TE_OP
};
#undef r_none

te_status te_op_run(const te_model *m, const te_node *node, const float *const *in, float *out, te_err *err)
{
    return te_op_run_rows(m, node, in, out, NULL, err);
}

te_status te_op_run_rows(const te_model *m, const te_node *node, const float *const *in, float *out, int64_t *rows,
                         te_err *err)
{
    if (!m || !node || !in || !out)
        return te_errf(err, TE_EINVAL, "te_op_run: NULL argument");
    const te_op_desc *desc = te_op_info(node->op);
    if (!desc || node->op == TE_OP_INVALID)
        return te_errf(err, TE_EUNSUPPORTED, "unsupported op %d", (int)node->op);
    if (node->n_in < desc->min_in || node->n_in > desc->max_in)
        return te_errf(err, TE_EINVAL, "%s needs %d to %d inputs, node has %d", desc->name, desc->min_in,
                       desc->max_in, node->n_in);
    if (node->out < 0 || node->out >= m->n_values)
        return te_errf(err, TE_EINVAL, "output value id %d out of range", node->out);
    for (int k = 0; k < node->n_in; k++) {
        if (node->in[k] < 0 || node->in[k] >= m->n_values)
            return te_errf(err, TE_EINVAL, "input value id %d out of range", node->in[k]);
        if (!in[k])
            return te_errf(err, TE_EINVAL, "input %d has no data", k);
    }
    op_call c = {m, node, in, out, &m->values[node->in[0]].shape, &m->values[node->out].shape, err, rows};
    if (rows)
        *rows = c.so->ndim > 0 ? c.so->d[0] : 1;
    op_runner run = runners[node->op];
    if (!run)
        return te_errf(err, TE_EINVAL, "%s is not a non-linear op (run it through a te_linear_fn)",
                       te_op_name(node->op));
    return run(&c);
}
