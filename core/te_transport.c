#include "te_transport.h"

void te_traffic_add(te_traffic *t, int from_edge_a, te_party to, size_t req_len, size_t resp_len)
{
    if (!t)
        return;
    t->messages++;
    if (from_edge_a) {
        t->edge_a_out += req_len;
        t->edge_b_in += req_len;
        t->edge_b_out += resp_len;
        t->edge_a_in += resp_len;
        return;
    }
    t->device_up += req_len;
    t->device_down += resp_len;
    if (to == TE_PARTY_EDGE_A) {
        t->edge_a_in += req_len;
        t->edge_a_out += resp_len;
    } else {
        t->edge_b_in += req_len;
        t->edge_b_out += resp_len;
    }
}
