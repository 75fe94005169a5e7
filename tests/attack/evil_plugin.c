/* twinedge-plugin-evil: a malicious compute plugin for the adversarial tests.
 *
 * It dlopens the real plugin named by `inner=PATH`, forwards every call and
 * then tampers with run()'s output the way a corrupted edge host would.
 * Loaded as EdgeA it tampers with W.A, as EdgeB with W.M (`role=b` negates
 * every additive change, so that the device's y moves the same way in both
 * roles).  Layers are numbered in load order (the deployment's order).
 *
 * plugin_config: "key=value" pairs separated by ';'.  Keys:
 *   inner=PATH       the real plugin (required; only in plugin_config)
 *   inner_threads=N  passed to the real plugin as threads=N
 *   control=FILE     re-read before every run(): the same keys (except
 *                    inner, inner_threads, control), separated by ';' or
 *                    newlines, override plugin_config; a missing file means
 *                    plugin_config alone.  The tests switch attacks this way
 *                    without restarting the host.
 *   attack=MODE      none (default), addp, retry, lattice, flip, zero,
 *                    random, plus1, swap, tap
 *   layer=N          the attacked layer (load index; negative: counted from
 *                    the last loaded, -1 = last); default -1
 *   index=K          output element (within each sample) for addp, plus1,
 *                    retry, swap and the first lattice coordinate; default 0
 *   index2=K         swap's partner; default index + 1
 *   k=K              addp adds k * p; default 1
 *   role=a|b         which host we are (b: additive changes negated)
 *   rbundle=PATH     lattice: the device.bundle whose r the forgery is
 *                    built against (another device's)
 *   coords=N         lattice: coordinates used, 2..6; default 4
 *   scale=C          lattice: add C*d (still in the kernel); default 1
 *   seed=N           flip/random: the generator's seed (default: pid, time)
 *   state=DIR        a line per run() appended to DIR/log
 *                    ("run layer=I ring=L batch=B attack=MODE applied=0|1 ..."),
 *                    tap records to DIR/<tap>
 *   tap=NAME         tap file name under state (default tap.bin)
 *   delay_ms=N       sleep this long in every run() (after the tap record)
 *
 * Modes:
 *   addp     add k*p (p = 2^61 - 1) to output element `index`: with a 64-bit
 *            ring, r.y is unchanged mod p; below 62 bits p mod 2^l is added
 *            anyway (the check fails there, which may provoke a retry)
 *   retry    +1 below 62 bits (fails the check at the calibrated ring), +p
 *            once the layer is asked for at 62 bits or more
 *   lattice  read r of the layer from rbundle, find a short nonzero d with
 *            sum_j r[c_j] d_j == 0 (mod p) over `coords` coordinates by LLL
 *            (|d| ~ p^(1/coords)) and add d
 *   flip     flip one random bit of one random element
 *   zero     every output 0
 *   random   every output uniform in Z_2^l
 *   plus1    +1 on element `index`
 *   swap     exchange elements `index` and `index2`
 *   tap      change nothing; append (layer, ring_bits, batch, input words)
 *            to the tap file, one record per run():
 *            u32 magic 'TTAP' | u32 layer | u32 ring_bits | u32 0 | u64 batch |
 *            u64 n | n x u64 input words (little-endian, this machine's order)
 * Additive changes apply to every sample of the batch. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "te_bundle.h"
#include "te_plugin.h"
#include "te_ring.h"

#define EVIL_PATH 1024
#define EVIL_TAP_MAGIC 0x50415454u /* "TTAP" */
#define LAT_MAX 6

enum { A_NONE, A_ADDP, A_RETRY, A_LATTICE, A_FLIP, A_ZERO, A_RANDOM, A_PLUS1, A_SWAP, A_TAP };
static const char *const attack_names[] = {"none", "addp", "retry", "lattice", "flip",
                                           "zero", "random", "plus1", "swap",    "tap"};

typedef struct evil_cfg {
    int attack;
    int layer;
    int64_t index, index2; /* index2 < 0: index + 1 */
    long long k;
    int role_b;
    int coords;
    long long scale;
    uint64_t seed; /* 0: unseeded */
    unsigned delay_ms;
    char rbundle[EVIL_PATH];
    char state[EVIL_PATH];
    char tap[256];
} evil_cfg;

struct te_plugin_ctx {
    void *dl;
    const te_plugin_ops *inner;
    te_plugin_ctx *ictx;
    char control[EVIL_PATH];
    evil_cfg base;
    pthread_mutex_t mu; /* n_loaded, rng */
    int n_loaded;
    uint64_t rng, rng_seed;
};

struct te_plugin_layer {
    te_plugin_layer *inner;
    int index;
    te_linear_geom geom;
};

/* ---- configuration ----------------------------------------------------- */

static int copy_str(char *dst, size_t cap, const char *v)
{
    size_t n = strlen(v);
    if (n >= cap)
        return -1;
    memcpy(dst, v, n + 1);
    return 0;
}

static int parse_ll(const char *v, long long *out)
{
    char *end = NULL;
    errno = 0;
    long long x = strtoll(v, &end, 0);
    if (errno || end == v || *end)
        return -1;
    *out = x;
    return 0;
}

/* One key of the attack configuration (not inner/control). */
static te_status cfg_set(evil_cfg *c, const char *key, const char *val, te_err *err)
{
    long long x = 0;
    if (strcmp(key, "attack") == 0) {
        for (size_t i = 0; i < sizeof attack_names / sizeof *attack_names; i++)
            if (strcmp(val, attack_names[i]) == 0) {
                c->attack = (int)i;
                return TE_OK;
            }
        return te_errf(err, TE_EINVAL, "evil plugin: unknown attack '%s'", val);
    }
    if (strcmp(key, "role") == 0) {
        if (strcmp(val, "a") && strcmp(val, "b"))
            return te_errf(err, TE_EINVAL, "evil plugin: role must be a or b, not '%s'", val);
        c->role_b = val[0] == 'b';
        return TE_OK;
    }
    if (strcmp(key, "rbundle") == 0 || strcmp(key, "state") == 0 || strcmp(key, "tap") == 0) {
        char *dst = key[0] == 'r' ? c->rbundle : key[0] == 's' ? c->state : c->tap;
        size_t cap = key[0] == 't' ? sizeof c->tap : EVIL_PATH;
        if (copy_str(dst, cap, val) != 0 || (key[0] == 't' && strchr(val, '/')))
            return te_errf(err, TE_EINVAL, "evil plugin: bad %s '%.60s'", key, val);
        return TE_OK;
    }
    if (parse_ll(val, &x) != 0)
        return te_errf(err, TE_EINVAL, "evil plugin: %s=%s is not an integer", key, val);
    if (strcmp(key, "layer") == 0)
        c->layer = (int)x;
    else if (strcmp(key, "index") == 0 && x >= 0)
        c->index = x;
    else if (strcmp(key, "index2") == 0 && x >= 0)
        c->index2 = x;
    else if (strcmp(key, "k") == 0)
        c->k = x;
    else if (strcmp(key, "coords") == 0 && x >= 2 && x <= LAT_MAX)
        c->coords = (int)x;
    else if (strcmp(key, "scale") == 0 && x != 0 && x >= -(1ll << 30) && x <= (1ll << 30))
        c->scale = x;
    else if (strcmp(key, "seed") == 0)
        c->seed = (uint64_t)x;
    else if (strcmp(key, "delay_ms") == 0 && x >= 0 && x <= 600000)
        c->delay_ms = (unsigned)x;
    else
        return te_errf(err, TE_EINVAL, "evil plugin: unknown key or bad value '%s=%s'", key, val);
    return TE_OK;
}

static void cfg_default(evil_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->attack = A_NONE;
    c->layer = -1;
    c->index2 = -1;
    c->k = 1;
    c->coords = 4;
    c->scale = 1;
    snprintf(c->tap, sizeof c->tap, "tap.bin");
}

/* Parse "k=v" items separated by ';' or whitespace.  Keys only plugin_config
 * may carry go to ctx (ctx NULL: refused); inner_config receives threads=N. */
static te_status parse_items(const char *text, evil_cfg *c, te_plugin_ctx *ctx, char *inner_path,
                             char *inner_config, te_err *err)
{
    char item[EVIL_PATH + 64];
    const char *p = text ? text : "";
    while (*p) {
        size_t n = strcspn(p, "; \t\r\n");
        if (n >= sizeof item)
            return te_errf(err, TE_EINVAL, "evil plugin: config item too long: %.40s...", p);
        memcpy(item, p, n);
        item[n] = '\0';
        p += n;
        if (*p)
            p++;
        if (n == 0)
            continue;
        char *eq = strchr(item, '=');
        if (!eq)
            return te_errf(err, TE_EINVAL, "evil plugin: config item '%s' is not key=value", item);
        *eq = '\0';
        const char *key = item, *val = eq + 1;
        int outer = !strcmp(key, "inner") || !strcmp(key, "inner_threads") || !strcmp(key, "control");
        if (outer && !ctx)
            return te_errf(err, TE_EINVAL, "evil plugin: '%s' only in plugin_config", key);
        if (!strcmp(key, "inner")) {
            if (copy_str(inner_path, EVIL_PATH, val) != 0)
                return te_errf(err, TE_EINVAL, "evil plugin: inner path too long");
        } else if (!strcmp(key, "inner_threads")) {
            snprintf(inner_config, 64, "threads=%.40s", val);
        } else if (!strcmp(key, "control")) {
            if (copy_str(ctx->control, sizeof ctx->control, val) != 0)
                return te_errf(err, TE_EINVAL, "evil plugin: control path too long");
        } else {
            te_status st = cfg_set(c, key, val, err);
            if (st != TE_OK)
                return st;
        }
    }
    return TE_OK;
}

/* The configuration for one run(): plugin_config, then the control file. */
static te_status current_cfg(te_plugin_ctx *ctx, evil_cfg *c, te_err *err)
{
    *c = ctx->base;
    if (!ctx->control[0])
        return TE_OK;
    FILE *f = fopen(ctx->control, "r");
    if (!f)
        return errno == ENOENT ? TE_OK
                               : te_errf(err, TE_EIO, "evil plugin: %s: %s", ctx->control, strerror(errno));
    char text[8192];
    size_t n = fread(text, 1, sizeof text - 1, f);
    fclose(f);
    text[n] = '\0';
    te_status st = parse_items(text, c, NULL, NULL, NULL, err);
    return st == TE_OK ? st : te_err_wrap(err, "control file %s", ctx->control);
}

/* ---- state: log and tap ------------------------------------------------ */

static void write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len > 0) {
        ssize_t w = write(fd, p, len);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return;
        p += w;
        len -= (size_t)w;
    }
}

/* Append buf to state/name in one write() (O_APPEND: records from
 * concurrent runs do not interleave). */
static void state_append(const evil_cfg *c, const char *name, const void *buf, size_t len)
{
    if (!c->state[0])
        return;
    char path[EVIL_PATH + 300];
    snprintf(path, sizeof path, "%s/%s", c->state, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (fd < 0)
        return;
    write_all(fd, buf, len);
    close(fd);
}

static void state_log(const evil_cfg *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void state_log(const evil_cfg *c, const char *fmt, ...)
{
    char line[512];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(line, sizeof line - 1, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n > sizeof line - 2)
        n = (int)sizeof line - 2;
    line[n++] = '\n';
    state_append(c, "log", line, (size_t)n);
}

static te_status tap_record(const evil_cfg *c, int layer, unsigned l, uint64_t batch, const uint64_t *in, size_t n,
                            te_err *err)
{
    size_t len = 32 + n * 8;
    uint8_t *rec = malloc(len);
    if (!rec)
        return te_errf(err, TE_ENOMEM, "evil plugin: out of memory");
    uint32_t head[4] = {EVIL_TAP_MAGIC, (uint32_t)layer, l, 0};
    uint64_t sizes[2] = {batch, n};
    memcpy(rec, head, 16);
    memcpy(rec + 16, sizes, 16);
    memcpy(rec + 32, in, n * 8);
    state_append(c, c->tap, rec, len);
    free(rec);
    return TE_OK;
}

/* ---- randomness -------------------------------------------------------- */

static uint64_t next_rand(te_plugin_ctx *ctx, const evil_cfg *c)
{
    pthread_mutex_lock(&ctx->mu);
    if (c->seed && c->seed != ctx->rng_seed) /* a new seed from the control file */
        ctx->rng = ctx->rng_seed = c->seed;
    uint64_t x = ctx->rng ? ctx->rng : 0x9e3779b97f4a7c15ull;
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    ctx->rng = x;
    pthread_mutex_unlock(&ctx->mu);
    return x * 0x2545f4914f6cdd1dull;
}

/* ---- the lattice forgery ----------------------------------------------- */

static uint64_t fp_pow(uint64_t a, uint64_t e)
{
    uint64_t r = 1;
    for (; e; e >>= 1, a = te_fp_mul(a, a))
        if (e & 1)
            r = te_fp_mul(r, a);
    return r;
}

static void gram_schmidt(int n, __int128 b[LAT_MAX][LAT_MAX], long double mu[LAT_MAX][LAT_MAX],
                         long double bb[LAT_MAX])
{
    long double bs[LAT_MAX][LAT_MAX];
    for (int i = 0; i < n; i++) {
        for (int c = 0; c < n; c++)
            bs[i][c] = (long double)b[i][c];
        for (int j = 0; j < i; j++) {
            long double dot = 0;
            for (int c = 0; c < n; c++)
                dot += (long double)b[i][c] * bs[j][c];
            mu[i][j] = dot / bb[j];
            for (int c = 0; c < n; c++)
                bs[i][c] -= mu[i][j] * bs[j][c];
        }
        bb[i] = 0;
        for (int c = 0; c < n; c++)
            bb[i] += bs[i][c] * bs[i][c];
    }
}

/* LLL (delta 0.99) on the rows of b, exact integer updates, Gram-Schmidt in
 * long double (recomputed after every change: n <= 6).  The rows stay a
 * basis of the same lattice whatever the rounding; only the quality of the
 * reduction depends on it. */
static void lll(int n, __int128 b[LAT_MAX][LAT_MAX])
{
    long double mu[LAT_MAX][LAT_MAX], bb[LAT_MAX];
    gram_schmidt(n, b, mu, bb);
    for (int k = 1, iter = 0; k < n && iter < 100000; iter++) {
        for (int j = k - 1; j >= 0; j--) {
            long double q = roundl(mu[k][j]);
            if (q != 0) {
                __int128 qi = (__int128)q;
                for (int c = 0; c < n; c++)
                    b[k][c] -= qi * b[j][c];
                gram_schmidt(n, b, mu, bb);
            }
        }
        if (bb[k] >= (0.99L - mu[k][k - 1] * mu[k][k - 1]) * bb[k - 1]) {
            k++;
        } else {
            for (int c = 0; c < n; c++) {
                __int128 t = b[k][c];
                b[k][c] = b[k - 1][c];
                b[k - 1][c] = t;
            }
            gram_schmidt(n, b, mu, bb);
            k = k > 1 ? k - 1 : 1;
        }
    }
}

/* A short nonzero d (n entries) with sum r[j] d[j] == 0 mod p, checked
 * exactly.  Returns 0 on success. */
static int short_kernel_vector(int n, const uint64_t *r, int64_t *d)
{
    if (r[0] == 0)
        return -1;
    __int128 b[LAT_MAX][LAT_MAX];
    memset(b, 0, sizeof b);
    uint64_t inv0 = fp_pow(r[0], TE_P61 - 2);
    b[0][0] = (__int128)TE_P61;
    for (int j = 1; j < n; j++) { /* (-r_j / r_0, e_j): r . b_j = -r_j + r_j */
        b[j][0] = (__int128)((TE_P61 - te_fp_mul(r[j], inv0)) % TE_P61);
        b[j][j] = 1;
    }
    lll(n, b);
    int best = -1;
    __int128 best_max = 0;
    for (int i = 0; i < n; i++) {
        __int128 m = 0;
        for (int c = 0; c < n; c++) {
            __int128 a = b[i][c] < 0 ? -b[i][c] : b[i][c];
            if (a > m)
                m = a;
        }
        if (m == 0 || m >= ((__int128)1 << 62))
            continue;
        uint64_t dot = 0;
        for (int c = 0; c < n; c++)
            dot = te_fp_add(dot, te_fp_mul(r[c], te_fp_from_signed((int64_t)b[i][c])));
        if (dot == 0 && (best < 0 || m < best_max)) {
            best = i;
            best_max = m;
        }
    }
    if (best < 0)
        return -1;
    for (int c = 0; c < n; c++)
        d[c] = (int64_t)b[best][c];
    return 0;
}

/* d for layer `layer` over coordinates index, index+1, ... (mod out_len),
 * from the r in c->rbundle. */
static te_status lattice_delta(const evil_cfg *c, int layer, int64_t out_len, int64_t *coord, int64_t *d,
                               te_err *err)
{
    if (!c->rbundle[0])
        return te_errf(err, TE_EINVAL, "evil plugin: attack=lattice needs rbundle=PATH");
    te_model *m = NULL;
    te_status st = te_device_bundle_read(c->rbundle, &m, err);
    if (st != TE_OK)
        return te_err_wrap(err, "evil plugin: rbundle");
    int li = layer % m->n_layers; /* load order = deployment order, deployments loaded whole */
    const te_layer *L = &m->layers[li];
    if (te_geom_out_len(&L->geom) != out_len || !L->r || out_len < c->coords) {
        te_model_free(m);
        return te_errf(err, TE_EINVAL, "evil plugin: rbundle layer %d does not match the loaded layer", li);
    }
    uint64_t r[LAT_MAX];
    for (int j = 0; j < c->coords; j++) {
        coord[j] = (c->index + j) % out_len;
        r[j] = L->r[coord[j]];
    }
    te_model_free(m);
    if (short_kernel_vector(c->coords, r, d) != 0)
        return te_errf(err, TE_EINVAL, "evil plugin: lattice reduction found no kernel vector");
    return TE_OK;
}

/* ---- the ops table ----------------------------------------------------- */

static te_status evil_create(const char *config, te_plugin_ctx **out, te_err *err)
{
    *out = NULL;
    te_plugin_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return te_errf(err, TE_ENOMEM, "evil plugin: out of memory");
    char inner_path[EVIL_PATH] = "", inner_config[64] = "";
    cfg_default(&ctx->base);
    te_status st = parse_items(config, &ctx->base, ctx, inner_path, inner_config, err);
    if (st == TE_OK && !inner_path[0])
        st = te_errf(err, TE_EINVAL, "evil plugin: inner=PATH (the real plugin) is required");
    if (st != TE_OK) {
        free(ctx);
        return st;
    }
    ctx->dl = dlopen(inner_path, RTLD_NOW | RTLD_LOCAL);
    te_plugin_entry_fn entry = ctx->dl ? (te_plugin_entry_fn)dlsym(ctx->dl, TE_PLUGIN_ENTRY_SYMBOL) : NULL;
    if (!entry) {
        st = te_errf(err, TE_EPLUGIN, "evil plugin: cannot load %s: %s", inner_path, dlerror());
    } else if ((st = entry(TE_PLUGIN_ABI_VERSION, &ctx->inner, err)) == TE_OK) {
        st = ctx->inner->create(inner_config, &ctx->ictx, err);
    }
    if (st != TE_OK) {
        if (ctx->dl)
            dlclose(ctx->dl);
        free(ctx);
        return st;
    }
    pthread_mutex_init(&ctx->mu, NULL);
    ctx->rng = ctx->rng_seed = ctx->base.seed ? ctx->base.seed : ((uint64_t)getpid() << 32) ^ (uint64_t)time(NULL);
    *out = ctx;
    return TE_OK;
}

static void evil_destroy(te_plugin_ctx *ctx)
{
    if (!ctx)
        return;
    ctx->inner->destroy(ctx->ictx);
    dlclose(ctx->dl);
    pthread_mutex_destroy(&ctx->mu);
    free(ctx);
}

static te_status evil_caps(te_plugin_ctx *ctx, te_plugin_caps *caps, te_err *err)
{
    te_status st = ctx->inner->caps(ctx->ictx, caps, err);
    if (st == TE_OK) {
        char name[sizeof caps->device_name];
        snprintf(name, sizeof name, "evil over %.100s", caps->device_name);
        memcpy(caps->device_name, name, sizeof name);
    }
    return st;
}

static te_status evil_load_layer(te_plugin_ctx *ctx, const te_linear_geom *geom, const int32_t *w,
                                 te_plugin_layer **layer, te_err *err)
{
    te_plugin_layer *L = calloc(1, sizeof *L);
    if (!L)
        return te_errf(err, TE_ENOMEM, "evil plugin: out of memory");
    te_status st = ctx->inner->load_layer(ctx->ictx, geom, w, &L->inner, err);
    if (st != TE_OK) {
        free(L);
        return st;
    }
    L->geom = *geom;
    pthread_mutex_lock(&ctx->mu);
    L->index = ctx->n_loaded++;
    pthread_mutex_unlock(&ctx->mu);
    *layer = L;
    return TE_OK;
}

static void evil_release_layer(te_plugin_ctx *ctx, te_plugin_layer *layer)
{
    if (!layer)
        return;
    ctx->inner->release_layer(ctx->ictx, layer->inner);
    free(layer);
}

/* Add delta (as a change of the device's y) to out[b * out_len + i] for
 * every sample b. */
static void add_each(const evil_cfg *c, uint64_t *out, uint64_t batch, int64_t out_len, int64_t i, uint64_t delta,
                     unsigned l)
{
    if (c->role_b) /* EdgeB: y = W.A - W.M, so W.M moves the other way */
        delta = 0 - delta;
    for (uint64_t b = 0; b < batch; b++)
        out[b * (uint64_t)out_len + (uint64_t)i] = te_ring_add(out[b * (uint64_t)out_len + (uint64_t)i], delta, l);
}

static te_status evil_run(te_plugin_ctx *ctx, te_plugin_layer *layer, unsigned l, uint64_t batch,
                          const uint64_t *in, uint64_t *out, te_err *err)
{
    evil_cfg c;
    te_status st = current_cfg(ctx, &c, err);
    if (st != TE_OK)
        return st;
    int64_t in_len = te_geom_in_len(&layer->geom), out_len = te_geom_out_len(&layer->geom);
    if (c.attack == A_TAP && (st = tap_record(&c, layer->index, l, batch, in, batch * (uint64_t)in_len, err)) != TE_OK)
        return st;
    if (c.delay_ms)
        usleep(c.delay_ms * 1000u);
    if ((st = ctx->inner->run(ctx->ictx, layer->inner, l, batch, in, out, err)) != TE_OK)
        return st;
    pthread_mutex_lock(&ctx->mu);
    int target = c.layer >= 0 ? c.layer : ctx->n_loaded + c.layer;
    pthread_mutex_unlock(&ctx->mu);
    int hit = layer->index == target && c.attack != A_NONE && c.attack != A_TAP && out_len > 0 && batch > 0;
    char note[160] = "";
    const uint64_t n = batch * (uint64_t)out_len, m = te_ring_mask(l);
    int64_t idx = c.index % out_len, idx2 = (c.index2 >= 0 ? c.index2 : c.index + 1) % out_len;
    if (hit) {
        switch (c.attack) {
        case A_ADDP:
            add_each(&c, out, batch, out_len, idx, (uint64_t)c.k * TE_P61, l);
            snprintf(note, sizeof note, "added %lldp to element %lld", c.k, (long long)idx);
            break;
        case A_RETRY:
            add_each(&c, out, batch, out_len, idx, l >= 62 ? TE_P61 : 1, l);
            snprintf(note, sizeof note, "added %s to element %lld", l >= 62 ? "p" : "1", (long long)idx);
            break;
        case A_PLUS1:
            add_each(&c, out, batch, out_len, idx, 1, l);
            break;
        case A_LATTICE: {
            int64_t coord[LAT_MAX], d[LAT_MAX];
            if ((st = lattice_delta(&c, layer->index, out_len, coord, d, err)) != TE_OK)
                return st;
            int len = snprintf(note, sizeof note, "%lld * d, d =", c.scale);
            for (int j = 0; j < c.coords; j++) {
                add_each(&c, out, batch, out_len, coord[j], (uint64_t)d[j] * (uint64_t)c.scale, l);
                len += snprintf(note + len, sizeof note - (size_t)len, " %lld@%lld", (long long)d[j],
                                (long long)coord[j]);
            }
            break;
        }
        case A_FLIP: {
            uint64_t e = next_rand(ctx, &c) % n, bit = next_rand(ctx, &c) % l;
            out[e] ^= (uint64_t)1 << bit;
            snprintf(note, sizeof note, "flipped bit %llu of element %llu", (unsigned long long)bit,
                     (unsigned long long)e);
            break;
        }
        case A_ZERO:
            memset(out, 0, n * sizeof *out);
            break;
        case A_RANDOM:
            for (uint64_t i = 0; i < n; i++)
                out[i] = next_rand(ctx, &c) & m;
            break;
        case A_SWAP:
            for (uint64_t b = 0; b < batch; b++) {
                uint64_t *o = out + b * (uint64_t)out_len, t = o[idx];
                o[idx] = o[idx2];
                o[idx2] = t;
            }
            snprintf(note, sizeof note, "swapped elements %lld and %lld", (long long)idx, (long long)idx2);
            break;
        }
    }
    state_log(&c, "run layer=%d ring=%u batch=%llu attack=%s applied=%d %s", layer->index, l,
              (unsigned long long)batch, attack_names[c.attack], hit, note);
    return TE_OK;
}

static te_status evil_run_f32(te_plugin_ctx *ctx, te_plugin_layer *layer, uint64_t batch, const float *in,
                              float *out, te_err *err)
{
    if (!ctx->inner->run_f32)
        return te_errf(err, TE_EUNSUPPORTED, "evil plugin: the inner plugin has no run_f32");
    return ctx->inner->run_f32(ctx->ictx, layer->inner, batch, in, out, err);
}

static const te_plugin_ops evil_ops = {
    .abi_version = TE_PLUGIN_ABI_VERSION,
    .name = "evil",
    .create = evil_create,
    .destroy = evil_destroy,
    .caps = evil_caps,
    .load_layer = evil_load_layer,
    .run = evil_run,
    .release_layer = evil_release_layer,
    .run_f32 = evil_run_f32,
};

__attribute__((visibility("default"))) te_status te_plugin_entry(uint32_t host_abi_version, const te_plugin_ops **ops,
                                                                 te_err *err)
{
    return te_plugin_offer(&evil_ops, host_abi_version, ops, err);
}
