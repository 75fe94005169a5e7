/* libFuzzer: the image decoder (PNG/JPEG device inputs) down to the model
 * input tensor.  The first byte picks the channels, output size and
 * whether preprocessing is recorded. */
#include <stdlib.h>
#include <string.h>
#include "te_image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const int chans[4] = {1, 3, 4, 3};
    int c = chans[data[0] & 3], hw = 1 + ((data[0] >> 2) & 31);
    te_preprocess pre;
    memset(&pre, 0, sizeof pre);
    if (data[0] & 0x80) {
        pre.present = 1;
        pre.channels = c;
        for (int i = 0; i < 4; i++) {
            pre.mean[i] = 0.5f;
            pre.std[i] = 0.25f;
        }
    }
    te_err err;
    float *t = NULL;
    int w, h, n;
    (void)te_image_info(data + 1, size - 1, &w, &h, &n, &err);
    if (te_image_to_tensor(data + 1, size - 1, c, hw, hw + 1, &pre, (data[0] & 0x40) ? TE_FIT_CROP : TE_FIT_STRETCH, &t, &err) == TE_OK)
        free(t);
    return 0;
}
