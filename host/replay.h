/* The hosts' replay guard: defence in depth behind the device's session
 * nonces (docs/protocol.md).  A host serves each (deployment, device,
 * session, counter, layer) at most once, and within a session never goes
 * back to an older counter: a device mishap that repeated a mask would be
 * refused by an honest host before its second masked input is used.
 *
 * It lives in memory and remembers at most `max_sessions` sessions (the
 * least recently used go first), so it does not survive a host restart and
 * does not replace the nonces; it is thread-safe. */
#ifndef TE_REPLAY_H
#define TE_REPLAY_H

#include <stddef.h>
#include <stdint.h>
#include "te_error.h"
#include "te_prf.h"

typedef struct te_replay te_replay;

te_status te_replay_new(size_t max_sessions, te_replay **r, te_err *err);
void te_replay_free(te_replay *r);

/* Admit (session, counter, layer) of a device, or refuse it with TE_ECOUNTER
 * when it was served before or its session has moved past the counter. */
te_status te_replay_admit(te_replay *r, const char *deployment, const char *device,
                          const uint8_t session[TE_SESSION_BYTES], uint64_t counter, uint32_t layer, te_err *err);

#endif
