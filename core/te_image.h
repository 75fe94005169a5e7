/* Image input: a PNG or JPEG (decoded with libpng / libjpeg-turbo) turned into
 * the model's input tensor.
 *
 * Steps: decode (8 bits per channel; 16-bit PNGs are reduced to 8 bits),
 * convert to the model's channel count, resize to the model's H x W, scale
 * to [0, 1] and normalise per channel: x = (pixel / 255 - mean[c]) / std[c]
 * with the deployment's preprocessing (te_model.pre; when not present:
 * mean 0, std 1).  The result is NCHW float32, batch 1.
 *
 * Channels: grey -> 3 or 4 replicates the grey value; colour -> 1 is the
 * ITU-R BT.601 luma 0.299 R + 0.587 G + 0.114 B; alpha is dropped (not
 * composited), and a missing alpha channel (model wants 4) is 255.
 * Fit: TE_FIT_CROP takes the largest centred rectangle of the model's
 * aspect ratio (as torchvision's Resize + CenterCrop keep the proportions),
 * TE_FIT_STRETCH the whole image, distorted when the ratios differ.
 * Resize: bilinear with half-pixel centres and no antialiasing, as
 * torch.nn.functional.interpolate(mode="bilinear", align_corners=False).
 * A JPEG that libjpeg reports as corrupt (even where it could fill in the
 * gaps) is refused, as is a PNG whose data or checksums are wrong.
 *
 * Input is untrusted: the encoded size, the declared dimensions and the
 * pixel count are bounded before anything is decoded. */
#ifndef TE_IMAGE_H
#define TE_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "te_error.h"
#include "te_model.h"

#define TE_IMAGE_MAX_BYTES ((size_t)64 << 20)    /* encoded file */
#define TE_IMAGE_MAX_DIM 16384                     /* width or height */
#define TE_IMAGE_MAX_PIXELS ((int64_t)1 << 25)     /* width * height (32 Mi) */

typedef enum te_image_format {
    TE_IMAGE_UNKNOWN = 0,
    TE_IMAGE_PNG = 1,
    TE_IMAGE_JPEG = 2
} te_image_format;

typedef enum te_image_fit {
    TE_FIT_CROP = 0,
    TE_FIT_STRETCH = 1
} te_image_fit;

/* By signature: PNG (\x89PNG\r\n\x1a\n) or JPEG (FF D8 FF). */
te_image_format te_image_sniff(const uint8_t *buf, size_t len);

/* The decoded size and channel count (1 grey, 2 grey+alpha, 3 RGB, 4 RGBA)
 * from the header only; fails on anything but a PNG/JPEG within the bounds. */
te_status te_image_info(const uint8_t *buf, size_t len, int *width, int *height, int *channels, te_err *err);

/* Whether an iw x ih image must be cropped (TE_FIT_CROP) or distorted
 * (TE_FIT_STRETCH) to become w x h. */
int te_image_aspect_differs(int iw, int ih, int w, int h);

/* Decode buf and make the (1, channels, height, width) tensor in *out
 * (malloc'd).  channels: 1, 3 or 4; pre: NULL or not present -> mean 0,
 * std 1; when present its channel count must equal channels. */
te_status te_image_to_tensor(const uint8_t *buf, size_t len, int channels, int height, int width,
                             const te_preprocess *pre, te_image_fit fit, float **out, te_err *err);

#endif
