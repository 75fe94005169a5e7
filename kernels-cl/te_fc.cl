/* Fully connected layer with a small batch (matrix-vector products): one work
 * group of TE_FC_WG items per output row and sample; each item sums a strided
 * slice of the row (coalesced weight reads), then a tree reduction in local
 * memory.  Addition mod 2^64 is associative, so the order does not matter
 * and the masked result is exact mod 2^l. */
#define TE_FC_WG 64

__kernel __attribute__((reqd_work_group_size(TE_FC_WG, 1, 1)))
void te_fc_gemv(__global const int *w, __global const ulong *in, __global ulong *out, int N, int K,
                ulong mask)
{
    __local ulong part[TE_FC_WG];
    const int o = get_group_id(0), b = get_global_id(1);
    const int lid = get_local_id(0);
    __global const int *wr = w + (size_t)o * (size_t)K;
    __global const ulong *x = in + (size_t)b * (size_t)K;
    ulong acc = 0;
    for (int k = lid; k < K; k += TE_FC_WG)
        acc += (ulong)(long)wr[k] * x[k];
    part[lid] = acc;
    barrier(CLK_LOCAL_MEM_FENCE);
    for (int s = TE_FC_WG / 2; s > 0; s >>= 1) {
        if (lid < s)
            part[lid] += part[lid + s];
        barrier(CLK_LOCAL_MEM_FENCE);
    }
    if (lid == 0)
        out[(size_t)b * (size_t)N + (size_t)o] = part[0] & mask;
}
