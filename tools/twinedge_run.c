/* twinedge-run: compile, provision and run one private inference.  By
 * default EdgeA and EdgeB are two twinedge-host processes on loopback and
 * the device reaches them over gRPC with mutual TLS; --in-process runs the
 * hosts in this process (the in-process transport). */
#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "deploy.h"
#include "owner.h"
#include "onnx_import.h"
#include "runlib.h"
#include "te_exec.h"
#include "te_host.h"
#include "te_input.h"
#include "te_npy.h"
#include "te_outputs.h"
#include "te_report.h"
#include "twinedge_device.h"
#include "twinedge_net.h"

static void usage(FILE *f)
{
    fprintf(f,
            "usage: twinedge-run MODEL.onnx INPUT.npy -o OUTPUT.npy [options]\n"
            "\n"
            "Compiles MODEL.onnx, provisions a device, starts EdgeA and EdgeB as two\n"
            "twinedge-host processes on loopback (gRPC, mutual TLS), deploys, runs one\n"
            "private inference of INPUT.npy, verified layer by layer, and stops the hosts.\n"
            "\n"
            "  -o, --output FILE        output tensor (.npy, float32); a model with several outputs\n"
            "                           writes output k > 0 to FILE.k.npy (FILE less its .npy);\n"
            "                           --reference and --float alike\n"
            "      --mode relay|mediated  protocol mode (default relay)\n"
            "      --report FILE        write figures as JSON\n"
            "      --calibration FILE   calibration inputs (.npy, stacked on axis 0);\n"
            "                           default: calibrate on INPUT.npy itself\n"
            "      --reference FILE     also write the plaintext fixed-point reference\n"
            "      --float FILE         also write the imported graph run in float32 (the ONNX\n"
            "                           weights, nothing quantised, no protocol): what twinedge\n"
            "                           reads the model to compute, for comparing with other runtimes\n"
            "      --plugin NAME        compute plugin of both hosts (default cpu)\n"
            "      --workdir DIR        keep the deployment, device, host stores and logs in DIR\n"
            "      --in-process         run the hosts in this process instead (no network)\n"
            "      --input-shape NAME:D0,D1,...  the model input's open dimensions (default:\n"
            "                           those of INPUT.npy)\n"
            "      --allow-rounding     accept an INPUT.npy whose dtype float32 cannot hold exactly\n"
            "                           (default: refused; exact conversions get a note)\n"
            "INPUT.npy must have the model's input shape (NCHW; the batch dimension of 1 may be\n"
            "left out) and finite values.\n"
            "  -h, --help\n");
}


typedef struct run_args {
    const char *model, *input, *output, *report, *calib, *reference, *plugin, *workdir, *float_out;
    twinedge_mode mode;
    int in_process, allow_rounding;
    int n_shapes;
    te_input_shape shapes[4]; /* --input-shape */
} run_args;

static int fail(const char *msg)
{
    fprintf(stderr, "twinedge-run: error: %s\n", msg);
    return 1;
}

/* The imported graph in float32 on the device's executor, with the open
 * dimensions fixed as the compile fixed them (--input-shape, else the input's). */
static te_status run_float(const run_args *a, const te_shape *in_shape, const float *x, te_err *err)
{
    te_import_opts io = {.n_shapes = a->n_shapes, .shapes = a->shapes, .hint = in_shape};
    te_model *m = NULL;
    te_exec *ex = NULL;
    te_status st = te_onnx_import_opts(a->model, &io, &m, err);
    if (st == TE_OK)
        st = te_exec_new(m, &ex, err);
    if (st == TE_OK)
        st = te_exec_run(ex, x, (size_t)te_shape_numel(in_shape), te_linear_fn_float, NULL, err);
    if (st == TE_OK)
        st = te_exec_outputs_write(ex, a->float_out, err);
    if (st != TE_OK)
        te_err_wrap(err, "--float");
    te_exec_free(ex);
    te_model_free(m);
    return st;
}

static int run(const run_args *a)
{
    te_err err;
    te_err_clear(&err);
    char work[4096], deploy[4200], device[4200], key[4300];
    int rc = 1, made_tmp = 0;
    te_local_pair *pair = NULL;
    te_hostpair hp;
    memset(&hp, 0, sizeof hp);
    twinedge_net *net = NULL;
    twinedge_device *dev = NULL;
    float *x = NULL, *y = NULL;
    te_shape in_shape;
    te_model *dm = NULL;

    te_npy_info info;
    char note[256];
    if (te_npy_read_info(a->input, &in_shape, &x, &info, &err) != TE_OK ||
        te_input_check_dtype(a->input, &info, a->allow_rounding, note, sizeof note, &err) != TE_OK ||
        te_input_check_finite(a->input, x, (size_t)te_shape_numel(&in_shape), &err) != TE_OK) {
        free(x);
        return fail(err.msg);
    }
    if (note[0])
        fprintf(stderr, "twinedge-run: note: %s\n", note);
    if (a->workdir) {
        snprintf(work, sizeof work, "%s", a->workdir);
        if (mkdir(work, 0700) != 0 && errno != EEXIST) {
            fprintf(stderr, "twinedge-run: error: cannot create %s: %s\n", work, strerror(errno));
            goto out;
        }
    } else {
        const char *tmp = getenv("TMPDIR");
        snprintf(work, sizeof work, "%s/twinedge-run-XXXXXX", tmp && *tmp ? tmp : "/tmp");
        if (!mkdtemp(work)) {
            fprintf(stderr, "twinedge-run: error: cannot create a scratch directory: %s\n", strerror(errno));
            goto out;
        }
        made_tmp = 1;
    }
    snprintf(deploy, sizeof deploy, "%s/deploy", work);
    snprintf(device, sizeof device, "%s/device", work);
    snprintf(key, sizeof key, "%s/device.key", device);
    if (a->workdir) {
        te_rm_rf(deploy, &err);
        te_rm_rf(device, &err);
    }

    double w0 = te_clock_s(CLOCK_MONOTONIC);
    te_owner_options oopt;
    te_owner_options_init(&oopt);
    oopt.n_input_shapes = a->n_shapes;
    memcpy(oopt.input_shapes, a->shapes, sizeof oopt.input_shapes);
    oopt.input_hint = &in_shape; /* open dimensions: the input tensor's */
    if (te_owner_compile(a->model, a->calib ? a->calib : a->input, &oopt, deploy, &err) != TE_OK) {
        fail(err.msg);
        goto out;
    }
    if (a->in_process) {
        te_local_config lc = {deploy, key, a->plugin, a->plugin, NULL, NULL, NULL};
        if (te_owner_provision(deploy, "run-device", device, &err) != TE_OK ||
            te_local_pair_start(&lc, &pair, &err) != TE_OK) {
            fail(err.msg);
            goto out;
        }
    } else {
        /* real hosts: start, deploy, then provision the device and register it with EdgeB */
        char hosts[4200], regkey[4300];
        snprintf(hosts, sizeof hosts, "%s/hosts", work);
        snprintf(regkey, sizeof regkey, "%s/hosts/b/devices/run-device.key", deploy);
        te_rm_rf(hosts, &err);
        if (mkdir(hosts, 0700) != 0) {
            fprintf(stderr, "twinedge-run: error: cannot create %s: %s\n", hosts, strerror(errno));
            goto out;
        }
        if (te_hostpair_start(&hp, deploy, hosts, a->plugin, &err) != TE_OK ||
            te_owner_provision(deploy, "run-device", device, &err) != TE_OK ||
            te_owner_register_device(hp.owner_creds, hp.addr[1], regkey, 0, &err) != TE_OK) {
            fail(err.msg);
            goto out;
        }
    }
    if (twinedge_open(device, &dev) != TWINEDGE_OK) {
        fail(twinedge_errmsg(dev));
        goto out;
    }
    te_timed_transport tt;
    te_timed_transport_init(&tt, pair ? pair->device_link : NULL);
    if (pair) {
        twinedge_use_transport(dev, &tt.self);
    } else {
        char tls[4300];
        snprintf(tls, sizeof tls, "%s/tls", device);
        if (twinedge_connect(dev, hp.addr[0], hp.addr[1], tls, 30000, &net) != TWINEDGE_OK) {
            fail(twinedge_net_errmsg(net));
            goto out;
        }
    }

    te_shape model_in;
    memset(&model_in, 0, sizeof model_in);
    twinedge_input_shape(dev, model_in.d, &model_in.ndim);
    int64_t n_in = te_shape_numel(&model_in), n_out = 1;
    if (te_input_check_shape(a->input, &model_in, &in_shape, &err) != TE_OK) {
        fail(err.msg);
        goto out;
    }
    te_shape out_shape;
    twinedge_output_shape(dev, out_shape.d, &out_shape.ndim);
    n_out = te_shape_numel(&out_shape);
    y = calloc((size_t)n_out, sizeof *y);
    if (!y) {
        fail("out of memory");
        goto out;
    }
    double setup_s = te_clock_s(CLOCK_MONOTONIC) - w0;
    double t0 = te_clock_s(CLOCK_MONOTONIC), c0 = te_clock_s(CLOCK_THREAD_CPUTIME_ID);
    if (twinedge_infer(dev, a->mode, x, (size_t)n_in, y, (size_t)n_out) != TWINEDGE_OK) {
        fail(twinedge_errmsg(dev));
        goto out;
    }
    double wall = te_clock_s(CLOCK_MONOTONIC) - t0;
    double dev_cpu = te_clock_s(CLOCK_THREAD_CPUTIME_ID) - c0 - tt.host_cpu_s;
    twinedge_report rep;
    twinedge_last_report(dev, &rep);

    if (te_device_outputs_write(dev, a->output, &err) != TE_OK) {
        fail(err.msg);
        goto out;
    }
    if (a->reference && te_reference_fixed_write(deploy, x, (size_t)n_in, a->reference, &err) != TE_OK) {
        fail(err.msg);
        goto out;
    }

    if (a->float_out && run_float(a, &in_shape, x, &err) != TE_OK) {
        fail(err.msg);
        goto out;
    }

    char dpath[4300];
    snprintf(dpath, sizeof dpath, "%s/device.bundle", deploy);
    te_owner_report orep;
    memset(&orep, 0, sizeof orep);
    if (te_device_bundle_read(dpath, &dm, &err) == TE_OK)
        te_owner_report_compute(dm, &orep);
    te_traffic net_tr;
    memset(&net_tr, 0, sizeof net_tr);
    if (net) {
        /* the device's own link counts device <-> host bytes; the hosts' Stats
         * add what crossed between them (relay mode's MaskShare) */
        twinedge_net_stats ns;
        te_host_figures fig[2];
        twinedge_net_get_stats(net, &ns);
        if (te_hostpair_stats(&hp, fig, &err) != TE_OK) {
            fail(err.msg);
            goto out;
        }
        net_tr.device_up = ns.bytes_up;
        net_tr.device_down = ns.bytes_down;
        net_tr.edge_b_in = fig[1].bytes_in;
        net_tr.edge_b_out = fig[1].bytes_out;
        net_tr.edge_a_out = fig[0].bytes_out + (fig[1].bytes_in - ns.bytes_to_b);
        net_tr.edge_a_in = fig[0].bytes_in + (fig[1].bytes_out - ns.bytes_from_b);
        net_tr.messages = ns.messages;
    }
    const te_traffic *tr = pair ? &pair->traffic : &net_tr;
    printf("private inference (%s): %d linear layers outsourced, %d verified, %.3f s, device up %llu B, "
           "down %llu B\n",
           a->mode == TWINEDGE_RELAY ? "relay" : "mediated", rep.linear_layers, rep.layers_checked, wall,
           (unsigned long long)tr->device_up, (unsigned long long)tr->device_down);
    if (a->report) {
        te_run_report r;
        te_run_report_init(&r, "twinedge-run");
        r.model = a->model;
        r.device_dir = device;
        r.input = a->input;
        r.output = a->output;
        r.mode = a->mode;
        r.in_process = pair != NULL;
        r.edge_a = pair ? NULL : hp.addr[0];
        r.edge_b = pair ? NULL : hp.addr[1];
        r.traffic = *tr;
        r.have_hosts_bytes = 1;
        r.wall_s = wall;
        r.setup_s = setup_s;
        r.device_cpu_s = dev_cpu;
        r.dev = rep;
        r.edge_flops = orep.edge_flops;
        r.device_flops = orep.device_flops;
        r.outsourced_fraction = orep.outsourcing_rate / 100.0;
        if (te_run_report_write(a->report, &r, &err) != TE_OK) {
            fail(err.msg);
            goto out;
        }
    }
    rc = 0;
out:
    twinedge_close(dev);
    twinedge_disconnect(net);
    te_local_pair_stop(pair);
    if (te_hostpair_stop(&hp, &err) != TE_OK && rc == 0)
        rc = fail(err.msg);
    te_model_free(dm);
    if (made_tmp)
        te_rm_rf(work, &err);
    free(x);
    free(y);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], "--version") == 0) {
        printf("twinedge-run %s\n", TWINEDGE_VERSION_STRING);
        return 0;
    }
    run_args a;
    memset(&a, 0, sizeof a);
    a.mode = TWINEDGE_RELAY;
    enum { O_MODE = 256, O_REPORT, O_CALIB, O_REF, O_PLUGIN, O_WORK, O_INPROC, O_SHAPE, O_ROUND, O_FLOAT };
    static const struct option opts[] = {
        {"output", required_argument, NULL, 'o'},      {"mode", required_argument, NULL, O_MODE},
        {"report", required_argument, NULL, O_REPORT}, {"calibration", required_argument, NULL, O_CALIB},
        {"reference", required_argument, NULL, O_REF}, {"plugin", required_argument, NULL, O_PLUGIN},
        {"workdir", required_argument, NULL, O_WORK},  {"in-process", no_argument, NULL, O_INPROC},
        {"input-shape", required_argument, NULL, O_SHAPE}, {"allow-rounding", no_argument, NULL, O_ROUND},
        {"float", required_argument, NULL, O_FLOAT},
        {"help", no_argument, NULL, 'h'},              {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "o:h", opts, NULL)) != -1) {
        switch (c) {
        case 'o': a.output = optarg; break;
        case O_MODE:
            if (strcmp(optarg, "relay") == 0)
                a.mode = TWINEDGE_RELAY;
            else if (strcmp(optarg, "mediated") == 0)
                a.mode = TWINEDGE_MEDIATED;
            else
                return fail("--mode must be relay or mediated");
            break;
        case O_REPORT: a.report = optarg; break;
        case O_CALIB: a.calib = optarg; break;
        case O_REF: a.reference = optarg; break;
        case O_PLUGIN: a.plugin = optarg; break;
        case O_WORK: a.workdir = optarg; break;
        case O_INPROC: a.in_process = 1; break;
        case O_ROUND: a.allow_rounding = 1; break;
        case O_FLOAT: a.float_out = optarg; break;
        case O_SHAPE:
            if (a.n_shapes == 4 || te_parse_input_shape(optarg, &a.shapes[a.n_shapes]))
                return fail("--input-shape needs NAME:D0,D1,... (positive dimensions; at most 4)");
            a.n_shapes++;
            break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (argc - optind != 2 || !a.output) {
        usage(stderr);
        return 2;
    }
    a.model = argv[optind];
    a.input = argv[optind + 1];
    return run(&a);
}
