/* twinedge-demo: the README's first command.  A LeNet-5 trained on
 * Fashion-MNIST (trained once, deterministically, then cached) classifies
 * real test images privately through EdgeA and EdgeB; each private
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
#include "te_host.h"
#include "te_npy.h"
#include "twinedge_device.h"

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
    int n_show = 12;
    if (argc > 1 && (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0)) {
        printf("usage: twinedge-demo [N]\n\nClassifies N (default 12) Fashion-MNIST test images privately through\n"
               "two edge hosts and prints each private prediction beside the plaintext one.\n"
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
    if (!exists(key)) {
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

    te_local_pair *pair = NULL;
    twinedge_device *dev = NULL;
    int rc = 1;
    te_local_config lc = {deploy, key, NULL, NULL, NULL, NULL, NULL};
    if (te_local_pair_start(&lc, &pair, &err) != TE_OK) {
        fprintf(stderr, "twinedge-demo: error: %s\n", err.msg);
        goto out;
    }
    if (twinedge_open(device, &dev) != TWINEDGE_OK) {
        fprintf(stderr, "twinedge-demo: error: %s\n", twinedge_errmsg(dev));
        goto out;
    }
    twinedge_use_transport(dev, pair->device_link);
    size_t per = (size_t)(te_shape_numel(&si) / si.d[0]);
    if (n_show > si.d[0])
        n_show = (int)si.d[0];
    printf("\ntwinedge demo: LeNet-5 on Fashion-MNIST, linear layers outsourced to EdgeA and EdgeB\n"
           "(hosts in this process; every layer verified before use)\n\n");
    printf("%5s  %-12s %-12s %-12s %8s %10s %10s\n", "image", "true label", "private", "plaintext", "ms",
           "device B", "hosts B");
    int agree = 0;
    double total = 0;
    for (int i = 0; i < n_show; i++) {
        float out[10];
        te_traffic before = pair->traffic;
        double t0 = now_s();
        if (twinedge_infer(dev, TWINEDGE_RELAY, images + (size_t)i * per, per, out, 10) != TWINEDGE_OK) {
            fprintf(stderr, "twinedge-demo: error: image %d: %s\n", i, twinedge_errmsg(dev));
            goto out;
        }
        double ms = (now_s() - t0) * 1e3;
        total += ms;
        int p = 0, r = 0;
        for (int k = 1; k < 10; k++) {
            if (out[k] > out[p])
                p = k;
            if (logits[(size_t)i * 10 + k] > logits[(size_t)i * 10 + r])
                r = k;
        }
        agree += p == r;
        uint64_t dev_bytes = pair->traffic.device_up + pair->traffic.device_down - before.device_up -
                             before.device_down;
        uint64_t host_bytes = pair->traffic.edge_a_in + pair->traffic.edge_b_in - before.edge_a_in - before.edge_b_in;
        printf("%5d  %-12s %-12s %-12s %8.2f %10llu %10llu\n", i, classes[(int)labels[i] % 10], classes[p],
               classes[r], ms, (unsigned long long)dev_bytes, (unsigned long long)host_bytes);
    }
    twinedge_report rep;
    twinedge_last_report(dev, &rep);
    printf("\n%d/%d private predictions equal the plaintext ones; %d of %d linear layers verified per inference;\n"
           "%.2f ms per private inference.\n",
           agree, n_show, rep.layers_checked, rep.linear_layers, total / n_show);
    printf("Per party in total: device sent %llu B and received %llu B; EdgeA received %llu B; EdgeB %llu B.\n",
           (unsigned long long)pair->traffic.device_up, (unsigned long long)pair->traffic.device_down,
           (unsigned long long)pair->traffic.edge_a_in, (unsigned long long)pair->traffic.edge_b_in);
    rc = agree == n_show ? 0 : 1;
out:
    twinedge_close(dev);
    te_local_pair_stop(pair);
    free(images);
    free(labels);
    free(logits);
    return rc;
}
