/* Writes seed inputs for the fuzzers: valid messages, bundles and arrays
 * for the hand-built deployment of fuzz_common.c.  Usage: make_seeds DIR */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"
#include "te_npy.h"
#include "te_prf.h"
#include "te_ring.h"
#include "wire.pb-c.h"

static void put(const char *dir, const char *sub, const char *name, const uint8_t *prefix, size_t plen,
                const uint8_t *buf, size_t len)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s/%s", dir, sub, name);
    FILE *f = fopen(path, "wb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fwrite(prefix, 1, plen, f);
    fwrite(buf, 1, len, f);
    fclose(f);
}

/* A file as a seed; with kind != 0 also its payload, for the harness's
 * wrap-in-a-valid-container form (selector byte = form). */
static void copy_file(const char *from, const char *dir, const char *sub, const char *name, uint32_t kind,
                      uint8_t form)
{
    uint8_t *buf;
    size_t len;
    te_err err;
    if (te_file_read(from, 1 << 24, &buf, &len, &err) != TE_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    uint8_t raw = 0;
    put(dir, sub, name, kind ? &raw : NULL, kind ? 1 : 0, buf, len);
    if (kind) {
        uint8_t *payload;
        size_t plen;
        if (te_container_decode(buf, len, kind, &payload, &plen, &err) != TE_OK) {
            fprintf(stderr, "%s\n", err.msg);
            exit(1);
        }
        char pname[256];
        snprintf(pname, sizeof pname, "%s.payload", name);
        put(dir, sub, pname, &form, 1, payload, plen);
        free(payload);
    }
    free(buf);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: make_seeds DIR (with DIR/npy, DIR/bundle, DIR/wire)\n");
        return 2;
    }
    const char *dir = argv[1];
    te_err err;
    te_model *m = fuzz_model();
    te_device_key k;
    fuzz_key(m, &k);
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s/.tmp", dir);
    if (te_device_bundle_write(tmp, m, &err) != TE_OK)
        return fprintf(stderr, "%s\n", err.msg), 1;
    copy_file(tmp, dir, "bundle", "device.bundle", TE_KIND_DEVICE_BUNDLE, 1);
    if (te_edge_bundle_write(tmp, m, &err) != TE_OK)
        return fprintf(stderr, "%s\n", err.msg), 1;
    copy_file(tmp, dir, "bundle", "edge.bundle", TE_KIND_EDGE_BUNDLE, 2);
    if (te_device_key_write(tmp, &k, &err) != TE_OK)
        return fprintf(stderr, "%s\n", err.msg), 1;
    copy_file(tmp, dir, "bundle", "device.key", TE_KIND_DEVICE_KEY, 3);
    te_shape s = {4, {1, 2, 5, 5}};
    float x[50];
    for (int i = 0; i < 50; i++)
        x[i] = (float)i / 7.0f - 3.0f;
    if (te_npy_write(tmp, &s, x, &err) != TE_OK)
        return fprintf(stderr, "%s\n", err.msg), 1;
    copy_file(tmp, dir, "npy", "input.npy", 0, 0);
    remove(tmp);

    /* LayerRequests: to EdgeA with data, to EdgeB without, both modes */
    for (int layer = 0; layer < 2; layer++) {
        for (int mode = 0; mode < 2; mode++) {
            unsigned l = 40;
            size_t n = (size_t)te_geom_in_len(&m->layers[layer].geom);
            uint64_t *v = calloc(n, sizeof *v);
            te_prf_ring(k.key, 5, (uint32_t)layer, TE_PRF_MASK, l, v, n, &err);
            uint8_t *packed = malloc(te_pack_bytes(n, l));
            te_pack(v, n, l, packed);
            Twinedge__LayerRequest q = TWINEDGE__LAYER_REQUEST__INIT;
            q.deployment_id = m->deployment_id;
            q.device_id = k.device_id;
            q.counter = 5;
            q.layer = (uint32_t)layer;
            q.ring_bits = l;
            q.batch = 1;
            q.mode = mode ? TWINEDGE__MODE__MODE_RELAY : TWINEDGE__MODE__MODE_MEDIATED;
            for (int to = 0; to < 3; to++) {
                q.data.data = to == 0 ? packed : NULL;
                q.data.len = to == 0 ? te_pack_bytes(n, l) : 0;
                size_t len = twinedge__layer_request__get_packed_size(&q);
                uint8_t *buf = malloc(len);
                twinedge__layer_request__pack(&q, buf);
                char name[64];
                snprintf(name, sizeof name, "req-l%d-m%d-to%d", layer, mode, to);
                uint8_t sel = (uint8_t)to;
                put(dir, "wire", name, &sel, 1, buf, len);
                free(buf);
            }
            /* and a response carrying n elements */
            Twinedge__LayerResponse r = TWINEDGE__LAYER_RESPONSE__INIT;
            r.data.data = packed;
            r.data.len = te_pack_bytes(n, l);
            size_t len = twinedge__layer_response__get_packed_size(&r);
            uint8_t *buf = malloc(len);
            twinedge__layer_response__pack(&r, buf);
            char name[64];
            snprintf(name, sizeof name, "resp-l%d-m%d", layer, mode);
            uint8_t sel = 3;
            put(dir, "wire", name, &sel, 1, buf, len);
            free(buf);
            free(packed);
            free(v);
        }
    }
    te_model_free(m);
    return 0;
}
