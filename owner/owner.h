/* The model owner's tool as a library: compile an ONNX model into a
 * deployment (device.bundle + edge.bundle) and provision devices.
 * Used by twinedge-owner and, in-process, by twinedge-run. */
#ifndef TE_OWNER_H
#define TE_OWNER_H

#include "te_error.h"
#include "te_model.h"
#include "onnx_import.h"
#include "fuse.h"

/* How each layer's weight and activation bits are chosen (with calibration
 * data; without it every layer takes weight_bits and the default frac/ring bits). */
typedef enum te_precision {
    TE_PREC_AUTO = 0, /* by measurement: per layer the fewest bits, up to weight_bits / act_bits, that keep
                       * the fixed-point output's cosine to the float model's >= min_cosine (owner/precision.h) */
    TE_PREC_FIXED,    /* weight_bits and act_bits for every layer */
} te_precision;

typedef struct te_owner_options {
    int weight_bits;       /* signed bits of the integer weights (default 16, 2..24; auto: the most) */
    int act_bits;          /* calibration: bits for the largest |x| of a layer (default 16, 1..40; auto: the most) */
    int precision;         /* te_precision (default TE_PREC_AUTO) */
    double min_cosine;     /* auto: the fidelity target on the calibration set (default 0.9999, in (0, 1)) */
    int headroom;          /* calibration: extra ring bits above the calibrated bound (default 1, 0..32) */
    int default_frac_bits; /* without calibration data (default 16) */
    int default_ring_bits; /* without calibration data (default 64) */
    /* Image preprocessing recorded in the deployment: x = (pixel/255 - mean[c]) / std[c].
     * n_norm = 0: none recorded (pixel/255); 1: the same for every channel;
     * else one value per input channel. */
    int n_norm;
    float mean[4], std[4];
    /* The graph input's open dimensions (issue 12): --input-shape NAME:D0,..
     * entries, else input_hint (a tensor the model will see, one sample or a
     * batch: twinedge-run's input), else the calibration data's shape. */
    int n_input_shapes;
    te_input_shape input_shapes[4];
    const te_shape *input_hint;
    /* Branch fusion (owner/fuse.h, te_fuse_mode): linear layers reading one
     * tensor become one outsourced layer (default TE_FUSE_EMBED; --no-fuse: TE_FUSE_NONE). */
    int fuse;
} te_owner_options;

void te_owner_options_init(te_owner_options *o);

/* Import, quantise, calibrate (calib_npy may be NULL) and draw the integrity
 * keys and the deployment id.  The model keeps w_float for reporting. */
te_status te_owner_build(const char *onnx_path, const char *calib_npy, const te_owner_options *opt,
                         te_model **m, te_err *err);

/* Write out_dir/device.bundle and out_dir/edge.bundle.  When out_dir does
 * not exist it appears only once both files are complete. */
te_status te_owner_write(const te_model *m, const char *out_dir, te_err *err);

/* te_owner_build + te_owner_write; on failure nothing is written. opt may be NULL. */
te_status te_owner_compile(const char *onnx_path, const char *calib_npy, const te_owner_options *opt,
                           const char *out_dir, te_err *err);

/* Device names: [A-Za-z0-9_.-]{1,63}, not "." or "..". */
int te_owner_device_name_ok(const char *name);

/* TE_EINVAL with a message when device_name is already provisioned in
 * deploy_dir or device_dir already holds a device: what twinedge-owner
 * provision refuses without --force (te_owner_provision itself replaces). */
te_status te_owner_provision_check(const char *deploy_dir, const char *device_name, const char *device_dir,
                                   te_err *err);

/* Draw a device key and write device_dir/device.bundle (a copy),
 * device_dir/device.key and deploy_dir/hosts/b/devices/<name>.key. */
te_status te_owner_provision(const char *deploy_dir, const char *device_name, const char *device_dir,
                             te_err *err);

/* Work estimate of a compiled model (see docs/owner.md for the per-op costs). */
typedef struct te_owner_report {
    int op_count[TE_OP_COUNT_];          /* device-side nodes per op (LINEAR: outsourced) */
    double op_device_flops[TE_OP_COUNT_];
    int n_conv, n_fc;
    int n_source_layers;                 /* linear layers of the ONNX model (before branch fusion) */
    int n_fused;                         /* outsourced layers that run several of them */
    double upload_elems;                 /* input elements of the outsourced calls (batch included) */
    double edge_flops;                   /* 2 * MACs * batch over linear layers (each edge) */
    double device_linear_flops;          /* encode/mask/unmask/check/decode around linear layers */
    double device_flops;                 /* all device work (non-linear ops + linear overhead) */
    double outsourcing_rate;             /* 100 * edge / (edge + device) */
} te_owner_report;

void te_owner_report_compute(const te_model *m, te_owner_report *r);

#endif
