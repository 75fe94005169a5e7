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
te_status te_npy_read(const char *path, te_shape *shape, float **data, te_err *err);
te_status te_npy_write(const char *path, const te_shape *shape, const float *data, te_err *err);

#endif
