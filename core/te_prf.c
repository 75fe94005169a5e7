#include "te_prf.h"

#include <limits.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/rand.h>

#include "te_ring.h"

/* The 32-bit block counter must not wrap into the purpose byte:
 * at most 2^32 blocks of 16 bytes = 2^33 elements per (t, i, purpose). */
#define TE_PRF_MAX_ELEMS ((uint64_t)1 << 33)
/* EVP takes int lengths: generate the keystream in chunks. */
#define TE_PRF_CHUNK ((size_t)1 << 28)

te_status te_prf_ring(const uint8_t key[TE_KEY_BYTES], uint64_t counter, uint32_t layer,
                      te_prf_purpose purpose, unsigned l, uint64_t *out, size_t n, te_err *err)
{
    if (!key || (!out && n))
        return te_errf(err, TE_EINVAL, "prf: null argument");
    if (l < 1 || l > 64)
        return te_errf(err, TE_EINVAL, "prf: ring width %u out of range 1..64", l);
    if (layer >= ((uint32_t)1 << 24))
        return te_errf(err, TE_EINVAL, "prf: layer index %u does not fit in 24 bits", (unsigned)layer);
    if (purpose != TE_PRF_MASK && purpose != TE_PRF_OUT)
        return te_errf(err, TE_EINVAL, "prf: unknown purpose %d", (int)purpose);
    if ((uint64_t)n > TE_PRF_MAX_ELEMS)
        return te_errf(err, TE_EINVAL, "prf: %zu elements exceed the per-stream limit", n);
    if (n == 0)
        return TE_OK;

    uint8_t iv[16];
    for (int k = 0; k < 8; k++)
        iv[k] = (uint8_t)(counter >> (56 - 8 * k));
    iv[8] = (uint8_t)(layer >> 16);
    iv[9] = (uint8_t)(layer >> 8);
    iv[10] = (uint8_t)layer;
    iv[11] = (uint8_t)purpose;
    iv[12] = iv[13] = iv[14] = iv[15] = 0;

    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    if (!ctx)
        return te_errf(err, TE_ENOMEM, "prf: EVP_CIPHER_CTX_new failed");
    te_status st = TE_OK;
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_ctr(), NULL, key, iv) != 1) {
        st = te_errf(err, TE_EINVAL, "prf: AES-256-CTR initialisation failed");
        goto done;
    }
    /* keystream = encryption of zeros, produced in place */
    uint8_t *bytes = (uint8_t *)out;
    size_t total = n * 8;
    memset(bytes, 0, total);
    for (size_t off = 0; off < total;) {
        size_t chunk = total - off < TE_PRF_CHUNK ? total - off : TE_PRF_CHUNK;
        int outl = 0;
        if (EVP_EncryptUpdate(ctx, bytes + off, &outl, bytes + off, (int)chunk) != 1 ||
            (size_t)outl != chunk) {
            st = te_errf(err, TE_EINVAL, "prf: AES-256-CTR keystream generation failed");
            goto done;
        }
        off += chunk;
    }
    const uint64_t m = te_ring_mask(l);
    for (size_t j = 0; j < n; j++) {
        const uint8_t *p = bytes + 8 * j;
        uint64_t v = 0;
        for (int k = 0; k < 8; k++)
            v |= (uint64_t)p[k] << (8 * k); /* compiles to one load on little-endian hosts */
        out[j] = v & m;
    }
done:
    EVP_CIPHER_CTX_free(ctx);
    return st;
}

te_status te_random_bytes(uint8_t *buf, size_t n, te_err *err)
{
    while (n > 0) {
        int chunk = n > (size_t)INT_MAX ? INT_MAX : (int)n;
        if (RAND_bytes(buf, chunk) != 1)
            return te_errf(err, TE_EIO, "random: RAND_bytes failed (CSPRNG unavailable)");
        buf += chunk;
        n -= (size_t)chunk;
    }
    return TE_OK;
}
