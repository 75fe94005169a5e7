/* The gRPC wrapper and the CA: mutual TLS over loopback with certificates
 * from owner/pki.c; unary, client-streaming and bidi calls; peer identity;
 * refused credentials, unreachable hosts and timeouts told apart; calls that
 * wait for a slow or late host; size limits. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "pki.h"
#include "te_net.h"

typedef struct env {
    char dir[256], ca[300], srv[300], cli[300], rogue_ca[300], rogue[300], anon[300], trusts_rogue[300];
    te_net_creds srv_creds, cli_creds;
    te_net_server *server, *late;
    char target[64], late_target[64];
} env;

/* "peer|payload reversed" */
static void echo_fn(void *ctx, const char *peer, const te_net_msg *msgs, size_t n, te_net_reply *r)
{
    (void)ctx;
    size_t total = strlen(peer) + 1;
    for (size_t i = 0; i < n; i++)
        total += msgs[i].len;
    r->data = malloc(total);
    memcpy(r->data, peer, strlen(peer));
    size_t off = strlen(peer);
    r->data[off++] = '|';
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < msgs[i].len; j++)
            r->data[off++] = msgs[i].data[msgs[i].len - 1 - j];
    r->len = off;
    if (n == 1 && msgs[0].len == 4 && memcmp(msgs[0].data, "fail", 4) == 0) {
        free(r->data);
        r->data = NULL;
        r->code = TE_NET_PERMISSION_DENIED;
        snprintf(r->msg, sizeof r->msg, "no fail for %s", peer);
    }
    if (n == 1 && msgs[0].len == 5 && memcmp(msgs[0].data, "sleep", 5) == 0)
        usleep(700 * 1000);
}

static void run(const char *cmd_dir)
{
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf %s", cmd_dir);
    assert_int_equal(system(cmd), 0);
}

static int setup(void **state)
{
    env *e = calloc(1, sizeof *e);
    te_err err;
    snprintf(e->dir, sizeof e->dir, "/tmp/te-net-XXXXXX");
    assert_non_null(mkdtemp(e->dir));
    snprintf(e->ca, sizeof e->ca, "%s/ca", e->dir);
    snprintf(e->srv, sizeof e->srv, "%s/srv", e->dir);
    snprintf(e->cli, sizeof e->cli, "%s/cli", e->dir);
    snprintf(e->rogue_ca, sizeof e->rogue_ca, "%s/rogue-ca", e->dir);
    snprintf(e->rogue, sizeof e->rogue, "%s/rogue", e->dir);
    snprintf(e->anon, sizeof e->anon, "%s/anon", e->dir);
    snprintf(e->trusts_rogue, sizeof e->trusts_rogue, "%s/trusts-rogue", e->dir);
    if (te_pki_init_ca(e->ca, &err) != TE_OK || te_pki_issue(e->ca, "edge-b", 1, e->srv, &err) != TE_OK ||
        te_pki_issue(e->ca, "device:d1", 0, e->cli, &err) != TE_OK || te_pki_init_ca(e->rogue_ca, &err) != TE_OK ||
        te_pki_issue(e->rogue_ca, "owner", 0, e->rogue, &err) != TE_OK ||
        te_pki_issue(e->ca, "anon", 0, e->anon, &err) != TE_OK)
        fail_msg("pki: %s", err.msg);
    /* a second CA refuses to overwrite */
    assert_int_equal(te_pki_init_ca(e->ca, &err), TE_EINVAL);
    /* the anonymous client keeps only the CA */
    char p[400];
    snprintf(p, sizeof p, "%s/cert.pem", e->anon);
    unlink(p);
    snprintf(p, sizeof p, "%s/key.pem", e->anon);
    unlink(p);
    /* the rogue client trusts the real CA but its certificate is the rogue's */
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "cp %s/ca.pem %s/ca.pem", e->ca, e->rogue);
    assert_int_equal(system(cmd), 0);
    /* a client with a good certificate that trusts the rogue CA only */
    snprintf(cmd, sizeof cmd, "mkdir -p %s && cp %s/ca.pem %s/ && cp %s/cert.pem %s/key.pem %s/", e->trusts_rogue,
             e->rogue_ca, e->trusts_rogue, e->cli, e->cli, e->trusts_rogue);
    assert_int_equal(system(cmd), 0);

    if (te_net_creds_load(e->srv, &e->srv_creds, &err) != TE_OK ||
        te_net_creds_load(e->cli, &e->cli_creds, &err) != TE_OK)
        fail_msg("creds: %s", err.msg);
    te_net_method methods[] = {{"/t.S/Unary", TE_NET_UNARY, echo_fn, NULL, 0, NULL},
                               {"/t.S/Up", TE_NET_CLIENT_STREAM, echo_fn, NULL, 0, NULL},
                               {"/t.S/Bidi", TE_NET_BIDI, echo_fn, NULL, 0, NULL}};
    te_net_server_config sc = {"127.0.0.1:0", &e->srv_creds, methods, 3, 4, 1 << 16, 1 << 20, 0, NULL, NULL, 0, 0, 0};
    if (te_net_server_start(&sc, &e->server, &err) != TE_OK)
        fail_msg("server: %s", err.msg);
    assert_true(te_net_server_port(e->server) > 0);
    snprintf(e->target, sizeof e->target, "127.0.0.1:%d", te_net_server_port(e->server));
    *state = e;
    return 0;
}

static int teardown(void **state)
{
    env *e = *state;
    te_net_server_stop(e->server, 1000);
    te_net_creds_free(&e->srv_creds);
    te_net_creds_free(&e->cli_creds);
    run(e->dir);
    free(e);
    return 0;
}

static te_net_channel *channel(env *e, const te_net_creds *c, const char *name)
{
    te_net_channel *ch = NULL;
    te_err err;
    te_net_channel_config cc = {e->target, c, name, 0};
    if (te_net_channel_new(&cc, &ch, &err) != TE_OK)
        fail_msg("channel: %s", err.msg);
    return ch;
}

static void test_unary_and_identity(void **state)
{
    env *e = *state;
    te_net_channel *ch = channel(e, &e->cli_creds, "edge-b");
    uint8_t *resp = NULL;
    size_t len = 0;
    te_err err;
    te_status st = te_net_unary(ch, "/t.S/Unary", (const uint8_t *)"abc", 3, &resp, &len, 5000, &err);
    if (st != TE_OK)
        fail_msg("unary: %s", err.msg);
    assert_int_equal(len, strlen("device:d1|cba"));
    assert_memory_equal(resp, "device:d1|cba", len);
    free(resp);
    /* an empty message is a message */
    st = te_net_unary(ch, "/t.S/Unary", (const uint8_t *)"", 0, &resp, &len, 5000, &err);
    assert_int_equal(st, TE_OK);
    assert_int_equal(len, strlen("device:d1|"));
    free(resp);
    /* a handler's status reaches the client */
    st = te_net_unary(ch, "/t.S/Unary", (const uint8_t *)"fail", 4, &resp, &len, 5000, &err);
    assert_int_equal(st, TE_EAUTH);
    assert_non_null(strstr(err.msg, "no fail for device:d1"));
    assert_null(resp);
    /* unknown method */
    st = te_net_unary(ch, "/t.S/Nope", (const uint8_t *)"x", 1, &resp, &len, 5000, &err);
    assert_int_equal(st, TE_ESERVER);
    te_net_channel_free(ch);
}

static void test_streams(void **state)
{
    env *e = *state;
    te_net_channel *ch = channel(e, &e->cli_creds, NULL);
    te_err err;
    uint8_t *resp = NULL;
    size_t len = 0;
    te_net_msg msgs[3] = {{(const uint8_t *)"ab", 2}, {(const uint8_t *)"cd", 2}, {(const uint8_t *)"e", 1}};
    te_status st = te_net_client_stream(ch, "/t.S/Up", msgs, 3, &resp, &len, 5000, &err);
    if (st != TE_OK)
        fail_msg("client stream: %s", err.msg);
    assert_int_equal(len, strlen("device:d1|badce"));
    assert_memory_equal(resp, "device:d1|badce", len);
    free(resp);

    te_net_stream *s = NULL;
    assert_int_equal(te_net_stream_open(ch, "/t.S/Bidi", 5000, &s, &err), TE_OK);
    for (int i = 0; i < 5; i++) {
        char msg[16];
        snprintf(msg, sizeof msg, "m%d", i);
        st = te_net_stream_exchange(s, (const uint8_t *)msg, strlen(msg), &resp, &len, &err);
        if (st != TE_OK)
            fail_msg("exchange %d: %s", i, err.msg);
        char want[32];
        snprintf(want, sizeof want, "device:d1|%dm", i);
        assert_int_equal(len, strlen(want));
        assert_memory_equal(resp, want, len);
        free(resp);
    }
    assert_int_equal(te_net_stream_close(s, &err), TE_OK);
    te_net_stream_free(s);

    /* an error status ends the stream */
    assert_int_equal(te_net_stream_open(ch, "/t.S/Bidi", 5000, &s, &err), TE_OK);
    assert_int_equal(te_net_stream_exchange(s, (const uint8_t *)"ok", 2, &resp, &len, &err), TE_OK);
    free(resp);
    assert_int_equal(te_net_stream_exchange(s, (const uint8_t *)"fail", 4, &resp, &len, &err), TE_EAUTH);
    assert_null(resp);
    assert_int_not_equal(te_net_stream_exchange(s, (const uint8_t *)"ok", 2, &resp, &len, &err), TE_OK);
    te_net_stream_free(s);
    /* a stream dropped without closing is cancelled; the server goes on */
    assert_int_equal(te_net_stream_open(ch, "/t.S/Bidi", 5000, &s, &err), TE_OK);
    assert_int_equal(te_net_stream_exchange(s, (const uint8_t *)"x", 1, &resp, &len, &err), TE_OK);
    free(resp);
    te_net_stream_free(s);
    assert_int_equal(te_net_unary(ch, "/t.S/Unary", (const uint8_t *)"z", 1, &resp, &len, 5000, &err), TE_OK);
    free(resp);
    te_net_channel_free(ch);
}

static void test_refused_credentials(void **state)
{
    env *e = *state;
    te_err err;
    uint8_t *resp = NULL;
    size_t len = 0;
    const char *dirs[2] = {e->rogue, e->anon};
    for (int i = 0; i < 2; i++) {
        te_net_creds c;
        assert_int_equal(te_net_creds_load(dirs[i], &c, &err), TE_OK);
        te_net_channel *ch = channel(e, &c, NULL);
        te_status st = te_net_unary(ch, "/t.S/Unary", (const uint8_t *)"abc", 3, &resp, &len, 5000, &err);
        if (st != TE_EAUTH)
            fail_msg("%s: got %d: %s", dirs[i], st, err.msg);
        assert_null(resp);
        te_net_channel_free(ch);
        te_net_creds_free(&c);
    }
    /* the client refuses a server whose certificate does not name the expected host */
    te_net_channel *ch = channel(e, &e->cli_creds, "edge-a");
    assert_int_equal(te_net_unary(ch, "/t.S/Unary", (const uint8_t *)"abc", 3, &resp, &len, 5000, &err), TE_EAUTH);
    te_net_channel_free(ch);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* A TCP socket listening on a free loopback port. */
static int listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 64), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* A plain TCP peer: closes every connection at once (close_ms < 0), or
 * forwards it to to_port after close_ms milliseconds (a host slow to
 * answer). */
typedef struct tcp_peer {
    int fd, port, to_port, delay_ms;
    volatile int stop;
    pthread_t th;
} tcp_peer;

static int connect_to(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = htons((uint16_t)port);
    if (fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof a) != 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

static void relay(int a, int b)
{
    struct pollfd p[2] = {{a, POLLIN, 0}, {b, POLLIN, 0}};
    char buf[16384];
    for (;;) {
        if (poll(p, 2, 200) < 0)
            return;
        for (int i = 0; i < 2; i++) {
            if (!p[i].revents)
                continue;
            ssize_t n = read(p[i].fd, buf, sizeof buf);
            if (n <= 0 || write(p[1 - i].fd, buf, (size_t)n) != n)
                return;
        }
    }
}

static void *tcp_peer_main(void *arg)
{
    tcp_peer *t = arg;
    while (!t->stop) {
        struct pollfd p = {t->fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0)
            continue;
        int c = accept(t->fd, NULL, NULL);
        if (c < 0)
            continue;
        if (t->delay_ms >= 0) {
            usleep((useconds_t)t->delay_ms * 1000);
            int up = connect_to(t->to_port);
            if (up >= 0) {
                relay(c, up);
                close(up);
            }
        }
        close(c);
    }
    return NULL;
}

static void tcp_peer_start(tcp_peer *t, int to_port, int delay_ms)
{
    memset(t, 0, sizeof *t);
    t->fd = listener(&t->port);
    t->to_port = to_port;
    t->delay_ms = delay_ms;
    assert_int_equal(pthread_create(&t->th, NULL, tcp_peer_main, t), 0);
}

static void tcp_peer_stop(tcp_peer *t)
{
    t->stop = 1;
    pthread_join(t->th, NULL);
    close(t->fd);
}

/* One unary call to target with the given credentials; the status, the
 * message in msg and the time it took. */
static te_status call_once(const char *target, const te_net_creds *c, const char *name, int timeout_ms, char *msg,
                           size_t cap, double *secs)
{
    te_net_channel *ch = NULL;
    te_err err;
    te_err_clear(&err);
    te_net_channel_config cc = {target, c, name, 0};
    if (te_net_channel_new(&cc, &ch, &err) != TE_OK)
        fail_msg("channel: %s", err.msg);
    uint8_t *resp = NULL;
    size_t len = 0;
    double t0 = now_s();
    te_status st = te_net_unary(ch, "/t.S/Unary", (const uint8_t *)"abc", 3, &resp, &len, timeout_ms, &err);
    *secs = now_s() - t0;
    snprintf(msg, cap, "%s", st == TE_OK ? "" : err.msg);
    if (st == TE_OK)
        assert_non_null(resp);
    else
        assert_null(resp);
    free(resp);
    te_net_channel_free(ch);
    return st;
}

/* Unreachable, timed out and refused credentials: distinct statuses or
 * messages, each naming the host. */
static void test_error_kinds(void **state)
{
    env *e = *state;
    char target[64], msg[TE_ERR_MSG_MAX];
    double dt;
    te_status st;

    /* nothing listening: unreachable, once the host has had 3 s (within
     * the deadline) to come up */
    int port;
    close(listener(&port));
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    st = call_once(target, &e->cli_creds, NULL, 20000, msg, sizeof msg, &dt);
    print_message("nothing listening (%.2f s): %s\n", dt, msg);
    assert_int_equal(st, TE_ETRANSPORT);
    assert_non_null(strstr(msg, "unreachable"));
    assert_non_null(strstr(msg, "Connection refused"));
    assert_non_null(strstr(msg, target));
    assert_null(strstr(msg, "timed out"));
    assert_true(dt > 2.5 && dt < 8.0);
    st = call_once(target, &e->cli_creds, NULL, 1000, msg, sizeof msg, &dt);
    assert_int_equal(st, TE_ETRANSPORT);
    assert_non_null(strstr(msg, "unreachable"));
    assert_true(dt > 0.8 && dt < 3.0);

    /* a host that accepts TCP but never answers the TLS handshake: timed out */
    int silent = listener(&port);
    snprintf(target, sizeof target, "127.0.0.1:%d", port);
    st = call_once(target, &e->cli_creds, NULL, 1000, msg, sizeof msg, &dt);
    print_message("silent host (%.2f s): %s\n", dt, msg);
    assert_int_equal(st, TE_ETRANSPORT);
    assert_non_null(strstr(msg, "timed out"));
    assert_null(strstr(msg, "unreachable"));
    assert_null(strstr(msg, "credentials"));
    assert_true(dt > 0.8 && dt < 3.5);
    close(silent);

    /* a host that closes every connection at once: unreachable, not refused credentials */
    tcp_peer closer;
    tcp_peer_start(&closer, 0, -1);
    snprintf(target, sizeof target, "127.0.0.1:%d", closer.port);
    st = call_once(target, &e->cli_creds, NULL, 1500, msg, sizeof msg, &dt);
    print_message("closing host (%.2f s): %s\n", dt, msg);
    assert_int_equal(st, TE_ETRANSPORT);
    assert_non_null(strstr(msg, "unreachable"));
    assert_null(strstr(msg, "credentials"));
    tcp_peer_stop(&closer);

    /* the host refuses our certificate (another CA's; none): refused at once */
    const char *dirs[2] = {e->rogue, e->anon};
    for (int i = 0; i < 2; i++) {
        te_net_creds c;
        te_err err;
        assert_int_equal(te_net_creds_load(dirs[i], &c, &err), TE_OK);
        st = call_once(e->target, &c, NULL, 5000, msg, sizeof msg, &dt);
        print_message("%s (%.2f s): %s\n", i ? "no client certificate" : "client certificate of another CA", dt,
                      msg);
        assert_int_equal(st, TE_EAUTH);
        assert_non_null(strstr(msg, "credentials refused"));
        assert_non_null(strstr(msg, i ? "without a client certificate" : "did not accept our certificate"));
        assert_non_null(strstr(msg, e->target));
        assert_true(dt < 4.0); /* at once, not at the deadline */
        te_net_creds_free(&c);
    }
    /* we refuse the host's: it does not name the expected host; another CA signed it */
    st = call_once(e->target, &e->cli_creds, "edge-a", 5000, msg, sizeof msg, &dt);
    print_message("host certificate for another name (%.2f s): %s\n", dt, msg);
    assert_int_equal(st, TE_EAUTH);
    assert_non_null(strstr(msg, "credentials refused"));
    assert_non_null(strstr(msg, "failed our check"));
    assert_true(dt < 4.0);
    te_net_creds trusts_rogue;
    te_err err;
    assert_int_equal(te_net_creds_load(e->trusts_rogue, &trusts_rogue, &err), TE_OK);
    st = call_once(e->target, &trusts_rogue, NULL, 5000, msg, sizeof msg, &dt);
    print_message("host certificate of another CA (%.2f s): %s\n", dt, msg);
    assert_int_equal(st, TE_EAUTH);
    assert_non_null(strstr(msg, "credentials refused"));
    assert_non_null(strstr(msg, "failed our check"));
    te_net_creds_free(&trusts_rogue);
}

static void *start_late(void *arg)
{
    env *e = arg;
    usleep(800 * 1000);
    te_net_method methods[] = {{"/t.S/Unary", TE_NET_UNARY, echo_fn, NULL, 0, NULL}};
    te_net_server_config sc = {e->late_target, &e->srv_creds, methods, 1, 2, 0, 0, 0, NULL, NULL, 0, 0, 0};
    te_err err;
    if (te_net_server_start(&sc, &e->late, &err) != TE_OK)
        e->late = NULL;
    return NULL;
}

/* A call waits, within its deadline, for a host that is slow to set up the
 * connection or not up yet; so do 32 clients at once. */
static void test_waits_for_connection(void **state)
{
    env *e = *state;
    char target[64], msg[TE_ERR_MSG_MAX];
    double dt;
    /* TLS set-up delayed by 1.5 s (the connection is forwarded late) */
    tcp_peer slow;
    tcp_peer_start(&slow, te_net_server_port(e->server), 1500);
    snprintf(target, sizeof target, "127.0.0.1:%d", slow.port);
    te_status st = call_once(target, &e->cli_creds, "edge-b", 6000, msg, sizeof msg, &dt);
    print_message("slow host (%.2f s): %s\n", dt, st == TE_OK ? "OK" : msg);
    assert_int_equal(st, TE_OK);
    assert_true(dt > 1.4);
    /* ... but not beyond the deadline: timed out */
    st = call_once(target, &e->cli_creds, "edge-b", 700, msg, sizeof msg, &dt);
    assert_int_equal(st, TE_ETRANSPORT);
    assert_non_null(strstr(msg, "timed out"));
    tcp_peer_stop(&slow);

    /* a host that starts listening 0.8 s after the call began */
    int port;
    close(listener(&port));
    snprintf(e->late_target, sizeof e->late_target, "127.0.0.1:%d", port);
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, start_late, e), 0);
    st = call_once(e->late_target, &e->cli_creds, NULL, 8000, msg, sizeof msg, &dt);
    pthread_join(th, NULL);
    assert_non_null(e->late);
    print_message("late host (%.2f s): %s\n", dt, st == TE_OK ? "OK" : msg);
    assert_int_equal(st, TE_OK);
    te_net_server_stop(e->late, 1000);
    e->late = NULL;
}

static void test_unreachable_timeout_limits(void **state)
{
    env *e = *state;
    te_err err;
    uint8_t *resp = NULL;
    size_t len = 0;
    /* a port nobody listens on */
    te_net_server_config sc;
    memset(&sc, 0, sizeof sc);
    te_net_channel_config cc = {"127.0.0.1:1", &e->cli_creds, NULL, 0};
    te_net_channel *ch = NULL;
    assert_int_equal(te_net_channel_new(&cc, &ch, &err), TE_OK);
    assert_int_equal(te_net_unary(ch, "/t.S/Unary", (const uint8_t *)"a", 1, &resp, &len, 3000, &err), TE_ETRANSPORT);
    assert_non_null(strstr(err.msg, "127.0.0.1:1"));
    te_net_channel_free(ch);

    ch = channel(e, &e->cli_creds, NULL);
    assert_int_equal(te_net_unary(ch, "/t.S/Unary", (const uint8_t *)"sleep", 5, &resp, &len, 300, &err),
                     TE_ETRANSPORT);
    assert_non_null(strstr(err.msg, "timed out"));
    /* larger than the server's 64 KiB message limit */
    size_t big = 100000;
    uint8_t *buf = calloc(big, 1);
    assert_int_not_equal(te_net_unary(ch, "/t.S/Unary", buf, big, &resp, &len, 5000, &err), TE_OK);
    /* a client stream beyond the 1 MiB total */
    te_net_msg msgs[20];
    for (int i = 0; i < 20; i++)
        msgs[i] = (te_net_msg){buf, 60000};
    assert_int_equal(te_net_client_stream(ch, "/t.S/Up", msgs, 20, &resp, &len, 5000, &err), TE_EINVAL);
    free(buf);
    /* still serving */
    assert_int_equal(te_net_unary(ch, "/t.S/Unary", (const uint8_t *)"q", 1, &resp, &len, 5000, &err), TE_OK);
    free(resp);
    te_net_channel_free(ch);
}

static double wall_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct sleeper {
    te_net_channel *ch;
    te_status st;
} sleeper;

static void *sleep_call(void *arg)
{
    sleeper *sl = arg;
    uint8_t *resp = NULL;
    size_t len = 0;
    te_err err;
    sl->st = te_net_unary(sl->ch, "/t.S/Unary", (const uint8_t *)"sleep", 5, &resp, &len, 10000, &err);
    free(resp);
    return NULL;
}

/* Start a server of its own for one test and a client channel to it. */
static te_net_channel *server_and_channel(env *e, const te_net_server_config *sc, te_net_server **srv)
{
    te_err err;
    if (te_net_server_start(sc, srv, &err) != TE_OK)
        fail_msg("server: %s", err.msg);
    char target[64];
    snprintf(target, sizeof target, "127.0.0.1:%d", te_net_server_port(*srv));
    te_net_channel_config cc = {target, &e->cli_creds, "edge-b", 0};
    te_net_channel *ch = NULL;
    if (te_net_channel_new(&cc, &ch, &err) != TE_OK)
        fail_msg("channel: %s", err.msg);
    return ch;
}

/* The asynchronous server: with one worker, 64 streams are open at once
 * and all answered (an open stream holds no thread); with the worker busy
 * and its queue (1) full, a message is refused unserved with
 * RESOURCE_EXHAUSTED, which a stream reports (negative control: this is
 * what a client that does not retry sees) and a unary call retries until
 * served within its deadline; an inline method (health) is answered at
 * once meanwhile. */
static void test_async_streams_and_overload(void **state)
{
    env *e = *state;
    te_net_method methods[] = {{"/t.S/Unary", TE_NET_UNARY, echo_fn, NULL, 0, NULL},
                               {"/t.S/Bidi", TE_NET_BIDI, echo_fn, NULL, 0, NULL},
                               {"/t.S/Health", TE_NET_UNARY, echo_fn, NULL, 1, NULL}};
    te_net_server_config sc = {"127.0.0.1:0", &e->srv_creds, methods, 3, 1, 0, 0, 0, NULL, NULL, 0, 1, 0};
    te_net_server *srv = NULL;
    te_net_channel *ch = server_and_channel(e, &sc, &srv);
    te_err err;
    uint8_t *resp = NULL;
    size_t len = 0;

    enum { N = 64 };
    te_net_stream *st[N];
    for (int round = 0; round < 2; round++)
        for (int i = 0; i < N; i++) {
            if (round == 0)
                assert_int_equal(te_net_stream_open(ch, "/t.S/Bidi", 10000, &st[i], &err), TE_OK);
            char m[16], want[32];
            snprintf(m, sizeof m, "%c%02d", 'a' + round, i);
            snprintf(want, sizeof want, "device:d1|%c%c%c", m[2], m[1], m[0]);
            if (te_net_stream_exchange(st[i], (const uint8_t *)m, strlen(m), &resp, &len, &err) != TE_OK)
                fail_msg("stream %d, round %d: %s", i, round, err.msg);
            assert_int_equal(len, strlen(want));
            assert_memory_equal(resp, want, len);
            free(resp);
        }
    te_net_server_figures f;
    te_net_server_figures_get(srv, &f);
    assert_int_equal(f.open_calls, N); /* all open at once, one worker */
    for (int i = 0; i < N; i++) {
        assert_int_equal(te_net_stream_close(st[i], &err), TE_OK);
        te_net_stream_free(st[i]);
    }

    /* the worker sleeps on the first call, the second waits in the queue */
    sleeper sl[2] = {{ch, TE_OK}, {ch, TE_OK}};
    pthread_t th[2];
    for (int i = 0; i < 2; i++) {
        assert_int_equal(pthread_create(&th[i], NULL, sleep_call, &sl[i]), 0);
        usleep(150 * 1000);
    }
    /* a third message finds the queue full: refused, unserved */
    te_net_stream *s = NULL;
    assert_int_equal(te_net_stream_open(ch, "/t.S/Bidi", 5000, &s, &err), TE_OK);
    assert_int_equal(te_net_stream_exchange(s, (const uint8_t *)"x", 1, &resp, &len, &err), TE_ETRANSPORT);
    print_message("queue full: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "busy"));
    assert_int_equal(te_net_stream_unserved(s), 1);
    te_net_stream_free(s);
    /* the inline method does not wait for the worker */
    double t0 = wall_s();
    assert_int_equal(te_net_unary(ch, "/t.S/Health", (const uint8_t *)"h", 1, &resp, &len, 5000, &err), TE_OK);
    double dt = wall_s() - t0;
    free(resp);
    print_message("inline call beside a busy worker: %.3f s\n", dt);
    assert_true(dt < 0.5);
    /* a unary call is refused too, and sent again until served */
    t0 = wall_s();
    if (te_net_unary(ch, "/t.S/Unary", (const uint8_t *)"q", 1, &resp, &len, 10000, &err) != TE_OK)
        fail_msg("retried unary: %s", err.msg);
    print_message("unary call served after %.2f s of refusals\n", wall_s() - t0);
    assert_memory_equal(resp, "device:d1|q", len);
    free(resp);
    for (int i = 0; i < 2; i++) {
        pthread_join(th[i], NULL);
        assert_int_equal(sl[i].st, TE_OK);
    }
    te_net_server_figures_get(srv, &f);
    print_message("calls %llu, refused %llu\n", (unsigned long long)f.calls, (unsigned long long)f.refused);
    assert_true(f.refused >= 2);
    /* a deadline shorter than the wait: a clear error, not a hang */
    assert_int_equal(pthread_create(&th[0], NULL, sleep_call, &sl[0]), 0);
    usleep(100 * 1000);
    assert_int_equal(pthread_create(&th[1], NULL, sleep_call, &sl[1]), 0);
    usleep(100 * 1000);
    assert_int_equal(te_net_unary(ch, "/t.S/Unary", (const uint8_t *)"q", 1, &resp, &len, 300, &err), TE_ETRANSPORT);
    print_message("refused within the deadline: %s\n", err.msg);
    assert_non_null(strstr(err.msg, "busy"));
    for (int i = 0; i < 2; i++)
        pthread_join(th[i], NULL);
    te_net_channel_free(ch);
    te_net_server_stop(srv, 1000);
}

/* Messages of every size class the transport settings touch
 * (host/daemon/README.md, Transport settings): at and around the HTTP/2
 * frame size, the TLS record, the TCP read chunk and the stream window,
 * up to 9 MiB, on one bidi stream and as unary calls, each echoed reversed
 * and compared byte for byte, so a message cut short, reordered or read
 * past its end fails here (under ASan: a read outside a buffer). */
static void test_large_messages(void **state)
{
    env *e = *state;
    te_net_method methods[] = {{"/t.S/Unary", TE_NET_UNARY, echo_fn, NULL, 0, NULL},
                               {"/t.S/Bidi", TE_NET_BIDI, echo_fn, NULL, 0, NULL}};
    te_net_server_config sc = {"127.0.0.1:0", &e->srv_creds, methods, 2, 2, 0, 0, 0, NULL, NULL, 0, 0, 0};
    te_net_server *srv = NULL;
    te_net_channel *ch = server_and_channel(e, &sc, &srv);
    te_err err;
    static const size_t sizes[] = {1, 16383, 16384, 16385, 65535, 65536, 65537, 262143, 262144, 262145,
                                   (1u << 20) + 3, (4u << 20) + 7, (9u << 20) + 1};
    size_t n_sizes = sizeof sizes / sizeof sizes[0], max = sizes[n_sizes - 1];
    const char *peer = "device:d1|";
    size_t pl = strlen(peer);
    uint8_t *buf = malloc(max);
    assert_non_null(buf);
    uint32_t x = 12345;
    for (size_t i = 0; i < max; i++) {
        x = x * 1664525u + 1013904223u;
        buf[i] = (uint8_t)(x >> 24);
    }
    te_net_stream *s = NULL;
    assert_int_equal(te_net_stream_open(ch, "/t.S/Bidi", 30000, &s, &err), TE_OK);
    for (int unary = 0; unary < 2; unary++)
        for (size_t k = 0; k < n_sizes; k++) {
            /* a different window of the pattern each time */
            const uint8_t *msg = buf + (max - sizes[k]) / (k + 2);
            uint8_t *resp = NULL;
            size_t len = 0;
            te_status st = unary ? te_net_unary(ch, "/t.S/Unary", msg, sizes[k], &resp, &len, 30000, &err)
                                 : te_net_stream_exchange(s, msg, sizes[k], &resp, &len, &err);
            if (st != TE_OK)
                fail_msg("%s of %zu bytes: %s", unary ? "unary" : "exchange", sizes[k], err.msg);
            assert_int_equal(len, pl + sizes[k]);
            assert_memory_equal(resp, peer, pl);
            size_t bad = sizes[k];
            for (size_t j = 0; j < sizes[k] && bad == sizes[k]; j++)
                if (resp[pl + j] != msg[sizes[k] - 1 - j])
                    bad = j;
            if (bad != sizes[k])
                fail_msg("%zu bytes: byte %zu of the echo differs", sizes[k], bad);
            free(resp);
        }
    assert_int_equal(te_net_stream_close(s, &err), TE_OK);
    te_net_stream_free(s);
    free(buf);
    te_net_channel_free(ch);
    te_net_server_stop(srv, 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_and_identity),
        cmocka_unit_test(test_streams),
        cmocka_unit_test(test_refused_credentials),
        cmocka_unit_test(test_unreachable_timeout_limits),
        cmocka_unit_test(test_error_kinds),
        cmocka_unit_test(test_waits_for_connection),
        cmocka_unit_test(test_async_streams_and_overload),
        cmocka_unit_test(test_large_messages),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
