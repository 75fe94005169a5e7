/* A small wrapper of the gRPC C core (completion queues) with mutual TLS,
 * for the twinedge service.
 *
 * Server: asynchronous.  One thread drives every call's state on one
 * completion queue (accepting calls, reading and writing messages), so an
 * open stream that waits on its client holds no thread; handlers run on a
 * pool of `workers` threads fed by a bounded queue, except methods marked
 * `inline`, cheap ones (health checks) run by the completion-queue thread
 * itself, never behind queued work.  Overload is answered, never left to
 * time out: a call beyond `max_calls` open calls, or a message that would
 * queue beyond `max_queue` messages or `max_queue_bytes` bytes, ends with
 * RESOURCE_EXHAUSTED and the trailing metadata "te-not-served: 1", which
 * says that the handler never saw the message.  Every caller must present
 * a certificate signed by the configured CA; handlers get the
 * certificate's common name.
 *
 * Client: a channel (thread-safe, one HTTP/2 connection reused by every
 * call) and blocking calls with a deadline, each on its own completion
 * queue, so any number of threads may call at once.  A call waits, within
 * its deadline, for the channel to connect (a busy host slow to finish the
 * TLS handshake, a host not up yet, a connection to set up again); only
 * refused credentials fail at once.  Unary and client-streaming calls that
 * a host refused unserved are sent again, the same bytes, after a growing
 * randomised pause, until their deadline; a stream reports it
 * (te_net_stream_unserved) and its user decides.
 *
 * Messages are opaque bytes (serialized protobuf).  Errors come back as
 * te_status, each message naming the host and what happened:
 *   TE_ETRANSPORT  "HOST unreachable: ..." (nothing listening, connection
 *                  refused or closed, DNS), "HOST: METHOD timed out after N
 *                  ms" (the deadline passed, connected or not), "HOST busy:
 *                  ..." (refused unserved, overload), a broken or
 *                  cancelled call;
 *   TE_EAUTH       "HOST: TLS credentials refused: ..." (the host did not
 *                  accept our certificate, or its certificate failed our
 *                  check), or the server said UNAUTHENTICATED /
 *                  PERMISSION_DENIED;
 *   TE_EINVAL      INVALID_ARGUMENT, message too large;
 *   TE_ESERVER     otherwise. */
#ifndef TE_NET_H
#define TE_NET_H

#include <stddef.h>
#include <stdint.h>

#include "te_error.h"

/* gRPC status codes used by handlers (same values as grpc_status_code). */
enum {
    TE_NET_OK = 0,
    TE_NET_CANCELLED = 1,
    TE_NET_UNKNOWN = 2,
    TE_NET_INVALID_ARGUMENT = 3,
    TE_NET_DEADLINE_EXCEEDED = 4,
    TE_NET_NOT_FOUND = 5,
    TE_NET_FAILED_PRECONDITION = 9,
    TE_NET_PERMISSION_DENIED = 7,
    TE_NET_RESOURCE_EXHAUSTED = 8,
    TE_NET_UNIMPLEMENTED = 12,
    TE_NET_INTERNAL = 13,
    TE_NET_UNAVAILABLE = 14,
    TE_NET_UNAUTHENTICATED = 16
};

#define TE_NET_DEFAULT_MAX_MESSAGE (64u << 20)

/* PEM credentials: the CA that signs every party, and this party's own
 * certificate and key (cert/key may be NULL for a client without one). */
typedef struct te_net_creds {
    char *ca_pem;
    char *cert_pem;
    char *key_pem;
} te_net_creds;

/* Load dir/ca.pem, dir/cert.pem, dir/key.pem (cert and key: when present). */
te_status te_net_creds_load(const char *dir, te_net_creds *c, te_err *err);
void te_net_creds_free(te_net_creds *c);

/* ---- server ---- */

typedef enum te_net_kind {
    TE_NET_UNARY = 1,          /* one request, one response */
    TE_NET_CLIENT_STREAM = 2,  /* requests until half-close, one response */
    TE_NET_BIDI = 3,           /* one response per request, until half-close */
    /* one request, then responses while the call lasts: the handler runs
     * for the request and again every TE_NET_WATCH_MS, and its response is
     * sent whenever it differs from the last one sent (a poll, as for
     * grpc.health.v1.Health/Watch); the call ends when the client cancels,
     * the handler answers an error, or the server stops (UNAVAILABLE).
     * Must be inline. */
    TE_NET_SERVER_STREAM = 4
} te_net_kind;

#define TE_NET_WATCH_MS 500

typedef struct te_net_msg {
    const uint8_t *data;
    size_t len;
} te_net_msg;

/* What a handler answers.  data: malloc'd response message (taken over by
 * the server), sent when code == TE_NET_OK; msg: status details. */
typedef struct te_net_reply {
    uint8_t *data;
    size_t len;
    int code;
    char msg[TE_ERR_MSG_MAX + 128];
} te_net_reply;

/* Called from a worker thread (several at once), or from the
 * completion-queue thread for an inline method.  peer: the caller's
 * certificate common name.  Unary: one message; client-streaming: all of
 * them; bidi: once per request (a non-OK code ends the stream). */
typedef void (*te_net_handler)(void *ctx, const char *peer, const te_net_msg *msgs, size_t n_msgs,
                               te_net_reply *reply);

typedef struct te_net_method {
    const char *path;          /* "/package.Service/Method" */
    te_net_kind kind;
    te_net_handler fn;
    void *ctx;
    /* 1: run on the completion-queue thread as soon as the message is in,
     * never queued behind other calls (health checks, figures); the
     * handler must be quick and must not block */
    int inline_call;
    /* Optional, bidi: called once when a stream is over, whatever its
     * outcome, after its status went out (peer as for fn).  On a gRPC
     * thread: it must be quick and must not block. */
    void (*ended)(void *ctx, const char *peer);
} te_net_method;

/* Optional: one line per finished call (for logs). */
typedef void (*te_net_call_log)(void *ctx, const char *method, const char *peer, int code, const char *msg,
                                double ms);

typedef struct te_net_server_config {
    const char *listen;               /* "HOST:PORT"; port 0 picks a free one */
    const te_net_creds *creds;        /* cert + key required */
    const te_net_method *methods;     /* copied */
    int n_methods;
    int workers;                      /* handler threads; 0: 8 */
    size_t max_message;               /* 0: TE_NET_DEFAULT_MAX_MESSAGE */
    size_t max_stream_bytes;          /* client-streaming total; 0: 1 GiB */
    int idle_timeout_ms;              /* a call waiting longer on its client is cancelled; 0: 120 s */
    te_net_call_log log;
    void *log_ctx;
    int max_calls;                    /* calls open at once; 0: 10000 */
    int max_queue;                    /* messages waiting for a worker; 0: 4096 */
    size_t max_queue_bytes;           /* their bytes; 0: 512 MiB */
} te_net_server_config;

/* What the server has done since it started, for figures and tests. */
typedef struct te_net_server_figures {
    uint64_t calls;       /* accepted */
    uint64_t refused;     /* ended unserved with RESOURCE_EXHAUSTED (overload) */
    int open_calls;       /* now */
    int open_streams;     /* of them, bidi streams (inferences in progress) */
    int queued;           /* messages waiting for a worker now */
} te_net_server_figures;

typedef struct te_net_server te_net_server;

te_status te_net_server_start(const te_net_server_config *cfg, te_net_server **s, te_err *err);
int te_net_server_port(const te_net_server *s);
void te_net_server_figures_get(te_net_server *s, te_net_server_figures *f);
/* Stop accepting calls, let the calls in flight finish for up to grace_ms,
 * cancel the rest, join the workers and free everything.  NULL is fine. */
void te_net_server_stop(te_net_server *s, int grace_ms);

/* ---- client ---- */

typedef struct te_net_channel_config {
    /* "HOST:PORT"; replicas: "ipv4:H:P,H:P,..." (or "dns:///NAME:PORT" with
     * several addresses): calls are spread round robin over them */
    const char *target;
    const te_net_creds *creds;    /* ca required; cert/key: the client certificate */
    const char *server_name;      /* expected name in the server's certificate; NULL: from target */
    size_t max_message;           /* 0: TE_NET_DEFAULT_MAX_MESSAGE */
} te_net_channel_config;

typedef struct te_net_channel te_net_channel;

te_status te_net_channel_new(const te_net_channel_config *cfg, te_net_channel **ch, te_err *err);
void te_net_channel_free(te_net_channel *ch);

/* gRPC finishes releasing a freed channel or server on its own threads (a
 * connection attempt or TLS handshake in flight, a reconnect timer).  A
 * program that exits before then races those threads against OpenSSL's and
 * the C library's exit handlers: a crash or a hang at exit.  te_net_in_use:
 * whether anyone in the process holds gRPC now.  te_net_quiesce: wait, at
 * most timeout_ms, until nobody does (1: released). */
int te_net_in_use(void);
int te_net_quiesce(int timeout_ms);
#define TE_NET_QUIESCE_MS 3000 /* what the tools and twinedge_disconnect wait at most */
const char *te_net_channel_target(const te_net_channel *ch);

/* Unary call; *resp malloc'd.  timeout_ms > 0. */
te_status te_net_unary(te_net_channel *ch, const char *method, const uint8_t *req, size_t req_len, uint8_t **resp,
                       size_t *resp_len, int timeout_ms, te_err *err);

/* Client-streaming call: send n messages, receive one response. */
te_status te_net_client_stream(te_net_channel *ch, const char *method, const te_net_msg *msgs, size_t n,
                               uint8_t **resp, size_t *resp_len, int timeout_ms, te_err *err);

/* Bidi stream: open with a deadline for the whole stream, exchange
 * request/response pairs, then close (half-close and read the status). */
typedef struct te_net_stream te_net_stream;
te_status te_net_stream_open(te_net_channel *ch, const char *method, int timeout_ms, te_net_stream **s,
                             te_err *err);
te_status te_net_stream_exchange(te_net_stream *s, const uint8_t *req, size_t req_len, uint8_t **resp,
                                 size_t *resp_len, te_err *err);
te_status te_net_stream_close(te_net_stream *s, te_err *err);
/* 1 when the stream ended because the host refused it before its handler
 * saw the last message sent (overload: "te-not-served"), so sending the
 * same message again on a new stream is safe. */
int te_net_stream_unserved(const te_net_stream *s);
/* Receive the next message of a server-streaming call (after the request
 * was sent with te_net_stream_exchange). */
te_status te_net_stream_recv(te_net_stream *s, uint8_t **resp, size_t *resp_len, te_err *err);
/* Cancels the stream if it was not closed; NULL is fine. */
void te_net_stream_free(te_net_stream *s);

/* Pause before try attempt + 1 of a call refused unserved: grows from
 * TE_NET_RETRY_FIRST_MS to TE_NET_RETRY_MAX_MS, randomised (full jitter,
 * from *seed) so that refused clients do not come back together. */
#define TE_NET_RETRY_FIRST_MS 20
#define TE_NET_RETRY_MAX_MS 1000
int te_net_backoff_ms(int attempt, unsigned *seed);
unsigned te_net_backoff_seed(const void *p);

#endif
