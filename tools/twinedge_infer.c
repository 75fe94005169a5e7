/* twinedge-infer: one private inference from a provisioned device directory
 * against two edge hosts over gRPC with mutual TLS. */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "te_bundle.h"
#include "te_image.h"
#include "te_input.h"
#include "te_npy.h"
#include "te_outputs.h"
#include "te_report.h"
#include "twinedge_device.h"
#include "twinedge_net.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: twinedge-infer DEVICE_DIR INPUT -o OUTPUT.npy --edge-a TARGET --edge-b TARGET\n"
            "                      [--mode relay|mediated] [--report REPORT.json] [--tls DIR] [--timeout-ms N]\n"
            "                      [--fit crop|stretch] [--allow-rounding]\n"
            "\n"
            "Runs one private inference of INPUT with the device in DEVICE_DIR, EdgeA and EdgeB\n"
            "reached over gRPC with mutual TLS (credentials: DEVICE_DIR/tls).\n"
            "INPUT: a float32 .npy tensor, or a PNG/JPEG image (told apart by content), resized\n"
            "to the model input and normalised with the deployment's preprocessing; an image of\n"
            "another aspect ratio is centre-cropped to the model's (--fit crop, the default)\n"
            "or distorted to it (--fit stretch), and a note says which.  A .npy must have the\n"
            "model's input shape (NCHW; the batch dimension of 1 may be left out) and finite\n"
            "values; another dtype is converted with a note when every value is exact in\n"
            "float32, and refused otherwise unless --allow-rounding.\n"
            "TARGET: HOST:PORT, or several replicas: ipv4:HOST:PORT,HOST:PORT,... (round robin).\n"
            "A model with several outputs writes output k > 0 to OUTPUT.k.npy.\n");
}

static int fail(const char *msg)
{
    fprintf(stderr, "twinedge-infer: error: %s\n", msg);
    return 1;
}

/* INPUT by content: a PNG/JPEG becomes the model input (resized, converted,
 * normalised with the deployment's preprocessing), anything else is read
 * as .npy. */
static te_status read_input(const char *dir, const twinedge_device *dev, const char *path, te_image_fit fit,
                            int allow_rounding, te_shape *shape, float **x, te_err *err)
{
    uint8_t *buf = NULL;
    size_t len = 0;
    te_status st = te_file_read(path, (size_t)1 << 30, &buf, &len, err);
    if (st != TE_OK)
        return st;
    te_shape in;
    memset(&in, 0, sizeof in);
    twinedge_input_shape(dev, in.d, &in.ndim);
    if (te_image_sniff(buf, len) == TE_IMAGE_UNKNOWN) {
        te_npy_info info;
        char note[256];
        st = te_npy_parse_info(buf, len, shape, x, &info, err);
        free(buf);
        if (st != TE_OK)
            return te_err_wrap(err, "%s (neither .npy nor PNG/JPEG)", path);
        if ((st = te_input_check_dtype(path, &info, allow_rounding, note, sizeof note, err)) != TE_OK ||
            (st = te_input_check_shape(path, &in, shape, err)) != TE_OK ||
            (st = te_input_check_finite(path, *x, (size_t)te_shape_numel(shape), err)) != TE_OK) {
            free(*x);
            *x = NULL;
            return st;
        }
        if (note[0])
            fprintf(stderr, "twinedge-infer: note: %s\n", note);
        return TE_OK;
    }
    te_model *m = NULL;
    char bundle[4200];
    snprintf(bundle, sizeof bundle, "%s/device.bundle", dir);
    if (in.ndim != 4 || in.d[0] != 1) {
        st = te_errf(err, TE_ESHAPE, "%s is an image, but the model input is not (1, C, H, W)", path);
    } else if ((st = te_device_bundle_read(bundle, &m, err)) == TE_OK) {
        int iw, ih, ic;
        if (te_image_info(buf, len, &iw, &ih, &ic, err) == TE_OK &&
            te_image_aspect_differs(iw, ih, (int)in.d[3], (int)in.d[2]))
            fprintf(stderr, "twinedge-infer: note: %s is %d x %d, the model takes %lld x %lld: %s\n", path, iw, ih,
                    (long long)in.d[3], (long long)in.d[2],
                    fit == TE_FIT_CROP ? "centre-cropped to its aspect ratio (--fit stretch distorts instead)"
                                       : "stretched to it (--fit crop keeps the proportions)");
        st = te_image_to_tensor(buf, len, (int)in.d[1], (int)in.d[2], (int)in.d[3], &m->pre, fit, x, err);
        if (st != TE_OK)
            te_err_wrap(err, "%s", path);
        else
            *shape = in;
    }
    te_model_free(m);
    free(buf);
    return st;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("twinedge-infer %s\n", TWINEDGE_VERSION_STRING);
        return 0;
    }
    const char *out = NULL, *a = NULL, *b = NULL, *report = NULL, *tls = NULL;
    int timeout_ms = 30000;
    twinedge_mode mode = TWINEDGE_RELAY;
    te_image_fit fit = TE_FIT_CROP;
    int allow_rounding = 0;
    enum { O_A = 256, O_B, O_MODE, O_REPORT, O_TLS, O_TIMEOUT, O_FIT, O_ROUND };
    static const struct option opts[] = {{"output", required_argument, NULL, 'o'},
                                         {"edge-a", required_argument, NULL, O_A},
                                         {"edge-b", required_argument, NULL, O_B},
                                         {"mode", required_argument, NULL, O_MODE},
                                         {"report", required_argument, NULL, O_REPORT},
                                         {"tls", required_argument, NULL, O_TLS},
                                         {"timeout-ms", required_argument, NULL, O_TIMEOUT},
                                         {"fit", required_argument, NULL, O_FIT},
                                         {"allow-rounding", no_argument, NULL, O_ROUND},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': out = optarg; break;
        case O_A: a = optarg; break;
        case O_B: b = optarg; break;
        case O_MODE:
            if (strcmp(optarg, "relay") == 0)
                mode = TWINEDGE_RELAY;
            else if (strcmp(optarg, "mediated") == 0)
                mode = TWINEDGE_MEDIATED;
            else
                return fail("--mode must be relay or mediated");
            break;
        case O_REPORT: report = optarg; break;
        case O_TLS: tls = optarg; break;
        case O_TIMEOUT: timeout_ms = atoi(optarg); break;
        case O_FIT:
            if (strcmp(optarg, "crop") == 0)
                fit = TE_FIT_CROP;
            else if (strcmp(optarg, "stretch") == 0)
                fit = TE_FIT_STRETCH;
            else
                return fail("--fit must be crop or stretch");
            break;
        case O_ROUND: allow_rounding = 1; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (argc - optind != 2 || !out || !a || !b || timeout_ms <= 0) {
        usage(stderr);
        return 2;
    }
    const char *dir = argv[optind], *input = argv[optind + 1];
    char tlsbuf[4200];
    if (!tls) {
        snprintf(tlsbuf, sizeof tlsbuf, "%s/tls", dir);
        tls = tlsbuf;
    }
    te_err err;
    te_shape in_shape, out_shape;
    float *x = NULL, *y = NULL;
    twinedge_device *dev = NULL;
    twinedge_net *net = NULL;
    int rc = 1;
    if (twinedge_open(dir, &dev) != TWINEDGE_OK) {
        fail(twinedge_errmsg(dev));
        goto done;
    }
    if (read_input(dir, dev, input, fit, allow_rounding, &in_shape, &x, &err) != TE_OK) {
        fail(err.msg);
        goto done;
    }
    if (twinedge_connect(dev, a, b, tls, timeout_ms, &net) != TWINEDGE_OK) {
        fail(twinedge_net_errmsg(net));
        goto done;
    }
    twinedge_output_shape(dev, out_shape.d, &out_shape.ndim);
    size_t n_out = (size_t)te_shape_numel(&out_shape), n_in = (size_t)te_shape_numel(&in_shape);
    if (!(y = calloc(n_out ? n_out : 1, sizeof *y))) {
        fail("out of memory");
        goto done;
    }
    struct timespec t0, t1, c0, c1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    if (twinedge_infer(dev, mode, x, n_in, y, n_out) != TWINEDGE_OK) {
        fail(twinedge_errmsg(dev));
        rc = twinedge_errcode(dev) == TWINEDGE_EAUTH ? 3 : twinedge_errcode(dev) == TWINEDGE_ETRANSPORT ? 4 : 1;
        goto done;
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    double wall = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) * 1e-9;
    if (te_device_outputs_write(dev, out, &err) != TE_OK) {
        fail(err.msg);
        goto done;
    }
    twinedge_report rep;
    twinedge_last_report(dev, &rep);
    twinedge_net_stats ns;
    twinedge_net_get_stats(net, &ns);
    printf("private inference (%s, gRPC+mTLS): %d linear layers outsourced, %d verified, %.3f s, device up %llu B, "
           "down %llu B\n",
           mode == TWINEDGE_RELAY ? "relay" : "mediated", rep.linear_layers, rep.layers_checked, wall,
           (unsigned long long)ns.bytes_up, (unsigned long long)ns.bytes_down);
    if (report) {
        te_run_report r;
        te_run_report_init(&r, "twinedge-infer");
        r.device_dir = dir;
        r.input = input;
        r.output = out;
        r.mode = mode;
        r.edge_a = a;
        r.edge_b = b;
        /* the device's link: what it exchanged with each host */
        r.traffic.device_up = ns.bytes_up;
        r.traffic.device_down = ns.bytes_down;
        r.traffic.edge_a_in = ns.bytes_to_a;
        r.traffic.edge_a_out = ns.bytes_from_a;
        r.traffic.edge_b_in = ns.bytes_to_b;
        r.traffic.edge_b_out = ns.bytes_from_b;
        r.traffic.messages = ns.messages;
        r.have_hosts_bytes = 1;
        r.wall_s = wall;
        r.device_cpu_s = (double)(c1.tv_sec - c0.tv_sec) + (double)(c1.tv_nsec - c0.tv_nsec) * 1e-9;
        r.dev = rep;
        if (te_run_report_write(report, &r, &err) != TE_OK) {
            fail(err.msg);
            goto done;
        }
    }
    rc = 0;
done:
    twinedge_close(dev);
    twinedge_disconnect(net);
    free(x);
    free(y);
    return rc;
}
