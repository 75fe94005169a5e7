#define _XOPEN_SOURCE 700
#include "runlib.h"
#include "te_npy.h"

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "deploy.h"
#include "service.pb-c.h"
#include "te_bundle.h"
#include "te_exec.h"
#include "te_net_transport.h"

/* The reference's executor after one run on input; *dev, *edge and *ex
 * are the caller's to free (with the edge weights lent to *dev's layers
 * taken back first: reference_done). */
static te_status reference_run(const char *deploy_dir, const float *input, size_t n_in, te_model **dev,
                               te_model **edge, te_exec **ex, te_err *err)
{
    char path[4096];
    te_status st;
    snprintf(path, sizeof path, "%s/device.bundle", deploy_dir);
    if ((st = te_device_bundle_read(path, dev, err)) != TE_OK)
        return st;
    snprintf(path, sizeof path, "%s/edge.bundle", deploy_dir);
    if ((st = te_edge_bundle_read(path, edge, err)) != TE_OK)
        return st;
    if ((*edge)->n_layers != (*dev)->n_layers || strcmp((*edge)->deployment_id, (*dev)->deployment_id) != 0)
        return te_errf(err, TE_EFORMAT, "device and edge bundles in %s are not from one deployment", deploy_dir);
    for (int i = 0; i < (*dev)->n_layers; i++) {
        /* lend the edge weights to the device graph for this run */
        (*dev)->layers[i].w = (*edge)->layers[i].w;
    }
    if ((st = te_exec_new(*dev, ex, err)) != TE_OK)
        return st;
    return te_exec_run(*ex, input, n_in, te_linear_fn_fixed, NULL, err);
}

static void reference_done(te_model *dev, te_model *edge, te_exec *ex)
{
    if (dev)
        for (int i = 0; i < dev->n_layers; i++)
            dev->layers[i].w = NULL;
    te_exec_free(ex);
    te_model_free(dev);
    te_model_free(edge);
}

te_status te_reference_fixed(const char *deploy_dir, const float *input, size_t n_in, float *output, size_t n_out,
                             te_err *err)
{
    te_model *dev = NULL, *edge = NULL;
    te_exec *ex = NULL;
    te_status st = reference_run(deploy_dir, input, n_in, &dev, &edge, &ex, err);
    if (st == TE_OK) {
        te_shape shape;
        const float *y = te_exec_output(ex, &shape);
        if ((size_t)te_shape_numel(&shape) != n_out)
            st = te_errf(err, TE_ESHAPE, "output has %lld elements, caller expects %zu",
                         (long long)te_shape_numel(&shape), n_out);
        else
            memcpy(output, y, n_out * sizeof *output);
    }
    reference_done(dev, edge, ex);
    return st;
}

te_status te_exec_outputs_write(const te_exec *ex, const char *base, te_err *err)
{
    const te_model *m = te_exec_model(ex);
    for (int k = 0; m && k < te_model_n_outputs(m); k++) {
        char path[4200];
        te_shape s;
        const float *y = te_exec_output_at(ex, k, &s);
        te_npy_output_path(base, k, path, sizeof path);
        te_status st = y ? te_npy_write(path, &s, y, err) : te_errf(err, TE_EINVAL, "output %d: no run", k);
        if (st != TE_OK)
            return st;
    }
    return TE_OK;
}

te_status te_reference_fixed_write(const char *deploy_dir, const float *input, size_t n_in, const char *base,
                                   te_err *err)
{
    te_model *dev = NULL, *edge = NULL;
    te_exec *ex = NULL;
    te_status st = reference_run(deploy_dir, input, n_in, &dev, &edge, &ex, err);
    if (st == TE_OK)
        st = te_exec_outputs_write(ex, base, err);
    reference_done(dev, edge, ex);
    return st;
}

static int rm_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

te_status te_rm_rf(const char *path, te_err *err)
{
    if (access(path, F_OK) != 0)
        return TE_OK;
    if (nftw(path, rm_one, 16, FTW_DEPTH | FTW_PHYS) != 0)
        return te_errf(err, TE_EIO, "cannot remove %s", path);
    return TE_OK;
}

/* ---- host processes ---- */

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int is_exe(const char *p) { return access(p, X_OK) == 0; }

te_status te_host_binary(char *buf, size_t cap, te_err *err)
{
    const char *env = getenv("TWINEDGE_HOST");
    if (env && *env) {
        if (!is_exe(env))
            return te_errf(err, TE_EIO, "TWINEDGE_HOST=%s is not an executable", env);
        snprintf(buf, cap, "%s", env);
        return TE_OK;
    }
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0)
        return te_errf(err, TE_EIO, "cannot find this executable (/proc/self/exe): %s", strerror(errno));
    exe[n] = '\0';
    char *slash = strrchr(exe, '/');
    if (slash)
        *slash = '\0';
    /* installed bindir; build tree from tools/ and from tools/bench/ */
    const char *rel[3] = {"twinedge-host", "../host/twinedge-host", "../../host/twinedge-host"};
    for (int i = 0; i < 3; i++) {
        if ((size_t)snprintf(buf, cap, "%s/%s", exe, rel[i]) < cap && is_exe(buf))
            return TE_OK;
    }
    return te_errf(err, TE_EIO, "cannot find twinedge-host in %s or %s/../host (set TWINEDGE_HOST)", exe, exe);
}

/* Fork and exec one host; argv built before the fork (only exec-safe calls in the child). */
static te_status spawn_host(const char *bin, char *const argv[], const char *log, pid_t *pid, te_err *err)
{
    int fd = open(log, O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd < 0)
        return te_errf(err, TE_EIO, "cannot write %s: %s", log, strerror(errno));
    pid_t parent = getpid();
    pid_t p = fork();
    if (p < 0) {
        close(fd);
        return te_errf(err, TE_EIO, "fork: %s", strerror(errno));
    }
    if (p == 0) {
        /* die with the tool, so a crash of the tool leaves no host behind */
        prctl(PR_SET_PDEATHSIG, SIGTERM);
        if (getppid() != parent)
            _exit(127);
        dup2(fd, STDOUT_FILENO);
        dup2(fd, STDERR_FILENO);
        close(fd);
        execv(bin, argv);
        _exit(127);
    }
    close(fd);
    *pid = p;
    return TE_OK;
}

static te_status read_port(const char *port_file, pid_t pid, const char *log, int *port, te_err *err)
{
    for (int i = 0; i < 1500; i++) { /* 30 s */
        FILE *f = fopen(port_file, "r");
        if (f) {
            int p = 0, ok = fscanf(f, "%d", &p) == 1;
            fclose(f);
            if (ok && p > 0) {
                *port = p;
                return TE_OK;
            }
        }
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            return te_errf(err, TE_ETRANSPORT, "twinedge-host exited during start-up (see %s)", log);
        sleep_ms(20);
    }
    return te_errf(err, TE_ETRANSPORT, "twinedge-host did not start within 30 s (see %s)", log);
}

static te_status health_check(const te_hostpair *hp, const te_net_creds *creds, te_err *err)
{
    const char *names[2] = {TE_CN_EDGE_A, TE_CN_EDGE_B};
    for (int i = 0; i < 2; i++) {
        te_net_channel_config cc = {hp->addr[i], creds, names[i], 0};
        te_net_channel *ch = NULL;
        te_status st = te_net_channel_new(&cc, &ch, err);
        for (int tries = 0; st == TE_OK; tries++) {
            uint8_t *resp = NULL;
            size_t len = 0;
            st = te_net_unary(ch, TE_SVC_HEALTH_CHECK, (const uint8_t *)"", 0, &resp, &len, 5000, err);
            /* up: the host answers (HealthCheckResponse{status}: field 1, a
             * varint).  Before the deploy below a host says NOT_SERVING (2);
             * SERVING (1) is fine too (a store that held the deployment). */
            int serving = st == TE_OK && len == 2 && resp[0] == 0x08 && (resp[1] == 0x01 || resp[1] == 0x02);
            free(resp);
            if (serving)
                break;
            if (tries >= 50) {
                if (st == TE_OK)
                    st = te_errf(err, TE_ETRANSPORT, "Edge%c at %s is not serving", i ? 'B' : 'A', hp->addr[i]);
                break;
            }
            st = TE_OK;
            sleep_ms(100);
        }
        te_net_channel_free(ch);
        if (st != TE_OK)
            return te_err_wrap(err, "health check of Edge%c (log: %s)", i ? 'B' : 'A', hp->log[i]);
    }
    return TE_OK;
}

te_status te_hostpair_start(te_hostpair *hp, const char *deploy_dir, const char *work_dir, const char *plugin,
                            te_err *err)
{
    te_hostpair_opts o = {plugin, NULL, NULL, NULL};
    return te_hostpair_start_opts(hp, deploy_dir, work_dir, &o, err);
}

#define HOSTPAIR_MAX_EXTRA 24

te_status te_hostpair_start_opts(te_hostpair *hp, const char *deploy_dir, const char *work_dir,
                                 const te_hostpair_opts *o, te_err *err)
{
    memset(hp, 0, sizeof *hp);
    char bin[4096];
    te_status st = te_host_binary(bin, sizeof bin, err);
    if (st != TE_OK)
        return st;
    const char *ip = o->listen_ip ? o->listen_ip : "127.0.0.1";
    char listen[80];
    snprintf(listen, sizeof listen, "%s:0", ip);
    int n_extra = 0;
    while (o->extra_args && o->extra_args[n_extra])
        if (++n_extra > HOSTPAIR_MAX_EXTRA)
            return te_errf(err, TE_EINVAL, "more than %d extra twinedge-host arguments", HOSTPAIR_MAX_EXTRA);
    snprintf(hp->owner_creds, sizeof hp->owner_creds, "%s/owner", deploy_dir);
    /* EdgeB first: EdgeA needs its address */
    for (int k = 1; k >= 0 && st == TE_OK; k--) {
        char role[2] = {k ? 'b' : 'a', 0};
        char store[4200], creds[4200], port_file[4200];
        snprintf(store, sizeof store, "%s/store-%s", work_dir, role);
        snprintf(creds, sizeof creds, "%s/hosts/%s", deploy_dir, role);
        snprintf(port_file, sizeof port_file, "%s/port-%s", work_dir, role);
        snprintf(hp->log[k], sizeof hp->log[k], "%s/host-%s.log", work_dir, role);
        unlink(port_file);
        char *argv[24 + HOSTPAIR_MAX_EXTRA];
        int n = 0;
        if (o->netns) {
            argv[n++] = "/usr/sbin/ip"; /* execs the host in place: the pid stays the host's */
            argv[n++] = "netns";
            argv[n++] = "exec";
            argv[n++] = (char *)o->netns;
        }
        argv[n++] = bin;
        argv[n++] = "--role";
        argv[n++] = role;
        argv[n++] = "--listen";
        argv[n++] = listen;
        argv[n++] = "--store";
        argv[n++] = store;
        argv[n++] = "--credentials";
        argv[n++] = creds;
        argv[n++] = "--port-file";
        argv[n++] = port_file;
        argv[n++] = "--plugin";
        argv[n++] = (char *)(o->plugin ? o->plugin : "cpu");
        if (!k) {
            argv[n++] = "--peer";
            argv[n++] = hp->addr[1];
        }
        for (int i = 0; i < n_extra; i++)
            argv[n++] = (char *)o->extra_args[i];
        argv[n] = NULL;
    int port = 0;
        if ((st = spawn_host(argv[0], argv, hp->log[k], &hp->pid[k], err)) != TE_OK ||
            (st = read_port(port_file, hp->pid[k], hp->log[k], &port, err)) != TE_OK)
            break;
        snprintf(hp->addr[k], sizeof hp->addr[k], "%s:%d", ip, port);
    }
    te_net_creds creds;
    memset(&creds, 0, sizeof creds);
    if (st == TE_OK && (st = te_net_creds_load(hp->owner_creds, &creds, err)) == TE_OK) {
        st = health_check(hp, &creds, err);
        te_net_creds_free(&creds);
    }
    if (st == TE_OK)
        st = te_owner_deploy(deploy_dir, hp->addr[0], hp->addr[1], err);
    if (st != TE_OK) {
        te_err scratch;
        te_hostpair_stop(hp, &scratch);
    }
    return st;
}

static int reap(pid_t pid, int wait_ms)
{
    int status = 0;
    for (int waited = 0;; waited += 10) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0)
            return -1;
        if (waited >= wait_ms) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return -1;
        }
        sleep_ms(10);
    }
}

te_status te_hostpair_stop(te_hostpair *hp, te_err *err)
{
    te_status st = TE_OK;
    for (int k = 0; k < 2; k++) { /* EdgeA first: it calls EdgeB */
        if (hp->pid[k] <= 0)
            continue;
        kill(hp->pid[k], SIGTERM);
        int status = reap(hp->pid[k], 10000);
        hp->pid[k] = 0;
        if (st == TE_OK && (status < 0 || !WIFEXITED(status) || WEXITSTATUS(status) != 0))
            st = te_errf(err, TE_EIO, "Edge%c did not stop cleanly (see %s)", k ? 'B' : 'A', hp->log[k]);
    }
    return st;
}

te_status te_hostpair_stats(const te_hostpair *hp, te_host_figures fig[2], te_err *err)
{
    te_net_creds creds;
    te_status st = te_net_creds_load(hp->owner_creds, &creds, err);
    if (st != TE_OK)
        return st;
    const char *names[2] = {TE_CN_EDGE_A, TE_CN_EDGE_B};
    for (int i = 0; i < 2 && st == TE_OK; i++) {
        te_net_channel_config cc = {hp->addr[i], &creds, names[i], 0};
        te_net_channel *ch = NULL;
        uint8_t *resp = NULL;
        size_t len = 0;
        if ((st = te_net_channel_new(&cc, &ch, err)) == TE_OK &&
            (st = te_net_unary(ch, TE_SVC_STATS, (const uint8_t *)"", 0, &resp, &len, 5000, err)) == TE_OK) {
            Twinedge__StatsReply *r = twinedge__stats_reply__unpack(NULL, len, resp);
            if (!r) {
                st = te_errf(err, TE_EFORMAT, "Edge%c sent a malformed StatsReply", i ? 'B' : 'A');
            } else {
                fig[i].requests = r->requests;
                fig[i].bytes_in = r->bytes_in;
                fig[i].bytes_out = r->bytes_out;
                twinedge__stats_reply__free_unpacked(r, NULL);
            }
        }
        free(resp);
        te_net_channel_free(ch);
    }
    te_net_creds_free(&creds);
    return st;
}

double te_clock_s(clockid_t clk)
{
    struct timespec ts;
    clock_gettime(clk, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static te_status timed_call(te_transport *t, te_party to, const uint8_t *req, size_t req_len, uint8_t **resp,
                            size_t *resp_len, te_err *err)
{
    te_timed_transport *tt = t->impl;
    double c0 = te_clock_s(CLOCK_THREAD_CPUTIME_ID);
    te_status st = te_transport_call(tt->inner, to, req, req_len, resp, resp_len, err);
    tt->host_cpu_s += te_clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
    return st;
}

static void timed_destroy(te_transport *t) { (void)t; }

static te_status timed_begin(te_transport *t, te_err *err)
{
    return te_transport_begin(((te_timed_transport *)t->impl)->inner, err);
}

static void timed_end(te_transport *t) { te_transport_end(((te_timed_transport *)t->impl)->inner); }

static const te_transport_ops timed_ops = {
    .call = timed_call, .destroy = timed_destroy, .begin = timed_begin, .end = timed_end};

void te_timed_transport_init(te_timed_transport *t, te_transport *inner)
{
    t->self.ops = &timed_ops;
    t->self.impl = t;
    t->inner = inner;
    t->host_cpu_s = 0;
}
