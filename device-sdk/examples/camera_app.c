/* An example IoT app: classify one camera frame privately through EdgeA and
 * EdgeB and print the top-1 class.
 *
 *   twinedge-camera-app DEVICE_DIR EDGE_A_HOST:PORT EDGE_B_HOST:PORT FRAME.npy [SCORES.npy]
 *
 * DEVICE_DIR comes from `twinedge-owner provision ... -o DEVICE_DIR`; the
 * frame is a little-endian float32 .npy with as many elements as the
 * model's input.  With SCORES.npy the scores are also written there.
 *
 * It uses the installed SDK only (twinedge_device.h, twinedge_net.h):
 *   cc camera_app.c $(pkg-config --cflags --libs twinedge-device) */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <twinedge_device.h>
#include <twinedge_net.h>

/* Read a float32 .npy (format 1.0-3.0, C order): *n elements into *data. */
static int read_npy_f32(const char *path, float **data, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    unsigned char pre[12];
    char hdr[4096];
    int ok = 0;
    size_t hlen = 0;
    *data = NULL;
    if (fread(pre, 1, 10, f) == 10 && memcmp(pre, "\x93NUMPY", 6) == 0) {
        if (pre[6] == 1) {
            hlen = (size_t)pre[8] | (size_t)pre[9] << 8;
        } else if (fread(pre + 10, 1, 2, f) == 2) {
            hlen = (size_t)pre[8] | (size_t)pre[9] << 8 | (size_t)pre[10] << 16 | (size_t)pre[11] << 24;
        }
        ok = hlen > 0 && hlen < sizeof hdr && fread(hdr, 1, hlen, f) == hlen;
    }
    if (ok) {
        hdr[hlen] = '\0';
        const char *shape = strstr(hdr, "'shape':");
        ok = strstr(hdr, "'descr': '<f4'") && strstr(hdr, "'fortran_order': False") && shape;
        *n = 1;
        for (const char *c = ok ? strchr(shape, '(') : NULL; c && *c && *c != ')'; c++)
            if (*c >= '0' && *c <= '9') {
                char *end;
                *n *= (size_t)strtoull(c, &end, 10);
                c = end - 1;
            }
    }
    if (ok && (*data = malloc(*n * sizeof **data)) != NULL && fread(*data, sizeof **data, *n, f) == *n) {
        fclose(f);
        return 0;
    }
    free(*data);
    *data = NULL;
    fclose(f);
    return -1;
}

/* Write n float32 as a one-dimensional .npy. */
static int write_npy_f32(const char *path, const float *data, size_t n)
{
    char hdr[128];
    int len = snprintf(hdr, sizeof hdr, "{'descr': '<f4', 'fortran_order': False, 'shape': (%zu,), }", n);
    int pad = 64 - (10 + len + 1) % 64; /* header padded to 64 bytes, ending in '\n' */
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    unsigned total = (unsigned)(len + pad + 1);
    unsigned char pre[10] = {0x93, 'N', 'U', 'M', 'P', 'Y', 1, 0, (unsigned char)total, (unsigned char)(total >> 8)};
    int ok = fwrite(pre, 1, 10, f) == 10 && fwrite(hdr, 1, (size_t)len, f) == (size_t)len;
    for (int i = 0; ok && i < pad; i++)
        ok = fputc(' ', f) != EOF;
    ok = ok && fputc('\n', f) != EOF && fwrite(data, sizeof *data, n, f) == n;
    return fclose(f) == 0 && ok ? 0 : -1;
}

int main(int argc, char **argv)
{
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: %s DEVICE_DIR EDGE_A EDGE_B FRAME.npy [SCORES.npy]\n", argv[0]);
        return 2;
    }
    if (strcmp(twinedge_version(), TWINEDGE_VERSION_STRING) != 0)
        fprintf(stderr, "camera: built against twinedge %s, running with %s\n", TWINEDGE_VERSION_STRING,
                twinedge_version());
    float *frame = NULL, *scores = NULL;
    size_t n_in = 0;
    if (read_npy_f32(argv[4], &frame, &n_in) != 0) {
        fprintf(stderr, "camera: %s is not a readable float32 .npy file\n", argv[4]);
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
    if (twinedge_infer(dev, TWINEDGE_RELAY, frame, n_in, scores, n_out) != TWINEDGE_OK) {
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
    if (argc == 6 && write_npy_f32(argv[5], scores, n_out) != 0) {
        fprintf(stderr, "camera: cannot write %s\n", argv[5]);
        goto out;
    }
    rc = 0;
out:
    twinedge_close(dev);
    twinedge_disconnect(net);
    free(frame);
    free(scores);
    return rc;
}
