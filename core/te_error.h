/* Error reporting shared by every twinedge module.
 *
 * Every fallible function returns a te_status and, when it fails, fills the
 * caller's te_err with a human-readable message.  Nothing prints, nothing
 * exits: the caller decides what to do with the message.
 */
#ifndef TE_ERROR_H
#define TE_ERROR_H

#include <stddef.h>

typedef enum te_status {
    TE_OK = 0,
    TE_EINVAL = 1,       /* bad argument or bad input data */
    TE_ENOMEM = 2,       /* allocation failed */
    TE_EIO = 3,          /* file or OS error */
    TE_EFORMAT = 4,      /* malformed or corrupted file / message */
    TE_EUNSUPPORTED = 5, /* unsupported ONNX op, attribute or feature */
    TE_ESHAPE = 6,       /* tensor shape mismatch */
    TE_EINTEGRITY = 7,   /* a linear layer result failed verification */
    TE_EOVERFLOW = 8,    /* value does not fit the ring / fixed-point range */
    TE_ETRANSPORT = 9,   /* host unreachable, timeout, peer error */
    TE_EAUTH = 10,       /* credentials refused, unknown device */
    TE_EPLUGIN = 11,     /* compute plugin failed to load or run */
    TE_ECOUNTER = 12,    /* a (session, counter, layer) was already used: refused (host replay guard) */
    TE_ESERVER = 13      /* a host reported an error */
} te_status;

#define TE_ERR_MSG_MAX 512

typedef struct te_err {
    te_status code;
    char msg[TE_ERR_MSG_MAX];
} te_err;

/* Record an error (printf-style) and return its code.  err may be NULL. */
te_status te_errf(te_err *err, te_status code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix an existing message with more context: "ctx: old message". */
te_status te_err_wrap(te_err *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void te_err_clear(te_err *err);

/* Short name of a status code ("integrity", "io", ...). */
const char *te_status_name(te_status code);

#endif
