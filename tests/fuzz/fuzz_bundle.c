/* libFuzzer: the bundle and key readers (device bundle, edge bundle, device
 * key), and the executor's validation of whatever parses.  The first byte
 * picks the form: 0 = a whole file as read from disk; 1..3 = a payload that
 * the harness wraps in a valid container (so mutations get past the
 * checksum into the protobuf and the model validation). */
#include <stdlib.h>
#include "te_bundle.h"
#include "te_exec.h"

static void device_bundle(const uint8_t *data, size_t size)
{
    te_err err;
    te_model *m = NULL;
    if (te_device_bundle_parse(data, size, &m, &err) == TE_OK) {
        te_exec *ex = NULL;
        if (te_exec_new(m, &ex, &err) == TE_OK)
            te_exec_free(ex);
        te_model_free(m);
    }
}

static void edge_bundle(const uint8_t *data, size_t size)
{
    te_err err;
    te_model *m = NULL;
    if (te_edge_bundle_parse(data, size, &m, &err) == TE_OK)
        te_model_free(m);
}

static void device_key(const uint8_t *data, size_t size)
{
    te_err err;
    te_device_key k;
    (void)te_device_key_parse(data, size, &k, &err);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned form = data[0] % 4;
    data++;
    size--;
    if (form == 0) {
        device_bundle(data, size);
        edge_bundle(data, size);
        device_key(data, size);
        return 0;
    }
    static const uint32_t kinds[] = {0, TE_KIND_DEVICE_BUNDLE, TE_KIND_EDGE_BUNDLE, TE_KIND_DEVICE_KEY};
    uint8_t *file = NULL;
    size_t len = 0;
    te_err err;
    if (te_container_encode(kinds[form], form == 2, data, size, &file, &len, &err) != TE_OK)
        return 0;
    if (form == 1)
        device_bundle(file, len);
    else if (form == 2)
        edge_bundle(file, len);
    else
        device_key(file, len);
    free(file);
    return 0;
}
