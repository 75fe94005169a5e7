/* The CPU plugin's AMX int8 kernels (internal to the plugin).
 *
 * The product out = W . x mod 2^l as one int8 matrix product with 32-bit
 * accumulation (TDPBSSD / TDPBSUD, 16 x 64-byte tiles), exact:
 *
 * - a blinded input x (ring element of Z_2^l) is split into nd = ceil(l/8)
 *   balanced digits, x = sum_i d_i 2^(8i) (mod 2^(8nd)), d_i in [-128, 127]:
 *   the bytes of (x + 0x80..80) with their top bit flipped;
 * - a weight (|w| < 2^15, as on the VNNI path) is split into w = 2^8 h + u
 *   with u = w & 0xFF unsigned and h = w >> 8 in [-128, 127];
 * - the rows of the left operand are (column, digit) pairs and the right
 *   operand holds u and h of 16 channels, so one tile product yields, per
 *   row (c, i) and channel o, L[c][i] = sum_k d_i u and H[c][i] = sum_k d_i h;
 * - out[c][o] = sum_m t_m 2^(8m) mod 2^l with t_m = L[c][m] + H[c][m-1].
 *
 * t_m is needed mod 2^(l - 8m).  Where l - 8m <= 32 the wrapping int32 sums
 * suffice (and those t_m are combined in 32-bit arithmetic).  The others must
 * be exact: per 64-wide K step |t_m| grows by at most 64 (128*255 + 128*128)
 * = 3137536 < 2^22, so sums over CPU_AMX_WINDOW = 512 steps stay below
 * 1.61e9 < 2^31 (686 steps could overflow); longer dot products are cut
 * into windows whose results are added in 64 bits.
 *
 * Inputs are first written as digit planes, zero-padded by the convolution's
 * padding so that the im2col needs no bounds checks, in one of two layouts:
 *
 * - direct (icg % 64 == 0, so that a K step is one tap's channels; not
 *   used where a tile may not cross an output row and the rows are too
 *   narrow to fill the tiles, see direct_pays): per sample
 *   and stride phase (ph, pw) = (ih % sh, iw % sw) of the padded input,
 *   [ih / sh][iw / sw][digit][channel] bytes.  A K step is 64 channels of
 *   one tap, and the rows (column c, digit i), c along an output row, are
 *   then 64-byte runs at a fixed stride: the left tiles load straight from
 *   the planes, with no packing;
 * - gathered (other layers): per (sample, group) [icg/4][Hp][Wp][4 channels]
 *   ("channel quads", a K quad being 4 channels at one tap), or, for few
 *   input channels without width dilation, [icg][Hp][Wp] ("width quads", a
 *   quad being 4 consecutive kw, kw padded to a multiple of 4); a left tile
 *   row is 16 gathered dwords (column base + the quads' offsets), packed per
 *   task. */
#ifndef TE_CPU_AMX_H
#define TE_CPU_AMX_H

#include <stddef.h>
#include <stdint.h>

#include "te_model.h"

#define CPU_AMX_MAX_DIGITS 8
#define CPU_AMX_WINDOW 512      /* exact K steps (of 64) per window */
#define CPU_AMX_TILE 1024       /* bytes per tile */

/* 1 when this CPU and kernel run the AMX kernels (CPUID AMX-TILE, AMX-INT8,
 * AVX-512 F/BW/DQ/VL/VBMI, and the kernel granted the tile data state; the
 * permission is process-wide).  Otherwise 0, and why says why. */
int cpu_amx_supported(char *why, size_t n);

/* A layer packed for the AMX kernels (built by cpu_amx_prepare). */
typedef struct cpu_amx_layer {
    int fc;             /* FC: one "row" of K inputs per sample */
    int direct;         /* direct layout (else gathered) */
    int wquads;         /* gathered: width-quad layout (else channel quads) */
    int flat;           /* direct: consecutive columns are consecutive positions */
    int64_t G, icg, ocg, K;
    int64_t H, W, Hp, Wp, pt, pl;
    int64_t kh, kw, sh, sw, dh, dw;
    int64_t out_h, out_w, P, out_len, in_len;
    int64_t CQ;         /* gathered: channel quads per group */
    int64_t plane;      /* gathered: digit bytes per (sample, group) */
    int64_t Hq, Wq;     /* direct: phase plane size */
    int nph;            /* direct: stride phases read by some tap ([0] is (0, 0)) */
    int phase[64];      /* direct: ph * sw + pw of each */
    int64_t KS;         /* 64-wide K steps */
    int64_t nct;        /* 16-channel tiles per group */
    int32_t *koff;      /* gathered: [KS * 16] byte offset of each K quad */
    int8_t *w;          /* [G][nct][KS][2: u, h][16 quads][16 channels][4] */
} cpu_amx_layer;

/* Pack the weights (int32 [out_c][K], each in [-32768, 32767]) of a layer.
 * Returns 0, 1 when the layer does not suit the AMX path (left empty), or -1
 * when out of memory. */
int cpu_amx_prepare(cpu_amx_layer *A, const te_linear_geom *g, const int32_t *w);
void cpu_amx_release(cpu_amx_layer *A);

/* One run's digits: nd planes for nb samples. */
typedef struct cpu_amx_digits {
    int nd;
    unsigned l;
    int64_t nb;
    uint8_t *dig;       /* gathered: plane i at dig + i * ds; direct: one buffer */
    int64_t ds;
    int64_t *akoff;     /* direct: [KS] byte offset of each K step (cpu_amx_offsets) */
} cpu_amx_digits;

/* Bytes of the digit buffer (all nd planes) for nb samples. */
int64_t cpu_amx_digit_bytes(const cpu_amx_layer *A, int nd, int64_t nb);

/* The direct layout's K-step offsets for nd digits (akoff: KS entries). */
void cpu_amx_offsets(const cpu_amx_layer *A, int nd, int64_t *akoff);

/* Zero the digit buffer's slack (read by tile rows past a row group's last
 * column, and by width quads past a row; the sums they feed are dropped). */
void cpu_amx_clear_slack(const cpu_amx_layer *A, const cpu_amx_digits *D);

/* Digit planes, unit by unit (cpu_amx_units of them, independent). */
int64_t cpu_amx_units(const cpu_amx_layer *A, int64_t nb);
void cpu_amx_make_digits(const cpu_amx_layer *A, const cpu_amx_digits *D, const uint64_t *in, int64_t u);

/* Per-thread tile state: cpu_amx_begin before the first cpu_amx_task of a
 * thread's share of a run, cpu_amx_end after the last. */
void cpu_amx_begin(void);
void cpu_amx_end(void);

/* Row groups (up to 32 / nd output columns each, in one tile pair) per
 * convolution group, for nb samples. */
int64_t cpu_amx_groups(const cpu_amx_layer *A, int nd, int64_t nb);

/* Scratch bytes for a task of up to ngroups row groups. */
size_t cpu_amx_scratch_bytes(const cpu_amx_layer *A, int nd, int64_t ngroups);

/* Row groups [g0, g1) of convolution group grp, channel tiles [ct0, ct1):
 * out (the nb samples' outputs) receives the results mod 2^l.  scratch:
 * cpu_amx_scratch_bytes, 64-byte aligned. */
void cpu_amx_task(const cpu_amx_layer *A, const cpu_amx_digits *D, int64_t grp, int64_t g0, int64_t g1,
                  int64_t ct0, int64_t ct1, uint64_t *out, void *scratch);

#endif
