#include "te_wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "te_ring.h"
#include "wire.pb-c.h"

/* One varint at buf[*i..len) (at most 10 bytes); 0 when it runs off the end
 * or is longer. */
static int get_varint(const uint8_t *buf, size_t len, size_t *i, uint64_t *v)
{
    uint64_t x = 0;
    for (unsigned k = 0; k < 10 && *i < len; k++) {
        uint8_t b = buf[(*i)++];
        x |= (uint64_t)(b & 0x7f) << (7 * k);
        if (!(b & 0x80)) {
            *v = x;
            return 1;
        }
    }
    return 0;
}

/* A LayerResponse's fields, read in place (the data stays in buf): the
 * values protobuf-c's unpack gives (the last of a repeated field, unknown
 * fields skipped, uint32 the low 32 bits), and the same refusals (a field
 * of the wrong wire type, groups, field 0, anything cut short), without
 * copying the result into a message first.  0 when malformed. */
typedef struct wire_response {
    uint32_t status;
    const uint8_t *error, *data;
    size_t error_len, data_len;
} wire_response;

static int parse_response(const uint8_t *buf, size_t len, wire_response *r)
{
    memset(r, 0, sizeof *r);
    size_t i = 0;
    while (i < len) {
        uint64_t key, v;
        if (!get_varint(buf, len, &i, &key) || key >> 3 == 0 || key >> 3 > UINT32_MAX)
            return 0;
        uint64_t field = key >> 3;
        unsigned type = (unsigned)(key & 7);
        switch (type) {
        case 0: /* varint */
            if (!get_varint(buf, len, &i, &v) || (field == 2 || field == 3))
                return 0;
            if (field == 1)
                r->status = (uint32_t)v;
            break;
        case 1: /* 64-bit */
        case 5: /* 32-bit */
            if (field <= 3 || len - i < (type == 1 ? 8u : 4u))
                return 0;
            i += type == 1 ? 8 : 4;
            break;
        case 2: /* length-delimited */
            if (!get_varint(buf, len, &i, &v) || v > len - i || field == 1)
                return 0;
            if (field == 2)
                r->error = buf + i, r->error_len = (size_t)v;
            else if (field == 3)
                r->data = buf + i, r->data_len = (size_t)v;
            i += (size_t)v;
            break;
        default: /* groups (3, 4) and the unused types */
            return 0;
        }
    }
    return 1;
}

te_status te_wire_response_data(const uint8_t *buf, size_t len, const char *who, uint32_t layer, size_t n,
                                unsigned l, const uint8_t **data, te_err *err)
{
    *data = NULL;
    wire_response r;
    if (!parse_response(buf, len, &r))
        return te_errf(err, TE_EFORMAT, "%s sent a malformed response", who);
    if (r.status != TE_OK) {
        te_status code = r.status == TE_EAUTH || r.status == TE_EINTEGRITY ? (te_status)r.status : TE_ESERVER;
        /* the message up to its first NUL, as a C string of it would read */
        size_t ml = r.error ? strnlen((const char *)r.error, r.error_len) : 0;
        return ml ? te_errf(err, code, "%s: %.*s", who, (int)(ml > TE_ERR_MSG_MAX ? TE_ERR_MSG_MAX : ml),
                            (const char *)r.error)
                  : te_errf(err, code, "%s: error", who);
    }
    /* te_unpack's checks: the exact length, and zero bits after the last
     * element (all of them in the last byte) */
    unsigned used = l >= 1 && l <= 64 ? (unsigned)(((uint64_t)(n % 8) * l) % 8) : 0;
    if (l < 1 || l > 64 || r.data_len != te_pack_bytes(n, l) ||
        (used && r.data_len && (r.data[r.data_len - 1] >> used) != 0))
        return te_errf(err, TE_EINTEGRITY, "%s returned a malformed result for layer %u (%zu bytes for %zu elements "
                       "of %u bits)", who, layer, r.data_len, n, l);
    *data = r.data;
    return TE_OK;
}

te_status te_wire_read_response(const uint8_t *buf, size_t len, const char *who, uint32_t layer, size_t n,
                                unsigned l, uint64_t *out, te_err *err)
{
    const uint8_t *data;
    te_status st = te_wire_response_data(buf, len, who, layer, n, l, &data, err);
    if (st != TE_OK)
        return st;
    if (te_unpack(data, te_pack_bytes(n, l), n, l, out, err) != TE_OK)
        return te_errf(err, TE_EINTEGRITY, "%s returned a malformed result for layer %u (%zu bytes for %zu elements "
                       "of %u bits)", who, layer, te_pack_bytes(n, l), n, l);
    return TE_OK;
}

/* Append the header of field `field` (length-delimited, len bytes) to tag. */
static size_t bytes_tag(uint8_t *tag, unsigned field, size_t len)
{
    size_t tl = 0;
    tag[tl++] = (uint8_t)((field << 3) | 2u);
    do {
        uint8_t byte = (uint8_t)(len & 0x7f);
        len >>= 7;
        tag[tl++] = (uint8_t)(byte | (len ? 0x80 : 0));
    } while (len);
    return tl;
}

te_status te_wire_request_layout(Twinedge__LayerRequest *q, size_t data_len, uint8_t **buf, size_t *cap,
                                 uint8_t **data, size_t *len, te_err *err)
{
    ProtobufCBinaryData session = q->session, dq = q->data;
    q->data.data = NULL;
    q->data.len = 0;
    q->session.data = NULL;
    q->session.len = 0;
    size_t head = twinedge__layer_request__get_packed_size(q);
    uint8_t tag[1 + 10], stag[1 + 10];
    size_t tl = data_len ? bytes_tag(tag, 8, data_len) : 0;
    size_t sl = session.len ? bytes_tag(stag, 9, session.len) : 0;
    *len = head + tl + data_len + sl + session.len;
    if (*len + 1 > *cap || !*buf) {
        size_t want = *len + 1 > *cap * 2 ? *len + 1 : *cap * 2;
        free(*buf);
        *buf = malloc(want);
        *cap = *buf ? want : 0;
        if (!*buf) {
            q->session = session;
            q->data = dq;
            return te_errf(err, TE_ENOMEM, "out of memory");
        }
    }
    twinedge__layer_request__pack(q, *buf);
    memcpy(*buf + head, tag, tl);
    *data = *buf + head + tl;
    memcpy(*data + data_len, stag, sl);
    if (session.len)
        memcpy(*data + data_len + sl, session.data, session.len);
    q->session = session;
    q->data = dq;
    return TE_OK;
}

te_status te_wire_write_response(te_status code, const char *msg, const uint8_t *data, size_t len, uint8_t **out,
                                 size_t *out_len, te_err *err)
{
    Twinedge__LayerResponse r = TWINEDGE__LAYER_RESPONSE__INIT;
    r.status = (uint32_t)code;
    r.error = (char *)(msg ? msg : "");
    r.data.data = (uint8_t *)data;
    r.data.len = data ? len : 0;
    size_t n = twinedge__layer_response__get_packed_size(&r);
    *out = malloc(n ? n : 1);
    if (!*out)
        return te_errf(err, TE_ENOMEM, "out of memory");
    *out_len = twinedge__layer_response__pack(&r, *out);
    return TE_OK;
}
