/* te-attack-bundle: what the adversarial tests need from device bundles.
 *
 *   te-attack-bundle layers BUNDLE          one line per linear layer:
 *                                           INDEX RING_BITS OUT_LEN NAME
 *   te-attack-bundle share-r VICTIM OTHER   rewrite VICTIM with OTHER's
 *                                           integrity keys (every layer's r
 *                                           and s): the old per-deployment
 *                                           keys, the lattice attack's
 *                                           negative control
 *   te-attack-bundle same-r A B             prints "same" (exit 0) when every
 *                                           layer's r is equal, else
 *                                           "different" (exit 1)
 * Errors exit 2. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "te_bundle.h"

static int die(const char *what, const te_err *err)
{
    fprintf(stderr, "te-attack-bundle: %s: %s\n", what, err ? err->msg : "");
    return 2;
}

static int same_keys(const te_model *a, const te_model *b, int *same)
{
    if (a->n_layers != b->n_layers)
        return -1;
    *same = 1;
    for (int i = 0; i < a->n_layers; i++) {
        int64_t n = te_geom_out_len(&a->layers[i].geom);
        if (n != te_geom_out_len(&b->layers[i].geom) || !a->layers[i].r || !b->layers[i].r)
            return -1;
        if (memcmp(a->layers[i].r, b->layers[i].r, (size_t)n * sizeof *a->layers[i].r) != 0)
            *same = 0;
    }
    return 0;
}

int main(int argc, char **argv)
{
    te_err err;
    te_model *a = NULL, *b = NULL;
    int rc = 2;
    if (argc == 3 && strcmp(argv[1], "layers") == 0) {
        if (te_device_bundle_read(argv[2], &a, &err) != TE_OK)
            return die(argv[2], &err);
        for (int i = 0; i < a->n_layers; i++)
            printf("%d %d %lld %s\n", i, a->layers[i].ring_bits, (long long)te_geom_out_len(&a->layers[i].geom),
                   a->layers[i].name ? a->layers[i].name : "?");
        rc = 0;
    } else if (argc == 4 && (strcmp(argv[1], "share-r") == 0 || strcmp(argv[1], "same-r") == 0)) {
        int same = 0;
        if (te_device_bundle_read(argv[2], &a, &err) != TE_OK) {
            rc = die(argv[2], &err);
        } else if (te_device_bundle_read(argv[3], &b, &err) != TE_OK) {
            rc = die(argv[3], &err);
        } else if (same_keys(a, b, &same) != 0) {
            rc = die("the two bundles are not of the same deployment's layers", NULL);
        } else if (strcmp(argv[1], "same-r") == 0) {
            puts(same ? "same" : "different");
            rc = same ? 0 : 1;
        } else {
            for (int i = 0; i < a->n_layers; i++) { /* take b's keys over */
                uint64_t *r = a->layers[i].r, *s = a->layers[i].s;
                a->layers[i].r = b->layers[i].r;
                a->layers[i].s = b->layers[i].s;
                b->layers[i].r = r;
                b->layers[i].s = s;
            }
            rc = te_device_bundle_write(argv[2], a, &err) == TE_OK ? 0 : die(argv[2], &err);
        }
    } else {
        fprintf(stderr, "usage: te-attack-bundle layers BUNDLE | share-r VICTIM OTHER | same-r A B\n");
    }
    te_model_free(a);
    te_model_free(b);
    return rc;
}
