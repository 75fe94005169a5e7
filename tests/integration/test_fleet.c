/* A fleet of devices against one host pair started as a user would start
 * it (real twinedge-host processes, default settings, mutual TLS on
 * loopback): 64 concurrent twinedge-infer processes, each its own device
 * with its own keys and certificate, all get the exact result, twice in a
 * row, while health checks on both hosts are answered.  32 streams left
 * open on EdgeA hold none of its 8 workers (negative control: the host from
 * before the asynchronous server).  Replicas: 2 + 2, each device's calls on
 * one replica per role.  Then a
 * pair that can hold almost nothing (one worker, a queue of 2): the hosts
 * refuse requests unserved (RESOURCE_EXHAUSTED), the devices send the same
 * bytes again and every one still gets the exact result; the replay guard
 * would have failed a device whose retry repeated a request already
 * served. */
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <cmocka.h>

#include "deploy.h"
#include "harness.h"
#include "health.pb-c.h"
#include "owner.h"
#include "pki.h"
#include "runlib.h"
#include "te_net.h"
#include "te_net_transport.h"
#include "te_npy.h"
#include "twinedge_net.h"

#ifndef TE_HOST_BIN
#error "TE_HOST_BIN must name the twinedge-host executable"
#endif

#define MODEL "lenet5"
#define N_DEVICES 64

typedef struct fleet {
    char dir[256], deploy[300], input[600];
    fx_host a, b;
    float *expect;
    size_t n_out;
} fleet;

/* The start of a (log) file, for a failure's message; "" if unreadable. */
static void read_head(const char *path, char *buf, size_t cap)
{
    size_t k = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        k = fread(buf, 1, cap - 1, f);
        fclose(f);
    }
    buf[k] = '\0';
}

static void device_dir(const fleet *f, int i, char *out, size_t cap) { snprintf(out, cap, "%s/dev-%02d", f->dir, i); }

/* The hosts under test; TE_FLEET_HOST names another twinedge-host, for the
 * negative control by hand: the host from before the asynchronous server
 * (one thread per open stream) fails test_idle_streams_hold_no_thread:
 *   TE_FLEET_HOST=OLD/twinedge-host TE_FLEET_ONLY=test_idle_streams_hold_no_thread test_fleet */
static const char *host_bin(void)
{
    const char *b = getenv("TE_FLEET_HOST");
    return b && *b ? b : TE_HOST_BIN;
}

static void pair_start(fleet *f, const char *tag, const char *const *extra)
{
    fx_host_start(&f->b, host_bin(), f->dir, f->deploy, 'b', tag, 0, NULL, extra);
    fx_host_start(&f->a, host_bin(), f->dir, f->deploy, 'a', tag, 0, f->b.addr, extra);
    te_err err;
    fx_must(te_owner_deploy(f->deploy, f->a.addr, f->b.addr, &err), &err, "deploy");
    char od[400];
    snprintf(od, sizeof od, "%s/owner", f->deploy);
    for (int i = 0; i < N_DEVICES; i++) {
        char dd[400], key[500];
        device_dir(f, i, dd, sizeof dd);
        snprintf(key, sizeof key, "%s/device.key", dd);
        fx_must(te_owner_register_device(od, f->b.addr, key, 10000, &err), &err, "register");
    }
}

static void pair_stop(fleet *f)
{
    int sa = fx_host_stop(&f->a, SIGTERM), sb = fx_host_stop(&f->b, SIGTERM);
    assert_true(WIFEXITED(sa) && WEXITSTATUS(sa) == 0);
    assert_true(WIFEXITED(sb) && WEXITSTATUS(sb) == 0);
}

static int setup(void **state)
{
    fleet *f = calloc(1, sizeof *f);
    te_err err;
    char onnx[512], calib[512];
    snprintf(f->dir, sizeof f->dir, "/tmp/te-fleet-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->deploy, sizeof f->deploy, "%s/deploy", f->dir);
    fx_data(onnx, sizeof onnx, MODEL ".onnx");
    fx_data(calib, sizeof calib, MODEL ".calib.npy");
    fx_data(f->input, sizeof f->input, MODEL ".input.npy");
    fx_must(te_owner_compile(onnx, calib, NULL, f->deploy, &err), &err, "compile");
    fx_must(te_pki_deployment(f->deploy, &err), &err, "pki");
    for (int i = 0; i < N_DEVICES; i++) {
        char dd[400], name[32];
        device_dir(f, i, dd, sizeof dd);
        snprintf(name, sizeof name, "fleet-%02d", i);
        fx_must(te_owner_provision(f->deploy, name, dd, &err), &err, "provision");
        fx_must(te_pki_device(f->deploy, name, dd, &err), &err, "device pki");
    }
    /* every device's private result is the owner's fixed-point reference */
    te_shape s;
    float *in = NULL;
    fx_must(te_npy_read(f->input, &s, &in, &err), &err, "input");
    twinedge_device *dev = NULL;
    char dd[400];
    device_dir(f, 0, dd, sizeof dd);
    assert_int_equal(twinedge_open(dd, &dev), TWINEDGE_OK);
    int64_t dims[8];
    int nd = 0;
    twinedge_output_shape(dev, dims, &nd);
    twinedge_close(dev);
    f->n_out = 1;
    for (int i = 0; i < nd; i++)
        f->n_out *= (size_t)dims[i];
    f->expect = calloc(f->n_out, sizeof *f->expect);
    fx_must(te_reference_fixed(f->deploy, in, (size_t)te_shape_numel(&s), f->expect, f->n_out, &err), &err,
            "reference");
    free(in);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fleet *f = *state;
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f->expect);
    free(f);
    return 0;
}

/* Health checks on both hosts every 50 ms while the fleet runs. */
typedef struct prober {
    fleet *f;
    volatile int stop, ready;
    int checks, failures, not_serving;
    double worst;
    char msg[TE_ERR_MSG_MAX];
} prober;

static void *probe(void *arg)
{
    prober *p = arg;
    te_net_creds creds;
    te_err err;
    char od[400];
    snprintf(od, sizeof od, "%s/owner", p->f->deploy);
    if (te_net_creds_load(od, &creds, &err) != TE_OK) {
        p->failures++;
        p->ready = 1;
        return NULL;
    }
    te_net_channel *ch[2] = {NULL, NULL};
    const char *addr[2] = {p->f->a.addr, p->f->b.addr}, *name[2] = {TE_CN_EDGE_A, TE_CN_EDGE_B};
    for (int i = 0; i < 2; i++) {
        te_net_channel_config cc = {addr[i], &creds, name[i], 0};
        if (te_net_channel_new(&cc, &ch[i], &err) != TE_OK) {
            p->failures++;
            snprintf(p->msg, sizeof p->msg, "%s", err.msg);
        }
    }
    /* connected before the fleet starts: what is measured is how long a
     * check waits on a busy host, not a TLS handshake among 128 others */
    for (int i = 0; i < 2 && !p->failures; i++) {
        uint8_t *resp = NULL;
        size_t len = 0;
        if (te_net_unary(ch[i], TE_SVC_HEALTH_CHECK, (const uint8_t *)"", 0, &resp, &len, 10000, &err) != TE_OK) {
            p->failures++;
            snprintf(p->msg, sizeof p->msg, "%s", err.msg);
        }
        free(resp);
    }
    p->ready = 1;
    while (!p->stop && !p->failures) {
        for (int i = 0; i < 2; i++) {
            uint8_t *resp = NULL;
            size_t len = 0;
            double t0 = fx_now_s();
            /* an empty HealthCheckRequest: every service */
            /* a generous deadline: on two cores shared with 64 devices'
             * TLS set-ups (and under the sanitizers) a check can wait
             * seconds for a core; what must not happen is waiting for a
             * worker, which would take the whole waves */
            te_status st = te_net_unary(ch[i], TE_SVC_HEALTH_CHECK, (const uint8_t *)"", 0, &resp, &len, 30000, &err);
            double dt = fx_now_s() - t0;
            Grpc__Health__V1__HealthCheckResponse *r =
                st == TE_OK ? grpc__health__v1__health_check_response__unpack(NULL, len, resp) : NULL;
            /* what is measured is that the check is answered, whatever
             * the host's state, and how soon */
            if (!r) {
                p->failures++;
                snprintf(p->msg, sizeof p->msg, "%s", st != TE_OK ? err.msg : "malformed HealthCheckResponse");
            } else if (r->status != GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING) {
                p->not_serving++;
            }
            if (r)
                grpc__health__v1__health_check_response__free_unpacked(r, NULL);
            free(resp);
            p->checks++;
            if (dt > p->worst)
                p->worst = dt;
        }
        usleep(50 * 1000);
    }
    te_net_channel_free(ch[0]);
    te_net_channel_free(ch[1]);
    te_net_creds_free(&creds);
    return NULL;
}

/* n twinedge-infer processes at once; returns how many gave the exact result. */
static int run_fleet(fleet *f, int n, const char *label)
{
    pid_t pids[N_DEVICES];
    double t0 = fx_now_s();
    for (int i = 0; i < n; i++) {
        char dd[400], out[500], log[500];
        device_dir(f, i, dd, sizeof dd);
        snprintf(out, sizeof out, "%s/out.npy", dd);
        snprintf(log, sizeof log, "%s/infer.log", dd);
        unlink(out);
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            FILE *lf = freopen(log, "w", stderr);
            (void)lf;
            if (!freopen("/dev/null", "w", stdout))
                _exit(126);
            execl(TE_INFER_BIN, TE_INFER_BIN, dd, f->input, "-o", out, "--edge-a", f->a.addr, "--edge-b",
                  f->b.addr, "--mode", i % 2 ? "mediated" : "relay", (char *)NULL);
            _exit(127);
        }
    }
    int exact = 0;
    for (int i = 0; i < n; i++) {
        int status = 0;
        waitpid(pids[i], &status, 0);
        char dd[400], out[500], log[500];
        device_dir(f, i, dd, sizeof dd);
        snprintf(out, sizeof out, "%s/out.npy", dd);
        snprintf(log, sizeof log, "%s/infer.log", dd);
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            char msg[1000];
            read_head(log, msg, sizeof msg);
            print_message("%s: device %d: exit %d: %s\n", label, i, WIFEXITED(status) ? WEXITSTATUS(status) : -1,
                          msg);
            continue;
        }
        te_shape s;
        float *y = NULL;
        te_err err;
        if (te_npy_read(out, &s, &y, &err) == TE_OK && (size_t)te_shape_numel(&s) == f->n_out &&
            memcmp(y, f->expect, f->n_out * sizeof *y) == 0)
            exact++;
        else
            print_message("%s: device %d: wrong or missing output\n", label, i);
        free(y);
    }
    print_message("%s: %d processes at once, %d exact results in %.2f s\n", label, n, exact, fx_now_s() - t0);
    return exact;
}

static void test_64_processes_twice(void **state)
{
    fleet *f = *state;
    pair_start(f, "", NULL); /* default settings */
    prober p;
    memset(&p, 0, sizeof p);
    p.f = f;
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, probe, &p), 0);
    while (!p.ready && !p.failures)
        usleep(10000);
    int first = run_fleet(f, N_DEVICES, "first wave");
    int second = run_fleet(f, N_DEVICES, "second wave");
    p.stop = 1;
    pthread_join(th, NULL);
    print_message("health checks during the waves: %d (NOT_SERVING %d), failed %d, slowest %.3f s %s\n", p.checks,
                  p.not_serving, p.failures, p.worst, p.msg);
    pair_stop(f);
    assert_int_equal(first, N_DEVICES);
    assert_int_equal(second, N_DEVICES);
    assert_int_equal(p.failures, 0);
    assert_true(p.checks > 0);
}

/* Lines of a host's log that contain `what`. */
static int log_count(const fleet *f, char role, const char *tag, const char *what)
{
    char path[600], line[2048];
    snprintf(path, sizeof path, "%s/host-%c%s.log", f->dir, role, tag);
    FILE *lf = fopen(path, "r");
    int n = 0;
    while (lf && fgets(line, sizeof line, lf))
        n += strstr(line, what) != NULL;
    if (lf)
        fclose(lf);
    return n;
}

static void test_overload_refused_and_retried(void **state)
{
    fleet *f = *state;
    const char *tight[] = {"--workers", "1", "--max-queue", "2", NULL};
    pair_start(f, "-tight", tight);
    int n = 32;
    int exact = run_fleet(f, n, "one worker, queue of 2");
    pair_stop(f);
    int refused_a = log_count(f, 'a', "-tight", "not served"), refused_b = log_count(f, 'b', "-tight", "not served");
    int replays = log_count(f, 'a', "-tight", "already served") + log_count(f, 'b', "-tight", "already served");
    print_message("refused unserved: EdgeA %d, EdgeB %d; replays refused: %d\n", refused_a, refused_b, replays);
    /* the load did overflow the queue, and every device got through anyway */
    assert_true(refused_a + refused_b > 0);
    assert_int_equal(exact, n);
    assert_int_equal(replays, 0);
}

/* One device of the replica test: `inferences` inferences on one handle. */
typedef struct replica_device {
    fleet *f;
    int index, inferences, ok;
    twinedge_mode mode;
    const char *target_a, *target_b;
    const float *input;
    size_t n_in;
    char msg[600];
    int mixed; /* 1: relay and mediated in turn, from `mode` */
} replica_device;

static void *replica_device_main(void *arg)
{
    replica_device *d = arg;
    char dd[400], tls[500];
    device_dir(d->f, d->index, dd, sizeof dd);
    snprintf(tls, sizeof tls, "%s/tls", dd);
    twinedge_device *dev = NULL;
    twinedge_net *net = NULL;
    float *y = calloc(d->f->n_out, sizeof *y);
    if (twinedge_open(dd, &dev) != TWINEDGE_OK) {
        snprintf(d->msg, sizeof d->msg, "open: %s", twinedge_errmsg(dev));
    } else if (twinedge_connect(dev, d->target_a, d->target_b, tls, 60000, &net) != TWINEDGE_OK) {
        snprintf(d->msg, sizeof d->msg, "connect: %s", twinedge_net_errmsg(net));
    } else {
        for (int k = 0; k < d->inferences; k++) {
            twinedge_mode m = d->mixed && k % 2 ? (d->mode == TWINEDGE_RELAY ? TWINEDGE_MEDIATED : TWINEDGE_RELAY)
                                                 : d->mode;
            if (twinedge_infer(dev, m, d->input, d->n_in, y, d->f->n_out) != TWINEDGE_OK) {
                snprintf(d->msg, sizeof d->msg, "%s", twinedge_errmsg(dev));
                break;
            }
            d->ok += memcmp(y, d->f->expect, d->f->n_out * sizeof *y) == 0;
        }
    }
    twinedge_close(dev);
    twinedge_disconnect(net);
    free(y);
    return NULL;
}

/* Calls of a device in a host's log ("... from device:NAME: ..."). */
static int device_calls(const fleet *f, char role, const char *tag, int i)
{
    char what[64];
    snprintf(what, sizeof what, "from device:fleet-%02d:", i);
    return log_count(f, role, tag, what);
}

/* R + R replicas behind "ipv4:H:P,H:P" targets (*target_a, *target_b),
 * EdgeA's peer naming every EdgeB replica; logs DIR/host-ROLE<prefix><r>.log.
 * The deployment on every replica, and devices 0..n_devices-1 registered
 * with every EdgeB replica. */
enum { R = 2 };
static void replicas_start(fleet *f, const char *prefix, const char *const *extra_a, const char *const *extra_b,
                           fx_host a[R], fx_host b[R], char *target_a, char *target_b, size_t cap, int n_devices)
{
    char tag[16];
    snprintf(target_a, cap, "ipv4:");
    snprintf(target_b, cap, "ipv4:");
    for (int r = 0; r < R; r++) {
        snprintf(tag, sizeof tag, "%s%d", prefix, r);
        fx_host_start(&b[r], TE_HOST_BIN, f->dir, f->deploy, 'b', tag, 0, NULL, extra_b);
        snprintf(target_b + strlen(target_b), cap - strlen(target_b), "%s%s", b[r].addr, r + 1 < R ? "," : "");
    }
    for (int r = 0; r < R; r++) {
        snprintf(tag, sizeof tag, "%s%d", prefix, r);
        fx_host_start(&a[r], TE_HOST_BIN, f->dir, f->deploy, 'a', tag, 0, target_b, extra_a);
        snprintf(target_a + strlen(target_a), cap - strlen(target_a), "%s%s", a[r].addr, r + 1 < R ? "," : "");
    }
    te_err err;
    char od[400];
    snprintf(od, sizeof od, "%s/owner", f->deploy);
    for (int r = 0; r < R; r++) {
        fx_must(te_owner_deploy(f->deploy, a[r].addr, b[r].addr, &err), &err, "deploy");
        for (int i = 0; i < n_devices; i++) {
            char dd[400], key[500];
            device_dir(f, i, dd, sizeof dd);
            snprintf(key, sizeof key, "%s/device.key", dd);
            fx_must(te_owner_register_device(od, b[r].addr, key, 10000, &err), &err, "register");
        }
    }
}

static void replicas_stop(fx_host a[R], fx_host b[R])
{
    for (int r = 0; r < R; r++) {
        int sa = fx_host_stop(&a[r], SIGTERM), sb = fx_host_stop(&b[r], SIGTERM);
        assert_true(WIFEXITED(sa) && WEXITSTATUS(sa) == 0);
        assert_true(WIFEXITED(sb) && WEXITSTATUS(sb) == 0);
    }
}

/* 2 + 2 replicas behind "ipv4:H:P,H:P" targets, EdgeA's peer naming both
 * EdgeB replicas, precompute on: 16 devices, 4 inferences each on one
 * handle (one session), relay and mediated.  Every result is exact; each
 * device's calls all reach one EdgeA replica and (mediated) one EdgeB
 * replica, and the devices spread over both. */
static void test_replica_affinity(void **state)
{
    fleet *f = *state;
    enum { D = 16, K = 4 };
    fx_host a[R], b[R];
    /* every call logged (debug): the logs say which replica served whom */
    const char *pre[] = {"--precompute-mb", "16", "--log-level", "debug", NULL}, *dbg[] = {"--log-level", "debug", NULL};
    char tag[16], target_a[200], target_b[200];
    replicas_start(f, "-r", dbg, pre, a, b, target_a, target_b, sizeof target_a, D);
    te_err err;
    te_shape s;
    float *in = NULL;
    fx_must(te_npy_read(f->input, &s, &in, &err), &err, "input");
    replica_device devs[D];
    pthread_t th[D];
    for (int i = 0; i < D; i++) {
        devs[i] = (replica_device){f, i, K, 0, i % 2 ? TWINEDGE_MEDIATED : TWINEDGE_RELAY, target_a, target_b, in,
                                   (size_t)te_shape_numel(&s), "", 0};
        assert_int_equal(pthread_create(&th[i], NULL, replica_device_main, &devs[i]), 0);
    }
    for (int i = 0; i < D; i++)
        pthread_join(th[i], NULL);
    replicas_stop(a, b);
    free(in);
    int used_a[R] = {0}, used_b[R] = {0};
    for (int i = 0; i < D; i++) {
        if (devs[i].ok != K)
            fail_msg("device %d: %d of %d exact: %s", i, devs[i].ok, K, devs[i].msg);
        int on_a = 0, on_b = 0, calls_a = 0, calls_b = 0;
        for (int r = 0; r < R; r++) {
            snprintf(tag, sizeof tag, "-r%d", r);
            int ca = device_calls(f, 'a', tag, i), cb = device_calls(f, 'b', tag, i);
            on_a += ca > 0;
            on_b += cb > 0;
            calls_a += ca;
            calls_b += cb;
            used_a[r] += ca > 0;
            used_b[r] += cb > 0;
        }
        print_message("device %2d (%s): %d Infer calls on %d EdgeA replica(s), %d on %d EdgeB replica(s)\n", i,
                      i % 2 ? "mediated" : "relay", calls_a, on_a, calls_b, on_b);
        assert_int_equal(calls_a, K); /* one stream per inference */
        assert_int_equal(on_a, 1);
        if (i % 2) {
            assert_int_equal(calls_b, K);
            assert_int_equal(on_b, 1);
        }
    }
    print_message("devices per EdgeA replica: %d, %d; per EdgeB replica (mediated): %d, %d\n", used_a[0], used_a[1],
                  used_b[0], used_b[1]);
    /* 16 devices: all on one replica with probability 2^-15 */
    assert_true(used_a[0] > 0 && used_a[1] > 0);
}

/* A host's metrics port, from its log ("metrics on ... (port N)"). */
static int metrics_port(const fleet *f, char role, const char *tag)
{
    char path[600], line[2048];
    snprintf(path, sizeof path, "%s/host-%c%s.log", f->dir, role, tag);
    FILE *lf = fopen(path, "r");
    int port = 0;
    while (lf && fgets(line, sizeof line, lf)) {
        const char *p = strstr(line, "metrics on http://");
        if (p && (p = strstr(p, "(port ")))
            port = atoi(p + 6);
    }
    if (lf)
        fclose(lf);
    if (port <= 0)
        fail_msg("no metrics port in %s", path);
    return port;
}

/* What one device's session did, seen from the hosts: its Infer calls per
 * EdgeA replica (the logs), and per EdgeB replica the mask shares served
 * from precompute and on demand (EdgeB's counters over the device's turn;
 * the devices take turns, so the counters are the device's alone). */
typedef struct session_seen {
    int calls_a[R];
    unsigned long long hits[R], misses[R];
} session_seen;

enum { SEEN_DEVICES = 6, SEEN_INFERENCES = 4 };

/* 2 + 2 replicas, precompute on EdgeB, SEEN_DEVICES devices one after the
 * other, each SEEN_INFERENCES inferences on one handle (one session):
 * relay, mediated, or both in turn. */
static void replica_sessions(fleet *f, const char *prefix, session_seen seen[SEEN_DEVICES])
{
    fx_host a[R], b[R];
    const char *dbg[] = {"--log-level", "debug", NULL},
               *pre[] = {"--precompute-mb", "16", "--metrics-listen", "127.0.0.1:0", NULL};
    char tag[16], target_a[200], target_b[200];
    replicas_start(f, prefix, dbg, pre, a, b, target_a, target_b, sizeof target_a, SEEN_DEVICES);
    int port[R];
    for (int r = 0; r < R; r++) {
        snprintf(tag, sizeof tag, "%s%d", prefix, r);
        port[r] = metrics_port(f, 'b', tag);
    }
    te_shape s;
    float *in = NULL;
    te_err err;
    fx_must(te_npy_read(f->input, &s, &in, &err), &err, "input");
    for (int i = 0; i < SEEN_DEVICES; i++) {
        unsigned long long h0[R], m0[R];
        for (int r = 0; r < R; r++) {
            h0[r] = fx_metric(port[r], "twinedge_precompute_hits_total");
            m0[r] = fx_metric(port[r], "twinedge_precompute_misses_total");
        }
        replica_device d = {f, i, SEEN_INFERENCES, 0, i % 2 ? TWINEDGE_MEDIATED : TWINEDGE_RELAY, target_a,
                            target_b, in, (size_t)te_shape_numel(&s), "", i % 3 == 2};
        replica_device_main(&d);
        if (d.ok != SEEN_INFERENCES) {
            replicas_stop(a, b);
            fail_msg("device %d: %d of %d exact: %s", i, d.ok, SEEN_INFERENCES, d.msg);
        }
        for (int r = 0; r < R; r++) {
            seen[i].hits[r] = fx_metric(port[r], "twinedge_precompute_hits_total") - h0[r];
            seen[i].misses[r] = fx_metric(port[r], "twinedge_precompute_misses_total") - m0[r];
        }
    }
    free(in);
    replicas_stop(a, b);
    for (int i = 0; i < SEEN_DEVICES; i++) {
        for (int r = 0; r < R; r++) {
            snprintf(tag, sizeof tag, "%s%d", prefix, r);
            seen[i].calls_a[r] = device_calls(f, 'a', tag, i);
        }
        print_message("device %d (%s): Infer calls on EdgeA replicas %d, %d; EdgeB replicas' shares "
                      "precomputed/on demand %llu/%llu, %llu/%llu\n",
                      i, i % 3 == 2 ? "relay and mediated in turn" : i % 2 ? "mediated" : "relay",
                      seen[i].calls_a[0], seen[i].calls_a[1], seen[i].hits[0], seen[i].misses[0], seen[i].hits[1],
                      seen[i].misses[1]);
    }
}

/* Replicas used by one session: EdgeA (calls_a), EdgeB (shares served). */
static int replicas_used(const session_seen *v, char role)
{
    int n = 0;
    for (int r = 0; r < R; r++)
        n += role == 'a' ? v->calls_a[r] > 0 : v->hits[r] + v->misses[r] > 0;
    return n;
}

/* Of the shares after the sessions' first inferences (v[0..n-1]), the
 * part precomputed. */
static double hit_rate_after_first(const session_seen *v, int n)
{
    unsigned long long hits = 0, after_first = 0;
    for (int i = 0; i < n; i++) {
        unsigned long long all = 0;
        for (int r = 0; r < R; r++) {
            hits += v[i].hits[r];
            all += v[i].hits[r] + v[i].misses[r];
        }
        after_first += all - all / SEEN_INFERENCES;
    }
    return after_first ? (double)hits / (double)after_first : 0.0;
}

/* A session's precompute rate that replica affinity keeps above and round
 * robin below: with 2 replicas, round robin finds at most the shares of the
 * layers sent where the previous inference ended (about half), and a
 * session kept on one replica misses only when its job has not started
 * (the precompute thread still busy with the device before). */
#define KEPT_RATE 0.75

/* Each device session keeps one EdgeA and one EdgeB replica (relay: EdgeA's
 * MaskShare calls; mediated: the device's own; both in turn on one
 * handle), so every share after the first inference was precomputed on
 * the replica that serves it. */
static void test_replica_sessions_keep_replicas(void **state)
{
    unsetenv("TE_NET_NO_AFFINITY");
    session_seen seen[SEEN_DEVICES];
    memset(seen, 0, sizeof seen);
    replica_sessions(*state, "-s", seen);
    int used_b[R] = {0};
    double all = hit_rate_after_first(seen, SEEN_DEVICES);
    for (int i = 0; i < SEEN_DEVICES; i++)
        for (int r = 0; r < R; r++)
            used_b[r] += seen[i].hits[r] + seen[i].misses[r] > 0;
    print_message("device sessions per EdgeB replica: %d, %d; shares after the first inference precomputed: "
                  "%.1f%%\n",
                  used_b[0], used_b[1], 100.0 * all);
    for (int i = 0; i < SEEN_DEVICES; i++) {
        assert_int_equal(replicas_used(&seen[i], 'a'), 1);
        assert_int_equal(replicas_used(&seen[i], 'b'), 1);
        assert_true(hit_rate_after_first(&seen[i], 1) >= KEPT_RATE);
    }
    assert_true(all >= 0.9); /* nearly every share after the first inference */
}

/* Negative control: TE_NET_NO_AFFINITY=1 (devices and EdgeA's peer link
 * go round robin) and the same run sees sessions on both replicas of a
 * role and shares computed on demand after the first inference: the
 * checks above catch a transport without affinity. */
static void test_replica_sessions_round_robin(void **state)
{
    setenv("TE_NET_NO_AFFINITY", "1", 1);
    session_seen seen[SEEN_DEVICES];
    memset(seen, 0, sizeof seen);
    replica_sessions(*state, "-n", seen);
    unsetenv("TE_NET_NO_AFFINITY");
    int split_a = 0, split_b = 0, low = 0;
    for (int i = 0; i < SEEN_DEVICES; i++) {
        split_a += replicas_used(&seen[i], 'a') > 1;
        split_b += replicas_used(&seen[i], 'b') > 1;
        low += hit_rate_after_first(&seen[i], 1) < KEPT_RATE;
    }
    print_message("round robin: sessions on both EdgeA replicas %d, on both EdgeB replicas %d, precompute "
                  "below %.0f%% %d (of %d); shares after the first inference precomputed: %.1f%%\n",
                  split_a, split_b, 100.0 * KEPT_RATE, low, SEEN_DEVICES,
                  100.0 * hit_rate_after_first(seen, SEEN_DEVICES));
    assert_int_equal(split_a, SEEN_DEVICES);
    assert_int_equal(split_b, SEEN_DEVICES);
    assert_int_equal(low, SEEN_DEVICES);
}

/* Open streams hold no thread: 32 Infer streams on EdgeA, more than its 8
 * workers, each answered at once (one malformed request each, an error
 * inside the response, after which the stream waits for its device) and
 * left open; a device then runs an inference with a 10 s deadline and must
 * get its exact result.  Negative control: the host from before the
 * asynchronous server (TE_FLEET_HOST) parks a worker on each open stream,
 * so the ninth stream is answered only when the first one's 20 s deadline
 * has ended it. */
static void test_idle_streams_hold_no_thread(void **state)
{
    fleet *f = *state;
    pair_start(f, "-idle", NULL);
    enum { IDLE = 32 };
    te_net_channel *ch[IDLE];
    te_net_stream *st[IDLE];
    te_net_creds creds[IDLE];
    te_err err;
    double t_open = fx_now_s();
    for (int i = 0; i < IDLE; i++) {
        char dd[400], tls[500];
        device_dir(f, i % N_DEVICES, dd, sizeof dd);
        snprintf(tls, sizeof tls, "%s/tls", dd);
        fx_must(te_net_creds_load(tls, &creds[i], &err), &err, "device credentials");
        te_net_channel_config cc = {f->a.addr, &creds[i], TE_CN_EDGE_A, 0};
        fx_must(te_net_channel_new(&cc, &ch[i], &err), &err, "channel");
        /* 20 s: a host that parks a thread per stream answers stream 9
         * only when stream 1 has ended */
        fx_must(te_net_stream_open(ch[i], TE_SVC_INFER, 20000, &st[i], &err), &err, "stream");
        uint8_t junk[8] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, *resp = NULL;
        size_t len = 0;
        /* answered (an error in the response); the stream stays open */
        fx_must(te_net_stream_exchange(st[i], junk, sizeof junk, &resp, &len, &err), &err, "exchange");
        free(resp);
    }
    t_open = fx_now_s() - t_open;
    char dd[400], out[500], log[500], cmd[3000];
    device_dir(f, N_DEVICES - 1, dd, sizeof dd);
    snprintf(out, sizeof out, "%s/idle-out.npy", dd);
    snprintf(log, sizeof log, "%s/idle-infer.log", dd);
    snprintf(cmd, sizeof cmd, "%s %s %s -o %s --edge-a %s --edge-b %s --timeout-ms 10000 >%s 2>&1", TE_INFER_BIN,
             dd, f->input, out, f->a.addr, f->b.addr, log);
    double t0 = fx_now_s();
    int rc = system(cmd);
    double dt = fx_now_s() - t0;
    for (int i = 0; i < IDLE; i++) {
        te_net_stream_free(st[i]);
        te_net_channel_free(ch[i]);
        te_net_creds_free(&creds[i]);
    }
    char msg[1000];
    read_head(log, msg, sizeof msg);
    print_message("%s: %d streams answered and left open in %.2f s; then a device's inference %s in %.2f s %s\n",
                  host_bin(), IDLE, t_open, rc == 0 ? "succeeded" : "failed", dt, rc == 0 ? "" : msg);
    pair_stop(f);
    assert_true(t_open < 10.0); /* no stream waited for another to end */
    assert_int_equal(rc, 0);
    te_shape s;
    float *y = NULL;
    fx_must(te_npy_read(out, &s, &y, &err), &err, "output");
    assert_memory_equal(y, f->expect, f->n_out * sizeof *y);
    free(y);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_64_processes_twice),
        cmocka_unit_test(test_idle_streams_hold_no_thread),
        cmocka_unit_test(test_overload_refused_and_retried),
        cmocka_unit_test(test_replica_affinity),
        cmocka_unit_test(test_replica_sessions_keep_replicas),
        cmocka_unit_test(test_replica_sessions_round_robin),
    };
    const char *only = getenv("TE_FLEET_ONLY");
    if (only && *only)
        cmocka_set_test_filter(only);
    return cmocka_run_group_tests(tests, setup, teardown);
}
