/* The float32 baseline (no privacy, benchmarks only): im2col on the device
 * feeding CLBlast SGEMM, then a scatter into the te_linear.h output layout.
 * Also the int32 -> float weight conversion, done once per layer on first
 * use, and the shared index helpers of the im2col kernels.
 *
 * Column layout, as CLBlast reads it (row-major B of each group):
 *   col[g][k][c], c = sample * P + position, ncols = batch * P columns,
 * with ktab[k] = (ci * in_h * in_w, kh * dil_h, kw * dil_w, 0) as in te_gemm.cl. */

__kernel void te_i2f(__global const int *w, __global float *wf, int n)
{
    int i = get_global_id(0);
    if (i < n)
        wf[i] = (float)w[i];
}

/* One work item per (column, k, group). */
__kernel void te_im2col_f(__global const float *in, __global const int4 *ktab, __global float *col, int ncols,
                          int K, int P, int out_w, int in_h, int in_w, int in_len, int group_in, int stride_h,
                          int stride_w, int pad_t, int pad_l)
{
    int c = get_global_id(0), k = get_global_id(1), g = get_global_id(2);
    if (c >= ncols || k >= K)
        return;
    int b = c / P, pos = c - b * P;
    int oh = pos / out_w, ow = pos - oh * out_w;
    int4 t = ktab[k];
    int ih = oh * stride_h - pad_t + t.y, iw = ow * stride_w - pad_l + t.z;
    float v = 0.0f;
    if ((uint)ih < (uint)in_h && (uint)iw < (uint)in_w)
        v = in[b * in_len + g * group_in + t.x + ih * in_w + iw];
    col[((size_t)g * K + k) * (size_t)ncols + c] = v;
}

/* C[g][o][c] -> out[b][g * M + o][pos]; one work item per output element. */
__kernel void te_scatter_f(__global const float *C, __global float *out, int total, int M, int P, int out_len,
                           int ncols)
{
    int i = get_global_id(0);
    if (i >= total)
        return;
    int b = i / out_len, r = i - b * out_len;
    int oc = r / P, pos = r - oc * P;
    int g = oc / M, o = oc - g * M;
    out[i] = C[((size_t)g * M + o) * (size_t)ncols + (size_t)b * P + pos];
}
