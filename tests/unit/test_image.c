/* te_image: PNG and JPEG to the model input, against references computed
 * independently in Python (tests/unit/image_ref.py: NumPy, resize checked
 * against PyTorch), and hostile images. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <unistd.h>
#include <cmocka.h>

#include <stb/stb_image_write.h>

#include "te_bundle.h"
#include "te_image.h"
#include "te_npy.h"

#ifndef TE_IMAGE_REF_PY
#error "TE_IMAGE_REF_PY must name tests/unit/image_ref.py"
#endif

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof dir, "/tmp/te-image-XXXXXX");
    if (!mkdtemp(dir))
        return -1;
    char cmd[512];
    snprintf(cmd, sizeof cmd, "/usr/bin/python3 %s %s", TE_IMAGE_REF_PY, dir);
    return system(cmd) == 0 ? 0 : -1;
}

static int teardown(void **state)
{
    (void)state;
    char cmd[128];
    snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static uint8_t *slurp(const char *name, size_t *len)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, name);
    uint8_t *buf = NULL;
    te_err err;
    if (te_file_read(p, 1 << 20, &buf, len, &err) != TE_OK)
        fail_msg("%s: %s", p, err.msg);
    return buf;
}

static te_preprocess pre_of(int c, const float *mean, const float *std)
{
    te_preprocess p;
    memset(&p, 0, sizeof p);
    p.present = 1;
    p.channels = c;
    memcpy(p.mean, mean, (size_t)c * sizeof *mean);
    memcpy(p.std, std, (size_t)c * sizeof *std);
    return p;
}

/* Decode `image` as (c, h, w) and compare with ref.npy within tol. */
static void check(const uint8_t *img, size_t len, const char *ref, int c, int h, int w, const te_preprocess *pre,
                  double tol, te_image_fit fit)
{
    char p[256];
    snprintf(p, sizeof p, "%s/%s", dir, ref);
    te_shape s;
    float *want = NULL, *got = NULL;
    te_err err;
    if (te_npy_read(p, &s, &want, &err) != TE_OK)
        fail_msg("%s: %s", p, err.msg);
    assert_int_equal(s.ndim, 4);
    assert_int_equal(s.d[1], c);
    assert_int_equal(s.d[2], h);
    assert_int_equal(s.d[3], w);
    if (te_image_to_tensor(img, len, c, h, w, pre, fit, &got, &err) != TE_OK)
        fail_msg("%s: %s", ref, err.msg);
    double worst = 0;
    for (int i = 0; i < c * h * w; i++) {
        double d = fabs((double)got[i] - (double)want[i]);
        if (d > worst)
            worst = d;
    }
    if (worst > tol)
        fail_msg("%s: off by %g (tolerance %g)", ref, worst, tol);
    free(want);
    free(got);
}

static void test_png_cases(void **state)
{
    (void)state;
    size_t len;
    const float imn[3] = {0.485f, 0.456f, 0.406f}, isd[3] = {0.229f, 0.224f, 0.225f};
    te_preprocess p3 = pre_of(3, imn, isd);
    uint8_t *rgb = slurp("rgb.png", &len);
    assert_int_equal(te_image_sniff(rgb, len), TE_IMAGE_PNG);
    int iw, ih, in;
    te_err err;
    assert_int_equal(te_image_info(rgb, len, &iw, &ih, &in, &err), TE_OK);
    assert_int_equal(iw, 37);
    assert_int_equal(ih, 23);
    assert_int_equal(in, 3);
    check(rgb, len, "rgb_3x16x20.npy", 3, 16, 20, &p3, 1e-4, TE_FIT_STRETCH);
    const float m1[1] = {0.5f}, s1[1] = {0.25f};
    te_preprocess p1 = pre_of(1, m1, s1);
    check(rgb, len, "rgb_1x28x28.npy", 1, 28, 28, &p1, 1e-4, TE_FIT_STRETCH);
    /* the model's preprocessing must match its channel count */
    float *t = NULL;
    assert_int_equal(te_image_to_tensor(rgb, len, 3, 16, 20, &p1, TE_FIT_STRETCH, &t, &err), TE_ESHAPE);
    assert_null(t);
    assert_int_equal(te_image_to_tensor(rgb, len, 2, 16, 20, NULL, TE_FIT_STRETCH, &t, &err), TE_EUNSUPPORTED);
    /* --fit crop: the centred region of the model's aspect ratio */
    check(rgb, len, "crop_rgb_3x16x20.npy", 3, 16, 20, &p3, 1e-4, TE_FIT_CROP);
    check(rgb, len, "crop_rgb_1x28x28.npy", 1, 28, 28, &p1, 1e-4, TE_FIT_CROP);
    free(rgb);

    uint8_t *grey = slurp("grey.png", &len);
    check(grey, len, "grey_3x28x28.npy", 3, 28, 28, NULL, 1e-5, TE_FIT_STRETCH); /* no preprocessing: mean 0, std 1 */
    free(grey);
    uint8_t *rgba = slurp("rgba.png", &len);
    const float m3[3] = {0.1f, 0.2f, 0.3f}, s3[3] = {0.5f, 0.6f, 0.7f};
    te_preprocess q3 = pre_of(3, m3, s3);
    check(rgba, len, "rgba_3x5x6.npy", 3, 5, 6, &q3, 1e-4, TE_FIT_STRETCH);
    te_preprocess absent;
    memset(&absent, 0, sizeof absent);
    check(rgba, len, "rgba_4x12x9.npy", 4, 12, 9, &absent, 1e-6, TE_FIT_STRETCH); /* same size: the pixels themselves */
    check(rgba, len, "crop_rgba_3x5x6.npy", 3, 5, 6, &q3, 1e-4, TE_FIT_CROP);
    free(rgba);
    uint8_t *ga = slurp("greyalpha.png", &len);
    check(ga, len, "greyalpha_4x3x3.npy", 4, 3, 3, NULL, 1e-5, TE_FIT_STRETCH);
    free(ga);
    assert_true(te_image_aspect_differs(37, 23, 20, 16));
    assert_false(te_image_aspect_differs(56, 56, 28, 28));
    assert_false(te_image_aspect_differs(640, 480, 320, 240));
    uint8_t *g16 = slurp("grey16.png", &len);
    check(g16, len, "grey16_1x9x11.npy", 1, 9, 11, NULL, 1e-6, TE_FIT_STRETCH);
    free(g16);
}

typedef struct membuf {
    uint8_t *data;
    size_t len;
} membuf;

static void put(void *ctx, void *data, int size)
{
    membuf *m = ctx;
    uint8_t *n = realloc(m->data, m->len + (size_t)size);
    assert_non_null(n);
    memcpy(n + m->len, data, (size_t)size);
    m->data = n;
    m->len += (size_t)size;
}

static void test_jpeg(void **state)
{
    (void)state;
    size_t len;
    uint8_t *raw = slurp("rgb.raw", &len);
    assert_int_equal(len, 37 * 23 * 3);
    membuf jpg = {NULL, 0};
    assert_true(stbi_write_jpg_to_func(put, &jpg, 37, 23, 3, raw, 100) != 0);
    assert_int_equal(te_image_sniff(jpg.data, jpg.len), TE_IMAGE_JPEG);
    const float imn[3] = {0.485f, 0.456f, 0.406f}, isd[3] = {0.229f, 0.224f, 0.225f};
    te_preprocess p3 = pre_of(3, imn, isd);
    /* JPEG is lossy: within 12 grey levels (of 255) per pixel, scaled by 1/std */
    check(jpg.data, jpg.len, "rgb_3x16x20.npy", 3, 16, 20, &p3, 12.0 / 255.0 / 0.224, TE_FIT_STRETCH);
    const float m1[1] = {0.5f}, s1[1] = {0.25f};
    te_preprocess p1 = pre_of(1, m1, s1);
    check(jpg.data, jpg.len, "rgb_1x28x28.npy", 1, 28, 28, &p1, 12.0 / 255.0 / 0.25, TE_FIT_STRETCH);
    /* truncated anywhere, even just before its end marker: refused (libjpeg
     * would fill the missing blocks with grey) */
    float *t = NULL;
    te_err err;
    for (size_t cut = 2; cut < jpg.len; cut += jpg.len / 17 + 1) {
        assert_int_not_equal(te_image_to_tensor(jpg.data, cut, 3, 8, 8, NULL, TE_FIT_STRETCH, &t, &err), TE_OK);
        assert_null(t);
    }
    assert_int_not_equal(te_image_to_tensor(jpg.data, jpg.len - 2, 3, 8, 8, NULL, TE_FIT_STRETCH, &t, &err), TE_OK);
    assert_non_null(strstr(err.msg, "JPEG"));
    /* any single corrupted byte: a result or an error, never a crash (ASan
     * and UBSan watch this in CI) */
    for (size_t i = 2; i < jpg.len; i++) {
        uint8_t keep = jpg.data[i];
        jpg.data[i] ^= (uint8_t)(0x5a + i);
        te_status st = te_image_to_tensor(jpg.data, jpg.len, 3, 8, 8, NULL, TE_FIT_STRETCH, &t, &err);
        if (st == TE_OK)
            free(t);
        else
            assert_null(t);
        t = NULL;
        jpg.data[i] = keep;
    }
    free(jpg.data);
    free(raw);
}

static void test_hostile(void **state)
{
    (void)state;
    float *t = NULL;
    te_err err;
    size_t len;
    /* declares 100000 x 100000: refused from the header, nothing allocated */
    uint8_t *huge = slurp("huge.png", &len);
    assert_int_equal(te_image_to_tensor(huge, len, 3, 8, 8, NULL, TE_FIT_STRETCH, &t, &err), TE_EINVAL);
    assert_non_null(strstr(err.msg, "out of bounds"));
    assert_null(t);
    free(huge);
    /* not an image at all: .npy, GIF, BMP, empty */
    const uint8_t npy[] = "\x93NUMPY\x01\x00", gif[] = "GIF89a\x01\x00\x01\x00", bmp[] = "BM\x00\x00";
    assert_int_equal(te_image_sniff(npy, sizeof npy - 1), TE_IMAGE_UNKNOWN);
    assert_int_equal(te_image_to_tensor(npy, sizeof npy - 1, 3, 8, 8, NULL, TE_FIT_STRETCH, &t, &err), TE_EFORMAT);
    assert_int_equal(te_image_to_tensor(gif, sizeof gif - 1, 3, 8, 8, NULL, TE_FIT_STRETCH, &t, &err), TE_EFORMAT);
    assert_int_equal(te_image_to_tensor(bmp, sizeof bmp - 1, 3, 8, 8, NULL, TE_FIT_STRETCH, &t, &err), TE_EFORMAT);
    assert_int_equal(te_image_to_tensor(NULL, 0, 3, 8, 8, NULL, TE_FIT_STRETCH, &t, &err), TE_EFORMAT);
    /* truncated and corrupted PNGs */
    uint8_t *png = slurp("rgb.png", &len);
    for (size_t cut = 8; cut < len; cut += 13) { /* the end chunk is read and checked too */
        assert_int_not_equal(te_image_to_tensor(png, cut, 3, 4, 4, NULL, TE_FIT_STRETCH, &t, &err), TE_OK);
        assert_null(t);
    }
    png[len / 2] ^= 0x55; /* breaks the zlib stream or its checksum */
    assert_int_equal(te_image_to_tensor(png, len, 3, 4, 4, NULL, TE_FIT_STRETCH, &t, &err), TE_EFORMAT);
    assert_non_null(strstr(err.msg, "malformed PNG"));
    assert_null(t);
    /* model sizes and preprocessing that make no sense */
    png[len / 2] ^= 0x55;
    assert_int_equal(te_image_to_tensor(png, len, 3, 0, 4, NULL, TE_FIT_STRETCH, &t, &err), TE_EINVAL);
    assert_int_equal(te_image_to_tensor(png, len, 3, 4, TE_IMAGE_MAX_DIM + 1, NULL, TE_FIT_STRETCH, &t, &err), TE_EINVAL);
    const float m[3] = {0, 0, 0}, s[3] = {1, 0, 1};
    te_preprocess bad = pre_of(3, m, s);
    assert_int_equal(te_image_to_tensor(png, len, 3, 4, 4, &bad, TE_FIT_STRETCH, &t, &err), TE_EFORMAT);
    assert_null(t);
    free(png);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_png_cases),
        cmocka_unit_test(test_jpeg),
        cmocka_unit_test(test_hostile),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
