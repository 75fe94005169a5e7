#include "te_wire.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "te_ring.h"
#include "wire.pb-c.h"

te_status te_wire_read_response(const uint8_t *buf, size_t len, const char *who, uint32_t layer, size_t n,
                                unsigned l, uint64_t *out, te_err *err)
{
    Twinedge__LayerResponse *r = twinedge__layer_response__unpack(NULL, len, buf);
    if (!r)
        return te_errf(err, TE_EFORMAT, "%s sent a malformed response", who);
    te_status st = TE_OK;
    if (r->status != TE_OK) {
        te_status code = r->status == TE_EAUTH || r->status == TE_EINTEGRITY ? (te_status)r->status : TE_ESERVER;
        st = te_errf(err, code, "%s: %s", who, r->error && *r->error ? r->error : "error");
    } else if (te_unpack(r->data.data, r->data.len, n, l, out, err) != TE_OK) {
        st = te_errf(err, TE_EINTEGRITY, "%s returned a malformed result for layer %u (%zu bytes for %zu elements "
                     "of %u bits)", who, layer, r->data.len, n, l);
    }
    twinedge__layer_response__free_unpacked(r, NULL);
    return st;
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
