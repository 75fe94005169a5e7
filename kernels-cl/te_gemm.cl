/* Convolution and FC as one tiled GEMM over ulong, with the im2col gather
 * done while loading the input tile (no im2col buffer in device memory).
 *
 * For group g: C[o][col] = sum_k W[g*M + o][k] * B[k][col], col = b*P + pos,
 * where B[k][col] is the blinded input under tap k of output position pos of
 * sample b (zero in the padding).  Unsigned 64-bit multiply and add wrap mod
 * 2^64, so the masked result is exact mod 2^l for every l <= 64.
 *
 * ktab[k] = (ci * in_h * in_w, kh * dil_h, kw * dil_w, 0), built once per
 * layer, keeps divisions out of the inner loops.  An FC layer is the 1x1
 * convolution of an in_c x 1 x 1 input (ktab[k] = (k, 0, 0, 0)).
 *
 * By default a work group of 8 x 8 items; each accumulates a 4 x 4 block of a
 * 32 x 32 output tile; K advances in steps of 16 through local memory. */
/* The defaults; the plugin's gemm_tile= and gemm_wg= keys override them
 * with -D build options (for tuning on a GPU; docs/opencl.md). */
#ifndef TE_TM
#define TE_TM 32
#endif
#ifndef TE_TN
#define TE_TN 32
#endif
#ifndef TE_TK
#define TE_TK 16
#endif
#ifndef TE_LX
#define TE_LX 8
#endif
#ifndef TE_LY
#define TE_LY 8
#endif
#define TE_RM (TE_TM / TE_LY)
#define TE_RN (TE_TN / TE_LX)

__kernel __attribute__((reqd_work_group_size(TE_LX, TE_LY, 1)))
void te_gemm_conv(__global const int *w, __global const int4 *ktab, __global const ulong *in,
                  __global ulong *out, int M, int N, int K, int P, int out_w, int in_h, int in_w,
                  int in_len, int out_len, int group_in, int stride_h, int stride_w, int pad_t,
                  int pad_l, ulong mask)
{
    __local ulong Ws[TE_TK][TE_TM];
    __local ulong Bs[TE_TK][TE_TN];

    const int lx = get_local_id(0), ly = get_local_id(1);
    const int tid = ly * TE_LX + lx;
    const int g = get_group_id(2);
    const int col0 = get_group_id(0) * TE_TN, row0 = get_group_id(1) * TE_TM;

    /* This work item always loads the same tile column of B. */
    const int bc = tid % TE_TN, bk = tid / TE_TN;
    const int bcol = col0 + bc;
    const int bvalid = bcol < N;
    int ih0 = 0, iw0 = 0, base = 0;
    if (bvalid) {
        int b = bcol / P, pos = bcol - (bcol / P) * P;
        int oh = pos / out_w, ow = pos - (pos / out_w) * out_w;
        ih0 = oh * stride_h - pad_t;
        iw0 = ow * stride_w - pad_l;
        base = b * in_len + g * group_in;
    }
    /* ... and the same k column of W (consecutive work items, consecutive k). */
    const int wk = tid % TE_TK, wr = tid / TE_TK;
    __global const int *wg = w + (size_t)g * (size_t)M * (size_t)K;

    ulong acc[TE_RM][TE_RN];
    for (int r = 0; r < TE_RM; r++)
        for (int c = 0; c < TE_RN; c++)
            acc[r][c] = 0;

    for (int k0 = 0; k0 < K; k0 += TE_TK) {
        for (int i = 0; i < TE_TM / (TE_LX * TE_LY / TE_TK); i++) {
            int r = wr + i * (TE_LX * TE_LY / TE_TK);
            int row = row0 + r, k = k0 + wk;
            Ws[wk][r] = (row < M && k < K) ? (ulong)(long)wg[(size_t)row * (size_t)K + (size_t)k] : 0;
        }
        for (int i = 0; i < TE_TK / (TE_LX * TE_LY / TE_TN); i++) {
            int kk = bk + i * (TE_LX * TE_LY / TE_TN);
            int k = k0 + kk;
            ulong v = 0;
            if (bvalid && k < K) {
                int4 t = ktab[k];
                int ih = ih0 + t.y, iw = iw0 + t.z;
                if ((uint)ih < (uint)in_h && (uint)iw < (uint)in_w)
                    v = in[base + t.x + ih * in_w + iw];
            }
            Bs[kk][bc] = v;
        }
        barrier(CLK_LOCAL_MEM_FENCE);
        for (int kk = 0; kk < TE_TK; kk++) {
            ulong a[TE_RM], x[TE_RN];
            for (int r = 0; r < TE_RM; r++)
                a[r] = Ws[kk][ly + r * TE_LY];
            for (int c = 0; c < TE_RN; c++)
                x[c] = Bs[kk][lx + c * TE_LX];
            for (int r = 0; r < TE_RM; r++)
                for (int c = 0; c < TE_RN; c++)
                    acc[r][c] += a[r] * x[c];
        }
        barrier(CLK_LOCAL_MEM_FENCE);
    }

    for (int c = 0; c < TE_RN; c++) {
        int col = col0 + lx + c * TE_LX;
        if (col >= N)
            continue;
        int b = col / P, pos = col - (col / P) * P;
        for (int r = 0; r < TE_RM; r++) {
            int row = row0 + ly + r * TE_LY;
            if (row < M)
                out[b * out_len + (g * M + row) * P + pos] = acc[r][c] & mask;
        }
    }
}
