#include "te_wire.h"

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
