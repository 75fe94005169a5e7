#include "te_npy.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "te_bundle.h" /* te_file_read, te_file_write_atomic */

#define NPY_MAX_HEADER (1u << 20)
/* 64 GiB, or all a 32-bit size_t can count (armhf) */
#define NPY_MAX_FILE \
    ((size_t)((uint64_t)SIZE_MAX < ((uint64_t)1 << 36) ? (uint64_t)SIZE_MAX : ((uint64_t)1 << 36)))

typedef enum { DT_F2, DT_F4, DT_F8, DT_I1, DT_I2, DT_I4, DT_I8, DT_U1, DT_U2, DT_U4, DT_U8, DT_B1 } npy_dtype;

typedef struct {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c)
{
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int accept(cursor *c, char ch)
{
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

/* A quoted Python string literal without escapes; copies at most cap-1 chars. */
static int parse_str(cursor *c, char *out, size_t cap)
{
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return -1;
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || n + 1 >= cap)
            return -1;
        out[n++] = *c->p++;
    }
    if (c->p >= c->end)
        return -1;
    c->p++;
    out[n] = '\0';
    return 0;
}

static int parse_word(cursor *c, const char *w)
{
    skip_ws(c);
    size_t n = strlen(w);
    if ((size_t)(c->end - c->p) < n || memcmp(c->p, w, n) != 0)
        return -1;
    c->p += n;
    return 0;
}

static int parse_dim(cursor *c, int64_t *v)
{
    skip_ws(c);
    int64_t x = 0;
    int digits = 0;
    while (c->p < c->end && *c->p >= '0' && *c->p <= '9') {
        if (x > (INT64_MAX - 9) / 10)
            return -1;
        x = x * 10 + (*c->p - '0');
        c->p++;
        digits++;
    }
    if (!digits)
        return -1;
    if (c->p < c->end && *c->p == 'L') /* Python 2 long suffix */
        c->p++;
    *v = x;
    return 0;
}

static int parse_dtype(const char *d, npy_dtype *dt, size_t *isz)
{
    static const struct {
        const char *code;
        npy_dtype dt;
        size_t sz;
    } tab[] = {
        {"f2", DT_F2, 2}, {"f4", DT_F4, 4}, {"f8", DT_F8, 8}, {"i1", DT_I1, 1}, {"i2", DT_I2, 2},
        {"i4", DT_I4, 4}, {"i8", DT_I8, 8}, {"u1", DT_U1, 1}, {"u2", DT_U2, 2}, {"u4", DT_U4, 4},
        {"u8", DT_U8, 8}, {"b1", DT_B1, 1},
    };
    if (strlen(d) != 3 || (d[0] != '<' && d[0] != '|' && d[0] != '='))
        return -1;
    for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
        if (strcmp(d + 1, tab[i].code) == 0) {
            /* '|' (no byte order) is only meaningful for one-byte types */
            if (d[0] == '|' && tab[i].sz != 1)
                return -1;
            *dt = tab[i].dt;
            *isz = tab[i].sz;
            return 0;
        }
    }
    return -1;
}

static float half_to_float(uint16_t h)
{
    int e = (h >> 10) & 0x1f;
    int f = h & 0x3ff;
    float v;
    if (e == 0)
        v = ldexpf((float)f, -24);
    else if (e == 31)
        v = f ? NAN : INFINITY;
    else
        v = ldexpf((float)(f | 0x400), e - 25);
    return (h & 0x8000) ? -v : v;
}

static uint64_t ld_le(const uint8_t *p, size_t sz)
{
    uint64_t v = 0;
    for (size_t k = 0; k < sz; k++)
        v |= (uint64_t)p[k] << (8 * k);
    return v;
}

static float convert_elem(const uint8_t *p, npy_dtype dt)
{
    switch (dt) {
    case DT_F2: return half_to_float((uint16_t)ld_le(p, 2));
    case DT_F4: {
        uint32_t u = (uint32_t)ld_le(p, 4);
        float f;
        memcpy(&f, &u, 4);
        return f;
    }
    case DT_F8: {
        uint64_t u = ld_le(p, 8);
        double d;
        memcpy(&d, &u, 8);
        return (float)d;
    }
    case DT_I1: return (float)(int8_t)p[0];
    case DT_I2: return (float)(int16_t)(uint16_t)ld_le(p, 2);
    case DT_I4: return (float)(int32_t)(uint32_t)ld_le(p, 4);
    case DT_I8: return (float)(int64_t)ld_le(p, 8);
    case DT_U1: return (float)p[0];
    case DT_U2: return (float)ld_le(p, 2);
    case DT_U4: return (float)ld_le(p, 4);
    case DT_U8: return (float)ld_le(p, 8);
    case DT_B1: return p[0] ? 1.0f : 0.0f;
    }
    return 0.0f;
}

/* Whether f (the converted element) equals the element's value exactly. */
static int elem_exact(const uint8_t *p, npy_dtype dt, float f)
{
    switch (dt) {
    case DT_F8: {
        uint64_t u = ld_le(p, 8);
        double d;
        memcpy(&d, &u, 8);
        return (double)f == d || (isnan(d) && isnan(f));
    }
    case DT_I4: return (double)f == (double)(int32_t)(uint32_t)ld_le(p, 4);
    case DT_U4: return (double)f == (double)ld_le(p, 4);
    case DT_I8: {
        int64_t v = (int64_t)ld_le(p, 8);
        /* |f| < 2^63: the conversion back is defined */
        return fabsf(f) < 9.2233720368547758e18f && (int64_t)f == v;
    }
    case DT_U8: return f < 1.8446744073709552e19f && (uint64_t)f == ld_le(p, 8);
    default: return 1; /* f2, f4, 8- and 16-bit integers, bool: exact in float32 */
    }
}

te_status te_npy_parse(const uint8_t *buf, size_t len, te_shape *shape, float **data, te_err *err)
{
    return te_npy_parse_info(buf, len, shape, data, NULL, err);
}

te_status te_npy_parse_info(const uint8_t *buf, size_t len, te_shape *shape, float **data, te_npy_info *info,
                            te_err *err)
{
    if (!buf || !shape || !data)
        return te_errf(err, TE_EINVAL, "npy: null argument");
    *data = NULL;
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0)
        return te_errf(err, TE_EFORMAT, "npy: not a .npy file (bad magic)");
    unsigned major = buf[6];
    size_t hdr_len, hdr_off;
    if (major == 1) {
        hdr_len = (size_t)ld_le(buf + 8, 2);
        hdr_off = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12)
            return te_errf(err, TE_EFORMAT, "npy: truncated header");
        hdr_len = (size_t)ld_le(buf + 8, 4);
        hdr_off = 12;
    } else {
        return te_errf(err, TE_EFORMAT, "npy: unsupported format version %u.%u", major, buf[7]);
    }
    if (hdr_len > NPY_MAX_HEADER || hdr_len > len - hdr_off)
        return te_errf(err, TE_EFORMAT, "npy: header length %zu exceeds the file (%zu bytes)", hdr_len, len);

    cursor c = {(const char *)buf + hdr_off, (const char *)buf + hdr_off + hdr_len};
    char key[32], descr[16];
    int have_descr = 0, have_fortran = 0, have_shape = 0, fortran = 0;
    te_shape sh;
    memset(&sh, 0, sizeof sh);
    if (!accept(&c, '{'))
        return te_errf(err, TE_EFORMAT, "npy: header is not a dictionary");
    while (!accept(&c, '}')) {
        if (parse_str(&c, key, sizeof key) != 0 || !accept(&c, ':'))
            return te_errf(err, TE_EFORMAT, "npy: malformed header dictionary");
        if (strcmp(key, "descr") == 0 && !have_descr) {
            if (parse_str(&c, descr, sizeof descr) != 0)
                return te_errf(err, TE_EFORMAT, "npy: unsupported dtype (structured or malformed descr)");
            have_descr = 1;
        } else if (strcmp(key, "fortran_order") == 0 && !have_fortran) {
            if (parse_word(&c, "True") == 0)
                fortran = 1;
            else if (parse_word(&c, "False") != 0)
                return te_errf(err, TE_EFORMAT, "npy: malformed fortran_order");
            have_fortran = 1;
        } else if (strcmp(key, "shape") == 0 && !have_shape) {
            if (!accept(&c, '('))
                return te_errf(err, TE_EFORMAT, "npy: malformed shape");
            while (!accept(&c, ')')) {
                if (sh.ndim >= TE_MAX_DIMS)
                    return te_errf(err, TE_EFORMAT, "npy: more than %d dimensions", TE_MAX_DIMS);
                if (parse_dim(&c, &sh.d[sh.ndim]) != 0)
                    return te_errf(err, TE_EFORMAT, "npy: malformed shape");
                sh.ndim++;
                if (!accept(&c, ',')) {
                    if (!accept(&c, ')'))
                        return te_errf(err, TE_EFORMAT, "npy: malformed shape");
                    break;
                }
            }
            have_shape = 1;
        } else {
            return te_errf(err, TE_EFORMAT, "npy: unexpected or repeated header key '%s'", key);
        }
        if (!accept(&c, ',')) {
            if (!accept(&c, '}'))
                return te_errf(err, TE_EFORMAT, "npy: malformed header dictionary");
            break;
        }
    }
    skip_ws(&c);
    if (c.p != c.end)
        return te_errf(err, TE_EFORMAT, "npy: trailing garbage in header");
    if (!have_descr || !have_fortran || !have_shape)
        return te_errf(err, TE_EFORMAT, "npy: header lacks descr, fortran_order or shape");
    if (fortran)
        return te_errf(err, TE_EFORMAT, "npy: Fortran-order arrays are not supported");
    npy_dtype dt;
    size_t isz;
    if (parse_dtype(descr, &dt, &isz) != 0)
        return te_errf(err, TE_EFORMAT, "npy: unsupported dtype '%s' (need little-endian float/int)", descr);
    int64_t numel = te_shape_numel(&sh);
    if (numel < 0)
        return te_errf(err, TE_EFORMAT, "npy: shape element count overflows");
    size_t body = len - hdr_off - hdr_len;
    if ((uint64_t)numel > SIZE_MAX / 8 || (size_t)numel * isz != body)
        return te_errf(err, TE_EFORMAT, "npy: %zu data bytes, shape and dtype '%s' imply %lld elements",
                       body, descr, (long long)numel);
    float *out = malloc(numel ? (size_t)numel * sizeof(float) : sizeof(float));
    if (!out)
        return te_errf(err, TE_ENOMEM, "npy: cannot allocate %lld floats", (long long)numel);
    const uint8_t *p = buf + hdr_off + hdr_len;
    if (dt == DT_F4) {
        memcpy(out, p, (size_t)numel * 4);
#if !(defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__)
        for (int64_t i = 0; i < numel; i++)
            out[i] = convert_elem(p + 4 * i, dt);
#endif
    } else {
        for (int64_t i = 0; i < numel; i++)
            out[i] = convert_elem(p + (size_t)i * isz, dt);
    }
    if (info) {
        memset(info, 0, sizeof *info);
        snprintf(info->descr, sizeof info->descr, "%s", descr);
        info->converted = dt != DT_F4;
        for (int64_t i = 0; info->converted && i < numel; i++)
            if (!elem_exact(p + (size_t)i * isz, dt, out[i]) && info->inexact++ == 0)
                info->first_inexact = (size_t)i;
    }
    *shape = sh;
    *data = out;
    return TE_OK;
}

te_status te_npy_read(const char *path, te_shape *shape, float **data, te_err *err)
{
    return te_npy_read_info(path, shape, data, NULL, err);
}

te_status te_npy_read_info(const char *path, te_shape *shape, float **data, te_npy_info *info, te_err *err)
{
    uint8_t *buf;
    size_t len;
    te_status st = te_file_read(path, NPY_MAX_FILE, &buf, &len, err);
    if (st != TE_OK)
        return st;
    st = te_npy_parse_info(buf, len, shape, data, info, err);
    free(buf);
    if (st != TE_OK)
        te_err_wrap(err, "%s", path);
    return st;
}

te_status te_npy_write(const char *path, const te_shape *shape, const float *data, te_err *err)
{
    if (!path || !shape || (!data && te_shape_numel(shape) != 0))
        return te_errf(err, TE_EINVAL, "npy: null argument");
    int64_t numel = te_shape_numel(shape);
    if (numel < 0)
        return te_errf(err, TE_EINVAL, "npy: invalid shape");
    char dict[512];
    int k = snprintf(dict, sizeof dict, "{'descr': '<f4', 'fortran_order': False, 'shape': (");
    for (int i = 0; i < shape->ndim; i++)
        k += snprintf(dict + k, sizeof dict - (size_t)k, "%lld,%s", (long long)shape->d[i],
                      (i + 1 < shape->ndim) ? " " : "");
    if (shape->ndim > 1)
        k--; /* "(2, 3,)" -> "(2, 3)"; a 1-d shape keeps its comma: "(3,)" */
    k += snprintf(dict + k, sizeof dict - (size_t)k, "), }");
    /* pad with spaces so that the data starts at a multiple of 64, then '\n' */
    size_t hlen = (size_t)k + 1;
    size_t total_hdr = (10 + hlen + 63) / 64 * 64;
    hlen = total_hdr - 10;
    size_t dbytes = (size_t)numel * 4;
    uint8_t *buf = malloc(total_hdr + dbytes);
    if (!buf)
        return te_errf(err, TE_ENOMEM, "npy: cannot allocate %zu bytes", total_hdr + dbytes);
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (uint8_t)(hlen & 0xff);
    buf[9] = (uint8_t)(hlen >> 8);
    memset(buf + 10, ' ', hlen);
    memcpy(buf + 10, dict, (size_t)k);
    buf[total_hdr - 1] = '\n';
    for (int64_t i = 0; i < numel; i++) {
        uint32_t u;
        memcpy(&u, &data[i], 4);
        for (int b = 0; b < 4; b++)
            buf[total_hdr + 4 * (size_t)i + (size_t)b] = (uint8_t)(u >> (8 * b));
    }
    te_status st = te_file_write_atomic(path, buf, total_hdr + dbytes, err);
    free(buf);
    return st;
}

void te_npy_output_path(const char *base, int k, char *buf, size_t cap)
{
    size_t n = strlen(base);
    if (k == 0)
        snprintf(buf, cap, "%s", base);
    else if (n >= 4 && strcmp(base + n - 4, ".npy") == 0)
        snprintf(buf, cap, "%.*s.%d.npy", (int)(n - 4), base, k);
    else
        snprintf(buf, cap, "%s.%d.npy", base, k);
}
