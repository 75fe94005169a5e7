/* Two real twinedge-host processes on loopback with mutual TLS: deploy,
 * register, infer in both modes (bit-identical to the in-process run),
 * refused credentials, unknown devices, non-owner deploys and Stats,
 * malformed requests beside a good device, 32 devices at once, unreachable
 * hosts, timeouts and refused credentials told apart (twinedge-infer), a
 * host killed mid-inference and restarted from its store, and a clean
 * SIGTERM shutdown. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
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
#include "te_bundle.h"
#include "te_net.h"
#include "te_net_transport.h"
#include "te_npy.h"
#include "twinedge_net.h"
#include "wire.pb-c.h"

#ifndef TE_HOST_BIN
#error "TE_HOST_BIN must name the twinedge-host executable"
#endif

#define MODEL "lenet5"
#define TIMEOUT_MS 5000

typedef fx_host hostproc;

typedef struct world {
    char dir[256], deploy[300], device[300], device2[300], rogue[300], nocert[300];
    char addr_a[64], addr_b[64];
    hostproc a, b;
    float *input;
    size_t n_in, n_out;
    float *expect;          /* the in-process private result */
} world;

/* Start a host; port 0: any free port (read back from its port file). */
static void host_start(world *w, hostproc *h, char role, int port)
{
    char listen[64], store[400], creds[400], portfile[400], log[400], peer[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    snprintf(store, sizeof store, "%s/store-%c", w->dir, role);
    snprintf(creds, sizeof creds, "%s/hosts/%c", w->deploy, role);
    snprintf(portfile, sizeof portfile, "%s/port-%c", w->dir, role);
    snprintf(log, sizeof log, "%s/host-%c.log", w->dir, role);
    snprintf(peer, sizeof peer, "127.0.0.1:%d", w->b.port);
    unlink(portfile);
    /* EdgeA from a config file (flags override it), EdgeB from flags only */
    char conf[400];
    snprintf(conf, sizeof conf, "%s/host-a.conf", w->dir);
    if (role == 'a') {
        FILE *cf = fopen(conf, "w");
        assert_non_null(cf);
        fprintf(cf, "# EdgeA\nrole = a\nlisten = 127.0.0.1:9  # overridden\nplugin = cpu\nstore = %s\n"
                    "credentials = %s\npeer = %s\nworkers = 4\n",
                store, creds, peer);
        fclose(cf);
    }
    char r[2] = {role, 0};
    const char *args_a[] = {"--config", conf, "--listen", listen, "--port-file", portfile, NULL};
    const char *args_b[] = {"--role", r, "--listen", listen, "--store", store, "--credentials", creds,
                            "--port-file", portfile, NULL};
    fx_host_spawn(h, TE_HOST_BIN, role, role == 'a' ? args_a : args_b, portfile, log);
    snprintf(role == 'a' ? w->addr_a : w->addr_b, 64, "%s", h->addr);
}

static int host_stop(hostproc *h, int sig) { return fx_host_stop(h, sig); }

static twinedge_device *open_device(const char *dir)
{
    twinedge_device *dev = NULL;
    if (twinedge_open(dir, &dev) != TWINEDGE_OK)
        fail_msg("open %s: %s", dir, twinedge_errmsg(dev));
    return dev;
}

/* Run one inference over the network; returns the status, output in out. */
static int net_infer(world *w, const char *device_dir, const char *tls, twinedge_mode mode, float *out,
                     char *msg, size_t cap)
{
    twinedge_device *dev = open_device(device_dir);
    twinedge_net *net = NULL;
    int rc = twinedge_connect(dev, w->addr_a, w->addr_b, tls, TIMEOUT_MS, &net);
    if (rc != TWINEDGE_OK) {
        snprintf(msg, cap, "%s", twinedge_net_errmsg(net));
    } else {
        rc = twinedge_infer(dev, mode, w->input, w->n_in, out, w->n_out);
        snprintf(msg, cap, "%s", twinedge_errmsg(dev));
    }
    twinedge_close(dev);
    twinedge_disconnect(net);
    return rc;
}

static int setup(void **state)
{
    world *w = calloc(1, sizeof *w);
    te_err err;
    char tls[400];
    snprintf(w->dir, sizeof w->dir, "/tmp/te-net-hosts-XXXXXX");
    fx_net_deploy(w->dir, w->deploy, sizeof w->deploy, MODEL);
    snprintf(w->device, sizeof w->device, "%s/device", w->dir);
    snprintf(w->device2, sizeof w->device2, "%s/device2", w->dir);
    snprintf(w->rogue, sizeof w->rogue, "%s/rogue", w->dir);
    snprintf(w->nocert, sizeof w->nocert, "%s/nocert", w->dir);
    fx_net_device(w->deploy, "d1", w->device);

    w->input = fx_read_input(MODEL, &w->n_in);

    /* the in-process result, the reference for the network */
    te_local_pair *pair = NULL;
    char key[400];
    snprintf(key, sizeof key, "%s/device.key", w->device);
    te_local_config lc = {w->deploy, key, NULL, NULL, NULL, NULL, NULL};
    fx_must(te_local_pair_start(&lc, &pair, &err), &err, "in-process pair");
    twinedge_device *dev = open_device(w->device);
    int64_t dims[8];
    int nd = 0;
    twinedge_output_shape(dev, dims, &nd);
    w->n_out = 1;
    for (int i = 0; i < nd; i++)
        w->n_out *= (size_t)dims[i];
    w->expect = calloc(w->n_out, sizeof *w->expect);
    twinedge_use_transport(dev, pair->device_link);
    if (twinedge_infer(dev, TWINEDGE_RELAY, w->input, w->n_in, w->expect, w->n_out) != TWINEDGE_OK)
        fail_msg("in-process inference: %s", twinedge_errmsg(dev));
    twinedge_close(dev);
    te_local_pair_stop(pair);
    /* and it is the owner's fixed-point reference */
    float *ref = calloc(w->n_out, sizeof *ref);
    fx_must(te_reference_fixed(w->deploy, w->input, w->n_in, ref, w->n_out, &err), &err, "reference");
    assert_memory_equal(ref, w->expect, w->n_out * sizeof *ref);
    free(ref);

    /* a certificate from another CA, and a directory with the CA only */
    char rca[400];
    snprintf(rca, sizeof rca, "%s/rogue-ca", w->dir);
    fx_must(te_pki_init_ca(rca, &err), &err, "rogue ca");
    fx_must(te_pki_issue(rca, "device:d1", 0, w->rogue, &err), &err, "rogue cert");
    char cmd[2000];
    snprintf(cmd, sizeof cmd, "cp %s/ca/ca.pem %s/ca.pem && mkdir -p %s && cp %s/ca/ca.pem %s/ca.pem", w->deploy,
             w->rogue, w->nocert, w->deploy, w->nocert);
    assert_int_equal(system(cmd), 0);
    (void)tls;

    host_start(w, &w->b, 'b', 0);
    host_start(w, &w->a, 'a', 0);
    fx_must(te_owner_deploy(w->deploy, w->addr_a, w->addr_b, &err), &err, "deploy");
    *state = w;
    return 0;
}

static int teardown(void **state)
{
    world *w = *state;
    if (!w)
        return 0; /* the set-up failed and said why */
    int sa = host_stop(&w->a, SIGTERM), sb = host_stop(&w->b, SIGTERM);
    /* a clean shutdown on SIGTERM */
    assert_true(WIFEXITED(sa) && WEXITSTATUS(sa) == 0);
    assert_true(WIFEXITED(sb) && WEXITSTATUS(sb) == 0);
    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf %s", w->dir);
    assert_int_equal(system(cmd), 0);
    free(w->input);
    free(w->expect);
    free(w);
    return 0;
}

static void tls_of(const char *device_dir, char *out, size_t cap) { snprintf(out, cap, "%s/tls", device_dir); }

static void test_both_modes_bit_identical(void **state)
{
    world *w = *state;
    char tls[400], msg[600];
    tls_of(w->device, tls, sizeof tls);
    float *y = calloc(w->n_out, sizeof *y);
    twinedge_mode modes[2] = {TWINEDGE_RELAY, TWINEDGE_MEDIATED};
    for (int m = 0; m < 2; m++) {
        memset(y, 0, w->n_out * sizeof *y);
        int rc = net_infer(w, w->device, tls, modes[m], y, msg, sizeof msg);
        if (rc != TWINEDGE_OK)
            fail_msg("network inference (%s): %s", m ? "mediated" : "relay", msg);
        assert_memory_equal(y, w->expect, w->n_out * sizeof *y);
    }
    free(y);

    /* the byte counts match the in-process transport's for the same inference */
    twinedge_device *dev = open_device(w->device);
    twinedge_net *net = NULL;
    assert_int_equal(twinedge_connect(dev, w->addr_a, w->addr_b, tls, TIMEOUT_MS, &net), TWINEDGE_OK);
    y = calloc(w->n_out, sizeof *y);
    assert_int_equal(twinedge_infer(dev, TWINEDGE_MEDIATED, w->input, w->n_in, y, w->n_out), TWINEDGE_OK);
    twinedge_report rep;
    twinedge_last_report(dev, &rep);
    twinedge_net_stats ns;
    twinedge_net_get_stats(net, &ns);
    assert_int_equal(ns.bytes_up, rep.bytes_up);
    assert_int_equal(ns.bytes_down, rep.bytes_down);
    assert_int_equal(ns.bytes_to_a + ns.bytes_to_b, ns.bytes_up);
    assert_int_equal(ns.messages, 2 * (uint64_t)rep.linear_layers);
    twinedge_close(dev);
    twinedge_disconnect(net);
    free(y);

    /* Health and Stats answer the owner */
    te_err err;
    te_net_creds oc;
    char od[400];
    snprintf(od, sizeof od, "%s/owner", w->deploy);
    fx_must(te_net_creds_load(od, &oc, &err), &err, "owner creds");
    te_net_channel_config cc = {w->addr_b, &oc, TE_CN_EDGE_B, 0};
    te_net_channel *ch = NULL;
    fx_must(te_net_channel_new(&cc, &ch, &err), &err, "channel");
    uint8_t *resp = NULL;
    size_t len = 0;
    fx_must(te_net_unary(ch, TE_SVC_HEALTH_CHECK, (const uint8_t *)"", 0, &resp, &len, TIMEOUT_MS, &err), &err,
            "health");
    assert_int_equal(len, 2); /* status = SERVING (field 1, varint 1) */
    assert_int_equal(resp[0], 0x08);
    assert_int_equal(resp[1], 0x01);
    free(resp);
    fx_must(te_net_unary(ch, TE_SVC_STATS, (const uint8_t *)"", 0, &resp, &len, TIMEOUT_MS, &err), &err, "stats");
    assert_true(len > 10);
    free(resp);
    te_net_channel_free(ch);
    te_net_creds_free(&oc);
}

static void test_refused_credentials(void **state)
{
    world *w = *state;
    char msg[600];
    float *y = calloc(w->n_out, sizeof *y);
    /* a certificate from another CA */
    int rc = net_infer(w, w->device, w->rogue, TWINEDGE_MEDIATED, y, msg, sizeof msg);
    if (rc != TWINEDGE_EAUTH)
        fail_msg("rogue certificate: got %d: %s", rc, msg);
    /* no client certificate at all */
    rc = net_infer(w, w->device, w->nocert, TWINEDGE_MEDIATED, y, msg, sizeof msg);
    assert_int_equal(rc, TWINEDGE_EAUTH);
    /* an unreachable host */
    twinedge_device *dev = open_device(w->device);
    twinedge_net *net = NULL;
    char tls[400];
    tls_of(w->device, tls, sizeof tls);
    assert_int_equal(twinedge_connect(dev, "127.0.0.1:1", w->addr_b, tls, 1000, &net), TWINEDGE_OK);
    assert_int_equal(twinedge_infer(dev, TWINEDGE_MEDIATED, w->input, w->n_in, y, w->n_out), TWINEDGE_ETRANSPORT);
    assert_non_null(strstr(twinedge_errmsg(dev), "127.0.0.1:1"));
    assert_non_null(strstr(twinedge_errmsg(dev), "unreachable"));
    twinedge_close(dev);
    twinedge_disconnect(net);
    /* and gRPC let go of the links before twinedge_disconnect returned: an
     * app that exits at once does not race gRPC's threads (without the wait,
     * a handshake or reconnect in flight kept gRPC up for 0 to 70 ms) */
    assert_false(te_net_in_use());
    free(y);
}

/* Stats is the owner's: a device and EdgeA are refused. */
static void test_stats_owner_only(void **state)
{
    world *w = *state;
    te_err err;
    char tls[400], ha[400], od[400];
    tls_of(w->device, tls, sizeof tls);
    snprintf(ha, sizeof ha, "%s/hosts/a", w->deploy);
    snprintf(od, sizeof od, "%s/owner", w->deploy);
    const char *who[3] = {tls, ha, od};
    const char *addrs[2] = {w->addr_a, w->addr_b}, *names[2] = {TE_CN_EDGE_A, TE_CN_EDGE_B};
    for (int i = 0; i < 3; i++) {
        te_net_creds c;
        fx_must(te_net_creds_load(who[i], &c, &err), &err, "creds");
        for (int h = 0; h < 2; h++) {
            te_net_channel_config cc = {addrs[h], &c, names[h], 0};
            te_net_channel *ch = NULL;
            fx_must(te_net_channel_new(&cc, &ch, &err), &err, "channel");
            uint8_t *resp = NULL;
            size_t len = 0;
            te_status st = te_net_unary(ch, TE_SVC_STATS, (const uint8_t *)"", 0, &resp, &len, TIMEOUT_MS, &err);
            if (i < 2) {
                if (st != TE_EAUTH)
                    fail_msg("Stats for %s on Edge%c: got %d: %s", who[i], h ? 'B' : 'A', st, err.msg);
                assert_non_null(strstr(err.msg, "only the owner"));
                assert_null(resp);
            } else {
                fx_must(st, &err, "owner's Stats");
                Twinedge__StatsReply *r = twinedge__stats_reply__unpack(NULL, len, resp);
                assert_non_null(r);
                assert_string_equal(r->role, h ? "B" : "A");
                twinedge__stats_reply__free_unpacked(r, NULL);
            }
            free(resp);
            te_net_channel_free(ch);
        }
        te_net_creds_free(&c);
    }
}

#define N_CONCURRENT 32

typedef struct one_device {
    world *w;
    char dir[300];
    twinedge_mode mode;
    int rc;
    int identical;
    char msg[600];
} one_device;

static void *concurrent_device(void *arg)
{
    one_device *d = arg;
    char tls[400];
    tls_of(d->dir, tls, sizeof tls);
    float *y = calloc(d->w->n_out, sizeof *y);
    twinedge_device *dev = NULL;
    twinedge_net *net = NULL;
    d->rc = twinedge_open(d->dir, &dev);
    if (d->rc != TWINEDGE_OK) {
        snprintf(d->msg, sizeof d->msg, "%s", twinedge_errmsg(dev));
    } else if ((d->rc = twinedge_connect(dev, d->w->addr_a, d->w->addr_b, tls, 60000, &net)) != TWINEDGE_OK) {
        snprintf(d->msg, sizeof d->msg, "%s", twinedge_net_errmsg(net));
    } else {
        d->rc = twinedge_infer(dev, d->mode, d->w->input, d->w->n_in, y, d->w->n_out);
        snprintf(d->msg, sizeof d->msg, "%s", twinedge_errmsg(dev));
        d->identical = d->rc == TWINEDGE_OK && memcmp(y, d->w->expect, d->w->n_out * sizeof *y) == 0;
    }
    twinedge_close(dev);
    twinedge_disconnect(net);
    free(y);
    return NULL;
}

/* 32 devices, each with its own connections, start at once against the
 * host pair (EdgeA serves 4 calls at a time): every one waits for its
 * connections and its turn within its deadline and gets the exact result. */
static void test_concurrent_devices(void **state)
{
    world *w = *state;
    te_err err;
    char od[400];
    snprintf(od, sizeof od, "%s/owner", w->deploy);
    one_device *devs = calloc(N_CONCURRENT, sizeof *devs);
    for (int i = 0; i < N_CONCURRENT; i++) {
        char name[32], key[400];
        snprintf(name, sizeof name, "c%02d", i);
        snprintf(devs[i].dir, sizeof devs[i].dir, "%s/concurrent-%02d", w->dir, i);
        fx_must(te_owner_provision(w->deploy, name, devs[i].dir, &err), &err, "provision");
        fx_must(te_pki_device(w->deploy, name, devs[i].dir, &err), &err, "device pki");
        snprintf(key, sizeof key, "%s/device.key", devs[i].dir);
        fx_must(te_owner_register_device(od, w->addr_b, key, TIMEOUT_MS, &err), &err, "register");
        devs[i].w = w;
        devs[i].mode = i % 2 ? TWINEDGE_MEDIATED : TWINEDGE_RELAY;
    }
    pthread_t th[N_CONCURRENT];
    double t0 = fx_now_s();
    for (int i = 0; i < N_CONCURRENT; i++)
        assert_int_equal(pthread_create(&th[i], NULL, concurrent_device, &devs[i]), 0);
    for (int i = 0; i < N_CONCURRENT; i++)
        pthread_join(th[i], NULL);
    int ok = 0;
    for (int i = 0; i < N_CONCURRENT; i++) {
        if (devs[i].rc != TWINEDGE_OK)
            print_message("device %d: %d: %s\n", i, devs[i].rc, devs[i].msg);
        ok += devs[i].rc == TWINEDGE_OK && devs[i].identical;
    }
    print_message("%d devices at once: %d exact results in %.2f s\n", N_CONCURRENT, ok, fx_now_s() - t0);
    assert_int_equal(ok, N_CONCURRENT);
    free(devs);
}

/* A TCP socket that accepts connections (the kernel does) but never answers. */
static int silent_listener(int *port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t al = sizeof a;
    assert_int_equal(bind(fd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(fd, 16), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&a, &al), 0);
    *port = ntohs(a.sin_port);
    return fd;
}

/* twinedge-infer's exit status and what it printed. */
static int infer_cli(world *w, const char *edge_a, const char *tls, int timeout_ms, char *msg, size_t cap)
{
    char cmd[3000], in[512], out[400], log[400];
    fx_data(in, sizeof in, MODEL ".input.npy");
    snprintf(out, sizeof out, "%s/kinds.npy", w->dir);
    snprintf(log, sizeof log, "%s/kinds.log", w->dir);
    snprintf(cmd, sizeof cmd,
             "%s %s %s -o %s --edge-a %s --edge-b %s --mode mediated --tls %s --timeout-ms %d >%s 2>&1",
             TE_INFER_BIN, w->device, in, out, edge_a, w->addr_b, tls, timeout_ms, log);
    int st = system(cmd);
    msg[0] = '\0';
    FILE *f = fopen(log, "r");
    if (f) {
        size_t n = fread(msg, 1, cap - 1, f);
        msg[n] = '\0';
        fclose(f);
    }
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Unreachable, timed out and refused credentials, through twinedge-infer
 * against the real hosts: each its own message (and exit status: 4 for the
 * network, 3 for credentials). */
static void test_error_kinds_cli(void **state)
{
    world *w = *state;
    char tls[400], msg[4000], addr[64];
    tls_of(w->device, tls, sizeof tls);

    /* nothing listening */
    int port;
    close(silent_listener(&port));
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    double t0 = fx_now_s();
    int rc = infer_cli(w, addr, tls, 1500, msg, sizeof msg);
    print_message("nothing listening: exit %d (%.2f s): %s", rc, fx_now_s() - t0, msg);
    assert_int_equal(rc, 4);
    assert_non_null(strstr(msg, addr));
    assert_non_null(strstr(msg, "unreachable"));
    assert_null(strstr(msg, "timed out"));

    /* accepts TCP, never answers */
    int fd = silent_listener(&port);
    snprintf(addr, sizeof addr, "127.0.0.1:%d", port);
    t0 = fx_now_s();
    rc = infer_cli(w, addr, tls, 1500, msg, sizeof msg);
    print_message("silent host: exit %d (%.2f s): %s", rc, fx_now_s() - t0, msg);
    close(fd);
    assert_int_equal(rc, 4);
    assert_non_null(strstr(msg, addr));
    assert_non_null(strstr(msg, "timed out"));
    assert_null(strstr(msg, "unreachable"));
    assert_null(strstr(msg, "credentials"));

    /* a device certificate from a forged CA (same name as the deployment's) */
    char forged[400], cmd[4000];
    snprintf(forged, sizeof forged, "%s/forged", w->dir);
    snprintf(cmd, sizeof cmd,
             "set -e; mkdir -p %s/tls %s/tls-trust; cd %s; "
             "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca.key -out ca.pem "
             "-subj '/O=twinedge/CN=twinedge deployment CA' -days 2 2>/dev/null; "
             "openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout tls/key.pem "
             "-subj '/O=twinedge/CN=device:d1' -out d.csr 2>/dev/null; "
             "printf 'basicConstraints=critical,CA:FALSE\\nextendedKeyUsage=serverAuth,clientAuth\\n' > ext.cnf; "
             "openssl x509 -req -in d.csr -CA ca.pem -CAkey ca.key -set_serial 7 -days 2 -extfile ext.cnf "
             "-out tls/cert.pem 2>/dev/null; "
             "cp %s/ca/ca.pem tls/ca.pem; "
             "cp ca.pem tls-trust/ca.pem; cp %s/cert.pem %s/key.pem tls-trust/",
             forged, forged, forged, w->deploy, tls, tls);
    assert_int_equal(system(cmd), 0);
    char ftls[500];
    snprintf(ftls, sizeof ftls, "%s/tls", forged);
    t0 = fx_now_s();
    rc = infer_cli(w, w->addr_a, ftls, 5000, msg, sizeof msg);
    print_message("forged device certificate: exit %d (%.2f s): %s", rc, fx_now_s() - t0, msg);
    assert_int_equal(rc, 3);
    assert_non_null(strstr(msg, "credentials refused"));
    assert_non_null(strstr(msg, "did not accept our certificate"));
    assert_null(strstr(msg, "unreachable"));
    assert_null(strstr(msg, "timed out"));
    assert_true(fx_now_s() - t0 < 4.0); /* refused at once, not at the deadline */

    /* a device that trusts the forged CA only: it refuses the hosts' certificates */
    snprintf(ftls, sizeof ftls, "%s/tls-trust", forged);
    rc = infer_cli(w, w->addr_a, ftls, 5000, msg, sizeof msg);
    print_message("device trusting a forged CA: exit %d: %s", rc, msg);
    assert_int_equal(rc, 3);
    assert_non_null(strstr(msg, "credentials refused"));
    assert_non_null(strstr(msg, "failed our check"));
}

static void test_unknown_device_and_deploy_rights(void **state)
{
    world *w = *state;
    te_err err;
    char msg[600], tls[400];
    /* provisioned after the deployment: EdgeB has never heard of d2 */
    fx_must(te_owner_provision(w->deploy, "d2", w->device2, &err), &err, "provision d2");
    fx_must(te_pki_device(w->deploy, "d2", w->device2, &err), &err, "pki d2");
    tls_of(w->device2, tls, sizeof tls);
    float *y = calloc(w->n_out, sizeof *y);
    int rc = net_infer(w, w->device2, tls, TWINEDGE_MEDIATED, y, msg, sizeof msg);
    if (rc != TWINEDGE_EAUTH)
        fail_msg("unknown device: got %d: %s", rc, msg);
    assert_non_null(strstr(msg, "unknown device"));
    rc = net_infer(w, w->device2, tls, TWINEDGE_RELAY, y, msg, sizeof msg);
    assert_int_not_equal(rc, TWINEDGE_OK);

    /* a device may not deploy or register keys */
    char key[400];
    snprintf(key, sizeof key, "%s/device.key", w->device2);
    assert_int_equal(te_owner_deploy_with(w->deploy, tls, w->addr_a, w->addr_b, TIMEOUT_MS, &err), TE_EAUTH);
    assert_int_equal(te_owner_register_device(tls, w->addr_b, key, TIMEOUT_MS, &err), TE_EAUTH);
    /* nor may EdgeA's certificate */
    char ha[400];
    snprintf(ha, sizeof ha, "%s/hosts/a", w->deploy);
    assert_int_equal(te_owner_register_device(ha, w->addr_b, key, TIMEOUT_MS, &err), TE_EAUTH);

    /* the owner registers d2; then it works */
    char od[400];
    snprintf(od, sizeof od, "%s/owner", w->deploy);
    fx_must(te_owner_register_device(od, w->addr_b, key, TIMEOUT_MS, &err), &err, "register d2");
    rc = net_infer(w, w->device2, tls, TWINEDGE_RELAY, y, msg, sizeof msg);
    if (rc != TWINEDGE_OK)
        fail_msg("d2 after registration: %s", msg);
    assert_memory_equal(y, w->expect, w->n_out * sizeof *y);
    free(y);
}

typedef struct good_loop {
    world *w;
    int runs, ok, identical;
} good_loop;

static void *good_device(void *arg)
{
    good_loop *g = arg;
    char tls[400], msg[600];
    tls_of(g->w->device, tls, sizeof tls);
    float *y = calloc(g->w->n_out, sizeof *y);
    for (int i = 0; i < g->runs; i++) {
        int rc = net_infer(g->w, g->w->device, tls, i % 2 ? TWINEDGE_MEDIATED : TWINEDGE_RELAY, y, msg, sizeof msg);
        if (rc == TWINEDGE_OK) {
            g->ok++;
            g->identical += memcmp(y, g->w->expect, g->w->n_out * sizeof *y) == 0;
        }
    }
    free(y);
    return NULL;
}

/* Send one raw message on an Infer stream; returns the LayerResponse status
 * (or -1 - te_status for a transport-level refusal). */
static int raw_infer(te_net_channel *ch, const uint8_t *msg, size_t len)
{
    te_err err;
    uint8_t *resp = NULL;
    size_t rl = 0;
    te_net_stream *s = NULL;
    te_status st = te_net_stream_open(ch, TE_SVC_INFER, TIMEOUT_MS, &s, &err);
    if (st == TE_OK)
        st = te_net_stream_exchange(s, msg, len, &resp, &rl, &err);
    if (st == TE_OK)
        st = te_net_stream_close(s, &err);
    te_net_stream_free(s);
    if (st != TE_OK) {
        free(resp);
        return -1 - (int)st;
    }
    Twinedge__LayerResponse *r = twinedge__layer_response__unpack(NULL, rl, resp);
    free(resp);
    assert_non_null(r);
    int code = (int)r->status;
    twinedge__layer_response__free_unpacked(r, NULL);
    return code;
}

static void test_malformed_beside_good_device(void **state)
{
    world *w = *state;
    good_loop g = {w, 4, 0, 0};
    pthread_t th;
    assert_int_equal(pthread_create(&th, NULL, good_device, &g), 0);

    te_err err;
    te_net_creds dc;
    char tls[400];
    tls_of(w->device, tls, sizeof tls);
    fx_must(te_net_creds_load(tls, &dc, &err), &err, "device creds");
    te_model *dm = NULL;
    char db[400];
    snprintf(db, sizeof db, "%s/device.bundle", w->deploy);
    fx_must(te_device_bundle_read(db, &dm, &err), &err, "device bundle");
    const char *addrs[2] = {w->addr_a, w->addr_b}, *names[2] = {TE_CN_EDGE_A, TE_CN_EDGE_B};
    for (int h = 0; h < 2; h++) {
        te_net_channel_config cc = {addrs[h], &dc, names[h], 0};
        te_net_channel *ch = NULL;
        fx_must(te_net_channel_new(&cc, &ch, &err), &err, "channel");
        for (int round = 0; round < 5; round++) {
            /* garbage */
            uint8_t junk[64];
            for (size_t i = 0; i < sizeof junk; i++)
                junk[i] = (uint8_t)(0xff - i * 7 - (size_t)round);
            assert_int_not_equal(raw_infer(ch, junk, sizeof junk), 0);
            /* well-formed but the wrong shape (EdgeA) / data where none belongs (EdgeB) */
            Twinedge__LayerRequest q = TWINEDGE__LAYER_REQUEST__INIT;
            q.deployment_id = dm->deployment_id;
            q.device_id = "d1";
            q.counter = 999999;
            q.layer = 0;
            q.ring_bits = (uint32_t)dm->layers[0].ring_bits;
            q.batch = 1;
            q.mode = TWINEDGE__MODE__MODE_MEDIATED;
            uint8_t session[16];
            for (size_t i = 0; i < sizeof session; i++)
                session[i] = (uint8_t)(0xa5 ^ (i * 31) ^ (size_t)(round + 16 * h));
            q.session.data = session;
            q.session.len = sizeof session;
            uint8_t data[7] = {1, 2, 3, 4, 5, 6, 7};
            q.data.data = data;
            q.data.len = sizeof data;
            uint8_t buf[256];
            size_t n = twinedge__layer_request__pack(&q, buf);
            int code = raw_infer(ch, buf, n);
            assert_int_equal(code, h == 0 ? TE_ESHAPE : TE_EINVAL);
            /* an unknown layer */
            q.layer = 1000;
            n = twinedge__layer_request__pack(&q, buf);
            assert_int_equal(raw_infer(ch, buf, n), TE_EINVAL);
            /* another device's id under d1's certificate: refused by EdgeB
             * and by EdgeA alike (a device acts in its own name only) */
            q.layer = 0;
            q.data.len = 0;
            q.device_id = "d2";
            n = twinedge__layer_request__pack(&q, buf);
            assert_int_equal(raw_infer(ch, buf, n), TE_EAUTH);
        }
        /* larger than the hosts' message limit (64 MiB) */
        size_t big = (size_t)65 << 20;
        uint8_t *huge = calloc(big, 1);
        assert_true(raw_infer(ch, huge, big) < 0);
        free(huge);
        /* a device may not ask for EdgeB's relay share */
        uint8_t *resp = NULL;
        size_t rl = 0;
        assert_int_equal(te_net_unary(ch, TE_SVC_MASK_SHARE, (const uint8_t *)"", 0, &resp, &rl, TIMEOUT_MS, &err),
                         h == 0 ? TE_ESERVER : TE_EAUTH);
        te_net_channel_free(ch);
    }
    te_model_free(dm);
    te_net_creds_free(&dc);
    pthread_join(th, NULL);
    assert_int_equal(g.ok, g.runs);
    assert_int_equal(g.identical, g.runs);
}

typedef struct killer {
    world *w;
    int at_layer;
    int done;
} killer;

static void kill_hook(void *ctx, int layer, uint64_t counter)
{
    (void)counter;
    killer *k = ctx;
    if (!k->done && layer == k->at_layer) {
        host_stop(&k->w->a, SIGKILL);
        k->done = 1;
    }
}

static void test_killed_host_and_restart(void **state)
{
    world *w = *state;
    char tls[400];
    tls_of(w->device, tls, sizeof tls);
    int port_a = w->a.port;
    float *y = calloc(w->n_out, sizeof *y);
    for (size_t i = 0; i < w->n_out; i++)
        y[i] = -12345.0f;
    twinedge_device *dev = open_device(w->device);
    twinedge_net *net = NULL;
    assert_int_equal(twinedge_connect(dev, w->addr_a, w->addr_b, tls, TIMEOUT_MS, &net), TWINEDGE_OK);
    killer k = {w, 1, 0};
    twinedge_set_layer_hook(dev, kill_hook, &k);
    double t0 = fx_now_s();
    int rc = twinedge_infer(dev, TWINEDGE_RELAY, w->input, w->n_in, y, w->n_out);
    double dt = fx_now_s() - t0;
    assert_true(k.done);
    assert_int_equal(rc, TWINEDGE_ETRANSPORT);
    assert_non_null(strstr(twinedge_errmsg(dev), w->addr_a));
    assert_true(dt < TIMEOUT_MS / 1000.0 + 1.0);
    for (size_t i = 0; i < w->n_out; i++)
        assert_true(y[i] == -12345.0f); /* no result */
    twinedge_close(dev);
    twinedge_disconnect(net);

    /* restart EdgeA on its port: the layers come from its store */
    host_start(w, &w->a, 'a', port_a);
    char msg[600];
    rc = net_infer(w, w->device, tls, TWINEDGE_RELAY, y, msg, sizeof msg);
    if (rc != TWINEDGE_OK)
        fail_msg("after restart: %s", msg);
    assert_memory_equal(y, w->expect, w->n_out * sizeof *y);
    /* EdgeB too (device keys from its store) */
    host_stop(&w->b, SIGTERM);
    host_start(w, &w->b, 'b', w->b.port);
    rc = net_infer(w, w->device, tls, TWINEDGE_MEDIATED, y, msg, sizeof msg);
    if (rc != TWINEDGE_OK)
        fail_msg("after restarting EdgeB: %s", msg);
    assert_memory_equal(y, w->expect, w->n_out * sizeof *y);
    free(y);
}

static void test_cli(void **state)
{
    world *w = *state;
    char cmd[3000], in[512], out[400], rep[400];
    fx_data(in, sizeof in, MODEL ".input.npy");
    snprintf(out, sizeof out, "%s/out.npy", w->dir);
    snprintf(rep, sizeof rep, "%s/report.json", w->dir);
    snprintf(cmd, sizeof cmd, "%s %s %s -o %s --edge-a %s --edge-b %s --mode mediated --report %s >/dev/null",
             TE_INFER_BIN, w->device, in, out, w->addr_a, w->addr_b, rep);
    assert_int_equal(system(cmd), 0);
    te_shape s;
    float *y = NULL;
    te_err err;
    fx_must(te_npy_read(out, &s, &y, &err), &err, "output");
    assert_int_equal((size_t)te_shape_numel(&s), w->n_out);
    assert_memory_equal(y, w->expect, w->n_out * sizeof *y);
    free(y);
    assert_int_equal(access(rep, R_OK), 0);
    /* wrong credentials: exit status 3 (auth), unreachable: 4 */
    snprintf(cmd, sizeof cmd, "%s %s %s -o %s --edge-a %s --edge-b %s --tls %s 2>/dev/null", TE_INFER_BIN, w->device,
             in, out, w->addr_a, w->addr_b, w->rogue);
    int st = system(cmd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 3);
    snprintf(cmd, sizeof cmd, "%s %s %s -o %s --edge-a 127.0.0.1:1 --edge-b %s --timeout-ms 1000 2>/dev/null",
             TE_INFER_BIN, w->device, in, out, w->addr_b);
    st = system(cmd);
    assert_true(WIFEXITED(st) && WEXITSTATUS(st) == 4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_both_modes_bit_identical),
        cmocka_unit_test(test_refused_credentials),
        cmocka_unit_test(test_cli),
        cmocka_unit_test(test_unknown_device_and_deploy_rights),
        cmocka_unit_test(test_stats_owner_only),
        cmocka_unit_test(test_error_kinds_cli),
        cmocka_unit_test(test_concurrent_devices),
        cmocka_unit_test(test_malformed_beside_good_device),
        cmocka_unit_test(test_killed_host_and_restart),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
