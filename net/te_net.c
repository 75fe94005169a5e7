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

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

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

/* Flatten a received message into malloc'd bytes; 0 on failure. */
static int bb_to(grpc_byte_buffer *b, uint8_t **out, size_t *len)
{
    grpc_byte_buffer_reader r;
    *out = NULL;
    *len = 0;
    if (!grpc_byte_buffer_reader_init(&r, b))
        return 0;
    grpc_slice s = grpc_byte_buffer_reader_readall(&r);
    grpc_byte_buffer_reader_destroy(&r);
    size_t n = GRPC_SLICE_LENGTH(s);
    *out = malloc(n ? n : 1);
    if (*out) {
        memcpy(*out, GRPC_SLICE_START_PTR(s), n);
        *len = n;
    }
    grpc_slice_unref(s);
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

/* ---- server ---- */

typedef struct worker {
    struct te_net_server *s;
    pthread_t thread;
    int started;
    grpc_completion_queue *cq;
} worker;

struct te_net_server {
    grpc_server *server;
    grpc_completion_queue *shutdown_cq;
    te_net_method *methods;
    int n_methods;
    worker *workers;
    int n_workers;
    size_t max_stream;
    int idle_ms;
    int port;
    te_net_call_log log;
    void *log_ctx;
};

/* One operation batch on a worker's queue; 1 on success.  A client that
 * keeps the worker waiting longer than idle_ms gets its call cancelled. */
static int srv_batch(worker *w, grpc_call *call, const grpc_op *ops, size_t n)
{
    if (grpc_call_start_batch(call, ops, n, w, NULL) != GRPC_CALL_OK)
        return 0;
    grpc_event ev = grpc_completion_queue_next(w->cq, deadline_ms(w->s->idle_ms), NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) {
        grpc_call_cancel(call, NULL);
        grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
        return 0;
    }
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

/* Receive the next message; 1 with *got = 0 at the end of the stream. */
static int srv_recv(worker *w, grpc_call *call, uint8_t **data, size_t *len, int *got)
{
    grpc_byte_buffer *bb = NULL;
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &bb;
    *got = 0;
    if (!srv_batch(w, call, &op, 1)) {
        if (bb)
            grpc_byte_buffer_destroy(bb);
        return 0;
    }
    if (!bb)
        return 1;
    int ok = bb_to(bb, data, len);
    grpc_byte_buffer_destroy(bb);
    *got = ok;
    return ok;
}

static int srv_send(worker *w, grpc_call *call, const uint8_t *data, size_t len)
{
    grpc_byte_buffer *bb = bb_from(data, len);
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_MESSAGE;
    op.data.send_message.send_message = bb;
    int ok = srv_batch(w, call, &op, 1);
    grpc_byte_buffer_destroy(bb);
    return ok;
}

/* Final status (and, for unary / client-streaming, the response). */
static void srv_finish(worker *w, grpc_call *call, int code, const char *msg, const uint8_t *data, size_t len,
                       int with_message)
{
    grpc_op ops[3];
    memset(ops, 0, sizeof ops);
    size_t n = 0;
    grpc_byte_buffer *bb = NULL;
    int cancelled = 0;
    grpc_slice details = grpc_slice_from_copied_string(msg ? msg : "");
    if (with_message && code == TE_NET_OK) {
        bb = bb_from(data, len);
        ops[n].op = GRPC_OP_SEND_MESSAGE;
        ops[n++].data.send_message.send_message = bb;
    }
    ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
    ops[n].data.send_status_from_server.status = (grpc_status_code)code;
    ops[n++].data.send_status_from_server.status_details = msg && *msg ? &details : NULL;
    ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
    ops[n++].data.recv_close_on_server.cancelled = &cancelled;
    srv_batch(w, call, ops, n);
    grpc_slice_unref(details);
    if (bb)
        grpc_byte_buffer_destroy(bb);
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

typedef struct msg_list {
    te_net_msg *v;
    uint8_t **owned;
    size_t n, cap, bytes;
} msg_list;

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

static void reply_set(te_net_reply *r, int code, const char *msg)
{
    r->code = code;
    snprintf(r->msg, sizeof r->msg, "%s", msg);
}

static void serve_call(worker *w, grpc_call *call, const grpc_call_details *details)
{
    te_net_server *s = w->s;
    double t0 = now_ms();
    char method[256] = "?", peer[256];
    char *m = grpc_slice_to_c_string(details->method);
    snprintf(method, sizeof method, "%s", m);
    gpr_free(m);
    peer_name(call, peer, sizeof peer);

    const te_net_method *md = NULL;
    for (int i = 0; i < s->n_methods; i++)
        if (strcmp(s->methods[i].path, method) == 0)
            md = &s->methods[i];

    te_net_reply rep;
    memset(&rep, 0, sizeof rep);
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_SEND_INITIAL_METADATA;
    if (!srv_batch(w, call, &op, 1)) {
        reply_set(&rep, TE_NET_CANCELLED, "call ended before it started");
        goto log;
    }
    if (!md) {
        reply_set(&rep, TE_NET_UNIMPLEMENTED, "unknown method");
        srv_finish(w, call, rep.code, "unknown method", NULL, 0, 0);
        goto log;
    }
    if (!peer[0]) {
        reply_set(&rep, TE_NET_UNAUTHENTICATED, "no authenticated client certificate");
        srv_finish(w, call, rep.code, rep.msg, NULL, 0, 0);
        goto log;
    }

    uint8_t *data = NULL;
    size_t len = 0;
    int got = 0;
    if (md->kind == TE_NET_BIDI) {
        uint64_t n = 0;
        for (;;) {
            if (!srv_recv(w, call, &data, &len, &got)) {
                reply_set(&rep, TE_NET_CANCELLED, "stream broken or cancelled by the client");
                break;
            }
            if (!got) {
                srv_finish(w, call, TE_NET_OK, NULL, NULL, 0, 0);
                break;
            }
            te_net_msg msg = {data, len};
            memset(&rep, 0, sizeof rep);
            md->fn(md->ctx, peer, &msg, 1, &rep);
            free(data);
            data = NULL;
            n++;
            if (rep.code != TE_NET_OK) {
                free(rep.data);
                rep.data = NULL;
                srv_finish(w, call, rep.code, rep.msg, NULL, 0, 0);
                break;
            }
            int ok = srv_send(w, call, rep.data ? rep.data : (const uint8_t *)"", rep.data ? rep.len : 0);
            free(rep.data);
            rep.data = NULL;
            if (!ok) {
                reply_set(&rep, TE_NET_CANCELLED, "stream broken or cancelled by the client");
                break;
            }
        }
        if (rep.code == TE_NET_OK)
            snprintf(rep.msg, sizeof rep.msg, "%llu messages", (unsigned long long)n);
    } else {
        msg_list l;
        memset(&l, 0, sizeof l);
        int ok = 1, too_big = 0;
        for (;;) {
            if (!srv_recv(w, call, &data, &len, &got)) {
                ok = 0;
                break;
            }
            if (!got)
                break;
            if (l.bytes + len > s->max_stream) {
                free(data);
                too_big = 1;
                break;
            }
            if (!msg_list_push(&l, data, len)) {
                free(data);
                ok = 0;
                break;
            }
            if (md->kind == TE_NET_UNARY)
                break;
        }
        if (!ok) {
            reply_set(&rep, TE_NET_CANCELLED, "stream broken or cancelled by the client");
        } else if (too_big) {
            reply_set(&rep, TE_NET_RESOURCE_EXHAUSTED, "stream larger than the server accepts");
            srv_finish(w, call, rep.code, rep.msg, NULL, 0, 0);
        } else if (md->kind == TE_NET_UNARY && l.n != 1) {
            reply_set(&rep, TE_NET_INVALID_ARGUMENT, "unary call without a request message");
            srv_finish(w, call, rep.code, rep.msg, NULL, 0, 0);
        } else {
            md->fn(md->ctx, peer, l.v, l.n, &rep);
            srv_finish(w, call, rep.code, rep.msg, rep.data ? rep.data : (const uint8_t *)"",
                       rep.data ? rep.len : 0, 1);
            free(rep.data);
            rep.data = NULL;
        }
        msg_list_free(&l);
    }
log:
    if (s->log)
        s->log(s->log_ctx, method, peer[0] ? peer : "(unauthenticated)", rep.code, rep.msg, now_ms() - t0);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    for (;;) {
        grpc_call *call = NULL;
        grpc_call_details details;
        grpc_metadata_array md;
        grpc_call_details_init(&details);
        grpc_metadata_array_init(&md);
        int ok = grpc_server_request_call(w->s->server, &call, &details, &md, w->cq, w->cq, w) == GRPC_CALL_OK;
        if (ok) {
            grpc_event ev = grpc_completion_queue_next(w->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
            ok = ev.type == GRPC_OP_COMPLETE && ev.success;
        }
        if (ok)
            serve_call(w, call, &details);
        if (call)
            grpc_call_unref(call);
        grpc_call_details_destroy(&details);
        grpc_metadata_array_destroy(&md);
        if (!ok)
            break; /* the server is shutting down */
    }
    return NULL;
}

static void server_free(te_net_server *s)
{
    if (s->server)
        grpc_server_destroy(s->server);
    for (int i = 0; i < s->n_workers; i++)
        cq_drain_destroy(s->workers[i].cq);
    cq_drain_destroy(s->shutdown_cq);
    free(s->workers);
    for (int i = 0; i < s->n_methods; i++)
        free((char *)s->methods[i].path);
    free(s->methods);
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
    s->n_workers = cfg->workers > 0 ? cfg->workers : TE_NET_DEFAULT_WORKERS;
    s->max_stream = cfg->max_stream_bytes ? cfg->max_stream_bytes : TE_NET_DEFAULT_STREAM_MAX;
    s->idle_ms = cfg->idle_timeout_ms > 0 ? cfg->idle_timeout_ms : TE_NET_DEFAULT_IDLE_MS;
    s->log = cfg->log;
    s->log_ctx = cfg->log_ctx;
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
    s->shutdown_cq = grpc_completion_queue_create_for_next(NULL);
    grpc_server_register_completion_queue(s->server, s->shutdown_cq, NULL);
    for (int i = 0; i < s->n_workers; i++) {
        s->workers[i].s = s;
        s->workers[i].cq = grpc_completion_queue_create_for_next(NULL);
        grpc_server_register_completion_queue(s->server, s->workers[i].cq, NULL);
    }
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
    for (int i = 0; i < s->n_workers; i++) {
        if (pthread_create(&s->workers[i].thread, NULL, worker_main, &s->workers[i]) != 0) {
            te_net_server_stop(s, 0);
            return te_errf(err, TE_ENOMEM, "cannot start server threads");
        }
        s->workers[i].started = 1;
    }
    *out = s;
    return TE_OK;
}

int te_net_server_port(const te_net_server *s) { return s->port; }

void te_net_server_stop(te_net_server *s, int grace_ms)
{
    if (!s)
        return;
    grpc_server_shutdown_and_notify(s->server, s->shutdown_cq, s);
    grpc_event ev = grpc_completion_queue_next(s->shutdown_cq, deadline_ms(grace_ms > 0 ? grace_ms : 0), NULL);
    if (ev.type == GRPC_QUEUE_TIMEOUT) {
        grpc_server_cancel_all_calls(s->server);
        grpc_completion_queue_next(s->shutdown_cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    }
    for (int i = 0; i < s->n_workers; i++)
        if (s->workers[i].started)
            pthread_join(s->workers[i].thread, NULL);
    server_free(s);
}

/* ---- client ---- */

struct te_net_channel {
    grpc_channel *channel;
    char target[1024];
    uint32_t md_flags;       /* replicas: wait for one to be ready (within the deadline) */
};

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
    grpc_init();
    grpc_ssl_pem_key_cert_pair pair = {cfg->creds->key_pem, cfg->creds->cert_pem};
    grpc_channel_credentials *cc =
        grpc_ssl_credentials_create(cfg->creds->ca_pem, cfg->creds->cert_pem ? &pair : NULL, NULL, NULL);
    if (!cc) {
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
    /* A restarted host should be reachable again within a second. */
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
    args[n++].value.integer = 100;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_MIN_RECONNECT_BACKOFF_MS;
    args[n++].value.integer = 100;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
    args[n++].value.integer = 1000;
    args[n].type = GRPC_ARG_INTEGER;
    args[n].key = (char *)GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL;
    args[n++].value.integer = 1;
    /* Several replicas ("ipv4:h:p,h:p" or a DNS name with several
     * addresses): spread the calls over all of them, not just the first. */
    /* Calls wait (within their deadline) for a replica to be connected:
     * round robin fails a call at once while every replica is still in its
     * first connection attempt, as happens when many clients start. */
    if (strchr(cfg->target, ',') || strncmp(cfg->target, "dns:", 4) == 0) {
        ch->md_flags = GRPC_INITIAL_METADATA_WAIT_FOR_READY;
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
        free(ch);
        grpc_shutdown();
        return te_errf(err, TE_ETRANSPORT, "cannot create a channel to %s", cfg->target);
    }
    *out = ch;
    return TE_OK;
}

void te_net_channel_free(te_net_channel *ch)
{
    if (!ch)
        return;
    grpc_channel_destroy(ch->channel);
    free(ch);
    grpc_shutdown();
}

const char *te_net_channel_target(const te_net_channel *ch) { return ch->target; }

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
    int timeout_ms;
    char method[128];
};

static int cli_batch(te_net_stream *s, const grpc_op *ops, size_t n)
{
    if (grpc_call_start_batch(s->call, ops, n, s, NULL) != GRPC_CALL_OK)
        return 0;
    /* The call's deadline bounds every operation. */
    grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    return ev.type == GRPC_OP_COMPLETE && ev.success;
}

static te_status map_status(te_net_stream *s, te_err *err)
{
    char *d = grpc_slice_to_c_string(s->details);
    const char *det = d && *d ? d : "no details";
    const char *t = s->ch->target, *m = s->method;
    te_status st;
    switch ((int)s->status) {
    case GRPC_STATUS_OK:
        st = TE_OK;
        break;
    case GRPC_STATUS_DEADLINE_EXCEEDED:
        st = te_errf(err, TE_ETRANSPORT, "%s: %s timed out after %d ms", t, m, s->timeout_ms);
        break;
    case GRPC_STATUS_UNAVAILABLE:
        /* With TLS 1.3 the client's handshake is over before the server
         * checks the client certificate: a refused certificate shows as a
         * connection attempt that the server closed. */
        if (strstr(det, "andshake") || strstr(det, "SSL") || strstr(det, "ssl") || strstr(det, "certificate") ||
            strstr(det, "TLS") || strstr(det, "ALERT") ||
            (strstr(det, "failed to connect") && strstr(det, "Socket closed")))
            st = te_errf(err, TE_EAUTH, "%s: TLS credentials refused (%s)", t, det);
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
    grpc_slice ms = grpc_slice_from_copied_string(method);
    s->call = grpc_channel_create_call(ch->channel, NULL, GRPC_PROPAGATE_DEFAULTS, s->cq, ms, NULL,
                                       deadline_ms(s->timeout_ms), NULL);
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
        ops[n].flags = s->ch->md_flags;
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
            ops[n].flags = s->ch->md_flags;
            ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
        }
        ops[n++].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
        s->started = s->started ? s->started : 1;
        cli_batch(s, ops, n);
    }
    return cli_status(s, err);
}

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

te_status te_net_client_stream(te_net_channel *ch, const char *method, const te_net_msg *msgs, size_t n,
                               uint8_t **resp, size_t *resp_len, int timeout_ms, te_err *err)
{
    *resp = NULL;
    *resp_len = 0;
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
    te_net_stream_free(s);
    return st;
}

te_status te_net_unary(te_net_channel *ch, const char *method, const uint8_t *req, size_t req_len, uint8_t **resp,
                       size_t *resp_len, int timeout_ms, te_err *err)
{
    te_net_msg m = {req, req_len};
    return te_net_client_stream(ch, method, &m, 1, resp, resp_len, timeout_ms, err);
}
