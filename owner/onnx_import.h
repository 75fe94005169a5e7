/* ONNX -> te_model import (owner tool). */
#ifndef TE_ONNX_IMPORT_H
#define TE_ONNX_IMPORT_H

#include "te_error.h"
#include "te_model.h"

/* Largest ONNX file the importer reads. */
#define TE_ONNX_MAX_FILE ((size_t)2 << 30)

/* Parse an ONNX model (default-domain opsets 10..21), infer every static
 * shape and lower it to twinedge's IR: Conv/Gemm/MatMul become TE_OP_LINEAR
 * nodes with float weights (w_float, bias; BatchNormalization folded in
 * where exact), everything else a device-side node.  Layers are not yet
 * quantised (see compile.h).  Errors: TE_EIO, TE_EFORMAT (malformed file),
 * TE_EUNSUPPORTED (naming the op and the node), TE_ESHAPE. */
te_status te_onnx_import(const char *path, te_model **m, te_err *err);
/* Same from a buffer holding a serialised ModelProto. */
te_status te_onnx_import_buffer(const uint8_t *buf, size_t len, const char *model_name, te_model **m,
                                te_err *err);

#endif
