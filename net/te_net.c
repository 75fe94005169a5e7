/* The gRPC C core wrapper (see te_net.h). */
#include "te_net.h"

#include <grpc/byte_buffer.h>
#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/grpc_security_constants.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>

#include <errno.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "te_bundle.h"

#define TE_NET_PEM_MAX (1u << 20)
#define TE_NET_DEFAULT_WORKERS 8
#define TE_NET_DEFAULT_STREAM_MAX ((size_t)1 << 30)
#define TE_NET_DEFAULT_IDLE_MS 120000

/* ---- credentials ---- */

static te_status read_pem(const char *dir, const char *name, int required, char **out, te_err *err)
{
    char path[4096];
    *out = NULL;
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return te_errf(err, TE_EINVAL, "credentials path too long");
    FILE *f = fopen(path, "rb");
    if (!f)
        return required ? te_errf(err, TE_EAUTH, "cannot read %s (credentials)", path) : TE_OK;
    fclose(f);
    uint8_t *buf = NULL;
    size_t len = 0;
    te_status st = te_file_read(path, TE_NET_PEM_MAX, &buf, &len, err);
    if (st != TE_OK)
        return st;
    char *s = realloc(buf, len + 1);
    if (!s) {
        free(buf);
        return te_errf(err, TE_ENOMEM, "out of memory");
    }
    s[len] = '\0';
    if (!strstr(s, "-----BEGIN ")) {
        free(s);
        return te_errf(err, TE_EAUTH, "%s is not a PEM file", path);
    }
    *out = s;
    return TE_OK;
}

te_status te_net_creds_load(const char *dir, te_net_creds *c, te_err *err)
{
    memset(c, 0, sizeof *c);
    te_status st;
    if ((st = read_pem(dir, "ca.pem", 1, &c->ca_pem, err)) != TE_OK ||
        (st = read_pem(dir, "cert.pem", 0, &c->cert_pem, err)) != TE_OK ||
        (st = read_pem(dir, "key.pem", 0, &c->key_pem, err)) != TE_OK) {
        te_net_creds_free(c);
        return st;
    }
    if (!c->cert_pem != !c->key_pem) {
        te_net_creds_free(c);
        return te_errf(err, TE_EAUTH, "%s has a certificate without a key or a key without a certificate", dir);
    }
    return TE_OK;
}

void te_net_creds_free(te_net_creds *c)
{
    if (!c)
        return;
    free(c->ca_pem);
    free(c->cert_pem);
    if (c->key_pem) {
        memset(c->key_pem, 0, strlen(c->key_pem));
        free(c->key_pem);
    }
    memset(c, 0, sizeof *c);
}

/* ---- helpers ---- */

static gpr_timespec deadline_ms(int ms)
{
    return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

static grpc_byte_buffer *bb_from(const uint8_t *data, size_t len)
{
    grpc_slice s = grpc_slice_from_copied_buffer((const char *)data, len);
    grpc_byte_buffer *b = grpc_raw_byte_buffer_create(&s, 1);
    grpc_slice_unref(s);
    return b;
}

/* Flatten a received message into malloc'd bytes; 0 on failure.  The
 * slices are copied straight into the result (no intermediate flat slice:
 * one copy of each message, not two). */
static int bb_to(grpc_byte_buffer *b, uint8_t **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    grpc_byte_buffer_reader r;
    if (!grpc_byte_buffer_reader_init(&r, b))
        return 0;
    size_t n = grpc_byte_buffer_length(r.buffer_out); /* decompressed, if it was compressed */
    *out = malloc(n ? n : 1);
    size_t at = 0;
    grpc_slice s;
    while (*out && grpc_byte_buffer_reader_next(&r, &s)) {
        size_t k = GRPC_SLICE_LENGTH(s);
        if (k <= n - at)
            memcpy(*out + at, GRPC_SLICE_START_PTR(s), k);
        at += k;
        grpc_slice_unref(s);
    }
    grpc_byte_buffer_reader_destroy(&r);
    if (*out && at != n) { /* the reader and the length disagree: refuse */
        free(*out);
        *out = NULL;
    }
    if (*out)
        *len = n;
    return *out != NULL;
}

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static void cq_drain_destroy(grpc_completion_queue *cq)
{
    if (!cq)
        return;
    grpc_completion_queue_shutdown(cq);
    while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type != GRPC_QUEUE_SHUTDOWN) {
    }
    grpc_completion_queue_destroy(cq);
}

/* ---- server ----
 *
 * Every call is a small state machine driven by completion events on one
 * queue, served by one thread (the poller).  A call holds two references:
 * its "op" (the one operation batch in flight, or its message queued for or
 * in a handler) and its "close" (RECV_CLOSE_ON_SERVER, outstanding from the
 * start, which completes when the call is over or cancelled).  It is freed
 * when both are released. */

enum { TAG_NEW = 1, TAG_OP, TAG_CLOSE, TAG_SHUTDOWN };
enum { STEP_START = 1, STEP_RECV, STEP_SENT, STEP_FINISH, STEP_WATCH };

struct srv_call;
typedef struct srv_tag {
    int kind;
    struct srv_call *c;
} srv_tag;

typedef struct msg_list {
    te_net_msg *v;
    uint8_t **owned;
    size_t n, cap, bytes;
} msg_list;

typedef struct srv_call {
    struct te_net_server *s;
    srv_tag new_tag, op_tag, close_tag;
    grpc_call *call;
    grpc_call_details details;
    grpc_metadata_array md;
    const te_net_method *m;
    char method[256], peer[256];
    int step;
    atomic_int refs;
    atomic_int closed;            /* the call is over (cancelled, or its status sent) */
    int close_cancelled;
    int md_sent;
    grpc_byte_buffer *recv_bb, *send_bb;
    grpc_slice status_details;
    grpc_metadata trailer;
    msg_list msgs;
    te_net_reply rep;
    uint64_t served;
    uint8_t *last;                /* server streaming: the last response sent */
    size_t last_len;
    double t0, waiting_since;     /* waiting_since > 0: waiting on the client (poller only) */
    int code;
    char msg[TE_ERR_MSG_MAX + 128];
    struct srv_call *prev, *next; /* s->calls, under s->lock */
    struct srv_call *qnext;       /* s->queue, under s->lock */
} srv_call;

struct te_net_server {
    grpc_server *server;
    grpc_completion_queue *cq;
    te_net_method *methods;
    int n_methods;
    pthread_t poller, *workers;
    int poller_started, n_workers, workers_started;
    size_t max_stream, max_queue_bytes;
    int idle_ms, max_calls, max_queue;
    int port;
    te_net_call_log log;
    void *log_ctx;
    srv_tag shutdown_tag;

    pthread_mutex_t lock;         /* guards everything below */
    pthread_cond_t cv;            /* workers: queue or stop; stop(): shutdown_done, open_calls */
    srv_call *calls;
    srv_call *qhead, *qtail;
    int queued;
    size_t queued_bytes;
    int open_calls;
    int open_streams;             /* of them, bidi streams (a device's inference each) */
    int stopping, shutdown_done;
    int draining;                 /* stop() has begun: watches end */
    uint64_t n_calls, n_refused;
};

#define TE_NET_DEFAULT_MAX_CALLS 10000
#define TE_NET_DEFAULT_MAX_QUEUE 4096
#define TE_NET_DEFAULT_QUEUE_BYTES ((size_t)512 << 20)
/* calls asked for in advance, so a burst of new calls is accepted at once */
#define TE_NET_PENDING_ACCEPTS 32
#define TE_NET_NOT_SERVED_KEY "te-not-served"

static void msg_list_free(msg_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->owned[i]);
    free(l->owned);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int msg_list_push(msg_list *l, uint8_t *data, size_t len)
{
    if (l->n == l->cap) {
        size_t nc = l->cap ? 2 * l->cap : 16;
        te_net_msg *v = realloc(l->v, nc * sizeof *v);
        if (!v)
            return 0;
        l->v = v;
        uint8_t **o = realloc(l->owned, nc * sizeof *o);
        if (!o)
            return 0;
        l->owned = o;
        l->cap = nc;
    }
    l->owned[l->n] = data;
    l->v[l->n].data = data;
    l->v[l->n].len = len;
    l->n++;
    l->bytes += len;
    return 1;
}

static void peer_name(grpc_call *call, char *out, size_t cap)
{
    out[0] = '\0';
    grpc_auth_context *ac = grpc_call_auth_context(call);
    if (!ac)
        return;
    if (grpc_auth_context_peer_is_authenticated(ac)) {
        grpc_auth_property_iterator it = grpc_auth_context_find_properties_by_name(ac, GRPC_X509_CN_PROPERTY_NAME);
        const grpc_auth_property *p = grpc_auth_property_iterator_next(&it);
        if (p && p->value_length < cap) {
            memcpy(out, p->value, p->value_length);
            out[p->value_length] = '\0';
        }
    }
    grpc_auth_context_release(ac);
}

static void call_free(srv_call *c)
{
    free(c->last);
    if (c->call)
        grpc_call_unref(c->call);
    grpc_call_details_destroy(&c->details);
    grpc_metadata_array_destroy(&c->md);
    if (c->recv_bb)
        grpc_byte_buffer_destroy(c->recv_bb);
    if (c->send_bb)
        grpc_byte_buffer_destroy(c->send_bb);
    grpc_slice_unref(c->status_details);
    msg_list_free(&c->msgs);
    free(c->rep.data);
    free(c);
}

static void call_set(srv_call *c, int code, const char *msg)
{
    c->code = code;
    snprintf(c->msg, sizeof c->msg, "%s", msg ? msg : "");
}

/* Drop one reference; the last one logs the call and frees it. */
static void call_release(srv_call *c)
{
    if (atomic_fetch_sub(&c->refs, 1) != 1)
        return;
    te_net_server *s = c->s;
    if (c->close_cancelled && !c->code)
        call_set(c, TE_NET_CANCELLED, "stream broken or cancelled by the client");
    /* while the call still counts as open: te_net_server_stop waits for it */
    if (c->m && c->m->kind == TE_NET_BIDI && c->m->ended && c->peer[0])
        c->m->ended(c->m->ctx, c->peer);
    if (s->log)
        s->log(s->log_ctx, c->method, c->peer[0] ? c->peer : "(unauthenticated)", c->code, c->msg, now_ms() - c->t0);
    pthread_mutex_lock(&s->lock);
    if (c->prev)
        c->prev->next = c->next;
    else
        s->calls = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->open_calls--;
    if (c->m && c->m->kind == TE_NET_BIDI)
        s->open_streams--;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->lock);
    call_free(c);
}

/* Start the call's one operation batch; on failure the op reference goes. */
static void call_ops(srv_call *c, int step, grpc_op *ops, size_t n)
{
    c->step = step;
    if (grpc_call_start_batch(c->call, ops, n, &c->op_tag, NULL) != GRPC_CALL_OK) {
        if (!c->code) {
            c->code = TE_NET_INTERNAL;
            snprintf(c->msg, sizeof c->msg, "cannot start a call operation");
        }
        grpc_call_cancel(c->call, NULL);
        call_release(c);
    }
}

/* End the call with a status (and, for unary / client-streaming calls, the
 * response).  not_served: the handler never saw the message, which the
 * client may send again (overload). */
static void call_finish(srv_call *c, int code, const char *msg, const uint8_t *data, size_t len, int with_message,
                        int not_served)
{
    if (code != TE_NET_OK || !c->code)
        call_set(c, code, msg);
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!c->md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->md_sent = 1;
    }
    if (with_message && code == TE_NET_OK) {
        c->send_bb = bb_from(data, len);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = c->send_bb;
    }
    grpc_slice_unref(c->status_details);
    c->status_details = grpc_slice_from_copied_string(msg ? msg : "");
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)code;
    ops[n].data.send_status_from_server.status_details = msg && *msg ? &c->status_details : NULL;
    if (not_served) {
        c->trailer.key = grpc_slice_from_static_string(TE_NET_NOT_SERVED_KEY);
        c->trailer.value = grpc_slice_from_static_string("1");
        ops[n].data.send_status_from_server.trailing_metadata_count = 1;
        ops[n].data.send_status_from_server.trailing_metadata = &c->trailer;
    }
    n++;
    call_ops(c, STEP_FINISH, ops, n);
}

static void call_refuse(srv_call *c, const char *msg)
{
    te_net_server *s = c->s;
    pthread_mutex_lock(&s->lock);
    s->n_refused++;
    pthread_mutex_unlock(&s->lock);
    call_finish(c, TE_NET_RESOURCE_EXHAUSTED, msg, NULL, 0, 0, 1);
}

/* Ask for the next message (the first one together with our metadata). */
static void call_recv(srv_call *c, int step)
{
    grpc_op ops[2];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    if (!c->md_sent) {
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        c->md_sent = 1;
    }
    ops[n].op = GRPC_OP_RECV_MESSAGE;
    ops[n++].data.recv_message.recv_message = &c->recv_bb;
    c->waiting_since = now_ms();
    call_ops(c, step, ops, n);
}

/* Send one message of a stream (copied); the poller goes on when it is out. */
static void call_send(srv_call *c, const uint8_t *data, size_t len)
{
    c->send_bb = bb_from(data ? data : (const uint8_t *)"", data ? len : 0);
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = c->send_bb;
    call_ops(c, STEP_SENT, &op, 1);
}

/* After the handler: answer, then wait for the next request (bidi), watch
 * (server stream) or end.  Once an operation is started the call may be
 * freed at any moment, so nothing of it is touched after that. */
static void call_answer(srv_call *c)
{
    te_net_reply *r = &c->rep;
    uint8_t *data = r->data;
    size_t len = r->len;
    r->data = NULL;
    if (c->m->kind == TE_NET_UNARY || c->m->kind == TE_NET_CLIENT_STREAM) {
        call_finish(c, r->code, r->msg, data ? data : (const uint8_t *)"", data ? len : 0, 1, 0);
        free(data);
        return;
    }
    if (c->m->kind == TE_NET_BIDI) /* a server stream keeps its request: its handler is asked again */
        msg_list_free(&c->msgs);
    if (r->code != TE_NET_OK) {
        free(data);
        call_finish(c, r->code, r->msg, NULL, 0, 0, 0);
        return;
    }
    if (c->m->kind == TE_NET_BIDI) {
        call_send(c, data, len);
        free(data);
        return;
    }
    if (c->step == STEP_WATCH && c->last && len == c->last_len && (!len || !memcmp(data, c->last, len))) {
        free(data); /* unchanged: nothing to send */
        return;
    }
    free(c->last);
    c->last = data;
    c->last_len = data ? len : 0;
    call_send(c, c->last, c->last_len);
}

static void call_handle(srv_call *c)
{
    memset(&c->rep, 0, sizeof c->rep);
    c->m->fn(c->m->ctx, c->peer, c->msgs.v, c->msgs.n, &c->rep);
    c->served++;
    call_answer(c);
}

/* Hand the messages to a worker, or refuse them when the queue is full. */
static void call_dispatch(srv_call *c)
{
    te_net_server *s = c->s;
    if (c->m->inline_call) {
        call_handle(c);
        return;
    }
    pthread_mutex_lock(&s->lock);
    int full = s->queued >= s->max_queue || s->queued_bytes + c->msgs.bytes > s->max_queue_bytes;
    int queued = s->queued;
    if (!full) {
        c->qnext = NULL;
        if (s->qtail)
            s->qtail->qnext = c;
        else
            s->qhead = c;
        s->qtail = c;
        s->queued++;
        s->queued_bytes += c->msgs.bytes;
        pthread_cond_signal(&s->cv);
    }
    pthread_mutex_unlock(&s->lock);
    if (full) {
        char msg[128];
        snprintf(msg, sizeof msg, "host busy: %d requests queued; not served, try again", queued);
        call_refuse(c, msg);
    }
}

static void *worker_main(void *arg)
{
    te_net_server *s = arg;
    pthread_mutex_lock(&s->lock);
    for (;;) {
        while (!s->qhead && !s->stopping)
            pthread_cond_wait(&s->cv, &s->lock);
        srv_call *c = s->qhead;
        if (!c)
            break; /* stopping, nothing left */
        s->qhead = c->qnext;
        if (!s->qhead)
            s->qtail = NULL;
        s->queued--;
        s->queued_bytes -= c->msgs.bytes;
        pthread_mutex_unlock(&s->lock);
        if (atomic_load(&c->closed)) {
            /* cancelled (deadline, client gone) while queued: no work for nobody */
            msg_list_free(&c->msgs);
            call_set(c, TE_NET_CANCELLED, "cancelled by the client while queued");
            call_release(c);
        } else {
            call_handle(c);
        }
        pthread_mutex_lock(&s->lock);
    }
    pthread_mutex_unlock(&s->lock);
    return NULL;
}

/* A message (or the end of the client's messages) arrived. */
static void call_got(srv_call *c)
{
    te_net_server *s = c->s;
    c->waiting_since = 0;
    grpc_byte_buffer *bb = c->recv_bb;
    c->recv_bb = NULL;
    if (!bb) { /* the client half-closed */
        if (c->m->kind == TE_NET_BIDI) {
            char msg[64];
            snprintf(msg, sizeof msg, "%llu messages", (unsigned long long)c->served);
            call_finish(c, TE_NET_OK, msg, NULL, 0, 0, 0);
        } else if (c->m->kind == TE_NET_UNARY) {
            call_finish(c, TE_NET_INVALID_ARGUMENT, "unary call without a request message", NULL, 0, 0, 0);
        } else {
            call_dispatch(c);
        }
        return;
    }
    uint8_t *data = NULL;
    size_t len = 0;
    int ok = bb_to(bb, &data, &len);
    grpc_byte_buffer_destroy(bb);
    if (!ok) {
        call_finish(c, TE_NET_RESOURCE_EXHAUSTED, "out of memory", NULL, 0, 0, 0);
        return;
    }
    if (c->m->kind == TE_NET_CLIENT_STREAM && c->msgs.bytes + len > s->max_stream) {
        free(data);
        call_finish(c, TE_NET_RESOURCE_EXHAUSTED, "stream larger than the server accepts", NULL, 0, 0, 0);
        return;
    }
    if (!msg_list_push(&c->msgs, data, len)) {
        free(data);
        call_finish(c, TE_NET_RESOURCE_EXHAUSTED, "out of memory", NULL, 0, 0, 0);
        return;
    }
    if (c->m->kind == TE_NET_CLIENT_STREAM)
        call_recv(c, STEP_RECV);
    else
        call_dispatch(c);
}

/* A new call: who, what, whether there is room; then its first message. */
static void call_start(srv_call *c)
{
    te_net_server *s = c->s;
    c->t0 = now_ms();
    char *m = grpc_slice_to_c_string(c->details.method);
    snprintf(c->method, sizeof c->method, "%s", m);
    gpr_free(m);
    peer_name(c->call, c->peer, sizeof c->peer);
    for (int i = 0; i < s->n_methods && !c->m; i++)
        if (strcmp(s->methods[i].path, c->method) == 0)
            c->m = &s->methods[i];
    pthread_mutex_lock(&s->lock);
    int full = s->open_calls >= s->max_calls;
    s->open_calls++;
    if (c->m && c->m->kind == TE_NET_BIDI)
        s->open_streams++;
    s->n_calls++;
    c->next = s->calls;
    if (s->calls)
        s->calls->prev = c;
    s->calls = c;
    pthread_mutex_unlock(&s->lock);
    /* op + close */
    atomic_store(&c->refs, 2);
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    op.data.recv_close_on_server.cancelled = &c->close_cancelled;
    if (grpc_call_start_batch(c->call, &op, 1, &c->close_tag, NULL) != GRPC_CALL_OK)
        call_release(c);
    if (full) {
        char msg[128];
        snprintf(msg, sizeof msg, "host busy: %d calls open; not served, try again", s->max_calls);
        call_refuse(c, msg);
    } else if (!c->m) {
        call_finish(c, TE_NET_UNIMPLEMENTED, "unknown method", NULL, 0, 0, 0);
    } else if (!c->peer[0]) {
        call_finish(c, TE_NET_UNAUTHENTICATED, "no authenticated client certificate", NULL, 0, 0, 0);
    } else {
        call_recv(c, STEP_START);
    }
}

static void accept_one(te_net_server *s)
{
    srv_call *c = calloc(1, sizeof *c);
    if (!c)
        return;
    c->s = s;
    c->new_tag = (srv_tag){TAG_NEW, c};
    c->op_tag = (srv_tag){TAG_OP, c};
    c->close_tag = (srv_tag){TAG_CLOSE, c};
    c->status_details = grpc_empty_slice();
    grpc_call_details_init(&c->details);
    grpc_metadata_array_init(&c->md);
    if (grpc_server_request_call(s->server, &c->call, &c->details, &c->md, s->cq, s->cq, &c->new_tag) !=
        GRPC_CALL_OK)
        call_free(c);
}

/* Cancel calls that have kept us waiting on their client too long. */
static void sweep_idle(te_net_server *s)
{
    double now = now_ms();
    pthread_mutex_lock(&s->lock);
    for (srv_call *c = s->calls; c; c = c->next)
        if (c->waiting_since > 0 && now - c->waiting_since > s->idle_ms && c->call) {
            c->waiting_since = 0;
            grpc_call_cancel_with_status(c->call, GRPC_STATUS_DEADLINE_EXCEEDED, "idle: no message from the client",
                                         NULL);
        }
    pthread_mutex_unlock(&s->lock);
}

/* Server-streaming calls between messages hold their operation reference
 * with nothing pending: end those the client has left (or all of them when
 * the server stops), and ask the others' handlers again.  Poller thread
 * only, which alone moves a call out of STEP_WATCH, so the calls collected
 * stay alive after the lock is dropped. */
static void watch_pass(te_net_server *s)
{
    /* every watch, however many: one left out would never see its client
     * leave, and stop() would wait on it forever */
    pthread_mutex_lock(&s->lock);
    int draining = s->draining, n = 0;
    srv_call **w = s->open_calls > 0 ? malloc((size_t)s->open_calls * sizeof *w) : NULL;
    for (srv_call *c = s->calls; w && c && n < s->open_calls; c = c->next)
        if (c->step == STEP_WATCH)
            w[n++] = c;
    pthread_mutex_unlock(&s->lock); /* out of memory: the next pass tries again */
    for (int i = 0; i < n; i++) {
        srv_call *c = w[i];
        if (atomic_load(&c->closed)) {
            c->step = STEP_FINISH;
            call_release(c);
        } else if (draining) {
            call_finish(c, TE_NET_UNAVAILABLE, "server stopping", NULL, 0, 0, 0);
        } else {
            memset(&c->rep, 0, sizeof c->rep);
            c->m->fn(c->m->ctx, c->peer, c->msgs.v, c->msgs.n, &c->rep);
            call_answer(c);
        }
    }
    free(w);
}

static void *poller_main(void *arg)
{
    te_net_server *s = arg;
    double last_sweep = now_ms(), last_watch = now_ms();
    for (;;) {
        grpc_event ev = grpc_completion_queue_next(s->cq, deadline_ms(500), NULL);
        if (ev.type == GRPC_QUEUE_SHUTDOWN)
            break;
        if (now_ms() - last_sweep > 500) {
            sweep_idle(s);
            last_sweep = now_ms();
        }
        if (now_ms() - last_watch >= TE_NET_WATCH_MS) {
            watch_pass(s);
            last_watch = now_ms();
        }
        if (ev.type != GRPC_OP_COMPLETE)
            continue;
        srv_tag *t = ev.tag;
        srv_call *c = t->c;
        switch (t->kind) {
        case TAG_SHUTDOWN:
            pthread_mutex_lock(&s->lock);
            s->shutdown_done = 1;
            pthread_cond_broadcast(&s->cv);
            pthread_mutex_unlock(&s->lock);
            break;
        case TAG_NEW:
            if (!ev.success) { /* shutting down */
                call_free(c);
                break;
            }
            accept_one(s);
            call_start(c);
            break;
        case TAG_CLOSE:
            /* the op may be in a worker: only the flag here, the
             * last release reads close_cancelled */
            atomic_store(&c->closed, 1);
            call_release(c);
            break;
        case TAG_OP:
            if (c->step == STEP_FINISH || !ev.success) {
                if (!ev.success && c->step != STEP_FINISH && !c->code)
                    call_set(c, TE_NET_CANCELLED, "stream broken or cancelled by the client");
                c->waiting_since = 0;
                if (!ev.success && c->recv_bb) {
                    grpc_byte_buffer_destroy(c->recv_bb);
                    c->recv_bb = NULL;
                }
                call_release(c);
            } else if (c->step == STEP_SENT) {
                grpc_byte_buffer_destroy(c->send_bb);
                c->send_bb = NULL;
                if (c->m->kind == TE_NET_SERVER_STREAM)
                    c->step = STEP_WATCH; /* no operation pending: watch_pass looks after it */
                else
                    call_recv(c, STEP_RECV);
            } else {
                call_got(c);
            }
            break;
        }
    }
    return NULL;
}

void te_net_server_figures_get(te_net_server *s, te_net_server_figures *f)
{
    pthread_mutex_lock(&s->lock);
    f->calls = s->n_calls;
    f->refused = s->n_refused;
    f->open_calls = s->open_calls;
    f->open_streams = s->open_streams;
    f->queued = s->queued;
    pthread_mutex_unlock(&s->lock);
}

static void server_free(te_net_server *s)
{
    if (s->server)
        grpc_server_destroy(s->server);
    if (s->cq) {
        grpc_completion_queue_shutdown(s->cq);
        if (s->poller_started)
            pthread_join(s->poller, NULL);
        else
            while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
                   GRPC_QUEUE_SHUTDOWN) {
            }
        grpc_completion_queue_destroy(s->cq);
    }
    free(s->workers);
    for (int i = 0; i < s->n_methods; i++)
        free((char *)s->methods[i].path);
    free(s->methods);
    pthread_cond_destroy(&s->cv);
    pthread_mutex_destroy(&s->lock);
    free(s);
    grpc_shutdown();
}

te_status te_net_server_start(const te_net_server_config *cfg, te_net_server **out, te_err *err)
{
    *out = NULL;
    if (!cfg->creds || !cfg->creds->ca_pem || !cfg->creds->cert_pem || !cfg->creds->key_pem)
        return te_errf(err, TE_EAUTH, "a server needs a CA, a certificate and a key");
    if (!cfg->listen)
        return te_errf(err, TE_EINVAL, "no listen address");
    grpc_init();
    te_net_server *s = calloc(1, sizeof *s);
    if (!s) {
        grpc_shutdown();
        return te_errf(err, TE_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&s->lock, NULL);
    pthread_cond_init(&s->cv, NULL);
    s->n_workers = cfg->workers > 0 ? cfg->workers : TE_NET_DEFAULT_WORKERS;
    s->max_stream = cfg->max_stream_bytes ? cfg->max_stream_bytes : TE_NET_DEFAULT_STREAM_MAX;
    s->idle_ms = cfg->idle_timeout_ms > 0 ? cfg->idle_timeout_ms : TE_NET_DEFAULT_IDLE_MS;
    s->max_calls = cfg->max_calls > 0 ? cfg->max_calls : TE_NET_DEFAULT_MAX_CALLS;
    s->max_queue = cfg->max_queue > 0 ? cfg->max_queue : TE_NET_DEFAULT_MAX_QUEUE;
    s->max_queue_bytes = cfg->max_queue_bytes ? cfg->max_queue_bytes : TE_NET_DEFAULT_QUEUE_BYTES;
    s->log = cfg->log;
    s->log_ctx = cfg->log_ctx;
    s->shutdown_tag = (srv_tag){TAG_SHUTDOWN, NULL};
    s->workers = calloc((size_t)s->n_workers, sizeof *s->workers);
    s->methods = calloc((size_t)(cfg->n_methods > 0 ? cfg->n_methods : 1), sizeof *s->methods);
    if (!s->workers || !s->methods) {
        server_free(s);
        return te_errf(err, TE_ENOMEM, "out of memory");
    }
    for (int i = 0; i < cfg->n_methods; i++) {
        s->methods[i] = cfg->methods[i];
        s->methods[i].path = strdup(cfg->methods[i].path);
        s->n_methods++;
        if (!s->methods[i].path) {
            server_free(s);
            return te_errf(err, TE_ENOMEM, "out of memory");
        }
    }
    size_t maxmsg = cfg->max_message ? cfg->max_message : TE_NET_DEFAULT_MAX_MESSAGE;
    grpc_arg args[3];
    memset(args, 0, sizeof args);
    args[0].type = GRPC_ARG_INTEGER;
    args[0].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[0].value.integer = (int)maxmsg;
    args[1].type = GRPC_ARG_INTEGER;
    args[1].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[1].value.integer = (int)maxmsg;
    /* Two servers on one port would split the calls between them. */
    args[2].type = GRPC_ARG_INTEGER;
    args[2].key = (char *)GRPC_ARG_ALLOW_REUSEPORT;
    args[2].value.integer = 0;
    grpc_channel_args ca = {3, args};
    s->server = grpc_server_create(&ca, NULL);
    s->cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->cq, NULL);
    grpc_ssl_pem_key_cert_pair pair = {cfg->creds->key_pem, cfg->creds->cert_pem};
    grpc_server_credentials *sc = grpc_ssl_server_credentials_create_ex(
        cfg->creds->ca_pem, &pair, 1, GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY, NULL);
    if (!sc) {
        server_free(s);
        return te_errf(err, TE_EAUTH, "the server's TLS credentials were refused (bad certificate or key?)");
    }
    s->port = grpc_server_add_http2_port(s->server, cfg->listen, sc);
    grpc_server_credentials_release(sc);
    if (s->port <= 0) {
        server_free(s);
        return te_errf(err, TE_ETRANSPORT, "cannot listen on %s (address in use, bad address or bad credentials)",
                       cfg->listen);
    }
    grpc_server_start(s->server);
    for (int i = 0; i < TE_NET_PENDING_ACCEPTS; i++)
        accept_one(s);
    if (pthread_create(&s->poller, NULL, poller_main, s) != 0) {
        te_net_server_stop(s, 0);
        return te_errf(err, TE_ENOMEM, "cannot start server threads");
    }
    s->poller_started = 1;
    for (int i = 0; i < s->n_workers; i++) {
        if (pthread_create(&s->workers[i], NULL, worker_main, s) != 0) {
            te_net_server_stop(s, 0);
            return te_errf(err, TE_ENOMEM, "cannot start server threads");
        }
        s->workers_started++;
    }
    *out = s;
    return TE_OK;
}

int te_net_server_port(const te_net_server *s) { return s->port; }

void te_net_server_stop(te_net_server *s, int grace_ms)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->lock);
    s->draining = 1;
    pthread_mutex_unlock(&s->lock);
    grpc_server_shutdown_and_notify(s->server, s->cq, &s->shutdown_tag);
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    long ms = grace_ms > 0 ? grace_ms : 0;
    until.tv_sec += ms / 1000;
    until.tv_nsec += (ms % 1000) * 1000000L;
    if (until.tv_nsec >= 1000000000L) {
        until.tv_sec++;
        until.tv_nsec -= 1000000000L;
    }
    pthread_mutex_lock(&s->lock);
    /* the calls in flight finish within the grace, or are cancelled */
    while ((!s->shutdown_done || s->open_calls > 0) && s->poller_started) {
        if (pthread_cond_timedwait(&s->cv, &s->lock, &until) != 0) {
            pthread_mutex_unlock(&s->lock);
            grpc_server_cancel_all_calls(s->server);
            pthread_mutex_lock(&s->lock);
            while ((!s->shutdown_done || s->open_calls > 0) && s->poller_started)
                pthread_cond_wait(&s->cv, &s->lock);
            break;
        }
    }
    s->stopping = 1;
    pthread_cond_broadcast(&s->cv);
    pthread_mutex_unlock(&s->lock);
    for (int i = 0; i < s->workers_started; i++)
        pthread_join(s->workers[i], NULL);
    server_free(s);
}

/* ---- client ---- */

/* gRPC takes the minimum reconnect backoff as the least time a connection
 * attempt (TCP + TLS handshake) may take, 20 s by default.  A busy host can
 * take longer, and an attempt cut short fails every call waiting on it, so
 * the attempt may take this long and each call's own deadline is the limit. */
#define TE_NET_CONNECT_TIMEOUT_MS 300000
/* A refused connection is retried after 100 ms, growing to at most 1 s: a
 * restarted host is reachable again within a second. */
#define TE_NET_INITIAL_BACKOFF_MS 100
#define TE_NET_MAX_BACKOFF_MS 1000
/* A host that refuses connections (nothing listening) or whose name does
 * not resolve is given this long to come up, within the deadline: enough
 * for a restart, short enough that a wrong address is told promptly.  A
 * host that accepts the connection gets the whole deadline. */
#define TE_NET_UNREACHABLE_MS 3000
/* The longest a TLS probe (tls_probe_refused) may take, within the deadline. */
#define TE_NET_PROBE_MS 3000
/* Never served: the fail-fast call that reads a connection failure. */
#define TE_NET_PROBE_METHOD "/twinedge.Net/ConnectProbe"

struct te_net_channel {
    grpc_channel *channel;
    char target[1024];
    char server_name[256];
    te_net_creds creds;      /* our certificate and key (copies), for tls_probe_refused */
};

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

te_status te_net_channel_new(const te_net_channel_config *cfg, te_net_channel **out, te_err *err)
{
    *out = NULL;
    if (!cfg->target || !*cfg->target)
        return te_errf(err, TE_EINVAL, "no address to connect to");
    if (!cfg->creds || !cfg->creds->ca_pem)
        return te_errf(err, TE_EAUTH, "no CA certificate to verify %s with", cfg->target);
    te_net_channel *ch = calloc(1, sizeof *ch);
    if (!ch)
        return te_errf(err, TE_ENOMEM, "out of memory");
    snprintf(ch->target, sizeof ch->target, "%s", cfg->target);
    snprintf(ch->server_name, sizeof ch->server_name, "%s", cfg->server_name ? cfg->server_name : "");
    ch->creds.cert_pem = dup_or_null(cfg->creds->cert_pem);
    ch->creds.key_pem = dup_or_null(cfg->creds->key_pem);
    if (!ch->creds.cert_pem != !cfg->creds->cert_pem || !ch->creds.key_pem != !cfg->creds->key_pem) {
        te_net_creds_free(&ch->creds);
        free(ch);
        return te_errf(err, TE_ENOMEM, "out of memory");
    }
    grpc_init();
    grpc_ssl_pem_key_cert_pair pair = {cfg->creds->key_pem, cfg->creds->cert_pem};
    grpc_channel_credentials *cc =
        grpc_ssl_credentials_create(cfg->creds->ca_pem, cfg->creds->cert_pem ? &pair : NULL, NULL, NULL);
    if (!cc) {
        te_net_creds_free(&ch->creds);
        free(ch);
        grpc_shutdown();
        return te_errf(err, TE_EAUTH, "TLS credentials for %s were refused", cfg->target);
    }
    size_t maxmsg = cfg->max_message ? cfg->max_message : TE_NET_DEFAULT_MAX_MESSAGE;
    grpc_arg args[8];
    memset(args, 0, sizeof args);
    int n = 0;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
    args[n++].value.integer = (int)maxmsg;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_MAX_SEND_MESSAGE_LENGTH;
    args[n++].value.integer = (int)maxmsg;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
    args[n++].value.integer = TE_NET_INITIAL_BACKOFF_MS;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_MIN_RECONNECT_BACKOFF_MS;
    args[n++].value.integer = TE_NET_CONNECT_TIMEOUT_MS;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
    args[n++].value.integer = TE_NET_MAX_BACKOFF_MS;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    args[n++].value.integer = 1;
    /* Several replicas ("ipv4:h:p,h:p" or a DNS name with several
     * addresses): spread the calls over all of them, not just the first. */
    if (strchr(cfg->target, ',') || strncmp(cfg->target, "dns:", 4) == 0) {
        args[n].type = GRPC_ARG_STRING;
        args[n].key = (char *)GRPC_ARG_LB_POLICY_NAME;
        args[n++].value.string = (char *)"round_robin";
    }
    if (cfg->server_name && *cfg->server_name) {
        args[n].type = GRPC_ARG_STRING;
        args[n].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
        args[n++].value.string = (char *)cfg->server_name;
    }
    grpc_channel_args ca = {(size_t)n, args};
    ch->channel = grpc_channel_create(cfg->target, cc, &ca);
    grpc_channel_credentials_release(cc);
    if (!ch->channel) {
        te_net_creds_free(&ch->creds);
        free(ch);
        grpc_shutdown();
        return te_errf(err, TE_ETRANSPORT, "cannot create a channel to %s", cfg->target);
    }
    *out = ch;
    return TE_OK;
}

int te_net_in_use(void) { return grpc_is_initialized(); }

int te_net_quiesce(int timeout_ms)
{
    const struct timespec ms = {0, 1000000L};
    for (int i = 0; grpc_is_initialized(); i++) {
        if (i >= timeout_ms)
            return 0;
        nanosleep(&ms, NULL);
    }
    return 1;
}

void te_net_channel_free(te_net_channel *ch)
{
    if (!ch)
        return;
    grpc_channel_destroy(ch->channel);
    te_net_creds_free(&ch->creds);
    free(ch);
    grpc_shutdown();
}

const char *te_net_channel_target(const te_net_channel *ch) { return ch->target; }

/* ---- why a connection failed: unreachable, timed out, credentials refused ---- */

static int has_word(const char *s, const char *w)
{
    size_t n = strlen(w);
    for (; *s; s++)
        if (strncasecmp(s, w, n) == 0)
            return 1;
    return 0;
}

/* gRPC's words for a certificate that failed a check: ours (a TLS 1.2 peer's
 * alert) or the host's ("certificate verify failed", "Peer name ... is not in
 * peer certificate"). */
static int creds_words(const char *det)
{
    return has_word(det, "certificate") || has_word(det, "peer name") || has_word(det, "unknown ca") ||
           has_word(det, "access denied");
}

/* The connection ended during set-up with no reason given. */
static int closed_words(const char *det)
{
    return has_word(det, "socket closed") || has_word(det, "connection reset") || has_word(det, "broken pipe") ||
           has_word(det, "handshake read failed") || has_word(det, "handshake write failed");
}

/* Nothing there: no listener, no route, no such name. */
static int absent_words(const char *det)
{
    return has_word(det, "connection refused") || has_word(det, "DNS resolution failed") ||
           has_word(det, "no route to host") || has_word(det, "network is unreachable");
}

/* A connection attempt that ran out of time (gRPC's own limit on it). */
static int timeout_words(const char *det)
{
    return has_word(det, "timed out") || has_word(det, "handshaker shutdown");
}

static int ms_left(gpr_timespec deadline)
{
    int64_t ms = gpr_time_to_millis(gpr_time_sub(deadline, gpr_now(GPR_CLOCK_MONOTONIC)));
    return ms < 0 ? 0 : ms > INT32_MAX ? INT32_MAX : (int)ms;
}

/* The address a connection failure names ("ipv4:H:P: ..." or
 * "ipv6:[H]:P: ..."); 1 if found. */
static int failed_address(const char *det, char *host, size_t cap, char *port, size_t pcap)
{
    const char *p = strstr(det, "ipv4:"), *h, *he;
    int v6 = 0;
    if (!p) {
        p = strstr(det, "ipv6:[");
        v6 = 1;
    }
    if (!p)
        return 0;
    if (v6) {
        h = p + 6;
        he = strchr(h, ']');
        if (!he || he[1] != ':')
            return 0;
    } else {
        h = p + 5;
        he = strchr(h, ':');
        if (!he)
            return 0;
    }
    const char *ps = v6 ? he + 2 : he + 1, *pe = ps;
    while (*pe >= '0' && *pe <= '9')
        pe++;
    if ((size_t)(he - h) >= cap || pe == ps || (size_t)(pe - ps) >= pcap)
        return 0;
    memcpy(host, h, (size_t)(he - h));
    host[he - h] = '\0';
    memcpy(port, ps, (size_t)(pe - ps));
    port[pe - ps] = '\0';
    return 1;
}

static int wait_fd(int fd, int events, gpr_timespec deadline)
{
    struct pollfd p = {fd, (short)events, 0};
    int r;
    do {
        r = poll(&p, 1, ms_left(deadline));
    } while (r < 0 && errno == EINTR);
    return r > 0;
}

static int tcp_connect(const char *host, const char *port, gpr_timespec deadline)
{
    struct addrinfo hints, *ai = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICHOST | AI_NUMERICSERV;
    if (getaddrinfo(host, port, &hints, &ai) != 0 || !ai)
        return -1;
    int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int ok = fd >= 0 && (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0 || errno == EINPROGRESS);
    freeaddrinfo(ai);
    int soerr = 0;
    socklen_t sl = sizeof soerr;
    if (ok && (!wait_fd(fd, POLLOUT, deadline) || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) != 0 || soerr))
        ok = 0;
    if (!ok && fd >= 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static int is_cert_alert(int alert)
{
    switch (alert) {
    case SSL_AD_BAD_CERTIFICATE:
    case SSL_AD_UNSUPPORTED_CERTIFICATE:
    case SSL_AD_CERTIFICATE_REVOKED:
    case SSL_AD_CERTIFICATE_EXPIRED:
    case SSL_AD_CERTIFICATE_UNKNOWN:
    case SSL_AD_UNKNOWN_CA:
    case SSL_AD_ACCESS_DENIED:
    case SSL_AD_CERTIFICATE_REQUIRED:
        return 1;
    default:
        return 0;
    }
}

/* Did the host at host:port refuse our certificate?  With TLS 1.3 the
 * client's handshake is over before the server checks the client's
 * certificate, and gRPC's server then just closes the connection, so gRPC
 * reports "Socket closed", as it does for a host that closes connections for
 * any other reason.  In a TLS 1.2 handshake of our own the server checks our
 * certificate before it sends its Finished: a close (or a certificate alert)
 * right after we sent ours is a refusal.  Nothing but the handshake is sent.
 * 1: refused, with what happened in why. */
static int tls_probe_refused(const te_net_channel *ch, const char *host, const char *port, gpr_timespec deadline,
                             char *why, size_t cap)
{
    gpr_timespec cap_t =
        gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(TE_NET_PROBE_MS, GPR_TIMESPAN));
    if (gpr_time_cmp(cap_t, deadline) < 0)
        deadline = cap_t;
    int refused = 0;
    why[0] = '\0';
    int fd = tcp_connect(host, port, deadline);
    if (fd < 0)
        return 0;
    /* OpenSSL writes with write(): a host that has closed the connection
     * would raise SIGPIPE; it stays pending on this thread and is taken. */
    sigset_t pipe_set, old_set, pending;
    sigemptyset(&pipe_set);
    sigaddset(&pipe_set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &pipe_set, &old_set);
    sigpending(&pending);
    int was_pending = sigismember(&pending, SIGPIPE);
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_client_method());
    SSL *ssl = NULL;
    int ok = ctx && SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) &&
             SSL_CTX_set_max_proto_version(ctx, TLS1_2_VERSION) &&
             SSL_CTX_set_alpn_protos(ctx, (const unsigned char *)"\x02h2", 3) == 0;
    if (ok && ch->creds.cert_pem && ch->creds.key_pem) {
        BIO *b = BIO_new_mem_buf(ch->creds.cert_pem, -1);
        X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        b = BIO_new_mem_buf(ch->creds.key_pem, -1);
        EVP_PKEY *k = b ? PEM_read_bio_PrivateKey(b, NULL, NULL, NULL) : NULL;
        BIO_free(b);
        ok = x && k && SSL_CTX_use_certificate(ctx, x) == 1 && SSL_CTX_use_PrivateKey(ctx, k) == 1;
        X509_free(x);
        EVP_PKEY_free(k);
    }
    if (ok) {
        SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL); /* gRPC checks the host's certificate */
        ssl = SSL_new(ctx);
        ok = ssl && SSL_set_fd(ssl, fd) == 1;
        if (ok && ch->server_name[0])
            SSL_set_tlsext_host_name(ssl, ch->server_name);
    }
    while (ok) {
        int r = SSL_connect(ssl);
        if (r == 1) {
            snprintf(why, cap, "the host completed a TLS handshake with our certificate");
            break;
        }
        int e = SSL_get_error(ssl, r);
        if ((e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) &&
            wait_fd(fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, deadline))
            continue;
        unsigned long ec = ERR_peek_last_error();
        int reason = ERR_GET_REASON(ec);
        if (reason > SSL_AD_REASON_OFFSET && is_cert_alert(reason - SSL_AD_REASON_OFFSET)) {
            refused = 1;
            snprintf(why, cap, "its TLS alert: %s", SSL_alert_desc_string_long(reason - SSL_AD_REASON_OFFSET));
        } else if (SSL_get_state(ssl) == TLS_ST_CW_FINISHED && e != SSL_ERROR_WANT_READ) {
            refused = 1;
            snprintf(why, cap, "it closed the connection after our part of the TLS handshake");
        }
        break;
    }
    SSL_free(ssl);
    SSL_CTX_free(ctx);
    ERR_clear_error();
    close(fd);
    sigpending(&pending);
    if (!was_pending && sigismember(&pending, SIGPIPE)) {
        const struct timespec zero = {0, 0};
        sigtimedwait(&pipe_set, NULL, &zero);
    }
    pthread_sigmask(SIG_SETMASK, &old_set, NULL);
    return refused;
}

/* gRPC's "failed to connect to all addresses; last error: UNKNOWN: X": X. */
static const char *last_error(const char *det)
{
    const char *p = strstr(det, "last error: ");
    p = p ? p + strlen("last error: ") : det;
    const char *q = p;
    while ((*q >= 'A' && *q <= 'Z') || *q == '_')
        q++;
    return q > p && q[0] == ':' && q[1] == ' ' ? q + 2 : p;
}

/* Credentials refused: which side refused, from gRPC's words. */
static te_status creds_refused(const te_net_channel *ch, const char *det, te_err *err)
{
    if (has_word(det, "alert"))
        return te_errf(err, TE_EAUTH, "%s: TLS credentials refused: the host did not accept our certificate (%s)",
                       ch->target, last_error(det));
    return te_errf(err, TE_EAUTH, "%s: TLS credentials refused: the host's certificate failed our check (%s)",
                   ch->target, last_error(det));
}

/* Why the channel's last connection attempt failed.  While the channel is
 * in TRANSIENT_FAILURE gRPC fails a call that does not wait for ready at
 * once, with that attempt's error.  TE_OK: the call went through after all
 * (connected); TE_EAUTH: credentials refused (err set); TE_ETRANSPORT: the
 * error, in det. */
static te_status connect_error(te_net_channel *ch, grpc_completion_queue *cq, gpr_timespec deadline, char *det,
                               size_t cap, te_err *err)
{
    grpc_slice m = grpc_slice_from_static_string(TE_NET_PROBE_METHOD);
    grpc_call *call = grpc_channel_create_call(ch->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL, deadline, NULL);
    if (!call)
        return TE_ETRANSPORT;
    grpc_metadata_array trailing;
    grpc_metadata_array_init(&trailing);
    grpc_status_code status = GRPC_STATUS_UNKNOWN;
    grpc_slice details = grpc_empty_slice();
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
    ops[1].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    ops[2].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
    ops[2].data.recv_status_on_client.trailing_metadata = &trailing;
    ops[2].data.recv_status_on_client.status = &status;
    ops[2].data.recv_status_on_client.status_details = &details;
    int ok = grpc_call_start_batch(call, ops, 3, call, NULL) == GRPC_CALL_OK &&
             grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type == GRPC_OP_COMPLETE;
    char *d = grpc_slice_to_c_string(details);
    grpc_slice_unref(details);
    grpc_metadata_array_destroy(&trailing);
    grpc_call_unref(call);
    te_status st = TE_ETRANSPORT;
    if (ok && status != GRPC_STATUS_UNAVAILABLE && status != GRPC_STATUS_DEADLINE_EXCEEDED) {
        st = TE_OK; /* a host answered (the method is unknown to it) */
    } else if (ok && status == GRPC_STATUS_UNAVAILABLE && d && *d) {
        char host[256], port[16], why[160];
        if (creds_words(d))
            st = creds_refused(ch, d, err);
        else if (closed_words(d) && failed_address(d, host, sizeof host, port, sizeof port) &&
                 tls_probe_refused(ch, host, port, deadline, why, sizeof why))
            st = te_errf(err, TE_EAUTH, "%s: TLS credentials refused: the host did not accept %s (%s; %s)", ch->target,
                         ch->creds.cert_pem ? "our certificate" : "us without a client certificate", why,
                         last_error(d));
        else
            snprintf(det, cap, "%s", last_error(d));
    }
    gpr_free(d);
    return st;
}

/* Wait, within the deadline, until the channel is connected: gRPC retries
 * failed attempts (backoff) meanwhile.  Refused credentials fail at once:
 * trying again cannot help. */
static te_status wait_ready(te_net_channel *ch, grpc_completion_queue *cq, gpr_timespec deadline, int timeout_ms,
                            const char *method, te_err *err)
{
    char last[TE_ERR_MSG_MAX] = "";
    gpr_timespec until = deadline; /* the deadline, or the grace of an absent host */
    int absent = 0;
    grpc_connectivity_state st = grpc_channel_check_connectivity_state(ch->channel, 1);
    while (st != GRPC_CHANNEL_READY && st != GRPC_CHANNEL_SHUTDOWN) {
        if (st == GRPC_CHANNEL_TRANSIENT_FAILURE) {
            te_status cs = connect_error(ch, cq, deadline, last, sizeof last, err);
            if (cs != TE_ETRANSPORT)
                return cs;
            if (!absent && absent_words(last)) {
                absent = 1;
                gpr_timespec g = gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC),
                                              gpr_time_from_millis(TE_NET_UNREACHABLE_MS, GPR_TIMESPAN));
                if (gpr_time_cmp(g, until) < 0)
                    until = g;
            }
        }
        grpc_channel_watch_connectivity_state(ch->channel, st, until, cq, ch);
        grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        if (ev.type != GRPC_OP_COMPLETE || !ev.success)
            break; /* the deadline (or the grace) */
        st = grpc_channel_check_connectivity_state(ch->channel, 1);
    }
    if (st == GRPC_CHANNEL_READY)
        return TE_OK;
    if (last[0] && timeout_words(last))
        return te_errf(err, TE_ETRANSPORT, "%s: %s timed out after %d ms: no connection (%s)", ch->target, method,
                       timeout_ms, last);
    if (last[0])
        return te_errf(err, TE_ETRANSPORT, "%s unreachable: %s", ch->target, last);
    if (st == GRPC_CHANNEL_SHUTDOWN)
        return te_errf(err, TE_ETRANSPORT, "%s unreachable: the channel is shut down", ch->target);
    return te_errf(err, TE_ETRANSPORT,
                   "%s: %s timed out after %d ms: no connection (the host did not complete the TCP and TLS set-up)",
                   ch->target, method, timeout_ms);
}

struct te_net_stream {
    te_net_channel *ch;
    grpc_call *call;
    grpc_completion_queue *cq;
    grpc_metadata_array init_md, trailing_md;
    grpc_status_code status;
    grpc_slice details;
    int started;     /* initial metadata sent */
    int md_asked;    /* initial metadata requested (needed before any message is delivered) */
    int have_status;
    int unserved;    /* the host refused the last message unserved (overload) */
    int timeout_ms;
    char method[128];
};

/* Calls wait (within their deadline) for the channel to be connected, and
 * for a reconnect when the connection drops before the call is sent. */
#define TE_NET_MD_FLAGS GRPC_INITIAL_METADATA_WAIT_FOR_READY

static int cli_batch(te_net_stream *s, const grpc_op *ops, size_t n)
{
    if (grpc_call_start_batch(s->call, ops, n, s, NULL) != GRPC_CALL_OK)
        return 0;
    /* The call's deadline bounds every operation. */
    grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

/* The host's word that it never handed the message to its handler. */
static int said_not_served(const grpc_metadata_array *md)
{
    for (size_t i = 0; i < md->count; i++)
        if (grpc_slice_str_cmp(md->metadata[i].key, "te-not-served") == 0 &&
            grpc_slice_str_cmp(md->metadata[i].value, "1") == 0)
            return 1;
    return 0;
}

static te_status map_status(te_net_stream *s, te_err *err)
{
    char *d = grpc_slice_to_c_string(s->details);
    const char *det = d && *d ? d : "no details";
    const char *t = s->ch->target, *m = s->method;
    te_status st;
    s->unserved = (s->status == GRPC_STATUS_RESOURCE_EXHAUSTED || s->status == GRPC_STATUS_UNAVAILABLE) &&
                  said_not_served(&s->trailing_md);
    if (s->unserved) {
        st = te_errf(err, TE_ETRANSPORT, "%s busy: %s refused: %s", t, m, det);
        gpr_free(d);
        return st;
    }
    switch ((int)s->status) {
    case GRPC_STATUS_OK:
        st = TE_OK;
        break;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        st = te_errf(err, TE_ETRANSPORT, "%s: %s timed out after %d ms%s", t, m, s->timeout_ms,
                     grpc_channel_check_connectivity_state(s->ch->channel, 0) == GRPC_CHANNEL_READY
                         ? ""
                         : " (the connection was lost and not set up again)");
        break;
    case GRPC_STATUS_UNAVAILABLE:
        if (creds_words(det))
            st = creds_refused(s->ch, det, err);
        else
            st = te_errf(err, TE_ETRANSPORT, "%s unreachable: %s", t, det);
        break;
    case GRPC_STATUS_UNAUTHENTICATED:
    case GRPC_STATUS_PERMISSION_DENIED:
        st = te_errf(err, TE_EAUTH, "%s refused %s: %s", t, m, det);
        break;
    case GRPC_STATUS_INVALID_ARGUMENT:
    case GRPC_STATUS_RESOURCE_EXHAUSTED:
        st = te_errf(err, TE_EINVAL, "%s rejected %s: %s", t, m, det);
        break;
    case GRPC_STATUS_CANCELLED:
        st = te_errf(err, TE_ETRANSPORT, "%s: %s cancelled: %s", t, m, det);
        break;
    default:
        st = te_errf(err, TE_ESERVER, "%s: %s failed (gRPC status %d): %s", t, m, (int)s->status, det);
        break;
    }
    gpr_free(d);
    return st;
}

/* Read the call's final status (once) and turn it into a te_status. */
static te_status cli_status(te_net_stream *s, te_err *err)
{
    if (!s->have_status) {
        grpc_op op;
        memset(&op, 0, sizeof op);
        op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
        op.data.recv_status_on_client.trailing_metadata = &s->trailing_md;
        op.data.recv_status_on_client.status = &s->status;
        op.data.recv_status_on_client.status_details = &s->details;
        if (!cli_batch(s, &op, 1))
            return te_errf(err, TE_ETRANSPORT, "%s: %s: no status", s->ch->target, s->method);
        s->have_status = 1;
    }
    return map_status(s, err);
}

te_status te_net_stream_open(te_net_channel *ch, const char *method, int timeout_ms, te_net_stream **out,
                             te_err *err)
{
    *out = NULL;
    te_net_stream *s = calloc(1, sizeof *s);
    if (!s)
        return te_errf(err, TE_ENOMEM, "out of memory");
    s->ch = ch;
    s->timeout_ms = timeout_ms > 0 ? timeout_ms : 30000;
    snprintf(s->method, sizeof s->method, "%s", method);
    grpc_metadata_array_init(&s->init_md);
    grpc_metadata_array_init(&s->trailing_md);
    s->details = grpc_empty_slice();
    s->cq = grpc_completion_queue_create_for_next(NULL);
    gpr_timespec deadline = deadline_ms(s->timeout_ms);
    te_status st = wait_ready(ch, s->cq, deadline, s->timeout_ms, method, err);
    if (st != TE_OK) {
        te_net_stream_free(s);
        return st;
    }
    grpc_slice ms = grpc_slice_from_copied_string(method);
    s->call = grpc_channel_create_call(ch->channel, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, ms, NULL, deadline, NULL);
    grpc_slice_unref(ms);
    if (!s->call) {
        te_net_stream_free(s);
        return te_errf(err, TE_ETRANSPORT, "%s: cannot create a call to %s", ch->target, method);
    }
    *out = s;
    return TE_OK;
}

/* Send one message (plus initial metadata the first time); optionally
 * receive one.  recv NULL: send only. */
static te_status stream_step(te_net_stream *s, const uint8_t *req, size_t req_len, uint8_t **resp,
                             size_t *resp_len, int half_close, te_err *err)
{
    grpc_op ops[5];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    grpc_byte_buffer *out = req ? bb_from(req, req_len) : NULL, *in = NULL;
    if (!s->started) {
        ops[n].flags = TE_NET_MD_FLAGS;
        ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
    }
    if (out) {
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = out;
    }
    if (half_close)
        ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
    if (resp) {
        if (!s->md_asked) {
            ops[n].op = GRPC_OP_RECV_INITIAL_METADATA;
            ops[n++].data.recv_initial_metadata.recv_initial_metadata = &s->init_md;
            s->md_asked = 1;
        }
        ops[n].op = GRPC_OP_RECV_MESSAGE;
        ops[n++].data.recv_message.recv_message = &in;
    }
    int ok = cli_batch(s, ops, n);
    s->started = 1;
    if (out)
        grpc_byte_buffer_destroy(out);
    te_status st = TE_OK;
    if (resp) {
        if (ok && in) {
            if (!bb_to(in, resp, resp_len))
                st = te_errf(err, TE_ENOMEM, "out of memory");
        } else {
            st = cli_status(s, err);
            if (st == TE_OK)
                st = te_errf(err, TE_ETRANSPORT, "%s: %s ended without a response", s->ch->target, s->method);
        }
    } else if (!ok) {
        st = cli_status(s, err);
        if (st == TE_OK)
            st = te_errf(err, TE_ETRANSPORT, "%s: %s: sending failed", s->ch->target, s->method);
    }
    if (in)
        grpc_byte_buffer_destroy(in);
    return st;
}

te_status te_net_stream_exchange(te_net_stream *s, const uint8_t *req, size_t req_len, uint8_t **resp,
                                 size_t *resp_len, te_err *err)
{
    *resp = NULL;
    *resp_len = 0;
    if (s->have_status)
        return te_errf(err, TE_ETRANSPORT, "%s: %s: the stream has ended", s->ch->target, s->method);
    return stream_step(s, req, req_len, resp, resp_len, 0, err);
}

te_status te_net_stream_close(te_net_stream *s, te_err *err)
{
    if (!s->have_status) {
        grpc_op ops[3];
        memset(ops, 0, sizeof ops);
        size_t n = 0;
        if (!s->started) {
            ops[n].flags = TE_NET_MD_FLAGS;
            ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        }
        ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        s->started = s->started ? s->started : 1;
        cli_batch(s, ops, n);
    }
    return cli_status(s, err);
}

te_status te_net_stream_recv(te_net_stream *s, uint8_t **resp, size_t *resp_len, te_err *err)
{
    *resp = NULL;
    *resp_len = 0;
    if (s->have_status)
        return te_errf(err, TE_ETRANSPORT, "%s: %s: the stream has ended", s->ch->target, s->method);
    return stream_step(s, NULL, 0, resp, resp_len, 0, err);
}

int te_net_stream_unserved(const te_net_stream *s) { return s && s->unserved; }

void te_net_stream_free(te_net_stream *s)
{
    if (!s)
        return;
    if (s->call) {
        if (!s->have_status)
            grpc_call_cancel(s->call, NULL);
        grpc_call_unref(s->call);
    }
    cq_drain_destroy(s->cq);
    grpc_metadata_array_destroy(&s->init_md);
    grpc_metadata_array_destroy(&s->trailing_md);
    grpc_slice_unref(s->details);
    free(s);
}

/* One client-streaming call; *unserved: the host refused it unserved. */
static te_status client_stream_once(te_net_channel *ch, const char *method, const te_net_msg *msgs, size_t n,
                                    uint8_t **resp, size_t *resp_len, int timeout_ms, int *unserved, te_err *err)
{
    *resp = NULL;
    *resp_len = 0;
    *unserved = 0;
    te_net_stream *s = NULL;
    te_status st = te_net_stream_open(ch, method, timeout_ms, &s, err);
    for (size_t i = 0; st == TE_OK && i + 1 < n; i++)
        st = stream_step(s, msgs[i].data, msgs[i].len, NULL, NULL, 0, err);
    if (st == TE_OK)
        st = stream_step(s, n ? msgs[n - 1].data : NULL, n ? msgs[n - 1].len : 0, resp, resp_len, 1, err);
    if (st == TE_OK && (st = cli_status(s, err)) != TE_OK) {
        free(*resp);
        *resp = NULL;
        *resp_len = 0;
    }
    *unserved = te_net_stream_unserved(s);
    te_net_stream_free(s);
    return st;
}

int te_net_backoff_ms(int attempt, unsigned *seed)
{
    int cap = TE_NET_RETRY_FIRST_MS << (attempt < 6 ? attempt : 6);
    if (cap > TE_NET_RETRY_MAX_MS)
        cap = TE_NET_RETRY_MAX_MS;
    /* full jitter: refused clients must not come back in step */
    *seed = *seed * 1103515245u + 12345u;
    return cap / 2 + (int)((*seed >> 8) % (unsigned)(cap / 2 + 1));
}

unsigned te_net_backoff_seed(const void *p)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (unsigned)ts.tv_nsec ^ (unsigned)(uintptr_t)p ^ (unsigned)getpid() * 2654435761u;
}

te_status te_net_client_stream(te_net_channel *ch, const char *method, const te_net_msg *msgs, size_t n,
                               uint8_t **resp, size_t *resp_len, int timeout_ms, te_err *err)
{
    /* A call the host refused unserved goes again, the same bytes (sending a
     * message twice that was never served tells no host anything new), after
     * a randomised pause, within the call's deadline. */
    double until = now_ms() + (timeout_ms > 0 ? timeout_ms : 30000);
    unsigned seed = te_net_backoff_seed(ch);
    for (int attempt = 0;; attempt++) {
        int unserved = 0;
        int left = (int)(until - now_ms());
        te_status st = client_stream_once(ch, method, msgs, n, resp, resp_len, left > 1 ? left : 1, &unserved, err);
        if (st == TE_OK || !unserved)
            return st;
        int pause = te_net_backoff_ms(attempt, &seed);
        if (now_ms() + pause >= until)
            return te_err_wrap(err, "gave up after %d tries within %d ms", attempt + 1, timeout_ms);
        nanosleep(&(struct timespec){pause / 1000, (long)(pause % 1000) * 1000000L}, NULL);
    }
}

te_status te_net_unary(te_net_channel *ch, const char *method, const uint8_t *req, size_t req_len, uint8_t **resp,
                       size_t *resp_len, int timeout_ms, te_err *err)
{
    te_net_msg m = {req, req_len};
    return te_net_client_stream(ch, method, &m, 1, resp, resp_len, timeout_ms, err);
}
