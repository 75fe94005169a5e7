/* Convolution with one input channel per group (depthwise, with any channel
 * multiplier): one work item per output element, a direct k_h x k_w loop.
 * Wrapping ulong arithmetic, masked to l bits: exact mod 2^l.
 * Work item id is the output index itself: out_len = out_c * P. */
__kernel void te_depthwise(__global const int *w, __global const ulong *in, __global ulong *out,
                           int total, int out_c, int ocg, int P, int out_w, int in_h, int in_w,
                           int k_h, int k_w, int stride_h, int stride_w, int pad_t, int pad_l,
                           int dil_h, int dil_w, int in_len, ulong mask)
{
    const int id = get_global_id(0);
    if (id >= total)
        return;
    const int pos = id % P, t = id / P;
    const int o = t % out_c, b = t / out_c;
    const int c = o / ocg; /* the group's single input channel */
    const int oh = pos / out_w, ow = pos % out_w;
    const int ih0 = oh * stride_h - pad_t, iw0 = ow * stride_w - pad_l;
    __global const ulong *x = in + b * in_len + c * in_h * in_w;
    __global const int *wo = w + o * k_h * k_w;
    ulong acc = 0;
    for (int kh = 0; kh < k_h; kh++) {
        int ih = ih0 + kh * dil_h;
        if ((uint)ih >= (uint)in_h)
            continue;
        for (int kw = 0; kw < k_w; kw++) {
            int iw = iw0 + kw * dil_w;
            if ((uint)iw < (uint)in_w)
                acc += (ulong)(long)wo[kh * k_w + kw] * x[ih * in_w + iw];
        }
    }
    out[id] = acc & mask;
}
