/* The checksummed container around every deployment file, and file I/O. */
#include "te_bundle.h"
#include "te_container_int.h"
#include "te_ring.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <brotli/decode.h>
#include <brotli/encode.h>
#include <openssl/evp.h>

#define TE_MAGIC "TWINEDGE"
#define TE_SHA_LEN 32
/* magic | version | kind | flags | payload length | stored length | sha256 */
#define TE_HDR_LEN (8 + 4 + 4 + 4 + 8 + 8 + TE_SHA_LEN)

static void put32(uint8_t *p, uint32_t v)
{
    for (int k = 0; k < 4; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

static void put64(uint8_t *p, uint64_t v)
{
    for (int k = 0; k < 8; k++)
        p[k] = (uint8_t)(v >> (8 * k));
}

static uint32_t get32(const uint8_t *p)
{
    uint32_t v = 0;
    for (int k = 0; k < 4; k++)
        v |= (uint32_t)p[k] << (8 * k);
    return v;
}

static uint64_t get64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int k = 0; k < 8; k++)
        v |= (uint64_t)p[k] << (8 * k);
    return v;
}

const char *te_kind_name(uint32_t kind)
{
    switch (kind) {
    case TE_KIND_DEVICE_BUNDLE: return "device bundle";
    case TE_KIND_EDGE_BUNDLE: return "edge bundle";
    case TE_KIND_DEVICE_KEY: return "device key";
    default: return "unknown kind";
    }
}

static te_status sha256(const uint8_t *data, size_t len, uint8_t out[TE_SHA_LEN], te_err *err)
{
    unsigned int olen = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx)
        return te_errf(err, TE_ENOMEM, "container: EVP_MD_CTX_new failed");
    int ok = EVP_DigestInit_ex(ctx, EVP_sha256(), NULL) == 1 && EVP_DigestUpdate(ctx, data, len) == 1 &&
             EVP_DigestFinal_ex(ctx, out, &olen) == 1 && olen == TE_SHA_LEN;
    EVP_MD_CTX_free(ctx);
    return ok ? TE_OK : te_errf(err, TE_EINVAL, "container: SHA-256 computation failed");
}

/* Brotli effort by size: quality 11 is too slow for large weight files. */
static int brotli_quality(size_t len)
{
    if (len <= ((size_t)1 << 20))
        return 11;
    if (len <= ((size_t)64 << 20))
        return 7;
    return 5;
}

te_status te_container_encode(uint32_t kind, int brotli, const uint8_t *payload, size_t len,
                              uint8_t **out, size_t *out_len, te_err *err)
{
    if (!out || !out_len || (!payload && len))
        return te_errf(err, TE_EINVAL, "container: null argument");
    if (kind < TE_KIND_DEVICE_BUNDLE || kind > TE_KIND_DEVICE_KEY)
        return te_errf(err, TE_EINVAL, "container: unknown kind %u", (unsigned)kind);
    if (te_size_exceeds(len, TE_CONTAINER_MAX_PAYLOAD))
        return te_errf(err, TE_EINVAL, "container: payload of %zu bytes is too large", len);
    *out = NULL;
    size_t cap = brotli ? BrotliEncoderMaxCompressedSize(len) : len;
    if (brotli && cap == 0)
        return te_errf(err, TE_EINVAL, "container: payload of %zu bytes is too large to compress", len);
    uint8_t *buf = malloc(TE_HDR_LEN + cap + 1);
    if (!buf)
        return te_errf(err, TE_ENOMEM, "container: cannot allocate %zu bytes", TE_HDR_LEN + cap);
    size_t stored = cap;
    if (brotli) {
        static const uint8_t empty = 0;
        if (!BrotliEncoderCompress(brotli_quality(len), BROTLI_DEFAULT_WINDOW, BROTLI_MODE_GENERIC, len,
                                   len ? payload : &empty, &stored, buf + TE_HDR_LEN)) {
            free(buf);
            return te_errf(err, TE_EINVAL, "container: Brotli compression failed");
        }
    } else if (len) {
        memcpy(buf + TE_HDR_LEN, payload, len);
    }
    memcpy(buf, TE_MAGIC, 8);
    put32(buf + 8, TE_CONTAINER_VERSION);
    put32(buf + 12, kind);
    put32(buf + 16, brotli ? TE_CONTAINER_BROTLI : 0);
    put64(buf + 20, (uint64_t)len);
    put64(buf + 28, (uint64_t)stored);
    te_status st = sha256(buf + TE_HDR_LEN, stored, buf + 36, err);
    if (st != TE_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    *out_len = TE_HDR_LEN + stored;
    return TE_OK;
}

static te_status brotli_decode(const uint8_t *in, size_t in_len, size_t want, uint8_t **payload,
                               te_err *err)
{
    BrotliDecoderState *s = BrotliDecoderCreateInstance(NULL, NULL, NULL);
    if (!s)
        return te_errf(err, TE_ENOMEM, "container: cannot create Brotli decoder");
    /* grow the output as data arrives, never beyond the stated length (+1
     * spare byte so that a stream ending exactly at the bound is seen to end) */
    size_t limit = want + 1;
    size_t cap = in_len < limit / 8 ? (in_len * 8 > 4096 ? in_len * 8 : 4096) : limit;
    if (cap > limit)
        cap = limit;
    uint8_t *buf = malloc(cap);
    te_status st = TE_OK;
    if (!buf) {
        st = te_errf(err, TE_ENOMEM, "container: cannot allocate %zu bytes", cap);
        goto done;
    }
    size_t avail_in = in_len, used = 0;
    const uint8_t *next_in = in;
    for (;;) {
        size_t avail_out = cap - used;
        uint8_t *next_out = buf + used;
        BrotliDecoderResult r = BrotliDecoderDecompressStream(s, &avail_in, &next_in, &avail_out, &next_out, NULL);
        used = (size_t)(next_out - buf);
        if (r == BROTLI_DECODER_RESULT_SUCCESS)
            break;
        if (r == BROTLI_DECODER_RESULT_NEEDS_MORE_OUTPUT) {
            if (cap >= limit) {
                st = te_errf(err, TE_EFORMAT, "container: decompressed payload exceeds its stated length %zu", want);
                goto done;
            }
            size_t ncap = cap > limit / 2 ? limit : cap * 2;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                st = te_errf(err, TE_ENOMEM, "container: cannot allocate %zu bytes", ncap);
                goto done;
            }
            buf = nb;
            cap = ncap;
        } else if (r == BROTLI_DECODER_RESULT_NEEDS_MORE_INPUT) {
            st = te_errf(err, TE_EFORMAT, "container: truncated Brotli stream");
            goto done;
        } else {
            st = te_errf(err, TE_EFORMAT, "container: Brotli decompression failed (%s)",
                         BrotliDecoderErrorString(BrotliDecoderGetErrorCode(s)));
            goto done;
        }
    }
    if (avail_in != 0) {
        st = te_errf(err, TE_EFORMAT, "container: %zu trailing bytes after the Brotli stream", avail_in);
        goto done;
    }
    if (used != want) {
        st = te_errf(err, TE_EFORMAT, "container: decompressed payload is %zu bytes, header says %zu", used, want);
        goto done;
    }
done:
    BrotliDecoderDestroyInstance(s);
    if (st != TE_OK) {
        free(buf);
        return st;
    }
    *payload = buf;
    return TE_OK;
}

te_status te_container_decode(const uint8_t *buf, size_t len, uint32_t expected_kind,
                              uint8_t **payload, size_t *payload_len, te_err *err)
{
    if (!buf || !payload || !payload_len)
        return te_errf(err, TE_EINVAL, "container: null argument");
    *payload = NULL;
    *payload_len = 0;
    if (len < TE_HDR_LEN)
        return te_errf(err, TE_EFORMAT, "container: file truncated (%zu bytes, header needs %d)", len, TE_HDR_LEN);
    if (memcmp(buf, TE_MAGIC, 8) != 0)
        return te_errf(err, TE_EFORMAT, "container: bad magic, not a twinedge file");
    uint32_t version = get32(buf + 8), kind = get32(buf + 12), flags = get32(buf + 16);
    uint64_t plen = get64(buf + 20), slen = get64(buf + 28);
    if (version != TE_CONTAINER_VERSION)
        return te_errf(err, TE_EFORMAT, "container: unsupported format version %u (this reader knows %u)",
                       (unsigned)version, TE_CONTAINER_VERSION);
    if (kind != expected_kind)
        return te_errf(err, TE_EFORMAT, "container: wrong file kind: expected %s, found %s (%u)",
                       te_kind_name(expected_kind), te_kind_name(kind), (unsigned)kind);
    if (flags & ~(uint32_t)TE_CONTAINER_BROTLI)
        return te_errf(err, TE_EFORMAT, "container: unknown flags 0x%x", (unsigned)flags);
    if (slen != (uint64_t)(len - TE_HDR_LEN))
        return te_errf(err, TE_EFORMAT, "container: stored length %llu does not match the %zu bytes present "
                       "(truncated file or trailing bytes)", (unsigned long long)slen, len - TE_HDR_LEN);
    uint8_t digest[TE_SHA_LEN];
    te_status st = sha256(buf + TE_HDR_LEN, (size_t)slen, digest, err);
    if (st != TE_OK)
        return st;
    if (memcmp(digest, buf + 36, TE_SHA_LEN) != 0)
        return te_errf(err, TE_EFORMAT, "container: SHA-256 checksum mismatch, the file is corrupted");
    if (plen > TE_CONTAINER_MAX_PAYLOAD || plen > SIZE_MAX - 1)
        return te_errf(err, TE_EFORMAT, "container: stated payload length %llu is too large",
                       (unsigned long long)plen);
    if (flags & TE_CONTAINER_BROTLI) {
        st = brotli_decode(buf + TE_HDR_LEN, (size_t)slen, (size_t)plen, payload, err);
        if (st != TE_OK)
            return st;
    } else {
        if (plen != slen)
            return te_errf(err, TE_EFORMAT, "container: payload length %llu differs from stored length %llu",
                           (unsigned long long)plen, (unsigned long long)slen);
        *payload = malloc(plen ? (size_t)plen : 1);
        if (!*payload)
            return te_errf(err, TE_ENOMEM, "container: cannot allocate %llu bytes", (unsigned long long)plen);
        if (plen)
            memcpy(*payload, buf + TE_HDR_LEN, (size_t)plen);
    }
    *payload_len = (size_t)plen;
    return TE_OK;
}

/* ---- files ---- */

te_status te_file_write_mode(const char *path, const uint8_t *buf, size_t len, unsigned mode, te_err *err)
{
    if (!path || (!buf && len))
        return te_errf(err, TE_EINVAL, "write: null argument");
    size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    char *dir = malloc(plen + 2);
    if (!tmp || !dir) {
        free(tmp);
        free(dir);
        return te_errf(err, TE_ENOMEM, "write %s: out of memory", path);
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    const char *slash = strrchr(path, '/');
    if (!slash)
        memcpy(dir, ".", 2);
    else if (slash == path)
        memcpy(dir, "/", 2);
    else {
        memcpy(dir, path, (size_t)(slash - path));
        dir[slash - path] = '\0';
    }

    te_status st = TE_OK;
    int fd = mkstemp(tmp);
    if (fd < 0) {
        st = te_errf(err, TE_EIO, "write %s: cannot create temporary file: %s", path, strerror(errno));
        goto out;
    }
    if (fchmod(fd, (mode_t)mode) != 0) {
        st = te_errf(err, TE_EIO, "write %s: chmod: %s", path, strerror(errno));
        goto fail;
    }
    for (size_t off = 0; off < len;) {
        ssize_t w = write(fd, buf + off, len - off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0) {
            st = te_errf(err, TE_EIO, "write %s: %s", path, w < 0 ? strerror(errno) : "short write");
            goto fail;
        }
        off += (size_t)w;
    }
    if (fsync(fd) != 0) {
        st = te_errf(err, TE_EIO, "write %s: fsync: %s", path, strerror(errno));
        goto fail;
    }
    if (close(fd) != 0) {
        fd = -1;
        st = te_errf(err, TE_EIO, "write %s: close: %s", path, strerror(errno));
        goto fail;
    }
    fd = -1;
    if (rename(tmp, path) != 0) {
        st = te_errf(err, TE_EIO, "write %s: rename: %s", path, strerror(errno));
        goto fail;
    }
    int dfd = open(dir, O_RDONLY | O_DIRECTORY);
    if (dfd < 0) {
        st = te_errf(err, TE_EIO, "write %s: open directory %s: %s", path, dir, strerror(errno));
        goto out;
    }
    if (fsync(dfd) != 0 && errno != EINVAL)
        st = te_errf(err, TE_EIO, "write %s: fsync directory %s: %s", path, dir, strerror(errno));
    close(dfd);
    goto out;
fail:
    if (fd >= 0)
        close(fd);
    unlink(tmp);
out:
    free(tmp);
    free(dir);
    return st;
}

te_status te_file_write_atomic(const char *path, const uint8_t *buf, size_t len, te_err *err)
{
    return te_file_write_mode(path, buf, len, 0644, err);
}

te_status te_file_read(const char *path, size_t max_len, uint8_t **out, size_t *out_len, te_err *err)
{
    if (!path || !out || !out_len)
        return te_errf(err, TE_EINVAL, "read: null argument");
    *out = NULL;
    *out_len = 0;
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return te_errf(err, TE_EIO, "read %s: %s", path, strerror(errno));
    struct stat sb;
    size_t cap = 65536;
    if (fstat(fd, &sb) == 0 && S_ISREG(sb.st_mode)) {
        if ((uint64_t)sb.st_size > (uint64_t)max_len) {
            close(fd);
            return te_errf(err, TE_EFORMAT, "read %s: file of %lld bytes exceeds the limit of %zu", path,
                           (long long)sb.st_size, max_len);
        }
        cap = (size_t)sb.st_size + 1; /* +1 to see EOF without growing */
    }
    uint8_t *buf = malloc(cap);
    if (!buf) {
        close(fd);
        return te_errf(err, TE_ENOMEM, "read %s: cannot allocate %zu bytes", path, cap);
    }
    size_t len = 0;
    te_status st = TE_OK;
    for (;;) {
        if (len == cap) {
            if (cap > max_len) {
                st = te_errf(err, TE_EFORMAT, "read %s: file exceeds the limit of %zu bytes", path, max_len);
                break;
            }
            size_t ncap = cap > SIZE_MAX / 2 ? SIZE_MAX : cap * 2;
            uint8_t *nb = realloc(buf, ncap);
            if (!nb) {
                st = te_errf(err, TE_ENOMEM, "read %s: cannot allocate %zu bytes", path, ncap);
                break;
            }
            buf = nb;
            cap = ncap;
        }
        ssize_t r = read(fd, buf + len, cap - len);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            st = te_errf(err, TE_EIO, "read %s: %s", path, strerror(errno));
            break;
        }
        if (r == 0)
            break;
        len += (size_t)r;
    }
    close(fd);
    if (st == TE_OK && len > max_len)
        st = te_errf(err, TE_EFORMAT, "read %s: file exceeds the limit of %zu bytes", path, max_len);
    if (st != TE_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    *out_len = len;
    return TE_OK;
}
