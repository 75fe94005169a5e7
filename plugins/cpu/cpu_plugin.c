/* The CPU compute plugin: out = W . in mod 2^l over blinded inputs.
 *
 * Three paths, all exact mod 2^l for every l in 1..64:
 *
 * - AMX (default where the CPU has AMX-INT8 and the kernel grants the tile
 *   state, weights fit 16 bits, see cpu_amx.h and docs/cpu-plugin.md):
 *   inputs split into 8-bit digits, weights into two 8-bit digits, one int8
 *   tile product with int32 sums (exact or wrapping as each digit's weight
 *   allows), recombined mod 2^64.  kernel=amx without AMX is an error at
 *   create; a layer whose digit planes would be too large for it goes to
 *   the VNNI path where the CPU has one.
 * - VNNI (default where the CPU has AVX-512 VNNI and the weights fit 16 bits,
 *   see cpu_vnni.h): inputs split into 8/16-bit signed limbs, multiplied with
 *   vpdpwssd into int32 lanes, recombined mod 2^64.  Column tiles are packed
 *   (im2col of the limbs) per task; 32-channel weight blocks are packed at
 *   load time.  Calibrated rings of 33..40 bits take 3 limbs, l = 64 takes 6.
 * - portable (kernel=portable, wide weights, depthwise layers, other CPUs):
 *   every product and sum in uint64_t, which wraps mod 2^64; since 2^l
 *   divides 2^64 the result reduced mod 2^l is exact, with no limbs and no
 *   assumption on the weights' size.  Columns are cut into tiles of CT
 *   columns, packed into a K x CT panel and multiplied by the weight rows in
 *   a register-blocked kernel; tiny problems use dot products.
 *
 * Work items (group, column tile, output-channel chunk) are spread over the
 * context's worker threads through an atomic counter. */
#include "te_plugin.h"

#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "te_ring.h"
#include "te_f32.h"
#include <cblas.h>
#include "cpu_vnni.h"
#include "cpu_amx.h"

#define CPU_MAX_THREADS 256
#define CPU_MAX_BATCH ((uint64_t)1 << 24)
#define CT 16           /* columns per tile */
#define ROWS 4          /* output channels per kernel call */
#define DOT_MAX_COLS 8  /* below this many columns, use dot products */
#define MIN_CHUNK_ROWS 16
#define MACS_PER_THREAD ((int64_t)1 << 17)
#define TASK_MACS ((int64_t)1 << 15)
#define VNNI_MIN_OCG 8  /* fewer channels per group (depthwise): blocks of 32 would idle */
#define VNNI_MT 2       /* micro-tiles per column tile */
#define VNNI_MIN_ROW_TILE 8 /* narrowest micro-tile of row-aligned tiling */
#define VNNI_DIG_CHUNK_BYTES ((int64_t)1 << 20) /* a VNNI run's digit planes or pairs, at most (but one sample) */

/* ---- thread pool ------------------------------------------------------ */

/* The context's worker threads sleep between runs.  A run publishes a job,
 * works on it itself as worker 0 and waits only for the workers that joined
 * it: on a loaded machine a worker that is not scheduled in time simply
 * misses the job (its share is taken over through the task counter) instead
 * of costing the run a scheduler time slice, as a pthread_join would. */
typedef void (*pool_fn)(void *arg, int worker);

typedef struct pool {
    pthread_mutex_t mu;
    pthread_cond_t work, done;
    pthread_t *tids;
    int n;               /* worker threads started (the caller is worker 0) */
    int stop;
    int busy;            /* a run owns the pool */
    int open;            /* the current job still accepts workers */
    int active;          /* workers inside the current job */
    int joined;          /* workers that took the current job (ids 1..) */
    int limit;           /* most workers the current job uses, caller included */
    uint64_t gen;
    pool_fn fn;
    void *arg;
} pool;

static void *pool_thread(void *vp)
{
    pool *P = vp;
    uint64_t seen = 0;
    pthread_mutex_lock(&P->mu);
    for (;;) {
        while (!P->stop && (P->gen == seen || !P->open))
            pthread_cond_wait(&P->work, &P->mu);
        if (P->stop)
            break;
        seen = P->gen;
        if (P->joined + 1 >= P->limit)
            continue;
        int id = ++P->joined;
        P->active++;
        pool_fn fn = P->fn;
        void *arg = P->arg;
        pthread_mutex_unlock(&P->mu);
        fn(arg, id);
        pthread_mutex_lock(&P->mu);
        if (--P->active == 0)
            pthread_cond_broadcast(&P->done);
    }
    pthread_mutex_unlock(&P->mu);
    return NULL;
}

static te_status pool_init(pool *P, int workers, te_err *err)
{
    memset(P, 0, sizeof *P);
    if (pthread_mutex_init(&P->mu, NULL) != 0)
        return te_errf(err, TE_ENOMEM, "cpu plugin: cannot create a mutex");
    if (pthread_cond_init(&P->work, NULL) != 0) {
        pthread_mutex_destroy(&P->mu);
        return te_errf(err, TE_ENOMEM, "cpu plugin: cannot create a condition variable");
    }
    if (pthread_cond_init(&P->done, NULL) != 0) {
        pthread_cond_destroy(&P->work);
        pthread_mutex_destroy(&P->mu);
        return te_errf(err, TE_ENOMEM, "cpu plugin: cannot create a condition variable");
    }
    if (workers > 0) {
        P->tids = calloc((size_t)workers, sizeof *P->tids);
        if (!P->tids) {
            pthread_cond_destroy(&P->done);
            pthread_cond_destroy(&P->work);
            pthread_mutex_destroy(&P->mu);
            return te_errf(err, TE_ENOMEM, "cpu plugin: out of memory for %d threads", workers);
        }
    }
    /* A thread that cannot be started leaves its share to the others. */
    for (int i = 0; i < workers; i++)
        if (pthread_create(&P->tids[P->n], NULL, pool_thread, P) == 0)
            P->n++;
    return TE_OK;
}

static void pool_destroy(pool *P)
{
    pthread_mutex_lock(&P->mu);
    P->stop = 1;
    pthread_cond_broadcast(&P->work);
    pthread_mutex_unlock(&P->mu);
    for (int i = 0; i < P->n; i++)
        pthread_join(P->tids[i], NULL);
    free(P->tids);
    pthread_cond_destroy(&P->done);
    pthread_cond_destroy(&P->work);
    pthread_mutex_destroy(&P->mu);
}

/* Run fn(arg, id) on up to `limit` workers (ids 0..limit-1, 0 = the caller).
 * fn must share the work through its own task counter.  When another run
 * owns the pool, the caller does all the work alone. */
static void pool_run(pool *P, int limit, pool_fn fn, void *arg)
{
    pthread_mutex_lock(&P->mu);
    if (P->busy || limit <= 1 || P->n == 0) {
        pthread_mutex_unlock(&P->mu);
        fn(arg, 0);
        return;
    }
    P->busy = 1;
    P->fn = fn;
    P->arg = arg;
    P->limit = limit;
    P->joined = 0;
    P->active = 0;
    P->open = 1;
    P->gen++;
    pthread_cond_broadcast(&P->work);
    pthread_mutex_unlock(&P->mu);
    fn(arg, 0);
    pthread_mutex_lock(&P->mu);
    P->open = 0;
    while (P->active > 0)
        pthread_cond_wait(&P->done, &P->mu);
    P->busy = 0;
    pthread_mutex_unlock(&P->mu);
}

enum { KERNEL_AUTO, KERNEL_AMX, KERNEL_VNNI, KERNEL_PORTABLE };

struct te_plugin_ctx {
    int threads;
    int kernel;          /* KERNEL_*; AUTO resolved at create */
    int vnni;            /* the CPU runs the VNNI kernels (AMX layers it refuses fall back to them) */
    pool pool;           /* threads - 1 workers */
    pthread_mutex_t scratch_mu; /* guards scratch, kept between VNNI runs */
    void *scratch;
    size_t scratch_len;
    char device_name[128];
    const te_plugin_host *host; /* the host's services (NULL: created without) */
};

struct te_plugin_layer {
    te_linear_geom g;
    int64_t icg, ocg;    /* channels per group */
    int64_t K;           /* dot length: icg * k_h * k_w (conv), in_c (FC) */
    int64_t P;           /* output positions per sample (1 for FC) */
    int64_t in_len, out_len;
    int32_t *w;          /* [out_c][K] (kept 32-bit: FC layers are bound by weight bandwidth) */
    /* VNNI path (NULL when the weights do not fit 16 bits or the CPU lacks it):
     * [group][block of 32 channels][K2 pairs][32][2] int16, zero-padded. */
    int16_t *wv;
    int64_t K2, nblk;
    /* AMX path (amx.w NULL when not used) */
    cpu_amx_layer amx;
    /* float copy of w for run_f32 (the plaintext baseline), made on first use */
    pthread_mutex_t wf_mu;
    float *wf;
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
            } else if (strcmp(s, "kernel") == 0) {
                if (strcmp(val, "auto") == 0)
                    ctx->kernel = KERNEL_AUTO;
                else if (strcmp(val, "amx") == 0)
                    ctx->kernel = KERNEL_AMX;
                else if (strcmp(val, "vnni") == 0)
                    ctx->kernel = KERNEL_VNNI;
                else if (strcmp(val, "portable") == 0)
                    ctx->kernel = KERNEL_PORTABLE;
                else
                    return te_errf(err, TE_EINVAL, "cpu plugin: kernel=%s is not one of auto, amx, vnni, portable", val);
            } else {
                return te_errf(err, TE_EINVAL, "cpu plugin: unknown config key '%s' (known keys: threads, kernel)",
                               s);
            }
        }
        if (!end)
            break;
        p = end + 1;
    }
    return TE_OK;
}

static te_status cpu_create_host(const char *config, const te_plugin_host *host, te_plugin_ctx **out, te_err *err);

static te_status cpu_create(const char *config, te_plugin_ctx **out, te_err *err)
{
    return cpu_create_host(config, NULL, out, err);
}

static te_status cpu_create_host(const char *config, const te_plugin_host *host, te_plugin_ctx **out, te_err *err)
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
    int vnni = cpu_vnni_supported();
    ctx->vnni = vnni;
    if (ctx->kernel == KERNEL_VNNI && !vnni) {
        free(ctx);
        return te_errf(err, TE_EUNSUPPORTED, "cpu plugin: kernel=vnni but this CPU lacks AVX-512 VNNI");
    }
    /* kernel=amx where AMX cannot run is an error (never a silent fallback);
     * kernel=auto takes AMX > VNNI > portable. */
    if (ctx->kernel == KERNEL_AMX || ctx->kernel == KERNEL_AUTO) {
        char why[128];
        int amx = cpu_amx_supported(why, sizeof why);
        if (ctx->kernel == KERNEL_AMX && !amx) {
            free(ctx);
            return te_errf(err, TE_EUNSUPPORTED, "cpu plugin: kernel=amx but %s", why);
        }
        if (ctx->kernel == KERNEL_AUTO) {
            ctx->kernel = amx ? KERNEL_AMX : vnni ? KERNEL_VNNI : KERNEL_PORTABLE;
            if (!amx)
                te_plugin_log(host, TE_PLUGIN_LOG_DEBUG, "kernel=auto: no AMX (%s)%s", why,
                              vnni ? "" : ", no AVX-512 VNNI: portable kernels");
        }
    }
    if (pthread_mutex_init(&ctx->scratch_mu, NULL) != 0) {
        free(ctx);
        return te_errf(err, TE_ENOMEM, "cpu plugin: cannot create a mutex");
    }
    st = pool_init(&ctx->pool, ctx->threads - 1, err);
    if (st != TE_OK) {
        pthread_mutex_destroy(&ctx->scratch_mu);
        free(ctx);
        return st;
    }
    snprintf(ctx->device_name, sizeof ctx->device_name, "CPU (%s, %d thread%s)",
             ctx->kernel == KERNEL_AMX ? "AMX int8" : ctx->kernel == KERNEL_VNNI ? "AVX-512 VNNI" : "portable",
             ctx->threads, ctx->threads == 1 ? "" : "s");
    ctx->host = host;
    te_plugin_log(host, TE_PLUGIN_LOG_INFO, "ready: %s", ctx->device_name);
    *out = ctx;
    return TE_OK;
}

static void cpu_destroy(te_plugin_ctx *ctx)
{
    if (!ctx)
        return;
    pool_destroy(&ctx->pool);
    pthread_mutex_destroy(&ctx->scratch_mu);
    free(ctx->scratch);
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

/* The VNNI path needs |w| < 2^15 (the widening interval of the exact limbs
 * assumes it); wider weights stay on the uint64 path. */
static te_status pack_vnni_weights(te_plugin_layer *L, te_err *err)
{
    int64_t n = L->g.out_c * L->K;
    for (int64_t i = 0; i < n; i++)
        if (L->w[i] < -32768 || L->w[i] > 32767)
            return TE_OK;
    int64_t groups = L->g.group;
    L->K2 = (L->K + 1) / 2;
    L->nblk = (L->ocg + CPU_VNNI_BLOCK - 1) / CPU_VNNI_BLOCK;
    size_t len = (size_t)(groups * L->nblk * L->K2) * CPU_VNNI_BLOCK * 2;
    L->wv = calloc(len, sizeof *L->wv);
    if (!L->wv)
        return te_errf(err, TE_ENOMEM, "cpu plugin: out of memory for %zu packed weights", len);
    for (int64_t grp = 0; grp < groups; grp++)
        for (int64_t o = 0; o < L->ocg; o++) {
            const int32_t *src = L->w + (grp * L->ocg + o) * L->K;
            int16_t *dst = L->wv + ((grp * L->nblk + o / CPU_VNNI_BLOCK) * L->K2) * CPU_VNNI_BLOCK * 2 +
                           (o % CPU_VNNI_BLOCK) * 2;
            for (int64_t k = 0; k < L->K; k++)
                dst[(k / 2) * CPU_VNNI_BLOCK * 2 + (k & 1)] = (int16_t)src[k];
        }
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
    if (pthread_mutex_init(&L->wf_mu, NULL) != 0) {
        free(L);
        return te_errf(err, TE_ENOMEM, "cpu plugin: cannot create a layer lock");
    }
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
        pthread_mutex_destroy(&L->wf_mu);
        free(L);
        return te_errf(err, TE_ENOMEM, "cpu plugin: out of memory for %lld weights", (long long)n);
    }
    memcpy(L->w, w, (size_t)n * sizeof *L->w);
    int narrow = 1;
    for (int64_t i = 0; i < n && narrow; i++)
        narrow = L->w[i] >= -32768 && L->w[i] <= 32767;
    int amx = 1;
    if (ctx->kernel == KERNEL_AMX && L->ocg >= VNNI_MIN_OCG && narrow) {
        amx = cpu_amx_prepare(&L->amx, geom, L->w);
        if (amx < 0) {
            free(L->w);
            pthread_mutex_destroy(&L->wf_mu);
            free(L);
            return te_errf(err, TE_ENOMEM, "cpu plugin: out of memory for the AMX weight tiles");
        }
    }
    if (amx != 0 && (ctx->kernel == KERNEL_VNNI || (ctx->kernel == KERNEL_AMX && ctx->vnni)) &&
        L->ocg >= VNNI_MIN_OCG) {
        st = pack_vnni_weights(L, err);
        if (st != TE_OK) {
            free(L->w);
            pthread_mutex_destroy(&L->wf_mu);
            free(L);
            return st;
        }
    }
    te_plugin_log(ctx->host, TE_PLUGIN_LOG_DEBUG, "layer %s out_c %lld, K %lld: %s kernels",
                  geom->kind == TE_LIN_CONV ? "conv" : "fc", (long long)geom->out_c, (long long)L->K,
                  amx == 0 ? "AMX" : L->wv ? "VNNI" : "portable");
    *out = L;
    return TE_OK;
}

static void cpu_release_layer(te_plugin_ctx *ctx, te_plugin_layer *L)
{
    if (L) {
        free(L->w);
        free(L->wv);
        cpu_amx_release(&L->amx);
        free(L->wf);
        pthread_mutex_destroy(&L->wf_mu);
        free(L);
    }
}

/* ---- packing --------------------------------------------------------- */

/* Column c of the computation is (sample b, output position pos = oh*out_w+ow);
 * walked incrementally to keep divisions out of the inner loops. */
typedef struct colpos {
    int64_t b, pos, oh, ow;
} colpos;

static void col_at(const te_linear_geom *g, int64_t P, int64_t c, colpos *p)
{
    p->b = c / P;
    p->pos = c % P;
    p->oh = g->kind == TE_LIN_FC ? 0 : p->pos / g->out_w;
    p->ow = g->kind == TE_LIN_FC ? 0 : p->pos % g->out_w;
}

static void col_next(const te_linear_geom *g, int64_t P, colpos *p)
{
    if (++p->pos == P) {
        p->b++;
        p->pos = p->oh = p->ow = 0;
    } else if (++p->ow == g->out_w) {
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
        col_at(&L->g, L->P, c0, &cp);
        for (int64_t j = 0; j < nc; j++, col_next(&L->g, L->P, &cp)) {
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
    col_at(&L->g, L->P, c0, &cp);
    for (int64_t j = 0; j < nc; j++, col_next(&L->g, L->P, &cp)) {
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
} worker;

static void store_tile(const job *J, int64_t grp, int64_t o, int64_t rows, int64_t c0, int64_t nc,
                       uint64_t acc[ROWS][CT])
{
    const te_plugin_layer *L = J->L;
    colpos cp;
    col_at(&L->g, L->P, c0, &cp);
    for (int64_t j = 0; j < nc; j++, col_next(&L->g, L->P, &cp)) {
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
            col_at(&L->g, L->P, c0, &cp);
            for (int64_t j = 0; j < nc; j++, col_next(&L->g, L->P, &cp))
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

/* ---- the VNNI path --------------------------------------------------- */

typedef struct vjob {
    const te_plugin_layer *L;
    te_linear_geom g;    /* L's geometry; a 1x1 stride-1 unpadded conv as one row of in_h*in_w */
    const uint64_t *in;
    uint64_t *out;
    uint64_t mask;
    cpu_vnni_plan plan;
    int16_t *dig;        /* digit planes of the input (row packing), or NULL */
    int32_t *pairs;      /* 1x1 stride-1 layers: digit pairs [limb][sample][group][K2][in_h*in_w],
                          * copied row by row into the panel (no interleaving), or NULL */
    int64_t pair_plane;  /* elements of one limb's pairs */
    int64_t nin;         /* batch * in_len */
    int64_t ndig;        /* digit tasks */
    const unsigned char *row_used; /* [in_h]: some output reads input row ih */
    int64_t ncols;       /* batch * P */
    int64_t nseg;        /* row-aligned tiling: micro-tiles per output row (else 0), of
                          * near-equal widths */
    int64_t nmtiles, ntiles, chunk, nchunks, ntasks;
    atomic_llong next;
} vjob;

typedef struct vworker {
    vjob *J;
    int16_t *panel;      /* [VNNI_MT][nl][K2][nc][2] digits, k = 2p (even) and 2p + 1 */
    uint64_t *res;       /* [nct][chunk] */
} vworker;

/* Micro-tile m: its first column and how many columns it has.  With
 * row-aligned tiling no micro-tile spans two output rows, so all of them
 * pack by plain loads; a row's tiles are of near-equal widths (a row of 38
 * is 10+10+9+9, not 12+12+12+2). */
static int64_t vnni_mtile(const vjob *J, int64_t m, int64_t *real)
{
    const int64_t nc = J->plan.nc;
    if (J->nseg) {
        int64_t row = m / J->nseg, sg = m % J->nseg, ow = J->g.out_w;
        int64_t c0 = sg * ow / J->nseg, c1 = (sg + 1) * ow / J->nseg;
        *real = c1 - c0;
        return row * ow + c0;
    }
    *real = J->ncols - m * nc < nc ? J->ncols - m * nc : nc;
    return m * nc;
}

/* Digits of micro-tiles [m0, m0 + nmt) of group grp (im2col of the input). */
static void vnni_pack(const vjob *J, int64_t grp, int64_t m0, int64_t nmt, int16_t *panel)
{
    const te_plugin_layer *L = J->L;
    const te_linear_geom *g = &J->g;
    const int nl = J->plan.nl, nc = J->plan.nc;
    const int fc = g->kind == TE_LIN_FC;
    cpu_vnni_im2col ig = { L->icg, fc ? 1 : g->k_h, fc ? 1 : g->k_w, fc ? 1 : g->dil_h, fc ? 1 : g->dil_w,
                           fc ? 1 : g->in_h, fc ? 1 : g->in_w, fc ? 1 : g->in_h * g->in_w, L->K2,
                           fc ? 1 : g->stride_w, 0, J->dig, J->nin };
    int64_t base[CPU_VNNI_NC], ih0[CPU_VNNI_NC], iw0[CPU_VNNI_NC];
    for (int64_t mt = 0; mt < nmt; mt++) {
        int64_t real;
        int64_t c0 = vnni_mtile(J, m0 + mt, &real);
        colpos cp;
        col_at(&J->g, L->P, c0, &cp);
        int64_t b_first = cp.b, oh_first = cp.oh;
        int same_row = 1;
        for (int64_t c = 0; c < real; c++, col_next(&J->g, L->P, &cp)) {
            base[c] = cp.b * L->in_len + grp * L->icg * ig.HW;
            ih0[c] = fc ? 0 : cp.oh * g->stride_h - g->pad_t;
            iw0[c] = fc ? 0 : cp.ow * g->stride_w - g->pad_l;
            same_row = same_row && cp.b == b_first && cp.oh == oh_first;
        }
        ig.row = !fc && same_row;
        cpu_vnni_pack_tile(&J->plan, &ig, J->in, base, ih0, iw0, (int)real,
                           (int32_t *)(void *)(panel + mt * nl * L->K2 * nc * 2));
    }
}

static void vnni_tile(vjob *J, vworker *W, int64_t grp, int64_t tile, int64_t o0, int64_t o1)
{
    const te_plugin_layer *L = J->L;
    const int nl = J->plan.nl, nc = J->plan.nc;
    const int64_t K2 = L->K2;
    int64_t m0 = tile * VNNI_MT;
    int64_t nmt = J->nmtiles - m0 < VNNI_MT ? J->nmtiles - m0 : VNNI_MT;
    if (!J->pairs)
        vnni_pack(J, grp, m0, nmt, W->panel);
    else
        for (int64_t mt = 0; mt < nmt; mt++) {
            /* contiguous in the panel: the channel blocks re-read it from L1 */
            int64_t real, c0 = vnni_mtile(J, m0 + mt, &real);
            int64_t b = c0 / L->P, pos = c0 % L->P;
            for (int l = 0; l < nl; l++)
                cpu_vnni_copy_pairs(J->pairs + l * J->pair_plane + (b * L->g.group + grp) * K2 * L->P + pos, L->P,
                                    K2, (int)real, (int32_t *)(void *)(W->panel + (mt * nl + l) * K2 * nc * 2));
        }

    int64_t ldres = J->chunk;
    int64_t b0 = o0 / CPU_VNNI_BLOCK, b1 = (o1 + CPU_VNNI_BLOCK - 1) / CPU_VNNI_BLOCK;
    const int32_t *panel = (const int32_t *)(const void *)W->panel;
    int64_t reals[VNNI_MT], firsts[VNNI_MT];
    for (int64_t mt = 0; mt < nmt; mt++)
        firsts[mt] = vnni_mtile(J, m0 + mt, &reals[mt]);
    for (int64_t p0 = 0; p0 < K2; p0 += CPU_VNNI_KC_PAIRS) {
        int64_t np = K2 - p0 < CPU_VNNI_KC_PAIRS ? K2 - p0 : CPU_VNNI_KC_PAIRS;
        for (int64_t blk = b0; blk < b1; blk++) {
            const int16_t *w = L->wv + ((grp * L->nblk + blk) * K2 + p0) * CPU_VNNI_BLOCK * 2;
            uint64_t *rb = W->res + (blk - b0) * CPU_VNNI_BLOCK;
            for (int64_t mt = 0; mt < nmt; mt++) {
                int64_t real = reals[mt];
                for (int l = 0; l < nl; l++) {
                    const int32_t *x = panel + ((mt * nl + l) * K2 + p0) * nc;
                    int shift = J->plan.off[l];
                    /* the first limb of the first pair interval stores, the rest add */
                    cpu_vnni_kernel((int)real, shift, p0 > 0 || l > 0, w, x, np, nc, rb + mt * nc * ldres, ldres);
                }
            }
        }
    }

    /* A micro-tile of consecutive output positions (one sample) is stored
     * by transposed blocks; the others channel by channel, so that the
     * stores run along output positions. */
    int64_t off[CPU_VNNI_NC * VNNI_MT];
    int scattered = 0;
    uint64_t *out = J->out + (grp * L->ocg + o0) * L->P;
    for (int64_t mt = 0; mt < nmt; mt++) {
        colpos cp;
        col_at(&J->g, L->P, firsts[mt], &cp);
        int64_t b = cp.b, pos = cp.pos;
        for (int64_t c = 0; c < nc; c++, col_next(&J->g, L->P, &cp))
            off[mt * nc + c] = c < reals[mt] ? cp.b * L->out_len + cp.pos : -1;
        if (pos + reals[mt] <= L->P) {
            cpu_vnni_store(W->res + mt * nc * ldres, ldres, (int)reals[mt], o1 - o0, out + b * L->out_len + pos,
                           L->P, J->mask);
            for (int64_t c = 0; c < nc; c++)
                off[mt * nc + c] = -1;
        } else {
            scattered = 1;
        }
    }
    for (int64_t o = 0; o < o1 - o0 && scattered; o++) {
        uint64_t *dst = out + o * L->P;
        const uint64_t *r = W->res + o;
        for (int64_t j = 0; j < nmt * nc; j++)
            if (off[j] >= 0)
                dst[off[j]] = r[j * ldres] & J->mask;
    }
}

static void *vnni_worker_main(void *arg)
{
    vworker *W = arg;
    vjob *J = W->J;
    const te_plugin_layer *L = J->L;
    for (;;) {
        long long t = atomic_fetch_add(&J->next, 1);
        if (t >= J->ntasks)
            break;
        int64_t ci = (int64_t)t % J->nchunks, rest = (int64_t)t / J->nchunks;
        int64_t tile = rest % J->ntiles, grp = rest / J->ntiles;
        int64_t o0 = ci * J->chunk, o1 = o0 + J->chunk < L->ocg ? o0 + J->chunk : L->ocg;
        vnni_tile(J, W, grp, tile, o0, o1);
    }
    return NULL;
}

#define DIGIT_ROWS 16 /* input rows per digit task */

/* Digit row r: of the digit planes, input row by input row (rows no output
 * reads, as every other row of a 1x1 layer with stride 2, are skipped), or
 * of the digit pairs (vjob.pairs), pair row by pair row. */
static void vnni_digit_row(const vjob *J, int64_t r)
{
    const te_plugin_layer *L = J->L;
    if (J->pairs) {
        int64_t HW = L->P, bg = r / L->K2, k = 2 * (r % L->K2);
        int64_t b = bg / L->g.group, grp = bg % L->g.group;
        const uint64_t *even = J->in + b * L->in_len + (grp * L->icg + k) * HW;
        cpu_vnni_digit_pairs(&J->plan, even, k + 1 < L->icg ? even + HW : NULL, HW, J->pairs + r * HW,
                             J->pair_plane);
    } else if (J->row_used[r % J->g.in_h]) {
        cpu_vnni_digit_planes(&J->plan, J->in, r * J->g.in_w, (r + 1) * J->g.in_w, J->dig, J->nin);
    }
}

/* Digit rows, DIGIT_ROWS per task. */
static void vnni_digits_fn(void *arg, int id)
{
    vjob *J = ((vworker *)arg)->J;
    int64_t nrows = J->pairs ? J->pair_plane / J->L->P : J->nin / J->g.in_w;
    (void)id;
    for (;;) {
        long long t = atomic_fetch_add(&J->next, 1);
        if (t >= J->ndig)
            break;
        int64_t r1 = ((int64_t)t + 1) * DIGIT_ROWS < nrows ? ((int64_t)t + 1) * DIGIT_ROWS : nrows;
        for (int64_t r = (int64_t)t * DIGIT_ROWS; r < r1; r++)
            vnni_digit_row(J, r);
    }
}

static void vnni_pool_fn(void *arg, int id)
{
    vnni_worker_main((vworker *)arg + id);
}

static size_t align64(size_t n)
{
    return (n + 63) & ~(size_t)63;
}

/* The context's packing buffer, kept between runs, when no other run holds
 * it (*locked = 1); else a buffer of this run's own (*own).  NULL: out of
 * memory.  Hand it back with scratch_give. */
static uint8_t *scratch_take(te_plugin_ctx *ctx, size_t need, int *locked, uint8_t **own)
{
    *own = NULL;
    *locked = pthread_mutex_trylock(&ctx->scratch_mu) == 0;
    if (!*locked)
        return *own = aligned_alloc(64, align64(need));
    if (ctx->scratch_len < need) {
        free(ctx->scratch);
        ctx->scratch = aligned_alloc(64, align64(need));
        ctx->scratch_len = ctx->scratch ? need : 0;
    }
    return ctx->scratch;
}

static void scratch_give(te_plugin_ctx *ctx, int locked, uint8_t *own)
{
    if (locked)
        pthread_mutex_unlock(&ctx->scratch_mu);
    free(own);
}

static te_status run_vnni(te_plugin_ctx *ctx, const te_plugin_layer *L, unsigned ring_bits, uint64_t batch,
                          const uint64_t *in, uint64_t *out, te_err *err)
{
    vjob J;
    memset(&J, 0, sizeof J);
    J.L = L;
    J.g = L->g;
    J.in = in;
    J.out = out;
    J.mask = te_ring_mask(ring_bits);
    cpu_vnni_plan_for(ring_bits, &J.plan);
    J.ncols = (int64_t)batch * L->P;
    te_linear_geom *eg = &J.g;
    /* A 1x1 conv with stride 1 and no pads reads input position pos for
     * output position pos: one long row per sample and channel. */
    int pointwise = eg->kind == TE_LIN_CONV && eg->k_h == 1 && eg->k_w == 1 && eg->stride_h == 1 &&
                    eg->stride_w == 1 && eg->pad_t == 0 && eg->pad_l == 0 && eg->pad_b == 0 && eg->pad_r == 0;
    if (pointwise) {
        eg->in_w = eg->out_w = eg->in_h * eg->in_w;
        eg->in_h = eg->out_h = 1;
    }
    /* Row-aligned tiling where a row splits into micro-tiles of at least
     * VNNI_MIN_ROW_TILE columns (narrower tiles starve the kernel). */
    int64_t nseg = (eg->out_w + J.plan.nc - 1) / J.plan.nc;
    if (eg->kind == TE_LIN_CONV && eg->out_w / nseg >= VNNI_MIN_ROW_TILE) {
        J.nseg = nseg;
        J.nmtiles = (int64_t)batch * eg->out_h * J.nseg;
    } else {
        J.nmtiles = (J.ncols + J.plan.nc - 1) / J.plan.nc;
    }
    J.ntiles = (J.nmtiles + VNNI_MT - 1) / VNNI_MT;

    int64_t groups = L->g.group;
    int64_t macs = J.ncols * L->out_len / L->P * L->K;
    int64_t want = 1 + macs / MACS_PER_THREAD;
    int64_t nthreads = ctx->threads < want ? ctx->threads : want;
    /* Split output channels (in whole blocks) only as far as needed to feed every thread. */
    int64_t base = groups * J.ntiles;
    int64_t nchunks = base >= 4 * nthreads ? 1 : (4 * nthreads + base - 1) / base;
    if (nchunks > L->nblk)
        nchunks = L->nblk;
    int64_t blocks_per_chunk = (L->nblk + nchunks - 1) / nchunks;
    J.chunk = blocks_per_chunk * CPU_VNNI_BLOCK;
    J.nchunks = (L->ocg + J.chunk - 1) / J.chunk;
    J.ntasks = base * J.nchunks;
    int64_t nworkers = nthreads < J.ntasks ? nthreads : J.ntasks;

    /* One scratch area: per worker a panel and results.
     * The context keeps it between runs (no page faults on every layer);
     * a run that finds it busy (concurrent runs) allocates its own. */
    size_t panel_bytes = align64((size_t)(VNNI_MT * J.plan.nl * L->K2 * J.plan.nc) * 2 * sizeof(int16_t));
    size_t res_bytes = align64((size_t)(VNNI_MT * J.plan.nc * J.chunk) * sizeof(uint64_t));
    /* Digit planes feed the row packing (row-aligned tiling, stride up to
     * CPU_VNNI_ROW_STRIDE_MAX); the other layers gather from the input directly. */
    int use_dig = J.nseg && eg->stride_w <= CPU_VNNI_ROW_STRIDE_MAX;
    /* Row tiles of a 1x1 stride-1 layer read the digit pairs in place. */
    int use_pairs = use_dig && pointwise;
    J.nin = (int64_t)batch * L->in_len;
    J.pair_plane = use_pairs ? (int64_t)batch * groups * L->K2 * L->P : 0;
    size_t dig_bytes = use_pairs  ? align64((size_t)J.pair_plane * (size_t)J.plan.nl * sizeof(int32_t))
                       : use_dig ? align64((size_t)J.nin * (size_t)J.plan.nl * sizeof(int16_t))
                                 : 0;
    size_t need = dig_bytes + (size_t)nworkers * (panel_bytes + res_bytes) + (use_dig ? (size_t)eg->in_h : 0);
    vworker ws_local[8];
    vworker *ws = nworkers <= 8 ? ws_local : calloc((size_t)nworkers, sizeof *ws);
    if (!ws)
        return te_errf(err, TE_ENOMEM, "cpu plugin: out of memory for %lld workers", (long long)nworkers);
    memset(ws, 0, (size_t)nworkers * sizeof *ws);
    uint8_t *own = NULL;
    int locked = 0;
    uint8_t *mem = scratch_take(ctx, need, &locked, &own);
    te_status st = TE_OK;
    if (!mem) {
        st = te_errf(err, TE_ENOMEM, "cpu plugin: out of memory for %zu bytes of packing buffers", need);
        goto done;
    }
    for (int64_t i = 0; i < nworkers; i++) {
        uint8_t *p = mem + dig_bytes + (size_t)i * (panel_bytes + res_bytes);
        ws[i].J = &J;
        ws[i].panel = (int16_t *)(void *)p;
        ws[i].res = (uint64_t *)(void *)(p + panel_bytes);
    }
    if (use_pairs) {
        J.pairs = (int32_t *)(void *)mem;
        J.ndig = (J.pair_plane / L->P + DIGIT_ROWS - 1) / DIGIT_ROWS;
    } else if (use_dig) {
        J.dig = (int16_t *)(void *)mem;
        unsigned char *used = (unsigned char *)(mem + dig_bytes + (size_t)nworkers * (panel_bytes + res_bytes));
        const te_linear_geom *g = eg;
        memset(used, 0, (size_t)g->in_h);
        for (int64_t oh = 0; oh < g->out_h; oh++)
            for (int64_t kh = 0; kh < g->k_h; kh++) {
                int64_t ih = oh * g->stride_h - g->pad_t + kh * g->dil_h;
                if (ih >= 0 && ih < g->in_h)
                    used[ih] = 1;
            }
        J.row_used = used;
        J.ndig = (J.nin / g->in_w + DIGIT_ROWS - 1) / DIGIT_ROWS;
    }
    if (J.ndig) {
        atomic_init(&J.next, 0);
        pool_run(&ctx->pool, (int)(J.ndig < nworkers ? J.ndig : nworkers), vnni_digits_fn, ws);
    }
    atomic_store(&J.next, 0);
    pool_run(&ctx->pool, (int)nworkers, vnni_pool_fn, ws);
done:
    scratch_give(ctx, locked, own);
    if (ws != ws_local)
        free(ws);
    return st;
}

/* A convolution's samples in chunks whose digit planes (or pairs) stay
 * within VNNI_DIG_CHUNK_BYTES: the tiles then read the digits back from
 * the cache, not from memory (FaceNet's stem at batch 16 has 7 MiB of
 * them).  Samples are independent, so the results are the same. */
static te_status run_vnni_chunked(te_plugin_ctx *ctx, const te_plugin_layer *L, unsigned ring_bits,
                                  uint64_t batch, const uint64_t *in, uint64_t *out, te_err *err)
{
    cpu_vnni_plan plan;
    cpu_vnni_plan_for(ring_bits, &plan);
    /* the layers run_vnni packs from digits: row-aligned tiling (a 1x1
     * stride-1 layer as one row) and stride up to CPU_VNNI_ROW_STRIDE_MAX */
    const te_linear_geom *g = &L->g;
    int pointwise = g->k_h == 1 && g->k_w == 1 && g->stride_h == 1 && g->stride_w == 1 && g->pad_t == 0 &&
                    g->pad_l == 0 && g->pad_b == 0 && g->pad_r == 0;
    int64_t ow = pointwise ? g->in_h * g->in_w : g->out_w, nseg = (ow + plan.nc - 1) / plan.nc;
    int digits = g->kind == TE_LIN_CONV && ow / nseg >= VNNI_MIN_ROW_TILE && g->stride_w <= CPU_VNNI_ROW_STRIDE_MAX;
    int64_t per = L->in_len * plan.nl * (int64_t)sizeof(int32_t);
    int64_t chunk = digits && per > 0 ? VNNI_DIG_CHUNK_BYTES / per : (int64_t)batch;
    if (chunk < 1)
        chunk = 1;
    for (uint64_t b0 = 0; b0 < batch; b0 += (uint64_t)chunk) {
        uint64_t nb = batch - b0 < (uint64_t)chunk ? batch - b0 : (uint64_t)chunk;
        te_status st = run_vnni(ctx, L, ring_bits, nb, in + b0 * (uint64_t)L->in_len,
                                out + b0 * (uint64_t)L->out_len, err);
        if (st != TE_OK)
            return st;
    }
    return TE_OK;
}

/* ---- the AMX path ---------------------------------------------------- */

#define AMX_PANEL_BYTES ((int64_t)1024 << 10) /* a task's digit tiles, at most (more only for long K) */
#define AMX_DIGIT_BYTES ((int64_t)256 << 20) /* digit planes of one batch chunk, at most */
#define AMX_DIGITS_PER_THREAD ((int64_t)1 << 18) /* inputs per digit-plane worker, at least */

typedef struct ajob {
    const te_plugin_layer *L;
    const uint64_t *in;   /* the chunk's samples */
    uint64_t *out;
    cpu_amx_digits D;
    int64_t nunits;       /* digit-plane units */
    int64_t ngroups, gpt, nblk, chunk, nchunks, ntasks;
    atomic_llong next;
} ajob;

typedef struct aworker {
    ajob *J;
    void *scratch;
} aworker;

static void amx_digits_fn(void *arg, int id)
{
    ajob *J = ((aworker *)arg)->J;
    (void)id;
    for (;;) {
        long long u = atomic_fetch_add(&J->next, 1);
        if (u >= J->nunits)
            break;
        cpu_amx_make_digits(&J->L->amx, &J->D, J->in, (int64_t)u);
    }
}

static void amx_pool_fn(void *arg, int id)
{
    aworker *W = (aworker *)arg + id;
    ajob *J = W->J;
    const cpu_amx_layer *A = &J->L->amx;
    int begun = 0;
    for (;;) {
        long long t = atomic_fetch_add(&J->next, 1);
        if (t >= J->ntasks)
            break;
        if (!begun) {
            cpu_amx_begin();
            begun = 1;
        }
        int64_t ci = (int64_t)t % J->nchunks, rest = (int64_t)t / J->nchunks;
        int64_t blk = rest % J->nblk, grp = rest / J->nblk;
        int64_t g0 = blk * J->gpt, g1 = g0 + J->gpt < J->ngroups ? g0 + J->gpt : J->ngroups;
        int64_t ct0 = ci * J->chunk, ct1 = ct0 + J->chunk < A->nct ? ct0 + J->chunk : A->nct;
        cpu_amx_task(A, &J->D, grp, g0, g1, ct0, ct1, J->out, W->scratch);
    }
    if (begun)
        cpu_amx_end();
}

static te_status run_amx(te_plugin_ctx *ctx, const te_plugin_layer *L, unsigned ring_bits, uint64_t batch,
                         const uint64_t *in, uint64_t *out, te_err *err)
{
    const cpu_amx_layer *A = &L->amx;
    int nd = (int)(ring_bits + 7) / 8;
    /* samples per chunk: bounded digit planes */
    int64_t nbmax = AMX_DIGIT_BYTES / cpu_amx_digit_bytes(A, nd, 1);
    if (nbmax < 1)
        nbmax = 1;
    if (nbmax > (int64_t)batch)
        nbmax = (int64_t)batch;
    int64_t macs = (int64_t)batch * L->out_len * L->K;
    int64_t want = 1 + macs / MACS_PER_THREAD;
    int64_t nthreads = ctx->threads < want ? ctx->threads : want;

    /* Tasks of whole row groups with a bounded left operand; fewer groups
     * per task, then channel chunks, only as far as needed to feed every thread. */
    int64_t ngroups_max = cpu_amx_groups(A, nd, nbmax);
    int64_t gbytes = A->KS * 2 * CPU_AMX_TILE;
    int64_t gpt = gbytes >= AMX_PANEL_BYTES ? 1 : AMX_PANEL_BYTES / gbytes;
    if (gpt > ngroups_max)
        gpt = ngroups_max;
    while (gpt > 1 && A->G * ((ngroups_max + gpt - 1) / gpt) < 4 * nthreads)
        gpt = (gpt + 1) / 2;
    size_t sbytes = align64(cpu_amx_scratch_bytes(A, nd, gpt));
    size_t dbytes = align64((size_t)cpu_amx_digit_bytes(A, nd, nbmax));
    size_t kbytes = align64((size_t)A->KS * sizeof(int64_t));
    size_t need = dbytes + kbytes + (size_t)nthreads * sbytes;

    aworker ws_local[8];
    aworker *ws = nthreads <= 8 ? ws_local : calloc((size_t)nthreads, sizeof *ws);
    if (!ws)
        return te_errf(err, TE_ENOMEM, "cpu plugin: out of memory for %lld workers", (long long)nthreads);
    uint8_t *own = NULL;
    int locked = 0;
    uint8_t *mem = scratch_take(ctx, need, &locked, &own);
    te_status st = TE_OK;
    if (!mem) {
        st = te_errf(err, TE_ENOMEM, "cpu plugin: out of memory for %zu bytes of AMX buffers", need);
        goto done;
    }
    int64_t *akoff = (int64_t *)(void *)(mem + dbytes);
    if (A->direct)
        cpu_amx_offsets(A, nd, akoff);
    ajob J;
    for (int64_t b0 = 0; b0 < (int64_t)batch; b0 += nbmax) {
        memset(&J, 0, sizeof J);
        J.L = L;
        J.D.nb = (int64_t)batch - b0 < nbmax ? (int64_t)batch - b0 : nbmax;
        J.in = in + b0 * L->in_len;
        J.out = out + b0 * L->out_len;
        J.D.nd = nd;
        J.D.l = ring_bits;
        J.D.dig = mem;
        J.D.akoff = akoff;
        J.ngroups = cpu_amx_groups(A, nd, J.D.nb);
        J.gpt = gpt < J.ngroups ? gpt : J.ngroups;
        J.nblk = (J.ngroups + J.gpt - 1) / J.gpt;
        int64_t base = A->G * J.nblk;
        int64_t nchunks = base >= 4 * nthreads ? 1 : (4 * nthreads + base - 1) / base;
        if (nchunks > A->nct)
            nchunks = A->nct;
        J.chunk = (A->nct + nchunks - 1) / nchunks;
        J.nchunks = (A->nct + J.chunk - 1) / J.chunk;
        J.ntasks = base * J.nchunks;
        int64_t nworkers = nthreads < J.ntasks ? nthreads : J.ntasks;
        for (int64_t i = 0; i < nworkers; i++) {
            ws[i].J = &J;
            ws[i].scratch = mem + dbytes + kbytes + (size_t)i * sbytes;
        }
        J.nunits = cpu_amx_units(A, J.D.nb);
        cpu_amx_clear_slack(A, &J.D);
        atomic_init(&J.next, 0);
        /* small inputs: the caller alone (a wake-up costs more than it saves) */
        int64_t dworkers = J.D.nb * L->in_len < AMX_DIGITS_PER_THREAD ? 1 : nworkers;
        pool_run(&ctx->pool, (int)(J.nunits < dworkers ? J.nunits : dworkers), amx_digits_fn, ws);
        atomic_store(&J.next, 0);
        pool_run(&ctx->pool, (int)nworkers, amx_pool_fn, ws);
    }
done:
    scratch_give(ctx, locked, own);
    if (ws != ws_local)
        free(ws);
    return st;
}

static void portable_pool_fn(void *arg, int id)
{
    worker_main((worker *)arg + id);
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
    if (L->amx.w)
        return run_amx(ctx, L, ring_bits, batch, in, out, err);
    if (L->wv)
        return run_vnni_chunked(ctx, L, ring_bits, batch, in, out, err);

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
    pool_run(&ctx->pool, (int)nthreads, portable_pool_fn, ws);
done:
    for (int64_t i = 0; i < nthreads; i++)
        free(ws[i].scratch);
    free(ws);
    return st;
}

/* The no-privacy float32 baseline (te_plugin.h): OpenBLAS SGEMM on the
 * integer weights as floats, with the plugin's thread count. */
static te_status cpu_run_f32(te_plugin_ctx *ctx, te_plugin_layer *L, uint64_t batch, const float *in, float *out,
                             te_err *err)
{
    if (!L || !in || !out)
        return te_errf(err, TE_EINVAL, "cpu plugin: run_f32() without a layer or buffers");
    if (batch > CPU_MAX_BATCH)
        return te_errf(err, TE_EINVAL, "cpu plugin: batch %llu exceeds the maximum %llu",
                       (unsigned long long)batch, (unsigned long long)CPU_MAX_BATCH);
    if (batch == 0)
        return TE_OK;
    int64_t n = L->g.out_c * L->K;
    pthread_mutex_lock(&L->wf_mu);
    if (!L->wf && (L->wf = malloc((size_t)n * sizeof *L->wf)) != NULL)
        for (int64_t i = 0; i < n; i++)
            L->wf[i] = (float)L->w[i];
    const float *wf = L->wf;
    pthread_mutex_unlock(&L->wf_mu);
    if (!wf)
        return te_errf(err, TE_ENOMEM, "cpu plugin: out of memory for %lld float weights", (long long)n);
    float *scratch = malloc((size_t)te_f32_scratch_len(&L->g, (int64_t)batch) * sizeof *scratch);
    if (!scratch)
        return te_errf(err, TE_ENOMEM, "cpu plugin: out of memory for the float32 baseline's columns");
    openblas_set_num_threads(ctx->threads);
    te_f32_layer(&L->g, wf, in, (int64_t)batch, scratch, out);
    free(scratch);
    return TE_OK;
}

static const te_plugin_ops cpu_ops = {
    .abi_version = TE_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(te_plugin_ops),
    .name = "cpu",
    .create = cpu_create,
    .destroy = cpu_destroy,
    .caps = cpu_caps,
    .load_layer = cpu_load_layer,
    .run = cpu_run,
    .release_layer = cpu_release_layer,
    .run_f32 = cpu_run_f32,
    .create_host = cpu_create_host,
};

__attribute__((visibility("default"))) te_status te_plugin_entry(uint32_t host_abi_version, const te_plugin_ops **ops,
                                                                 te_err *err)
{
    return te_plugin_offer(&cpu_ops, host_abi_version, ops, err);
}
