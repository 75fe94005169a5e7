/* The device's side of the protocol: mask, outsource, unmask, verify. */
#include "twinedge_device.h"

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "te_bundle.h"
#include "te_exec.h"
#include "te_linear.h"
#include "te_prf.h"
#include "te_ring.h"
#include "te_transport.h"
#include "te_wire.h"
#include "wire.pb-c.h"

/* The public status codes are te_status's values: a change on either side
 * stops the build instead of mislabelling an error. */
#define TE_SAME_CODE(pub, internal) _Static_assert((int)(pub) == (int)(internal), #pub " != " #internal)
TE_SAME_CODE(TWINEDGE_OK, TE_OK);
TE_SAME_CODE(TWINEDGE_EINVAL, TE_EINVAL);
TE_SAME_CODE(TWINEDGE_ENOMEM, TE_ENOMEM);
TE_SAME_CODE(TWINEDGE_EIO, TE_EIO);
TE_SAME_CODE(TWINEDGE_EFORMAT, TE_EFORMAT);
TE_SAME_CODE(TWINEDGE_EUNSUPPORTED, TE_EUNSUPPORTED);
TE_SAME_CODE(TWINEDGE_ESHAPE, TE_ESHAPE);
TE_SAME_CODE(TWINEDGE_EINTEGRITY, TE_EINTEGRITY);
TE_SAME_CODE(TWINEDGE_EOVERFLOW, TE_EOVERFLOW);
TE_SAME_CODE(TWINEDGE_ETRANSPORT, TE_ETRANSPORT);
TE_SAME_CODE(TWINEDGE_EAUTH, TE_EAUTH);
TE_SAME_CODE(TWINEDGE_EPLUGIN, TE_EPLUGIN);
TE_SAME_CODE(TWINEDGE_ECOUNTER, TE_ECOUNTER);
TE_SAME_CODE(TWINEDGE_ESERVER, TE_ESERVER);
TE_SAME_CODE(TWINEDGE_EDGE_A, TE_PARTY_EDGE_A);
TE_SAME_CODE(TWINEDGE_EDGE_B, TE_PARTY_EDGE_B);

const char *twinedge_version(void) { return TWINEDGE_VERSION_STRING; }

struct twinedge_device {
    te_model *model;
    te_device_key key;
    te_exec *exec;
    te_transport *transport;
    /* an app's transport (twinedge_set_transport), adapted to te_transport */
    twinedge_transport app;
    te_transport app_link;
    /* Mask uniqueness: (session, t) never repeats under the key.  The
     * session is fresh from the OS CSPRNG for each handle (and again in a
     * forked child), t counts the handle's inferences; nothing is read back
     * from disk, so no copied, restored or shared directory can bring an
     * old pair back.  mu serialises inferences on one handle. */
    pthread_mutex_t mu;
    uint8_t session[TE_SESSION_BYTES];
    uint8_t session_key[TE_KEY_BYTES]; /* K_s (te_prf.h) */
    pid_t session_pid;
    uint64_t next_t;
#ifdef TE_NEGCTL_HOST_RETRY
    unsigned char *widened;      /* negative control: the old host-triggerable widening */
#endif
    twinedge_layer_hook hook;
    void *hook_ctx;
    twinedge_report report;
    te_err err;
    /* per-inference state */
    twinedge_mode mode;
    uint64_t t;
    int failed_layer;            /* layer whose check failed, -1 if none */
    int widened_layers;
    /* per-device scratch, grown on demand and kept across layers and
     * inferences (freed by twinedge_close) */
    uint8_t *req_buf;            /* serialized request, packed A written in place */
    size_t req_cap;
    uint64_t *yr, *share, *rhs;  /* EdgeA's and EdgeB's results (mediated), s.x per sample */
    size_t yr_cap, share_cap, rhs_cap;
};

/* Grow *buf to hold n elements of size sz (contents not kept). */
static te_status scratch(void **buf, size_t *cap, size_t n, size_t sz, te_err *err)
{
    if (n <= *cap && *buf)
        return TE_OK;
    size_t want = n > *cap * 2 ? n : *cap * 2;
    if (want == 0)
        want = 1;
    if (want > SIZE_MAX / sz)
        return te_errf(err, TE_ENOMEM, "out of memory");
    free(*buf);
    *buf = malloc(want * sz);
    *cap = *buf ? want : 0;
    if (!*buf)
        return te_errf(err, TE_ENOMEM, "out of memory");
    return TE_OK;
}

/* The out-of-memory message for a handle that could not be allocated. */
static const char te_nomem_msg[] = "out of memory";

int twinedge_errcode(const twinedge_device *dev) { return dev ? (int)dev->err.code : TWINEDGE_ENOMEM; }
const char *twinedge_errmsg(const twinedge_device *dev) { return dev ? dev->err.msg : te_nomem_msg; }

/* Device files hold the integrity keys and the mask key: readable by their
 * owner only, or any local user could hand a host what it needs to forge
 * results or unmask inputs. */
static te_status check_private(const char *path, te_err *err)
{
    struct stat sb;
    if (stat(path, &sb) != 0)
        return TE_OK; /* the reader reports a missing file */
    if (sb.st_mode & (S_IRWXG | S_IRWXO))
        return te_errf(err, TE_EAUTH, "%s is accessible to other users (mode %04o): device files must be 0600 "
                       "(chmod 600 %s)", path, (unsigned)(sb.st_mode & 07777), path);
    return TE_OK;
}

/* A fresh session: new nonce from the OS, K_s, t from 0. */
static te_status new_session(twinedge_device *dev, te_err *err)
{
    te_status st;
#ifdef TE_NEGCTL_FIXED_SESSION
    /* the negative-control build of the attack tests: every process
     * starts the same session at t = 0, so masks repeat */
    memset(dev->session, 0, sizeof dev->session);
    st = TE_OK;
#else
    st = te_random_bytes(dev->session, sizeof dev->session, err);
#endif
    if (st == TE_OK)
        st = te_prf_session_key(dev->key.key, dev->session, dev->session_key, err);
    if (st != TE_OK)
        return te_err_wrap(err, "starting a session");
    dev->session_pid = getpid();
    dev->next_t = 0;
    return TE_OK;
}

int twinedge_open(const char *dir, twinedge_device **out)
{
    twinedge_device *dev = calloc(1, sizeof *dev);
    *out = dev;
    if (!dev)
        return TWINEDGE_ENOMEM;
    dev->failed_layer = -1;
    if (pthread_mutex_init(&dev->mu, NULL) != 0) {
        free(dev);
        *out = NULL;
        return TWINEDGE_ENOMEM;
    }
    char path[4096];
    te_status st;
    if ((size_t)snprintf(path, sizeof path, "%s/device.bundle", dir) >= sizeof path)
        return te_errf(&dev->err, TE_EINVAL, "device directory path too long");
    if ((st = check_private(path, &dev->err)) != TE_OK ||
        (st = te_device_bundle_read(path, &dev->model, &dev->err)) != TE_OK)
        return st;
    for (int i = 0; i < dev->model->n_layers; i++)
        if (!dev->model->layers[i].r)
            return te_errf(&dev->err, TE_EFORMAT, "%s is a deployment's template without integrity keys, not a "
                           "provisioned device (twinedge-owner provision)", path);
    snprintf(path, sizeof path, "%s/device.key", dir);
    if ((st = check_private(path, &dev->err)) != TE_OK ||
        (st = te_device_key_read(path, &dev->key, &dev->err)) != TE_OK)
        return st;
    if (strcmp(dev->key.deployment_id, dev->model->deployment_id) != 0)
        return te_errf(&dev->err, TE_EFORMAT, "device key belongs to deployment %s, bundle is deployment %s",
                       dev->key.deployment_id, dev->model->deployment_id);
    if ((st = new_session(dev, &dev->err)) != TE_OK)
        return st;
    if ((st = te_exec_new(dev->model, &dev->exec, &dev->err)) != TE_OK)
        return st;
#ifdef TE_NEGCTL_HOST_RETRY
    if (!(dev->widened = calloc((size_t)dev->model->n_layers + 1, 1)))
        return te_errf(&dev->err, TE_ENOMEM, "out of memory");
#endif
    return TWINEDGE_OK;
}

void twinedge_close(twinedge_device *dev)
{
    if (!dev)
        return;
    te_exec_free(dev->exec);
    te_model_free(dev->model);
#ifdef TE_NEGCTL_HOST_RETRY
    free(dev->widened);
#endif
    free(dev->req_buf);
    free(dev->yr);
    free(dev->share);
    free(dev->rhs);
    pthread_mutex_destroy(&dev->mu);
    memset(&dev->key, 0, sizeof dev->key);
    memset(dev->session_key, 0, sizeof dev->session_key);
    free(dev);
}

int twinedge_use_transport(twinedge_device *dev, struct te_transport *t)
{
    dev->transport = t;
    te_err_clear(&dev->err);
    return TWINEDGE_OK;
}

/* ---- an app's transport (twinedge_transport) as a te_transport ---- */

static te_status app_status(int rc, char *msg, const char *what, te_err *err)
{
    msg[TE_ERR_MSG_MAX - 1] = '\0';
    te_status st = rc == TWINEDGE_EAUTH ? TE_EAUTH : TE_ETRANSPORT; /* anything else: the channel failed */
    return te_errf(err, st, "%s: %s", what, msg[0] ? msg : "the app's transport failed without a message");
}

static te_status app_call(te_transport *t, te_party to, const uint8_t *req, size_t req_len, uint8_t **resp,
                          size_t *resp_len, te_err *err)
{
    const twinedge_transport *a = t->impl;
    char msg[TE_ERR_MSG_MAX] = "";
    *resp = NULL;
    *resp_len = 0;
    int rc = a->call(a->ctx, (twinedge_party)to, req, req_len, resp, resp_len, msg, sizeof msg);
    if (rc != TWINEDGE_OK) {
        free(*resp);
        *resp = NULL;
        return app_status(rc, msg, "transport", err);
    }
    if (!*resp && *resp_len)
        return te_errf(err, TE_ETRANSPORT, "transport: the app's call() returned %zu bytes but no buffer", *resp_len);
    return TE_OK;
}

static te_status app_begin(te_transport *t, te_err *err)
{
    const twinedge_transport *a = t->impl;
    char msg[TE_ERR_MSG_MAX] = "";
    if (!a->begin)
        return TE_OK;
    int rc = a->begin(a->ctx, msg, sizeof msg);
    return rc == TWINEDGE_OK ? TE_OK : app_status(rc, msg, "transport begin", err);
}

static void app_end(te_transport *t)
{
    const twinedge_transport *a = t->impl;
    if (a->end)
        a->end(a->ctx);
}

static te_status app_call_pair(te_transport *t, const uint8_t *const req[2], const size_t req_len[2],
                               uint8_t *resp[2], size_t resp_len[2], te_party *failed, te_err *err)
{
    const twinedge_transport *a = t->impl;
    if (!a->call_pair)
        return te_transport_call_each(t, req, req_len, resp, resp_len, failed, err);
    char msg[TE_ERR_MSG_MAX] = "";
    twinedge_party fp = TWINEDGE_EDGE_A;
    int rc = a->call_pair(a->ctx, req, req_len, resp, resp_len, &fp, msg, sizeof msg);
    int a_bad = !resp[0] && resp_len[0], b_bad = !resp[1] && resp_len[1];
    if (rc == TWINEDGE_OK && !a_bad && !b_bad)
        return TE_OK;
    size_t lost = a_bad ? resp_len[0] : resp_len[1];
    free(resp[0]);
    free(resp[1]);
    resp[0] = resp[1] = NULL;
    resp_len[0] = resp_len[1] = 0;
    if (rc != TWINEDGE_OK) {
        *failed = fp == TWINEDGE_EDGE_B ? TE_PARTY_EDGE_B : TE_PARTY_EDGE_A;
        return app_status(rc, msg, "transport", err);
    }
    *failed = a_bad ? TE_PARTY_EDGE_A : TE_PARTY_EDGE_B;
    return te_errf(err, TE_ETRANSPORT, "transport: the app's call_pair() returned %zu bytes but no buffer", lost);
}

static void app_destroy(te_transport *t) { (void)t; /* the app owns its channel */ }

static const te_transport_ops app_ops = {.call = app_call, .destroy = app_destroy, .begin = app_begin,
                                         .end = app_end, .call_pair = app_call_pair};

int twinedge_set_transport(twinedge_device *dev, const twinedge_transport *t)
{
    if (!dev)
        return TWINEDGE_EINVAL;
    /* the members this version knows; a shorter struct (an older app) has
     * no optional ones past its end */
    const size_t need = offsetof(twinedge_transport, call) + sizeof t->call;
    if (!t || t->struct_size < need || !t->call)
        return te_errf(&dev->err, TE_EINVAL, "twinedge_set_transport: %s",
                       !t ? "no transport" : t->struct_size < need ? "struct_size too small (set it to "
                       "sizeof(twinedge_transport))" : "no call() function");
    memset(&dev->app, 0, sizeof dev->app);
    memcpy(&dev->app, t, t->struct_size < sizeof dev->app ? t->struct_size : sizeof dev->app);
    dev->app.struct_size = sizeof dev->app;
    dev->app_link.ops = &app_ops;
    dev->app_link.impl = &dev->app;
    return twinedge_use_transport(dev, &dev->app_link);
}

void twinedge_set_layer_hook(twinedge_device *dev, twinedge_layer_hook fn, void *ctx)
{
    dev->hook = fn;
    dev->hook_ctx = ctx;
}

static int shape_of(const twinedge_device *dev, int value, int64_t dims[8], int *ndim)
{
    if (!dev || !dev->model)
        return TWINEDGE_EINVAL;
    const te_shape *s = &dev->model->values[value].shape;
    *ndim = s->ndim;
    for (int i = 0; i < s->ndim && i < 8; i++)
        dims[i] = s->d[i];
    return TWINEDGE_OK;
}

int twinedge_input_shape(const twinedge_device *dev, int64_t dims[8], int *ndim)
{
    return shape_of(dev, dev ? dev->model->input : 0, dims, ndim);
}

int twinedge_output_shape(const twinedge_device *dev, int64_t dims[8], int *ndim)
{
    return shape_of(dev, dev ? dev->model->output : 0, dims, ndim);
}

int twinedge_output_count(const twinedge_device *dev, int *count)
{
    if (!dev || !dev->model || !count)
        return TWINEDGE_EINVAL;
    *count = te_model_n_outputs(dev->model);
    return TWINEDGE_OK;
}

int twinedge_output_shape_at(const twinedge_device *dev, int k, int64_t dims[8], int *ndim)
{
    int v = dev && dev->model ? te_model_output(dev->model, k) : -1;
    te_shape s;
    if (v < 0)
        return TWINEDGE_EINVAL;
    if (!te_exec_output_at(dev->exec, k, &s))
        return shape_of(dev, v, dims, ndim);
    /* after a successful inference: its shape (a data-dependent output's rows) */
    *ndim = s.ndim;
    for (int i = 0; i < s.ndim && i < 8; i++)
        dims[i] = s.d[i];
    return TWINEDGE_OK;
}

int twinedge_output_get(twinedge_device *dev, int k, float *out, size_t n)
{
    if (!dev)
        return TWINEDGE_EINVAL;
    pthread_mutex_lock(&dev->mu);
    te_err_clear(&dev->err);
    te_shape s;
    const float *y = te_exec_output_at(dev->exec, k, &s);
    int rc = TWINEDGE_OK;
    if (k < 0 || k >= te_model_n_outputs(dev->model))
        rc = te_errf(&dev->err, TE_EINVAL, "output %d: the model has %d outputs", k, te_model_n_outputs(dev->model));
    else if (!y)
        rc = te_errf(&dev->err, TE_EINVAL, "output %d: no successful inference to take it from", k);
    else if (!out || (int64_t)n != te_shape_numel(&s))
        rc = te_errf(&dev->err, TE_ESHAPE, "output %d: buffer has %zu elements, the output has %lld", k, n,
                     (long long)te_shape_numel(&s));
    else
        memcpy(out, y, n * sizeof *out);
    pthread_mutex_unlock(&dev->mu);
    return rc;
}

int twinedge_last_report(const twinedge_device *dev, twinedge_report *r)
{
    *r = dev->report;
    return TWINEDGE_OK;
}

/* One round trip with a serialized request; *resp (the caller frees it)
 * holds the response, *data its result (n elements of width l, bit-packed,
 * length and padding checked). */
static te_status call_host_raw(twinedge_device *dev, te_party to, const uint8_t *buf, size_t len, uint32_t layer,
                               size_t n, unsigned l, uint8_t **resp, const uint8_t **data, te_err *err)
{
    size_t resp_len = 0;
    te_status st = te_transport_call(dev->transport, to, buf, len, resp, &resp_len, err);
    const char *who = to == TE_PARTY_EDGE_A ? "EdgeA" : "EdgeB";
    if (st != TE_OK)
        return te_err_wrap(err, "%s", who);
    dev->report.bytes_up += len;
    dev->report.bytes_down += resp_len;
    return te_wire_response_data(*resp, resp_len, who, layer, n, l, data, err);
}

/* Device-mediated mode: the masked input (already serialized, buf) to EdgeA
 * and the request q without data to EdgeB, both in flight at once (one round
 * trip; te_transport_call_pair falls back to one after the other); returns
 * EdgeA's W.A in ya and EdgeB's W.M in share (n elements, width l each). */
static te_status call_both(twinedge_device *dev, const uint8_t *buf, size_t len, Twinedge__LayerRequest *q, size_t n,
                           unsigned l, uint64_t *ya, uint64_t *share, te_err *err)
{
    size_t blen = twinedge__layer_request__get_packed_size(q);
    uint8_t *bbuf = malloc(blen ? blen : 1);
    if (!bbuf)
        return te_errf(err, TE_ENOMEM, "out of memory");
    twinedge__layer_request__pack(q, bbuf);
    const uint8_t *const req[2] = {buf, bbuf};
    const size_t req_len[2] = {len, blen};
    uint8_t *resp[2] = {NULL, NULL};
    size_t resp_len[2] = {0, 0};
    te_party failed = TE_PARTY_EDGE_A;
    te_status st = te_transport_call_pair(dev->transport, req, req_len, resp, resp_len, &failed, err);
    free(bbuf);
    if (st != TE_OK)
        return te_err_wrap(err, "%s", failed == TE_PARTY_EDGE_A ? "EdgeA" : "EdgeB");
    dev->report.bytes_up += len + blen;
    dev->report.bytes_down += resp_len[0] + resp_len[1];
    st = te_wire_read_response(resp[0], resp_len[0], "EdgeA", q->layer, n, l, ya, err);
    if (st == TE_OK)
        st = te_wire_read_response(resp[1], resp_len[1], "EdgeB", q->layer, n, l, share, err);
    free(resp[0]);
    free(resp[1]);
    return st;
}

/* The LayerRequest with `data` (field 8) of data_len bytes serialized into
 * dev->req_buf, the data bytes left for the caller to write at *data
 * (te_wire_request_layout). */
static te_status request_layout(twinedge_device *dev, Twinedge__LayerRequest *q, size_t data_len, uint8_t **data,
                                size_t *len, te_err *err)
{
    return te_wire_request_layout(q, data_len, &dev->req_buf, &dev->req_cap, data, len, err);
}

/* The private linear layer: y = W.x via the two hosts, verified. */
static te_status private_linear(void *ctx, const te_model *m, int layer, const float *x, float *y, te_err *err)
{
    twinedge_device *dev = ctx;
    const te_layer *L = &m->layers[layer];
    /* the ring width comes from the input alone, before anything is sent */
    te_layer_plan plan;
    te_status st = te_layer_plan_input(L, x, &plan, err);
    if (st != TE_OK) {
        dev->failed_layer = layer;
        return st;
    }
#ifdef TE_NEGCTL_HOST_RETRY
    if (dev->widened[layer])
        plan.l = 64;
#endif
    unsigned l = plan.l;
    dev->widened_layers += plan.l != (unsigned)L->ring_bits;
    size_t n_in = (size_t)(L->geom.batch * te_geom_in_len(&L->geom));
    size_t n_out = (size_t)(L->geom.batch * te_geom_out_len(&L->geom));
    size_t batch = L->geom.batch > 0 ? (size_t)L->geom.batch : 1;
    if ((st = scratch((void **)&dev->rhs, &dev->rhs_cap, batch, sizeof *dev->rhs, err)) != TE_OK)
        return st;
    /* relay mode reads EdgeA's result in place; mediated mode unpacks both */
    if (dev->mode != TWINEDGE_RELAY &&
        ((st = scratch((void **)&dev->yr, &dev->yr_cap, n_out, sizeof *dev->yr, err)) != TE_OK ||
         (st = scratch((void **)&dev->share, &dev->share_cap, n_out, sizeof *dev->share, err)) != TE_OK))
        return st;
    if (dev->hook)
        dev->hook(dev->hook_ctx, layer, dev->t);

    Twinedge__LayerRequest q = TWINEDGE__LAYER_REQUEST__INIT;
    q.deployment_id = dev->model->deployment_id;
    q.device_id = dev->key.device_id;
    q.counter = dev->t;
    q.layer = (uint32_t)layer;
    q.ring_bits = l;
    q.batch = (uint64_t)L->geom.batch;
    q.mode = dev->mode == TWINEDGE_RELAY ? TWINEDGE__MODE__MODE_RELAY : TWINEDGE__MODE__MODE_MEDIATED;
    q.session.data = dev->session;
    q.session.len = sizeof dev->session;
    uint8_t *packed = NULL;
    size_t len = 0;
    if ((st = request_layout(dev, &q, te_pack_bytes(n_in, l), &packed, &len, err)) != TE_OK)
        return st;

    /* A = x + M, encoded, masked and packed straight into the request: uniform
     * in Z_2^l to EdgeA since M is a fresh PRF output.  s.x is taken on the
     * way for the check. */
    te_prf_stream ps;
    if ((st = te_prf_stream_open(&ps, dev->session_key, dev->t, (uint32_t)layer, TE_PRF_MASK, err)) != TE_OK)
        return st;
    st = te_layer_mask(L, l, x, &ps, packed, dev->rhs, err);
    te_prf_stream_close(&ps);
    if (st != TE_OK) {
        if (st == TE_EOVERFLOW)
            dev->failed_layer = layer;
        return st;
    }
    if (dev->mode == TWINEDGE_RELAY) {
        uint8_t *resp = NULL;
        const uint8_t *ya = NULL;
        if ((st = call_host_raw(dev, TE_PARTY_EDGE_A, dev->req_buf, len, q.layer, n_out, l, &resp, &ya, err)) !=
            TE_OK) {
            free(resp);
            return st;
        }
        /* EdgeA returned W.A - (W.M + Z) = W.x - Z: unpack, add Z, check and
         * decode in one pass over the response */
        if ((st = te_prf_stream_open(&ps, dev->session_key, dev->t, (uint32_t)layer, TE_PRF_OUT, err)) == TE_OK) {
            st = te_layer_finish_packed(L, l, ya, &ps, NULL, dev->rhs, plan.max_abs_x, y, err);
            te_prf_stream_close(&ps);
        }
        free(resp);
    } else {
        /* W.A from EdgeA, W.M from EdgeB: W.x = W.A - W.M */
        if ((st = call_both(dev, dev->req_buf, len, &q, n_out, l, dev->yr, dev->share, err)) != TE_OK)
            return st;
        st = te_layer_finish(L, l, dev->yr, NULL, dev->share, dev->rhs, plan.max_abs_x, y, err);
    }
    /* Nothing a host returned is used unless this check passed (on failure
     * te_layer_finish has wiped y).  A failed check is always a host's
     * fault (the ring could not overflow): no retry. */
    if (st == TE_EINTEGRITY)
        dev->failed_layer = layer;
    if (st != TE_OK)
        return st;
    dev->report.layers_checked++;
    return TE_OK;
}

static int infer_locked(twinedge_device *dev, twinedge_mode mode, const float *input, size_t n_in, float *output,
                        size_t n_out)
{
    te_err_clear(&dev->err);
    memset(&dev->report, 0, sizeof dev->report);
    te_exec_forget(dev->exec); /* twinedge_output_get: nothing from an earlier inference */
    if (!dev->transport)
        return te_errf(&dev->err, TE_EINVAL, "no transport: connect the device to its edge hosts first");
    if (mode != TWINEDGE_RELAY && mode != TWINEDGE_MEDIATED)
        return te_errf(&dev->err, TE_EINVAL, "unknown mode %d", (int)mode);
    int64_t want = te_shape_numel(&dev->model->values[dev->model->output].shape);
    if ((int64_t)n_out != want)
        return te_errf(&dev->err, TE_ESHAPE, "output buffer has %zu elements, model output has %lld", n_out,
                       (long long)want);
    dev->mode = mode;
    dev->report.linear_layers = dev->model->n_layers;
    te_status st;
    /* a forked child must not continue its parent's session */
    if (dev->session_pid != getpid() && (st = new_session(dev, &dev->err)) != TE_OK)
        return st;
    if (dev->next_t == UINT64_MAX && (st = new_session(dev, &dev->err)) != TE_OK)
        return st;
#ifdef TE_NEGCTL_HOST_RETRY
    /* the negative-control build: the old loop, in which a failed check
     * widened the layer and ran the inference again */
    for (int attempt = 0; attempt <= dev->model->n_layers; attempt++) {
#endif
    dev->t = dev->next_t++; /* taken before anything is sent, never handed out twice */
    dev->failed_layer = -1;
    dev->widened_layers = 0;
    dev->report.layers_checked = 0;
    dev->report.counter = dev->t;
    /* one inference = one session of the transport (one stream per host
     * over gRPC) */
    if ((st = te_transport_begin(dev->transport, &dev->err)) != TE_OK)
        return st;
    st = te_exec_run(dev->exec, input, n_in, private_linear, dev, &dev->err);
    te_transport_end(dev->transport);
    dev->report.widened_layers = dev->widened_layers;
    if (st == TE_OK) {
        /* a data-dependent output (NonMaxSuppression's) may fill fewer rows
         * than the buffer holds: twinedge_output_shape_at gives them */
        te_shape shape;
        const float *y = te_exec_output(dev->exec, &shape);
        size_t got = (size_t)te_shape_numel(&shape);
        memcpy(output, y, got * sizeof *output);
        memset(output + got, 0, (n_out - got) * sizeof *output);
        return TWINEDGE_OK;
    }
#ifdef TE_NEGCTL_HOST_RETRY
    int fl = dev->failed_layer;
    if (st != TE_EINTEGRITY || fl < 0 || dev->widened[fl] || dev->model->layers[fl].ring_bits >= 64)
        return st;
    dev->widened[fl] = 1;
    }
#endif
    return st;
}

int twinedge_infer(twinedge_device *dev, twinedge_mode mode, const float *input, size_t n_in, float *output,
                   size_t n_out)
{
    pthread_mutex_lock(&dev->mu);
    int rc = infer_locked(dev, mode, input, n_in, output, n_out);
    pthread_mutex_unlock(&dev->mu);
    return rc;
}
