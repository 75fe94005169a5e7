/* Scale-out: two replicas of each role (four twinedge-host processes with
 * the same deployment and credentials) behind gRPC round-robin targets
 * ("ipv4:H:P,H:P") for the devices' links and EdgeA's link to EdgeB.
 * Concurrent devices (one thread and one provisioned device each) run
 * inferences in both modes; every result must equal the owner's fixed-point
 * reference bit for bit, none may fail, no replica may report an error
 * (its Stats), and together they served every request.  A device keeps
 * its replicas (net/te_net_transport.c), so with 2 devices a replica may
 * serve none: test_fleet's replica test checks the spread, with 16.  Default: 2 devices, 40 inferences; TE_SCALEOUT_FULL
 * (label slow): 8 devices, 1000 inferences. */
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
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "deploy.h"
#include "harness.h"
#include "owner.h"
#include "pki.h"
#include "runlib.h"
#include "service.pb-c.h"
#include "te_net.h"
#include "te_net_transport.h"
#include "te_npy.h"
#include "twinedge_net.h"

#ifndef TE_HOST_BIN
#error "TE_HOST_BIN must name the twinedge-host executable"
#endif

#ifdef TE_SCALEOUT_FULL
#define N_DEVICES 8
#define N_INFER 1000
#else
#define N_DEVICES 2
#define N_INFER 40
#endif
#define N_REPLICAS 2
#define MODEL "lenet5"
#define TIMEOUT_MS 20000

typedef struct world {
    char dir[64], deploy[128];
    char dev_dir[N_DEVICES][128];
    pid_t pid[2][N_REPLICAS];          /* [role a/b][replica] */
    char addr[2][N_REPLICAS][32];
    char target[2][128];               /* "ipv4:...,..." per role */
    float *input[N_DEVICES], *expect[N_DEVICES];
    size_t n_in, n_out;
} world;

static void host_start(world *w, int role, int r)
{
    char store[128], creds[160], portfile[128], log[128];
    char rc[2] = {role ? 'b' : 'a', 0};
    snprintf(store, sizeof store, "%s/store-%s%d", w->dir, rc, r);
    snprintf(creds, sizeof creds, "%s/hosts/%s", w->deploy, rc);
    snprintf(portfile, sizeof portfile, "%s/port-%s%d", w->dir, rc, r);
    snprintf(log, sizeof log, "%s/host-%s%d.log", w->dir, rc, r);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *f = freopen(log, "a", stderr);
        (void)f;
        if (role == 0)
            execl(TE_HOST_BIN, TE_HOST_BIN, "--role", rc, "--listen", "127.0.0.1:0", "--store", store,
                  "--credentials", creds, "--port-file", portfile, "--peer", w->target[1], "--workers", "8",
                  (char *)NULL);
        else
            execl(TE_HOST_BIN, TE_HOST_BIN, "--role", rc, "--listen", "127.0.0.1:0", "--store", store,
                  "--credentials", creds, "--port-file", portfile, "--workers", "8", (char *)NULL);
        _exit(127);
    }
    w->pid[role][r] = pid;
    for (int i = 0; i < 500; i++) {
        FILE *f = fopen(portfile, "r");
        if (f) {
            int p = 0;
            int ok = fscanf(f, "%d", &p) == 1;
            fclose(f);
            if (ok && p > 0) {
                snprintf(w->addr[role][r], sizeof w->addr[role][r], "127.0.0.1:%d", p);
                return;
            }
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            fail_msg("twinedge-host %s%d exited during start-up (see %s)", rc, r, log);
        usleep(20000);
    }
    fail_msg("twinedge-host %s%d did not start (see %s)", rc, r, log);
}

static void make_target(world *w, int role)
{
    /* built in a local buffer: the addresses live in the same struct */
    char t[sizeof w->target[role]];
    size_t l = (size_t)snprintf(t, sizeof t, "ipv4:%s", w->addr[role][0]);
    for (int r = 1; r < N_REPLICAS && l < sizeof t; r++)
        l += (size_t)snprintf(t + l, sizeof t - l, ",%s", w->addr[role][r]);
    memcpy(w->target[role], t, sizeof t);
}

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    te_err err;
    snprintf(w->dir, sizeof w->dir, "/tmp/te-scaleout-XXXXXX");
    fx_net_deploy(w->dir, w->deploy, sizeof w->deploy, MODEL);
    for (int d = 0; d < N_DEVICES; d++) {
        char name[16];
        snprintf(name, sizeof name, "d%d", d);
        snprintf(w->dev_dir[d], sizeof w->dev_dir[d], "%s/device-%d", w->dir, d);
        fx_net_device(w->deploy, name, w->dev_dir[d]);
    }
    float *x = fx_read_input(MODEL, &w->n_in);
    w->n_out = fx_device_n_out(w->dev_dir[0]);
    /* a different input per device, each with its own plaintext fixed-point reference */
    for (int d = 0; d < N_DEVICES; d++) {
        w->input[d] = calloc(w->n_in, sizeof *w->input[d]);
        w->expect[d] = calloc(w->n_out, sizeof *w->expect[d]);
        for (size_t i = 0; i < w->n_in; i++)
            w->input[d][i] = x[(i + (size_t)d * 37) % w->n_in] * (1.0f - 0.05f * (float)d);
        fx_must(te_reference_fixed(w->deploy, w->input[d], w->n_in, w->expect[d], w->n_out, &err), &err, "reference");
    }
    free(x);
    /* EdgeB replicas first: EdgeA's peer target names them all */
    for (int r = 0; r < N_REPLICAS; r++)
        host_start(w, 1, r);
    make_target(w, 1);
    for (int r = 0; r < N_REPLICAS; r++)
        host_start(w, 0, r);
    make_target(w, 0);
    /* the same deployment and device keys on every replica */
    for (int r = 0; r < N_REPLICAS; r++)
        fx_must(te_owner_deploy(w->deploy, w->addr[0][r], w->addr[1][r], &err), &err, "deploy");
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    if (!w)
        return 0;
    for (int role = 0; role < 2; role++)
        for (int r = 0; r < N_REPLICAS; r++) {
            if (w->pid[role][r] <= 0)
                continue;
            kill(w->pid[role][r], SIGTERM);
            int status = 0;
            waitpid(w->pid[role][r], &status, 0);
            assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
        }
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", w->dir);
    assert_int_equal(system(cmd), 0);
    for (int d = 0; d < N_DEVICES; d++) {
        free(w->input[d]);
        free(w->expect[d]);
    }
    free(w);
    return 0;
}

typedef struct job {
    world *w;
    int d, runs, ok, identical;
    char msg[600];
} job;

static void *device_thread(void *arg)
{
    job *j = arg;
    world *w = j->w;
    char tls[160];
    snprintf(tls, sizeof tls, "%s/tls", w->dev_dir[j->d]);
    twinedge_device *dev = NULL;
    twinedge_net *net = NULL;
    if (twinedge_open(w->dev_dir[j->d], &dev) != TWINEDGE_OK) {
        snprintf(j->msg, sizeof j->msg, "open: %s", twinedge_errmsg(dev));
    } else if (twinedge_connect(dev, w->target[0], w->target[1], tls, TIMEOUT_MS, &net) != TWINEDGE_OK) {
        snprintf(j->msg, sizeof j->msg, "connect: %s", twinedge_net_errmsg(net));
    } else {
        float *y = calloc(w->n_out, sizeof *y);
        for (int i = 0; i < j->runs; i++) {
            memset(y, 0, w->n_out * sizeof *y);
            int rc = twinedge_infer(dev, i % 2 ? TWINEDGE_MEDIATED : TWINEDGE_RELAY, w->input[j->d], w->n_in, y,
                                    w->n_out);
            if (rc != TWINEDGE_OK) {
                snprintf(j->msg, sizeof j->msg, "inference %d: %s", i, twinedge_errmsg(dev));
                continue;
            }
            j->ok++;
            j->identical += memcmp(y, w->expect[j->d], w->n_out * sizeof *y) == 0;
        }
        free(y);
    }
    twinedge_close(dev);
    twinedge_disconnect(net);
    return NULL;
}

static void test_replicas_share_the_load(void **state)
{
    world *w = *state;
    job jobs[N_DEVICES];
    pthread_t th[N_DEVICES];
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int d = 0; d < N_DEVICES; d++) {
        memset(&jobs[d], 0, sizeof jobs[d]);
        jobs[d].w = w;
        jobs[d].d = d;
        jobs[d].runs = N_INFER / N_DEVICES + (d < N_INFER % N_DEVICES);
        assert_int_equal(pthread_create(&th[d], NULL, device_thread, &jobs[d]), 0);
    }
    int ok = 0, identical = 0, runs = 0;
    for (int d = 0; d < N_DEVICES; d++) {
        pthread_join(th[d], NULL);
        if (jobs[d].msg[0])
            print_message("device d%d: %s\n", d, jobs[d].msg);
        ok += jobs[d].ok;
        identical += jobs[d].identical;
        runs += jobs[d].runs;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    print_message("%d devices, %d inferences over %d+%d replicas: %d ok, %d bit-identical, %.2f s (%.1f/s)\n",
                  N_DEVICES, runs, N_REPLICAS, N_REPLICAS, ok, identical, wall, runs / wall);
    assert_int_equal(runs, N_INFER);
    assert_int_equal(ok, N_INFER);
    assert_int_equal(identical, N_INFER);

    /* no replica reported an error; together they served everything */
    te_err err;
    te_net_creds oc;
    char od[160];
    snprintf(od, sizeof od, "%s/owner", w->deploy);
    fx_must(te_net_creds_load(od, &oc, &err), &err, "owner creds");
    uint64_t total[2] = {0, 0};
    for (int role = 0; role < 2; role++)
        for (int r = 0; r < N_REPLICAS; r++) {
            te_net_channel_config cc = {w->addr[role][r], &oc, role ? TE_CN_EDGE_B : TE_CN_EDGE_A, 0};
            te_net_channel *ch = NULL;
            fx_must(te_net_channel_new(&cc, &ch, &err), &err, "channel");
            uint8_t *resp = NULL;
            size_t len = 0;
            fx_must(te_net_unary(ch, TE_SVC_STATS, (const uint8_t *)"", 0, &resp, &len, TIMEOUT_MS, &err), &err,
                    "stats");
            Twinedge__StatsReply *sr = twinedge__stats_reply__unpack(NULL, len, resp);
            assert_non_null(sr);
            print_message("Edge%c replica %d (%s): %llu requests, %llu errors\n", role ? 'B' : 'A', r,
                          w->addr[role][r], (unsigned long long)sr->requests, (unsigned long long)sr->errors);
            assert_int_equal(sr->errors, 0);
            total[role] += sr->requests;
            twinedge__stats_reply__free_unpacked(sr, NULL);
            free(resp);
            te_net_channel_free(ch);
        }
    te_net_creds_free(&oc);
    /* each inference asks EdgeA once per linear layer and EdgeB once per
     * layer (the device in mediated mode, EdgeA in relay mode) */
    assert_int_equal(total[0], total[1]);
    assert_int_equal(total[0] % N_INFER, 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_replicas_share_the_load),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
