/* Image input (see te_image.h). */
#include "te_image.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* stb_image from Debian's libstb-dev, compiled here with PNG and JPEG only
 * (libstb.a would also accept GIF, PSD, HDR, ... and is not built with the
 * sanitizers or fuzzer coverage), with our own dimension bound.  Its code
 * does not follow our warning set. */
#define STB_IMAGE_IMPLEMENTATION
#define STB_IMAGE_STATIC
#define STBI_ONLY_PNG
#define STBI_ONLY_JPEG
#define STBI_NO_STDIO
#define STBI_NO_LINEAR
#define STBI_NO_HDR
#define STBI_MAX_DIMENSIONS TE_IMAGE_MAX_DIM
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wshadow"
#pragma GCC diagnostic ignored "-Wunused-function"
#pragma GCC diagnostic ignored "-Wunused-parameter"
#pragma GCC diagnostic ignored "-Wunused-but-set-variable"
#pragma GCC diagnostic ignored "-Wsign-compare"
#pragma GCC diagnostic ignored "-Wmissing-prototypes"
#pragma GCC diagnostic ignored "-Wstrict-prototypes"
#pragma GCC diagnostic ignored "-Wimplicit-fallthrough"
#pragma GCC diagnostic ignored "-Wtype-limits"
#pragma GCC diagnostic ignored "-Wcast-qual"
#include <stb/stb_image.h>
#pragma GCC diagnostic pop
/* reported at the end of the file: the static API functions we do not use */
#pragma GCC diagnostic ignored "-Wunused-function"

te_image_format te_image_sniff(const uint8_t *buf, size_t len)
{
    static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (buf && len >= 8 && memcmp(buf, png, 8) == 0)
        return TE_IMAGE_PNG;
    if (buf && len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff)
        return TE_IMAGE_JPEG;
    return TE_IMAGE_UNKNOWN;
}

/* Byte i of the file, 0 past its end (as stb reads). */
static unsigned at(const uint8_t *b, size_t len, size_t i) { return i < len ? b[i] : 0u; }

/* Huffman tables of the DHT segment at b[p] (just after FF C4): Debian's
 * stb_image (2.27) writes past a 257-entry array when a table declares
 * more than 256 codes; refuse those before stb sees them. */
static int dht_ok(const uint8_t *b, size_t len, size_t p)
{
    long l = (long)(at(b, len, p) << 8 | at(b, len, p + 1)) - 2;
    p += 2;
    while (l > 0 && p < len) {
        unsigned n = 0;
        for (int i = 0; i < 16; i++)
            n += at(b, len, p + 1 + (size_t)i);
        if (n > 256)
            return 0;
        p += 17 + n;
        l -= 17 + (long)n;
    }
    return 1;
}

/* Every DHT stb could parse: the segments before the first scan by their
 * lengths (as stb walks them); from the first scan on, every FF..FF C4. */
static int jpeg_tables_ok(const uint8_t *b, size_t len)
{
    size_t p = 2;
    while (p < len) {
        if (b[p] != 0xff) {
            p++;
            continue;
        }
        while (p < len && b[p] == 0xff)
            p++;
        if (p >= len)
            break;
        unsigned m = b[p++];
        if (m == 0xd9)
            return 1;
        if (m == 0xc4 && !dht_ok(b, len, p))
            return 0;
        if (m == 0xda)
            break;
        if (m == 0xd8 || m == 0x01 || (m >= 0xd0 && m <= 0xd7))
            continue;
        p += at(b, len, p) << 8 | at(b, len, p + 1);
    }
    for (; p + 1 < len; p++) {
        if (b[p] != 0xff)
            continue;
        size_t q = p;
        while (q < len && b[q] == 0xff)
            q++;
        if (q < len && b[q] == 0xc4 && !dht_ok(b, len, q + 1))
            return 0;
    }
    return 1;
}

/* Every PNG chunk must lie inside the file.  stb grows its buffer for the
 * image data by each chunk's declared length before reading it, so a
 * 2 GiB length in a tiny file would make it allocate 2 GiB. */
static int png_chunks_ok(const uint8_t *b, size_t len)
{
    size_t p = 8;
    while (p + 8 <= len) {
        size_t n = (size_t)b[p] << 24 | (size_t)b[p + 1] << 16 | (size_t)b[p + 2] << 8 | b[p + 3];
        if (n > len - p - 8)
            return 0;
        if (memcmp(b + p + 4, "IEND", 4) == 0)
            return 1;
        p += 12 + n;
    }
    return 1; /* a truncated file: stb reports it */
}

static te_status check_bounds(const uint8_t *buf, size_t len, te_err *err)
{
    if (te_image_sniff(buf, len) == TE_IMAGE_UNKNOWN)
        return te_errf(err, TE_EFORMAT, "not a PNG or JPEG image");
    if (len > TE_IMAGE_MAX_BYTES || len > (size_t)INT32_MAX)
        return te_errf(err, TE_EINVAL, "image of %zu bytes is larger than the limit (%zu)", len,
                       TE_IMAGE_MAX_BYTES);
    if (te_image_sniff(buf, len) == TE_IMAGE_JPEG && !jpeg_tables_ok(buf, len))
        return te_errf(err, TE_EFORMAT, "malformed JPEG image: a Huffman table with more than 256 codes");
    if (te_image_sniff(buf, len) == TE_IMAGE_PNG && !png_chunks_ok(buf, len))
        return te_errf(err, TE_EFORMAT, "malformed PNG image: a chunk runs past the end of the file");
    return TE_OK;
}

static te_status check_dims(int w, int h, te_err *err)
{
    if (w <= 0 || h <= 0 || w > TE_IMAGE_MAX_DIM || h > TE_IMAGE_MAX_DIM ||
        (int64_t)w * (int64_t)h > TE_IMAGE_MAX_PIXELS)
        return te_errf(err, TE_EINVAL, "image of %d x %d pixels is out of bounds (at most %d per side, %lld in all)",
                       w, h, TE_IMAGE_MAX_DIM, (long long)TE_IMAGE_MAX_PIXELS);
    return TE_OK;
}

te_status te_image_info(const uint8_t *buf, size_t len, int *width, int *height, int *channels, te_err *err)
{
    te_status st = check_bounds(buf, len, err);
    if (st != TE_OK)
        return st;
    int w = 0, h = 0, n = 0;
    /* A PNG's size is in its first chunk: say why a huge one is refused
     * (stb refuses beyond TE_IMAGE_MAX_DIM too, JPEGs included, but then
     * reports an unknown image type). */
    if (te_image_sniff(buf, len) == TE_IMAGE_PNG && len >= 24 && memcmp(buf + 12, "IHDR", 4) == 0) {
        uint32_t pw = (uint32_t)buf[16] << 24 | (uint32_t)buf[17] << 16 | (uint32_t)buf[18] << 8 | buf[19];
        uint32_t ph = (uint32_t)buf[20] << 24 | (uint32_t)buf[21] << 16 | (uint32_t)buf[22] << 8 | buf[23];
        if (pw > TE_IMAGE_MAX_DIM || ph > TE_IMAGE_MAX_DIM)
            return te_errf(err, TE_EINVAL, "image of %lu x %lu pixels is out of bounds (at most %d per side)",
                           (unsigned long)pw, (unsigned long)ph, TE_IMAGE_MAX_DIM);
    }
    if (!stbi_info_from_memory(buf, (int)len, &w, &h, &n)) {
        return te_errf(err, TE_EFORMAT, "malformed %s image: %s",
                       te_image_sniff(buf, len) == TE_IMAGE_PNG ? "PNG" : "JPEG", stbi_failure_reason());
    }
    if ((st = check_dims(w, h, err)) != TE_OK)
        return st;
    if (n < 1 || n > 4)
        return te_errf(err, TE_EFORMAT, "image with %d channels", n);
    *width = w;
    *height = h;
    *channels = n;
    return TE_OK;
}

/* Pixel (x, y) of the decoded image as `want` channels in [0, 255]. */
static void pixel(const uint8_t *img, int iw, int n, int x, int y, int want, float *v)
{
    const uint8_t *p = img + ((size_t)y * (size_t)iw + (size_t)x) * (size_t)n;
    int colour = n >= 3;
    float r = p[0], g = colour ? p[1] : p[0], b = colour ? p[2] : p[0];
    float a = n == 2 ? p[1] : n == 4 ? p[3] : 255.0f;
    if (want == 1) {
        v[0] = colour ? 0.299f * r + 0.587f * g + 0.114f * b : r;
        return;
    }
    v[0] = r;
    v[1] = g;
    v[2] = b;
    if (want == 4)
        v[3] = a;
}

/* Source coordinate of output index o (half-pixel centres, clamped). */
static void src_coord(int o, int out_n, int in_n, int *i0, int *i1, float *frac)
{
    float s = ((float)o + 0.5f) * ((float)in_n / (float)out_n) - 0.5f;
    if (s < 0.0f)
        s = 0.0f;
    int i = (int)s;
    if (i > in_n - 1)
        i = in_n - 1;
    *i0 = i;
    *i1 = i < in_n - 1 ? i + 1 : i;
    *frac = s - (float)i;
}

te_status te_image_to_tensor(const uint8_t *buf, size_t len, int channels, int height, int width,
                             const te_preprocess *pre, float **out, te_err *err)
{
    *out = NULL;
    if (channels != 1 && channels != 3 && channels != 4)
        return te_errf(err, TE_EUNSUPPORTED, "a model input with %d channels cannot take an image (1, 3 or 4)",
                       channels);
    if (height <= 0 || width <= 0 || height > TE_IMAGE_MAX_DIM || width > TE_IMAGE_MAX_DIM)
        return te_errf(err, TE_EINVAL, "model input of %d x %d is not an image size", height, width);
    float mean[4] = {0, 0, 0, 0}, sd[4] = {1, 1, 1, 1};
    if (pre && pre->present) {
        if (pre->channels != channels)
            return te_errf(err, TE_ESHAPE, "the preprocessing has %d channels, the model input %d", pre->channels,
                           channels);
        for (int c = 0; c < channels; c++) {
            if (!isfinite(pre->mean[c]) || !isfinite(pre->std[c]) || pre->std[c] == 0.0f)
                return te_errf(err, TE_EFORMAT, "preprocessing of channel %d: mean %g, std %g", c,
                               (double)pre->mean[c], (double)pre->std[c]);
            mean[c] = pre->mean[c];
            sd[c] = pre->std[c];
        }
    }
    int iw, ih, n;
    te_status st = te_image_info(buf, len, &iw, &ih, &n, err);
    if (st != TE_OK)
        return st;
    int dw = 0, dh = 0, dn = 0;
    uint8_t *img = stbi_load_from_memory(buf, (int)len, &dw, &dh, &dn, 0);
    if (!img)
        return te_errf(err, TE_EFORMAT, "cannot decode the %s image: %s",
                       te_image_sniff(buf, len) == TE_IMAGE_PNG ? "PNG" : "JPEG", stbi_failure_reason());
    if (dw != iw || dh != ih || dn != n) {
        stbi_image_free(img);
        return te_errf(err, TE_EFORMAT, "the image header and its data disagree");
    }
    size_t plane = (size_t)height * (size_t)width;
    float *t = malloc((size_t)channels * plane * sizeof *t);
    if (!t) {
        stbi_image_free(img);
        return te_errf(err, TE_ENOMEM, "out of memory for a %d x %d x %d input", channels, height, width);
    }
    for (int y = 0; y < height; y++) {
        int y0, y1;
        float fy;
        src_coord(y, height, ih, &y0, &y1, &fy);
        for (int x = 0; x < width; x++) {
            int x0, x1;
            float fx;
            src_coord(x, width, iw, &x0, &x1, &fx);
            float p00[4], p01[4], p10[4], p11[4];
            pixel(img, iw, n, x0, y0, channels, p00);
            pixel(img, iw, n, x1, y0, channels, p01);
            pixel(img, iw, n, x0, y1, channels, p10);
            pixel(img, iw, n, x1, y1, channels, p11);
            for (int c = 0; c < channels; c++) {
                float top = p00[c] + (p01[c] - p00[c]) * fx;
                float bot = p10[c] + (p11[c] - p10[c]) * fx;
                float v = top + (bot - top) * fy;
                t[(size_t)c * plane + (size_t)y * (size_t)width + (size_t)x] = (v / 255.0f - mean[c]) / sd[c];
            }
        }
    }
    stbi_image_free(img);
    *out = t;
    return TE_OK;
}
