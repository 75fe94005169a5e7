#include "te_prf.h"

#include <limits.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>

#include "te_ring.h"

/* The 32-bit block counter must not wrap into the purpose byte:
 * at most 2^32 blocks of 16 bytes = 2^33 elements per (t, i, purpose). */
#define TE_PRF_MAX_ELEMS ((uint64_t)1 << 33)
/* Keystream is produced in chunks of this many words: small enough to stay
 * in L1 between zeroing, encrypting and reducing, large enough that EVP's
 * per-call overhead does not matter. */
#define TE_PRF_CHUNK_WORDS ((size_t)512)

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_LITTLE_ENDIAN__
#define TE_PRF_LE 1
#else
#define TE_PRF_LE 0
#endif

static te_status check_args(const uint8_t *key, uint32_t layer, te_prf_purpose purpose, te_err *err)
{
    if (!key)
        return te_errf(err, TE_EINVAL, "prf: null argument");
    if (layer >= ((uint32_t)1 << 24))
        return te_errf(err, TE_EINVAL, "prf: layer index %u does not fit in 24 bits", (unsigned)layer);
    if (purpose != TE_PRF_MASK && purpose != TE_PRF_OUT)
        return te_errf(err, TE_EINVAL, "prf: unknown purpose %d", (int)purpose);
    return TE_OK;
}

te_status te_prf_stream_open(te_prf_stream *s, const uint8_t key[TE_KEY_BYTES], uint64_t counter, uint32_t layer,
                             te_prf_purpose purpose, te_err *err)
{
    s->ctx = NULL;
    s->left = 0;
    te_status st = check_args(key, layer, purpose, err);
    if (st != TE_OK)
        return st;
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
    if (EVP_EncryptInit_ex(ctx, EVP_aes_256_ctr(), NULL, key, iv) != 1) {
        EVP_CIPHER_CTX_free(ctx);
        return te_errf(err, TE_EINVAL, "prf: AES-256-CTR initialisation failed");
    }
    s->ctx = ctx;
    s->left = TE_PRF_MAX_ELEMS;
    return TE_OK;
}

/* One chunk (n <= TE_PRF_CHUNK_WORDS): keystream = encryption of zeros, in
 * place, then words read little-endian. */
static te_status stream_chunk(EVP_CIPHER_CTX *ctx, uint64_t *out, size_t n, te_err *err)
{
    uint8_t *bytes = (uint8_t *)out;
    memset(bytes, 0, n * 8);
    int outl = 0;
    if (EVP_EncryptUpdate(ctx, bytes, &outl, bytes, (int)(n * 8)) != 1 || (size_t)outl != n * 8)
        return te_errf(err, TE_EINVAL, "prf: AES-256-CTR keystream generation failed");
#if !TE_PRF_LE
    for (size_t j = 0; j < n; j++) {
        const uint8_t *p = bytes + 8 * j;
        uint64_t v = 0;
        for (int k = 0; k < 8; k++)
            v |= (uint64_t)p[k] << (8 * k);
        out[j] = v;
    }
#endif
    return TE_OK;
}

te_status te_prf_stream_read(te_prf_stream *s, uint64_t *out, size_t n, te_err *err)
{
    if (!s->ctx || (!out && n))
        return te_errf(err, TE_EINVAL, "prf: stream not open or null buffer");
    if ((uint64_t)n > s->left)
        return te_errf(err, TE_EINVAL, "prf: %zu more elements exceed the per-stream limit", n);
    s->left -= (uint64_t)n;
    for (size_t off = 0; off < n; off += TE_PRF_CHUNK_WORDS) {
        size_t c = n - off < TE_PRF_CHUNK_WORDS ? n - off : TE_PRF_CHUNK_WORDS;
        te_status st = stream_chunk(s->ctx, out + off, c, err);
        if (st != TE_OK)
            return st;
    }
    return TE_OK;
}

void te_prf_stream_close(te_prf_stream *s)
{
    if (s && s->ctx) {
        EVP_CIPHER_CTX_free(s->ctx);
        s->ctx = NULL;
        s->left = 0;
    }
}

te_status te_prf_ring(const uint8_t key[TE_KEY_BYTES], uint64_t counter, uint32_t layer,
                      te_prf_purpose purpose, unsigned l, uint64_t *out, size_t n, te_err *err)
{
    if (!key || (!out && n))
        return te_errf(err, TE_EINVAL, "prf: null argument");
    if (l < 1 || l > 64)
        return te_errf(err, TE_EINVAL, "prf: ring width %u out of range 1..64", l);
    te_status st = check_args(key, layer, purpose, err);
    if (st != TE_OK)
        return st;
    if (te_size_exceeds(n, TE_PRF_MAX_ELEMS))
        return te_errf(err, TE_EINVAL, "prf: %zu elements exceed the per-stream limit", n);
    if (n == 0)
        return TE_OK;
    te_prf_stream s;
    if ((st = te_prf_stream_open(&s, key, counter, layer, purpose, err)) != TE_OK)
        return st;
    const uint64_t m = te_ring_mask(l);
    for (size_t off = 0; off < n && st == TE_OK; off += TE_PRF_CHUNK_WORDS) {
        size_t c = n - off < TE_PRF_CHUNK_WORDS ? n - off : TE_PRF_CHUNK_WORDS;
        uint64_t *o = out + off;
        st = stream_chunk(s.ctx, o, c, err);
        for (size_t j = 0; j < c; j++)
            o[j] &= m;
    }
    te_prf_stream_close(&s);
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

te_status te_prf_session_key(const uint8_t key[TE_KEY_BYTES], const uint8_t session[TE_SESSION_BYTES],
                             uint8_t out[TE_KEY_BYTES], te_err *err)
{
    static const char label[] = "twinedge/session/v1";
    uint8_t msg[sizeof label - 1 + TE_SESSION_BYTES];
    if (!key || !session || !out)
        return te_errf(err, TE_EINVAL, "prf: null argument");
    memcpy(msg, label, sizeof label - 1);
    memcpy(msg + sizeof label - 1, session, TE_SESSION_BYTES);
    unsigned len = 0;
    if (!HMAC(EVP_sha256(), key, TE_KEY_BYTES, msg, sizeof msg, out, &len) || len != TE_KEY_BYTES)
        return te_errf(err, TE_EINVAL, "prf: HMAC-SHA256 session key derivation failed");
    return TE_OK;
}
