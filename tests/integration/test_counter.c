/* The request counter survives crashes: a device process killed with
 * SIGKILL between layers, then restarted, never uses a counter twice. */
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

#define MODEL "lenet5"
#define CYCLES 6
#define MAX_USED 4096

typedef struct used {
    uint64_t t[MAX_USED];
    int n;
} used;

static void note(used *u, uint64_t t)
{
    for (int i = 0; i < u->n; i++)
        if (u->t[i] == t)
            return;
    assert_true(u->n < MAX_USED);
    u->t[u->n++] = t;
}

typedef struct child_hook {
    int fd;
    int inference;
    int kill_inference, kill_layer;
} child_hook;

/* In the child: report every (counter) before its layer goes out; at the
 * chosen point, report and wait to be killed. */
static void child_layer(void *ctx, int layer, uint64_t t)
{
    child_hook *h = ctx;
    uint64_t msg[2] = {t, 0};
    if (h->inference == h->kill_inference && layer == h->kill_layer)
        msg[1] = 1;
    if (write(h->fd, msg, sizeof msg) != (ssize_t)sizeof msg)
        _exit(3);
    if (msg[1])
        for (;;)
            pause();
}

/* Fold one process's counters into the history, failing on any reuse. */
static void merge_checked(used *all, used *cur, const char *who)
{
    for (int i = 0; i < cur->n; i++)
        for (int j = 0; j < all->n; j++)
            if (cur->t[i] == all->t[j])
                fail_msg("counter %llu reused by the %s", (unsigned long long)cur->t[i], who);
    for (int i = 0; i < cur->n; i++)
        note(all, cur->t[i]);
    cur->n = 0;
}

static void parent_layer(void *ctx, int layer, uint64_t t)
{
    (void)layer;
    note(ctx, t);
}

static void test_counter_survives_sigkill(void **state)
{
    (void)state;
    te_fixture f;
    fx_setup(&f, MODEL, NULL, NULL);
    float *out = malloc(f.n_out * sizeof *out);
    used *all = calloc(1, sizeof *all), *cur = calloc(1, sizeof *cur);
    for (int cycle = 0; cycle < CYCLES; cycle++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        fflush(NULL);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            close(fds[0]);
            fx_reopen_device(&f); /* a fresh process opens the device from disk */
            child_hook h = {fds[1], 0, 2, cycle % 2 + 1};
            twinedge_set_layer_hook(f.dev, child_layer, &h);
            for (h.inference = 0; h.inference < 4; h.inference++)
                if (twinedge_infer(f.dev, TWINEDGE_RELAY, f.input, f.n_in, out, f.n_out) != TWINEDGE_OK)
                    _exit(4);
            _exit(5); /* should have been killed */
        }
        close(fds[1]);
        uint64_t msg[2];
        int killed = 0;
        while (read(fds[0], msg, sizeof msg) == (ssize_t)sizeof msg) {
            note(cur, msg[0]);
            if (msg[1]) {
                kill(pid, SIGKILL);
                killed = 1;
                break;
            }
        }
        close(fds[0]);
        int status = 0;
        assert_int_equal(waitpid(pid, &status, 0), pid);
        assert_true(killed);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        assert_int_equal(cur->n, 3); /* two whole inferences and the killed one */
        merge_checked(all, cur, "killed process");

        /* restart: a new handle reads the persisted counter */
        fx_reopen_device(&f);
        twinedge_set_layer_hook(f.dev, parent_layer, cur);
        for (int i = 0; i < 2; i++)
            assert_int_equal(twinedge_infer(f.dev, TWINEDGE_RELAY, f.input, f.n_in, out, f.n_out), TWINEDGE_OK);
        assert_int_equal(cur->n, 2);
        merge_checked(all, cur, "restarted process");
    }
    printf("%d kill/restart cycles, %d distinct counters, none reused\n", CYCLES, all->n);
    free(all);
    free(cur);
    free(out);
    fx_teardown(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_counter_survives_sigkill)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
