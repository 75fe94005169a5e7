/* The device SDK's public surface inside one process: an app's own
 * transport (twinedge_set_transport, callbacks) carries the same bytes as
 * the in-process hosts' link and gives the same output bit for bit; its
 * failures come back as the app reported them; its call_pair carries the
 * two requests of a mediated layer; a struct from an app that set no size is
 * refused; the version macros match the library. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "harness.h"
#include "te_transport.h"

#define MODEL "lenet5"

/* The app's channel: here the in-process hosts' link, reached only through
 * the public callbacks; counts what it carried and can be told to fail. */
typedef struct app_chan {
    te_transport *link;
    int calls, begins, ends, pairs;
    int fail_with;   /* 0, or a TWINEDGE_* code call() returns */
    int pair_fail;   /* 0, or a TWINEDGE_* code call_pair() returns, blaming EdgeB */
} app_chan;

static int app_call(void *ctx, twinedge_party to, const uint8_t *req, size_t req_len, uint8_t **resp,
                    size_t *resp_len, char *msg, size_t msg_cap)
{
    app_chan *c = ctx;
    c->calls++;
    if (c->fail_with) {
        snprintf(msg, msg_cap, "radio link down (test)");
        return c->fail_with;
    }
    te_err err;
    te_status st = te_transport_call(c->link, (te_party)to, req, req_len, resp, resp_len, &err);
    if (st != TE_OK) {
        snprintf(msg, msg_cap, "%s", err.msg);
        return TWINEDGE_ETRANSPORT;
    }
    return TWINEDGE_OK;
}

/* Both requests of a mediated layer (in turn here: the in-process hosts
 * answer on this thread). */
static int app_call_pair(void *ctx, const uint8_t *const req[2], const size_t req_len[2], uint8_t *resp[2],
                         size_t resp_len[2], twinedge_party *failed, char *msg, size_t msg_cap)
{
    app_chan *c = ctx;
    c->pairs++;
    for (int p = 0; p < 2; p++) {
        if (p == 1 && c->pair_fail) {
            *failed = TWINEDGE_EDGE_B;
            snprintf(msg, msg_cap, "second radio down (test)");
            return c->pair_fail; /* resp[0] is set: the SDK frees it */
        }
        te_err err;
        if (te_transport_call(c->link, (te_party)p, req[p], req_len[p], &resp[p], &resp_len[p], &err) != TE_OK) {
            *failed = (twinedge_party)p;
            snprintf(msg, msg_cap, "%s", err.msg);
            return TWINEDGE_ETRANSPORT;
        }
    }
    return TWINEDGE_OK;
}

static int app_begin(void *ctx, char *msg, size_t msg_cap)
{
    app_chan *c = ctx;
    c->begins++;
    te_err err;
    if (te_transport_begin(c->link, &err) != TE_OK) {
        snprintf(msg, msg_cap, "%s", err.msg);
        return TWINEDGE_ETRANSPORT;
    }
    return TWINEDGE_OK;
}

static void app_end(void *ctx)
{
    app_chan *c = ctx;
    c->ends++;
    te_transport_end(c->link);
}

/* The fixture, and two buffers of its output size for the results. */
static void setup_with_buffers(te_fixture *f, float **want, float **got)
{
    fx_setup(f, MODEL, NULL, NULL);
    *want = malloc(f->n_out * sizeof **want);
    *got = malloc(f->n_out * sizeof **got);
    assert_non_null(*want);
    assert_non_null(*got);
}

static void test_app_transport(void **state)
{
    (void)state;
    te_fixture f;
    float *want, *got;
    setup_with_buffers(&f, &want, &got);
    for (int mode = TWINEDGE_RELAY; mode <= TWINEDGE_MEDIATED; mode++) {
        /* the tree's own link first (fx_setup attached it) */
        assert_int_equal(twinedge_infer(f.dev, (twinedge_mode)mode, f.input, f.n_in, want, f.n_out), TWINEDGE_OK);

        app_chan chan = {.link = f.pair->device_link};
        twinedge_transport t = {.struct_size = sizeof t, .ctx = &chan, .call = app_call, .begin = app_begin,
                                .end = app_end};
        assert_int_equal(twinedge_set_transport(f.dev, &t), TWINEDGE_OK);
        memset(&t, 0xA5, sizeof t); /* copied: the app's struct may go away */
        memset(got, 0, f.n_out * sizeof *got);
        assert_int_equal(twinedge_infer(f.dev, (twinedge_mode)mode, f.input, f.n_in, got, f.n_out), TWINEDGE_OK);
        assert_memory_equal(want, got, f.n_out * sizeof *got);
        twinedge_report r;
        assert_int_equal(twinedge_last_report(f.dev, &r), TWINEDGE_OK);
        assert_true(chan.calls >= r.linear_layers && r.layers_checked == r.linear_layers);
        assert_int_equal(chan.begins, 1);
        assert_int_equal(chan.ends, 1);

        /* the app's failure, with its message and code, and nothing written */
        chan.fail_with = TWINEDGE_ETRANSPORT;
        memset(got, 0, f.n_out * sizeof *got);
        assert_int_equal(twinedge_infer(f.dev, (twinedge_mode)mode, f.input, f.n_in, got, f.n_out),
                         TWINEDGE_ETRANSPORT);
        assert_non_null(strstr(twinedge_errmsg(f.dev), "radio link down (test)"));
        for (size_t i = 0; i < f.n_out; i++)
            assert_true(got[i] == 0.0f);
        chan.fail_with = TWINEDGE_EAUTH;
        assert_int_equal(twinedge_infer(f.dev, (twinedge_mode)mode, f.input, f.n_in, got, f.n_out), TWINEDGE_EAUTH);
        twinedge_use_transport(f.dev, f.pair->device_link);
    }
    free(want);
    free(got);
    fx_teardown(&f);
}

/* An app's call_pair carries each mediated layer's two requests (and only
 * those), bit for bit as call() would; its failure names the host it blamed.
 * An app without call_pair (an older struct) gets call() twice per layer. */
static void test_app_call_pair(void **state)
{
    (void)state;
    te_fixture f;
    float *want, *got;
    setup_with_buffers(&f, &want, &got);
    assert_int_equal(twinedge_infer(f.dev, TWINEDGE_MEDIATED, f.input, f.n_in, want, f.n_out), TWINEDGE_OK);
    app_chan chan = {.link = f.pair->device_link};
    twinedge_transport t = {.struct_size = sizeof t, .ctx = &chan, .call = app_call, .call_pair = app_call_pair};
    assert_int_equal(twinedge_set_transport(f.dev, &t), TWINEDGE_OK);
    assert_int_equal(twinedge_infer(f.dev, TWINEDGE_MEDIATED, f.input, f.n_in, got, f.n_out), TWINEDGE_OK);
    assert_memory_equal(want, got, f.n_out * sizeof *got);
    twinedge_report r;
    twinedge_last_report(f.dev, &r);
    assert_int_equal(chan.pairs, r.linear_layers);
    assert_int_equal(chan.calls, 0);
    /* relay mode asks EdgeA alone: call() */
    chan.pairs = 0;
    assert_int_equal(twinedge_infer(f.dev, TWINEDGE_RELAY, f.input, f.n_in, got, f.n_out), TWINEDGE_OK);
    assert_int_equal(chan.pairs, 0);
    assert_int_equal(chan.calls, r.linear_layers);

    chan.pair_fail = TWINEDGE_ETRANSPORT;
    memset(got, 0, f.n_out * sizeof *got);
    assert_int_equal(twinedge_infer(f.dev, TWINEDGE_MEDIATED, f.input, f.n_in, got, f.n_out), TWINEDGE_ETRANSPORT);
    assert_non_null(strstr(twinedge_errmsg(f.dev), "EdgeB"));
    assert_non_null(strstr(twinedge_errmsg(f.dev), "second radio down (test)"));
    for (size_t i = 0; i < f.n_out; i++)
        assert_true(got[i] == 0.0f);

    /* the struct of an app built before call_pair existed */
    app_chan old = {.link = f.pair->device_link};
    twinedge_transport t2 = {.struct_size = offsetof(twinedge_transport, call_pair), .ctx = &old, .call = app_call,
                             .call_pair = app_call_pair};
    assert_int_equal(twinedge_set_transport(f.dev, &t2), TWINEDGE_OK);
    assert_int_equal(twinedge_infer(f.dev, TWINEDGE_MEDIATED, f.input, f.n_in, got, f.n_out), TWINEDGE_OK);
    assert_memory_equal(want, got, f.n_out * sizeof *got);
    assert_int_equal(old.pairs, 0);
    assert_int_equal(old.calls, 2 * r.linear_layers);
    free(want);
    free(got);
    fx_teardown(&f);
}

static void test_bad_transport_refused(void **state)
{
    (void)state;
    te_fixture f;
    fx_setup(&f, MODEL, NULL, NULL);
    app_chan chan = {.link = f.pair->device_link};
    twinedge_transport t = {.ctx = &chan, .call = app_call}; /* struct_size not set */
    assert_int_equal(twinedge_set_transport(f.dev, &t), TWINEDGE_EINVAL);
    assert_non_null(strstr(twinedge_errmsg(f.dev), "struct_size"));
    t.struct_size = sizeof t;
    t.call = NULL;
    assert_int_equal(twinedge_set_transport(f.dev, &t), TWINEDGE_EINVAL);
    assert_int_equal(twinedge_set_transport(f.dev, NULL), TWINEDGE_EINVAL);
    /* an older app's struct, up to call(): accepted, no begin/end called */
    t.call = app_call;
    t.begin = app_begin;
    t.struct_size = offsetof(twinedge_transport, begin);
    assert_int_equal(twinedge_set_transport(f.dev, &t), TWINEDGE_OK);
    float *got = malloc(f.n_out * sizeof *got);
    assert_int_equal(twinedge_infer(f.dev, TWINEDGE_RELAY, f.input, f.n_in, got, f.n_out), TWINEDGE_OK);
    assert_int_equal(chan.begins, 0);
    assert_true(chan.calls > 0);
    free(got);
    fx_teardown(&f);
}

static void test_version(void **state)
{
    (void)state;
    char want[32];
    snprintf(want, sizeof want, "%d.%d.%d", TWINEDGE_VERSION_MAJOR, TWINEDGE_VERSION_MINOR, TWINEDGE_VERSION_PATCH);
    assert_string_equal(twinedge_version(), want);
    assert_string_equal(twinedge_version(), TWINEDGE_VERSION_STRING);
    assert_int_equal(TWINEDGE_VERSION_NUMBER,
                     TWINEDGE_VERSION_MAJOR * 10000 + TWINEDGE_VERSION_MINOR * 100 + TWINEDGE_VERSION_PATCH);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_version),
        cmocka_unit_test(test_app_transport),
        cmocka_unit_test(test_app_call_pair),
        cmocka_unit_test(test_bad_transport_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
