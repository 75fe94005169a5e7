/* Shared set-up for the in-process integration tests: compile a test model,
 * provision a device, start both hosts in-process, open the device. */
#ifndef TE_HARNESS_H
#define TE_HARNESS_H

#include <stddef.h>
#include <stdint.h>

#include "owner.h"
#include "te_host.h"
#include "te_model.h"
#include "twinedge_device.h"

typedef struct te_fixture {
    char name[64];
    char dir[512];          /* scratch directory, removed by fx_teardown */
    char deploy[600];
    char device[600];
    te_local_pair *pair;
    twinedge_device *dev;
    float *input;           /* NAME.input.npy */
    size_t n_in;
    float *ref;             /* NAME.ref.npy (PyTorch float32) */
    size_t n_ref;
    size_t n_out;
} te_fixture;

/* Path of a file in $TE_TEST_DATA (static buffer per call site is not
 * used: writes into out). */
const char *fx_data(char *out, size_t cap, const char *file);

/* Compile $TE_TEST_DATA/NAME.onnx (calibrated with NAME.calib.npy),
 * provision device "dev-NAME", start the in-process pair with the given tap,
 * open the device and attach the transport.  Fails the cmocka test on error. */
void fx_setup(te_fixture *f, const char *name, te_tap_fn tap, void *tap_ctx);
/* The same with chosen compute plugins for EdgeA and EdgeB (NULL: cpu). */
void fx_setup_plugins(te_fixture *f, const char *name, const char *plugin_a, const char *plugin_b);
/* The same with compile options (NULL: the defaults). */
void fx_setup_opts(te_fixture *f, const char *name, const te_owner_options *opt);
void fx_teardown(te_fixture *f);

/* Re-open the device (after its files changed). */
void fx_reopen_device(te_fixture *f);

/* The plaintext fixed-point reference of the fixture's deployment. */
void fx_reference_fixed(te_fixture *f, const float *input, float *out);

double fx_cosine(const float *a, const float *b, size_t n);

/* ---- real twinedge-host processes on loopback (gRPC, mutual TLS) ---- */

typedef struct fx_host {
    int pid;
    int port;
    char role;
    char addr[64];          /* "127.0.0.1:PORT" */
} fx_host;

/* Run `bin` with args (NULL-terminated, after argv[0]), stderr appended to
 * log, and wait until it has written its bound port to portfile (which it
 * must be told with --port-file).  Fails the cmocka test if it exits or
 * does not start. */
void fx_host_spawn(fx_host *h, const char *bin, char role, const char *const *args, const char *portfile,
                   const char *log);
/* A host with the usual flags: --role ROLE --listen 127.0.0.1:PORT (0: any)
 * --store DIR/store-ROLE<tag> --credentials DEPLOY/hosts/ROLE, the port
 * file and log DIR/host-ROLE<tag>.log, --peer PEER if set, then `extra`
 * (NULL-terminated, may be NULL): otherwise the defaults a user gets. */
void fx_host_start(fx_host *h, const char *bin, const char *dir, const char *deploy, char role, const char *tag,
                   int port, const char *peer, const char *const *extra);
/* SIGTERM (or sig) and wait; returns the wait status (-1: not running). */
int fx_host_stop(fx_host *h, int sig);

/* Compile $TE_TEST_DATA/NAME.onnx in memory (calibrated with NAME.calib.npy
 * when it exists), as the owner would; free with te_model_free.  Fails the
 * cmocka test on error. */
te_model *fx_build_model(const char *name);
/* The same with compile options (NULL: the defaults). */
te_model *fx_build_model_opts(const char *name, const te_owner_options *opt);

/* ---- set-up shared by the tests against real hosts ---- */

/* fail_msg("WHAT: ERR") unless st is TE_OK. */
void fx_must(te_status st, const te_err *err, const char *what);
/* CLOCK_MONOTONIC in seconds. */
double fx_now_s(void);
/* mkdtemp(dir) (a template ending in XXXXXX), then DIR/deploy (written
 * into deploy) compiled from $TE_TEST_DATA/NAME.onnx calibrated with
 * NAME.calib.npy, and the deployment's PKI (CA, host credentials). */
void fx_net_deploy(char *dir, char *deploy, size_t deploy_cap, const char *name);
/* Provision device `id` of the deployment into device_dir, with its TLS
 * credentials. */
void fx_net_device(const char *deploy, const char *id, const char *device_dir);
/* $TE_TEST_DATA/NAME.input.npy (malloc'd); its element count in *n. */
float *fx_read_input(const char *name, size_t *n);
/* The number of outputs of the device in device_dir (opened and closed). */
size_t fx_device_n_out(const char *device_dir);
/* One unlabelled sample of the Prometheus metrics served on
 * 127.0.0.1:port; fails the cmocka test if it is not there. */
uint64_t fx_metric(int port, const char *name);

#endif
