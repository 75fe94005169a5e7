/* twinedge device SDK: private inference from an IoT application.
 *
 *     twinedge_device *dev;
 *     if (twinedge_open("/etc/myapp/device", &dev) != TWINEDGE_OK) {
 *         fprintf(stderr, "%s\n", twinedge_errmsg(dev));  // dev may be NULL: "out of memory"
 *         ...
 *     }
 *     twinedge_connect(dev, ...);   // twinedge_net.h; or twinedge_set_transport()
 *     twinedge_infer(dev, TWINEDGE_RELAY, input, n_in, output, n_out);
 *     twinedge_close(dev);
 *
 * A handle holds everything (no global state), so one process can drive
 * several devices.  Calls to twinedge_infer on one handle are serialised
 * (a second thread waits).  Each handle masks under its own random session
 * (drawn again in a forked child), so any number of handles, threads and
 * processes may use one device directory at once; the directory is only
 * read, never written.
 * Every linear layer's result is verified before it is used; an inference
 * that fails returns an error and writes nothing to the output buffer. */
#ifndef TWINEDGE_DEVICE_H
#define TWINEDGE_DEVICE_H

#include <stddef.h>
#include <stdint.h>

#include "twinedge_version.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Functions the shared library exports (everything else in it is hidden). */
#if defined(__GNUC__) || defined(__clang__)
#define TWINEDGE_API __attribute__((visibility("default")))
#else
#define TWINEDGE_API
#endif

/* The library's version, "MAJOR.MINOR.PATCH"; compare with
 * TWINEDGE_VERSION_STRING to see the header and the library agree. */
TWINEDGE_API const char *twinedge_version(void);

/* Status codes (the library checks at compile time that they equal its
 * internal ones). */
enum {
    TWINEDGE_OK = 0,
    TWINEDGE_EINVAL = 1,
    TWINEDGE_ENOMEM = 2,
    TWINEDGE_EIO = 3,
    TWINEDGE_EFORMAT = 4,
    TWINEDGE_EUNSUPPORTED = 5,
    TWINEDGE_ESHAPE = 6,
    TWINEDGE_EINTEGRITY = 7,  /* a host's result failed verification; nothing returned */
    TWINEDGE_EOVERFLOW = 8,
    TWINEDGE_ETRANSPORT = 9,  /* host unreachable or timed out */
    TWINEDGE_EAUTH = 10,      /* credentials refused / device unknown to EdgeB */
    TWINEDGE_EPLUGIN = 11,
    TWINEDGE_ECOUNTER = 12,   /* a host refused a request counter already used (replay guard) */
    TWINEDGE_ESERVER = 13     /* a host reported an error */
};

typedef enum twinedge_mode {
    TWINEDGE_RELAY = 0,    /* EdgeB's share reaches the device through EdgeA */
    TWINEDGE_MEDIATED = 1  /* the device asks both hosts and combines */
} twinedge_mode;

typedef struct twinedge_device twinedge_device;

/* Open a provisioned device directory (device.bundle, device.key; both must
 * be readable by their owner only). */
TWINEDGE_API int twinedge_open(const char *device_dir, twinedge_device **dev);
TWINEDGE_API void twinedge_close(twinedge_device *dev);

/* How requests reach the hosts, for an app that brings its own channel
 * (twinedge_connect() in twinedge_net.h is the SDK's gRPC one).  A message
 * is a serialized twinedge.LayerRequest / LayerResponse (proto/wire.proto):
 * carry the bytes unchanged to the host named by `to` and back.  The
 * verification does not trust the channel: a host or channel that alters a
 * result makes the inference fail with TWINEDGE_EINTEGRITY. */
typedef enum twinedge_party {
    TWINEDGE_EDGE_A = 0,
    TWINEDGE_EDGE_B = 1
} twinedge_party;

typedef struct twinedge_transport {
    /* sizeof(twinedge_transport) as the app was compiled: later versions
     * add members at the end and read only what the app's struct has. */
    size_t struct_size;
    void *ctx; /* handed to every callback */
    /* One request, one response.  Set *resp to a buffer from malloc()
     * (the SDK frees it) and *resp_len; return TWINEDGE_OK, or
     * TWINEDGE_ETRANSPORT (unreachable, timed out) / TWINEDGE_EAUTH with a
     * message written into msg (msg_cap bytes, NUL-terminated).  Required. */
    int (*call)(void *ctx, twinedge_party to, const uint8_t *req, size_t req_len, uint8_t **resp,
                size_t *resp_len, char *msg, size_t msg_cap);
    /* Optional (NULL: nothing to do): one inference's calls start / have
     * ended, e.g. to keep one stream per host open for an inference. */
    int (*begin)(void *ctx, char *msg, size_t msg_cap);
    void (*end)(void *ctx);
    /* Optional (NULL: call() to EdgeA, then call() to EdgeB).  The two
     * requests of a layer in device-mediated mode, req[0] to EdgeA and
     * req[1] to EdgeB: send both at once and return once both have
     * answered, so that a layer costs one round trip instead of two.  Set
     * resp[0], resp[1] (malloc(); the SDK frees them, also after a failure)
     * and their lengths, and return as call() does; on failure also set
     * *failed to the host whose call failed. */
    int (*call_pair)(void *ctx, const uint8_t *const req[2], const size_t req_len[2], uint8_t *resp[2],
                     size_t resp_len[2], twinedge_party *failed, char *msg, size_t msg_cap);
} twinedge_transport;

/* Route dev's requests through t (copied; t->ctx must outlive dev's use of
 * it).  Replaces any transport attached before. */
TWINEDGE_API int twinedge_set_transport(twinedge_device *dev, const twinedge_transport *t);

/* Model input / output shapes (ndim <= 8). */
TWINEDGE_API int twinedge_input_shape(const twinedge_device *dev, int64_t dims[8], int *ndim);
TWINEDGE_API int twinedge_output_shape(const twinedge_device *dev, int64_t dims[8], int *ndim);

/* Models with several outputs (a detector's boxes and scores): outputs are
 * numbered 0 .. count-1 in the model's order.  twinedge_output_shape and
 * twinedge_infer's output buffer are output 0; after a successful
 * twinedge_infer, twinedge_output_get copies output k of that inference
 * (n: its element count, the product of twinedge_output_shape_at's dims;
 * TWINEDGE_EINVAL before a successful inference or after a failed one).
 * A model with one output has count 1.  A data-dependent output (the
 * selected boxes of NonMaxSuppression, [num_selected, 3], or what the
 * model computes from them, e.g. the kept boxes [num_selected, 4]) has its
 * largest shape before an inference, which sizes the buffers, and that
 * inference's shape after it (twinedge_infer zeroes output 0's unused rows). */
TWINEDGE_API int twinedge_output_count(const twinedge_device *dev, int *count);
TWINEDGE_API int twinedge_output_shape_at(const twinedge_device *dev, int k, int64_t dims[8], int *ndim);
TWINEDGE_API int twinedge_output_get(twinedge_device *dev, int k, float *out, size_t n);

/* One private inference.  n_in / n_out are element counts. */
TWINEDGE_API int twinedge_infer(twinedge_device *dev, twinedge_mode mode, const float *input, size_t n_in,
                                float *output, size_t n_out);

/* Figures about the last inference. */
typedef struct twinedge_report {
    uint64_t counter;          /* request counter t within the handle's session */
    int linear_layers;         /* linear layers outsourced */
    int layers_checked;        /* integrity checks that passed */
    int widened_layers;        /* layers run at 64 bits: this input could have overflowed their calibrated ring */
    uint64_t bytes_up;         /* bytes the device sent (message payloads) */
    uint64_t bytes_down;
} twinedge_report;
TWINEDGE_API int twinedge_last_report(const twinedge_device *dev, twinedge_report *r);

/* Called before each outsourced layer (progress, tests). */
typedef void (*twinedge_layer_hook)(void *ctx, int layer, uint64_t counter);
TWINEDGE_API void twinedge_set_layer_hook(twinedge_device *dev, twinedge_layer_hook fn, void *ctx);

/* The last error's code and message ("" when none).  dev may be NULL. */
TWINEDGE_API int twinedge_errcode(const twinedge_device *dev);
TWINEDGE_API const char *twinedge_errmsg(const twinedge_device *dev);

#ifdef __cplusplus
}
#endif
#endif
