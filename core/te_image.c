/* Image input (see te_image.h). */
#include "te_image.h"

#include <math.h>
#include <setjmp.h>
#include <stdio.h> /* before jpeglib.h, which uses FILE */
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

/* Decoding is left to libpng and libjpeg-turbo: both are fuzzed upstream
 * (OSS-Fuzz) and maintained by Debian's security team, which the device's
 * input (any file a camera or a user hands it) needs.  stb_image was used
 * before and needed a pre-parser per bug our fuzzer found in it. */

te_image_format te_image_sniff(const uint8_t *buf, size_t len)
{
    static const uint8_t png[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (buf && len >= 8 && memcmp(buf, png, 8) == 0)
        return TE_IMAGE_PNG;
    if (buf && len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff)
        return TE_IMAGE_JPEG;
    return TE_IMAGE_UNKNOWN;
}

/* A decoded image, 8 bits per channel, rows packed; px NULL for the header
 * only. */
typedef struct decoded {
    uint8_t *px;
    int w, h, n;
} decoded;

static te_status check_dims(int w, int h, te_err *err)
{
    if (w <= 0 || h <= 0 || w > TE_IMAGE_MAX_DIM || h > TE_IMAGE_MAX_DIM ||
        (int64_t)w * (int64_t)h > TE_IMAGE_MAX_PIXELS)
        return te_errf(err, TE_EINVAL, "image of %d x %d pixels is out of bounds (at most %d per side, %lld in all)",
                       w, h, TE_IMAGE_MAX_DIM, (long long)TE_IMAGE_MAX_PIXELS);
    return TE_OK;
}

/* ---- PNG (libpng) ---- */

typedef struct png_ctx {
    const uint8_t *buf;
    size_t len, pos;
    char msg[160];
    png_structp png;
    png_infop info;
    uint8_t *px;
    png_bytep *rows;
} png_ctx;

static void png_on_error(png_structp p, png_const_charp msg)
{
    png_ctx *c = png_get_error_ptr(p);
    snprintf(c->msg, sizeof c->msg, "%s", msg);
    png_longjmp(p, 1);
}

/* Warnings are about ancillary data (colour profiles, text): the pixels are
 * intact, so they are not errors. */
static void png_on_warning(png_structp p, png_const_charp msg)
{
    (void)p;
    (void)msg;
}

static void png_read_mem(png_structp p, png_bytep out, size_t n)
{
    png_ctx *c = png_get_io_ptr(p);
    if (n > c->len - c->pos)
        png_error(p, "the file ends early");
    memcpy(out, c->buf + c->pos, n);
    c->pos += n;
}

static te_status decode_png(const uint8_t *buf, size_t len, int header_only, decoded *out, te_err *err)
{
    png_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return te_errf(err, TE_ENOMEM, "out of memory for a PNG decoder");
    c->buf = buf;
    c->len = len;
    te_status st = TE_OK;
    c->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, c, png_on_error, png_on_warning);
    if (c->png)
        c->info = png_create_info_struct(c->png);
    if (!c->png || !c->info) {
        st = te_errf(err, TE_ENOMEM, "out of memory for a PNG decoder");
        goto done;
    }
    if (setjmp(png_jmpbuf(c->png))) {
        st = te_errf(err, TE_EFORMAT, "malformed PNG image: %s", c->msg);
        goto done;
    }
    png_set_read_fn(c->png, c, png_read_mem);
    /* ancillary chunks (text, profiles) may not make libpng allocate more
     * than 1 MiB each; the size is checked below, before libpng allocates
     * anything for the pixels (at the first row) */
    png_set_chunk_malloc_max(c->png, (png_alloc_size_t)1 << 20);
    png_read_info(c->png, c->info);
    png_uint_32 w = png_get_image_width(c->png, c->info), h = png_get_image_height(c->png, c->info);
    if ((st = check_dims((int)w, (int)h, err)) != TE_OK)
        goto done;
    /* palette -> RGB, grey below 8 bits -> 8, tRNS -> alpha; 16 bits -> the
     * high byte */
    png_set_expand(c->png);
    png_set_strip_16(c->png);
    (void)png_set_interlace_handling(c->png);
    png_read_update_info(c->png, c->info);
    int n = png_get_channels(c->png, c->info);
    size_t rowbytes = png_get_rowbytes(c->png, c->info);
    if (n < 1 || n > 4 || rowbytes != (size_t)w * (size_t)n) {
        st = te_errf(err, TE_EFORMAT, "PNG image with %d channels of %zu bytes per row", n, rowbytes);
        goto done;
    }
    out->w = (int)w;
    out->h = (int)h;
    out->n = n;
    if (header_only)
        goto done;
    c->px = malloc(rowbytes * h);
    c->rows = malloc(h * sizeof *c->rows);
    if (!c->px || !c->rows) {
        st = te_errf(err, TE_ENOMEM, "out of memory for a %lu x %lu image", (unsigned long)w, (unsigned long)h);
        goto done;
    }
    for (png_uint_32 y = 0; y < h; y++)
        c->rows[y] = c->px + (size_t)y * rowbytes;
    png_read_image(c->png, c->rows);
    /* to IEND: the image data's checksums and the file's end are checked */
    png_read_end(c->png, NULL);
    out->px = c->px;
    c->px = NULL;
done:
    png_destroy_read_struct(c->png ? &c->png : NULL, c->info ? &c->info : NULL, NULL);
    free(c->px);
    free(c->rows);
    free(c);
    return st;
}

/* ---- JPEG (libjpeg-turbo) ---- */

/* A progressive JPEG may hold any number of scans, each a pass over the
 * whole image: a small file could keep the device busy for minutes.
 * Encoders write about ten. */
#define TE_JPEG_MAX_SCANS 100

typedef struct jpeg_ctx {
    struct jpeg_decompress_struct d;
    struct jpeg_error_mgr jerr;
    struct jpeg_progress_mgr progress;
    jmp_buf jmp;
    char msg[JMSG_LENGTH_MAX + 64];
    uint8_t *px;
} jpeg_ctx;

static void jpeg_on_error(j_common_ptr d)
{
    jpeg_ctx *c = (jpeg_ctx *)d->client_data;
    (*d->err->format_message)(d, c->msg);
    longjmp(c->jmp, 1);
}

/* A warning from libjpeg means corrupt data it would paper over (grey
 * blocks for a truncated scan, skipped bytes): the device refuses to
 * classify an image it could not read whole. */
static void jpeg_on_message(j_common_ptr d, int level)
{
    if (level < 0)
        jpeg_on_error(d);
}

static void jpeg_on_progress(j_common_ptr d)
{
    jpeg_ctx *c = (jpeg_ctx *)d->client_data;
    if (c->d.input_scan_number > TE_JPEG_MAX_SCANS) {
        snprintf(c->msg, sizeof c->msg, "more than %d scans", TE_JPEG_MAX_SCANS);
        longjmp(c->jmp, 1);
    }
}

static te_status decode_jpeg(const uint8_t *buf, size_t len, int header_only, decoded *out, te_err *err)
{
    jpeg_ctx *c = calloc(1, sizeof *c);
    if (!c)
        return te_errf(err, TE_ENOMEM, "out of memory for a JPEG decoder");
    te_status st = TE_OK;
    c->d.err = jpeg_std_error(&c->jerr);
    c->jerr.error_exit = jpeg_on_error;
    c->jerr.emit_message = jpeg_on_message;
    c->d.client_data = c;
    if (setjmp(c->jmp)) {
        st = te_errf(err, TE_EFORMAT, "malformed JPEG image: %s", c->msg);
        goto done;
    }
    jpeg_create_decompress(&c->d);
    c->progress.progress_monitor = jpeg_on_progress;
    c->d.progress = &c->progress;
    jpeg_mem_src(&c->d, buf, (unsigned long)len);
    (void)jpeg_read_header(&c->d, TRUE);
    if ((st = check_dims((int)c->d.image_width, (int)c->d.image_height, err)) != TE_OK)
        goto done;
    int n;
    switch (c->d.jpeg_color_space) {
    case JCS_GRAYSCALE:
        n = 1;
        c->d.out_color_space = JCS_GRAYSCALE;
        break;
    case JCS_YCbCr:
    case JCS_RGB:
        n = 3;
        c->d.out_color_space = JCS_RGB;
        break;
    default:
        st = te_errf(err, TE_EUNSUPPORTED, "JPEG image in a %d-component colour space (CMYK or YCCK): only grey and "
                     "colour (YCbCr, RGB) are supported", c->d.num_components);
        goto done;
    }
    out->w = (int)c->d.image_width;
    out->h = (int)c->d.image_height;
    out->n = n;
    if (header_only)
        goto done;
    (void)jpeg_start_decompress(&c->d);
    if ((int)c->d.output_width != out->w || (int)c->d.output_height != out->h || c->d.output_components != n) {
        st = te_errf(err, TE_EFORMAT, "the JPEG header and its decoder disagree on the size");
        goto done;
    }
    size_t row = (size_t)out->w * (size_t)n;
    c->px = malloc(row * (size_t)out->h);
    if (!c->px) {
        st = te_errf(err, TE_ENOMEM, "out of memory for a %d x %d image", out->w, out->h);
        goto done;
    }
    while (c->d.output_scanline < c->d.output_height) {
        JSAMPROW r = c->px + (size_t)c->d.output_scanline * row;
        (void)jpeg_read_scanlines(&c->d, &r, 1);
    }
    (void)jpeg_finish_decompress(&c->d);
    out->px = c->px;
    c->px = NULL;
done:
    jpeg_destroy_decompress(&c->d);
    free(c->px);
    free(c);
    return st;
}

static te_status decode(const uint8_t *buf, size_t len, int header_only, decoded *out, te_err *err)
{
    memset(out, 0, sizeof *out);
    te_image_format f = te_image_sniff(buf, len);
    if (f == TE_IMAGE_UNKNOWN)
        return te_errf(err, TE_EFORMAT, "not a PNG or JPEG image");
    if (len > TE_IMAGE_MAX_BYTES)
        return te_errf(err, TE_EINVAL, "image of %zu bytes is larger than the limit (%zu)", len,
                       TE_IMAGE_MAX_BYTES);
    return f == TE_IMAGE_PNG ? decode_png(buf, len, header_only, out, err)
                             : decode_jpeg(buf, len, header_only, out, err);
}

te_status te_image_info(const uint8_t *buf, size_t len, int *width, int *height, int *channels, te_err *err)
{
    decoded d;
    te_status st = decode(buf, len, 1, &d, err);
    if (st != TE_OK)
        return st;
    *width = d.w;
    *height = d.h;
    *channels = d.n;
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

/* The source rectangle of an iw x ih image that is resized to w x h. */
static void fit_region(int iw, int ih, int w, int h, te_image_fit fit, int *x0, int *y0, int *cw, int *ch)
{
    *x0 = *y0 = 0;
    *cw = iw;
    *ch = ih;
    if (fit != TE_FIT_CROP)
        return;
    /* the largest centred rectangle of the model's aspect ratio */
    if ((int64_t)iw * h > (int64_t)ih * w) {
        *cw = (int)(((int64_t)ih * w + h / 2) / h);
        if (*cw < 1)
            *cw = 1;
        *x0 = (iw - *cw) / 2;
    } else {
        *ch = (int)(((int64_t)iw * h + w / 2) / w);
        if (*ch < 1)
            *ch = 1;
        *y0 = (ih - *ch) / 2;
    }
}

int te_image_aspect_differs(int iw, int ih, int w, int h)
{
    int x0, y0, cw, ch;
    fit_region(iw, ih, w, h, TE_FIT_CROP, &x0, &y0, &cw, &ch);
    return cw != iw || ch != ih;
}

te_status te_image_to_tensor(const uint8_t *buf, size_t len, int channels, int height, int width,
                             const te_preprocess *pre, te_image_fit fit, float **out, te_err *err)
{
    *out = NULL;
    if (channels != 1 && channels != 3 && channels != 4)
        return te_errf(err, TE_EUNSUPPORTED, "a model input with %d channels cannot take an image (1, 3 or 4)",
                       channels);
    if (height <= 0 || width <= 0 || height > TE_IMAGE_MAX_DIM || width > TE_IMAGE_MAX_DIM)
        return te_errf(err, TE_EINVAL, "model input of %d x %d is not an image size", height, width);
    if (fit != TE_FIT_CROP && fit != TE_FIT_STRETCH)
        return te_errf(err, TE_EINVAL, "unknown image fit %d", (int)fit);
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
    decoded img;
    te_status st = decode(buf, len, 0, &img, err);
    if (st != TE_OK)
        return st;
    size_t plane = (size_t)height * (size_t)width;
    float *t = malloc((size_t)channels * plane * sizeof *t);
    if (!t) {
        free(img.px);
        return te_errf(err, TE_ENOMEM, "out of memory for a %d x %d x %d input", channels, height, width);
    }
    int ox, oy, cw, ch;
    fit_region(img.w, img.h, width, height, fit, &ox, &oy, &cw, &ch);
    for (int y = 0; y < height; y++) {
        int y0, y1;
        float fy;
        src_coord(y, height, ch, &y0, &y1, &fy);
        for (int x = 0; x < width; x++) {
            int x0, x1;
            float fx;
            src_coord(x, width, cw, &x0, &x1, &fx);
            float p00[4], p01[4], p10[4], p11[4];
            pixel(img.px, img.w, img.n, ox + x0, oy + y0, channels, p00);
            pixel(img.px, img.w, img.n, ox + x1, oy + y0, channels, p01);
            pixel(img.px, img.w, img.n, ox + x0, oy + y1, channels, p10);
            pixel(img.px, img.w, img.n, ox + x1, oy + y1, channels, p11);
            for (int c = 0; c < channels; c++) {
                float top = p00[c] + (p01[c] - p00[c]) * fx;
                float bot = p10[c] + (p11[c] - p10[c]) * fx;
                float v = top + (bot - top) * fy;
                t[(size_t)c * plane + (size_t)y * (size_t)width + (size_t)x] = (v / 255.0f - mean[c]) / sd[c];
            }
        }
    }
    free(img.px);
    *out = t;
    return TE_OK;
}
