/* The exact DGEMM limb path (built only on devices with cl_khr_fp64).
 *
 * Inputs x in [0, 2^l) are split into n_x limbs of xb bits, weights into n_w
 * limbs of wb bits (the top one signed), so that for every pair of limbs
 *   C_ij[o][c] = sum_k w_j[o][k] * x_i[k][c]
 * has |every partial sum| <= K * max|w_j| * (2^xb - 1) < 2^53: CLBlast DGEMM
 * computes it exactly, in any summation order, with or without FMA.  Then
 *   y = sum_ij C_ij << (xb * i + wb * j)   (mod 2^64, so mod 2^l)
 * in ulong, which wraps; pairs with xb * i + wb * j >= l vanish mod 2^l and
 * are neither computed nor read.
 *
 * Layouts (row-major, per group g, as CLBlast reads them):
 *   A = wd[g][j * M + o][k]            (n_w * M rows, built on the host)
 *   B = col[g][k][i * ncols + c]       (n_x * ncols columns, built here)
 *   C = cd[g][j * M + o][i * ncols + c] */
#pragma OPENCL EXTENSION cl_khr_fp64 : enable

/* One work item per (column, k, group); writes the n_x limbs of one input. */
__kernel void te_im2col_limbs(__global const ulong *in, __global const int4 *ktab, __global double *col,
                              int ncols, int K, int P, int out_w, int in_h, int in_w, int in_len, int group_in,
                              int stride_h, int stride_w, int pad_t, int pad_l, int xb, int n_x)
{
    int c = get_global_id(0), k = get_global_id(1), g = get_global_id(2);
    if (c >= ncols || k >= K)
        return;
    int b = c / P, pos = c - b * P;
    int oh = pos / out_w, ow = pos - oh * out_w;
    int4 t = ktab[k];
    int ih = oh * stride_h - pad_t + t.y, iw = ow * stride_w - pad_l + t.z;
    ulong v = 0;
    if ((uint)ih < (uint)in_h && (uint)iw < (uint)in_w)
        v = in[b * in_len + g * group_in + t.x + ih * in_w + iw];
    const ulong lm = xb >= 64 ? ~(ulong)0 : (((ulong)1 << xb) - 1);
    const size_t width = (size_t)n_x * (size_t)ncols;
    __global double *row = col + ((size_t)g * K + k) * width + c;
    for (int i = 0; i < n_x; i++) {
        row[(size_t)i * ncols] = (double)(v & lm);  /* < 2^53: exact */
        v = xb >= 64 ? 0 : v >> xb;
    }
}

/* cd -> out[b][g * M + o][pos] masked to l bits; one work item per output. */
__kernel void te_limbs_combine(__global const double *cd, __global ulong *out, int total, int M, int P,
                               int out_len, int ncols, int n_x, int n_w, int xb, int wb, int l, ulong mask)
{
    int idx = get_global_id(0);
    if (idx >= total)
        return;
    int b = idx / out_len, r = idx - b * out_len;
    int oc = r / P, pos = r - oc * P;
    int g = oc / M, o = oc - g * M;
    const size_t width = (size_t)n_x * (size_t)ncols, cbase = (size_t)b * P + pos;
    ulong acc = 0;
    for (int j = 0; j < n_w; j++) {
        int sj = wb * j;
        if (sj >= l)
            break;
        __global const double *crow = cd + ((size_t)g * n_w * M + (size_t)j * M + o) * width + cbase;
        for (int i = 0; i < n_x; i++) {
            int s = sj + xb * i;
            if (s >= l)
                break;
            /* an exact integer below 2^53 in magnitude: long holds it, and
             * (ulong) of it is its value mod 2^64 */
            acc += (ulong)(long)crow[(size_t)i * ncols] << s;
        }
    }
    out[idx] = acc & mask;
}
