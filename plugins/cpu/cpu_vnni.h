/* The CPU plugin's AVX-512 VNNI kernels (internal to the plugin).
 *
 * A blinded input x (ring element of Z_2^l) is split into signed digits
 * ("limbs") x = sum_i d_i 2^off_i (mod 2^l) and each limb is multiplied by
 * the 16-bit weights with vpdpwssd (pairs of int16 products summed into
 * int32 lanes), then the limb sums are shifted and added mod 2^64.
 *
 * A limb's sum S_i is needed mod 2^(l - off_i).  When l - off_i <= 32 the
 * wrapping int32 accumulator is exact enough and the limb can hold 16 bits.
 * Otherwise S_i must be exact: such limbs hold 8-bit digits, and the
 * accumulators are widened to 64 bits every CPU_VNNI_KC_PAIRS steps, before
 * they could overflow (|w| <= 2^15, |d| <= 2^7: 240 steps of two products
 * stay below 2^31).  The plan for a width l is fixed, see cpu_vnni_plan(). */
#ifndef TE_CPU_VNNI_H
#define TE_CPU_VNNI_H

#include <stdint.h>

#define CPU_VNNI_MAX_LIMBS 6
#define CPU_VNNI_KC_PAIRS 240  /* pair steps between widenings */
#define CPU_VNNI_BLOCK 32      /* output channels per kernel call */
#define CPU_VNNI_NC 12         /* columns per micro-tile */
#define CPU_VNNI_ROW_STRIDE_MAX 5 /* row tiles pack from digit planes up to this stride (11*5+1 <= 64 lanes) */

typedef struct cpu_vnni_plan {
    int nl;                         /* limbs */
    int nc;                         /* columns per micro-tile of the main kernel */
    int off[CPU_VNNI_MAX_LIMBS];    /* bit offset of each limb */
    int bits[CPU_VNNI_MAX_LIMBS];   /* digit width (8 or 16) */
} cpu_vnni_plan;

/* 1 when this CPU runs the VNNI kernels (AVX-512 F/BW/VL/VNNI). */
int cpu_vnni_supported(void);

void cpu_vnni_plan_for(unsigned l, cpu_vnni_plan *p);

/* im2col geometry of one group (FC: H = W = HW = 1, k_h = k_w = 1, icg = K). */
typedef struct cpu_vnni_im2col {
    int64_t icg, k_h, k_w, dil_h, dil_w, H, W, HW, K2;
    int64_t stride_w;
    int row;    /* the micro-tile's columns are consecutive outputs of one row:
                 * base and ih0 equal, iw0[c] = iw0[0] + c * stride_w */
    const int16_t *dig; /* digit planes of the input (or NULL): limb l of
                         * input i at dig[l * plane + i]; used for rows */
    int64_t plane;
} cpu_vnni_im2col;

/* Digit planes of in[i0..i1) (see cpu_vnni_im2col.dig). */
void cpu_vnni_digit_planes(const cpu_vnni_plan *p, const uint64_t *in, int64_t i0, int64_t i1, int16_t *dig,
                           int64_t plane);

/* Digit pairs of two input rows (channels k = 2p and 2p + 1; odd NULL:
 * zeros), the kernel's operand as it is for a 1x1 stride-1 layer (a tile
 * copies its rows, see cpu_vnni_copy_pairs):
 * dst[l * plane + i] = limb l's digit of even[i] (low half) and of odd[i]
 * (high half), i < n. */
void cpu_vnni_digit_pairs(const cpu_vnni_plan *p, const uint64_t *even, const uint64_t *odd, int64_t n,
                          int32_t *dst, int64_t plane);

/* One limb's micro-tile of `real` columns from digit pairs (row stride
 * sstride) into the panel layout: dst[p * CPU_VNNI_NC + c] = src[p * sstride + c]. */
void cpu_vnni_copy_pairs(const int32_t *src, int64_t sstride, int64_t np, int real, int32_t *dst);

/* Pack one micro-tile of `real` <= CPU_VNNI_NC columns: column c reads input
 * in[base[c] + ci*HW + ih*W + iw], ih = ih0[c] + kh*dil_h, iw = iw0[c] + kw*dil_w
 * (0 outside the plane), and dst[(l * K2 + p) * CPU_VNNI_NC + c] receives
 * limb l's digits of k = 2p (low half) and 2p + 1 (high half); columns
 * >= real get zeros. */
void cpu_vnni_pack_tile(const cpu_vnni_plan *p, const cpu_vnni_im2col *g, const uint64_t *in, const int64_t *base,
                        const int64_t *ih0, const int64_t *iw0, int real, int32_t *dst);

/* One limb, one 32-channel block, np <= CPU_VNNI_KC_PAIRS pair steps, nc
 * (1..CPU_VNNI_NC) columns:
 *   w:  [np][32 channels][2] int16 (channel c: k = 2p and 2p+1)
 *   x:  x[p * pstride + c] = the limb's digit pair (k = 2p low half, 2p+1 high)
 *   res[c * ldres + ch] += (int64)(sum_p ...) << shift   (mod 2^64)
 * or, with add = 0, res[...] = (int64)(sum_p ...) << shift. */
void cpu_vnni_kernel(int nc, int shift, int add, const int16_t *w, const int32_t *x, int64_t np, int64_t pstride,
                     uint64_t *res, int64_t ldres);

/* ncols (<= CPU_VNNI_NC) consecutive output positions of nch channels:
 * dst[o * P + c] = res[c * ldres + o] & mask. */
void cpu_vnni_store(const uint64_t *res, int64_t ldres, int ncols, int64_t nch, uint64_t *dst, int64_t P,
                    uint64_t mask);

#endif
