/* ONNX -> te_model import (owner tool). */
#ifndef TE_ONNX_IMPORT_H
#define TE_ONNX_IMPORT_H

#include "te_error.h"
#include "te_model.h"

/* Largest ONNX file the importer reads. */
#define TE_ONNX_MAX_FILE ((size_t)2 << 30)

/* The graph input's dimensions when the file leaves some open (dim_param,
 * or no value).  shapes: --input-shape NAME:D0,D1,... (a whole shape for the
 * named input; fixed dims in the file must agree).  hint: a tensor the model
 * will see (calibration data, the input itself) whose dims fill the open ones;
 * hint_stacked: the hint holds samples stacked on axis 0 (calibration).
 * Without either, an open first (batch) dimension becomes 1 and any other
 * open dimension is an error. */
typedef struct te_input_shape {
    char name[128];
    te_shape shape;
} te_input_shape;

typedef struct te_import_opts {
    int n_shapes;
    const te_input_shape *shapes;
    const te_shape *hint;
    int hint_stacked;
} te_import_opts;

/* "NAME:D0,D1,..." (the last ':' splits) into *out; 0, or -1 if malformed. */
int te_parse_input_shape(const char *text, te_input_shape *out);

/* Parse an ONNX model (default-domain opsets 7..21), infer every static
 * shape and lower it to twinedge's IR: Conv/Gemm/MatMul become TE_OP_LINEAR
 * nodes with float weights (w_float, bias; BatchNormalization folded in
 * where exact), everything else a device-side node.  Layers are not yet
 * quantised (see compile.h).  Errors: TE_EIO, TE_EFORMAT (malformed file),
 * TE_EUNSUPPORTED (naming the op and the node), TE_ESHAPE. */
te_status te_onnx_import(const char *path, te_model **m, te_err *err);
/* Same from a buffer holding a serialised ModelProto. */
te_status te_onnx_import_buffer(const uint8_t *buf, size_t len, const char *model_name, te_model **m,
                                te_err *err);
/* The same with the graph input's open dimensions chosen (opts may be NULL). */
te_status te_onnx_import_opts(const char *path, const te_import_opts *opts, te_model **m, te_err *err);
te_status te_onnx_import_buffer_opts(const uint8_t *buf, size_t len, const char *model_name,
                                     const te_import_opts *opts, te_model **m, te_err *err);

#endif
