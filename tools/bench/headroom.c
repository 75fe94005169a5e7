/* twinedge-bench headroom: how often real photos make the device widen a
 * ring, and how close their fixed-point outputs stay to float32.
 *
 * The owner sizes each layer's ring from the calibration set plus
 * `headroom` bits; an input whose activations exceed that makes the device
 * widen the layer to 64 bits before sending (te_layer_plan_input): always
 * sound, but the layer then costs up to 64 / ring_bits of its bytes.  This
 * command compiles each model as the suite does (the owner's defaults,
 * calibrated on MODEL.calib.npy), then runs every photo through the device's
 * own plan and the exact fixed-point reference (te_linear_fn_fixed), and
 * through float32, and reports per model: photos with a widened layer,
 * widened layers, the extra link bytes they cost, and the output cosine to
 * float32.  Each photo is used four ways: centre-cropped and stretched to
 * the model's input, each also mirrored. */
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"
#include "te_exec.h"
#include "te_image.h"
#include "te_linear.h"
#include "runlib.h"
#include "te_bundle.h"
#include "te_npy.h"
#include "te_ring.h"

#define HR_MAX_IMAGES 64
#define HR_VARIANTS 4

typedef struct hr_ctx {
    int *widened;          /* per layer, over all inputs */
    uint64_t bytes, extra; /* upload + download of the linear layers, and what widening added */
    int input_widened;     /* this input widened some layer */
} hr_ctx;

static te_status hr_linear(void *vctx, const te_model *m, int layer, const float *x, float *y, te_err *err)
{
    hr_ctx *c = vctx;
    const te_layer *L = &m->layers[layer];
    te_layer_plan plan;
    te_status st = te_layer_plan_input(L, x, &plan, err);
    if (st != TE_OK)
        return st;
    int64_t batch = L->geom.batch < 1 ? 1 : L->geom.batch;
    size_t n = (size_t)(batch * (te_geom_in_len(&L->geom) + te_geom_out_len(&L->geom)));
    uint64_t at = te_pack_bytes(n, (unsigned)L->ring_bits), used = te_pack_bytes(n, plan.l);
    c->bytes += used;
    if (plan.widened) {
        c->widened[layer]++;
        c->extra += used - at;
        c->input_widened = 1;
    }
    return te_linear_fn_fixed(NULL, m, layer, x, y, err);
}

static double cosine(const float *a, const float *b, size_t n)
{
    double ab = 0, aa = 0, bb = 0;
    for (size_t i = 0; i < n; i++) {
        ab += (double)a[i] * b[i];
        aa += (double)a[i] * a[i];
        bb += (double)b[i] * b[i];
    }
    return aa > 0 && bb > 0 ? ab / sqrt(aa * bb) : (aa == bb ? 1.0 : 0.0);
}

/* Mirror an NCHW tensor left-right in place. */
static void mirror(float *x, int64_t c, int64_t h, int64_t w)
{
    for (int64_t p = 0; p < c * h; p++)
        for (int64_t i = 0, j = w - 1; i < j; i++, j--) {
            float t = x[p * w + i];
            x[p * w + i] = x[p * w + j];
            x[p * w + j] = t;
        }
}

/* The preprocessing photos get: the deployment's own, else ImageNet's
 * statistics for colour inputs (as the test models' calibration images),
 * 0.5 / 0.5 otherwise. */
static te_preprocess photo_pre(const te_preprocess *own, int channels)
{
    static const float mean3[3] = {0.485f, 0.456f, 0.406f}, std3[3] = {0.229f, 0.224f, 0.225f};
    te_preprocess pre;
    if (own && own->present)
        return *own;
    memset(&pre, 0, sizeof pre);
    pre.present = 1;
    pre.channels = channels;
    for (int k = 0; k < channels && k < 4; k++) {
        pre.mean[k] = channels == 3 ? mean3[k] : 0.5f;
        pre.std[k] = channels == 3 ? std3[k] : 0.5f;
    }
    return pre;
}

/* Variant v (0..HR_VARIANTS-1) of a photo as a (1, c, h, w) tensor in *x
 * (malloc'd): centre-cropped or stretched, each also mirrored. */
static te_status photo_tensor(const char *path, int v, int64_t c, int64_t h, int64_t w, const te_preprocess *pre,
                              float **x, te_err *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    te_status st = te_file_read(path, TE_IMAGE_MAX_BYTES, &buf, &len, err);
    if (st == TE_OK)
        st = te_image_to_tensor(buf, len, (int)c, (int)h, (int)w, pre, v < 2 ? TE_FIT_CROP : TE_FIT_STRETCH, x, err);
    free(buf);
    if (st != TE_OK)
        return te_err_wrap(err, "%s", path);
    if (v & 1)
        mirror(*x, c, h, w);
    return TE_OK;
}

/* Every variant of the photos, stacked, as DIR/calib.npy for the owner. */
static te_status photo_calibration(char **photos, int n, const te_shape *sample, const char *path, te_err *err)
{
    int64_t c = sample->d[1], h = sample->d[2], w = sample->d[3], per = c * h * w;
    float *all = malloc((size_t)(n * HR_VARIANTS * per) * sizeof *all);
    if (!all)
        return te_errf(err, TE_ENOMEM, "out of memory");
    te_preprocess pre = photo_pre(NULL, (int)c);
    te_status st = TE_OK;
    for (int i = 0; i < n * HR_VARIANTS && st == TE_OK; i++) {
        float *x = NULL;
        if ((st = photo_tensor(photos[i / HR_VARIANTS], i % HR_VARIANTS, c, h, w, &pre, &x, err)) == TE_OK)
            memcpy(all + i * per, x, (size_t)per * sizeof *x);
        free(x);
    }
    te_shape s = {4, {n * HR_VARIANTS, c, h, w}};
    if (st == TE_OK)
        st = te_npy_write(path, &s, all, err);
    free(all);
    return st;
}

typedef struct hr_result {
    int inputs, inputs_widened, layers, widened_layers;
    double extra_bytes_share; /* widening's bytes over all inputs' linear-layer bytes */
    double cos_min, cos_median;
    int ring_min, ring_max;
} hr_result;

static int hr_model(const char *dir, const char *name, int headroom, char **calib, int n_calib, char **images,
                    int n_images, hr_result *R, FILE *log)
{
    te_err err;
    te_err_clear(&err);
    te_model *m = NULL;
    te_exec *ex = NULL;
    float *yfix = NULL, *x = NULL;
    blas_ctx bc = {NULL, 0};
    hr_ctx c = {NULL, 0, 0, 0};
    double cos[HR_MAX_IMAGES * HR_VARIANTS];
    int rc = 1;
    memset(R, 0, sizeof *R);
    te_owner_options oo;
    owner_defaults(&oo);
    oo.headroom = headroom;
    if (n_calib > 0) {
        /* calibrate on photos: the sample shape from MODEL.calib.npy */
        char onnx[4096], cal[4096], tmp[] = "/tmp/te-headroom-XXXXXX", path[64];
        te_shape cs;
        float *cd = NULL;
        te_status st = TE_OK;
        if (snprintf(onnx, sizeof onnx, "%s/%s.onnx", dir, name) >= (int)sizeof onnx ||
            snprintf(cal, sizeof cal, "%s/%s.calib.npy", dir, name) >= (int)sizeof cal)
            st = te_errf(&err, TE_EINVAL, "model path too long");
        if (st == TE_OK)
            st = te_npy_read(cal, &cs, &cd, &err);
        free(cd);
        if (st == TE_OK && cs.ndim != 4)
            st = te_errf(&err, TE_ESHAPE, "%s is not a stack of NCHW images", cal);
        int made = st == TE_OK && mkdtemp(tmp) != NULL;
        if (st == TE_OK && !made)
            st = te_errf(&err, TE_EIO, "cannot create a temporary directory");
        snprintf(path, sizeof path, "%s/calib.npy", tmp);
        if (st == TE_OK && (st = photo_calibration(calib, n_calib, &cs, path, &err)) == TE_OK)
            st = te_owner_build(onnx, path, &oo, &m, &err);
        te_err scratch;
        if (made)
            te_rm_rf(tmp, &scratch);
        if (st != TE_OK)
            goto out;
    } else if (build_model(dir, name, &oo, &m, &err) != TE_OK) {
        goto out;
    }
    if (te_exec_new(m, &ex, &err) != TE_OK)
        goto out;
    const te_shape *is = &m->values[m->input].shape;
    if (is->ndim != 4 || is->d[0] != 1) {
        te_errf(&err, TE_ESHAPE, "the model's input is not one NCHW image");
        goto out;
    }
    size_t n_out = (size_t)te_shape_numel(&m->values[m->output].shape);
    if (!(yfix = malloc(n_out * sizeof *yfix)) || !(c.widened = calloc((size_t)m->n_layers, sizeof *c.widened))) {
        te_errf(&err, TE_ENOMEM, "out of memory");
        goto out;
    }
    te_preprocess pre = photo_pre(&m->pre, (int)is->d[1]);
    R->ring_min = 64;
    for (int i = 0; i < m->n_layers; i++) {
        R->ring_min = m->layers[i].ring_bits < R->ring_min ? m->layers[i].ring_bits : R->ring_min;
        R->ring_max = m->layers[i].ring_bits > R->ring_max ? m->layers[i].ring_bits : R->ring_max;
    }
    for (int im = 0; im < n_images; im++) {
        for (int v = 0; v < HR_VARIANTS; v++) {
            free(x);
            x = NULL;
            if (photo_tensor(images[im], v, is->d[1], is->d[2], is->d[3], &pre, &x, &err) != TE_OK)
                goto out;
            size_t n_in = (size_t)te_shape_numel(is);
            te_shape osh;
            c.input_widened = 0;
            if (te_exec_run(ex, x, n_in, hr_linear, &c, &err) != TE_OK)
                goto out;
            memcpy(yfix, te_exec_output(ex, &osh), n_out * sizeof *yfix);
            if (te_exec_run(ex, x, n_in, blas_linear, &bc, &err) != TE_OK)
                goto out;
            cos[R->inputs] = cosine(yfix, te_exec_output(ex, &osh), n_out);
            fprintf(log, "  %s %s%s: cosine %.6f%s\n", images[im], v < 2 ? "crop" : "stretch", v & 1 ? " mirrored" : "",
                    cos[R->inputs], c.input_widened ? ", widened" : "");
            R->inputs_widened += c.input_widened;
            R->inputs++;
        }
    }
    for (int i = 0; i < m->n_layers; i++) {
        R->widened_layers += c.widened[i];
        if (c.widened[i])
            fprintf(log, "  layer %d %s (ring %d bits): widened for %d of %d inputs\n", i,
                    m->layers[i].name ? m->layers[i].name : "?", m->layers[i].ring_bits, c.widened[i], R->inputs);
    }
    R->layers = m->n_layers * R->inputs;
    R->extra_bytes_share = c.bytes ? (double)c.extra / (double)c.bytes : 0;
    qsort(cos, (size_t)R->inputs, sizeof *cos, cmp_double);
    R->cos_min = R->inputs ? cos[0] : 0;
    R->cos_median = R->inputs ? cos[R->inputs / 2] : 0;
    rc = 0;
out:
    if (rc)
        fprintf(stderr, "twinedge-bench headroom: %s: %s\n", name, err.msg);
    free(x);
    free(yfix);
    free(c.widened);
    free(bc.col);
    te_exec_free(ex);
    te_model_free(m);
    return rc;
}

static void hr_usage(FILE *f)
{
    fprintf(f, "usage: twinedge-bench headroom [--models-dir DIR] [--models A,B,...] [--headroom N]\n"
               "                                [--calibrate-photos N] [--json FILE] PHOTO...\n\n"
               "Compiles each model at the owner's defaults (calibrated on MODEL.calib.npy) and runs every photo\n"
               "(PNG or JPEG; centre-cropped and stretched, each also mirrored) through the device's ring plan and\n"
               "the exact fixed-point reference: photos and layers the device widens to 64 bits, the bytes that\n"
               "costs, and the output cosine to float32.  --headroom N: the owner's ring headroom (default: its\n"
               "default).  --calibrate-photos N: calibrate on the first N photos (every variant) instead of\n"
               "MODEL.calib.npy, and measure on the others.  Photos: e.g. darknet's data/*.jpg (Debian: darknet).\n");
}

int bench_headroom_main(int argc, char **argv)
{
    static char dir_buf[4096];
    const char *td = getenv("TE_TEST_DATA");
    snprintf(dir_buf, sizeof dir_buf, "%s/full", td && *td ? td : "testdata");
    const char *dir = dir_buf, *json = NULL;
    int headroom = -1, n_calib = 0;
    char models_buf[256] = "alexnet,facenet,resnet18";
    enum { O_DIR = 256, O_MODELS, O_JSON, O_HEADROOM, O_CALIB };
    static const struct option lopts[] = {{"models-dir", required_argument, NULL, O_DIR},
                                          {"models", required_argument, NULL, O_MODELS},
                                          {"json", required_argument, NULL, O_JSON},
                                          {"headroom", required_argument, NULL, O_HEADROOM},
                                          {"calibrate-photos", required_argument, NULL, O_CALIB},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    int o;
    optind = 2;
    while ((o = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        switch (o) {
        case O_DIR: dir = optarg; break;
        case O_MODELS: snprintf(models_buf, sizeof models_buf, "%s", optarg); break;
        case O_JSON: json = optarg; break;
        case O_CALIB:
            n_calib = atoi(optarg);
            if (n_calib < 1 || n_calib > HR_MAX_IMAGES) {
                fprintf(stderr, "twinedge-bench headroom: --calibrate-photos must be in 1..%d\n", HR_MAX_IMAGES);
                return 2;
            }
            break;
        case O_HEADROOM:
            headroom = atoi(optarg);
            if (headroom < 0 || headroom > 32) {
                fprintf(stderr, "twinedge-bench headroom: --headroom must be in 0..32\n");
                return 2;
            }
            break;
        case 'h': hr_usage(stdout); return 0;
        default: hr_usage(stderr); return 2;
        }
    }
    int n_images = argc - optind - n_calib;
    if (n_images < 1 || n_images > HR_MAX_IMAGES) {
        fprintf(stderr, "twinedge-bench headroom: give 1..%d photos to measure (after the calibration photos)\n",
                HR_MAX_IMAGES);
        hr_usage(stderr);
        return 2;
    }
    const char *models[8];
    int n_models = split_models(models_buf, models, 8);
    if (n_models < 0) {
        fprintf(stderr, "twinedge-bench headroom: --models needs 1..8 comma-separated names\n");
        return 2;
    }
    if (headroom < 0) { /* the owner's default, named in the output */
        te_owner_options oo;
        owner_defaults(&oo);
        headroom = oo.headroom;
    }
    printf("headroom %d bit%s; calibration: %s\n", headroom, headroom == 1 ? "" : "s",
           n_calib ? "the first photos" : "MODEL.calib.npy");
    hr_result R[8];
    for (int i = 0; i < n_models; i++) {
        printf("%s:\n", models[i]);
        if (hr_model(dir, models[i], headroom, argv + optind, n_calib, argv + optind + n_calib, n_images, &R[i],
                     stdout) != 0)
            return 1;
    }
    printf("\n%-10s %7s %15s %15s %12s %10s %10s %8s\n", "model", "inputs", "inputs widened", "layers widened",
           "extra bytes", "cos min", "cos median", "rings");
    for (int i = 0; i < n_models; i++)
        printf("%-10s %7d %15d %9d/%-5d %11.2f%% %10.6f %10.6f %3d..%d\n", models[i], R[i].inputs, R[i].inputs_widened,
               R[i].widened_layers, R[i].layers, 100 * R[i].extra_bytes_share, R[i].cos_min, R[i].cos_median,
               R[i].ring_min, R[i].ring_max);
    if (json) {
        FILE *f = fopen(json, "w");
        if (!f) {
            fprintf(stderr, "twinedge-bench headroom: cannot write %s\n", json);
            return 1;
        }
        fprintf(f, "{\n  \"photos\": %d,\n  \"calibration_photos\": %d,\n  \"variants_per_photo\": %d,\n"
                   "  \"headroom\": %d,\n  \"models\": {", n_images, n_calib, HR_VARIANTS, headroom);
        for (int i = 0; i < n_models; i++)
            fprintf(f,
                    "%s\n    \"%s\": {\"inputs\": %d, \"inputs_widened\": %d, \"layers\": %d, \"layers_widened\": %d, "
                    "\"extra_bytes_share\": %.6f, \"cosine_min\": %.8f, \"cosine_median\": %.8f, \"ring_bits_min\": %d, "
                    "\"ring_bits_max\": %d}",
                    i ? "," : "", models[i], R[i].inputs, R[i].inputs_widened, R[i].layers, R[i].widened_layers,
                    R[i].extra_bytes_share, R[i].cos_min, R[i].cos_median, R[i].ring_min, R[i].ring_max);
        fprintf(f, "\n  }\n}\n");
        fclose(f);
    }
    return 0;
}
