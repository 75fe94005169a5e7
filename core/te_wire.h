/* Reading the hosts' answers (proto/wire.proto), shared by the device and
 * by EdgeA reading EdgeB's relay share. */
#ifndef TE_WIRE_H
#define TE_WIRE_H

#include <stddef.h>
#include <stdint.h>
#include "te_error.h"

/* Parse a serialized LayerResponse that must carry n elements of l bits for
 * linear layer `layer` into out.  `who` names the sender in messages.
 * - malformed bytes: TE_EFORMAT;
 * - an error status: the host's message, as TE_EAUTH or TE_EINTEGRITY when
 *   the host said so, else TE_ESERVER;
 * - a result of the wrong size or with non-zero padding: TE_EINTEGRITY (a
 *   short, long or garbled result is a faulty result). */
te_status te_wire_read_response(const uint8_t *buf, size_t len, const char *who, uint32_t layer, size_t n,
                                unsigned l, uint64_t *out, te_err *err);

#endif
