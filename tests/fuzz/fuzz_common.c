#include "fuzz_common.h"

#include <stdlib.h>
#include <string.h>

#include "te_linear.h"
#include "te_ring.h"

static void add_layer(te_model *m, const te_linear_geom *g, const char *name, uint64_t seed)
{
    te_layer L;
    memset(&L, 0, sizeof L);
    L.name = (char *)name;
    L.geom = *g;
    L.frac_bits = 12;
    L.ring_bits = 40;
    L.weight_bits = 8;
    int64_t nw = te_geom_weight_len(g), nin = te_geom_in_len(g), nout = te_geom_out_len(g);
    L.w = calloc((size_t)nw, sizeof *L.w);
    L.w_scale = calloc((size_t)g->out_c, sizeof *L.w_scale);
    L.bias = calloc((size_t)g->out_c, sizeof *L.bias);
    L.r = calloc((size_t)nout, sizeof *L.r);
    L.s = calloc((size_t)nin, sizeof *L.s);
    L.w_l1 = calloc((size_t)g->out_c, sizeof *L.w_l1);
    for (int64_t i = 0; i < nw; i++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        L.w[i] = (int32_t)((seed >> 33) % 255) - 127;
    }
    for (int64_t o = 0; o < g->out_c; o++) {
        L.w_scale[o] = 0.01f;
        L.bias[o] = 0.1f * (float)o;
    }
    for (int64_t o = 0; o < nout; o++) {
        seed = seed * 6364136223846793005ull + 1442695040888963407ull;
        L.r[o] = (seed >> 3) % TE_P61;
    }
    te_linear_transpose_fp(g, L.w, L.r, L.s);
    te_linear_row_l1(g, L.w, L.w_l1);
    te_model_add_layer(m, &L);
}

te_model *fuzz_model(void)
{
    te_model *m = te_model_new();
    memcpy(m->deployment_id, "0123456789abcdef0123456789abcdef", 33);
    m->name = strdup("fuzz");
    te_shape s_in = {4, {1, 2, 5, 5}}, s_c = {4, {1, 3, 5, 5}}, s_f = {2, {1, 75}}, s_out = {2, {1, 4}};
    int x = te_model_add_value(m, "input", &s_in, NULL);
    int c = te_model_add_value(m, "conv", &s_c, NULL);
    int r = te_model_add_value(m, "relu", &s_c, NULL);
    int f = te_model_add_value(m, "flat", &s_f, NULL);
    int y = te_model_add_value(m, "output", &s_out, NULL);
    te_linear_geom conv = {.kind = TE_LIN_CONV, .batch = 1, .in_c = 2, .in_h = 5, .in_w = 5, .out_c = 3,
                           .out_h = 5, .out_w = 5, .k_h = 3, .k_w = 3, .stride_h = 1, .stride_w = 1,
                           .pad_t = 1, .pad_l = 1, .pad_b = 1, .pad_r = 1, .dil_h = 1, .dil_w = 1, .group = 1};
    te_linear_geom fc = {.kind = TE_LIN_FC, .batch = 1, .in_c = 75, .in_h = 1, .in_w = 1, .out_c = 4, .out_h = 1,
                         .out_w = 1, .k_h = 1, .k_w = 1, .stride_h = 1, .stride_w = 1, .dil_h = 1, .dil_w = 1,
                         .group = 1};
    add_layer(m, &conv, "conv", 1);
    add_layer(m, &fc, "fc", 2);
    int in0[1];
    te_node n;
    memset(&n, 0, sizeof n);
    n.n_in = 1;
    n.in = in0;
    in0[0] = x, n.out = c, n.op = TE_OP_LINEAR, n.layer = 0, n.name = "conv";
    te_model_add_node(m, &n);
    in0[0] = c, n.out = r, n.op = TE_OP_RELU, n.name = "relu";
    te_model_add_node(m, &n);
    in0[0] = r, n.out = f, n.op = TE_OP_RESHAPE, n.name = "flatten";
    te_model_add_node(m, &n);
    in0[0] = f, n.out = y, n.op = TE_OP_LINEAR, n.layer = 1, n.name = "fc";
    te_model_add_node(m, &n);
    m->input = x;
    m->output = y;
    return m;
}

void fuzz_key(const te_model *m, te_device_key *k)
{
    memset(k, 0, sizeof *k);
    strcpy(k->device_id, FUZZ_DEVICE);
    memcpy(k->deployment_id, m->deployment_id, 33);
    for (int i = 0; i < TE_KEY_BYTES; i++)
        k->key[i] = (uint8_t)(i * 7 + 1);
}
