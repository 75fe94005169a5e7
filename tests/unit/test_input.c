/* Input checks (core/te_input.c) and what te_npy_parse_info reports about a
 * file's dtype: the whole shape, NHWC named, NaN/inf by index, exact and
 * inexact conversions to float32. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <math.h>
#include <cmocka.h>

#include "te_input.h"
#include "te_npy.h"

static te_shape shp(int nd, int64_t a, int64_t b, int64_t c, int64_t d)
{
    te_shape s;
    memset(&s, 0, sizeof s);
    s.ndim = nd;
    int64_t v[4] = {a, b, c, d};
    for (int i = 0; i < nd; i++)
        s.d[i] = v[i];
    return s;
}

static void test_shape(void **state)
{
    (void)state;
    te_err err;
    te_shape m = shp(4, 1, 3, 32, 24);
    te_shape ok1 = shp(4, 1, 3, 32, 24), ok2 = shp(3, 3, 32, 24, 0);
    assert_int_equal(te_input_check_shape("x", &m, &ok1, &err), TE_OK);
    assert_int_equal(te_input_check_shape("x", &m, &ok2, &err), TE_OK);
    te_shape nhwc = shp(4, 1, 32, 24, 3), hwc = shp(3, 32, 24, 3, 0);
    assert_int_equal(te_input_check_shape("x.npy", &m, &nhwc, &err), TE_ESHAPE);
    assert_non_null(strstr(err.msg, "x.npy has shape [1,32,24,3]"));
    assert_non_null(strstr(err.msg, "[1,3,32,24]"));
    assert_non_null(strstr(err.msg, "NHWC"));
    assert_int_equal(te_input_check_shape("x", &m, &hwc, &err), TE_ESHAPE);
    assert_non_null(strstr(err.msg, "NHWC"));
    /* same element count, other layout without a channels-last reading */
    te_shape flat = shp(2, 1, 3 * 32 * 24, 0, 0), swapped = shp(4, 1, 3, 24, 32);
    assert_int_equal(te_input_check_shape("x", &m, &flat, &err), TE_ESHAPE);
    assert_null(strstr(err.msg, "NHWC"));
    assert_int_equal(te_input_check_shape("x", &m, &swapped, &err), TE_ESHAPE);
    /* a batch of 2 where the model takes 1; no batch dim to drop when it is not 1 */
    te_shape b2 = shp(4, 2, 3, 32, 24), m2 = shp(4, 2, 3, 32, 24);
    assert_int_equal(te_input_check_shape("x", &m, &b2, &err), TE_ESHAPE);
    assert_int_equal(te_input_check_shape("x", &m2, &ok2, &err), TE_ESHAPE);
}

static void test_finite(void **state)
{
    (void)state;
    te_err err;
    float x[5] = {0, 1, -2, 3, 4};
    assert_int_equal(te_input_check_finite("x", x, 5, &err), TE_OK);
    x[3] = NAN;
    assert_int_equal(te_input_check_finite("x", x, 5, &err), TE_EINVAL);
    assert_non_null(strstr(err.msg, "element 3 is NaN"));
    x[3] = 0;
    x[4] = -INFINITY;
    assert_int_equal(te_input_check_finite("x", x, 5, &err), TE_EINVAL);
    assert_non_null(strstr(err.msg, "element 4 is -inf"));
}

/* A .npy of n elements of size isz with dtype descr. */
static size_t npy(uint8_t *out, const char *descr, const void *data, size_t n, size_t isz)
{
    char dict[128];
    int len = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': (%zu,), }", descr, n);
    size_t hl = (size_t)len + 1;
    hl += (64 - (10 + hl) % 64) % 64;
    memcpy(out, "\x93NUMPY\x01\x00", 8);
    out[8] = (uint8_t)hl;
    out[9] = (uint8_t)(hl >> 8);
    memset(out + 10, ' ', hl);
    memcpy(out + 10, dict, (size_t)len);
    out[10 + hl - 1] = '\n';
    memcpy(out + 10 + hl, data, n * isz);
    return 10 + hl + n * isz;
}

static void parse(const uint8_t *buf, size_t len, te_npy_info *info, te_status want_check, int allow)
{
    te_shape s;
    float *x = NULL;
    te_err err;
    char note[256];
    assert_int_equal(te_npy_parse_info(buf, len, &s, &x, info, &err), TE_OK);
    assert_int_equal(te_input_check_dtype("in.npy", info, allow, note, sizeof note, &err), want_check);
    if (want_check == TE_OK && info->converted)
        assert_non_null(strstr(note, info->descr));
    if (want_check == TE_OK && !info->converted)
        assert_string_equal(note, "");
    free(x);
}

static void test_dtypes(void **state)
{
    (void)state;
    uint8_t buf[512];
    te_npy_info info;
    float f[3] = {1.5f, -2, 0};
    parse(buf, npy(buf, "<f4", f, 3, 4), &info, TE_OK, 0);
    assert_int_equal(info.converted, 0);

    double d[3] = {0.5, -3, NAN}; /* exact, NaN stays NaN (refused later by the finite check) */
    parse(buf, npy(buf, "<f8", d, 3, 8), &info, TE_OK, 0);
    assert_true(info.converted && info.inexact == 0);
    double di[3] = {0.5, 0.1, 1e300}; /* 0.1 and 1e300 are not float32 values */
    parse(buf, npy(buf, "<f8", di, 3, 8), &info, TE_EINVAL, 0);
    assert_int_equal(info.inexact, 2);
    assert_int_equal(info.first_inexact, 1);
    parse(buf, npy(buf, "<f8", di, 3, 8), &info, TE_OK, 1); /* allowed: a note counts them */

    int64_t i8[3] = {16777216, -7, (int64_t)1 << 40}; /* all exact in float32 */
    parse(buf, npy(buf, "<i8", i8, 3, 8), &info, TE_OK, 0);
    assert_int_equal(info.inexact, 0);
    i8[1] = 16777217; /* 2^24 + 1: not */
    parse(buf, npy(buf, "<i8", i8, 3, 8), &info, TE_EINVAL, 0);
    assert_int_equal(info.first_inexact, 1);
    int64_t big[1] = {INT64_MAX}; /* rounds up to 2^63 */
    parse(buf, npy(buf, "<i8", big, 1, 8), &info, TE_EINVAL, 0);
    uint64_t u8[1] = {UINT64_MAX};
    parse(buf, npy(buf, "<u8", u8, 1, 8), &info, TE_EINVAL, 0);
    int32_t i4[2] = {-2147483647 - 1, 123};
    parse(buf, npy(buf, "<i4", i4, 2, 4), &info, TE_OK, 0);
    i4[1] = 2147483647;
    parse(buf, npy(buf, "<i4", i4, 2, 4), &info, TE_EINVAL, 0);
    uint8_t px[4] = {0, 17, 200, 255};
    parse(buf, npy(buf, "|u1", px, 4, 1), &info, TE_OK, 0);
    assert_true(info.converted && info.inexact == 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape),
        cmocka_unit_test(test_finite),
        cmocka_unit_test(test_dtypes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
