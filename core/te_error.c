#include "te_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

te_status te_errf(te_err *err, te_status code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        err->code = code;
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
    }
    return code;
}

te_status te_err_wrap(te_err *err, const char *fmt, ...)
{
    if (!err)
        return TE_EINVAL;
    char old[TE_ERR_MSG_MAX];
    memcpy(old, err->msg, sizeof old);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(err->msg, sizeof err->msg, fmt, ap);
    va_end(ap);
    size_t used = n < 0 ? 0 : (size_t)n >= sizeof err->msg ? sizeof err->msg - 1 : (size_t)n;
    size_t room = sizeof err->msg - used;
    if (room > 2) {
        memcpy(err->msg + used, ": ", 2);
        size_t take = strnlen(old, sizeof old);
        if (take > room - 3)
            take = room - 3;
        memcpy(err->msg + used + 2, old, take);
        err->msg[used + 2 + take] = '\0';
    }
    return err->code;
}

void te_err_clear(te_err *err)
{
    if (err) {
        err->code = TE_OK;
        err->msg[0] = '\0';
    }
}

const char *te_status_name(te_status code)
{
    switch (code) {
    case TE_OK: return "ok";
    case TE_EINVAL: return "invalid argument";
    case TE_ENOMEM: return "out of memory";
    case TE_EIO: return "i/o error";
    case TE_EFORMAT: return "format error";
    case TE_EUNSUPPORTED: return "unsupported";
    case TE_ESHAPE: return "shape error";
    case TE_EINTEGRITY: return "integrity failure";
    case TE_EOVERFLOW: return "overflow";
    case TE_ETRANSPORT: return "transport error";
    case TE_EAUTH: return "authentication refused";
    case TE_EPLUGIN: return "plugin error";
    case TE_ECOUNTER: return "counter error";
    case TE_ESERVER: return "server error";
    }
    return "unknown error";
}
