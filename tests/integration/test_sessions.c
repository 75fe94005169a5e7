/* Masks never repeat on the device side: every (session, counter) that
 * reaches EdgeA is new, whatever the device's threads, handles and
 * processes do on one directory, and a captured request replayed to a host
 * is refused.  A tap at EdgeA records the PRF input of every masked input;
 * the real-process attacks (16 processes, copied and restored directories,
 * kill -9) are in tests/attack/. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "te_prf.h"
#include "wire.pb-c.h"

#define MODEL "lenet5"
#define MAX_SEEN 4096
#define THREADS 4
#define PER_THREAD 5

/* One masked input's PRF coordinates. */
typedef struct coord {
    uint8_t session[TE_SESSION_BYTES];
    uint64_t counter;
    uint32_t layer;
} coord;

static struct {
    pthread_mutex_t mu;
    coord seen[MAX_SEEN];
    int n;
    int pipe_fd;              /* in a forked child: report here instead */
    uint8_t *captured;        /* the first layer-0 request EdgeA received */
    size_t captured_len;
} T = {PTHREAD_MUTEX_INITIALIZER, {{{0}, 0, 0}}, 0, -1, NULL, 0};

static void tap(void *ctx, te_party who, int is_response, const uint8_t *msg, size_t len)
{
    (void)ctx;
    if (who != TE_PARTY_EDGE_A || is_response)
        return;
    Twinedge__LayerRequest *q = twinedge__layer_request__unpack(NULL, len, msg);
    if (!q || q->session.len != TE_SESSION_BYTES) /* EdgeB's relay response, or a broken request */
        goto out;
    coord c;
    memcpy(c.session, q->session.data, TE_SESSION_BYTES);
    c.counter = q->counter;
    c.layer = q->layer;
    if (T.pipe_fd >= 0) {
        if (write(T.pipe_fd, &c, sizeof c) != (ssize_t)sizeof c)
            _exit(3);
        goto out;
    }
    pthread_mutex_lock(&T.mu);
    if (T.n < MAX_SEEN)
        T.seen[T.n++] = c;
    if (!T.captured && q->layer == 0) {
        T.captured = malloc(len);
        memcpy(T.captured, msg, len);
        T.captured_len = len;
    }
    pthread_mutex_unlock(&T.mu);
out:
    if (q)
        twinedge__layer_request__free_unpacked(q, NULL);
}

/* No two recorded masked inputs share (session, counter, layer); returns
 * the number of distinct sessions. */
static int check_unique(void)
{
    int sessions = 0;
    for (int i = 0; i < T.n; i++) {
        int new_session = 1;
        for (int j = 0; j < i; j++) {
            int same_s = memcmp(T.seen[i].session, T.seen[j].session, TE_SESSION_BYTES) == 0;
            new_session &= !same_s;
            if (same_s && T.seen[i].counter == T.seen[j].counter && T.seen[i].layer == T.seen[j].layer)
                fail_msg("masked inputs %d and %d share their mask (counter %llu, layer %u)", j, i,
                         (unsigned long long)T.seen[i].counter, T.seen[i].layer);
        }
        sessions += new_session;
    }
    return sessions;
}

static void reset(void)
{
    T.n = 0;
    free(T.captured);
    T.captured = NULL;
}

typedef struct worker {
    te_fixture *f;
    twinedge_device *dev;
    int ok;
} worker;

static void *run_worker(void *p)
{
    worker *w = p;
    float *out = malloc(w->f->n_out * sizeof *out);
    for (int i = 0; i < PER_THREAD; i++)
        w->ok += twinedge_infer(w->dev, TWINEDGE_RELAY, w->f->input, w->f->n_in, out, w->f->n_out) == TWINEDGE_OK;
    free(out);
    return NULL;
}

/* Threads sharing one handle, and further handles on the same directory,
 * all at once. */
static void test_threads_and_handles(void **state)
{
    (void)state;
    te_fixture f;
    reset();
    fx_setup(&f, MODEL, tap, NULL);
    twinedge_device *other[2];
    for (int k = 0; k < 2; k++) {
        assert_int_equal(twinedge_open(f.device, &other[k]), TWINEDGE_OK);
        twinedge_use_transport(other[k], f.pair->device_link);
    }
    pthread_t tid[THREADS + 2];
    worker w[THREADS + 2];
    for (int i = 0; i < THREADS + 2; i++) {
        w[i] = (worker){&f, i < THREADS ? f.dev : other[i - THREADS], 0};
        assert_int_equal(pthread_create(&tid[i], NULL, run_worker, &w[i]), 0);
    }
    for (int i = 0; i < THREADS + 2; i++) {
        pthread_join(tid[i], NULL);
        assert_int_equal(w[i].ok, PER_THREAD);
    }
    int layers = T.n / ((THREADS + 2) * PER_THREAD);
    assert_true(layers >= 1);
    assert_int_equal(T.n, (THREADS + 2) * PER_THREAD * layers);
    assert_int_equal(check_unique(), 3); /* one session per handle */
    printf("%d masked inputs from %d threads on 3 handles: all distinct\n", T.n, THREADS + 2);
    for (int k = 0; k < 2; k++)
        twinedge_close(other[k]);
    fx_teardown(&f);
}

/* A forked child that goes on with its parent's open handle starts its own
 * session, and one killed with SIGKILL mid-inference leaves nothing behind
 * that could bring a mask back. */
static void test_fork_and_kill(void **state)
{
    (void)state;
    te_fixture f;
    reset();
    fx_setup(&f, MODEL, tap, NULL);
    float *out = malloc(f.n_out * sizeof *out);
    assert_int_equal(twinedge_infer(f.dev, TWINEDGE_RELAY, f.input, f.n_in, out, f.n_out), TWINEDGE_OK);
    for (int round = 0; round < 3; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            T.pipe_fd = fds[1];
            /* round 2: killed while its inferences are in flight */
            for (int i = 0; i < (round == 2 ? 1000 : 2); i++)
                if (twinedge_infer(f.dev, TWINEDGE_RELAY, f.input, f.n_in, out, f.n_out) != TWINEDGE_OK)
                    _exit(4);
            _exit(0);
        }
        close(fds[1]);
        coord c;
        int got = 0;
        while (read(fds[0], &c, sizeof c) == (ssize_t)sizeof c) {
            pthread_mutex_lock(&T.mu);
            if (T.n < MAX_SEEN)
                T.seen[T.n++] = c;
            pthread_mutex_unlock(&T.mu);
            if (round == 2 && ++got == 7)
                kill(pid, SIGKILL);
        }
        close(fds[0]);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(round == 2 ? WIFSIGNALED(status) : WIFEXITED(status) && WEXITSTATUS(status) == 0);
        /* the parent goes on with the same handle */
        assert_int_equal(twinedge_infer(f.dev, TWINEDGE_RELAY, f.input, f.n_in, out, f.n_out), TWINEDGE_OK);
    }
    int sessions = check_unique();
    assert_int_equal(sessions, 4); /* the parent's and one per child */
    printf("%d masked inputs over %d sessions (3 forked children, one killed): all distinct\n", T.n, sessions);
    free(out);
    fx_teardown(&f);
}

/* A request EdgeA has served, sent again (a device mishap, or a replay): the
 * hosts refuse it before computing anything. */
static void test_replayed_request_refused(void **state)
{
    (void)state;
    te_fixture f;
    reset();
    fx_setup(&f, MODEL, tap, NULL);
    float *out = malloc(f.n_out * sizeof *out);
    assert_int_equal(twinedge_infer(f.dev, TWINEDGE_RELAY, f.input, f.n_in, out, f.n_out), TWINEDGE_OK);
    assert_non_null(T.captured);
    char dev_id[80];
    Twinedge__LayerRequest *q = twinedge__layer_request__unpack(NULL, T.captured_len, T.captured);
    assert_non_null(q);
    snprintf(dev_id, sizeof dev_id, "%s", q->device_id);
    twinedge__layer_request__free_unpacked(q, NULL);
    te_caller caller = {TE_CALLER_DEVICE, dev_id};
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    te_err err;
    assert_int_equal(te_host_handle(f.pair->a, &caller, T.captured, T.captured_len, &resp, &resp_len, &err), TE_OK);
    Twinedge__LayerResponse *r = twinedge__layer_response__unpack(NULL, resp_len, resp);
    assert_non_null(r);
    assert_int_equal(r->status, TE_ECOUNTER);
    assert_int_equal(r->data.len, 0);
    assert_non_null(strstr(r->error, "already served"));
    printf("replayed request: %s\n", r->error);
    twinedge__layer_response__free_unpacked(r, NULL);
    free(resp);
    /* and the device goes on under fresh counters */
    assert_int_equal(twinedge_infer(f.dev, TWINEDGE_RELAY, f.input, f.n_in, out, f.n_out), TWINEDGE_OK);
    free(out);
    reset();
    fx_teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_threads_and_handles),
        cmocka_unit_test(test_fork_and_kill),
        cmocka_unit_test(test_replayed_request_refused),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
