#include "keys.h"

#include <stdlib.h>
#include <string.h>

#include "te_linear.h"
#include "te_prf.h"
#include "te_ring.h"

te_status te_owner_random_fp(uint64_t *out, size_t n, te_err *err)
{
    uint8_t buf[512];
    size_t have = 0, pos = 0;
    for (size_t k = 0; k < n;) {
        if (pos == have) {
            te_status st = te_random_bytes(buf, sizeof buf, err);
            if (st != TE_OK)
                return st;
            have = sizeof buf;
            pos = 0;
        }
        uint64_t v;
        memcpy(&v, buf + pos, 8);
        pos += 8;
        v &= TE_P61; /* 61 uniform bits; 2^61 - 1 itself is rejected */
        if (v < TE_P61)
            out[k++] = v;
    }
    return TE_OK;
}

te_status te_owner_make_bounds(te_model *m, te_err *err)
{
    for (int i = 0; i < m->n_layers; i++) {
        te_layer *L = &m->layers[i];
        if (!L->w)
            return te_errf(err, TE_EINVAL, "layer '%s' is not quantised", L->name);
        uint64_t *l1 = calloc((size_t)L->geom.out_c, sizeof *l1);
        if (!l1)
            return te_errf(err, TE_ENOMEM, "out of memory for the bounds of layer '%s'", L->name);
        te_linear_row_l1(&L->geom, L->w, l1);
        free(L->w_l1);
        L->w_l1 = l1;
    }
    return TE_OK;
}

te_status te_owner_make_keys(te_model *m, te_err *err)
{
    for (int i = 0; i < m->n_layers; i++) {
        te_layer *L = &m->layers[i];
        if (!L->w)
            return te_errf(err, TE_EINVAL, "layer '%s' is not quantised", L->name);
        int64_t out_len = te_geom_out_len(&L->geom), in_len = te_geom_in_len(&L->geom);
        uint64_t *r = malloc((size_t)out_len * sizeof *r), *s = malloc((size_t)in_len * sizeof *s);
        if (!r || !s) {
            free(r);
            free(s);
            return te_errf(err, TE_ENOMEM, "out of memory for the integrity keys of layer '%s'", L->name);
        }
        te_status st = te_owner_random_fp(r, (size_t)out_len, err);
        if (st != TE_OK) {
            free(r);
            free(s);
            return st;
        }
        te_linear_transpose_fp(&L->geom, L->w, r, s);
        free(L->r);
        free(L->s);
        L->r = r;
        L->s = s;
    }
    return TE_OK;
}

te_status te_owner_deployment_id(char out[33], te_err *err)
{
    static const char hex[] = "0123456789abcdef";
    uint8_t b[16];
    te_status st = te_random_bytes(b, sizeof b, err);
    if (st != TE_OK)
        return st;
    for (int k = 0; k < 16; k++) {
        out[2 * k] = hex[b[k] >> 4];
        out[2 * k + 1] = hex[b[k] & 15];
    }
    out[32] = '\0';
    return TE_OK;
}
