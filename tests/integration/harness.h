/* Shared set-up for the in-process integration tests: compile a test model,
 * provision a device, start both hosts in-process, open the device. */
#ifndef TE_HARNESS_H
#define TE_HARNESS_H

#include <stddef.h>
#include <stdint.h>

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
void fx_teardown(te_fixture *f);

/* Re-open the device (after its files changed). */
void fx_reopen_device(te_fixture *f);

/* The plaintext fixed-point reference of the fixture's deployment. */
void fx_reference_fixed(te_fixture *f, const float *input, float *out);

double fx_cosine(const float *a, const float *b, size_t n);

/* Compile $TE_TEST_DATA/NAME.onnx in memory (calibrated with NAME.calib.npy
 * when it exists), as the owner would; free with te_model_free.  Fails the
 * cmocka test on error. */
te_model *fx_build_model(const char *name);

#endif
