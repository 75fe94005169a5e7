/* An example third-party compute plugin: the one computation of the plugin
 * ABI (te_plugin.h) as plain loops, exact in uint64_t arithmetic mod 2^64
 * and reduced to the ring width at the end.  Slow, short, and built from
 * an installed twinedge alone:
 *
 *   cc -std=c11 -O2 -shared -fPIC -fvisibility=hidden naive_plugin.c \
 *      $(pkg-config --cflags twinedge-plugin) -o libtwinedge-plugin-naive.so
 *   twinedge-host ... --plugin ./libtwinedge-plugin-naive.so
 *
 * The device verifies every result, so a plugin that computes wrongly makes
 * inferences fail (TWINEDGE_EINTEGRITY) rather than answer wrongly. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <te_plugin.h>

struct te_plugin_ctx {
    const te_plugin_host *host; /* the host's services: its log */
};

struct te_plugin_layer {
    te_linear_geom g;
    int32_t *w;
};

static te_status naive_create(const char *config, const te_plugin_host *host, te_plugin_ctx **ctx, te_err *err)
{
    (void)config;
    *ctx = calloc(1, sizeof **ctx);
    if (!*ctx)
        return te_plugin_errf(err, TE_ENOMEM, "naive plugin: out of memory");
    (*ctx)->host = host;
    te_plugin_log(host, TE_PLUGIN_LOG_INFO, "ready (plain loops, plugin ABI %u)", (unsigned)TE_PLUGIN_ABI_VERSION);
    return TE_OK;
}

static void naive_destroy(te_plugin_ctx *ctx) { free(ctx); }

static te_status naive_caps(te_plugin_ctx *ctx, te_plugin_caps *caps, te_err *err)
{
    (void)ctx, (void)err;
    memset(caps, 0, sizeof *caps);
    caps->min_ring_bits = 1;
    caps->max_ring_bits = 64;
    caps->max_batch = 1u << 16;
    strcpy(caps->device_name, "naive loops (example plugin)");
    return TE_OK;
}

static int64_t weight_len(const te_linear_geom *g)
{
    if (g->kind == TE_LIN_FC)
        return g->out_c * g->in_c;
    return g->out_c * (g->in_c / g->group) * g->k_h * g->k_w;
}

static te_status naive_load(te_plugin_ctx *ctx, const te_linear_geom *geom, const int32_t *w,
                            te_plugin_layer **out, te_err *err)
{
    if (geom->kind != TE_LIN_FC && geom->kind != TE_LIN_CONV)
        return te_plugin_errf(err, TE_EUNSUPPORTED, "naive plugin: unknown layer kind %d", (int)geom->kind);
    te_plugin_layer *l = calloc(1, sizeof *l);
    size_t n = (size_t)weight_len(geom);
    if (!l || !(l->w = malloc(n * sizeof *l->w))) {
        free(l);
        return te_plugin_errf(err, TE_ENOMEM, "naive plugin: out of memory");
    }
    l->g = *geom;
    memcpy(l->w, w, n * sizeof *l->w);
    *out = l;
    te_plugin_log(ctx->host, TE_PLUGIN_LOG_DEBUG, "layer loaded: %s, %zu weights",
                  geom->kind == TE_LIN_FC ? "fully connected" : "convolution", n);
    return TE_OK;
}

/* One sample: out = W * in (mod 2^64); the caller masks to the ring. */
static void naive_sample(const te_linear_geom *g, const int32_t *w, const uint64_t *in, uint64_t *out)
{
    if (g->kind == TE_LIN_FC) {
        for (int64_t o = 0; o < g->out_c; o++) {
            uint64_t acc = 0;
            for (int64_t k = 0; k < g->in_c; k++)
                acc += (uint64_t)(int64_t)w[o * g->in_c + k] * in[k];
            out[o] = acc;
        }
        return;
    }
    const int64_t icg = g->in_c / g->group, ocg = g->out_c / g->group;
    for (int64_t oc = 0; oc < g->out_c; oc++) {
        const int64_t grp = oc / ocg;
        for (int64_t oh = 0; oh < g->out_h; oh++)
            for (int64_t ow = 0; ow < g->out_w; ow++) {
                uint64_t acc = 0;
                for (int64_t c = 0; c < icg; c++)
                    for (int64_t kh = 0; kh < g->k_h; kh++)
                        for (int64_t kw = 0; kw < g->k_w; kw++) {
                            int64_t ih = oh * g->stride_h - g->pad_t + kh * g->dil_h;
                            int64_t iw = ow * g->stride_w - g->pad_l + kw * g->dil_w;
                            if (ih < 0 || ih >= g->in_h || iw < 0 || iw >= g->in_w)
                                continue;
                            int64_t ic = grp * icg + c;
                            acc += (uint64_t)(int64_t)w[((oc * icg + c) * g->k_h + kh) * g->k_w + kw] *
                                   in[(ic * g->in_h + ih) * g->in_w + iw];
                        }
                out[(oc * g->out_h + oh) * g->out_w + ow] = acc;
            }
    }
}

static te_status naive_run(te_plugin_ctx *ctx, te_plugin_layer *l, unsigned ring_bits, uint64_t batch,
                           const uint64_t *in, uint64_t *out, te_err *err)
{
    (void)ctx;
    if (ring_bits < 1 || ring_bits > 64)
        return te_plugin_errf(err, TE_EINVAL, "naive plugin: ring width %u out of range", ring_bits);
    const te_linear_geom *g = &l->g;
    const int64_t n_in = g->kind == TE_LIN_FC ? g->in_c : g->in_c * g->in_h * g->in_w;
    const int64_t n_out = g->kind == TE_LIN_FC ? g->out_c : g->out_c * g->out_h * g->out_w;
    const uint64_t mask = ring_bits == 64 ? ~(uint64_t)0 : ((uint64_t)1 << ring_bits) - 1;
    for (uint64_t b = 0; b < batch; b++) {
        uint64_t *o = out + b * (uint64_t)n_out;
        naive_sample(g, l->w, in + b * (uint64_t)n_in, o);
        for (int64_t i = 0; i < n_out; i++)
            o[i] &= mask;
    }
    return TE_OK;
}

static void naive_release(te_plugin_ctx *ctx, te_plugin_layer *l)
{
    (void)ctx;
    if (l)
        free(l->w);
    free(l);
}

static const te_plugin_ops naive_ops = {
    .abi_version = TE_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(te_plugin_ops),
    .name = "naive",
    .create_host = naive_create,
    .destroy = naive_destroy,
    .caps = naive_caps,
    .load_layer = naive_load,
    .run = naive_run,
    .release_layer = naive_release,
};

__attribute__((visibility("default"))) te_status te_plugin_entry(uint32_t host_abi_version, const te_plugin_ops **ops,
                                                                 te_err *err)
{
    return te_plugin_offer(&naive_ops, host_abi_version, ops, err);
}
