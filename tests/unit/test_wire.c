/* te_wire_read_response reads a LayerResponse in place: it must decide
 * exactly as protobuf-c's unpack followed by te_unpack does (the reader it
 * replaced, written out again below as the reference), on well-formed
 * responses, error responses and a large set of damaged and random ones. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "te_ring.h"
#include "te_wire.h"
#include "wire.pb-c.h"

static uint64_t rnd(uint64_t *s)
{
    uint64_t z = (*s += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

/* The reference: protobuf-c's unpack, then te_unpack of the data field. */
static te_status ref_read(const uint8_t *buf, size_t len, size_t n, unsigned l, uint64_t *out, te_err *err)
{
    Twinedge__LayerResponse *r = twinedge__layer_response__unpack(NULL, len, buf);
    if (!r)
        return te_errf(err, TE_EFORMAT, "EdgeA sent a malformed response");
    te_status st = TE_OK;
    if (r->status != TE_OK) {
        te_status code = r->status == TE_EAUTH || r->status == TE_EINTEGRITY ? (te_status)r->status : TE_ESERVER;
        st = te_errf(err, code, "EdgeA: %s", r->error && *r->error ? r->error : "error");
    } else if (te_unpack(r->data.data, r->data.len, n, l, out, err) != TE_OK) {
        st = te_errf(err, TE_EINTEGRITY, "EdgeA returned a malformed result for layer 3 (%zu bytes for %zu elements "
                     "of %u bits)", r->data.len, n, l);
    }
    twinedge__layer_response__free_unpacked(r, NULL);
    return st;
}

/* Both readers on buf: same status, same message, same elements. */
static void same_verdict(const uint8_t *buf, size_t len, size_t n, unsigned l, int *ok_count)
{
    uint64_t a[64], b[64];
    te_err ea, eb;
    memset(a, 0, sizeof a);
    memset(b, 0, sizeof b);
    te_status sa = ref_read(buf, len, n, l, a, &ea);
    te_status sb = te_wire_read_response(buf, len, "EdgeA", 3, n, l, b, &eb);
    assert_int_equal(sa, sb);
    if (sa != TE_OK) {
        assert_string_equal(ea.msg, eb.msg);
    } else {
        assert_memory_equal(a, b, n * sizeof *a);
        (*ok_count)++;
    }
}

static size_t put_varint(uint8_t *p, uint64_t v)
{
    size_t k = 0;
    do {
        p[k] = (uint8_t)(v & 0x7f);
        v >>= 7;
        if (v)
            p[k] |= 0x80;
        k++;
    } while (v);
    return k;
}

static void test_well_formed_and_errors(void **state)
{
    (void)state;
    uint64_t s = 1, want[40], got[40];
    const unsigned l = 13;
    for (int i = 0; i < 40; i++)
        want[i] = rnd(&s) & te_ring_mask(l);
    uint8_t packed[8 * 13];
    te_pack(want, 40, l, packed);
    uint8_t *msg = NULL;
    size_t len = 0;
    te_err err;
    assert_int_equal(te_wire_write_response(TE_OK, NULL, packed, te_pack_bytes(40, l), &msg, &len, &err), TE_OK);
    assert_int_equal(te_wire_read_response(msg, len, "EdgeA", 3, 40, l, got, &err), TE_OK);
    assert_memory_equal(got, want, sizeof want);
    /* one element short or long: a malformed result (negative control) */
    assert_int_equal(te_wire_read_response(msg, len, "EdgeA", 3, 39, l, got, &err), TE_EINTEGRITY);
    assert_non_null(strstr(err.msg, "malformed result for layer 3"));
    assert_int_equal(te_wire_read_response(msg, len, "EdgeA", 3, 41, l, got, &err), TE_EINTEGRITY);
    /* cut anywhere inside the data field: malformed bytes */
    assert_int_equal(te_wire_read_response(msg, len - 1, "EdgeA", 3, 40, l, got, &err), TE_EFORMAT);
    free(msg);
    /* a host's error: its code where it is one the device acts on, its message */
    const te_status codes[] = {TE_EAUTH, TE_EINTEGRITY, TE_EINVAL, TE_ECOUNTER};
    const te_status want_code[] = {TE_EAUTH, TE_EINTEGRITY, TE_ESERVER, TE_ESERVER};
    for (int i = 0; i < 4; i++) {
        assert_int_equal(te_wire_write_response(codes[i], "replayed counter", NULL, 0, &msg, &len, &err), TE_OK);
        assert_int_equal(te_wire_read_response(msg, len, "EdgeB", 3, 40, l, got, &err), want_code[i]);
        assert_string_equal(err.msg, "EdgeB: replayed counter");
        free(msg);
    }
    assert_int_equal(te_wire_write_response(TE_EINVAL, NULL, NULL, 0, &msg, &len, &err), TE_OK);
    assert_int_equal(te_wire_read_response(msg, len, "EdgeB", 3, 40, l, got, &err), TE_ESERVER);
    assert_string_equal(err.msg, "EdgeB: error");
    free(msg);
}

/* Messages built from random fields (known and unknown numbers, every wire
 * type, repeated fields, huge varints, lengths past the end), then damaged
 * (cut, a byte changed): the two readers agree on every one. */
static void test_same_as_protobuf_c(void **state)
{
    (void)state;
    uint64_t s = 42;
    uint8_t buf[512];
    int ok = 0;
    for (int iter = 0; iter < 60000; iter++) {
        size_t len = 0;
        unsigned l = 1 + (unsigned)(rnd(&s) % 64);
        size_t n = (size_t)(rnd(&s) % 20);
        int fields = (int)(rnd(&s) % 5);
        for (int f = 0; f < fields && len < 400; f++) {
            uint64_t pick = rnd(&s);
            unsigned num = pick % 3 == 0 ? (unsigned)(rnd(&s) % 20) : 1 + (unsigned)(pick % 3);
            unsigned type = rnd(&s) % 4 == 0 ? (unsigned)(rnd(&s) % 8) : num == 1 ? 0 : 2;
            len += put_varint(buf + len, ((uint64_t)num << 3) | type);
            if (type == 0) {
                uint64_t v = rnd(&s) % 3 == 0 ? rnd(&s) : rnd(&s) % 8;
                len += put_varint(buf + len, num == 1 && rnd(&s) % 2 ? 0 : v);
            } else if (type == 1 || type == 5) {
                for (unsigned k = 0; k < (type == 1 ? 8u : 4u); k++)
                    buf[len++] = (uint8_t)rnd(&s);
            } else if (type == 2) {
                /* mostly the right size for n elements of l bits */
                size_t dl = rnd(&s) % 4 ? te_pack_bytes(n, l) : (size_t)(rnd(&s) % 40);
                if (dl > 100)
                    dl = 100;
                len += put_varint(buf + len, rnd(&s) % 50 == 0 ? dl + 1 + rnd(&s) % 5 : dl);
                for (size_t k = 0; k < dl; k++)
                    buf[len++] = num == 2 ? (uint8_t)('a' + rnd(&s) % 26) : (uint8_t)rnd(&s);
            }
        }
        switch (rnd(&s) % 4) {
        case 0:
            if (len)
                len = (size_t)(rnd(&s) % len);
            break;
        case 1:
            if (len)
                buf[rnd(&s) % len] ^= (uint8_t)(1u << (rnd(&s) % 8));
            break;
        default:
            break;
        }
        same_verdict(buf, len, n, l, &ok);
    }
    /* accepted results were among them, not only refusals */
    assert_true(ok > 1000);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_well_formed_and_errors),
        cmocka_unit_test(test_same_as_protobuf_c),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
