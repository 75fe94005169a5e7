/* NumPy .npy files (format versions 1.0, 2.0, 3.0), little-endian, C order.
 * Reading accepts float32, float64 and integer dtypes and converts to float;
 * writing produces float32. */
#ifndef TE_NPY_H
#define TE_NPY_H

#include <stdint.h>
#include <stddef.h>
#include "te_error.h"
#include "te_model.h"

te_status te_npy_parse(const uint8_t *buf, size_t len, te_shape *shape, float **data, te_err *err);

/* What the file held, for callers that must not convert silently. */
typedef struct te_npy_info {
    char descr[16];        /* the dtype as written, e.g. "<f4", "<f8", "<i8", "|u1" */
    int converted;         /* 1: not float32, the values were converted */
    size_t inexact;        /* elements float32 cannot hold exactly (they were rounded) */
    size_t first_inexact;  /* index of the first of them */
} te_npy_info;
/* te_npy_parse, also filling *info (may be NULL). */
te_status te_npy_parse_info(const uint8_t *buf, size_t len, te_shape *shape, float **data, te_npy_info *info,
                            te_err *err);
te_status te_npy_read_info(const char *path, te_shape *shape, float **data, te_npy_info *info, te_err *err);
te_status te_npy_read(const char *path, te_shape *shape, float **data, te_err *err);
te_status te_npy_write(const char *path, const te_shape *shape, const float *data, te_err *err);

/* Where a tool writes output k of a model with several outputs: output 0
 * to base, output k to base with ".npy" replaced by ".k.npy" (base.k.npy
 * when base does not end in .npy). */
void te_npy_output_path(const char *base, int k, char *buf, size_t cap);

#endif
