/* Shared pieces of the libFuzzer harnesses: a small hand-built deployment. */
#ifndef TE_FUZZ_COMMON_H
#define TE_FUZZ_COMMON_H

#include "te_bundle.h"
#include "te_model.h"

#define FUZZ_DEVICE "fuzz-device"

/* A two-layer model (conv 2->3 3x3 pad 1 on 5x5, relu, FC 75->4) with
 * weights, scales and integrity keys: everything a deployment holds. */
te_model *fuzz_model(void);
/* The device key that goes with it. */
void fuzz_key(const te_model *m, te_device_key *k);

#endif
