/* twinedge-bench load: a fleet of simulated devices against one real host
 * pair.  N devices, each provisioned with its own keys and certificate,
 * each its own twinedge_device handle with its own two mutual-TLS
 * connections, are driven from threads of this one process against two
 * twinedge-host processes on loopback.  Every device first runs one
 * inference (its connections are then open and idle), then all of them
 * run K inferences at once.  Reported per host configuration (cross-device
 * batching off and on): throughput, latency p50/p99/max, failures (with
 * the first message), the hosts' memory at rest, with every connection
 * open and idle (per idle connection), and at peak. */
#include <errno.h>
#include <getopt.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "owner.h"
#include "pki.h"
#include "runlib.h"
#include "te_npy.h"
#include "twinedge_device.h"
#include "twinedge_net.h"

int bench_load_main(int argc, char **argv);

typedef struct load_opts {
    int devices, inferences, timeout_ms;
    const char *model, *models_dir, *json, *workdir;
    twinedge_mode mode;
    int windows[8], n_windows;
    int keep;
} load_opts;

typedef struct load_run load_run;

typedef struct sim_device {
    load_run *run;
    int index;
    pthread_t thread;
    int started;
    int ok, failed;          /* inferences of the timed phase */
    int warm_ok;
    double *lat;             /* seconds, per successful timed inference */
    char msg[600];           /* the first failure */
} sim_device;

struct load_run {
    const load_opts *o;
    const char *dir;         /* device directories: DIR/dev-NNNN */
    const char *addr_a, *addr_b;
    const float *input;
    size_t n_in, n_out;
    pthread_barrier_t warm, go;
};

typedef struct load_result {
    int window_us;
    double wall_s, throughput, p50_ms, p99_ms, max_ms;
    int ok, failed, warm_failed;
    long rss_base_kb[2], rss_idle_kb[2], rss_peak_kb[2];
    double per_conn_kb[2];
    uint64_t requests[2];
    char first_error[600];
} load_result;

static double now_s(void) { return te_clock_s(CLOCK_MONOTONIC); }

/* VmRSS or VmHWM of a process, kB; -1 if unknown. */
static long proc_kb(pid_t pid, const char *field)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long kb = -1;
    size_t n = strlen(field);
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, field, n) == 0 && line[n] == ':')
            kb = strtol(line + n + 1, NULL, 10);
    if (f)
        fclose(f);
    return kb;
}

static void dev_dir(const load_run *r, int i, char *out, size_t cap) { snprintf(out, cap, "%s/dev-%04d", r->dir, i); }

static void *sim_main(void *arg)
{
    sim_device *d = arg;
    load_run *r = d->run;
    char dir[4200], tls[4300];
    dev_dir(r, d->index, dir, sizeof dir);
    snprintf(tls, sizeof tls, "%s/tls", dir);
    twinedge_device *dev = NULL;
    twinedge_net *net = NULL;
    float *y = malloc(r->n_out * sizeof *y);
    int usable = 0;
    if (!y) {
        snprintf(d->msg, sizeof d->msg, "out of memory");
    } else if (twinedge_open(dir, &dev) != TWINEDGE_OK) {
        snprintf(d->msg, sizeof d->msg, "open: %s", twinedge_errmsg(dev));
    } else if (twinedge_connect(dev, r->addr_a, r->addr_b, tls, r->o->timeout_ms, &net) != TWINEDGE_OK) {
        snprintf(d->msg, sizeof d->msg, "connect: %s", twinedge_net_errmsg(net));
    } else if (twinedge_infer(dev, r->o->mode, r->input, r->n_in, y, r->n_out) != TWINEDGE_OK) {
        snprintf(d->msg, sizeof d->msg, "first inference: %s", twinedge_errmsg(dev));
    } else {
        usable = 1;
        d->warm_ok = 1;
    }
    /* every device connected and idle: the hosts' memory is read here */
    pthread_barrier_wait(&r->warm);
    pthread_barrier_wait(&r->go);
    for (int k = 0; k < r->o->inferences; k++) {
        if (!usable) {
            d->failed++;
            continue;
        }
        double t0 = now_s();
        int rc = twinedge_infer(dev, r->o->mode, r->input, r->n_in, y, r->n_out);
        double dt = now_s() - t0;
        if (rc == TWINEDGE_OK) {
            d->lat[d->ok++] = dt;
        } else {
            if (!d->failed)
                snprintf(d->msg, sizeof d->msg, "%s", twinedge_errmsg(dev));
            d->failed++;
        }
    }
    twinedge_close(dev);
    twinedge_disconnect(net);
    free(y);
    return NULL;
}

/* One host configuration: a fresh pair, the fleet, the figures. */
static te_status run_config(const load_opts *o, const char *deploy, const char *work, int window_us,
                            const float *input, size_t n_in, size_t n_out, load_result *res, te_err *err)
{
    memset(res, 0, sizeof *res);
    res->window_us = window_us;
    char wdir[4200], wbuf[32];
    snprintf(wdir, sizeof wdir, "%s/hosts-w%d", work, window_us);
    mkdir(wdir, 0700);
    snprintf(wbuf, sizeof wbuf, "%d", window_us);
    const char *extra[] = {"--batch-window-us", wbuf, NULL};
    te_hostpair_opts ho = {NULL, NULL, NULL, extra};
    te_hostpair hp;
    memset(&hp, 0, sizeof hp);
    te_status st = te_hostpair_start_opts(&hp, deploy, wdir, &ho, err);
    if (st != TE_OK)
        return st;
    for (int k = 0; k < 2; k++)
        res->rss_base_kb[k] = proc_kb(hp.pid[k], "VmRSS");

    load_run r;
    memset(&r, 0, sizeof r);
    r.o = o;
    r.dir = work;
    r.addr_a = hp.addr[0];
    r.addr_b = hp.addr[1];
    r.input = input;
    r.n_in = n_in;
    r.n_out = n_out;
    sim_device *devs = calloc((size_t)o->devices, sizeof *devs);
    if (!devs) {
        te_hostpair_stop(&hp, err);
        return te_errf(err, TE_ENOMEM, "out of memory");
    }
    int n = 0;
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setstacksize(&attr, (size_t)1 << 20);
    pthread_barrier_init(&r.warm, NULL, (unsigned)o->devices + 1);
    pthread_barrier_init(&r.go, NULL, (unsigned)o->devices + 1);
    for (; n < o->devices; n++) {
        devs[n].run = &r;
        devs[n].index = n;
        devs[n].lat = calloc((size_t)(o->inferences ? o->inferences : 1), sizeof *devs[n].lat);
        if (!devs[n].lat || pthread_create(&devs[n].thread, &attr, sim_main, &devs[n]) != 0)
            break;
        devs[n].started = 1;
    }
    pthread_attr_destroy(&attr);
    if (n < o->devices) {
        /* cannot happen short of resources; the barriers would never open */
        fprintf(stderr, "twinedge-bench load: could start %d of %d device threads\n", n, o->devices);
        exit(1);
    }
    pthread_barrier_wait(&r.warm);
    for (int k = 0; k < 2; k++) {
        res->rss_idle_kb[k] = proc_kb(hp.pid[k], "VmRSS");
        res->per_conn_kb[k] = (double)(res->rss_idle_kb[k] - res->rss_base_kb[k]) / o->devices;
    }
    double t0 = now_s();
    pthread_barrier_wait(&r.go);
    for (int i = 0; i < n; i++)
        pthread_join(devs[i].thread, NULL);
    res->wall_s = now_s() - t0;
    for (int k = 0; k < 2; k++)
        res->rss_peak_kb[k] = proc_kb(hp.pid[k], "VmHWM");
    pthread_barrier_destroy(&r.warm);
    pthread_barrier_destroy(&r.go);

    size_t total = 0;
    for (int i = 0; i < n; i++)
        total += (size_t)devs[i].ok;
    double *all = malloc((total ? total : 1) * sizeof *all);
    size_t m = 0;
    for (int i = 0; i < n; i++) {
        res->ok += devs[i].ok;
        res->failed += devs[i].failed;
        res->warm_failed += !devs[i].warm_ok;
        if (devs[i].msg[0] && !res->first_error[0])
            snprintf(res->first_error, sizeof res->first_error, "device %d: %s", i, devs[i].msg);
        for (int k = 0; all && k < devs[i].ok; k++)
            all[m++] = devs[i].lat[k];
        free(devs[i].lat);
    }
    free(devs);
    if (all && m) {
        qsort(all, m, sizeof *all, cmp_double);
        res->p50_ms = all[(m - 1) / 2] * 1e3;
        res->p99_ms = all[(size_t)((double)(m - 1) * 0.99)] * 1e3;
        res->max_ms = all[m - 1] * 1e3;
    }
    free(all);
    res->throughput = res->wall_s > 0 ? res->ok / res->wall_s : 0;
    te_host_figures fig[2];
    te_err serr;
    if (te_hostpair_stats(&hp, fig, &serr) == TE_OK)
        for (int k = 0; k < 2; k++)
            res->requests[k] = fig[k].requests;
    return te_hostpair_stop(&hp, err);
}

static void usage(FILE *f)
{
    fprintf(f, "usage: twinedge-bench load [--devices N] [--inferences K] [--model NAME] [--models-dir DIR]\n"
               "                           [--mode relay|mediated] [--batch-window-us LIST] [--timeout-ms N]\n"
               "                           [--workdir DIR] [--json FILE]\n"
               "\n"
               "N simulated devices (default 64), each with its own keys, certificate and connections,\n"
               "driven from this process against two twinedge-host processes on loopback: one inference\n"
               "each, then K more each at once (default 4).  For each batching window in LIST (default\n"
               "0,2000 microseconds: off, then on) a fresh host pair.  MODEL (default lenet5) is\n"
               "MODELS_DIR/MODEL.onnx (default $TE_TEST_DATA), calibrated on MODEL.calib.npy, run on\n"
               "MODEL.input.npy.  A --workdir is kept, with its deployment and devices, for the next run.\n");
}

static te_status provision_fleet(const load_opts *o, const char *deploy, const char *work, te_err *err)
{
    for (int i = 0; i < o->devices; i++) {
        char name[32], dir[4200];
        snprintf(name, sizeof name, "load-%04d", i);
        snprintf(dir, sizeof dir, "%s/dev-%04d", work, i);
        char have[4300];
        snprintf(have, sizeof have, "%s/tls/cert.pem", dir);
        if (file_exists(have))
            continue; /* from an earlier run in the same --workdir */
        te_status st;
        if ((st = te_owner_provision(deploy, name, dir, err)) != TE_OK ||
            (st = te_pki_device(deploy, name, dir, err)) != TE_OK)
            return te_err_wrap(err, "device %s", name);
    }
    return TE_OK;
}

static void print_result(const load_opts *o, const load_result *r)
{
    printf("%5d devices  batching %-9s %8.1f inf/s  p50 %8.1f ms  p99 %8.1f ms  max %8.1f ms  ok %6d  failed %d"
           "%s\n",
           o->devices, r->window_us ? "on" : "off", r->throughput, r->p50_ms, r->p99_ms, r->max_ms, r->ok, r->failed,
           r->warm_failed ? " (some devices failed their first inference)" : "");
    printf("       host RSS MiB (EdgeA / EdgeB): at rest %.1f / %.1f, %d connections idle %.1f / %.1f "
           "(%.1f / %.1f KiB per idle connection), peak %.1f / %.1f\n",
           r->rss_base_kb[0] / 1024.0, r->rss_base_kb[1] / 1024.0, o->devices, r->rss_idle_kb[0] / 1024.0,
           r->rss_idle_kb[1] / 1024.0, r->per_conn_kb[0], r->per_conn_kb[1], r->rss_peak_kb[0] / 1024.0,
           r->rss_peak_kb[1] / 1024.0);
    if (r->first_error[0])
        printf("       first failure: %s\n", r->first_error);
    fflush(stdout);
}

static void json_result(FILE *f, const load_opts *o, const load_result *r, int last)
{
    fprintf(f,
            "    {\"devices\": %d, \"inferences_per_device\": %d, \"batch_window_us\": %d, \"wall_s\": %.3f, "
            "\"throughput_per_s\": %.2f, \"p50_ms\": %.2f, \"p99_ms\": %.2f, \"max_ms\": %.2f, \"ok\": %d, "
            "\"failed\": %d, \"first_inference_failed\": %d,\n     \"rss_kb\": {\"edge_a\": {\"rest\": %ld, "
            "\"idle\": %ld, \"peak\": %ld}, \"edge_b\": {\"rest\": %ld, \"idle\": %ld, \"peak\": %ld}}, "
            "\"kb_per_idle_connection\": {\"edge_a\": %.2f, \"edge_b\": %.2f}, \"host_requests\": {\"edge_a\": "
            "%llu, \"edge_b\": %llu}, \"first_error\": ",
            o->devices, o->inferences, r->window_us, r->wall_s, r->throughput, r->p50_ms, r->p99_ms, r->max_ms, r->ok,
            r->failed, r->warm_failed, r->rss_base_kb[0], r->rss_idle_kb[0], r->rss_peak_kb[0], r->rss_base_kb[1],
            r->rss_idle_kb[1], r->rss_peak_kb[1], r->per_conn_kb[0], r->per_conn_kb[1],
            (unsigned long long)r->requests[0], (unsigned long long)r->requests[1]);
    json_str(f, r->first_error);
    fprintf(f, "}%s\n", last ? "" : ",");
}

int bench_load_main(int argc, char **argv)
{
    load_opts o;
    memset(&o, 0, sizeof o);
    o.devices = 64;
    o.inferences = 4;
    o.timeout_ms = 120000;
    o.model = "lenet5";
    o.mode = TWINEDGE_RELAY;
    const char *td = getenv("TE_TEST_DATA");
    o.models_dir = td && *td ? td : "testdata";
    o.windows[0] = 0;
    o.windows[1] = 2000;
    o.n_windows = 2;
    enum { O_DEVICES = 256, O_INF, O_MODEL, O_DIR, O_MODE, O_WIN, O_TIMEOUT, O_WORK, O_JSON };
    static const struct option lopts[] = {
        {"devices", required_argument, NULL, O_DEVICES}, {"inferences", required_argument, NULL, O_INF},
        {"model", required_argument, NULL, O_MODEL},     {"models-dir", required_argument, NULL, O_DIR},
        {"mode", required_argument, NULL, O_MODE},       {"batch-window-us", required_argument, NULL, O_WIN},
        {"timeout-ms", required_argument, NULL, O_TIMEOUT}, {"workdir", required_argument, NULL, O_WORK},
        {"json", required_argument, NULL, O_JSON},       {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0}};
    optind = 2; /* after "load" */
    int c;
    while ((c = getopt_long(argc, argv, "h", lopts, NULL)) != -1) {
        switch (c) {
        case O_DEVICES: o.devices = atoi(optarg); break;
        case O_INF: o.inferences = atoi(optarg); break;
        case O_MODEL: o.model = optarg; break;
        case O_DIR: o.models_dir = optarg; break;
        case O_MODE:
            if (strcmp(optarg, "relay") && strcmp(optarg, "mediated")) {
                fprintf(stderr, "twinedge-bench load: --mode relay|mediated\n");
                return 2;
            }
            o.mode = strcmp(optarg, "relay") == 0 ? TWINEDGE_RELAY : TWINEDGE_MEDIATED;
            break;
        case O_WIN: {
            o.n_windows = 0;
            for (char *t = strtok(optarg, ","); t && o.n_windows < 8; t = strtok(NULL, ","))
                o.windows[o.n_windows++] = atoi(t);
            break;
        }
        case O_TIMEOUT: o.timeout_ms = atoi(optarg); break;
        case O_WORK: o.workdir = optarg; break;
        case O_JSON: o.json = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind != argc || o.devices < 1 || o.devices > 100000 || o.inferences < 0 || o.n_windows < 1 ||
        o.timeout_ms <= 0) {
        usage(stderr);
        return 2;
    }
    /* two connections per device here, as many on the hosts (children
     * inherit the limit) */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    char work[4096];
    if (o.workdir) {
        snprintf(work, sizeof work, "%s", o.workdir);
        mkdir(work, 0700);
    } else {
        snprintf(work, sizeof work, "/tmp/twinedge-load-XXXXXX");
        if (!mkdtemp(work)) {
            fprintf(stderr, "twinedge-bench load: cannot create a work directory: %s\n", strerror(errno));
            return 1;
        }
    }
    char onnx[4200], calib[4200], in[4200], deploy[4200];
    snprintf(onnx, sizeof onnx, "%s/%s.onnx", o.models_dir, o.model);
    snprintf(calib, sizeof calib, "%s/%s.calib.npy", o.models_dir, o.model);
    snprintf(in, sizeof in, "%s/%s.input.npy", o.models_dir, o.model);
    snprintf(deploy, sizeof deploy, "%s/deploy", work);
    te_err err;
    te_err_clear(&err);
    te_shape shape;
    float *input = NULL;
    int rc = 1;
    load_result res[8];
    int n_res = 0;
    double t0 = now_s();
    /* a --workdir keeps the deployment and the devices for the next run */
    char bundle[4300];
    snprintf(bundle, sizeof bundle, "%s/edge.bundle", deploy);
    int reuse = o.workdir && file_exists(bundle);
    te_status st = reuse ? TE_OK : te_owner_compile(onnx, file_exists(calib) ? calib : NULL, NULL, deploy, &err);
    if (st == TE_OK && !reuse)
        st = te_pki_deployment(deploy, &err);
    if (st == TE_OK)
        st = provision_fleet(&o, deploy, work, &err);
    if (st == TE_OK)
        st = te_npy_read(in, &shape, &input, &err);
    size_t n_out = 0;
    if (st == TE_OK) {
        twinedge_device *dev = NULL;
        char d0[4200];
        snprintf(d0, sizeof d0, "%s/dev-0000", work);
        int64_t dims[8];
        int nd = 0;
        if (twinedge_open(d0, &dev) != TWINEDGE_OK) {
            st = te_errf(&err, TE_EIO, "%s", twinedge_errmsg(dev));
        } else {
            twinedge_output_shape(dev, dims, &nd);
            n_out = 1;
            for (int i = 0; i < nd; i++)
                n_out *= (size_t)dims[i];
        }
        twinedge_close(dev);
    }
    if (st == TE_OK)
        printf("twinedge-bench load: %s, %d devices provisioned in %.1f s (%s mode, %d inferences each after the "
               "first)\n",
               o.model, o.devices, now_s() - t0, o.mode == TWINEDGE_RELAY ? "relay" : "mediated", o.inferences);
    for (int w = 0; st == TE_OK && w < o.n_windows; w++) {
        st = run_config(&o, deploy, work, o.windows[w], input, (size_t)te_shape_numel(&shape), n_out, &res[n_res],
                        &err);
        if (st == TE_OK)
            print_result(&o, &res[n_res++]);
    }
    if (st != TE_OK) {
        fprintf(stderr, "twinedge-bench load: %s\n", err.msg);
    } else {
        rc = 0;
        for (int i = 0; i < n_res; i++)
            if (res[i].failed || res[i].warm_failed)
                rc = 3; /* the figures are printed, but a device failed */
    }
    if (st == TE_OK && o.json) {
        FILE *f = fopen(o.json, "w");
        if (!f) {
            fprintf(stderr, "twinedge-bench load: cannot write %s\n", o.json);
            rc = 1;
        } else {
            char cpu[256];
            cpu_model(cpu, sizeof cpu);
            fprintf(f, "{\"model\": ");
            json_str(f, o.model);
            fprintf(f, ", \"mode\": \"%s\", \"cpus\": %ld, \"cpu\": ", o.mode == TWINEDGE_RELAY ? "relay" : "mediated",
                    sysconf(_SC_NPROCESSORS_ONLN));
            json_str(f, cpu);
            fprintf(f, ",\n  \"runs\": [\n");
            for (int i = 0; i < n_res; i++)
                json_result(f, &o, &res[i], i + 1 == n_res);
            fprintf(f, "  ]}\n");
            fclose(f);
        }
    }
    free(input);
    if (!o.workdir) {
        te_err scratch;
        te_rm_rf(work, &scratch);
    }
    return rc;
}
