/* The layer messages' wire code (proto/wire.proto), in one place: the
 * device's request laid out for its data to be written in place, the
 * hosts' responses written, and read (by the device, and by EdgeA reading
 * EdgeB's relay share).  Hosts decode requests once, in host/request.c. */
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

/* The same checks, without unpacking: *data points at the result's
 * te_pack_bytes(n, l) bytes inside buf, their length and padding checked
 * (for te_layer_finish_packed). */
te_status te_wire_response_data(const uint8_t *buf, size_t len, const char *who, uint32_t layer, size_t n,
                                unsigned l, const uint8_t **data, te_err *err);

struct Twinedge__LayerRequest;

/* Serialize q with a `data` field (8) of data_len bytes into *buf (grown as
 * needed, contents not kept; the caller frees it), leaving the data for
 * the caller to write in place at *data: the device encodes, masks and
 * packs straight into the message.  The bytes are those protobuf-c would
 * produce for the same message (fields in number order, so `session`,
 * field 9, after the data; an empty bytes field omitted).  q->data is
 * ignored; q is left as it was.  *len: the message's length. */
te_status te_wire_request_layout(struct Twinedge__LayerRequest *q, size_t data_len, uint8_t **buf, size_t *cap,
                                 uint8_t **data, size_t *len, te_err *err);

/* A serialized LayerResponse (malloc'd): status `code`, message msg (may
 * be NULL), data (NULL: none). */
te_status te_wire_write_response(te_status code, const char *msg, const uint8_t *data, size_t len, uint8_t **out,
                                 size_t *out_len, te_err *err);

#endif
