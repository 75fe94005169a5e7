/* Pieces shared by the command-line tools (and their tests). */
#ifndef TE_RUNLIB_H
#define TE_RUNLIB_H

#include <stddef.h>
#include <time.h>
#include <stdint.h>
#include <sys/types.h>

#include "te_error.h"
#include "te_transport.h"
#include "te_model.h"

/* The owner's plaintext fixed-point reference of a deployment: the device
 * bundle's graph with the edge bundle's integer weights, every linear layer
 * computed in the clear with the reference kernel.  The private protocol
 * must reproduce it bit for bit. */
te_status te_reference_fixed(const char *deploy_dir, const float *input, size_t n_in, float *output, size_t n_out,
                             te_err *err);

/* The same, every output written to .npy files (te_npy_output_path). */
te_status te_reference_fixed_write(const char *deploy_dir, const float *input, size_t n_in, const char *base,
                                   te_err *err);

/* Every output of ex's last successful run to .npy files (te_npy_output_path). */
struct te_exec;
te_status te_exec_outputs_write(const struct te_exec *ex, const char *base, te_err *err);

/* Remove a directory tree (scratch directories). */
te_status te_rm_rf(const char *path, te_err *err);

/* ---- two twinedge-host processes on loopback (twinedge-run, twinedge-demo) ---- */

/* The twinedge-host executable: $TWINEDGE_HOST, else beside this executable
 * (installed bindir), else ../host/twinedge-host or ../../host/twinedge-host (the
 * build tree, from tools/ and tools/bench/). */
te_status te_host_binary(char *buf, size_t cap, te_err *err);

typedef struct te_hostpair {
    pid_t pid[2];            /* [0] EdgeA, [1] EdgeB; 0: not running */
    char addr[2][64];        /* "127.0.0.1:PORT" */
    char log[2][4200];       /* each host's stderr */
    char owner_creds[4200];  /* DEPLOY_DIR/owner, for deploy, health and stats */
} te_hostpair;

/* Start EdgeB, then EdgeA (peer: EdgeB) on free loopback ports with the
 * credentials DEPLOY_DIR/hosts/{a,b}, stores and logs under work_dir, and
 * wait until both answer the health check; then deploy DEPLOY_DIR to both
 * (registering every device key provisioned so far).  plugin may be NULL
 * (cpu).  On failure no host is left running. */
te_status te_hostpair_start(te_hostpair *hp, const char *deploy_dir, const char *work_dir, const char *plugin,
                            te_err *err);

/* The same with more choices (twinedge-bench). */
typedef struct te_hostpair_opts {
    const char *plugin;           /* NULL: cpu */
    const char *netns;            /* run both hosts in this network namespace (ip netns exec); NULL: here */
    const char *listen_ip;        /* the hosts' address; NULL: 127.0.0.1 */
    const char *const *extra_args; /* more twinedge-host flags for both, NULL-terminated; may be NULL */
} te_hostpair_opts;
te_status te_hostpair_start_opts(te_hostpair *hp, const char *deploy_dir, const char *work_dir,
                                 const te_hostpair_opts *o, te_err *err);

/* SIGTERM both hosts and reap them (SIGKILL after a grace period).  Fails
 * when a host did not exit cleanly.  Safe on a zeroed or stopped pair. */
te_status te_hostpair_stop(te_hostpair *hp, te_err *err);

/* Figures of one host's Stats call (LayerRequest bytes received and LayerResponse bytes sent). */
typedef struct te_host_figures {
    uint64_t requests, bytes_in, bytes_out;
} te_host_figures;

/* Stats of both hosts ([0] EdgeA, [1] EdgeB). */
te_status te_hostpair_stats(const te_hostpair *hp, te_host_figures fig[2], te_err *err);

/* Seconds on a clock (CLOCK_MONOTONIC, CLOCK_THREAD_CPUTIME_ID, ...). */
double te_clock_s(clockid_t clk);

/* Wraps a device's transport to add up the thread CPU time spent inside
 * the hosts, so that in-process runs can tell the device's own CPU time
 * apart.  Initialise with te_timed_transport_init; nothing to free. */
typedef struct te_timed_transport {
    te_transport self;
    te_transport *inner;
    double host_cpu_s;
} te_timed_transport;
void te_timed_transport_init(te_timed_transport *t, te_transport *inner);

#endif
