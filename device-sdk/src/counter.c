#include "counter.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "te_bundle.h"

te_status te_counter_open(te_counter *c, const char *dir, te_err *err)
{
    memset(c, 0, sizeof *c);
    if ((size_t)snprintf(c->path, sizeof c->path, "%s/counter", dir) >= sizeof c->path)
        return te_errf(err, TE_EINVAL, "device directory path too long");
    struct stat sb;
    if (stat(c->path, &sb) != 0 && errno == ENOENT) {
        c->next = 0;
        return TE_OK;
    }
    uint8_t *buf = NULL;
    size_t len = 0;
    te_err e;
    if (te_file_read(c->path, 64, &buf, &len, &e) != TE_OK)
        return te_errf(err, TE_ECOUNTER, "request counter: %s", e.msg);
    char text[65];
    memcpy(text, buf, len);
    text[len] = '\0';
    free(buf);
    char *end = NULL;
    errno = 0;
    unsigned long long v = strtoull(text, &end, 10);
    if (errno || end == text || (*end != '\n' && *end != '\0') || text[0] == '-')
        return te_errf(err, TE_ECOUNTER, "request counter file %s is corrupted; refusing to guess a counter "
                                         "(reusing one would leak inputs)", c->path);
    c->next = v;
    return TE_OK;
}

te_status te_counter_take(te_counter *c, uint64_t *value, te_err *err)
{
    if (c->next == UINT64_MAX)
        return te_errf(err, TE_ECOUNTER, "request counter exhausted; re-provision the device");
    char text[32];
    int n = snprintf(text, sizeof text, "%" PRIu64 "\n", c->next + 1);
    te_status st = te_file_write_atomic(c->path, (const uint8_t *)text, (size_t)n, err);
    if (st != TE_OK)
        return te_err_wrap(err, "persisting request counter");
    *value = c->next++;
    return TE_OK;
}
