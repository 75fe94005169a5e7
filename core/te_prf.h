/* The masking PRF shared by the device and EdgeB.
 *
 * AES-256-CTR (OpenSSL EVP) keyed with a session key
 *     K_s = HMAC-SHA256(K, "twinedge/session/v1" || session)
 * derived from the device's 32-byte key K and a 16-byte session nonce the
 * device draws from the OS for each open handle (te_prf_session_key).  The
 * 16-byte initial counter block is
 *     bytes 0..7   request counter t (big-endian)
 *     bytes 8..10  linear layer index i (big-endian, < 2^24)
 *     byte  11     purpose (mask, out)
 *     bytes 12..15 block counter, starting at 0
 * so every (session, t, i, purpose) gets its own keystream.  K is drawn per
 * device at provisioning, which binds the stream to the device id.
 * Security rests on (session, t, i) never repeating under one K: t counts
 * one handle's inferences in memory, and the session nonce is fresh from the
 * OS, so no device-side mishap (concurrent processes, a copied or restored
 * directory, a crash) can bring back a used one except with probability
 * about q^2 / 2^129 over q sessions.
 *
 * Element j of the output is keystream bytes [8j, 8j+8) read little-endian
 * and reduced mod 2^l, so the first n elements do not depend on l's width
 * beyond the reduction and are uniform in Z_2^l.
 */
#ifndef TE_PRF_H
#define TE_PRF_H

#include <stdint.h>
#include <stddef.h>
#include "te_error.h"

#define TE_KEY_BYTES 32
#define TE_SESSION_BYTES 16

/* K_s for one session; every stream below is keyed with a K_s. */
te_status te_prf_session_key(const uint8_t key[TE_KEY_BYTES], const uint8_t session[TE_SESSION_BYTES],
                             uint8_t out[TE_KEY_BYTES], te_err *err);

typedef enum te_prf_purpose {
    TE_PRF_MASK = 1, /* M: blinds the device's input to EdgeA */
    TE_PRF_OUT = 2   /* Z: blinds EdgeB's share on its way through EdgeA (relay) */
} te_prf_purpose;

te_status te_prf_ring(const uint8_t key[TE_KEY_BYTES], uint64_t counter, uint32_t layer,
                      te_prf_purpose purpose, unsigned l, uint64_t *out, size_t n, te_err *err);

/* The same stream read piecewise, for callers that consume it in small
 * chunks (kept in cache) instead of one n-element buffer: the words returned
 * by successive te_prf_stream_read calls, concatenated, are exactly the
 * elements of te_prf_ring(..., l = 64, ...) for the same (key, counter,
 * layer, purpose); reduce them mod 2^l to get the l-bit elements.
 * Close every opened stream (also after an error). */
typedef struct te_prf_stream {
    void *ctx;          /* EVP_CIPHER_CTX */
    uint64_t left;      /* words still allowed under the per-stream limit */
} te_prf_stream;

te_status te_prf_stream_open(te_prf_stream *s, const uint8_t key[TE_KEY_BYTES], uint64_t counter, uint32_t layer,
                             te_prf_purpose purpose, te_err *err);
/* The next n 64-bit words of the stream (unreduced). */
te_status te_prf_stream_read(te_prf_stream *s, uint64_t *out, size_t n, te_err *err);
void te_prf_stream_close(te_prf_stream *s);

/* Fill buf with n bytes from the OS CSPRNG (OpenSSL RAND_bytes). */
te_status te_random_bytes(uint8_t *buf, size_t n, te_err *err);

#endif
