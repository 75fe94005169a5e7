/* Plain float32 linear layers: im2col + OpenBLAS SGEMM (see te_f32.h). */
#include "te_f32.h"

#include <cblas.h>
#include <string.h>

int64_t te_f32_scratch_len(const te_linear_geom *g, int64_t batch)
{
    if (g->kind == TE_LIN_FC)
        return 1;
    int64_t P = g->out_h * g->out_w, N = batch * P;
    return te_geom_dot_len(g) * N + (batch > 1 ? g->out_c * N : 0);
}

/* col[k][b * P + pos] for group grp: the batch's columns side by side. */
static void im2col(const te_linear_geom *g, const float *x, int64_t batch, int64_t grp, float *col)
{
    int64_t icg = g->in_c / g->group, P = g->out_h * g->out_w, N = batch * P;
    int64_t H = g->in_h, W = g->in_w, in_len = g->in_c * H * W;
    int64_t k = 0;
    for (int64_t ci = 0; ci < icg; ci++)
        for (int64_t kh = 0; kh < g->k_h; kh++)
            for (int64_t kw = 0; kw < g->k_w; kw++, k++) {
                float *row = col + k * N;
                for (int64_t b = 0; b < batch; b++) {
                    const float *plane = x + b * in_len + (grp * icg + ci) * H * W;
                    for (int64_t oh = 0; oh < g->out_h; oh++) {
                        int64_t ih = oh * g->stride_h - g->pad_t + kh * g->dil_h;
                        float *r = row + b * P + oh * g->out_w;
                        if (ih < 0 || ih >= H) {
                            memset(r, 0, (size_t)g->out_w * sizeof *r);
                            continue;
                        }
                        const float *src = plane + ih * W;
                        for (int64_t ow = 0; ow < g->out_w; ow++) {
                            int64_t iw = ow * g->stride_w - g->pad_l + kw * g->dil_w;
                            r[ow] = (iw >= 0 && iw < W) ? src[iw] : 0.0f;
                        }
                    }
                }
            }
}

void te_f32_layer(const te_linear_geom *g, const float *w, const float *x, int64_t batch, float *scratch,
                  float *y)
{
    if (g->kind == TE_LIN_FC) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)batch, (int)g->out_c, (int)g->in_c, 1.0f, x,
                    (int)g->in_c, w, (int)g->in_c, 0.0f, y, (int)g->out_c);
        return;
    }
    int64_t ocg = g->out_c / g->group, K = te_geom_dot_len(g), P = g->out_h * g->out_w, N = batch * P;
    float *col = scratch;
    /* One GEMM per group over all the batch's columns gives [out_c][batch][P];
     * batch 1 is already sample-major, larger batches are staged and copied. */
    float *dst = batch > 1 ? scratch + K * N : y;
    for (int64_t grp = 0; grp < g->group; grp++) {
        im2col(g, x, batch, grp, col);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)ocg, (int)N, (int)K, 1.0f, w + grp * ocg * K,
                    (int)K, col, (int)N, 0.0f, dst + grp * ocg * N, (int)N);
    }
    if (batch > 1)
        for (int64_t o = 0; o < g->out_c; o++)
            for (int64_t b = 0; b < batch; b++)
                memcpy(y + (b * g->out_c + o) * P, dst + o * N + b * P, (size_t)P * sizeof *y);
}
