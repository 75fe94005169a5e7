/* Keystream made ahead: while the device waits for a host, a worker thread
 * generates the PRF words it will need next (the next layer's mask M, this
 * layer's Z in relay mode), so they are off the path between the host's
 * answer and the next request.
 *
 * Nothing here changes which words are used.  A slot is taken only for the
 * exact (K_s, t, layer, purpose) it was made for, and at most once; anything
 * else (a different layer ran next, a new session, a failed generation, a
 * forked child, no thread to be had) makes the caller open the ordinary
 * stream, which gives the same words. */
#ifndef TE_PREFETCH_H
#define TE_PREFETCH_H

#include <stddef.h>
#include <stdint.h>

#include "te_prf.h"

enum { TE_PREFETCH_Z = 0, TE_PREFETCH_M = 1, TE_PREFETCH_SLOTS = 2 };

typedef struct te_prefetch te_prefetch;

/* A worker thread and its slots, or NULL (out of memory, no thread): the
 * functions below accept NULL and then do nothing. */
te_prefetch *te_prefetch_new(void);
/* Stops the worker, wipes and frees the slots. */
void te_prefetch_free(te_prefetch *p);

/* Have slot generate the first n words of the stream (key, t, layer,
 * purpose), replacing what it held (after any generation under way). */
void te_prefetch_post(te_prefetch *p, int slot, const uint8_t key[TE_KEY_BYTES], uint64_t t, uint32_t layer,
                      te_prf_purpose purpose, size_t n);

/* If slot was posted with exactly (key, t, layer, purpose) and at least n
 * words, wait for them and open s over the first n (1); else 0 and s is
 * untouched.  The slot is spent either way; s stays valid until the slot's
 * next post. */
int te_prefetch_take(te_prefetch *p, int slot, const uint8_t key[TE_KEY_BYTES], uint64_t t, uint32_t layer,
                     te_prf_purpose purpose, size_t n, te_prf_stream *s);

#endif
