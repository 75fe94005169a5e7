/* libFuzzer: the .npy reader (device inputs, calibration data). */
#include <stdlib.h>
#include "te_npy.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    te_shape s;
    float *v = NULL;
    te_err err;
    if (te_npy_parse(data, size, &s, &v, &err) == TE_OK)
        free(v);
    return 0;
}
