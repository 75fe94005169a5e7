/* The gRPC wrapper and the CA: mutual TLS over loopback with certificates
 * from owner/pki.c; unary, client-streaming and bidi calls; peer identity;
 * refused credentials; unreachable hosts; timeouts; size limits. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <cmocka.h>

#include "pki.h"
#include "te_net.h"

typedef struct env {
    char dir[256], ca[300], srv[300], cli[300], rogue_ca[300], rogue[300], anon[300];
    te_net_creds srv_creds, cli_creds;
    te_net_server *server;
    char target[64];
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
    char cmd[1000];
    snprintf(cmd, sizeof cmd, "cp %s/ca.pem %s/ca.pem", e->ca, e->rogue);
    assert_int_equal(system(cmd), 0);

    if (te_net_creds_load(e->srv, &e->srv_creds, &err) != TE_OK ||
        te_net_creds_load(e->cli, &e->cli_creds, &err) != TE_OK)
        fail_msg("creds: %s", err.msg);
    te_net_method methods[] = {{"/t.S/Unary", TE_NET_UNARY, echo_fn, NULL},
                               {"/t.S/Up", TE_NET_CLIENT_STREAM, echo_fn, NULL},
                               {"/t.S/Bidi", TE_NET_BIDI, echo_fn, NULL}};
    te_net_server_config sc = {"127.0.0.1:0", &e->srv_creds, methods, 3, 4, 1 << 16, 1 << 20, 0, NULL, NULL};
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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_unary_and_identity),
        cmocka_unit_test(test_streams),
        cmocka_unit_test(test_refused_credentials),
        cmocka_unit_test(test_unreachable_timeout_limits),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
