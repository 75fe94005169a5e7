/* Accuracy against PyTorch float32 on real data: LeNet-5 trained on
 * Fashion-MNIST (tests/models/fashion_lenet.py) classifies all 10,000 test
 * images privately; the private top-1 must equal PyTorch's on >= 99.9%. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "harness.h"
#include "owner.h"
#include "runlib.h"
#include "te_npy.h"

static size_t argmax(const float *v, size_t n)
{
    size_t best = 0;
    for (size_t i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

static float *load(const char *file, te_shape *s)
{
    char path[512];
    float *d = NULL;
    te_err err;
    if (te_npy_read(fx_data(path, sizeof path, file), s, &d, &err) != TE_OK)
        fail_msg("%s", err.msg);
    return d;
}

static void test_fashion_top1(void **state)
{
    (void)state;
    char dir[] = "/tmp/te-fashion-XXXXXX", deploy[64], device[64], key[80], onnx[512], calib[512];
    assert_non_null(mkdtemp(dir));
    snprintf(deploy, sizeof deploy, "%s/deploy", dir);
    snprintf(device, sizeof device, "%s/device", dir);
    snprintf(key, sizeof key, "%s/device.key", device);
    te_err err;
    if (te_owner_compile(fx_data(onnx, sizeof onnx, "fashion_lenet.onnx"),
                         fx_data(calib, sizeof calib, "fashion_calib.npy"), NULL, deploy, &err) != TE_OK ||
        te_owner_provision(deploy, "fashion-cam", device, &err) != TE_OK)
        fail_msg("%s", err.msg);
    te_local_pair *pair = NULL;
    te_local_config lc = {deploy, key, NULL, NULL, NULL, NULL, NULL};
    if (te_local_pair_start(&lc, &pair, &err) != TE_OK)
        fail_msg("%s", err.msg);
    twinedge_device *dev = NULL;
    if (twinedge_open(device, &dev) != TWINEDGE_OK)
        fail_msg("%s", twinedge_errmsg(dev));
    twinedge_use_transport(dev, pair->device_link);

    te_shape si, sl, sr;
    float *images = load("fashion_test_images.npy", &si);
    float *labels = load("fashion_test_labels.npy", &sl);
    float *logits = load("fashion_ref_logits.npy", &sr);
    size_t n = (size_t)si.d[0], per = (size_t)(te_shape_numel(&si) / si.d[0]), classes = (size_t)sr.d[1];
    assert_int_equal(n, 10000);
    assert_int_equal(sr.d[0], (int64_t)n);
    float out[64];
    assert_true(classes <= 64);
    size_t agree = 0, correct_priv = 0, correct_ref = 0;
    for (size_t i = 0; i < n; i++) {
        twinedge_mode mode = i % 2 ? TWINEDGE_MEDIATED : TWINEDGE_RELAY;
        if (twinedge_infer(dev, mode, images + i * per, per, out, classes) != TWINEDGE_OK)
            fail_msg("image %zu: %s", i, twinedge_errmsg(dev));
        size_t p = argmax(out, classes), r = argmax(logits + i * classes, classes);
        agree += p == r;
        correct_priv += p == (size_t)labels[i];
        correct_ref += r == (size_t)labels[i];
    }
    printf("private top-1 equals PyTorch's on %zu/%zu images (%.2f%%); accuracy private %.2f%%, PyTorch %.2f%%\n",
           agree, n, 100.0 * (double)agree / (double)n, 100.0 * (double)correct_priv / (double)n,
           100.0 * (double)correct_ref / (double)n);
    assert_true(agree * 1000 >= n * 999);
    free(images);
    free(labels);
    free(logits);
    twinedge_close(dev);
    te_local_pair_stop(pair);
    te_rm_rf(dir, &err);
}

int main(void)
{
    const struct CMUnitTest tests[] = {cmocka_unit_test(test_fashion_top1)};
    return cmocka_run_group_tests(tests, NULL, NULL);
}
