/* Deployment files: the device bundle, the edge bundle and device keys.
 *
 * Every file is a checksummed container (docs/bundle-format.md):
 *     magic "TWINEDGE" | u32 format version | u32 kind | u32 flags |
 *     u64 payload length | u64 stored length | SHA-256(stored bytes) | stored bytes
 * where the stored bytes are the protobuf payload (proto/bundle.proto),
 * Brotli-compressed when flags & TE_CONTAINER_BROTLI.  A reader refuses a
 * wrong magic, an unknown version or kind, a checksum mismatch, a failed
 * decompression or a payload that does not parse or validate. */
#ifndef TE_BUNDLE_H
#define TE_BUNDLE_H

#include <stdint.h>
#include <stddef.h>
#include "te_error.h"
#include "te_model.h"
#include "te_prf.h"

#define TE_CONTAINER_VERSION 1u
#define TE_CONTAINER_BROTLI 1u

typedef enum te_container_kind {
    TE_KIND_DEVICE_BUNDLE = 1,
    TE_KIND_EDGE_BUNDLE = 2,
    TE_KIND_DEVICE_KEY = 3
} te_container_kind;

/* Raw container I/O (payload owned by the caller; free with free()). */
te_status te_container_encode(uint32_t kind, int brotli, const uint8_t *payload, size_t len,
                              uint8_t **out, size_t *out_len, te_err *err);
te_status te_container_decode(const uint8_t *buf, size_t len, uint32_t expected_kind,
                              uint8_t **payload, size_t *payload_len, te_err *err);
te_status te_file_write_atomic(const char *path, const uint8_t *buf, size_t len, te_err *err);
te_status te_file_read(const char *path, size_t max_len, uint8_t **buf, size_t *len, te_err *err);

/* Device bundle: values, nodes, layers without weights (geom, frac_bits,
 * ring_bits, weight_bits, w_scale, bias, r, s), preprocessing. */
te_status te_device_bundle_write(const char *path, const te_model *m, te_err *err);
te_status te_device_bundle_read(const char *path, te_model **m, te_err *err);
te_status te_device_bundle_parse(const uint8_t *buf, size_t len, te_model **m, te_err *err);

/* Edge bundle (Brotli): deployment id and layers with geom, weight_bits, w
 * (and name); everything else empty. */
te_status te_edge_bundle_write(const char *path, const te_model *m, te_err *err);
te_status te_edge_bundle_read(const char *path, te_model **m, te_err *err);
te_status te_edge_bundle_parse(const uint8_t *buf, size_t len, te_model **m, te_err *err);

/* A device key: shared by the device and EdgeB. */
typedef struct te_device_key {
    char device_id[64];
    char deployment_id[33];
    uint8_t key[TE_KEY_BYTES];
} te_device_key;

te_status te_device_key_write(const char *path, const te_device_key *k, te_err *err);
te_status te_device_key_read(const char *path, te_device_key *k, te_err *err);
te_status te_device_key_parse(const uint8_t *buf, size_t len, te_device_key *k, te_err *err);

#endif
