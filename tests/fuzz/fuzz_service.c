/* libFuzzer: every message a twinedge-host accepts over gRPC, through the
 * daemon's real handlers (host/daemon/service.c) without a network: Infer
 * (LayerRequest), MaskShare, Deploy (a stream of DeployChunk), RegisterDevice
 * (DeviceKeyMsg), Stats and grpc.health.v1.Health/Check.
 *
 * Input: byte 0 picks the method (% 7) and the caller ((/ 7) % 3: the
 * caller the method is for, a device, EdgeA); byte 1 picks EdgeA or EdgeB;
 * the rest is the message, or for Deploy a sequence of chunks, each a
 * 2-byte big-endian length and that many bytes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fuzz_common.h"
#include "hostd.h"
#include "te_net_transport.h"

#define MAX_CHUNKS 64

static te_host *hosts[2];
static hostd_service svcs[2];
static te_net_method methods[2][8];
static te_transport *peer;
static char store[2][64];

static void cleanup(void)
{
    for (int i = 0; i < 2; i++) {
        char cmd[128];
        snprintf(cmd, sizeof cmd, "rm -rf %s", store[i]);
        if (store[i][0] && system(cmd) != 0)
            fprintf(stderr, "fuzz_service: cannot remove %s\n", store[i]);
    }
}

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    te_err err;
    te_model *m = fuzz_model();
    te_device_key k;
    fuzz_key(m, &k);
    for (int i = 0; i < 2; i++) {
        te_host_config hc = {.role = i ? TE_ROLE_B : TE_ROLE_A, .plugin = "cpu", .plugin_config = "threads=1"};
        snprintf(store[i], sizeof store[i], "/tmp/fuzz-service-XXXXXX");
        if (!mkdtemp(store[i]) || te_host_new(&hc, &hosts[i], &err) != TE_OK ||
            hostd_store_init(store[i], &err) != TE_OK || te_host_deploy(hosts[i], m, &err) != TE_OK ||
            hostd_service_init(&svcs[i], hosts[i], hc.role, store[i], NULL, &err) != TE_OK ||
            hostd_service_methods(&svcs[i], methods[i], 8) != 7) {
            fprintf(stderr, "fuzz_service: %s\n", err.msg);
            abort();
        }
    }
    atexit(cleanup);
    if (te_host_register_device(hosts[1], &k, &err) != TE_OK)
        abort();
    te_inproc_config ic = {hosts[0], hosts[1], FUZZ_DEVICE, NULL, NULL, NULL};
    if (te_inproc_peer_new(&ic, &peer, &err) != TE_OK)
        abort();
    te_host_set_peer(hosts[0], peer);
    te_model_free(m);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    int method = data[0] % 7, who = (data[0] / 7) % 3, h = data[1] & 1;
    data += 2;
    size -= 2;
    te_net_method *mt = &methods[h][method];
    /* the caller each method is meant for */
    const char *right = strcmp(mt->path, TE_SVC_INFER) == 0 ? "device:" FUZZ_DEVICE
                        : strcmp(mt->path, TE_SVC_MASK_SHARE) == 0 ? TE_CN_EDGE_A
                                                                   : TE_CN_OWNER;
    const char *caller = who == 0 ? right : who == 1 ? "device:" FUZZ_DEVICE : TE_CN_EDGE_A;
    te_net_msg msgs[MAX_CHUNKS];
    size_t n = 0;
    if (mt->kind == TE_NET_CLIENT_STREAM) {
        while (size >= 2 && n < MAX_CHUNKS) {
            size_t l = (size_t)data[0] << 8 | data[1];
            if (l > size - 2)
                l = size - 2;
            msgs[n].data = data + 2;
            msgs[n++].len = l;
            data += 2 + l;
            size -= 2 + l;
        }
    } else {
        msgs[0].data = data;
        msgs[0].len = size;
        n = 1;
    }
    te_net_reply r;
    memset(&r, 0, sizeof r);
    mt->fn(mt->ctx, caller, msgs, n, &r);
    free(r.data);
    return 0;
}
