/* The CPU compute plugin: out = W . in mod 2^l over blinded inputs.
 *
 * Every product and sum is done in uint64_t, which wraps mod 2^64; since 2^l
 * divides 2^64 the result reduced mod 2^l is exact for every l in 1..64, with
 * no limbs and no assumption on the weights' size.
 *
 * Structure (kept open for later tuning): the columns of the computation
 * (one per output position and sample) are cut into tiles of CT columns;
 * a tile's blinded inputs are packed (im2col) into a K x CT panel of uint64,
 * then multiplied by the weight rows of the group in a register-blocked
 * kernel.  Tiny problems (FC with a small batch) use dot products instead.
 * Work items (group, column tile, output-channel chunk) are spread over
 * pthreads through an atomic counter. */
#include "te_plugin.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "te_ring.h"

#define CPU_MAX_THREADS 256
#define CPU_MAX_BATCH ((uint64_t)1 << 24)
#define CT 16           /* columns per tile */
#define ROWS 4          /* output channels per kernel call */
#define DOT_MAX_COLS 8  /* below this many columns, use dot products */
#define MIN_CHUNK_ROWS 16
#define MACS_PER_THREAD ((int64_t)1 << 17)
#define TASK_MACS ((int64_t)1 << 15)

struct te_plugin_ctx {
    int threads;
    char device_name[128];
};

struct te_plugin_layer {
    te_linear_geom g;
    int64_t icg, ocg;    /* channels per group */
    int64_t K;           /* dot length: icg * k_h * k_w (conv), in_c (FC) */
    int64_t P;           /* output positions per sample (1 for FC) */
    int64_t in_len, out_len;
    int32_t *w;          /* [out_c][K] (kept 32-bit: FC layers are bound by weight bandwidth) */
};

/* ---- config ---------------------------------------------------------- */

static int online_cpus(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : (n > CPU_MAX_THREADS ? CPU_MAX_THREADS : (int)n);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
        *--e = '\0';
    return s;
}

static te_status parse_config(const char *config, te_plugin_ctx *ctx, te_err *err)
{
    ctx->threads = online_cpus();
    if (!config)
        return TE_OK;
    const char *p = config;
    while (*p) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[128];
        if (len >= sizeof item)
            return te_errf(err, TE_EINVAL, "cpu plugin: config item too long: %.40s...", p);
        memcpy(item, p, len);
        item[len] = '\0';
        char *s = trim(item);
        if (*s) {
            char *eq = strchr(s, '=');
            if (!eq)
                return te_errf(err, TE_EINVAL, "cpu plugin: config item '%s' is not key=value", s);
            *eq = '\0';
            s = trim(s);
            const char *val = trim(eq + 1);
            if (strcmp(s, "threads") == 0) {
                char *vend;
                errno = 0;
                long n = strtol(val, &vend, 10);
                if (errno || vend == val || *vend || n < 0 || n > CPU_MAX_THREADS)
                    return te_errf(err, TE_EINVAL, "cpu plugin: threads=%s is not an integer in 0..%d", val,
                                   CPU_MAX_THREADS);
                ctx->threads = n == 0 ? online_cpus() : (int)n; /* 0 = automatic */
            } else {
                return te_errf(err, TE_EINVAL, "cpu plugin: unknown config key '%s' (known keys: threads)", s);
            }
        }
        if (!end)
            break;
        p = end + 1;
    }
    return TE_OK;
}

static te_status cpu_create(const char *config, te_plugin_ctx **out, te_err *err)
{
    *out = NULL;
    te_plugin_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return te_errf(err, TE_ENOMEM, "cpu plugin: out of memory");
    te_status st = parse_config(config, ctx, err);
    if (st != TE_OK) {
        free(ctx);
        return st;
    }
    snprintf(ctx->device_name, sizeof ctx->device_name, "CPU (%d thread%s)", ctx->threads,
             ctx->threads == 1 ? "" : "s");
    *out = ctx;
    return TE_OK;
}

static void cpu_destroy(te_plugin_ctx *ctx)
{
    free(ctx);
}

static te_status cpu_caps(te_plugin_ctx *ctx, te_plugin_caps *caps, te_err *err)
{
    memset(caps, 0, sizeof *caps);
    caps->min_ring_bits = 1;
    caps->max_ring_bits = 64;
    caps->max_batch = CPU_MAX_BATCH;
    long pages = sysconf(_SC_PHYS_PAGES), psize = sysconf(_SC_PAGESIZE);
    caps->device_memory = (pages > 0 && psize > 0) ? (uint64_t)pages * (uint64_t)psize : 0;
    snprintf(caps->device_name, sizeof caps->device_name, "%s", ctx->device_name);
    return TE_OK;
}

/* ---- layers ---------------------------------------------------------- */

static te_status check_geom(const te_linear_geom *g, te_err *err)
{
    if (g->kind == TE_LIN_FC) {
        if (g->in_c < 1 || g->out_c < 1)
            return te_errf(err, TE_ESHAPE, "cpu plugin: FC layer with %lld inputs and %lld outputs",
                           (long long)g->in_c, (long long)g->out_c);
        return TE_OK;
    }
    if (g->kind != TE_LIN_CONV)
        return te_errf(err, TE_EUNSUPPORTED, "cpu plugin: unknown linear layer kind %d", (int)g->kind);
    if (g->in_c < 1 || g->in_h < 1 || g->in_w < 1 || g->out_c < 1 || g->out_h < 1 || g->out_w < 1 ||
        g->k_h < 1 || g->k_w < 1 || g->stride_h < 1 || g->stride_w < 1 || g->dil_h < 1 || g->dil_w < 1 ||
        g->group < 1 || g->pad_t < 0 || g->pad_l < 0 || g->pad_b < 0 || g->pad_r < 0)
        return te_errf(err, TE_ESHAPE, "cpu plugin: invalid convolution geometry");
    if (g->in_c % g->group || g->out_c % g->group)
        return te_errf(err, TE_ESHAPE, "cpu plugin: %lld input / %lld output channels not divisible by %lld groups",
                       (long long)g->in_c, (long long)g->out_c, (long long)g->group);
    return TE_OK;
}

static te_status cpu_load_layer(te_plugin_ctx *ctx, const te_linear_geom *geom, const int32_t *w,
                                te_plugin_layer **out, te_err *err)
{
    *out = NULL;
    te_status st = check_geom(geom, err);
    if (st != TE_OK)
        return st;
    te_plugin_layer *L = calloc(1, sizeof *L);
    if (!L)
        return te_errf(err, TE_ENOMEM, "cpu plugin: out of memory loading a layer");
    L->g = *geom;
    if (geom->kind == TE_LIN_FC) {
        L->icg = geom->in_c;
        L->ocg = geom->out_c;
        L->K = geom->in_c;
        L->P = 1;
        L->in_len = geom->in_c;
        L->out_len = geom->out_c;
        L->g.group = 1;
    } else {
        L->icg = geom->in_c / geom->group;
        L->ocg = geom->out_c / geom->group;
        L->K = L->icg * geom->k_h * geom->k_w;
        L->P = geom->out_h * geom->out_w;
        L->in_len = geom->in_c * geom->in_h * geom->in_w;
        L->out_len = geom->out_c * L->P;
    }
    int64_t n = geom->out_c * L->K;
    L->w = malloc((size_t)n * sizeof *L->w);
    if (!L->w) {
        free(L);
        return te_errf(err, TE_ENOMEM, "cpu plugin: out of memory for %lld weights", (long long)n);
    }
    memcpy(L->w, w, (size_t)n * sizeof *L->w);
    *out = L;
    return TE_OK;
}

static void cpu_release_layer(te_plugin_ctx *ctx, te_plugin_layer *L)
{
    if (L) {
        free(L->w);
        free(L);
    }
}

/* ---- packing --------------------------------------------------------- */

/* Column c of the computation is (sample b, output position pos = oh*out_w+ow);
 * walked incrementally to keep divisions out of the inner loops. */
typedef struct colpos {
    int64_t b, pos, oh, ow;
} colpos;

static void col_at(const te_plugin_layer *L, int64_t c, colpos *p)
{
    p->b = c / L->P;
    p->pos = c % L->P;
    p->oh = L->g.kind == TE_LIN_FC ? 0 : p->pos / L->g.out_w;
    p->ow = L->g.kind == TE_LIN_FC ? 0 : p->pos % L->g.out_w;
}

static void col_next(const te_plugin_layer *L, colpos *p)
{
    if (++p->pos == L->P) {
        p->b++;
        p->pos = p->oh = p->ow = 0;
    } else if (++p->ow == L->g.out_w) {
        p->ow = 0;
        p->oh++;
    }
}

/* Gather the inputs of columns [c0, c0+nc) of group grp as a K x stride
 * panel: dst[k * stride + j] (k-major, for the tile kernel) when
 * col_major == 0, or dst[j * K + k] when col_major != 0. */
static void pack_cols(const te_plugin_layer *L, const uint64_t *in, int64_t grp, int64_t c0, int64_t nc,
                      uint64_t *dst, int col_major)
{
    const te_linear_geom *g = &L->g;
    int64_t K = L->K;
    if (g->kind == TE_LIN_FC) {
        for (int64_t j = 0; j < nc; j++) {
            const uint64_t *x = in + (c0 + j) * L->in_len;
            if (col_major)
                memcpy(dst + j * K, x, (size_t)K * sizeof *dst);
            else
                for (int64_t k = 0; k < K; k++)
                    dst[k * CT + j] = x[k];
        }
        return;
    }
    int64_t H = g->in_h, W = g->in_w, HW = H * W;
    if (!col_major) {
        /* k-major panel: rows of CT consecutive columns, written contiguously */
        int64_t ih0[CT], iw0[CT];
        const uint64_t *bp[CT];
        colpos cp;
        col_at(L, c0, &cp);
        for (int64_t j = 0; j < nc; j++, col_next(L, &cp)) {
            ih0[j] = cp.oh * g->stride_h - g->pad_t;
            iw0[j] = cp.ow * g->stride_w - g->pad_l;
            bp[j] = in + cp.b * L->in_len + grp * L->icg * HW;
        }
        uint64_t *row = dst;
        for (int64_t ci = 0; ci < L->icg; ci++)
            for (int64_t kh = 0; kh < g->k_h; kh++)
                for (int64_t kw = 0; kw < g->k_w; kw++, row += CT) {
                    int64_t off = ci * HW, dh = kh * g->dil_h, dw = kw * g->dil_w;
                    for (int64_t j = 0; j < nc; j++) {
                        int64_t ih = ih0[j] + dh, iw = iw0[j] + dw;
                        row[j] = ((uint64_t)ih < (uint64_t)H && (uint64_t)iw < (uint64_t)W)
                                     ? bp[j][off + ih * W + iw] : 0;
                    }
                    for (int64_t j = nc; j < CT; j++)
                        row[j] = 0;
                }
        return;
    }
    int64_t rs = 1;
    colpos cp;
    col_at(L, c0, &cp);
    for (int64_t j = 0; j < nc; j++, col_next(L, &cp)) {
        int64_t ih0 = cp.oh * g->stride_h - g->pad_t;
        int64_t iw0 = cp.ow * g->stride_w - g->pad_l;
        const uint64_t *base = in + cp.b * L->in_len + grp * L->icg * HW;
        uint64_t *d = dst + j * K;
        int64_t k = 0;
        for (int64_t ci = 0; ci < L->icg; ci++) {
            const uint64_t *plane = base + ci * HW;
            for (int64_t kh = 0; kh < g->k_h; kh++) {
                int64_t ih = ih0 + kh * g->dil_h;
                if (ih < 0 || ih >= H) {
                    for (int64_t kw = 0; kw < g->k_w; kw++, k++)
                        d[k * rs] = 0;
                    continue;
                }
                const uint64_t *row = plane + ih * W;
                for (int64_t kw = 0; kw < g->k_w; kw++, k++) {
                    int64_t iw = iw0 + kw * g->dil_w;
                    d[k * rs] = (iw >= 0 && iw < W) ? row[iw] : 0;
                }
            }
        }
    }
}

/* ---- kernels --------------------------------------------------------- */

/* The kernels are compiled for several x86 levels (AVX-512 has a native
 * 64-bit multiply); the loader of the .so picks one at run time. */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && !defined(__SANITIZE_ADDRESS__)
#define CPU_CLONES __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define CPU_CLONES
#endif

/* acc[r][j] = sum_k w_r[k] * B[k][j] for ROWS weight rows (wrapping). */
CPU_CLONES
static void kernel_tile4(const int32_t *w, int64_t K, const uint64_t *B, uint64_t acc[ROWS][CT])
{
    uint64_t a0[CT] = { 0 }, a1[CT] = { 0 }, a2[CT] = { 0 }, a3[CT] = { 0 };
    const int32_t *w0 = w, *w1 = w + K, *w2 = w + 2 * K, *w3 = w + 3 * K;
    for (int64_t k = 0; k < K; k++) {
        const uint64_t *b = B + k * CT;
        uint64_t x0 = (uint64_t)(int64_t)w0[k], x1 = (uint64_t)(int64_t)w1[k];
        uint64_t x2 = (uint64_t)(int64_t)w2[k], x3 = (uint64_t)(int64_t)w3[k];
        for (int j = 0; j < CT; j++) {
            a0[j] += x0 * b[j];
            a1[j] += x1 * b[j];
            a2[j] += x2 * b[j];
            a3[j] += x3 * b[j];
        }
    }
    memcpy(acc[0], a0, sizeof a0);
    memcpy(acc[1], a1, sizeof a1);
    memcpy(acc[2], a2, sizeof a2);
    memcpy(acc[3], a3, sizeof a3);
}

/* One weight row (depthwise layers, channel tails). */
CPU_CLONES
static void kernel_tile1(const int32_t *w, int64_t K, const uint64_t *B, uint64_t acc[CT])
{
    uint64_t a0[CT] = { 0 };
    for (int64_t k = 0; k < K; k++) {
        const uint64_t *b = B + k * CT;
        uint64_t x0 = (uint64_t)(int64_t)w[k];
        for (int j = 0; j < CT; j++)
            a0[j] += x0 * b[j];
    }
    memcpy(acc, a0, sizeof a0);
}

CPU_CLONES
static uint64_t kernel_dot(const int32_t *w, const uint64_t *x, int64_t K)
{
    uint64_t acc = 0;
    for (int64_t k = 0; k < K; k++)
        acc += (uint64_t)(int64_t)w[k] * x[k];
    return acc;
}

/* ---- scheduling ------------------------------------------------------ */

typedef struct job {
    const te_plugin_layer *L;
    const uint64_t *in;
    uint64_t *out;
    uint64_t mask;
    int64_t ncols;       /* batch * P */
    int64_t ntiles;      /* column tiles per group */
    int64_t tile_cols;   /* columns per tile (CT, or ncols in dot mode) */
    int64_t tpt;         /* tiles per task (small layers: amortise task overhead) */
    int64_t nblocks;     /* tasks per group and channel chunk: ceil(ntiles / tpt) */
    int64_t nchunks;     /* output-channel chunks per group */
    int64_t chunk;       /* rows per chunk */
    int64_t ntasks;
    int dot_mode;
    atomic_llong next;
} job;

typedef struct worker {
    job *J;
    uint64_t *scratch;
    pthread_t tid;
    int started;
} worker;

static void store_tile(const job *J, int64_t grp, int64_t o, int64_t rows, int64_t c0, int64_t nc,
                       uint64_t acc[ROWS][CT])
{
    const te_plugin_layer *L = J->L;
    colpos cp;
    col_at(L, c0, &cp);
    for (int64_t j = 0; j < nc; j++, col_next(L, &cp)) {
        uint64_t *dst = J->out + cp.b * L->out_len + (grp * L->ocg + o) * L->P + cp.pos;
        for (int64_t r = 0; r < rows; r++)
            dst[r * L->P] = acc[r][j] & J->mask;
    }
}

static void run_tile(job *J, int64_t grp, int64_t tile, int64_t o0, int64_t o1, uint64_t *scratch);

static void run_task(job *J, int64_t t, uint64_t *scratch)
{
    const te_plugin_layer *L = J->L;
    int64_t chunk_i = t % J->nchunks;
    int64_t rest = t / J->nchunks;
    int64_t blk = rest % J->nblocks;
    int64_t grp = rest / J->nblocks;
    int64_t o0 = chunk_i * J->chunk;
    int64_t o1 = o0 + J->chunk < L->ocg ? o0 + J->chunk : L->ocg;
    int64_t t1 = (blk + 1) * J->tpt < J->ntiles ? (blk + 1) * J->tpt : J->ntiles;
    for (int64_t tile = blk * J->tpt; tile < t1; tile++)
        run_tile(J, grp, tile, o0, o1, scratch);
}

static void run_tile(job *J, int64_t grp, int64_t tile, int64_t o0, int64_t o1, uint64_t *scratch)
{
    const te_plugin_layer *L = J->L;
    int64_t c0 = tile * J->tile_cols;
    int64_t nc = J->ncols - c0 < J->tile_cols ? J->ncols - c0 : J->tile_cols;
    const int32_t *wg = L->w + grp * L->ocg * L->K;

    if (J->dot_mode) {
        pack_cols(L, J->in, grp, c0, nc, scratch, 1);
        for (int64_t o = o0; o < o1; o++) {
            colpos cp;
            col_at(L, c0, &cp);
            for (int64_t j = 0; j < nc; j++, col_next(L, &cp))
                J->out[cp.b * L->out_len + (grp * L->ocg + o) * L->P + cp.pos] =
                    kernel_dot(wg + o * L->K, scratch + j * L->K, L->K) & J->mask;
        }
        return;
    }
    pack_cols(L, J->in, grp, c0, nc, scratch, 0);
    uint64_t acc[ROWS][CT];
    for (int64_t o = o0; o < o1; o += ROWS) {
        int64_t rows = o1 - o < ROWS ? o1 - o : ROWS;
        if (rows == ROWS) {
            kernel_tile4(wg + o * L->K, L->K, scratch, acc);
        } else {
            for (int64_t r = 0; r < rows; r++)
                kernel_tile1(wg + (o + r) * L->K, L->K, scratch, acc[r]);
        }
        store_tile(J, grp, o, rows, c0, nc, acc);
    }
}

static void *worker_main(void *arg)
{
    worker *W = arg;
    job *J = W->J;
    for (;;) {
        long long t = atomic_fetch_add(&J->next, 1);
        if (t >= J->ntasks)
            break;
        run_task(J, (int64_t)t, W->scratch);
    }
    return NULL;
}

static te_status cpu_run(te_plugin_ctx *ctx, te_plugin_layer *L, unsigned ring_bits, uint64_t batch,
                         const uint64_t *in, uint64_t *out, te_err *err)
{
    if (!L || !in || !out)
        return te_errf(err, TE_EINVAL, "cpu plugin: run() without a layer or buffers");
    if (ring_bits < 1 || ring_bits > 64)
        return te_errf(err, TE_EINVAL, "cpu plugin: ring width %u outside 1..64", ring_bits);
    if (batch > CPU_MAX_BATCH)
        return te_errf(err, TE_EINVAL, "cpu plugin: batch %llu exceeds the maximum %llu",
                       (unsigned long long)batch, (unsigned long long)CPU_MAX_BATCH);
    if (batch == 0)
        return TE_OK;

    job J;
    memset(&J, 0, sizeof J);
    J.L = L;
    J.in = in;
    J.out = out;
    J.mask = te_ring_mask(ring_bits);
    J.ncols = (int64_t)batch * L->P;
    J.dot_mode = J.ncols < DOT_MAX_COLS;
    J.tile_cols = J.dot_mode ? J.ncols : CT;
    J.ntiles = (J.ncols + J.tile_cols - 1) / J.tile_cols;

    int64_t groups = L->g.group;
    int64_t macs = J.ncols * L->out_len / L->P * L->K;
    int64_t want = 1 + macs / MACS_PER_THREAD;
    int64_t nthreads = ctx->threads < want ? ctx->threads : want;
    /* Split output channels only as far as needed to feed every thread. */
    J.tpt = 1;
    int64_t tile_macs = L->ocg * L->K * J.tile_cols;
    if (tile_macs < TASK_MACS) {
        int64_t most = groups * J.ntiles / (4 * nthreads);
        J.tpt = TASK_MACS / tile_macs;
        if (J.tpt > most)
            J.tpt = most;
        if (J.tpt < 1)
            J.tpt = 1;
    }
    J.nblocks = (J.ntiles + J.tpt - 1) / J.tpt;
    int64_t base_tasks = groups * J.nblocks;
    int64_t min_rows = J.dot_mode ? 1 : MIN_CHUNK_ROWS;
    int64_t max_chunks = (L->ocg + min_rows - 1) / min_rows;
    int64_t nchunks = base_tasks >= 4 * nthreads ? 1 : (4 * nthreads + base_tasks - 1) / base_tasks;
    if (nchunks > max_chunks)
        nchunks = max_chunks;
    if (nchunks < 1)
        nchunks = 1;
    J.chunk = (L->ocg + nchunks - 1) / nchunks;
    if (!J.dot_mode && J.chunk % ROWS)
        J.chunk += ROWS - J.chunk % ROWS;
    J.nchunks = (L->ocg + J.chunk - 1) / J.chunk;
    J.ntasks = base_tasks * J.nchunks;
    if (nthreads > J.ntasks)
        nthreads = J.ntasks;
    atomic_init(&J.next, 0);

    size_t scratch_len = (size_t)L->K * (size_t)(J.dot_mode ? J.ncols : CT);
    worker *ws = calloc((size_t)nthreads, sizeof *ws);
    if (!ws)
        return te_errf(err, TE_ENOMEM, "cpu plugin: out of memory for %lld workers", (long long)nthreads);
    te_status st = TE_OK;
    for (int64_t i = 0; i < nthreads; i++) {
        ws[i].J = &J;
        ws[i].scratch = malloc(scratch_len * sizeof(uint64_t));
        if (!ws[i].scratch) {
            st = te_errf(err, TE_ENOMEM, "cpu plugin: out of memory for %zu-element packing buffers", scratch_len);
            goto done;
        }
    }
    /* Worker 0 is this thread; if a thread cannot be started the others
     * simply take over its share. */
    for (int64_t i = 1; i < nthreads; i++)
        ws[i].started = pthread_create(&ws[i].tid, NULL, worker_main, &ws[i]) == 0;
    worker_main(&ws[0]);
    for (int64_t i = 1; i < nthreads; i++)
        if (ws[i].started)
            pthread_join(ws[i].tid, NULL);
done:
    for (int64_t i = 0; i < nthreads; i++)
        free(ws[i].scratch);
    free(ws);
    return st;
}

static const te_plugin_ops cpu_ops = {
    .abi_version = TE_PLUGIN_ABI_VERSION,
    .name = "cpu",
    .create = cpu_create,
    .destroy = cpu_destroy,
    .caps = cpu_caps,
    .load_layer = cpu_load_layer,
    .run = cpu_run,
    .release_layer = cpu_release_layer,
};

__attribute__((visibility("default"))) te_status te_plugin_entry(uint32_t host_abi_version, const te_plugin_ops **ops,
                                                                 te_err *err)
{
    if (!ops)
        return te_errf(err, TE_EINVAL, "cpu plugin: no ops pointer");
    *ops = NULL;
    if (host_abi_version != TE_PLUGIN_ABI_VERSION)
        return te_errf(err, TE_EPLUGIN, "cpu plugin speaks plugin ABI version %u, the host version %u",
                       (unsigned)TE_PLUGIN_ABI_VERSION, (unsigned)host_abi_version);
    *ops = &cpu_ops;
    return TE_OK;
}
