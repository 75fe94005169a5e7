/* twinedge-bench (the suite): every figure of the performance work, side by
 * side in one run, for each benchmark model at full input size:
 *
 *   local     plaintext float32 inference of the whole model on the device,
 *             one core (OpenBLAS, 1 thread): what a device would otherwise do
 *   plain     plaintext outsourcing, no privacy: the same two host processes
 *             and gRPC transport, raw float32 activations to EdgeA
 *   relay     twinedge, relay mode
 *   mediated  twinedge, device-mediated mode
 *   lep       the precomputed-mask baseline (LEP-CNN style): the device holds
 *             a fresh mask and W.mask per request, fetched offline, and talks
 *             to one server online
 *
 * plus the blinded layer against float32 SGEMM on one host (kernels), an
 * emulated wireless link (network namespace + tc netem) when run as root,
 * and throughput with many concurrent devices.  Writes a JSON file with
 * every figure, a markdown report and PNG charts (gnuplot). */
#include <brotli/encode.h>
#include <dirent.h>
#include <cblas.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <openssl/evp.h>

#include "bench.h"
#include "linkemu.h"
#include "owner.h"
#include "runlib.h"
#include "te_bundle.h"
#include "te_exec.h"
#include "te_host.h"
#include "te_npy.h"
#include "te_f32.h"
#include "te_net.h"
#include "te_net_transport.h"
#include "te_plugin.h"
#include "te_prf.h"
#include "te_ring.h"
#include "te_wire.h"
#include "twinedge_device.h"
#include "wire.pb-c.h"

#define S_MAX_MODELS 8
#define S_MAX_REPS 51
#define S_MAX_CLIENTS 64

enum { M_PLAIN, M_RELAY, M_MEDIATED, M_LEP, N_MODES };
static const char *const mode_name[N_MODES] = {"plain", "relay", "mediated", "lep"};
static const char *const mode_title[N_MODES] = {"plaintext outsourcing", "twinedge relay", "twinedge mediated",
                                                "LEP-CNN (precomputed masks)"};

typedef struct suite_opts {
    int quick, reps, threads, clients, requests, batch_window_us, precompute_mb, netem;
    double rate_mbit, rtt_ms, device_watts, radio_nj_per_byte;
    const char *json, *report_dir, *models_dir;
    const char *plugin;             /* the hosts' compute plugin, and the kernels' */
    te_owner_options owner;         /* quantisation and calibration, as twinedge-owner compile takes them */
    const char *models[S_MAX_MODELS];
    int n_models;
} suite_opts;

/* ---- figures ------------------------------------------------------------- */

typedef struct krow {
    char layer[64];
    char shape[80];
    int64_t batch;
    int ring_bits;
    double plain_s, secure_s;
} krow;

/* One mode over one link, medians over the repetitions. */
typedef struct mode_fig {
    double wall_s, device_cpu_s, host_cpu_s[2];
    uint64_t up, down;             /* device link, per inference */
    uint64_t a_in, a_out, b_in, b_out; /* host Stats, per inference */
    double energy_j;
    double cosine;                 /* of the output to the float32 model's */
    double *layer_s;               /* [n_layers] median time from one outsourced layer to the next */
    uint64_t *layer_up, *layer_down;
    int measured;                  /* 0: not run (bench.json writes null) */
} mode_fig;

typedef struct tput_fig {
    int measured;
    int clients, inferences;
    double wall_s, per_s, p50_s, p99_s;
} tput_fig;

typedef struct model_fig {
    const char *name;
    int n_layers;
    char **layer_names;
    int *ring_bits;
    double outsourcing_rate, edge_flops;
    krow *k;
    int n_k;
    double k_worst;
    int k_worst_i;
    double local_cpu_s, local_wall_s, local_energy_j;
    mode_fig loop[N_MODES], wifi[N_MODES];
    int wifi_done;
    char wifi_note[512];
    tput_fig tput[2];              /* [0] plain, [1] relay */
    int plain_ok;                  /* the plugin offers run_f32, so plaintext outsourcing can be measured */
    uint64_t storage_local, storage_plain, storage_private, storage_lep_per_req;
    uint64_t edge_bundle_bytes, edge_bundle_raw;
    uint64_t blinded_bytes, blinded_brotli, plainact_bytes, plainact_brotli;
    /* The device's floor for the relay inference, measured in this run
     * (device_floor): CPU seconds, medians over the repetitions. */
    int floor_measured;
    double floor_prf_s, floor_tls_s, floor_nonlinear_s;
    uint64_t floor_prf_bytes, floor_tls_bytes;
} model_fig;

static void progress(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void progress(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "twinedge-bench: ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
}

/* ---- process and host CPU time ---------------------------------------------- */

/* CPU time of a process so far: the sum over its threads of
 * /proc/PID/task/TID/schedstat's first field (nanoseconds; /proc/PID/stat's
 * clock ticks are too coarse for one layer).  Threads that have exited are
 * not counted: a host's threads (its pool, gRPC's) live as long as it does. */
static double proc_cpu_s(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return 0;
    unsigned long long total = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.')
            continue;
        char sp[128];
        snprintf(sp, sizeof sp, "/proc/%d/task/%.32s/schedstat", (int)pid, de->d_name);
        FILE *f = fopen(sp, "r");
        if (!f)
            continue;
        unsigned long long ns = 0;
        if (fscanf(f, "%llu", &ns) == 1)
            total += ns;
        fclose(f);
    }
    closedir(d);
    return (double)total * 1e-9;
}

/* ---- the bench transport: counts per layer, LEP interception ------------------ */

typedef struct lep_entry {
    uint64_t counter;
    uint32_t layer;
    uint8_t *resp;
    size_t len;
} lep_entry;

typedef struct bench_link {
    te_transport self;
    te_transport *inner;
    int n_layers, cur_layer;
    double *layer_t0;          /* when each layer's first call started (this inference) */
    uint64_t *layer_up, *layer_down;
    uint64_t up, down;
    /* LEP baseline: record EdgeB's requests once, precompute answers for the
     * next counter, then answer EdgeB calls from that store. */
    int lep_record, lep_serve;
    uint8_t **tmpl;            /* [n_layers] EdgeB request seen while recording */
    size_t *tmpl_len;
    lep_entry *store;          /* [n_layers] */
    uint64_t lep_bytes;        /* what the store holds: masks and W.mask */
    te_status lep_err;
    /* one blinded EdgeA request, for the Brotli figure */
    uint8_t *sample;
    size_t sample_len;
} bench_link;

/* What the link keeps of a request on its way out: EdgeB's requests while
 * recording for the LEP baseline, one EdgeA request for the Brotli figure. */
static void link_note(bench_link *b, te_party to, const uint8_t *req, size_t req_len)
{
    int li = b->cur_layer;
    if (b->lep_record && to == TE_PARTY_EDGE_B && li >= 0 && li < b->n_layers && !b->tmpl[li]) {
        if ((b->tmpl[li] = malloc(req_len ? req_len : 1)) != NULL) {
            memcpy(b->tmpl[li], req, req_len);
            b->tmpl_len[li] = req_len;
        }
    }
    if (to == TE_PARTY_EDGE_A && !b->sample && req_len > 0 && (b->sample = malloc(req_len)) != NULL) {
        memcpy(b->sample, req, req_len);
        b->sample_len = req_len;
    }
}

/* One exchange's bytes on the device link, in total and for the layer. */
static void link_count(bench_link *b, size_t req_len, size_t resp_len)
{
    int li = b->cur_layer;
    b->up += req_len;
    b->down += resp_len;
    if (li >= 0 && li < b->n_layers) {
        b->layer_up[li] += req_len;
        b->layer_down[li] += resp_len;
    }
}

static te_status link_call(te_transport *t, te_party to, const uint8_t *req, size_t req_len, uint8_t **resp,
                           size_t *resp_len, te_err *err)
{
    bench_link *b = t->impl;
    if (b->lep_serve && to == TE_PARTY_EDGE_B) {
        /* Online phase of the LEP baseline: W.M comes from the device's store. */
        Twinedge__LayerRequest *q = twinedge__layer_request__unpack(NULL, req_len, req);
        te_status st = TE_OK;
        if (!q)
            return te_errf(err, TE_EFORMAT, "lep: malformed request");
        if (q->layer >= (uint32_t)b->n_layers || !b->store[q->layer].resp || b->store[q->layer].counter != q->counter)
            st = te_errf(err, TE_EINVAL, "lep: no precomputed share for counter %" PRIu64 " layer %u", q->counter,
                         q->layer);
        else if (!(*resp = malloc(b->store[q->layer].len)))
            st = te_errf(err, TE_ENOMEM, "out of memory");
        else {
            memcpy(*resp, b->store[q->layer].resp, b->store[q->layer].len);
            *resp_len = b->store[q->layer].len;
        }
        twinedge__layer_request__free_unpacked(q, NULL);
        return st;
    }
    link_note(b, to, req, req_len);
    te_status st = te_transport_call(b->inner, to, req, req_len, resp, resp_len, err);
    if (st == TE_OK)
        link_count(b, req_len, *resp_len);
    return st;
}

/* Device-mediated mode's two requests of a layer, at once when the inner
 * transport can (the LEP baseline answers EdgeB from its store instead). */
static te_status link_call_pair(te_transport *t, const uint8_t *const req[2], const size_t req_len[2],
                                uint8_t *resp[2], size_t resp_len[2], te_party *failed, te_err *err)
{
    bench_link *b = t->impl;
    if (b->lep_serve)
        return te_transport_call_each(t, req, req_len, resp, resp_len, failed, err);
    link_note(b, TE_PARTY_EDGE_A, req[0], req_len[0]);
    link_note(b, TE_PARTY_EDGE_B, req[1], req_len[1]);
    te_status st = te_transport_call_pair(b->inner, req, req_len, resp, resp_len, failed, err);
    if (st == TE_OK) {
        link_count(b, req_len[0], resp_len[0]);
        link_count(b, req_len[1], resp_len[1]);
    }
    return st;
}

static te_status link_begin(te_transport *t, te_err *err)
{
    bench_link *b = t->impl;
    return te_transport_begin(b->inner, err);
}

static void link_end(te_transport *t)
{
    bench_link *b = t->impl;
    te_transport_end(b->inner);
}

static const te_transport_ops link_ops = {link_call, NULL, link_begin, link_end, link_call_pair};

static void lep_clear(bench_link *b)
{
    for (int i = 0; i < b->n_layers; i++) {
        free(b->store[i].resp);
        memset(&b->store[i], 0, sizeof b->store[i]);
    }
}

static void link_free(bench_link *b)
{
    if (!b->layer_t0)
        return;
    lep_clear(b);
    for (int i = 0; i < b->n_layers; i++)
        free(b->tmpl[i]);
    free(b->tmpl);
    free(b->tmpl_len);
    free(b->store);
    free(b->layer_t0);
    free(b->layer_up);
    free(b->layer_down);
    free(b->sample);
    memset(b, 0, sizeof *b);
}

static te_status link_init(bench_link *b, te_transport *inner, int n_layers, te_err *err)
{
    memset(b, 0, sizeof *b);
    b->self.ops = &link_ops;
    b->self.impl = b;
    b->inner = inner;
    b->n_layers = n_layers;
    b->cur_layer = -1;
    size_t n = (size_t)(n_layers ? n_layers : 1);
    b->layer_t0 = calloc(n, sizeof *b->layer_t0);
    b->layer_up = calloc(n, sizeof *b->layer_up);
    b->layer_down = calloc(n, sizeof *b->layer_down);
    b->tmpl = calloc(n, sizeof *b->tmpl);
    b->tmpl_len = calloc(n, sizeof *b->tmpl_len);
    b->store = calloc(n, sizeof *b->store);
    if (!b->layer_t0 || !b->layer_up || !b->layer_down || !b->tmpl || !b->tmpl_len || !b->store) {
        link_free(b);
        return te_errf(err, TE_ENOMEM, "out of memory");
    }
    return TE_OK;
}

static void link_reset(bench_link *b)
{
    b->up = b->down = 0;
    b->cur_layer = -1;
    for (int i = 0; i < b->n_layers; i++)
        b->layer_t0[i] = 0, b->layer_up[i] = 0, b->layer_down[i] = 0;
}

static void link_enter_layer(bench_link *b, int layer)
{
    b->cur_layer = layer;
    if (layer >= 0 && layer < b->n_layers)
        b->layer_t0[layer] = te_clock_s(CLOCK_MONOTONIC);
}

static void device_hook(void *ctx, int layer, uint64_t counter)
{
    (void)counter;
    link_enter_layer(ctx, layer);
}

/* Offline phase of the LEP baseline: fetch W.M for counter t of every
 * layer from EdgeB (it would come from the owner or an idle period), and
 * keep it with the mask's size in the device's store. */
static te_status lep_precompute(bench_link *b, const te_model *m, uint64_t t, te_err *err)
{
    lep_clear(b);
    b->lep_bytes = 0;
    for (int i = 0; i < b->n_layers; i++) {
        if (!b->tmpl[i])
            return te_errf(err, TE_EINVAL, "lep: no EdgeB request recorded for layer %d", i);
        Twinedge__LayerRequest *q = twinedge__layer_request__unpack(NULL, b->tmpl_len[i], b->tmpl[i]);
        if (!q)
            return te_errf(err, TE_EFORMAT, "lep: malformed recorded request");
        q->counter = t;
        size_t n = twinedge__layer_request__get_packed_size(q);
        uint8_t *buf = malloc(n ? n : 1);
        te_status st = TE_OK;
        if (!buf)
            st = te_errf(err, TE_ENOMEM, "out of memory");
        else {
            twinedge__layer_request__pack(q, buf);
            st = te_transport_call(b->inner, TE_PARTY_EDGE_B, buf, n, &b->store[i].resp, &b->store[i].len, err);
        }
        b->store[i].counter = t;
        b->store[i].layer = (uint32_t)i;
        unsigned l = q->ring_bits;
        twinedge__layer_request__free_unpacked(q, NULL);
        free(buf);
        if (st != TE_OK)
            return te_err_wrap(err, "lep: precomputing layer %d", i);
        const te_linear_geom *g = &m->layers[i].geom;
        int64_t batch = g->batch < 1 ? 1 : g->batch;
        /* the mask itself (n_in elements of l bits) and W.mask */
        b->lep_bytes += te_pack_bytes((size_t)(batch * te_geom_in_len(g)), l) + b->store[i].len;
    }
    return TE_OK;
}

/* ---- plaintext outsourcing (no privacy) -------------------------------------- */

typedef struct plain_ctx {
    bench_link *link;
    const char *deployment_id;
    char device_id[64];        /* the hosts serve a device in its own name only */
    uint64_t *bits;
    size_t bits_len;
    uint8_t *buf;
    size_t buf_len;
} plain_ctx;

static void *grow(void **p, size_t *have, size_t need)
{
    if (need > *have) {
        void *n = realloc(*p, need);
        if (!n)
            return NULL;
        *p = n;
        *have = need;
    }
    return *p;
}

/* One linear layer outsourced in the clear: x as float32 to EdgeA, W.x in
 * float32 back; the device applies the weight scales and bias. */
static te_status plain_linear(void *vctx, const te_model *m, int layer, const float *x, float *y, te_err *err)
{
    plain_ctx *pc = vctx;
    const te_layer *L = &m->layers[layer];
    const te_linear_geom *g = &L->geom;
    int64_t batch = g->batch < 1 ? 1 : g->batch;
    size_t n_in = (size_t)(batch * te_geom_in_len(g)), n_out = (size_t)(batch * te_geom_out_len(g));
    size_t nmax = n_in > n_out ? n_in : n_out;
    link_enter_layer(pc->link, layer);
    if (!grow((void **)&pc->bits, &pc->bits_len, nmax * sizeof *pc->bits) ||
        !grow((void **)&pc->buf, &pc->buf_len, te_pack_bytes(n_in, 32) + 1))
        return te_errf(err, TE_ENOMEM, "out of memory");
    for (size_t i = 0; i < n_in; i++) {
        uint32_t b;
        memcpy(&b, &x[i], sizeof b);
        pc->bits[i] = b;
    }
    te_pack(pc->bits, n_in, 32, pc->buf);
    Twinedge__LayerRequest q = TWINEDGE__LAYER_REQUEST__INIT;
    q.deployment_id = (char *)pc->deployment_id;
    q.device_id = pc->device_id;
    q.layer = (uint32_t)layer;
    q.ring_bits = 32;
    q.batch = (uint64_t)batch;
    q.mode = TWINEDGE__MODE__MODE_PLAIN;
    q.data.data = pc->buf;
    q.data.len = te_pack_bytes(n_in, 32);
    size_t n = twinedge__layer_request__get_packed_size(&q);
    uint8_t *req = malloc(n), *resp = NULL;
    size_t resp_len = 0;
    if (!req)
        return te_errf(err, TE_ENOMEM, "out of memory");
    twinedge__layer_request__pack(&q, req);
    te_status st = te_transport_call(&pc->link->self, TE_PARTY_EDGE_A, req, n, &resp, &resp_len, err);
    free(req);
    if (st == TE_OK)
        st = te_wire_read_response(resp, resp_len, "EdgeA", (uint32_t)layer, n_out, 32, pc->bits, err);
    free(resp);
    if (st != TE_OK)
        return st;
    int64_t P = g->kind == TE_LIN_FC ? 1 : g->out_h * g->out_w, out_len = te_geom_out_len(g);
    for (size_t i = 0; i < n_out; i++) {
        uint32_t b = (uint32_t)pc->bits[i];
        float v;
        memcpy(&v, &b, sizeof v);
        int64_t o = ((int64_t)i % out_len) / P;
        y[i] = v * L->w_scale[o]; /* W_real ~= W_int * w_scale, x in the clear */
    }
    te_add_bias(L, batch, y);
    return TE_OK;
}

/* ---- a device session over the network --------------------------------------- */

typedef struct session {
    twinedge_device *dev;       /* private modes */
    te_transport *net;
    te_traffic traffic;
    bench_link link;
    te_exec *ex;                /* plaintext outsourcing */
    plain_ctx pc;
    const te_model *m;
} session;

static void session_close(session *s)
{
    twinedge_close(s->dev);
    if (s->net)
        te_transport_free(s->net);
    link_free(&s->link);
    te_exec_free(s->ex);
    free(s->pc.bits);
    free(s->pc.buf);
    memset(s, 0, sizeof *s);
}

/* m: the owner's model (for the plaintext path: scales and biases). */
static te_status session_open(session *s, const te_model *m, const char *device_dir, const char *const addr[2],
                              te_err *err)
{
    memset(s, 0, sizeof *s);
    s->m = m;
    char tls[4200];
    snprintf(tls, sizeof tls, "%s/tls", device_dir);
    te_net_creds creds;
    memset(&creds, 0, sizeof creds);
    te_status st = te_net_creds_load(tls, &creds, err);
    if (st != TE_OK)
        return st;
    te_net_transport_config tc = {addr[0], addr[1], &creds, 120000, 0, &s->traffic};
    st = te_net_transport_new(&tc, &s->net, err);
    te_net_creds_free(&creds);
    if (st == TE_OK)
        st = link_init(&s->link, s->net, m->n_layers, err);
    if (st == TE_OK && twinedge_open(device_dir, &s->dev) != TWINEDGE_OK)
        st = te_errf(err, TE_EIO, "%s", twinedge_errmsg(s->dev));
    if (st == TE_OK) {
        twinedge_use_transport(s->dev, &s->link.self);
        twinedge_set_layer_hook(s->dev, device_hook, &s->link);
        st = te_exec_new(m, &s->ex, err);
    }
    s->pc.link = &s->link;
    s->pc.deployment_id = m->deployment_id;
    te_device_key key;
    snprintf(tls, sizeof tls, "%s/device.key", device_dir);
    if (st == TE_OK && (st = te_device_key_read(tls, &key, err)) == TE_OK)
        memcpy(s->pc.device_id, key.device_id, sizeof s->pc.device_id);
    memset(&key, 0, sizeof key);
    if (st != TE_OK)
        session_close(s);
    return st;
}

static te_status session_infer(session *s, int mode, const float *x, size_t n_in, float *y, size_t n_out,
                               te_err *err)
{
    link_reset(&s->link);
    te_status st;
    if (mode == M_PLAIN) {
        if ((st = te_transport_begin(&s->link.self, err)) != TE_OK)
            return st;
        st = te_exec_run(s->ex, x, n_in, plain_linear, &s->pc, err);
        te_transport_end(&s->link.self);
        if (st == TE_OK) {
            te_shape sh;
            memcpy(y, te_exec_output(s->ex, &sh), n_out * sizeof *y);
        }
        return st;
    }
    twinedge_mode tm = mode == M_RELAY ? TWINEDGE_RELAY : TWINEDGE_MEDIATED;
    if (twinedge_infer(s->dev, tm, x, n_in, y, n_out) != TWINEDGE_OK)
        return te_errf(err, (te_status)twinedge_errcode(s->dev), "%s", twinedge_errmsg(s->dev));
    return TE_OK;
}

/* The LEP baseline's offline phase for this session's next request. */
static te_status session_lep_prepare(session *s, const float *x, size_t n_in, float *y, size_t n_out, te_err *err)
{
    if (!s->link.tmpl[0]) {
        /* record EdgeB's requests once, from one ordinary mediated inference */
        s->link.lep_record = 1;
        te_status st = session_infer(s, M_MEDIATED, x, n_in, y, n_out, err);
        s->link.lep_record = 0;
        if (st != TE_OK)
            return st;
    }
    twinedge_report rep;
    twinedge_last_report(s->dev, &rep);
    s->link.lep_serve = 0;
    te_status st = lep_precompute(&s->link, s->m, rep.counter + 1, err);
    s->link.lep_serve = st == TE_OK;
    return st;
}

/* ---- one mode over one link ---------------------------------------------------- */

static double energy(const suite_opts *o, double cpu_s, uint64_t bytes)
{
    return o->device_watts * cpu_s + o->radio_nj_per_byte * 1e-9 * (double)bytes;
}

/* Wait (at most 10 s) until both hosts are idle, e.g. EdgeB has finished
 * precomputing the next request: one device's inferences come spaced out. */
static void settle(const te_hostpair *hp)
{
    double last = proc_cpu_s(hp->pid[0]) + proc_cpu_s(hp->pid[1]);
    for (int i = 0; i < 500; i++) {
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL);
        double now = proc_cpu_s(hp->pid[0]) + proc_cpu_s(hp->pid[1]);
        if (now - last < 0.002)
            return;
        last = now;
    }
}

static te_status measure_mode(const suite_opts *o, const te_model *m, session *s, const te_hostpair *hp, int mode,
                              int reps, const float *x, size_t n_in, float *y, size_t n_out, const float *ref,
                              mode_fig *f, te_err *err)
{
    int nl = m->n_layers;
    double wall[S_MAX_REPS], cpu[S_MAX_REPS], hc[2][S_MAX_REPS], tmp[S_MAX_REPS];
    double *lay = calloc((size_t)(reps * (nl ? nl : 1)), sizeof *lay);
    f->layer_s = calloc((size_t)(nl ? nl : 1), sizeof *f->layer_s);
    f->layer_up = calloc((size_t)(nl ? nl : 1), sizeof *f->layer_up);
    f->layer_down = calloc((size_t)(nl ? nl : 1), sizeof *f->layer_down);
    if (!lay || !f->layer_s || !f->layer_up || !f->layer_down) {
        free(lay);
        return te_errf(err, TE_ENOMEM, "out of memory");
    }
    te_status st = TE_OK;
    uint64_t sum[4] = {0, 0, 0, 0};
    for (int r = -1; r < reps && st == TE_OK; r++) {
        if (mode == M_LEP && (st = session_lep_prepare(s, x, n_in, y, n_out, err)) != TE_OK)
            break;
        te_host_figures f0[2], f1[2];
        settle(hp);
        if ((st = te_hostpair_stats(hp, f0, err)) != TE_OK)
            break;
        double h0[2] = {proc_cpu_s(hp->pid[0]), proc_cpu_s(hp->pid[1])};
        double c0 = te_clock_s(CLOCK_PROCESS_CPUTIME_ID), w0 = te_clock_s(CLOCK_MONOTONIC);
        st = session_infer(s, mode == M_LEP ? M_MEDIATED : mode, x, n_in, y, n_out, err);
        double w1 = te_clock_s(CLOCK_MONOTONIC), c1 = te_clock_s(CLOCK_PROCESS_CPUTIME_ID);
        double h1[2] = {proc_cpu_s(hp->pid[0]), proc_cpu_s(hp->pid[1])};
        s->link.lep_serve = 0;
        if (st != TE_OK)
            break;
        if ((st = te_hostpair_stats(hp, f1, err)) != TE_OK)
            break;
        if (r < 0)
            continue;
        wall[r] = w1 - w0;
        cpu[r] = c1 - c0;
        hc[0][r] = h1[0] - h0[0];
        hc[1][r] = h1[1] - h0[1];
        sum[0] += f1[0].bytes_in - f0[0].bytes_in;
        sum[1] += f1[0].bytes_out - f0[0].bytes_out;
        sum[2] += f1[1].bytes_in - f0[1].bytes_in;
        sum[3] += f1[1].bytes_out - f0[1].bytes_out;
        for (int i = 0; i < nl; i++) {
            double next = i + 1 < nl ? s->link.layer_t0[i + 1] : w1;
            lay[r * nl + i] = next - s->link.layer_t0[i];
        }
    }
    if (st == TE_OK && ref) {
        /* every mode must give the model's answer (plaintext within float32
         * rounding of the same integer weights; private ones bit for bit
         * equal to each other, checked by the caller) */
        double dot = 0, na = 0, nb = 0;
        for (size_t i = 0; i < n_out; i++)
            dot += (double)y[i] * ref[i], na += (double)y[i] * y[i], nb += (double)ref[i] * ref[i];
        double cosine = na > 0 && nb > 0 ? dot / sqrt(na * nb) : 0;
        f->cosine = cosine;
        if (cosine < 0.999)
            st = te_errf(err, TE_EINTEGRITY, "%s output differs from the plaintext model (cosine %.5f)",
                         mode_name[mode], cosine);
    }
    if (st == TE_OK) {
        f->wall_s = median(wall, reps);
        f->device_cpu_s = median(cpu, reps);
        memcpy(tmp, hc[0], sizeof tmp);
        f->host_cpu_s[0] = median(tmp, reps);
        memcpy(tmp, hc[1], sizeof tmp);
        f->host_cpu_s[1] = median(tmp, reps);
        f->up = s->link.up;
        f->down = s->link.down;
        f->a_in = sum[0] / (uint64_t)reps;
        f->a_out = sum[1] / (uint64_t)reps;
        f->b_in = sum[2] / (uint64_t)reps;
        f->b_out = sum[3] / (uint64_t)reps;
        f->energy_j = energy(o, f->device_cpu_s, f->up + f->down);
        for (int i = 0; i < nl; i++) {
            for (int r = 0; r < reps; r++)
                tmp[r] = lay[r * nl + i];
            f->layer_s[i] = median(tmp, reps);
            f->layer_up[i] = s->link.layer_up[i];
            f->layer_down[i] = s->link.layer_down[i];
        }
    }
    free(lay);
    return st;
}

/* ---- throughput: many devices at once ----------------------------------------- */

typedef struct client {
    pthread_t tid;
    session s;
    int mode, requests;
    const float *x;
    size_t n_in, n_out;
    float *y;
    double *lat;
    pthread_barrier_t *start;
    te_status st;
    te_err err;
    double t_end;
} client;

static void *client_main(void *arg)
{
    client *c = arg;
    pthread_barrier_wait(c->start);
    for (int i = 0; i < c->requests && c->st == TE_OK; i++) {
        double t0 = te_clock_s(CLOCK_MONOTONIC);
        c->st = session_infer(&c->s, c->mode, c->x, c->n_in, c->y, c->n_out, &c->err);
        c->lat[i] = te_clock_s(CLOCK_MONOTONIC) - t0;
    }
    c->t_end = te_clock_s(CLOCK_MONOTONIC);
    return NULL;
}

static double percentile(double *v, int n, double p)
{
    qsort(v, (size_t)n, sizeof *v, cmp_double);
    int i = (int)(p * (n - 1) + 0.5);
    return v[i < 0 ? 0 : (i >= n ? n - 1 : i)];
}

static te_status measure_tput(const suite_opts *o, const te_model *m, const char *work, const te_hostpair *hp,
                              int mode, const float *x, size_t n_in, size_t n_out, tput_fig *f, te_err *err)
{
    int nc = o->clients;
    client *cs = calloc((size_t)nc, sizeof *cs);
    double *all = calloc((size_t)(nc * o->requests), sizeof *all);
    pthread_barrier_t start;
    if (!cs || !all) {
        free(cs);
        free(all);
        return te_errf(err, TE_ENOMEM, "out of memory");
    }
    pthread_barrier_init(&start, NULL, (unsigned)nc + 1);
    te_status st = TE_OK;
    int opened = 0, started = 0;
    for (int i = 0; i < nc && st == TE_OK; i++) {
        char dir[4200];
        snprintf(dir, sizeof dir, "%s/device-%d", work, i);
        client *c = &cs[i];
        c->mode = mode;
        c->requests = o->requests;
        c->x = x;
        c->n_in = n_in;
        c->n_out = n_out;
        c->start = &start;
        c->y = malloc(n_out * sizeof *c->y);
        c->lat = calloc((size_t)o->requests, sizeof *c->lat);
        if (!c->y || !c->lat)
            st = te_errf(err, TE_ENOMEM, "out of memory");
        else if ((st = session_open(&c->s, m, dir, (const char *const[2]){hp->addr[0], hp->addr[1]}, err)) == TE_OK)
            opened++;
    }
    /* One warm-up each, one device at a time, outside the measurement:
     * connections and TLS sessions are up before the load starts. */
    for (int i = 0; i < opened && st == TE_OK; i++) {
        client *c = &cs[i];
        if ((st = session_infer(&c->s, c->mode, c->x, c->n_in, c->y, c->n_out, &c->err)) != TE_OK)
            te_errf(err, st, "client %d warm-up: %s", i, c->err.msg);
    }
    for (int i = 0; i < opened && st == TE_OK; i++) {
        if (pthread_create(&cs[i].tid, NULL, client_main, &cs[i]) != 0)
            st = te_errf(err, TE_ENOMEM, "cannot start client thread %d", i);
        else
            started++;
    }
    if (st == TE_OK) {
        pthread_barrier_wait(&start);
        double t0 = te_clock_s(CLOCK_MONOTONIC), t1 = t0;
        for (int i = 0; i < started; i++) {
            pthread_join(cs[i].tid, NULL);
            if (cs[i].t_end > t1)
                t1 = cs[i].t_end;
            if (cs[i].st != TE_OK && st == TE_OK) {
                st = cs[i].st;
                te_errf(err, st, "client %d: %s", i, cs[i].err.msg);
            }
        }
        started = 0;
        if (st == TE_OK) {
            int n = 0;
            for (int i = 0; i < nc; i++)
                for (int r = 0; r < o->requests; r++)
                    all[n++] = cs[i].lat[r];
            f->clients = nc;
            f->inferences = n;
            f->wall_s = t1 - t0;
            f->per_s = (double)n / f->wall_s;
            f->p50_s = percentile(all, n, 0.50);
            f->p99_s = percentile(all, n, 0.99);
            }
    } else {
        /* threads that started wait at the barrier: release them */
        if (started)
            pthread_barrier_wait(&start);
        for (int i = 0; i < started; i++)
            pthread_join(cs[i].tid, NULL);
    }
    for (int i = 0; i < nc; i++) {
        session_close(&cs[i].s);
        free(cs[i].y);
        free(cs[i].lat);
    }
    pthread_barrier_destroy(&start);
    free(cs);
    free(all);
    return st;
}

/* ---- the emulated wireless link ------------------------------------------------ */

typedef struct wlink {
    int up;
    int netem;                  /* 1: namespace + tc netem; 0: the user-space link emulator */
    char ns[32], dev_a[16], dev_b[16];
    char how[512];              /* for the report */
} wlink;

static int sh(const char *cmd)
{
    int rc = system(cmd);
    return rc == -1 ? -1 : (WIFEXITED(rc) ? WEXITSTATUS(rc) : -1);
}

static void wlink_down(wlink *w)
{
    if (!w->up || !w->netem)
        return;
    char cmd[256];
    snprintf(cmd, sizeof cmd, "ip link del %s >/dev/null 2>&1; ip netns del %s >/dev/null 2>&1", w->dev_a, w->ns);
    (void)sh(cmd);
    w->up = 0;
}

/* A network namespace for the two hosts, reached over a veth pair shaped
 * by netem in both directions (half the round trip each way).  EdgeA and
 * EdgeB talk inside the namespace, unshaped: only the device's link is
 * wireless.  Where that cannot be had (not root, no iproute2, a kernel
 * without netem), the device reaches the hosts through the user-space link
 * emulator (linkemu.h) with the same rate and delay, and `how` says why. */
static void wlink_up(const suite_opts *o, wlink *w)
{
    memset(w, 0, sizeof *w);
    w->up = 1;
    const char *why = NULL;
    if (geteuid() != 0)
        why = "not run as root (network namespaces and tc netem need it)";
    else if (access("/usr/sbin/ip", X_OK) != 0 || access("/usr/sbin/tc", X_OK) != 0)
        why = "ip or tc not found (Debian: iproute2)";
    else if (sh("tc qdisc add dev lo root netem delay 0ms >/dev/null 2>&1 && tc qdisc del dev lo root") != 0)
        why = "this kernel has no netem qdisc (sch_netem)";
    if (!why) {
        int id = (int)getpid() % 100000;
        snprintf(w->ns, sizeof w->ns, "te-bench-%d", id);
        snprintf(w->dev_a, sizeof w->dev_a, "teb%da", id);
        snprintf(w->dev_b, sizeof w->dev_b, "teb%db", id);
        w->netem = 1;
        char cmd[2048];
        double half = o->rtt_ms / 2;
        snprintf(cmd, sizeof cmd,
                 "set -e; ip netns add %1$s; ip link add %2$s type veth peer name %3$s; ip link set %3$s netns %1$s; "
                 "ip addr add 10.213.0.1/24 dev %2$s; ip link set %2$s up; "
                 "ip -n %1$s addr add 10.213.0.2/24 dev %3$s; ip -n %1$s link set %3$s up; "
                 "ip -n %1$s link set lo up; "
                 "tc qdisc add dev %2$s root netem delay %4$.3fms rate %5$.3fmbit limit 100000; "
                 "ip netns exec %1$s tc qdisc add dev %3$s root netem delay %4$.3fms rate %5$.3fmbit limit 100000",
                 w->ns, w->dev_a, w->dev_b, half, o->rate_mbit);
        if (sh(cmd) == 0) {
            snprintf(w->how, sizeof w->how, "network namespace %s over a veth pair, tc netem %.1f Mbit/s and "
                     "%.2f ms each way", w->ns, o->rate_mbit, half);
            return;
        }
        wlink_down(w);
        w->up = 1;
        why = "setting up the network namespace and netem failed";
    }
    w->netem = 0;
    snprintf(w->how, sizeof w->how, "user-space link emulator on loopback (%.1f Mbit/s and %.2f ms each way, "
             "each direction serialized): tc netem not used because %s", o->rate_mbit, o->rtt_ms / 2, why);
}

/* ---- one model ----------------------------------------------------------------- */

static uint64_t file_size(const char *p)
{
    struct stat st;
    return stat(p, &st) == 0 ? (uint64_t)st.st_size : 0;
}

static uint64_t brotli_size(const uint8_t *buf, size_t len)
{
    size_t cap = BrotliEncoderMaxCompressedSize(len);
    uint8_t *out = malloc(cap ? cap : 1);
    if (!out)
        return 0;
    size_t n = cap;
    int ok = BrotliEncoderCompress(9, BROTLI_DEFAULT_WINDOW, BROTLI_MODE_GENERIC, len, buf, &n, out);
    free(out);
    return ok ? (uint64_t)n : 0;
}

static te_status kernels_model(const suite_opts *o, const te_model *m, model_fig *F, te_err *err)
{
    char cfg[64];
    /* threads=N is the CPU plugin's key; other plugins get their defaults */
    snprintf(cfg, sizeof cfg, "threads=%d", o->threads);
    te_plugin *plugin = NULL;
    te_status st = te_plugin_open(o->plugin, strcmp(o->plugin, "cpu") == 0 ? cfg : NULL, &plugin, err);
    if (st != TE_OK)
        return st;
    const te_plugin_ops *ops = te_plugin_get_ops(plugin);
    te_plugin_ctx *ctx = te_plugin_get_ctx(plugin);
    F->plain_ok = ops->run_f32 != NULL;
    openblas_set_num_threads(o->threads);
    static const int64_t batches[2] = {1, 16};
    F->k = calloc((size_t)(2 * m->n_layers + 1), sizeof *F->k);
    if (!F->k)
        st = te_errf(err, TE_ENOMEM, "out of memory");
    for (int li = 0; li < m->n_layers && st == TE_OK; li++) {
        const te_layer *L = &m->layers[li];
        te_plugin_layer *pl = NULL;
        if ((st = ops->load_layer(ctx, &L->geom, L->w, &pl, err)) != TE_OK)
            break;
        for (int bi = 0; bi < 2 && st == TE_OK; bi++) {
            krow *R = &F->k[F->n_k];
            snprintf(R->layer, sizeof R->layer, "%s", L->name ? L->name : "?");
            layer_shape(&L->geom, R->shape, sizeof R->shape);
            R->batch = batches[bi];
            R->ring_bits = L->ring_bits;
            st = bench_layer_times(ops, ctx, pl, L, R->batch, o->reps, bench_plain_on_plugin(ops), &R->plain_s,
                                   &R->secure_s, NULL, err);
            if (st == TE_OK) {
                double r = R->secure_s / R->plain_s;
                if (r > F->k_worst)
                    F->k_worst = r, F->k_worst_i = F->n_k;
                F->n_k++;
            }
        }
        ops->release_layer(ctx, pl);
        if (li % 10 == 9 || li + 1 == m->n_layers)
            progress("%s: kernels, %d/%d layers", F->name, li + 1, m->n_layers);
    }
    te_plugin_close(plugin);
    return st;
}

/* Both hosts, the single-device latency of every mode and, over loopback,
 * the throughput figures. */
static te_status link_run(const suite_opts *o, const te_model *m, model_fig *F, const char *work,
                          const char *deploy, const wlink *w, const float *x, size_t n_in, const float *ref,
                          size_t n_out, te_err *err)
{
    const char *link = w ? "wireless" : "loopback";
    char hwork[4200], threads[32], window[16], pre[16];
    snprintf(hwork, sizeof hwork, "%s/hosts-%s", work, link);
    snprintf(threads, sizeof threads, "%s%d", strcmp(o->plugin, "cpu") == 0 ? "threads=" : "", o->threads);
    snprintf(window, sizeof window, "%d", o->batch_window_us);
    snprintf(pre, sizeof pre, "%d", o->precompute_mb);
    if (mkdir(hwork, 0700) != 0 && errno != EEXIST)
        return te_errf(err, TE_EIO, "cannot create %s: %s", hwork, strerror(errno));
    /* relay: EdgeA fetches the next request's W.M + Z ahead (1 GiB cap) */
    const char *extra[] = {"--relay-ahead-kb", "1048576", "--workers", "160", "--batch-window-us", window,
                           "--precompute-mb", pre, "--allow-plaintext", "1", "--plugin-config", threads, NULL};
    if (strcmp(o->plugin, "cpu") != 0)
        extra[10] = NULL; /* threads=N is the CPU plugin's key */
    int in_ns = w && w->netem;
    te_hostpair_opts ho = {o->plugin, in_ns ? w->ns : NULL, in_ns ? "10.213.0.2" : NULL, extra};
    te_hostpair hp;
    te_status st = te_hostpair_start_opts(&hp, deploy, hwork, &ho, err);
    if (st != TE_OK)
        return st;
    /* where the device connects: the hosts, or the link emulator in front of them */
    te_linkemu *emu[2] = {NULL, NULL};
    char emu_addr[2][64];
    const char *addr[2] = {hp.addr[0], hp.addr[1]};
    for (int i = 0; i < 2 && w && !w->netem && st == TE_OK; i++) {
        st = te_linkemu_start(hp.addr[i], o->rate_mbit, o->rtt_ms / 2, emu_addr[i], sizeof emu_addr[i], &emu[i],
                              err);
        addr[i] = emu_addr[i];
    }
    mode_fig *figs = w ? F->wifi : F->loop;
    int reps = w ? (o->reps + 1) / 2 : o->reps;
    float *y = malloc(n_out * sizeof *y), *yrelay = malloc(n_out * sizeof *yrelay);
    char dev0[4200];
    snprintf(dev0, sizeof dev0, "%s/device-0", work);
    session s;
    memset(&s, 0, sizeof s);
    if (!y || !yrelay)
        st = te_errf(err, TE_ENOMEM, "out of memory");
    else if (st == TE_OK)
        st = session_open(&s, m, dev0, addr, err);
    for (int k = 0; k < N_MODES && st == TE_OK; k++) {
        if (k == M_PLAIN && !F->plain_ok)
            continue;
        progress("%s: %s, %s (%d repetitions)", F->name, link, mode_title[k], reps);
        st = measure_mode(o, m, &s, &hp, k, reps, x, n_in, y, n_out, ref, &figs[k], err);
        figs[k].measured = st == TE_OK;
        if (st != TE_OK) {
            te_err_wrap(err, "%s over %s", mode_name[k], link);
            break;
        }
        if (k == M_RELAY)
            memcpy(yrelay, y, n_out * sizeof *y);
        else if (k != M_PLAIN && memcmp(y, yrelay, n_out * sizeof *y) != 0)
            st = te_errf(err, TE_EINTEGRITY, "%s: %s and relay outputs differ", F->name, mode_name[k]);
        if (!w && k == M_PLAIN && s.link.sample) {
            F->plainact_bytes = s.link.sample_len;
            F->plainact_brotli = brotli_size(s.link.sample, s.link.sample_len);
        }
        if (!w && k == M_RELAY && s.link.sample) {
            F->blinded_bytes = s.link.sample_len;
            F->blinded_brotli = brotli_size(s.link.sample, s.link.sample_len);
        }
        free(s.link.sample);
        s.link.sample = NULL;
        if (!w && k == M_LEP)
            F->storage_lep_per_req = s.link.lep_bytes;
    }
    if (y && yrelay && s.net)
        session_close(&s);
    te_linkemu_stop(emu[0]);
    te_linkemu_stop(emu[1]);
    if (!w && st == TE_OK && o->clients > 0) {
        for (int k = F->plain_ok ? 0 : 1; k < 2 && st == TE_OK; k++) {
            progress("%s: throughput, %d devices x %d inferences, %s", F->name, o->clients, o->requests,
                     mode_title[k ? M_RELAY : M_PLAIN]);
            st = measure_tput(o, m, work, &hp, k ? M_RELAY : M_PLAIN, x, n_in, n_out, &F->tput[k], err);
            F->tput[k].measured = st == TE_OK;
        }
    }
    free(y);
    free(yrelay);
    te_err scratch;
    te_status st2 = te_hostpair_stop(&hp, &scratch);
    if (st == TE_OK && st2 != TE_OK)
        st = te_errf(err, st2, "%s", scratch.msg);
    return st;
}

/* ---- the device's floor ------------------------------------------------------- */

/* The least CPU work a private inference can ask of the device: generate
 * its PRF bytes, encrypt and decrypt its link bytes under TLS, and run its
 * non-linear layers.  Everything else the device does (encoding, packing,
 * the checks, gRPC) is overhead over this floor. */

/* The layers' outputs from one plaintext inference, copied in place of
 * each linear layer, so the non-linear layers see the values they see in a
 * real inference (the copies are counted with them). */
typedef struct replay_ctx {
    blas_ctx *bc;
    float **y;                 /* [n_layers]: recorded outputs */
    int record;
} replay_ctx;

static size_t layer_out_len(const te_layer *L)
{
    int64_t batch = L->geom.batch < 1 ? 1 : L->geom.batch;
    return (size_t)(batch * te_geom_out_len(&L->geom));
}

static te_status replay_linear(void *vctx, const te_model *m, int layer, const float *x, float *y, te_err *err)
{
    replay_ctx *rc = vctx;
    size_t n = layer_out_len(&m->layers[layer]);
    if (!rc->record) {
        if (!rc->y[layer])
            return te_errf(err, TE_EINVAL, "floor: layer %d was not recorded", layer);
        memcpy(y, rc->y[layer], n * sizeof *y);
        return TE_OK;
    }
    te_status st = blas_linear(rc->bc, m, layer, x, y, err);
    if (st != TE_OK)
        return st;
    free(rc->y[layer]);
    if (!(rc->y[layer] = malloc(n ? n * sizeof *y : 1)))
        return te_errf(err, TE_ENOMEM, "out of memory");
    memcpy(rc->y[layer], y, n * sizeof *y);
    return TE_OK;
}

/* The PRF words a relay inference draws: per layer, the mask M over its
 * input and Z over its output, 8 bytes per element (te_prf.h). */
static te_status floor_prf(const te_model *m, uint64_t t, uint64_t *bytes, te_err *err)
{
    uint8_t key[TE_KEY_BYTES];
    uint64_t buf[1024];
    te_status st = te_random_bytes(key, sizeof key, err);
    *bytes = 0;
    for (int i = 0; i < m->n_layers && st == TE_OK; i++) {
        const te_linear_geom *g = &m->layers[i].geom;
        int64_t batch = g->batch < 1 ? 1 : g->batch;
        const size_t n[2] = {(size_t)(batch * te_geom_in_len(g)), (size_t)(batch * te_geom_out_len(g))};
        const te_prf_purpose what[2] = {TE_PRF_MASK, TE_PRF_OUT};
        for (int k = 0; k < 2 && st == TE_OK; k++) {
            te_prf_stream ps;
            if ((st = te_prf_stream_open(&ps, key, t, (uint32_t)i, what[k], err)) != TE_OK)
                break;
            for (size_t done = 0; done < n[k] && st == TE_OK; done += 1024)
                st = te_prf_stream_read(&ps, buf, n[k] - done < 1024 ? n[k] - done : 1024, err);
            te_prf_stream_close(&ps);
            *bytes += 8 * (uint64_t)n[k];
        }
    }
    return st;
}

/* TLS 1.3's record layer over `up` bytes sent and `down` received:
 * AES-256-GCM (the suite OpenSSL prefers) in records of 2^14 bytes, each
 * with its own nonce and tag; received records are authenticated and
 * decrypted. */
#define TLS_RECORD 16384
static te_status floor_tls(uint64_t up, uint64_t down, te_err *err)
{
    static uint8_t pt[TLS_RECORD], ct[TLS_RECORD + 16], out[TLS_RECORD];
    uint8_t key[32], base[12], iv[12], tag[16];
    te_status st = te_random_bytes(key, sizeof key, err);
    if (st == TE_OK)
        st = te_random_bytes(base, sizeof base, err);
    memcpy(iv, base, sizeof iv);
    EVP_CIPHER_CTX *c = EVP_CIPHER_CTX_new();
    if (st == TE_OK && !c)
        st = te_errf(err, TE_ENOMEM, "out of memory");
    int len = 0;
    for (uint64_t left = up, seq = 0; st == TE_OK && left > 0; seq++) {
        int n = left < TLS_RECORD ? (int)left : TLS_RECORD;
        for (int b = 0; b < 8; b++) /* per-record nonce: the sequence number XORed in, as TLS 1.3 does */
            iv[11 - b] = base[11 - b] ^ (uint8_t)(seq >> (8 * b));
        if (EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv) != 1 ||
            EVP_EncryptUpdate(c, ct, &len, pt, n) != 1 || EVP_EncryptFinal_ex(c, ct + len, &len) != 1 ||
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1)
            st = te_errf(err, TE_EIO, "floor: AES-256-GCM encryption failed");
        left -= (uint64_t)n;
    }
    /* one full record and its tag, decrypted again for every record received */
    if (st == TE_OK && down > 0 &&
        (EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv) != 1 ||
         EVP_EncryptUpdate(c, ct, &len, pt, TLS_RECORD) != 1 || EVP_EncryptFinal_ex(c, ct + len, &len) != 1 ||
         EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, 16, tag) != 1))
        st = te_errf(err, TE_EIO, "floor: AES-256-GCM encryption failed");
    for (uint64_t left = down; st == TE_OK && left > 0;) {
        int n = left < TLS_RECORD ? (int)left : TLS_RECORD;
        int ok = EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), NULL, key, iv) == 1 &&
                 EVP_DecryptUpdate(c, out, &len, ct, n) == 1 &&
                 EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, 16, tag) == 1;
        /* a partial record's tag does not match the full one's: only full
         * records are authenticated (the work is the same) */
        if (!ok || (n == TLS_RECORD && EVP_DecryptFinal_ex(c, out + len, &len) != 1))
            st = te_errf(err, TE_EIO, "floor: AES-256-GCM decryption failed");
        left -= (uint64_t)n;
    }
    EVP_CIPHER_CTX_free(c);
    return st;
}

/* The floor of the relay inference measured over loopback (F->loop[M_RELAY]
 * gives the link bytes); rc has each linear layer's output recorded. */
static te_status measure_floor(const suite_opts *o, const te_model *m, te_exec *ex, replay_ctx *rc, const float *x,
                               size_t n_in, model_fig *F, te_err *err)
{
    const mode_fig *R = &F->loop[M_RELAY];
    if (!R->measured)
        return TE_OK;
    double tp[S_MAX_REPS], tt[S_MAX_REPS], tn[S_MAX_REPS];
    te_status st = TE_OK;
    rc->record = 0;
    for (int r = -1; r < o->reps && st == TE_OK; r++) {
        double c0 = te_clock_s(CLOCK_THREAD_CPUTIME_ID);
        st = floor_prf(m, (uint64_t)(r + 1), &F->floor_prf_bytes, err);
        double c1 = te_clock_s(CLOCK_THREAD_CPUTIME_ID);
        if (st == TE_OK)
            st = floor_tls(R->up, R->down, err);
        double c2 = te_clock_s(CLOCK_THREAD_CPUTIME_ID);
        if (st == TE_OK)
            st = te_exec_run(ex, x, n_in, replay_linear, rc, err);
        double c3 = te_clock_s(CLOCK_THREAD_CPUTIME_ID);
        if (r >= 0)
            tp[r] = c1 - c0, tt[r] = c2 - c1, tn[r] = c3 - c2;
    }
    if (st != TE_OK)
        return te_err_wrap(err, "the device's floor");
    F->floor_prf_s = median(tp, o->reps);
    F->floor_tls_s = median(tt, o->reps);
    F->floor_nonlinear_s = median(tn, o->reps);
    F->floor_tls_bytes = R->up + R->down;
    F->floor_measured = 1;
    return TE_OK;
}

static te_status run_model(const suite_opts *o, const char *name, model_fig *F, te_err *err)
{
    memset(F, 0, sizeof *F);
    F->name = name;
    progress("%s: compiling %s/%s.onnx", name, o->models_dir, name);
    te_model *m = NULL;
    te_exec *ex = NULL;
    float *x = NULL, *ref = NULL;
    blas_ctx bc = {NULL, 0};
    replay_ctx rc = {&bc, NULL, 1};
    char work[4096], deploy[4200];
    const char *tmp = getenv("TMPDIR");
    snprintf(work, sizeof work, "%s/twinedge-bench-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(work))
        return te_errf(err, TE_EIO, "cannot create a scratch directory: %s", strerror(errno));
    snprintf(deploy, sizeof deploy, "%s/deploy", work);
    te_status st = build_model(o->models_dir, name, &o->owner, &m, err);
    if (st == TE_OK)
        st = te_exec_new(m, &ex, err);
    if (st != TE_OK)
        goto out;
    F->n_layers = m->n_layers;
    F->ring_bits = calloc((size_t)m->n_layers + 1, sizeof *F->ring_bits);
    F->layer_names = calloc((size_t)m->n_layers + 1, sizeof *F->layer_names);
    rc.y = calloc((size_t)m->n_layers + 1, sizeof *rc.y);
    if (!F->ring_bits || !F->layer_names || !rc.y) {
        st = te_errf(err, TE_ENOMEM, "out of memory");
        goto out;
    }
    for (int i = 0; i < m->n_layers; i++) {
        F->ring_bits[i] = m->layers[i].ring_bits;
        F->layer_names[i] = strdup(m->layers[i].name ? m->layers[i].name : "?");
    }
    te_owner_report orep;
    te_owner_report_compute(m, &orep);
    F->outsourcing_rate = orep.outsourcing_rate;
    F->edge_flops = orep.edge_flops;

    if ((st = kernels_model(o, m, F, err)) != TE_OK)
        goto out;

    /* the model's sample input */
    size_t n_in = (size_t)te_shape_numel(&m->values[m->input].shape);
    size_t n_out = (size_t)te_shape_numel(&m->values[m->output].shape);
    char input[4096];
    snprintf(input, sizeof input, "%s/%s.input.npy", o->models_dir, name);
    te_shape ishape;
    if ((st = te_npy_read(input, &ishape, &x, err)) != TE_OK)
        goto out;
    if ((size_t)te_shape_numel(&ishape) != n_in) {
        st = te_errf(err, TE_ESHAPE, "%s has %lld elements, the model takes %zu", input,
                     (long long)te_shape_numel(&ishape), n_in);
        goto out;
    }
    if (!(ref = malloc(n_out * sizeof *ref))) {
        st = te_errf(err, TE_ENOMEM, "out of memory");
        goto out;
    }

    progress("%s: local plaintext inference on one core (%d repetitions)", name, o->reps);
    openblas_set_num_threads(1);
    double tc[S_MAX_REPS], tw[S_MAX_REPS];
    for (int r = -1; r < o->reps && st == TE_OK; r++) {
        double c0 = te_clock_s(CLOCK_THREAD_CPUTIME_ID), w0 = te_clock_s(CLOCK_MONOTONIC);
        /* the untimed first run also records the layers' outputs for the floor */
        st = r < 0 ? te_exec_run(ex, x, n_in, replay_linear, &rc, err) : te_exec_run(ex, x, n_in, blas_linear, &bc, err);
        if (r >= 0) {
            tc[r] = te_clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
            tw[r] = te_clock_s(CLOCK_MONOTONIC) - w0;
        }
    }
    if (st != TE_OK)
        goto out;
    te_shape osh;
    memcpy(ref, te_exec_output(ex, &osh), n_out * sizeof *ref);
    F->local_cpu_s = median(tc, o->reps);
    F->local_wall_s = median(tw, o->reps);
    F->local_energy_j = energy(o, F->local_cpu_s, 0);

    if ((st = te_owner_write(m, deploy, err)) != TE_OK)
        goto out;
    int n_dev = o->clients > 1 ? o->clients : 1;
    for (int i = 0; i < n_dev && st == TE_OK; i++) {
        char dname[32], ddir[4200];
        snprintf(dname, sizeof dname, "bench-%d", i);
        snprintf(ddir, sizeof ddir, "%s/device-%d", work, i);
        st = te_owner_provision(deploy, dname, ddir, err);
    }
    if (st != TE_OK)
        goto out;

    /* storage on the device */
    char p[4300];
    snprintf(p, sizeof p, "%s/%s.onnx", o->models_dir, name);
    F->storage_local = file_size(p);
    snprintf(p, sizeof p, "%s/device-0/device.bundle", work);
    F->storage_plain = file_size(p);
    F->storage_private = F->storage_plain;
    snprintf(p, sizeof p, "%s/device-0/device.key", work);
    F->storage_private += file_size(p);
    snprintf(p, sizeof p, "%s/device-0/counter", work);
    F->storage_private += file_size(p);
    snprintf(p, sizeof p, "%s/edge.bundle", deploy);
    F->edge_bundle_bytes = file_size(p);
    uint8_t *eb = NULL, *payload = NULL;
    size_t eb_len = 0, payload_len = 0;
    if (te_file_read(p, (size_t)1 << 31, &eb, &eb_len, err) == TE_OK &&
        te_container_decode(eb, eb_len, TE_KIND_EDGE_BUNDLE, &payload, &payload_len, err) == TE_OK)
        F->edge_bundle_raw = payload_len;
    free(eb);
    free(payload);
    te_err_clear(err);

    if ((st = link_run(o, m, F, work, deploy, NULL, x, n_in, ref, n_out, err)) != TE_OK)
        goto out;
    progress("%s: the device's floor (PRF, TLS records, non-linear layers; %d repetitions)", name, o->reps);
    if ((st = measure_floor(o, m, ex, &rc, x, n_in, F, err)) != TE_OK)
        goto out;
    if (o->netem) {
        wlink w;
        wlink_up(o, &w);
        snprintf(F->wifi_note, sizeof F->wifi_note, "%s", w.how);
        st = link_run(o, m, F, work, deploy, &w, x, n_in, ref, n_out, err);
        wlink_down(&w);
        F->wifi_done = st == TE_OK;
    } else {
        snprintf(F->wifi_note, sizeof F->wifi_note, "disabled (--no-netem)");
    }
out:
    if (st != TE_OK)
        te_err_wrap(err, "%s", name);
    for (int i = 0; rc.y && m && i < m->n_layers; i++)
        free(rc.y[i]);
    free(rc.y);
    te_exec_free(ex);
    te_model_free(m);
    free(bc.col);
    free(x);
    free(ref);
    te_err scratch;
    te_rm_rf(work, &scratch);
    return st;
}

/* ---- ratios, JSON, report, charts ---------------------------------------------- */

typedef struct ratios {
    double kernel_worst, device_cpu, latency, bytes, tput, wifi_latency, speedup_local, speedup_local_wifi,
        energy_saving, energy_saving_wifi, device_cpu_mediated, device_floor, latency_lep;
} ratios;

static double div0(double a, double b) { return b > 0 ? a / b : 0; }

/* a / b when both were measured, else NAN (bench.json: null, the report: "not measured"). */
static double ratio_of(int ok, double a, double b) { return ok && b > 0 ? a / b : NAN; }

static ratios model_ratios(const model_fig *F)
{
    ratios r;
    const mode_fig *L = F->loop, *W = F->wifi;
    int plain = L[M_PLAIN].measured && L[M_RELAY].measured;
    int wplain = F->wifi_done && W[M_PLAIN].measured && W[M_RELAY].measured;
    int wrelay = F->wifi_done && W[M_RELAY].measured;
    r.kernel_worst = F->n_k ? F->k_worst : NAN;
    r.device_cpu = ratio_of(L[M_RELAY].measured, L[M_RELAY].device_cpu_s, F->local_cpu_s);
    r.device_cpu_mediated = ratio_of(L[M_MEDIATED].measured, L[M_MEDIATED].device_cpu_s, F->local_cpu_s);
    r.device_floor = ratio_of(L[M_RELAY].measured && F->floor_measured, L[M_RELAY].device_cpu_s,
                              F->floor_prf_s + F->floor_tls_s + F->floor_nonlinear_s);
    r.latency = ratio_of(plain, L[M_RELAY].wall_s, L[M_PLAIN].wall_s);
    r.latency_lep = ratio_of(L[M_RELAY].measured && L[M_LEP].measured, L[M_RELAY].wall_s, L[M_LEP].wall_s);
    r.bytes = ratio_of(plain, (double)(L[M_RELAY].up + L[M_RELAY].down), (double)(L[M_PLAIN].up + L[M_PLAIN].down));
    r.tput = ratio_of(F->tput[0].measured && F->tput[1].measured, F->tput[1].per_s, F->tput[0].per_s);
    r.wifi_latency = ratio_of(wplain, W[M_RELAY].wall_s, W[M_PLAIN].wall_s);
    r.speedup_local = ratio_of(L[M_RELAY].measured, F->local_wall_s, L[M_RELAY].wall_s);
    r.speedup_local_wifi = ratio_of(wrelay, F->local_wall_s, W[M_RELAY].wall_s);
    r.energy_saving = 1 - ratio_of(L[M_RELAY].measured, L[M_RELAY].energy_j, F->local_energy_j);
    r.energy_saving_wifi = 1 - ratio_of(wrelay, W[M_RELAY].energy_j, F->local_energy_j);
    return r;
}

/* A number, or null when it was not measured (NAN): never a 0 that reads as
 * a measurement. */
static void json_num(FILE *f, const char *fmt, double v)
{
    if (isfinite(v))
        fprintf(f, fmt, v);
    else
        fputs("null", f);
}

/* Per-layer figures of a mode (NAN / null when the mode was not measured). */
static double lay_s(const mode_fig *m, int j) { return m->measured && m->layer_s ? m->layer_s[j] : NAN; }
static double lay_bytes(const mode_fig *m, int j, int down)
{
    const uint64_t *v = down ? m->layer_down : m->layer_up;
    return m->measured && v ? (double)v[j] : NAN;
}

static void json_mode(FILE *f, const mode_fig *m)
{
    if (!m->measured) {
        fputs("null", f);
        return;
    }
    fprintf(f,
            "{\"latency_s\": %.6f, \"device_cpu_s\": %.6f, \"edge_a_cpu_s\": %.6f, \"edge_b_cpu_s\": %.6f, "
            "\"device_bytes_up\": %" PRIu64 ", \"device_bytes_down\": %" PRIu64 ", \"output_cosine_to_float\": %.8f, "
            "\"edge_a_bytes_in\": %" PRIu64
            ", \"edge_a_bytes_out\": %" PRIu64 ", \"edge_b_bytes_in\": %" PRIu64 ", \"edge_b_bytes_out\": %" PRIu64
            ", \"device_energy_j\": %.6f}",
            m->wall_s, m->device_cpu_s, m->host_cpu_s[0], m->host_cpu_s[1], m->up, m->down, m->cosine, m->a_in,
            m->a_out,
            m->b_in, m->b_out, m->energy_j);
}

static int write_json(const suite_opts *o, const char *path, const model_fig *F, int n, const char *cpu)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        fprintf(stderr, "twinedge-bench: error: cannot write %s: %s\n", path, strerror(errno));
        return -1;
    }
    struct utsname u;
    uname(&u);
    fprintf(f, "{\n  \"machine\": {\"cpu\": ");
    json_str(f, cpu);
    fprintf(f, ", \"online_cpus\": %ld, \"kernel\": ", sysconf(_SC_NPROCESSORS_ONLN));
    json_str(f, u.release);
    fprintf(f, ", \"host\": ");
    json_str(f, u.nodename);
    fprintf(f, "},\n  \"config\": {\"quick\": %s, \"repetitions\": %d, \"host_threads\": %d, \"clients\": %d, "
               "\"requests_per_client\": %d, \"batch_window_us\": %d, \"precompute_mb\": %d, \"wireless_rate_mbit\": %.3f, "
               "\"wireless_rtt_ms\": %.3f, \"device_watts\": %.3f, \"radio_nj_per_byte\": %.3f},\n",
            o->quick ? "true" : "false", o->reps, o->threads, o->clients, o->requests, o->batch_window_us,
            o->precompute_mb, o->rate_mbit, o->rtt_ms, o->device_watts, o->radio_nj_per_byte);
    fprintf(f, "  \"owner\": {\"precision\": \"%s\", \"min_cosine\": %g, \"weight_bits\": %d, \"act_bits\": %d, "
               "\"headroom\": %d},\n",
            o->owner.precision == TE_PREC_AUTO ? "auto" : "fixed", o->owner.min_cosine, o->owner.weight_bits,
            o->owner.act_bits, o->owner.headroom);
    fprintf(f, "  \"models\": {\n");
    for (int i = 0; i < n; i++) {
        const model_fig *M = &F[i];
        ratios r = model_ratios(M);
        fprintf(f, "    ");
        json_str(f, M->name);
        fprintf(f, ": {\n      \"linear_layers\": %d, \"outsourcing_rate_percent\": %.4f, \"edge_flops\": %.0f,\n",
                M->n_layers, M->outsourcing_rate, M->edge_flops);
        fprintf(f, "      \"local\": {\"cpu_s\": %.6f, \"latency_s\": %.6f, \"device_energy_j\": %.6f},\n",
                M->local_cpu_s, M->local_wall_s, M->local_energy_j);
        for (int w = 0; w < 2; w++) {
            const mode_fig *mf = w ? M->wifi : M->loop;
            fprintf(f, "      \"%s\": ", w ? "wireless" : "loopback");
            if (w && !M->wifi_done) {
                fprintf(f, "null, \"wireless_skipped\": ");
                json_str(f, M->wifi_note);
                fprintf(f, ",\n");
                continue;
            }
            fprintf(f, "{\n");
            if (w) {
                fprintf(f, "        \"link\": ");
                json_str(f, M->wifi_note);
                fprintf(f, ",\n");
            }
            for (int k = 0; k < N_MODES; k++) {
                fprintf(f, "        \"%s\": ", mode_name[k]);
                json_mode(f, &mf[k]);
                fprintf(f, "%s\n", k + 1 < N_MODES ? "," : "");
            }
            fprintf(f, "      },\n");
        }
        fprintf(f, "      \"device_storage_bytes_1000_requests\": {\"local\": %" PRIu64 ", \"plain\": %" PRIu64
                   ", \"relay\": %" PRIu64 ", \"mediated\": %" PRIu64 ", \"lep\": %" PRIu64 "},\n",
                M->storage_local, M->storage_plain, M->storage_private, M->storage_private,
                M->storage_plain + 1000 * M->storage_lep_per_req);
        fprintf(f, "      \"device_floor\": ");
        if (M->floor_measured)
            fprintf(f, "{\"prf_s\": %.6f, \"tls_s\": %.6f, \"nonlinear_s\": %.6f, \"total_s\": %.6f, "
                       "\"prf_bytes\": %" PRIu64 ", \"tls_bytes\": %" PRIu64 ", \"tls_cipher\": \"AES-256-GCM\"},\n",
                    M->floor_prf_s, M->floor_tls_s, M->floor_nonlinear_s,
                    M->floor_prf_s + M->floor_tls_s + M->floor_nonlinear_s, M->floor_prf_bytes, M->floor_tls_bytes);
        else
            fprintf(f, "null,\n");
        int pm = M->loop[M_PLAIN].measured && M->plainact_bytes > 0;
        fprintf(f, "      \"brotli\": {\"blinded_request_bytes\": %" PRIu64 ", \"blinded_request_brotli\": %" PRIu64
                   ", \"plain_request_bytes\": ", M->blinded_bytes, M->blinded_brotli);
        json_num(f, "%.0f", pm ? (double)M->plainact_bytes : NAN);
        fprintf(f, ", \"plain_request_brotli\": ");
        json_num(f, "%.0f", pm ? (double)M->plainact_brotli : NAN);
        fprintf(f, ", \"edge_bundle_payload_bytes\": %" PRIu64 ", \"edge_bundle_file_bytes\": %" PRIu64 "},\n",
                M->edge_bundle_raw, M->edge_bundle_bytes);
        fprintf(f, "      \"throughput\": {");
        for (int k = 0; k < 2; k++) {
            const tput_fig *t = &M->tput[k];
            if (!t->measured) {
                fprintf(f, "\"%s\": null%s", k ? "relay" : "plain", k ? "" : ", ");
                continue;
            }
            fprintf(f, "\"%s\": {\"clients\": %d, \"inferences\": %d, \"wall_s\": %.6f, \"per_s\": %.6f, "
                       "\"p50_s\": %.6f, \"p99_s\": %.6f}%s",
                    k ? "relay" : "plain", t->clients, t->inferences, t->wall_s, t->per_s, t->p50_s, t->p99_s,
                    k ? "" : ", ");
        }
        fprintf(f, "},\n      \"kernels\": [\n");
        for (int j = 0; j < M->n_k; j++) {
            const krow *K = &M->k[j];
            fprintf(f, "        {\"layer\": ");
            json_str(f, K->layer);
            fprintf(f, ", \"shape\": ");
            json_str(f, K->shape);
            fprintf(f, ", \"batch\": %lld, \"ring_bits\": %d, \"plain_s\": %.9f, \"secure_s\": %.9f, \"ratio\": ",
                    (long long)K->batch, K->ring_bits, K->plain_s, K->secure_s);
            json_num(f, "%.4f", ratio_of(1, K->secure_s, K->plain_s));
            fprintf(f, "}%s\n", j + 1 < M->n_k ? "," : "");
        }
        fprintf(f, "      ],\n      \"layers\": [\n");
        for (int j = 0; j < M->n_layers; j++) {
            fprintf(f, "        {\"name\": ");
            json_str(f, M->layer_names[j]);
            fprintf(f, ", \"ring_bits\": %d", M->ring_bits[j]);
            for (int k = 0; k < N_MODES; k++) {
                fprintf(f, ", \"%s_s\": ", mode_name[k]);
                json_num(f, "%.6f", lay_s(&M->loop[k], j));
                fprintf(f, ", \"%s_bytes_up\": ", mode_name[k]);
                json_num(f, "%.0f", lay_bytes(&M->loop[k], j, 0));
                fprintf(f, ", \"%s_bytes_down\": ", mode_name[k]);
                json_num(f, "%.0f", lay_bytes(&M->loop[k], j, 1));
            }
            fprintf(f, "}%s\n", j + 1 < M->n_layers ? "," : "");
        }
        const struct {
            const char *key, *fmt;
            double v;
        } rs[] = {
            {"edge_layer_secure_over_plain_max", "%.4f", r.kernel_worst},
            {"device_cpu_private_over_local", "%.6f", r.device_cpu},
            {"device_cpu_mediated_over_local", "%.6f", r.device_cpu_mediated},
            {"device_cpu_over_floor", "%.4f", r.device_floor},
            {"latency_relay_over_plain_outsourcing", "%.4f", r.latency},
            {"latency_relay_over_lep", "%.4f", r.latency_lep},
            {"bytes_relay_over_plain_outsourcing", "%.4f", r.bytes},
            {"throughput_private_over_plain", "%.4f", r.tput},
            {"wireless_latency_relay_over_plain_outsourcing", "%.4f", r.wifi_latency},
            {"speedup_relay_over_local", "%.4f", r.speedup_local},
            {"wireless_speedup_relay_over_local", "%.4f", r.speedup_local_wifi},
            {"device_energy_saving_relay", "%.4f", r.energy_saving},
            {"wireless_device_energy_saving_relay", "%.4f", r.energy_saving_wifi},
        };
        fprintf(f, "      ],\n      \"ratios\": {");
        for (size_t q = 0; q < sizeof rs / sizeof rs[0]; q++) {
            fprintf(f, "%s\"%s\": ", q ? ", " : "", rs[q].key);
            json_num(f, rs[q].fmt, rs[q].v);
        }
        fprintf(f, "}\n");
        fprintf(f, "    }%s\n", i + 1 < n ? "," : "");
    }
    fprintf(f, "  }\n}\n");
    if (fclose(f) != 0) {
        fprintf(stderr, "twinedge-bench: error: cannot write %s\n", path);
        return -1;
    }
    return 0;
}

/* gnuplot data files and script; returns 0 when the charts were drawn. */
static int write_charts(const char *dir, const model_fig *F, int n, char *why, size_t why_len)
{
    char p[4300];
    for (int i = 0; i < n; i++) {
        const model_fig *M = &F[i];
        snprintf(p, sizeof p, "%s/%s-layers.dat", dir, M->name);
        FILE *f = fopen(p, "w");
        if (!f) {
            snprintf(why, why_len, "cannot write %.400s", p);
            return -1;
        }
        fprintf(f, "# layer  ms: plain relay mediated lep  device KiB (up+down): plain relay mediated lep\n");
        for (int j = 0; j < M->n_layers; j++) {
            fprintf(f, "%d", j);
            for (int k = 0; k < N_MODES; k++)
                fprintf(f, " %.4f", lay_s(&M->loop[k], j) * 1e3);
            for (int k = 0; k < N_MODES; k++)
                fprintf(f, " %.3f", (double)(lay_bytes(&M->loop[k], j, 0) + lay_bytes(&M->loop[k], j, 1)) / 1024.0);
            fputc('\n', f);
        }
        fclose(f);
    }
    snprintf(p, sizeof p, "%s/summary.dat", dir);
    FILE *f = fopen(p, "w");
    if (!f) {
        snprintf(why, why_len, "cannot write %.400s", p);
        return -1;
    }
    fprintf(f, "# model  latency ms loopback: local plain relay mediated lep  wireless: plain relay mediated lep"
               "  device MiB: plain relay mediated lep\n");
    for (int i = 0; i < n; i++) {
        const model_fig *M = &F[i];
        fprintf(f, "%s %.3f", M->name, M->local_wall_s * 1e3);
        for (int k = 0; k < N_MODES; k++)
            fprintf(f, " %.3f", M->loop[k].wall_s * 1e3);
        for (int k = 0; k < N_MODES; k++)
            fprintf(f, " %.3f", M->wifi_done ? M->wifi[k].wall_s * 1e3 : 0.0);
        for (int k = 0; k < N_MODES; k++)
            fprintf(f, " %.4f", (double)(M->loop[k].up + M->loop[k].down) / 1048576.0);
        fputc('\n', f);
    }
    fclose(f);
    snprintf(p, sizeof p, "%s/charts.gp", dir);
    f = fopen(p, "w");
    if (!f) {
        snprintf(why, why_len, "cannot write %.400s", p);
        return -1;
    }
    int any_wifi = 0;
    for (int i = 0; i < n; i++)
        any_wifi |= F[i].wifi_done;
    fprintf(f, "set terminal pngcairo size 1100,520 font ',10'\nset grid ytics\nset key outside right top\n");
    for (int i = 0; i < n; i++) {
        const char *m = F[i].name;
        char plain_lat[128] = "", plain_bytes[160] = "";
        if (F[i].plain_ok) {
            snprintf(plain_lat, sizeof plain_lat, "'%.32s-layers.dat' u 1:2 w lp t 'plaintext outsourcing', ", m);
            snprintf(plain_bytes, sizeof plain_bytes,
                     "'%.32s-layers.dat' u 1:6 w lp t 'plaintext outsourcing (float32)', ", m);
        }
        fprintf(f,
                "set output '%1$s-latency-per-layer.png'\nset title '%1$s: time per outsourced layer (loopback, "
                "from one layer to the next)'\nset xlabel 'linear layer'\nset ylabel 'ms'\nset logscale y\n"
                "plot %2$s'%1$s-layers.dat' u 1:3 w lp t 'twinedge relay', "
                "'' u 1:4 w lp t 'twinedge mediated', '' u 1:5 w lp t 'LEP-CNN'\nunset logscale y\n"
                "set output '%1$s-bytes-per-layer.png'\nset title '%1$s: device link bytes per layer (up + down)'\n"
                "set ylabel 'KiB'\nset logscale y\n"
                "plot %3$s'%1$s-layers.dat' u 1:7 w lp t "
                "'twinedge relay', '' u 1:8 w lp t 'twinedge mediated', '' u 1:9 w lp t 'LEP-CNN'\nunset logscale y\n",
                m, plain_lat, plain_bytes);
    }
    fprintf(f, "set style data histograms\nset style histogram clustered gap 1\nset style fill solid 0.8 border -1\n"
               "set boxwidth 0.9\nset xlabel ''\nset logscale y\n"
               "set output 'summary-latency.png'\nset title 'End-to-end latency of one inference (log scale)'\n"
               "set ylabel 'ms'\n"
               "plot 'summary.dat' u 2:xtic(1) t 'local plaintext (device, 1 core)', '' u 3 t 'plaintext "
               "outsourcing, loopback', '' u 4 t 'twinedge relay, loopback', '' u 5 t 'twinedge mediated, loopback', "
               "'' u 6 t 'LEP-CNN, loopback'%s\n"
               "set output 'summary-bytes.png'\nset title 'Device link bytes per inference (log scale)'\n"
               "set ylabel 'MiB'\n"
               "plot 'summary.dat' u 11:xtic(1) t 'plaintext outsourcing (float32)', '' u 12 t 'twinedge relay', "
               "'' u 13 t 'twinedge mediated', '' u 14 t 'LEP-CNN'\n",
            any_wifi ? ", '' u 7 t 'plaintext outsourcing, wireless', '' u 8 t 'twinedge relay, wireless'" : "");
    fclose(f);
    if (access("/usr/bin/gnuplot", X_OK) != 0) {
        snprintf(why, why_len, "gnuplot not found (Debian: gnuplot-nox); data and script are in %s", dir);
        return -1;
    }
    char cmd[4400];
    snprintf(cmd, sizeof cmd, "cd '%s' && gnuplot charts.gp", dir);
    if (sh(cmd) != 0) {
        snprintf(why, why_len, "gnuplot failed on %s/charts.gp", dir);
        return -1;
    }
    return 0;
}

static const char *met(double v, double target, int at_most)
{
    if (!isfinite(v) || v <= 0)
        return "not measured";
    return (at_most ? v <= target : v >= target) ? "yes" : "**no**";
}

/* A ratio for the report, or "not measured". */
typedef struct fr_buf {
    char s[32];
} fr_buf;
static fr_buf fr(double v, const char *fmt)
{
    fr_buf b;
    if (isfinite(v))
        snprintf(b.s, sizeof b.s, fmt, v);
    else
        snprintf(b.s, sizeof b.s, "not measured");
    return b;
}
#define FR(v, fmt) fr((v), (fmt)).s

static void md_modes(FILE *f, const model_fig *M, const mode_fig *mf)
{
    fprintf(f, "| mode | latency ms | device CPU ms | EdgeA CPU ms | EdgeB CPU ms | device up KiB | device down KiB | "
               "EdgeA in/out KiB | EdgeB in/out KiB | device energy mJ |\n|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    fprintf(f, "| local plaintext (device, 1 core) | %.1f | %.1f | - | - | 0 | 0 | - | - | %.1f |\n",
            M->local_wall_s * 1e3, M->local_cpu_s * 1e3, M->local_energy_j * 1e3);
    for (int k = 0; k < N_MODES; k++) {
        const mode_fig *m = &mf[k];
        if (k == M_PLAIN && !M->plain_ok) {
            fprintf(f, "| %s | not measured: the plugin offers no float32 run | | | | | | | | |\n", mode_title[k]);
            continue;
        }
        fprintf(f, "| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f / %.1f | %.1f / %.1f | %.1f |\n",
                mode_title[k], m->wall_s * 1e3, m->device_cpu_s * 1e3, m->host_cpu_s[0] * 1e3,
                m->host_cpu_s[1] * 1e3, m->up / 1024.0, m->down / 1024.0, m->a_in / 1024.0, m->a_out / 1024.0,
                m->b_in / 1024.0, m->b_out / 1024.0, m->energy_j * 1e3);
    }
    fputc('\n', f);
}

static int write_report(const suite_opts *o, const char *dir, const model_fig *F, int n, const char *cpu,
                        const char *cmdline, const char *chart_note)
{
    char p[4300];
    snprintf(p, sizeof p, "%s/REPORT.md", dir);
    FILE *f = fopen(p, "w");
    if (!f) {
        fprintf(stderr, "twinedge-bench: error: cannot write %s: %s\n", p, strerror(errno));
        return -1;
    }
    time_t now = time(NULL);
    char date[64];
    strftime(date, sizeof date, "%Y-%m-%d %H:%M UTC", gmtime(&now));
    fprintf(f, "# twinedge benchmark report\n\n");
    fprintf(f, "- machine: %s, %ld online CPUs; every figure below was measured in this one run (%s)\n", cpu,
            sysconf(_SC_NPROCESSORS_ONLN), date);
    fprintf(f, "- command: `%s`\n", cmdline);
    fprintf(f, "- compute plugin on both hosts: %s%s; the float32 baseline of the kernels and of plaintext "
               "outsourcing is %s\n",
            o->plugin, n > 0 && !F[0].plain_ok ? " (it offers no float32 run: plaintext outsourcing not measured)" : "",
            strcmp(o->plugin, "cpu") == 0 ? "OpenBLAS SGEMM on this CPU" : "the plugin's run_f32 on its device "
                                                                          "(OpenCL: CLBlast SGEMM)");
    fprintf(f, "- %s run: %d repetition%s per figure (median), hosts with %d compute thread%s each, "
               "cross-device batching window %d us, EdgeB precompute cache %d MiB%s\n",
            o->quick ? "quick" : "full", o->reps, o->reps == 1 ? "" : "s", o->threads, o->threads == 1 ? "" : "s",
            o->batch_window_us, o->precompute_mb, o->precompute_mb ? "" : " (off: W.M computed on demand)");
    if (o->owner.precision == TE_PREC_AUTO)
        fprintf(f, "- compiled with `--precision auto`: per layer the fewest weight and activation bits (at most %d "
                   "and %d) that keep the fixed-point output's cosine to the float model's at least %g on "
                   "MODEL.calib.npy, and %d bit%s of ring headroom (as in `twinedge-owner compile`)\n",
                o->owner.weight_bits, o->owner.act_bits, o->owner.min_cosine, o->owner.headroom,
                o->owner.headroom == 1 ? "" : "s");
    else
        fprintf(f, "- compiled with %d-bit weights, %d-bit activations and %d bits of ring headroom (`--precision "
                   "fixed`, `--weight-bits`, `--act-bits`, `--headroom`, as in `twinedge-owner compile`), calibrated "
                   "on MODEL.calib.npy\n",
                o->owner.weight_bits, o->owner.act_bits, o->owner.headroom);
    fprintf(f, "- single-device figures: each inference starts once both hosts are idle (EdgeB has precomputed "
               "the next request's W.M), as for a device whose requests come spaced out; the throughput runs "
               "have no such pause\n");
    fprintf(f, "- the device, EdgeA and EdgeB share this machine: the device is this process, the hosts are two "
               "`twinedge-host` processes (gRPC, mutual TLS); the device's CPU time is its process's, each host's "
               "from /proc\n");
    fprintf(f, "- wireless link: %.1f Mbit/s and %.1f ms round trip on the device's link only (EdgeA-EdgeB "
               "unshaped): %s\n", o->rate_mbit, o->rtt_ms, n > 0 && F[0].wifi_note[0] ? F[0].wifi_note : "not run");
    fprintf(f, "- device energy model: CPU seconds x %.2f W + device link bytes x %.1f nJ/byte "
               "(`--device-watts`, `--radio-nj-per-byte`); CPU seconds are this machine's, not an IoT CPU's\n",
            o->device_watts, o->radio_nj_per_byte);
    fprintf(f, "- LEP-CNN baseline: per request the device holds a fresh mask and W.mask fetched offline (from "
               "EdgeB, before the request, not timed) and talks only to EdgeA online\n");
    fprintf(f, "- per-layer times run from one outsourced layer to the next (the layer's round trip plus the "
               "device's work up to the next one)\n\n");
    if (chart_note[0])
        fprintf(f, "Charts: not drawn: %s.\n\n", chart_note);

    fprintf(f, "## Against the targets\n\n| model | figure | measured | target | met |\n|---|---|---:|---:|---|\n");
    for (int i = 0; i < n; i++) {
        const model_fig *M = &F[i];
        ratios r = model_ratios(M);
        fprintf(f, "| %s | worst blinded layer / float32 SGEMM, one host (batch 1 and 16; %s %s batch %lld) | "
                   "%s | <= 1.5x | %s |\n",
                M->name, M->n_k ? M->k[M->k_worst_i].layer : "-", M->n_k ? M->k[M->k_worst_i].shape : "",
                M->n_k ? (long long)M->k[M->k_worst_i].batch : 0LL, FR(r.kernel_worst, "%.2fx"), met(r.kernel_worst, 1.5, 1));
        fprintf(f, "| %s | device CPU, private (relay) / local plaintext | %s | <= 0.01 | %s |\n", M->name,
                FR(r.device_cpu, "%.4f"), met(r.device_cpu, 0.01, 1));
        fprintf(f, "| %s | device CPU, private (relay) / the device's floor (PRF + TLS + non-linear layers) | %s | "
                   "<= 1.5x | %s |\n", M->name, FR(r.device_floor, "%.2fx"), met(r.device_floor, 1.5, 1));
        fprintf(f, "| %s | latency, relay / plaintext outsourcing, loopback | %s | <= 1.3x | %s |\n", M->name,
                FR(r.latency, "%.2fx"), met(r.latency, 1.3, 1));
        fprintf(f, "| %s | latency, relay / LEP-CNN, loopback | %s | <= 1.05x | %s |\n", M->name,
                FR(r.latency_lep, "%.2fx"), met(r.latency_lep, 1.05, 1));
        fprintf(f, "| %s | device link bytes, relay / plaintext float32 outsourcing | %s | <= 1.0x | %s |\n",
                M->name, FR(r.bytes, "%.3fx"), met(r.bytes, 1.0, 1));
        fprintf(f, "| %s | throughput, %d devices, private (relay) / plaintext outsourcing | %s | >= 0.5x | %s |\n",
                M->name, o->clients, FR(r.tput, "%.3fx"), met(r.tput, 0.5, 0));
        fprintf(f, "| %s | latency, local plaintext / private relay (speed-up), loopback | %s | > 1 | %s |\n",
                M->name, FR(r.speedup_local, "%.2fx"), met(r.speedup_local, 1.0000001, 0));
        if (M->wifi_done)
            fprintf(f, "| %s | latency, local plaintext / private relay (speed-up), wireless | %s | > 1 | %s |\n",
                    M->name, FR(r.speedup_local_wifi, "%.2fx"), met(r.speedup_local_wifi, 1.0000001, 0));
        fprintf(f, "| %s | device energy saved vs local plaintext (relay, loopback) | %s | - | - |\n", M->name,
                FR(100 * r.energy_saving, "%.1f%%"));
    }
    fputc('\n', f);

    for (int i = 0; i < n; i++) {
        const model_fig *M = &F[i];
        int lo = 64, hi = 1;
        for (int j = 0; j < M->n_layers; j++)
            lo = M->ring_bits[j] < lo ? M->ring_bits[j] : lo, hi = M->ring_bits[j] > hi ? M->ring_bits[j] : hi;
        fprintf(f, "## %s\n\n%d linear layers, %.2f GFLOP on each edge, outsourcing rate %.2f%%, ring widths %d..%d "
                   "bits. Output cosine to the float32 model: private (relay) %.6f, plaintext outsourcing %.6f.\n\n",
                M->name, M->n_layers, M->edge_flops / 1e9, M->outsourcing_rate, lo, hi, M->loop[M_RELAY].cosine,
                M->loop[M_PLAIN].cosine);
        fprintf(f, "### One inference, loopback\n\n");
        md_modes(f, M, M->loop);
        if (M->floor_measured)
            fprintf(f, "The device's floor for the relay inference: %.1f ms = PRF %.1f ms (%.1f MiB) + TLS "
                       "records %.1f ms (AES-256-GCM over %.1f MiB) + non-linear layers %.1f ms; device CPU / "
                       "floor %s.\n\n",
                    (M->floor_prf_s + M->floor_tls_s + M->floor_nonlinear_s) * 1e3, M->floor_prf_s * 1e3,
                    M->floor_prf_bytes / 1048576.0, M->floor_tls_s * 1e3, M->floor_tls_bytes / 1048576.0,
                    M->floor_nonlinear_s * 1e3, FR(model_ratios(M).device_floor, "%.2fx"));
        fprintf(f, "### One inference, emulated wireless link\n\n");
        if (M->wifi_done) {
            fprintf(f, "Link: %s.\n\n", M->wifi_note);
            md_modes(f, M, M->wifi);
        } else {
            fprintf(f, "Skipped: %s.\n\n", M->wifi_note);
        }
        fprintf(f, "### Throughput, %d devices at once, loopback\n\n| mode | inferences | wall s | inferences/s | "
                   "p50 ms | p99 ms |\n|---|---:|---:|---:|---:|---:|\n", o->clients);
        for (int k = 0; k < 2; k++) {
            const tput_fig *t = &M->tput[k];
            fprintf(f, "| %s | %d | %.2f | %.3f | %.1f | %.1f |\n", mode_title[k ? M_RELAY : M_PLAIN],
                    t->inferences, t->wall_s, t->per_s, t->p50_s * 1e3, t->p99_s * 1e3);
        }
        fprintf(f, "\n### Device storage for 1,000 requests\n\n| mode | bytes |\n|---|---:|\n"
                   "| local plaintext (the ONNX model) | %" PRIu64 " |\n| plaintext outsourcing (device bundle) | %"
                   PRIu64 " |\n| twinedge (device bundle, key, counter) | %" PRIu64 " |\n| LEP-CNN (device bundle + "
                   "1,000 x %" PRIu64 " bytes of masks and W.mask) | %" PRIu64 " |\n\n",
                M->storage_local, M->storage_plain, M->storage_private, M->storage_lep_per_req,
                M->storage_plain + 1000 * M->storage_lep_per_req);
        fprintf(f, "### Brotli (quality 9)\n\n| what | bytes | Brotli | ratio |\n|---|---:|---:|---:|\n"
                   "| a blinded request (relay, first layer) | %" PRIu64 " | %" PRIu64 " | %.4f |\n"
                   "| the same request in plaintext outsourcing (float32) | %" PRIu64 " | %" PRIu64 " | %.4f |\n"
                   "| the edge bundle the owner uploads (payload -> file) | %" PRIu64 " | %" PRIu64 " | %.4f |\n\n",
                M->blinded_bytes, M->blinded_brotli, div0((double)M->blinded_brotli, (double)M->blinded_bytes),
                M->plainact_bytes, M->plainact_brotli, div0((double)M->plainact_brotli, (double)M->plainact_bytes),
                M->edge_bundle_raw, M->edge_bundle_bytes,
                div0((double)M->edge_bundle_bytes, (double)M->edge_bundle_raw));
        if (!chart_note[0])
            fprintf(f, "![%1$s latency per layer](%1$s-latency-per-layer.png)\n\n"
                       "![%1$s bytes per layer](%1$s-bytes-per-layer.png)\n\n", M->name);
        fprintf(f, "### Kernels: the ten slowest blinded layers relative to float32 (all in the JSON)\n\n"
                   "| layer | shape | batch | l | float32 ms | blinded ms | ratio |\n|---|---|---:|---:|---:|---:|---:|\n");
        int *idx = malloc((size_t)(M->n_k ? M->n_k : 1) * sizeof *idx);
        if (idx) {
            for (int j = 0; j < M->n_k; j++)
                idx[j] = j;
            for (int a = 0; a < M->n_k && a < 10; a++) /* partial selection sort: top ten */
                for (int b = a + 1; b < M->n_k; b++)
                    if (div0(M->k[idx[b]].secure_s, M->k[idx[b]].plain_s) >
                        div0(M->k[idx[a]].secure_s, M->k[idx[a]].plain_s)) {
                        int t = idx[a];
                        idx[a] = idx[b];
                        idx[b] = t;
                    }
            for (int a = 0; a < M->n_k && a < 10; a++) {
                const krow *K = &M->k[idx[a]];
                fprintf(f, "| %s | %s | %lld | %d | %.3f | %.3f | %.2f |\n", K->layer, K->shape, (long long)K->batch,
                        K->ring_bits, K->plain_s * 1e3, K->secure_s * 1e3, div0(K->secure_s, K->plain_s));
            }
            free(idx);
        }
        double tp = 0, ts = 0;
        for (int j = 0; j < M->n_k; j++)
            tp += M->k[j].plain_s, ts += M->k[j].secure_s;
        fprintf(f, "\nAll layers together: float32 %.1f ms, blinded %.1f ms (%.2fx).\n\n", tp * 1e3, ts * 1e3,
                div0(ts, tp));
    }
    if (!chart_note[0])
        fprintf(f, "## Summary charts\n\n![latency](summary-latency.png)\n\n![bytes](summary-bytes.png)\n");
    if (fclose(f) != 0) {
        fprintf(stderr, "twinedge-bench: error: cannot write %s\n", p);
        return -1;
    }
    return 0;
}

static void model_fig_free(model_fig *M)
{
    for (int i = 0; i < M->n_layers && M->layer_names; i++)
        free(M->layer_names[i]);
    free(M->layer_names);
    free(M->ring_bits);
    free(M->k);
    for (int k = 0; k < N_MODES; k++)
        for (int w = 0; w < 2; w++) {
            mode_fig *mf = w ? &M->wifi[k] : &M->loop[k];
            free(mf->layer_s);
            free(mf->layer_up);
            free(mf->layer_down);
        }
}

/* ---- main ----------------------------------------------------------------------- */

static void suite_usage(FILE *f)
{
    fprintf(f,
            "usage: twinedge-bench [--quick] [--json FILE] [--report DIR] [options]\n"
            "       twinedge-bench kernels|device|headroom|load ...   (single benchmarks; e.g. twinedge-bench kernels --help)\n"
            "\n"
            "  --quick              fewer repetitions and requests (under 10 minutes on 2 cores)\n"
            "  --json FILE          every figure as JSON (default REPORT_DIR/bench.json)\n"
            "  --report DIR         markdown report, charts and JSON (default bench-report)\n"
            "  --models A,B,...     default alexnet,facenet,resnet18\n"
            "  --models-dir DIR     where MODEL.onnx, .calib.npy and .input.npy are (default $TE_TEST_DATA/full,\n"
            "                       else testdata/full; generated with tests/models/make_testdata.py DIR --full)\n"
            "  --reps N             repetitions per figure, the median is reported (default 5, quick 1)\n"
            "  --threads N          compute threads per host and for OpenBLAS (default: online CPUs)\n"
            "  --plugin NAME        the hosts' compute plugin, also used for the kernel figures: cpu (default)\n"
            "                       or opencl (its float32 baselines, plaintext outsourcing and the kernels', are\n"
            "                       CLBlast SGEMM on the same OpenCL device)\n"
            "  --clients N          concurrent devices in the throughput run (default 16; 0: skip)\n"
            "  --requests N         inferences per device in the throughput run (default 4, quick 1)\n"
            "  --batch-window-us N  the hosts' cross-device batching window (default 2000)\n"
            "  --precompute-mb N    EdgeB's precompute cache (default 2048; 0: off, W.M on demand)\n"
            "  --precision auto|fixed, --min-cosine C   as twinedge-owner compile takes them (default auto:\n"
            "                       per layer the fewest bits that keep the output cosine >= C, default 0.9999,\n"
            "                       on MODEL.calib.npy)\n"
            "  --weight-bits N, --act-bits N, --headroom N   quantisation, as twinedge-owner compile takes them\n"
            "                       (defaults 16, 16, 1; auto: the most bits; either bit option alone: fixed)\n"
            "  --no-netem           skip the emulated wireless link\n"
            "  --rate-mbit R        wireless link rate (default 50)\n"
            "  --rtt-ms T           wireless round trip (default 5)\n"
            "  --device-watts W     device CPU power for the energy estimate (default 2.5)\n"
            "  --radio-nj-per-byte E  device radio energy per byte sent or received (default 50)\n");
}

static int parse_num(const char *flag, const char *v, double lo, double hi, double *out)
{
    char *end = NULL;
    errno = 0;
    double d = strtod(v, &end);
    if (errno || !end || *end || d < lo || d > hi) {
        fprintf(stderr, "twinedge-bench: %s wants a number in %g..%g, not '%s'\n", flag, lo, hi, v);
        return -1;
    }
    *out = d;
    return 0;
}

int bench_suite_main(int argc, char **argv)
{
    suite_opts o;
    memset(&o, 0, sizeof o);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    o.threads = ncpu < 1 ? 1 : (int)ncpu;
    o.reps = -1;
    o.clients = 16;
    o.requests = -1;
    o.batch_window_us = 2000;
    o.precompute_mb = 2048;
    o.netem = 1;
    o.rate_mbit = 50;
    o.rtt_ms = 5;
    o.device_watts = 2.5;
    o.radio_nj_per_byte = 50;
    o.report_dir = "bench-report";
    o.plugin = "cpu";
    owner_defaults(&o.owner);
    static char dir_buf[4096];
    const char *td = getenv("TE_TEST_DATA");
    snprintf(dir_buf, sizeof dir_buf, "%s/full", td && *td ? td : "testdata");
    o.models_dir = dir_buf;
    char models_buf[256] = "alexnet,facenet,resnet18";

    enum { O_QUICK = 256, O_JSON, O_REPORT, O_MODELS, O_DIR, O_REPS, O_THREADS, O_CLIENTS, O_REQ, O_WIN, O_NONETEM,
           O_RATE, O_RTT, O_WATTS, O_NJ, O_PRE, O_WBITS, O_ABITS, O_HEAD, O_PLUGIN,
           O_PREC, O_MINCOS };
    static const struct option lopts[] = {
        {"quick", no_argument, NULL, O_QUICK},          {"json", required_argument, NULL, O_JSON},
        {"report", required_argument, NULL, O_REPORT},  {"models", required_argument, NULL, O_MODELS},
        {"models-dir", required_argument, NULL, O_DIR}, {"reps", required_argument, NULL, O_REPS},
        {"threads", required_argument, NULL, O_THREADS}, {"clients", required_argument, NULL, O_CLIENTS},
        {"requests", required_argument, NULL, O_REQ},   {"batch-window-us", required_argument, NULL, O_WIN},
        {"no-netem", no_argument, NULL, O_NONETEM},     {"rate-mbit", required_argument, NULL, O_RATE},
        {"rtt-ms", required_argument, NULL, O_RTT},     {"device-watts", required_argument, NULL, O_WATTS},
        {"radio-nj-per-byte", required_argument, NULL, O_NJ}, {"precompute-mb", required_argument, NULL, O_PRE},
        {"weight-bits", required_argument, NULL, O_WBITS}, {"act-bits", required_argument, NULL, O_ABITS},
        {"headroom", required_argument, NULL, O_HEAD},   {"plugin", required_argument, NULL, O_PLUGIN},
        {"precision", required_argument, NULL, O_PREC}, {"min-cosine", required_argument, NULL, O_MINCOS},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    int c, explicit_bits = 0, precision = -1;
    double d;
    optind = 1;
    while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        switch (c) {
        case O_QUICK: o.quick = 1; break;
        case O_JSON: o.json = optarg; break;
        case O_REPORT: o.report_dir = optarg; break;
        case O_MODELS: snprintf(models_buf, sizeof models_buf, "%s", optarg); break;
        case O_DIR: o.models_dir = optarg; break;
        case O_REPS:
            if (parse_num("--reps", optarg, 1, S_MAX_REPS, &d))
                return 2;
            o.reps = (int)d;
            break;
        case O_THREADS:
            if (parse_num("--threads", optarg, 1, 256, &d))
                return 2;
            o.threads = (int)d;
            break;
        case O_CLIENTS:
            if (parse_num("--clients", optarg, 0, S_MAX_CLIENTS, &d))
                return 2;
            o.clients = (int)d;
            break;
        case O_REQ:
            if (parse_num("--requests", optarg, 1, 1000, &d))
                return 2;
            o.requests = (int)d;
            break;
        case O_WIN:
            if (parse_num("--batch-window-us", optarg, 0, 100000, &d))
                return 2;
            o.batch_window_us = (int)d;
            break;
        case O_PRE:
            if (parse_num("--precompute-mb", optarg, 0, 65536, &d))
                return 2;
            o.precompute_mb = (int)d;
            break;
        case O_WBITS:
            if (parse_num("--weight-bits", optarg, 2, 24, &d))
                return 2;
            o.owner.weight_bits = (int)d;
            explicit_bits = 1;
            break;
        case O_ABITS:
            if (parse_num("--act-bits", optarg, 1, 40, &d))
                return 2;
            o.owner.act_bits = (int)d;
            explicit_bits = 1;
            break;
        case O_PREC:
            if (strcmp(optarg, "auto") && strcmp(optarg, "fixed")) {
                fprintf(stderr, "twinedge-bench: --precision needs auto or fixed\n");
                return 2;
            }
            precision = strcmp(optarg, "auto") ? TE_PREC_FIXED : TE_PREC_AUTO;
            break;
        case O_MINCOS:
            /* (0, 1) open: parse_num's range is closed */
            if (parse_num("--min-cosine", optarg, 0, 1, &d) || d <= 0 || d >= 1) {
                fprintf(stderr, "twinedge-bench: --min-cosine needs a number above 0 and below 1\n");
                return 2;
            }
            o.owner.min_cosine = d;
            break;
        case O_HEAD:
            if (parse_num("--headroom", optarg, 0, 32, &d))
                return 2;
            o.owner.headroom = (int)d;
            break;
        case O_PLUGIN: o.plugin = optarg; break;
        case O_NONETEM: o.netem = 0; break;
        case O_RATE:
            if (parse_num("--rate-mbit", optarg, 0.01, 100000, &o.rate_mbit))
                return 2;
            break;
        case O_RTT:
            if (parse_num("--rtt-ms", optarg, 0, 10000, &o.rtt_ms))
                return 2;
            break;
        case O_WATTS:
            if (parse_num("--device-watts", optarg, 0, 1000, &o.device_watts))
                return 2;
            break;
        case O_NJ:
            if (parse_num("--radio-nj-per-byte", optarg, 0, 1e9, &o.radio_nj_per_byte))
                return 2;
            break;
        case 'h': suite_usage(stdout); return 0;
        default: suite_usage(stderr); return 2;
        }
    }
    if (optind != argc) {
        suite_usage(stderr);
        return 2;
    }
    /* as twinedge-owner compile: bits given alone mean those bits everywhere */
    o.owner.precision = precision >= 0 ? precision : explicit_bits ? TE_PREC_FIXED : TE_PREC_AUTO;
    if (o.reps < 0)
        o.reps = o.quick ? 1 : 5;
    if (o.requests < 0)
        o.requests = o.quick ? 1 : 4;
    if ((o.n_models = split_models(models_buf, o.models, S_MAX_MODELS)) < 0) {
        fprintf(stderr, "twinedge-bench: --models needs 1..%d comma-separated names\n", S_MAX_MODELS);
        return 2;
    }
    for (int i = 0; i < o.n_models; i++) {
        char p[4300];
        snprintf(p, sizeof p, "%s/%s.onnx", o.models_dir, o.models[i]);
        if (!file_exists(p)) {
            fprintf(stderr, "twinedge-bench: error: %s not found; generate the full-size models with\n"
                            "  /usr/bin/python3 tests/models/make_testdata.py %s --full --only %s\n"
                            "(or scripts/bench.sh, which does it for you)\n",
                    p, o.models_dir, o.models[i]);
            return 1;
        }
    }
    if (mkdir(o.report_dir, 0755) != 0 && errno != EEXIST) {
        fprintf(stderr, "twinedge-bench: error: cannot create %s: %s\n", o.report_dir, strerror(errno));
        return 1;
    }
    char json_default[4300];
    snprintf(json_default, sizeof json_default, "%s/bench.json", o.report_dir);
    const char *json = o.json ? o.json : json_default;
    char cmdline[1024] = "twinedge-bench";
    for (int i = 1; i < argc; i++) {
        size_t l = strlen(cmdline);
        snprintf(cmdline + l, sizeof cmdline - l, " %s", argv[i]);
    }
    /* a host that dies must not take the bench with it through SIGPIPE */
    signal(SIGPIPE, SIG_IGN);
    char cpu[256];
    cpu_model(cpu, sizeof cpu);
    progress("%s; %s run; report in %s", cpu, o.quick ? "quick" : "full", o.report_dir);
    model_fig F[S_MAX_MODELS];
    memset(F, 0, sizeof F);
    int rc = 0, n = 0;
    double t0 = te_clock_s(CLOCK_MONOTONIC);
    for (int i = 0; i < o.n_models; i++) {
        te_err err;
        te_err_clear(&err);
        if (run_model(&o, o.models[i], &F[i], &err) != TE_OK) {
            fprintf(stderr, "twinedge-bench: error: %s\n", err.msg);
            rc = 1;
            n = i + 1;
            break;
        }
        n = i + 1;
        ratios r = model_ratios(&F[i]);
        progress("%s done (%.0f s so far): worst layer %s, device CPU %s of local and %s of its floor, relay "
                 "latency %s of plaintext outsourcing and %s of LEP-CNN, bytes %s of plaintext outsourcing, "
                 "throughput %s",
                 o.models[i], te_clock_s(CLOCK_MONOTONIC) - t0, FR(r.kernel_worst, "%.2fx"), FR(r.device_cpu, "%.4f"),
                 FR(r.device_floor, "%.2fx"), FR(r.latency, "%.2fx"), FR(r.latency_lep, "%.2fx"), FR(r.bytes, "%.3fx"),
                 FR(r.tput, "%.3fx"));
    }
    if (rc == 0) {
        char note[512] = "";
        if (write_charts(o.report_dir, F, n, note, sizeof note) != 0)
            fprintf(stderr, "twinedge-bench: warning: charts: %s\n", note);
        if (write_json(&o, json, F, n, cpu) != 0 || write_report(&o, o.report_dir, F, n, cpu, cmdline, note) != 0)
            rc = 1;
        else
            printf("twinedge-bench: %d model%s in %.0f s; report %s/REPORT.md, JSON %s\n", n, n == 1 ? "" : "s",
                   te_clock_s(CLOCK_MONOTONIC) - t0, o.report_dir, json);
    }
    for (int i = 0; i < n; i++)
        model_fig_free(&F[i]);
    return rc;
}
