/* libFuzzer: every LayerRequest a host accepts (EdgeA from a device, EdgeB
 * from a device and from EdgeA) and every LayerResponse the device and
 * EdgeA read.  The first byte picks the path. */
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "te_host.h"
#include "te_wire.h"

static te_host *edge_a, *edge_b;
static te_transport *peer;

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    te_err err;
    te_model *m = fuzz_model();
    te_device_key k;
    fuzz_key(m, &k);
    te_host_config ca = {.role = TE_ROLE_A, .plugin = "cpu", .plugin_config = "threads=1"};
    te_host_config cb = {.role = TE_ROLE_B, .plugin = "cpu", .plugin_config = "threads=1"};
    if (te_host_new(&ca, &edge_a, &err) != TE_OK || te_host_new(&cb, &edge_b, &err) != TE_OK ||
        te_host_deploy(edge_a, m, &err) != TE_OK || te_host_deploy(edge_b, m, &err) != TE_OK ||
        te_host_register_device(edge_b, &k, &err) != TE_OK)
        abort();
    te_inproc_config ic = {edge_a, edge_b, FUZZ_DEVICE, NULL, NULL, NULL};
    if (te_inproc_peer_new(&ic, &peer, &err) != TE_OK)
        abort();
    te_host_set_peer(edge_a, peer);
    te_model_free(m);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    unsigned path = data[0] % 4;
    data++;
    size--;
    te_err err;
    if (path == 3) {
        uint64_t out[75];
        unsigned l = size ? 1 + data[0] % 64 : 40;
        (void)te_wire_read_response(data, size, "EdgeA", 0, 75, l, out, &err);
        return 0;
    }
    te_caller dev = {TE_CALLER_DEVICE, FUZZ_DEVICE}, a = {TE_CALLER_EDGE_A, NULL};
    uint8_t *resp = NULL;
    size_t resp_len = 0;
    te_host *h = path == 0 ? edge_a : edge_b;
    if (te_host_handle(h, path == 2 ? &a : &dev, data, size, &resp, &resp_len, &err) == TE_OK)
        free(resp);
    return 0;
}
