/* An example IoT app: classify one camera frame privately through EdgeA and
 * EdgeB and print the top-1 class.
 *
 *   twinedge-camera-app DEVICE_DIR EDGE_A_HOST:PORT EDGE_B_HOST:PORT FRAME.npy
 *
 * DEVICE_DIR comes from `twinedge-owner provision ... -o DEVICE_DIR`; the
 * frame is a float32 .npy with as many elements as the model's input. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "te_npy.h"
#include "twinedge_device.h"
#include "twinedge_net.h"

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: %s DEVICE_DIR EDGE_A EDGE_B FRAME.npy\n", argv[0]);
        return 2;
    }
    te_shape shape;
    float *frame = NULL, *scores = NULL;
    te_err err;
    if (te_npy_read(argv[4], &shape, &frame, &err) != TE_OK) {
        fprintf(stderr, "camera: %s\n", err.msg);
        return 1;
    }
    int rc = 1;
    twinedge_device *dev = NULL;
    twinedge_net *net = NULL;
    char tls[4096];
    snprintf(tls, sizeof tls, "%s/tls", argv[1]);
    if (twinedge_open(argv[1], &dev) != TWINEDGE_OK) {
        fprintf(stderr, "camera: %s\n", twinedge_errmsg(dev));
        goto out;
    }
    if (twinedge_connect(dev, argv[2], argv[3], tls, 10000, &net) != TWINEDGE_OK) {
        fprintf(stderr, "camera: %s\n", twinedge_net_errmsg(net));
        goto out;
    }
    int64_t dims[8];
    int nd = 0;
    twinedge_output_shape(dev, dims, &nd);
    size_t n_out = 1;
    for (int i = 0; i < nd; i++)
        n_out *= (size_t)dims[i];
    if (!(scores = malloc(n_out * sizeof *scores)))
        goto out;
    if (twinedge_infer(dev, TWINEDGE_RELAY, frame, (size_t)te_shape_numel(&shape), scores, n_out) != TWINEDGE_OK) {
        fprintf(stderr, "camera: %s\n", twinedge_errmsg(dev));
        goto out;
    }
    size_t best = 0;
    for (size_t k = 1; k < n_out; k++)
        if (scores[k] > scores[best])
            best = k;
    twinedge_net_stats st;
    twinedge_net_get_stats(net, &st);
    printf("top-1: class %zu (score %.4f); sent %llu B, received %llu B\n", best, (double)scores[best],
           (unsigned long long)st.bytes_up, (unsigned long long)st.bytes_down);
    rc = 0;
out:
    twinedge_close(dev);
    twinedge_disconnect(net);
    free(frame);
    free(scores);
    return rc;
}
