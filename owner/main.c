/* twinedge-owner: compile an ONNX model into a deployment, provision devices. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "deploy.h"
#include "owner.h"
#include "twinedge_version.h"

static const char usage[] =
    "usage:\n"
    "  twinedge-owner compile MODEL.onnx -o DEPLOY_DIR [--calibration INPUTS.npy]\n"
    "                 [--precision auto|fixed] [--min-cosine C] [--weight-bits N] [--act-bits N]\n"
    "                 [--headroom N] [--mean M,..] [--std S,..]\n"
    "                 [--input-shape NAME:D0,D1,...] [--no-fuse | --fuse none|same|embed] [--quiet]\n"
    "  twinedge-owner provision DEPLOY_DIR --device NAME -o DEVICE_DIR [--edge-b HOST:PORT] [--force]\n"
    "  twinedge-owner deploy DEPLOY_DIR --edge-a HOST:PORT --edge-b HOST:PORT\n"
    "  twinedge-owner --help\n"
    "\n"
    "compile: imports the ONNX model (opsets 7..21), folds BatchNormalization into\n"
    "  the preceding Conv/Gemm/MatMul, quantises every linear layer's weights per\n"
    "  output channel to N signed bits (--weight-bits, default 16), draws the\n"
    "  integrity keys and writes DEPLOY_DIR/device.bundle and DEPLOY_DIR/edge.bundle.\n"
    "  On error nothing is written.\n"
    "  --calibration INPUTS.npy: float inputs stacked on axis 0, each of the model's\n"
    "    input shape.  Per layer, frac_bits = act_bits - ceil(log2 max|x|) (clamped to\n"
    "    0..40, --act-bits default 16) and ring_bits = bits of the largest encoded\n"
    "    input and of the device's bound w_l1 * max|x_int| + 1 sign bit + headroom (--headroom,\n"
    "    default 1: inputs up to twice the calibrated magnitude keep the ring),\n"
    "    at most 64.\n"
    "  --precision auto (the default with --calibration): per layer the fewest weight bits,\n"
    "    and per input tensor the fewest activation bits (4 up to --weight-bits / --act-bits),\n"
    "    that keep the cosine between the fixed-point model's output and the float model's\n"
    "    at least C on every calibration input (--min-cosine C, default 0.9999, in (0, 1)).\n"
    "    Fewer bits make narrower rings: fewer bytes on the device's link.  --precision\n"
    "    fixed, or --weight-bits / --act-bits without --precision: those bits for every layer.\n"
    "  Without calibration data every layer uses frac_bits 16 and ring_bits 64.\n"
    "  --input-shape NAME:D0,D1,...: the shape of model input NAME where the file leaves\n"
    "    dimensions open (dim_param); without it open dimensions come from the\n"
    "    calibration data's shape, and an open batch dimension alone becomes 1.\n"
    "    The deployment records the fixed shape; the device refuses other inputs.\n"
    "  --mean M[,M..] --std S[,S..]: image preprocessing recorded in the deployment,\n"
    "    x = (pixel/255 - mean[c]) / std[c] (one value, or one per input channel);\n"
    "    used when a device is given a PNG/JPEG.  Default: x = pixel/255.\n"
    "  Branch fusion (default on): linear layers that read the same tensor become one\n"
    "    outsourced layer (one upload, one round trip; outputs split on the device,\n"
    "    bit-identical results).  --fuse same: only layers of the same kernel, stride,\n"
    "    pads and dilation; embed (the default): also a smaller kernel placed inside a\n"
    "    larger one where it reads the same pixels (zero taps); --no-fuse: none.\n"
    "  Prints per-op counts, the FLOPs on the edges and on the device and the\n"
    "  outsourcing rate (edge / total), and per linear layer its bits (--quiet: no table).\n"
    "  Also creates the deployment's mutual-TLS credentials unless present: a CA in\n"
    "  DEPLOY_DIR/ca (an existing CA is kept) and certificates for EdgeA\n"
    "  (DEPLOY_DIR/hosts/a), EdgeB (DEPLOY_DIR/hosts/b) and the owner (DEPLOY_DIR/owner).\n"
    "\n"
    "provision: draws a 32-byte key for device NAME ([A-Za-z0-9_.-]{1,63}), writes\n"
    "  DEVICE_DIR/device.bundle and DEVICE_DIR/device.key, and registers the key for\n"
    "  EdgeB as DEPLOY_DIR/hosts/b/devices/NAME.key; issues the device's certificate\n"
    "  (CN device:NAME) into DEVICE_DIR/tls.  --edge-b HOST:PORT: also registers the key\n"
    "  with the running EdgeB over gRPC (mutual TLS, DEPLOY_DIR/owner credentials).\n"
    "  A NAME already provisioned in DEPLOY_DIR, or a DEVICE_DIR that holds a device,\n"
    "  is refused unless --force: a new key makes the device holding the old one fail\n"
    "  every inference with an integrity error.\n"
    "\n"
    "deploy: uploads DEPLOY_DIR/edge.bundle to EdgeA and EdgeB (twinedge-host) over gRPC\n"
    "  with the owner's credentials (DEPLOY_DIR/owner) and registers every device key in\n"
    "  DEPLOY_DIR/hosts/b/devices with EdgeB.  Either --edge-a or --edge-b may be left\n"
    "  out to deploy to one host only.\n";

static int fail(const char *msg)
{
    fprintf(stderr, "twinedge-owner: error: %s\n", msg);
    return 1;
}

static int parse_int(const char *opt, const char *s, int *out)
{
    char *end;
    errno = 0;
    long v = s ? strtol(s, &end, 10) : 0;
    if (!s || errno || *end || end == s || v < -1000 || v > 1000) {
        fprintf(stderr, "twinedge-owner: error: %s needs an integer\n", opt);
        return -1;
    }
    *out = (int)v;
    return 0;
}

static void print_report(const te_model *m, const te_owner_options *opt, int calibrated)
{
    te_owner_report r;
    te_owner_report_compute(m, &r);
    printf("model %s  deployment %s\n\n", m->name ? m->name : "?", m->deployment_id);
    printf("%-20s %8s %16s   %s\n", "op", "count", "device FLOPs", "why on the device");
    int nonlin = 0;
    for (int op = 1; op < TE_OP_COUNT_; op++) {
        if (!r.op_count[op] || op == TE_OP_LINEAR)
            continue;
        nonlin += r.op_count[op];
        const te_op_desc *d = te_op_info((te_op)op);
        printf("%-20s %8d %16.0f   %s\n", te_op_name((te_op)op), r.op_count[op], r.op_device_flops[op],
               d ? d->why : "");
    }
    printf("%-20s %8d %16.0f   (encode/mask/unmask/check/decode)\n", "linear (on device)", r.op_count[TE_OP_LINEAR],
           r.device_linear_flops);
    printf("\nlinear ops (outsourced): %d (%d conv, %d fc)   non-linear ops (device): %d\n",
           r.op_count[TE_OP_LINEAR], r.n_conv, r.n_fc, nonlin);
    printf("branch fusion: %d linear layers in %d outsourced calls (%d fused)   uploaded elements: %.0f\n",
           r.n_source_layers, r.op_count[TE_OP_LINEAR], r.n_fused, r.upload_elems);
    printf("edge FLOPs:   %.0f\ndevice FLOPs: %.0f\noutsourcing rate: %.3f%%\n\n", r.edge_flops, r.device_flops,
           r.outsourcing_rate);
    if (r.outsourcing_rate < 90.0)
        printf("WARNING: only %.1f%% of the FLOPs are outsourced (below 90%%): the device does the rest;\n"
               "         the ops above with the largest device FLOPs are the reason\n\n",
               r.outsourcing_rate);
    if (!calibrated)
        printf("precision: not calibrated (frac bits %d, ring bits %d)\n\n", opt->default_frac_bits,
               opt->default_ring_bits);
    else if (opt->precision == TE_PREC_AUTO)
        printf("precision: auto (--min-cosine %g): output cosine to the float model %.6f (smallest over the "
               "calibration inputs)%s\n\n",
               opt->min_cosine, m->calib_cosine,
               m->calib_cosine < opt->min_cosine ? "\nWARNING: below the target even at the widest bits" : "");
    else
        printf("precision: fixed (%d-bit weights, %d-bit activations): output cosine to the float model %.6f "
               "(smallest over the calibration inputs)\n\n",
               opt->weight_bits, opt->act_bits, m->calib_cosine);
    printf("%-32s %-4s %-34s %5s %5s %5s %5s\n", "layer", "kind", "shape (in -> out, weights)", "wbits", "abits",
           "frac", "ring");
    for (int i = 0; i < m->n_layers; i++) {
        const te_layer *L = &m->layers[i];
        const te_linear_geom *g = &L->geom;
        char shape[128];
        if (g->kind == TE_LIN_CONV)
            snprintf(shape, sizeof shape, "%lldx%lldx%lld -> %lldx%lldx%lld k%lldx%lld/%lld g%lld",
                     (long long)g->in_c, (long long)g->in_h, (long long)g->in_w, (long long)g->out_c,
                     (long long)g->out_h, (long long)g->out_w, (long long)g->k_h, (long long)g->k_w,
                     (long long)g->stride_h, (long long)g->group);
        else
            snprintf(shape, sizeof shape, "%lld rows: %lld -> %lld", (long long)g->batch, (long long)g->in_c,
                     (long long)g->out_c);
        /* activation bits: those of the largest calibrated |x_int| */
        char abits[16] = "-";
        if (calibrated && L->calib_max_abs_x > 0)
            snprintf(abits, sizeof abits, "%d", (int)ceil(log2(L->calib_max_abs_x)) + L->frac_bits);
        printf("%-32.32s %-4s %-34s %5d %5s %5d %5d\n", L->name, g->kind == TE_LIN_CONV ? "conv" : "fc", shape,
               L->weight_bits, abits, L->frac_bits, L->ring_bits);
    }
}

/* "0.5,0.25,1" -> up to cap floats; the count, or -1 on a bad list. */
static int parse_floats(const char *text, float *out, int cap)
{
    int n = 0;
    const char *p = text;
    while (*p) {
        char *end = NULL;
        float f = strtof(p, &end);
        if (end == p || n == cap)
            return -1;
        out[n++] = f;
        p = end;
        if (*p == ',')
            p++;
        else if (*p)
            return -1;
    }
    return n;
}

static int cmd_compile(int argc, char **argv)
{
    const char *model = NULL, *out = NULL, *calib = NULL;
    int quiet = 0, n_mean = 0, n_std = 0, explicit_bits = 0, precision = -1;
    te_owner_options opt;
    te_owner_options_init(&opt);
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!v)
                return fail("-o needs a directory");
            out = v;
            i++;
        } else if (!strcmp(a, "--calibration")) {
            if (!v)
                return fail("--calibration needs a file");
            calib = v;
            i++;
        } else if (!strcmp(a, "--weight-bits") || !strcmp(a, "--act-bits")) {
            if (parse_int(a, v, a[2] == 'w' ? &opt.weight_bits : &opt.act_bits))
                return 1;
            explicit_bits = 1;
            i++;
        } else if (!strcmp(a, "--precision")) {
            static const struct {
                const char *name;
                te_precision mode;
            } modes[] = {{"auto", TE_PREC_AUTO}, {"fixed", TE_PREC_FIXED}};
            int k = 0, n = (int)(sizeof modes / sizeof modes[0]);
            while (k < n && (!v || strcmp(v, modes[k].name)))
                k++;
            if (k == n)
                return fail("--precision needs auto or fixed");
            precision = modes[k].mode;
            i++;
        } else if (!strcmp(a, "--min-cosine")) {
            char *end = NULL;
            double c = v ? strtod(v, &end) : 0;
            /* written so that NaN fails too */
            if (!v || end == v || *end || !(c > 0 && c < 1))
                return fail("--min-cosine needs a number above 0 and below 1 (e.g. 0.9999)");
            opt.min_cosine = c;
            i++;
        } else if (!strcmp(a, "--headroom")) {
            if (parse_int(a, v, &opt.headroom))
                return 1;
            i++;
        } else if (!strcmp(a, "--mean") || !strcmp(a, "--std")) {
            float *dst = a[2] == 'm' ? opt.mean : opt.std;
            int n = v ? parse_floats(v, dst, 4) : -1;
            if (n < 1)
                return fail("--mean/--std need 1 to 4 comma-separated numbers");
            if (a[2] == 'm')
                n_mean = n;
            else
                n_std = n;
            i++;
        } else if (!strcmp(a, "--input-shape")) {
            if (opt.n_input_shapes == 4)
                return fail("at most 4 --input-shape options");
            if (!v || te_parse_input_shape(v, &opt.input_shapes[opt.n_input_shapes]))
                return fail("--input-shape needs NAME:D0,D1,... (positive dimensions)");
            opt.n_input_shapes++;
            i++;
        } else if (!strcmp(a, "--no-fuse")) {
            opt.fuse = TE_FUSE_NONE;
        } else if (!strcmp(a, "--fuse")) {
            /* same: only layers of one geometry; embed: also smaller kernels inside larger ones */
            static const struct {
                const char *name;
                te_fuse_mode mode;
            } modes[] = {{"none", TE_FUSE_NONE}, {"same", TE_FUSE_SAME}, {"embed", TE_FUSE_EMBED}};
            int k = 0, n = (int)(sizeof modes / sizeof modes[0]);
            while (k < n && (!v || strcmp(v, modes[k].name)))
                k++;
            if (k == n)
                return fail("--fuse needs none, same or embed");
            opt.fuse = modes[k].mode;
            i++;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = 1;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "twinedge-owner: error: unknown option '%s'\n", a);
            return 1;
        } else if (!model) {
            model = a;
        } else {
            fprintf(stderr, "twinedge-owner: error: unexpected argument '%s'\n", a);
            return 1;
        }
    }
    if (!model || !out)
        return fail("usage: twinedge-owner compile MODEL.onnx -o DEPLOY_DIR [options] (see --help)");
    if (n_mean != n_std)
        return fail("--mean and --std need the same number of values");
    opt.n_norm = n_mean;
    /* explicit bits alone ask for the old behaviour: those bits everywhere */
    opt.precision = precision >= 0 ? precision : explicit_bits ? TE_PREC_FIXED : TE_PREC_AUTO;
    if (precision == TE_PREC_AUTO && !calib)
        return fail("--precision auto measures on calibration data: give --calibration INPUTS.npy");
    te_err err = {0};
    te_model *m = NULL;
    if (te_owner_build(model, calib, &opt, &m, &err) != TE_OK)
        return fail(err.msg);
    if (te_owner_write(m, out, &err) != TE_OK) {
        te_model_free(m);
        return fail(err.msg);
    }
    if (!quiet) {
        print_report(m, &opt, calib != NULL);
        printf("\nwrote %s/device.bundle and %s/edge.bundle\n", out, out);
    }
    te_model_free(m);
    return 0;
}

static int cmd_provision(int argc, char **argv)
{
    const char *deploy = NULL, *name = NULL, *out = NULL, *edge_b = NULL;
    int force = 0;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--force")) {
            force = 1;
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output") || !strcmp(a, "--device") || !strcmp(a, "--edge-b")) {
            if (!v) {
                fprintf(stderr, "twinedge-owner: error: %s needs a value\n", a);
                return 1;
            }
            if (!strcmp(a, "--device"))
                name = v;
            else if (!strcmp(a, "--edge-b"))
                edge_b = v;
            else
                out = v;
            i++;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "twinedge-owner: error: unknown option '%s'\n", a);
            return 1;
        } else if (!deploy) {
            deploy = a;
        } else {
            fprintf(stderr, "twinedge-owner: error: unexpected argument '%s'\n", a);
            return 1;
        }
    }
    if (!deploy || !name || !out)
        return fail("usage: twinedge-owner provision DEPLOY_DIR --device NAME -o DEVICE_DIR [--edge-b HOST:PORT] "
                    "[--force]");
    te_err err = {0};
    if (!force && te_owner_provision_check(deploy, name, out, &err) != TE_OK)
        return fail(err.msg);
    if (te_owner_provision(deploy, name, out, &err) != TE_OK)
        return fail(err.msg);
    printf("provisioned device '%s': %s/device.key, %s/tls; registered as %s/hosts/b/devices/%s.key\n", name, out,
           out, deploy, name);
    if (edge_b) {
        char creds[4200], key[4200];
        snprintf(creds, sizeof creds, "%s/owner", deploy);
        snprintf(key, sizeof key, "%s/hosts/b/devices/%s.key", deploy, name);
        if (te_owner_register_device(creds, edge_b, key, 0, &err) != TE_OK)
            return fail(err.msg);
        printf("registered device '%s' with EdgeB at %s\n", name, edge_b);
    }
    return 0;
}

static int cmd_deploy(int argc, char **argv)
{
    const char *deploy = NULL, *edge_a = NULL, *edge_b = NULL;
    for (int i = 0; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--edge-a") || !strcmp(a, "--edge-b")) {
            if (!v) {
                fprintf(stderr, "twinedge-owner: error: %s needs HOST:PORT\n", a);
                return 1;
            }
            if (!strcmp(a, "--edge-a"))
                edge_a = v;
            else
                edge_b = v;
            i++;
        } else if (a[0] == '-' && a[1]) {
            fprintf(stderr, "twinedge-owner: error: unknown option '%s'\n", a);
            return 1;
        } else if (!deploy) {
            deploy = a;
        } else {
            fprintf(stderr, "twinedge-owner: error: unexpected argument '%s'\n", a);
            return 1;
        }
    }
    if (!deploy || (!edge_a && !edge_b))
        return fail("usage: twinedge-owner deploy DEPLOY_DIR --edge-a HOST:PORT --edge-b HOST:PORT");
    te_err err = {0};
    if (te_owner_deploy(deploy, edge_a, edge_b, &err) != TE_OK)
        return fail(err.msg);
    printf("deployed %s/edge.bundle to%s%s%s%s\n", deploy, edge_a ? " EdgeA at " : "", edge_a ? edge_a : "",
           edge_b ? " EdgeB at " : "", edge_b ? edge_b : "");
    return 0;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("twinedge-owner %s\n", TWINEDGE_VERSION_STRING);
        return 0;
    }
    if (argc < 2) {
        fputs(usage, stderr);
        return 1;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        fputs(usage, stdout);
        return 0;
    }
    if (!strcmp(argv[1], "compile"))
        return cmd_compile(argc - 2, argv + 2);
    if (!strcmp(argv[1], "provision"))
        return cmd_provision(argc - 2, argv + 2);
    if (!strcmp(argv[1], "deploy"))
        return cmd_deploy(argc - 2, argv + 2);
    fprintf(stderr, "twinedge-owner: error: unknown command '%s' (see --help)\n", argv[1]);
    return 1;
}
