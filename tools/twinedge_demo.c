/* twinedge-demo: the README's first command.  A LeNet-5 trained on
 * Fashion-MNIST (trained once, deterministically, then cached) classifies
 * real test images privately through EdgeA and EdgeB, two twinedge-host
 * processes on loopback reached over gRPC with mutual TLS; each private
 * prediction is printed beside PyTorch's plaintext one. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "owner.h"
#include "runlib.h"
#include "te_npy.h"
#include "twinedge_device.h"
#include "twinedge_net.h"

#ifndef TE_SOURCE_DIR
#define TE_SOURCE_DIR "."
#endif
#ifndef TE_DATA_INSTALL_DIR
#define TE_DATA_INSTALL_DIR "/usr/local/share/twinedge"
#endif

static const char *const classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                        "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};

static int exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int mkdirs(const char *path)
{
    char tmp[4096];
    snprintf(tmp, sizeof tmp, "%s", path);
    for (char *p = tmp + 1; *p; p++) {
        if (*p == '/') {
            *p = '\0';
            if (mkdir(tmp, 0755) != 0 && errno != EEXIST)
                return -1;
            *p = '/';
        }
    }
    return mkdir(tmp, 0755) != 0 && errno != EEXIST ? -1 : 0;
}

/* Train (or find) the demo model: runs Debian's python3 with PyTorch once. */
static int ensure_model(const char *cache)
{
    char onnx[4200];
    snprintf(onnx, sizeof onnx, "%s/fashion_lenet.onnx", cache);
    if (exists(onnx))
        return 0;
    const char *candidates[] = {TE_SOURCE_DIR "/tests/models/fashion_lenet.py",
                                TE_DATA_INSTALL_DIR "/models/fashion_lenet.py"};
    const char *script = NULL;
    for (size_t i = 0; i < sizeof candidates / sizeof *candidates; i++)
        if (exists(candidates[i]))
            script = candidates[i];
    if (!script) {
        fprintf(stderr, "twinedge-demo: error: cannot find fashion_lenet.py (looked in %s and %s)\n", candidates[0],
                candidates[1]);
        return -1;
    }
    printf("Training the demo model once (LeNet-5 on Fashion-MNIST, deterministic; cached in %s)...\n", cache);
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        execl("/usr/bin/python3", "python3", script, cache, (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        fprintf(stderr, "twinedge-demo: error: training the demo model failed (is python3-torch installed?)\n");
        return -1;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("twinedge-demo %s\n", TWINEDGE_VERSION_STRING);
        return 0;
    }
    int n_show = 12;
    if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf("usage: twinedge-demo [N]\n\nClassifies N (default 12) Fashion-MNIST test images privately through\n"
               "two edge hosts (twinedge-host processes on loopback, gRPC with mutual TLS)\n"
               "and prints each private prediction beside the plaintext one.\n"
               "The model is trained once and cached in $XDG_CACHE_HOME/twinedge/demo.\n");
        return 0;
    }
    if (argc > 1)
        n_show = atoi(argv[1]);
    if (n_show < 1 || n_show > 10000) {
        fprintf(stderr, "twinedge-demo: error: N must be 1..10000\n");
        return 2;
    }
    char cache[4096], path[4300], deploy[4200], device[4200], key[4300];
    const char *xdg = getenv("XDG_CACHE_HOME"), *home = getenv("HOME");
    if (xdg && *xdg)
        snprintf(cache, sizeof cache, "%s/twinedge/demo", xdg);
    else
        snprintf(cache, sizeof cache, "%s/.cache/twinedge/demo", home && *home ? home : "/tmp");
    if (mkdirs(cache) != 0) {
        fprintf(stderr, "twinedge-demo: error: cannot create %s: %s\n", cache, strerror(errno));
        return 1;
    }
    if (ensure_model(cache) != 0)
        return 1;

    te_err err;
    te_err_clear(&err);
    snprintf(deploy, sizeof deploy, "%s/deploy", cache);
    snprintf(device, sizeof device, "%s/device", cache);
    snprintf(key, sizeof key, "%s/device.key", device);
    char tls_cert[4300];
    snprintf(tls_cert, sizeof tls_cert, "%s/tls/cert.pem", device);
    if (!exists(key) || !exists(tls_cert)) {
        char onnx[4300], calib[4300];
        snprintf(onnx, sizeof onnx, "%s/fashion_lenet.onnx", cache);
        snprintf(calib, sizeof calib, "%s/fashion_calib.npy", cache);
        te_rm_rf(deploy, &err);
        te_rm_rf(device, &err);
        if (te_owner_compile(onnx, calib, NULL, deploy, &err) != TE_OK ||
            te_owner_provision(deploy, "demo-camera", device, &err) != TE_OK) {
            fprintf(stderr, "twinedge-demo: error: %s\n", err.msg);
            return 1;
        }
    }
    te_shape si, sl, sr;
    float *images = NULL, *labels = NULL, *logits = NULL;
    snprintf(path, sizeof path, "%s/fashion_test_images.npy", cache);
    te_status st = te_npy_read(path, &si, &images, &err);
    snprintf(path, sizeof path, "%s/fashion_test_labels.npy", cache);
    if (st == TE_OK)
        st = te_npy_read(path, &sl, &labels, &err);
    snprintf(path, sizeof path, "%s/fashion_ref_logits.npy", cache);
    if (st == TE_OK)
        st = te_npy_read(path, &sr, &logits, &err);
    if (st != TE_OK) {
        fprintf(stderr, "twinedge-demo: error: %s\n", err.msg);
        free(images);
        free(labels);
        return 1;
    }

    te_hostpair hp;
    memset(&hp, 0, sizeof hp);
    twinedge_net *net = NULL;
    twinedge_device *dev = NULL;
    int rc = 1;
    char work[4200], tls[4300];
    const char *tmp = getenv("TMPDIR");
    snprintf(work, sizeof work, "%s/twinedge-demo-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    snprintf(tls, sizeof tls, "%s/tls", device);
    if (!mkdtemp(work)) {
        fprintf(stderr, "twinedge-demo: error: cannot create a scratch directory: %s\n", strerror(errno));
        work[0] = '\0';
        goto out;
    }
    printf("Starting EdgeA and EdgeB (twinedge-host, loopback, mutual TLS) and deploying...\n");
    fflush(stdout);
    if (te_hostpair_start(&hp, deploy, work, NULL, &err) != TE_OK) {
        fprintf(stderr, "twinedge-demo: error: %s\n", err.msg);
        goto out;
    }
    if (twinedge_open(device, &dev) != TWINEDGE_OK) {
        fprintf(stderr, "twinedge-demo: error: %s\n", twinedge_errmsg(dev));
        goto out;
    }
    if (twinedge_connect(dev, hp.addr[0], hp.addr[1], tls, 30000, &net) != TWINEDGE_OK) {
        fprintf(stderr, "twinedge-demo: error: %s\n", twinedge_net_errmsg(net));
        goto out;
    }
    size_t per = (size_t)(te_shape_numel(&si) / si.d[0]);
    if (n_show > si.d[0])
        n_show = (int)si.d[0];
    printf("\ntwinedge demo: LeNet-5 on Fashion-MNIST, linear layers outsourced to EdgeA (%s) and EdgeB (%s)\n"
           "(separate processes, gRPC with mutual TLS; every layer verified before use)\n\n",
           hp.addr[0], hp.addr[1]);
    printf("%5s  %-12s %-12s %-12s %8s %9s %9s %9s %9s\n", "image", "true label", "private", "plaintext", "ms",
           "dev up B", "dev dn B", "EdgeA in", "EdgeB in");
    int agree = 0;
    double total = 0;
    twinedge_net_stats ns0, ns1;
    te_host_figures f0[2], f1[2];
    twinedge_net_get_stats(net, &ns0);
    if (te_hostpair_stats(&hp, f0, &err) != TE_OK) {
        fprintf(stderr, "twinedge-demo: error: %s\n", err.msg);
        goto out;
    }
    const twinedge_net_stats first = ns0;
    const te_host_figures first_a = f0[0], first_b = f0[1];
    for (int i = 0; i < n_show; i++) {
        float out[10];
        double t0 = now_s();
        if (twinedge_infer(dev, TWINEDGE_RELAY, images + (size_t)i * per, per, out, 10) != TWINEDGE_OK) {
            fprintf(stderr, "twinedge-demo: error: image %d: %s\n", i, twinedge_errmsg(dev));
            goto out;
        }
        double ms = (now_s() - t0) * 1e3;
        total += ms;
        twinedge_net_get_stats(net, &ns1);
        if (te_hostpair_stats(&hp, f1, &err) != TE_OK) {
            fprintf(stderr, "twinedge-demo: error: %s\n", err.msg);
            goto out;
        }
        int p = 0, r = 0;
        for (int k = 1; k < 10; k++) {
            if (out[k] > out[p])
                p = k;
            if (logits[(size_t)i * 10 + k] > logits[(size_t)i * 10 + r])
                r = k;
        }
        agree += p == r;
        /* EdgeA receives the device's requests and, in relay mode, EdgeB's MaskShare answers */
        uint64_t from_b_to_a = (f1[1].bytes_out - f0[1].bytes_out) - (ns1.bytes_from_b - ns0.bytes_from_b);
        printf("%5d  %-12s %-12s %-12s %8.2f %9llu %9llu %9llu %9llu\n", i, classes[(int)labels[i] % 10],
               classes[p], classes[r], ms, (unsigned long long)(ns1.bytes_up - ns0.bytes_up),
               (unsigned long long)(ns1.bytes_down - ns0.bytes_down),
               (unsigned long long)(f1[0].bytes_in - f0[0].bytes_in + from_b_to_a),
               (unsigned long long)(f1[1].bytes_in - f0[1].bytes_in));
        ns0 = ns1;
        f0[0] = f1[0];
        f0[1] = f1[1];
    }
    twinedge_report rep;
    twinedge_last_report(dev, &rep);
    printf("\n%d/%d private predictions equal the plaintext ones; %d of %d linear layers verified per inference;\n"
           "%.2f ms per private inference.\n",
           agree, n_show, rep.layers_checked, rep.linear_layers, total / n_show);
    printf("Per party in total: device sent %llu B and received %llu B; EdgeA received %llu B; EdgeB %llu B.\n",
           (unsigned long long)(ns0.bytes_up - first.bytes_up), (unsigned long long)(ns0.bytes_down - first.bytes_down),
           (unsigned long long)(f0[0].bytes_in - first_a.bytes_in + (f0[1].bytes_out - first_b.bytes_out) -
                                (ns0.bytes_from_b - first.bytes_from_b)),
           (unsigned long long)(f0[1].bytes_in - first_b.bytes_in));
    rc = agree == n_show ? 0 : 1;
out:
    twinedge_close(dev);
    twinedge_disconnect(net);
    if (te_hostpair_stop(&hp, &err) != TE_OK) {
        fprintf(stderr, "twinedge-demo: error: %s\n", err.msg);
        rc = 1;
    }
    if (work[0])
        te_rm_rf(work, &err);
    free(images);
    free(labels);
    free(logits);
    return rc;
}
