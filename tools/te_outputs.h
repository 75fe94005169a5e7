/* Writing a device's outputs to .npy files, one file per output (the
 * command-line tools; names from te_npy_output_path). */
#ifndef TE_OUTPUTS_H
#define TE_OUTPUTS_H

#include <stddef.h>

#include "te_error.h"
#include "twinedge_device.h"

/* Every output of dev's last successful inference, to te_npy_output_path(base, k). */
te_status te_device_outputs_write(twinedge_device *dev, const char *base, te_err *err);

#endif
