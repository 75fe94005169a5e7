/* Internal to the core library (te_container.c, te_bundle.c, te_npy.c):
 * not part of the public interface. */
#ifndef TE_CONTAINER_INT_H
#define TE_CONTAINER_INT_H

#include <stdint.h>
#include <stddef.h>
#include "te_error.h"

/* Largest payload a container may state (after decompression). */
#define TE_CONTAINER_MAX_PAYLOAD ((uint64_t)1 << 32)
/* Largest deployment file read from disk: 4 GiB, or all a 32-bit size_t
 * can count (armhf). */
#define TE_BUNDLE_MAX_FILE \
    ((size_t)((uint64_t)SIZE_MAX < ((uint64_t)1 << 32) ? (uint64_t)SIZE_MAX : ((uint64_t)1 << 32)))

const char *te_kind_name(uint32_t kind);
/* te_file_write_atomic with explicit permissions (keys are 0600). */
te_status te_file_write_mode(const char *path, const uint8_t *buf, size_t len, unsigned mode, te_err *err);

#endif
