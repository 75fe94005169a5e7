#include "harness.h"

#include <arpa/inet.h>
#include <math.h>
#include <netinet/in.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "owner.h"
#include "pki.h"
#include "runlib.h"
#include "te_bundle.h"
#include "te_npy.h"

const char *fx_data(char *out, size_t cap, const char *file)
{
    const char *d = getenv("TE_TEST_DATA");
    snprintf(out, cap, "%s/%s", d ? d : ".", file);
    return out;
}

static void must(te_status st, const te_err *err, const char *what)
{
    if (st != TE_OK)
        fail_msg("%s: %s", what, err->msg);
}

static float *load_npy(const char *path, size_t *n)
{
    te_shape s;
    float *data = NULL;
    te_err err;
    must(te_npy_read(path, &s, &data, &err), &err, path);
    *n = (size_t)te_shape_numel(&s);
    return data;
}

static void setup(te_fixture *f, const char *name, te_tap_fn tap, void *tap_ctx, const char *pa, const char *pb,
                  const te_owner_options *opt);

void fx_setup(te_fixture *f, const char *name, te_tap_fn tap, void *tap_ctx)
{
    setup(f, name, tap, tap_ctx, NULL, NULL, NULL);
}

void fx_setup_plugins(te_fixture *f, const char *name, const char *plugin_a, const char *plugin_b)
{
    setup(f, name, NULL, NULL, plugin_a, plugin_b, NULL);
}

void fx_setup_opts(te_fixture *f, const char *name, const te_owner_options *opt)
{
    setup(f, name, NULL, NULL, NULL, NULL, opt);
}

static void setup(te_fixture *f, const char *name, te_tap_fn tap, void *tap_ctx, const char *pa, const char *pb,
                  const te_owner_options *opt)
{
    memset(f, 0, sizeof *f);
    te_err err;
    char onnx[512], calib[512], in[512], ref[512];
    snprintf(f->name, sizeof f->name, "%s", name);
    snprintf(f->dir, sizeof f->dir, "/tmp/te-test-%s-XXXXXX", name);
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->deploy, sizeof f->deploy, "%s/deploy", f->dir);
    snprintf(f->device, sizeof f->device, "%s/device", f->dir);
    fx_data(onnx, sizeof onnx, name);
    strncat(onnx, ".onnx", sizeof onnx - strlen(onnx) - 1);
    snprintf(calib, sizeof calib, "%.*s.calib.npy", (int)(strlen(onnx) - 5), onnx);
    snprintf(in, sizeof in, "%.*s.input.npy", (int)(strlen(onnx) - 5), onnx);
    snprintf(ref, sizeof ref, "%.*s.ref.npy", (int)(strlen(onnx) - 5), onnx);

    must(te_owner_compile(onnx, calib, opt, f->deploy, &err), &err, "compile");
    char devname[80];
    snprintf(devname, sizeof devname, "dev-%s", name);
    must(te_owner_provision(f->deploy, devname, f->device, &err), &err, "provision");

    char key[700];
    snprintf(key, sizeof key, "%s/device.key", f->device);
    te_local_config lc = {f->deploy, key, pa, pb, NULL, tap, tap_ctx};
    must(te_local_pair_start(&lc, &f->pair, &err), &err, "start hosts");
    fx_reopen_device(f);
    f->input = load_npy(in, &f->n_in);
    f->ref = load_npy(ref, &f->n_ref);
    int64_t dims[8];
    int nd = 0;
    twinedge_output_shape(f->dev, dims, &nd);
    f->n_out = 1;
    for (int i = 0; i < nd; i++)
        f->n_out *= (size_t)dims[i];
    assert_int_equal(f->n_out, f->n_ref);
}

void fx_reopen_device(te_fixture *f)
{
    twinedge_close(f->dev);
    f->dev = NULL;
    if (twinedge_open(f->device, &f->dev) != TWINEDGE_OK)
        fail_msg("open device: %s", twinedge_errmsg(f->dev));
    twinedge_use_transport(f->dev, f->pair->device_link);
}

void fx_teardown(te_fixture *f)
{
    twinedge_close(f->dev);
    te_local_pair_stop(f->pair);
    free(f->input);
    free(f->ref);
    te_err err;
    te_rm_rf(f->dir, &err);
    memset(f, 0, sizeof *f);
}

void fx_reference_fixed(te_fixture *f, const float *input, float *out)
{
    te_err err;
    must(te_reference_fixed(f->deploy, input, f->n_in, out, f->n_out, &err), &err, "fixed-point reference");
}

double fx_cosine(const float *a, const float *b, size_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return ab / (sqrt(aa) * sqrt(bb) + 1e-300);
}

te_model *fx_build_model(const char *name)
{
    return fx_build_model_opts(name, NULL);
}

te_model *fx_build_model_opts(const char *name, const te_owner_options *opt_in)
{
    char onnx[512], calib[512];
    char base[400];
    fx_data(base, sizeof base, name);
    snprintf(onnx, sizeof onnx, "%s.onnx", base);
    snprintf(calib, sizeof calib, "%s.calib.npy", base);
    te_owner_options opt;
    memset(&opt, 0, sizeof opt);
    te_owner_options_init(&opt);
    if (opt_in)
        opt = *opt_in;
    te_model *m = NULL;
    te_err err;
    must(te_owner_build(onnx, access(calib, R_OK) == 0 ? calib : NULL, &opt, &m, &err), &err, onnx);
    return m;
}

void fx_host_spawn(fx_host *h, const char *bin, char role, const char *const *args, const char *portfile,
                   const char *log)
{
    const char *argv[64];
    int n = 0;
    argv[n++] = bin;
    for (int i = 0; args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
    unlink(portfile);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        FILE *f = freopen(log, "a", stderr);
        (void)f;
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    h->pid = pid;
    h->role = role;
    for (int i = 0; i < 500; i++) {
        FILE *f = fopen(portfile, "r");
        if (f) {
            int p = 0;
            int ok = fscanf(f, "%d", &p) == 1;
            fclose(f);
            if (ok && p > 0) {
                h->port = p;
                snprintf(h->addr, sizeof h->addr, "127.0.0.1:%d", p);
                return;
            }
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            h->pid = 0;
            fail_msg("twinedge-host %c exited during start-up (see %s)", role, log);
        }
        usleep(20000);
    }
    fail_msg("twinedge-host %c did not start (see %s)", role, log);
}

void fx_host_start(fx_host *h, const char *bin, const char *dir, const char *deploy, char role, const char *tag,
                   int port, const char *peer, const char *const *extra)
{
    char listen[64], store[600], creds[700], portfile[600], log[600], r[2] = {role, 0};
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    snprintf(store, sizeof store, "%s/store-%c%s", dir, role, tag ? tag : "");
    snprintf(creds, sizeof creds, "%s/hosts/%c", deploy, role);
    snprintf(portfile, sizeof portfile, "%s/port-%c%s", dir, role, tag ? tag : "");
    snprintf(log, sizeof log, "%s/host-%c%s.log", dir, role, tag ? tag : "");
    const char *args[64] = {"--role", r, "--listen", listen, "--store", store, "--credentials", creds,
                            "--port-file", portfile};
    int n = 10;
    if (peer && *peer) {
        args[n++] = "--peer";
        args[n++] = peer;
    }
    for (int i = 0; extra && extra[i] && n < 63; i++)
        args[n++] = extra[i];
    args[n] = NULL;
    fx_host_spawn(h, bin, role, args, portfile, log);
}

int fx_host_stop(fx_host *h, int sig)
{
    if (h->pid <= 0)
        return -1;
    kill(h->pid, sig);
    int status = 0;
    waitpid(h->pid, &status, 0);
    h->pid = 0;
    return status;
}

/* ---- set-up shared by the tests against real hosts ---- */

void fx_must(te_status st, const te_err *err, const char *what)
{
    must(st, err, what);
}

double fx_now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

void fx_net_deploy(char *dir, char *deploy, size_t deploy_cap, const char *name)
{
    te_err err;
    char onnx[512], calib[512], file[256];
    assert_non_null(mkdtemp(dir));
    snprintf(deploy, deploy_cap, "%s/deploy", dir);
    snprintf(file, sizeof file, "%s.onnx", name);
    fx_data(onnx, sizeof onnx, file);
    snprintf(file, sizeof file, "%s.calib.npy", name);
    fx_data(calib, sizeof calib, file);
    must(te_owner_compile(onnx, calib, NULL, deploy, &err), &err, "compile");
    must(te_pki_deployment(deploy, &err), &err, "pki");
}

void fx_net_device(const char *deploy, const char *id, const char *device_dir)
{
    te_err err;
    must(te_owner_provision(deploy, id, device_dir, &err), &err, "provision");
    must(te_pki_device(deploy, id, device_dir, &err), &err, "device pki");
}

float *fx_read_input(const char *name, size_t *n)
{
    char in[512], file[256];
    snprintf(file, sizeof file, "%s.input.npy", name);
    fx_data(in, sizeof in, file);
    te_shape s;
    float *x = NULL;
    te_err err;
    must(te_npy_read(in, &s, &x, &err), &err, "input");
    *n = (size_t)te_shape_numel(&s);
    return x;
}

size_t fx_device_n_out(const char *device_dir)
{
    twinedge_device *dev = NULL;
    if (twinedge_open(device_dir, &dev) != TWINEDGE_OK)
        fail_msg("open: %s", twinedge_errmsg(dev));
    int64_t dims[8];
    int nd = 0;
    twinedge_output_shape(dev, dims, &nd);
    twinedge_close(dev);
    size_t n = 1;
    for (int i = 0; i < nd; i++)
        n *= (size_t)dims[i];
    return n;
}

uint64_t fx_metric(int port, const char *name)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&sa, sizeof sa), 0);
    const char *req = "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n";
    assert_int_equal(write(fd, req, strlen(req)), (ssize_t)strlen(req));
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap + 1);
    assert_non_null(buf);
    for (ssize_t r; (r = read(fd, buf + n, cap - n)) > 0;) {
        n += (size_t)r;
        if (n == cap) {
            char *nb = realloc(buf, 2 * cap + 1);
            assert_non_null(nb);
            buf = nb;
            cap *= 2;
        }
    }
    close(fd);
    buf[n] = '\0';
    char want[128];
    snprintf(want, sizeof want, "\n%s ", name);
    const char *p = strstr(buf, want);
    uint64_t v = p ? strtoull(p + strlen(want), NULL, 10) : 0;
    free(buf);
    if (!p)
        fail_msg("no %s in the metrics on port %d", name, port);
    return v;
}
