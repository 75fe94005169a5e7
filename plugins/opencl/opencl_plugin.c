/* The OpenCL compute plugin: out = W . in mod 2^l over blinded inputs.
 *
 * Two exact paths per layer, chosen at load time (kernel=auto|ulong|dgemm):
 * the ulong kernels of kernels-cl/ (unsigned 64-bit arithmetic wraps mod
 * 2^64, and 2^l divides 2^64), and CLBlast DGEMM over limbs small enough that
 * every sum stays below 2^53 (kernels-cl/te_limbs.cl), recombined in ulong.
 * The float32 baseline run_f32 is im2col on the device plus CLBlast SGEMM.
 * See docs/opencl.md.
 *
 * One context, one in-order command queue and one program per plugin
 * context, built in create().  Weights stay on the device from load_layer()
 * to release_layer().  run() serialises on a mutex: kernel arguments and the
 * shared input/output buffers belong to the queue, not to the caller. */
#include "te_plugin.h"

#include <CL/cl.h>
#include <CL/cl_ext.h>
#include <clblast_c.h>
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "te_ocl_kernels.h" /* generated: te_ocl_sources[], te_ocl_source_names[] */
#include "te_ring.h"

#ifndef CL_PLATFORM_NOT_FOUND_KHR
#define CL_PLATFORM_NOT_FOUND_KHR -1001
#endif

#define OCL_MAX_BATCH ((uint64_t)1 << 20)
#define OCL_PATH_MAX 1024
#define OCL_FC_GEMV_MAX_BATCH 4 /* FC with at most this many rows: matrix-vector kernel */
/* The ulong GEMM's tiles: kernels-cl/te_gemm.cl's defaults, or gemm_tile= and
 * gemm_wg= (passed to the kernel as -D options). */
#define GEMM_TM 32
#define GEMM_TN 32
#define GEMM_TK 16
#define GEMM_LX 8
#define GEMM_LY 8
#define FC_WG 64                /* must match kernels-cl/te_fc.cl */
#define DW_WG 64
#define LIMBS_SOURCE "te_limbs.cl"  /* built as its own program, only on fp64 devices */
#define LIMB_SUM_BOUND ((uint64_t)1 << 53) /* every DGEMM partial sum stays below this */
#define AUTO_REPS 3             /* timed runs per path when kernel=auto */

enum { KERNEL_AUTO = 0, KERNEL_ULONG = 1, KERNEL_DGEMM = 2 };

typedef struct ocl_config {
    char platform[128];     /* "" = first platform with a matching device */
    long device;            /* -1 = first matching device */
    cl_device_type type;
    const char *type_name;
    char cache_dir[OCL_PATH_MAX];
    char kernel_dir[OCL_PATH_MAX];
    int kernel;             /* KERNEL_AUTO, _ULONG or _DGEMM */
    long tm, tn, tk, lx, ly; /* the ulong GEMM's tiles and work group */
} ocl_config;

struct te_plugin_ctx {
    cl_platform_id platform;
    cl_device_id device;
    cl_context context;
    cl_command_queue queue;
    cl_program program;
    cl_kernel k_gemm, k_dw, k_fc;
    cl_kernel k_i2f, k_im2col_f, k_scatter_f;   /* the float32 baseline */
    cl_program limbs_program;                   /* NULL without cl_khr_fp64 */
    cl_kernel k_im2col_limbs, k_combine;
    int kernel_mode;
    long tm, tn, lx, ly;        /* the ulong GEMM's output tile and work group */
    char build_opts[160];
    pthread_mutex_t lock;
    int lock_init;
    /* grown on demand, guarded by lock; cd_buf only ever holds DGEMM results
     * (finite) or the zeros it was created with, see ensure_buf */
    cl_mem in_buf, out_buf, col_buf, cf_buf, cd_buf;
    size_t in_cap, out_cap, col_cap, cf_cap, cd_cap;
    uint64_t global_mem, max_alloc;
    char device_name[128];
    const te_plugin_host *host; /* the host's services (NULL: created without) */
};

enum { PATH_GEMM = 0, PATH_DEPTHWISE = 1 };

struct te_plugin_layer {
    te_linear_geom g;
    int64_t icg, ocg, K, P, in_len, out_len;
    int path;
    int use_dgemm;      /* the exact path run() takes */
    cl_mem w_buf;       /* int32 [out_c][K] */
    cl_mem ktab_buf;    /* int4 [K] */
    cl_mem wf_buf;      /* float [out_c][K], made on the first run_f32() (under the context lock) */
    cl_mem wd_buf;      /* double limbs [group][n_w * ocg][K] (DGEMM path) */
    int n_w, wb, xb;    /* weight limbs of wb bits, input limbs of xb bits */
    double t_ulong, t_dgemm; /* kernel=auto: median seconds at l = 64, batch 1 (0: not timed) */
};

/* ---- helpers ----------------------------------------------------------- */

static const char *cl_err_name(cl_int rc)
{
    switch (rc) {
    case CL_SUCCESS: return "CL_SUCCESS";
    case CL_DEVICE_NOT_FOUND: return "CL_DEVICE_NOT_FOUND";
    case CL_DEVICE_NOT_AVAILABLE: return "CL_DEVICE_NOT_AVAILABLE";
    case CL_COMPILER_NOT_AVAILABLE: return "CL_COMPILER_NOT_AVAILABLE";
    case CL_MEM_OBJECT_ALLOCATION_FAILURE: return "CL_MEM_OBJECT_ALLOCATION_FAILURE";
    case CL_OUT_OF_RESOURCES: return "CL_OUT_OF_RESOURCES";
    case CL_OUT_OF_HOST_MEMORY: return "CL_OUT_OF_HOST_MEMORY";
    case CL_BUILD_PROGRAM_FAILURE: return "CL_BUILD_PROGRAM_FAILURE";
    case CL_INVALID_VALUE: return "CL_INVALID_VALUE";
    case CL_INVALID_DEVICE: return "CL_INVALID_DEVICE";
    case CL_INVALID_BINARY: return "CL_INVALID_BINARY";
    case CL_INVALID_BUILD_OPTIONS: return "CL_INVALID_BUILD_OPTIONS";
    case CL_INVALID_KERNEL_NAME: return "CL_INVALID_KERNEL_NAME";
    case CL_INVALID_KERNEL_ARGS: return "CL_INVALID_KERNEL_ARGS";
    case CL_INVALID_ARG_SIZE: return "CL_INVALID_ARG_SIZE";
    case CL_INVALID_WORK_GROUP_SIZE: return "CL_INVALID_WORK_GROUP_SIZE";
    case CL_INVALID_WORK_ITEM_SIZE: return "CL_INVALID_WORK_ITEM_SIZE";
    case CL_INVALID_GLOBAL_WORK_SIZE: return "CL_INVALID_GLOBAL_WORK_SIZE";
    case CL_INVALID_BUFFER_SIZE: return "CL_INVALID_BUFFER_SIZE";
    case CL_INVALID_COMMAND_QUEUE: return "CL_INVALID_COMMAND_QUEUE";
    case CL_INVALID_MEM_OBJECT: return "CL_INVALID_MEM_OBJECT";
    case CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST: return "CL_EXEC_STATUS_ERROR_FOR_EVENTS_IN_WAIT_LIST";
    case CL_PLATFORM_NOT_FOUND_KHR: return "CL_PLATFORM_NOT_FOUND_KHR";
    default: return "OpenCL error";
    }
}

static te_status cl_fail(te_err *err, const char *what, cl_int rc)
{
    te_status code = (rc == CL_OUT_OF_HOST_MEMORY) ? TE_ENOMEM : TE_EPLUGIN;
    return te_errf(err, code, "opencl plugin: %s failed: %s (%d)", what, cl_err_name(rc), (int)rc);
}

static char *trim(char *s)
{
    while (*s == ' ' || *s == '\t')
        s++;
    char *e = s + strlen(s);
    while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n'))
        *--e = '\0';
    return s;
}

/* Case-insensitive substring test. */
static int contains_ci(const char *hay, const char *needle)
{
    size_t n = strlen(needle);
    for (; *hay; hay++) {
        size_t i = 0;
        while (i < n && hay[i] && tolower((unsigned char)hay[i]) == tolower((unsigned char)needle[i]))
            i++;
        if (i == n)
            return 1;
    }
    return n == 0;
}

static int parse_index(const char *s, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0)
        return 0;
    *out = v;
    return 1;
}

static void platform_str(cl_platform_id p, cl_platform_info what, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (clGetPlatformInfo(p, what, cap, buf, NULL) != CL_SUCCESS)
        snprintf(buf, cap, "?");
    buf[cap - 1] = '\0';
    char *t = trim(buf);
    memmove(buf, t, strlen(t) + 1);
}

static void device_str(cl_device_id d, cl_device_info what, char *buf, size_t cap)
{
    buf[0] = '\0';
    if (clGetDeviceInfo(d, what, cap, buf, NULL) != CL_SUCCESS)
        snprintf(buf, cap, "?");
    buf[cap - 1] = '\0';
    char *t = trim(buf);
    memmove(buf, t, strlen(t) + 1);
}

/* Append printf-style text to buf (truncating silently). */
__attribute__((format(printf, 3, 4))) static void appendf(char *buf, size_t cap, const char *fmt, ...)
{
    size_t used = strlen(buf);
    if (used + 1 >= cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf + used, cap - used, fmt, ap);
    va_end(ap);
}

/* ---- config ------------------------------------------------------------ */

static te_status parse_config(const char *config, ocl_config *cfg, te_err *err)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->device = -1;
    cfg->type = CL_DEVICE_TYPE_ALL;
    cfg->type_name = "all";
    cfg->tm = GEMM_TM, cfg->tn = GEMM_TN, cfg->tk = GEMM_TK, cfg->lx = GEMM_LX, cfg->ly = GEMM_LY;
    if (!config)
        return TE_OK;
    const char *p = config;
    while (*p) {
        const char *end = strchr(p, ';');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        char item[OCL_PATH_MAX + 32];
        if (len >= sizeof item)
            return te_errf(err, TE_EINVAL, "opencl plugin: config item too long: %.40s...", p);
        memcpy(item, p, len);
        item[len] = '\0';
        char *s = trim(item);
        if (*s) {
            char *eq = strchr(s, '=');
            if (!eq)
                return te_errf(err, TE_EINVAL, "opencl plugin: config item '%s' is not key=value", s);
            *eq = '\0';
            s = trim(s);
            const char *val = trim(eq + 1);
            if (strcmp(s, "platform") == 0) {
                if (strlen(val) >= sizeof cfg->platform)
                    return te_errf(err, TE_EINVAL, "opencl plugin: platform=%.40s... is too long", val);
                snprintf(cfg->platform, sizeof cfg->platform, "%s", val);
            } else if (strcmp(s, "device") == 0) {
                if (!parse_index(val, &cfg->device))
                    return te_errf(err, TE_EINVAL, "opencl plugin: device=%s is not a device index (0, 1, ...)",
                                   val);
            } else if (strcmp(s, "device_type") == 0) {
                if (strcmp(val, "cpu") == 0) {
                    cfg->type = CL_DEVICE_TYPE_CPU;
                    cfg->type_name = "cpu";
                } else if (strcmp(val, "gpu") == 0) {
                    cfg->type = CL_DEVICE_TYPE_GPU;
                    cfg->type_name = "gpu";
                } else if (strcmp(val, "accelerator") == 0) {
                    cfg->type = CL_DEVICE_TYPE_ACCELERATOR;
                    cfg->type_name = "accelerator";
                } else if (strcmp(val, "all") == 0) {
                    cfg->type = CL_DEVICE_TYPE_ALL;
                    cfg->type_name = "all";
                } else {
                    return te_errf(err, TE_EINVAL,
                                   "opencl plugin: device_type=%s: use cpu, gpu, accelerator or all", val);
                }
            } else if (strcmp(s, "gemm_tile") == 0 || strcmp(s, "gemm_wg") == 0) {
                int tile = s[5] == 't';
                long v[3] = { 0, 0, 0 };
                int n = 0;
                const char *q = val;
                while (n < 3) {
                    char *e;
                    errno = 0;
                    v[n] = strtol(q, &e, 10);
                    if (errno || e == q || v[n] < 1 || v[n] > 256)
                        break;
                    n++;
                    q = e;
                    if (*q != 'x')
                        break;
                    q++;
                }
                if (*q || n != (tile ? 3 : 2))
                    return te_errf(err, TE_EINVAL, "opencl plugin: %s=%s: use %s", s, val,
                                   tile ? "TMxTNxTK, e.g. 32x32x16" : "LXxLY, e.g. 8x8");
                if (tile)
                    cfg->tm = v[0], cfg->tn = v[1], cfg->tk = v[2];
                else
                    cfg->lx = v[0], cfg->ly = v[1];
            } else if (strcmp(s, "kernel") == 0) {
                if (strcmp(val, "auto") == 0)
                    cfg->kernel = KERNEL_AUTO;
                else if (strcmp(val, "ulong") == 0)
                    cfg->kernel = KERNEL_ULONG;
                else if (strcmp(val, "dgemm") == 0)
                    cfg->kernel = KERNEL_DGEMM;
                else
                    return te_errf(err, TE_EINVAL, "opencl plugin: kernel=%s: use auto, ulong or dgemm", val);
            } else if (strcmp(s, "cache_dir") == 0 || strcmp(s, "kernel_dir") == 0) {
                char *dst = s[0] == 'c' ? cfg->cache_dir : cfg->kernel_dir;
                if (strlen(val) >= OCL_PATH_MAX)
                    return te_errf(err, TE_EINVAL, "opencl plugin: %s is too long", s);
                snprintf(dst, OCL_PATH_MAX, "%s", val);
            } else {
                return te_errf(err, TE_EINVAL,
                               "opencl plugin: unknown config key '%s' (known keys: platform, device, "
                               "device_type, kernel, gemm_tile, gemm_wg, cache_dir, kernel_dir)", s);
            }
        }
        if (!end)
            break;
        p = end + 1;
    }
    /* What kernels-cl/te_gemm.cl's tile loads and register blocks assume. */
    long items = cfg->lx * cfg->ly;
    if (cfg->tm % cfg->ly || cfg->tn % cfg->lx || items % cfg->tk || items % cfg->tn || items > 1024 ||
        cfg->tm % (items / cfg->tk) || cfg->tk % (items / cfg->tn))
        return te_errf(err, TE_EINVAL,
                       "opencl plugin: gemm_tile=%ldx%ldx%ld with gemm_wg=%ldx%ld does not fit the GEMM kernel: "
                       "TM must be a multiple of LY and of LX*LY/TK, TN of LX, TK of LX*LY/TN, and LX*LY a multiple "
                       "of TK and TN (at most 1024)", cfg->tm, cfg->tn, cfg->tk, cfg->lx, cfg->ly);
    return TE_OK;
}

/* ---- platform and device selection ------------------------------------- */

/* Devices of cfg->type on platform p (caller frees *devs); 0 if none. */
static cl_uint platform_devices(cl_platform_id p, cl_device_type type, cl_device_id **devs)
{
    *devs = NULL;
    cl_uint nd = 0;
    if (clGetDeviceIDs(p, type, 0, NULL, &nd) != CL_SUCCESS || nd == 0)
        return 0;
    *devs = calloc(nd, sizeof **devs);
    if (!*devs)
        return 0;
    if (clGetDeviceIDs(p, type, nd, *devs, NULL) != CL_SUCCESS) {
        free(*devs);
        *devs = NULL;
        return 0;
    }
    return nd;
}

/* "[0] name (2 devices: [0] a, [1] b); [1] ..." for error messages. */
static void describe_platforms(const cl_platform_id *plats, cl_uint np, const ocl_config *cfg, char *buf,
                               size_t cap)
{
    buf[0] = '\0';
    for (cl_uint i = 0; i < np; i++) {
        char name[96];
        platform_str(plats[i], CL_PLATFORM_NAME, name, sizeof name);
        cl_device_id *devs;
        cl_uint nd = platform_devices(plats[i], cfg->type, &devs);
        appendf(buf, cap, "%s[%u] %s (%u %s device%s", i ? "; " : "", i, name, nd,
                cfg->type == CL_DEVICE_TYPE_ALL ? "OpenCL" : cfg->type_name, nd == 1 ? "" : "s");
        for (cl_uint j = 0; j < nd; j++) {
            char dn[96];
            device_str(devs[j], CL_DEVICE_NAME, dn, sizeof dn);
            appendf(buf, cap, "%s[%u] %s", j ? ", " : ": ", j, dn);
        }
        appendf(buf, cap, ")");
        free(devs);
    }
}

static te_status select_device(const ocl_config *cfg, te_plugin_ctx *ctx, te_err *err)
{
    cl_uint np = 0;
    cl_int rc = clGetPlatformIDs(0, NULL, &np);
    if (rc == CL_PLATFORM_NOT_FOUND_KHR || (rc == CL_SUCCESS && np == 0))
        return te_errf(err, TE_EPLUGIN,
                       "opencl plugin: no OpenCL platform found (is an ICD such as pocl-opencl-icd installed?)");
    if (rc != CL_SUCCESS)
        return cl_fail(err, "listing OpenCL platforms (clGetPlatformIDs)", rc);
    cl_platform_id *plats = calloc(np, sizeof *plats);
    if (!plats)
        return te_errf(err, TE_ENOMEM, "opencl plugin: out of memory");
    rc = clGetPlatformIDs(np, plats, NULL);
    if (rc != CL_SUCCESS) {
        free(plats);
        return cl_fail(err, "listing OpenCL platforms (clGetPlatformIDs)", rc);
    }

    te_status st = TE_OK;
    char list[TE_ERR_MSG_MAX];
    long pidx = -1;
    int by_index = cfg->platform[0] && parse_index(cfg->platform, &pidx);
    if (by_index && pidx >= (long)np) {
        describe_platforms(plats, np, cfg, list, sizeof list);
        st = te_errf(err, TE_EPLUGIN, "opencl plugin: OpenCL platform index %ld out of range: %u platform%s: %s",
                     pidx, np, np == 1 ? "" : "s", list);
        goto out;
    }
    int matched_platform = 0;
    for (cl_uint i = 0; i < np; i++) {
        if (by_index && (long)i != pidx)
            continue;
        if (!by_index && cfg->platform[0]) {
            char name[128], vendor[128];
            platform_str(plats[i], CL_PLATFORM_NAME, name, sizeof name);
            platform_str(plats[i], CL_PLATFORM_VENDOR, vendor, sizeof vendor);
            if (!contains_ci(name, cfg->platform) && !contains_ci(vendor, cfg->platform))
                continue;
        }
        matched_platform = 1;
        cl_device_id *devs;
        cl_uint nd = platform_devices(plats[i], cfg->type, &devs);
        if (nd == 0 && !by_index)
            continue; /* platform not fixed by index: look at the next match */
        long d = cfg->device < 0 ? 0 : cfg->device;
        if (d >= (long)nd) {
            free(devs);
            describe_platforms(plats, np, cfg, list, sizeof list);
            if (cfg->device < 0)
                st = te_errf(err, TE_EPLUGIN, "opencl plugin: OpenCL platform %u has no device of type %s; present: %s",
                             i, cfg->type_name, list);
            else
                st = te_errf(err, TE_EPLUGIN,
                             "opencl plugin: OpenCL device index %ld out of range on platform %u (device_type=%s); "
                             "present: %s", d, i, cfg->type_name, list);
            goto out;
        }
        ctx->platform = plats[i];
        ctx->device = devs[d];
        free(devs);
        goto out;
    }
    describe_platforms(plats, np, cfg, list, sizeof list);
    if (!matched_platform)
        st = te_errf(err, TE_EPLUGIN, "opencl plugin: no OpenCL platform matches platform=%s; present: %s",
                     cfg->platform, list);
    else
        st = te_errf(err, TE_EPLUGIN, "opencl plugin: no OpenCL device of type %s found; present: %s", cfg->type_name,
                     list);
out:
    free(plats);
    return st;
}

/* ---- program ----------------------------------------------------------- */

static te_status read_file(const char *path, char **data, size_t *len, te_err *err)
{
    *data = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return te_errf(err, TE_EIO, "opencl plugin: cannot open %s: %s", path, strerror(errno));
    te_status st = TE_OK;
    long n = -1;
    if (fseek(f, 0, SEEK_END) == 0)
        n = ftell(f);
    if (n < 0 || fseek(f, 0, SEEK_SET) != 0) {
        st = te_errf(err, TE_EIO, "opencl plugin: cannot read %s", path);
        goto done;
    }
    *data = malloc((size_t)n + 1);
    if (!*data) {
        st = te_errf(err, TE_ENOMEM, "opencl plugin: out of memory reading %s", path);
        goto done;
    }
    if (fread(*data, 1, (size_t)n, f) != (size_t)n) {
        free(*data);
        *data = NULL;
        st = te_errf(err, TE_EIO, "opencl plugin: cannot read %s", path);
        goto done;
    }
    (*data)[n] = '\0';
    *len = (size_t)n;
done:
    fclose(f);
    return st;
}

static uint64_t fnv1a(uint64_t h, const void *p, size_t n)
{
    const unsigned char *c = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ c[i]) * 0x100000001B3ULL;
    return h;
}

/* Binary cache file name: a hash of the sources and of the device, driver
 * and platform identity, so a driver update invalidates it. */
static void cache_path(te_plugin_ctx *ctx, const ocl_config *cfg, const char *const *srcs, int n_srcs, char *path,
                       size_t cap)
{
    uint64_t h = 0xCBF29CE484222325ULL;
    for (int i = 0; i < n_srcs; i++)
        h = fnv1a(h, srcs[i], strlen(srcs[i]) + 1);
    char s[256];
    device_str(ctx->device, CL_DEVICE_NAME, s, sizeof s);
    h = fnv1a(h, s, strlen(s) + 1);
    device_str(ctx->device, CL_DEVICE_VERSION, s, sizeof s);
    h = fnv1a(h, s, strlen(s) + 1);
    device_str(ctx->device, CL_DRIVER_VERSION, s, sizeof s);
    h = fnv1a(h, s, strlen(s) + 1);
    platform_str(ctx->platform, CL_PLATFORM_VERSION, s, sizeof s);
    h = fnv1a(h, s, strlen(s) + 1);
    h = fnv1a(h, ctx->build_opts, strlen(ctx->build_opts) + 1);
    snprintf(path, cap, "%s/twinedge-ocl-%016llx.bin", cfg->cache_dir, (unsigned long long)h);
}

/* Try a cached binary; leaves ctx->program NULL when there is none usable. */
static void load_cached(te_plugin_ctx *ctx, const char *path)
{
    char *bin;
    size_t len;
    te_err ignored;
    if (read_file(path, &bin, &len, &ignored) != TE_OK)
        return;
    const unsigned char *b = (const unsigned char *)bin;
    cl_int bstat = CL_SUCCESS, rc;
    cl_program prog = clCreateProgramWithBinary(ctx->context, 1, &ctx->device, &len, &b, &bstat, &rc);
    free(bin);
    if (rc != CL_SUCCESS || bstat != CL_SUCCESS) {
        if (prog)
            clReleaseProgram(prog);
        return;
    }
    if (clBuildProgram(prog, 1, &ctx->device, ctx->build_opts, NULL, NULL) != CL_SUCCESS) {
        clReleaseProgram(prog);
        return;
    }
    ctx->program = prog;
}

/* Best effort: a cache that cannot be written only costs a rebuild. */
static void save_cached(te_plugin_ctx *ctx, const char *path)
{
    size_t len = 0;
    if (clGetProgramInfo(ctx->program, CL_PROGRAM_BINARY_SIZES, sizeof len, &len, NULL) != CL_SUCCESS || len == 0)
        return;
    unsigned char *bin = malloc(len);
    if (!bin)
        return;
    if (clGetProgramInfo(ctx->program, CL_PROGRAM_BINARIES, sizeof bin, &bin, NULL) == CL_SUCCESS) {
        char tmp[OCL_PATH_MAX + 96];
        int n = snprintf(tmp, sizeof tmp, "%s.tmp", path);
        FILE *f = (n > 0 && (size_t)n < sizeof tmp) ? fopen(tmp, "wb") : NULL;
        if (f) {
            int ok = fwrite(bin, 1, len, f) == len;
            ok = (fclose(f) == 0) && ok;
            if (!ok || rename(tmp, path) != 0)
                remove(tmp);
        }
    }
    free(bin);
}

/* Build a program from source; a failure carries the compiler's log. */
static te_status compile_program(te_plugin_ctx *ctx, int n, const char **srcs, const char *opts, cl_program *out,
                                 te_err *err)
{
    cl_int rc;
    *out = clCreateProgramWithSource(ctx->context, (cl_uint)n, srcs, NULL, &rc);
    if (rc != CL_SUCCESS) {
        *out = NULL;
        return cl_fail(err, "creating the OpenCL program", rc);
    }
    rc = clBuildProgram(*out, 1, &ctx->device, opts, NULL, NULL);
    if (rc == CL_SUCCESS)
        return TE_OK;
    char log[TE_ERR_MSG_MAX] = "";
    size_t len = 0;
    if (clGetProgramBuildInfo(*out, ctx->device, CL_PROGRAM_BUILD_LOG, 0, NULL, &len) == CL_SUCCESS && len > 0) {
        char *full = malloc(len + 1);
        if (full && clGetProgramBuildInfo(*out, ctx->device, CL_PROGRAM_BUILD_LOG, len, full, NULL) == CL_SUCCESS) {
            full[len] = '\0';
            snprintf(log, sizeof log, "%s", trim(full));
        }
        free(full);
    }
    clReleaseProgram(*out);
    *out = NULL;
    return te_errf(err, TE_EPLUGIN, "opencl plugin: building the kernels for %s failed (%s); build log: %s",
                   ctx->device_name, cl_err_name(rc), log[0] ? log : "(empty)");
}

static te_status make_kernel(cl_program prog, const char *name, cl_kernel *k, te_err *err)
{
    cl_int rc;
    *k = clCreateKernel(prog, name, &rc);
    if (rc == CL_SUCCESS)
        return TE_OK;
    *k = NULL;
    return te_errf(err, TE_EPLUGIN, "opencl plugin: kernel %s missing from the program: %s", name, cl_err_name(rc));
}

static int device_has_fp64(cl_device_id d)
{
    cl_device_fp_config fp = 0;
    return clGetDeviceInfo(d, CL_DEVICE_DOUBLE_FP_CONFIG, sizeof fp, &fp, NULL) == CL_SUCCESS && fp != 0;
}

static te_status build_program(te_plugin_ctx *ctx, const ocl_config *cfg, te_err *err)
{
    const char *srcs[TE_OCL_NUM_SOURCES], *main_srcs[TE_OCL_NUM_SOURCES], *limbs_src = NULL;
    char *loaded[TE_OCL_NUM_SOURCES] = { 0 };
    int n_main = 0;
    te_status st = TE_OK;
    char cpath[OCL_PATH_MAX + 64];
    for (int i = 0; i < TE_OCL_NUM_SOURCES; i++) {
        srcs[i] = te_ocl_sources[i];
        if (cfg->kernel_dir[0]) {
            char path[OCL_PATH_MAX + 64];
            size_t len;
            snprintf(path, sizeof path, "%s/%s", cfg->kernel_dir, te_ocl_source_names[i]);
            st = read_file(path, &loaded[i], &len, err);
            if (st != TE_OK)
                goto done;
            srcs[i] = loaded[i];
        }
        if (strcmp(te_ocl_source_names[i], LIMBS_SOURCE) == 0)
            limbs_src = srcs[i];
        else
            main_srcs[n_main++] = srcs[i];
    }
    if (cfg->cache_dir[0]) {
        cache_path(ctx, cfg, main_srcs, n_main, cpath, sizeof cpath);
        load_cached(ctx, cpath);
    }
    if (!ctx->program) {
        st = compile_program(ctx, n_main, main_srcs, ctx->build_opts, &ctx->program, err);
        if (st != TE_OK)
            goto done;
        if (cfg->cache_dir[0])
            save_cached(ctx, cpath);
    }
    static const char *const names[6] = { "te_gemm_conv", "te_depthwise", "te_fc_gemv",
                                          "te_i2f",       "te_im2col_f",  "te_scatter_f" };
    cl_kernel *ks[6] = { &ctx->k_gemm, &ctx->k_dw, &ctx->k_fc, &ctx->k_i2f, &ctx->k_im2col_f, &ctx->k_scatter_f };
    for (int i = 0; i < 6; i++) {
        if ((st = make_kernel(ctx->program, names[i], ks[i], err)) != TE_OK)
            goto done;
        if (i >= 3)
            continue; /* launched with the implementation's choice of work-group size */
        size_t wg = 0, need = i == 0 ? (size_t)(ctx->lx * ctx->ly) : 64;
        cl_int rc = clGetKernelWorkGroupInfo(*ks[i], ctx->device, CL_KERNEL_WORK_GROUP_SIZE, sizeof wg, &wg, NULL);
        if (rc == CL_SUCCESS && wg < need) {
            st = te_errf(err, TE_EPLUGIN, "opencl plugin: device %s allows only %zu work items per group for %s "
                         "(%zu needed)", ctx->device_name, wg, names[i], need);
            goto done;
        }
    }
    /* The DGEMM limb path needs doubles; without them kernel=auto is ulong. */
    if (limbs_src && device_has_fp64(ctx->device)) {
        if ((st = compile_program(ctx, 1, &limbs_src, "", &ctx->limbs_program, err)) != TE_OK)
            goto done;
        if ((st = make_kernel(ctx->limbs_program, "te_im2col_limbs", &ctx->k_im2col_limbs, err)) != TE_OK ||
            (st = make_kernel(ctx->limbs_program, "te_limbs_combine", &ctx->k_combine, err)) != TE_OK)
            goto done;
    }
    if (cfg->kernel == KERNEL_DGEMM && !ctx->k_combine)
        st = te_errf(err, TE_EPLUGIN, "opencl plugin: kernel=dgemm needs double precision (cl_khr_fp64), which %s "
                     "lacks; use kernel=ulong or auto", ctx->device_name);
done:
    for (int i = 0; i < TE_OCL_NUM_SOURCES; i++)
        free(loaded[i]);
    return st;
}

/* ---- create / destroy / caps ------------------------------------------- */

static void ocl_destroy(te_plugin_ctx *ctx)
{
    if (!ctx)
        return;
    if (ctx->in_buf)
        clReleaseMemObject(ctx->in_buf);
    cl_mem bufs[4] = { ctx->out_buf, ctx->col_buf, ctx->cf_buf, ctx->cd_buf };
    for (int i = 0; i < 4; i++)
        if (bufs[i])
            clReleaseMemObject(bufs[i]);
    cl_kernel ks[8] = { ctx->k_gemm, ctx->k_dw, ctx->k_fc, ctx->k_i2f, ctx->k_im2col_f, ctx->k_scatter_f,
                        ctx->k_im2col_limbs, ctx->k_combine };
    for (int i = 0; i < 8; i++)
        if (ks[i])
            clReleaseKernel(ks[i]);
    if (ctx->program)
        clReleaseProgram(ctx->program);
    if (ctx->limbs_program)
        clReleaseProgram(ctx->limbs_program);
    if (ctx->queue)
        clReleaseCommandQueue(ctx->queue);
    if (ctx->context)
        clReleaseContext(ctx->context);
    if (ctx->lock_init)
        pthread_mutex_destroy(&ctx->lock);
    free(ctx);
}

static te_status ocl_create_host(const char *config, const te_plugin_host *host, te_plugin_ctx **out, te_err *err);

static te_status ocl_create(const char *config, te_plugin_ctx **out, te_err *err)
{
    return ocl_create_host(config, NULL, out, err);
}

static te_status ocl_create_host(const char *config, const te_plugin_host *host, te_plugin_ctx **out, te_err *err)
{
    *out = NULL;
    ocl_config cfg;
    te_status st = parse_config(config, &cfg, err);
    if (st != TE_OK)
        return st;
    te_plugin_ctx *ctx = calloc(1, sizeof *ctx);
    if (!ctx)
        return te_errf(err, TE_ENOMEM, "opencl plugin: out of memory");
    if (pthread_mutex_init(&ctx->lock, NULL) != 0) {
        free(ctx);
        return te_errf(err, TE_ENOMEM, "opencl plugin: cannot create a mutex");
    }
    ctx->lock_init = 1;
    st = select_device(&cfg, ctx, err);
    if (st != TE_OK)
        goto fail;

    char dname[80], pname[36];
    device_str(ctx->device, CL_DEVICE_NAME, dname, sizeof dname);
    platform_str(ctx->platform, CL_PLATFORM_NAME, pname, sizeof pname);
    snprintf(ctx->device_name, sizeof ctx->device_name, "%s (OpenCL: %s)", dname, pname);
    cl_ulong gm = 0, ma = 0;
    clGetDeviceInfo(ctx->device, CL_DEVICE_GLOBAL_MEM_SIZE, sizeof gm, &gm, NULL);
    clGetDeviceInfo(ctx->device, CL_DEVICE_MAX_MEM_ALLOC_SIZE, sizeof ma, &ma, NULL);
    ctx->global_mem = gm;
    ctx->max_alloc = ma ? ma : gm;

    cl_int rc;
    cl_context_properties props[] = { CL_CONTEXT_PLATFORM, (cl_context_properties)ctx->platform, 0 };
    ctx->context = clCreateContext(props, 1, &ctx->device, NULL, NULL, &rc);
    if (rc != CL_SUCCESS) {
        ctx->context = NULL;
        st = cl_fail(err, "creating an OpenCL context", rc);
        goto fail;
    }
    ctx->queue = clCreateCommandQueue(ctx->context, ctx->device, 0, &rc);
    if (rc != CL_SUCCESS) {
        ctx->queue = NULL;
        st = cl_fail(err, "creating an OpenCL command queue", rc);
        goto fail;
    }
    ctx->kernel_mode = cfg.kernel;
    ctx->tm = cfg.tm, ctx->tn = cfg.tn, ctx->lx = cfg.lx, ctx->ly = cfg.ly;
    if (cfg.tm != GEMM_TM || cfg.tn != GEMM_TN || cfg.tk != GEMM_TK || cfg.lx != GEMM_LX || cfg.ly != GEMM_LY)
        snprintf(ctx->build_opts, sizeof ctx->build_opts, "-DTE_TM=%ld -DTE_TN=%ld -DTE_TK=%ld -DTE_LX=%ld -DTE_LY=%ld",
                 cfg.tm, cfg.tn, cfg.tk, cfg.lx, cfg.ly);
    st = build_program(ctx, &cfg, err);
    if (st != TE_OK)
        goto fail;
    ctx->host = host;
    te_plugin_log(host, TE_PLUGIN_LOG_INFO, "ready: %s, %.0f MiB, kernel=%s%s", ctx->device_name,
                  (double)ctx->global_mem / 1048576.0,
                  ctx->kernel_mode == KERNEL_AUTO ? "auto" : ctx->kernel_mode == KERNEL_DGEMM ? "dgemm" : "ulong",
                  ctx->limbs_program ? "" : " (no cl_khr_fp64: ulong kernels only)");
    *out = ctx;
    return TE_OK;
fail:
    ocl_destroy(ctx);
    return st;
}

static te_status ocl_caps(te_plugin_ctx *ctx, te_plugin_caps *caps, te_err *err)
{
    memset(caps, 0, sizeof *caps);
    caps->min_ring_bits = 1;
    caps->max_ring_bits = 64;
    caps->max_batch = OCL_MAX_BATCH;
    caps->device_memory = ctx->global_mem;
    snprintf(caps->device_name, sizeof caps->device_name, "%s", ctx->device_name);
    return TE_OK;
}

/* ---- layers ------------------------------------------------------------ */

static te_status check_geom(const te_linear_geom *g, te_err *err)
{
    if (g->kind == TE_LIN_FC) {
        if (g->in_c < 1 || g->out_c < 1)
            return te_errf(err, TE_ESHAPE, "opencl plugin: FC layer with %lld inputs and %lld outputs",
                           (long long)g->in_c, (long long)g->out_c);
        return TE_OK;
    }
    if (g->kind != TE_LIN_CONV)
        return te_errf(err, TE_EUNSUPPORTED, "opencl plugin: unknown linear layer kind %d", (int)g->kind);
    if (g->in_c < 1 || g->in_h < 1 || g->in_w < 1 || g->out_c < 1 || g->out_h < 1 || g->out_w < 1 ||
        g->k_h < 1 || g->k_w < 1 || g->stride_h < 1 || g->stride_w < 1 || g->dil_h < 1 || g->dil_w < 1 ||
        g->group < 1 || g->pad_t < 0 || g->pad_l < 0 || g->pad_b < 0 || g->pad_r < 0)
        return te_errf(err, TE_ESHAPE, "opencl plugin: invalid convolution geometry");
    if (g->in_c % g->group || g->out_c % g->group)
        return te_errf(err, TE_ESHAPE,
                       "opencl plugin: %lld input / %lld output channels not divisible by %lld groups",
                       (long long)g->in_c, (long long)g->out_c, (long long)g->group);
    /* Every index the kernels compute must fit an int. */
    int64_t lim = INT_MAX / 4;
    if (g->in_h > lim || g->in_w > lim || g->out_h > lim || g->out_w > lim || g->k_h > lim || g->k_w > lim ||
        g->stride_h > lim || g->stride_w > lim || g->dil_h > lim || g->dil_w > lim || g->pad_t > lim ||
        g->pad_l > lim || g->out_h * g->stride_h + g->k_h * g->dil_h > lim ||
        g->out_w * g->stride_w + g->k_w * g->dil_w > lim)
        return te_errf(err, TE_EUNSUPPORTED, "opencl plugin: convolution dimensions too large for the kernels");
    return TE_OK;
}

/* ---- buffers and kernel arguments --------------------------------------- */

/* Grow *buf to at least bytes.  zero: fill a new buffer with zeros (cd_buf:
 * CLBlast may read C even with beta = 0, and 0 * NaN would not be 0). */
static te_status ensure_buf(te_plugin_ctx *ctx, cl_mem *buf, size_t *cap, size_t bytes, cl_mem_flags flags, int zero,
                            te_err *err)
{
    if (*buf && *cap >= bytes)
        return TE_OK;
    if (*buf)
        clReleaseMemObject(*buf);
    *buf = NULL;
    *cap = 0;
    if (bytes > ctx->max_alloc)
        return te_errf(err, TE_EINVAL, "opencl plugin: a %zu-byte buffer exceeds the device's largest allocation "
                       "(%llu bytes)", bytes, (unsigned long long)ctx->max_alloc);
    cl_int rc;
    *buf = clCreateBuffer(ctx->context, flags, bytes, NULL, &rc);
    if (rc != CL_SUCCESS) {
        *buf = NULL;
        return cl_fail(err, "allocating a device buffer", rc);
    }
    if (zero) {
        cl_uchar z = 0;
        rc = clEnqueueFillBuffer(ctx->queue, *buf, &z, 1, 0, bytes, 0, NULL, NULL);
        if (rc != CL_SUCCESS) {
            clReleaseMemObject(*buf);
            *buf = NULL;
            return cl_fail(err, "clearing a device buffer", rc);
        }
    }
    *cap = bytes;
    return TE_OK;
}

typedef struct argset {
    cl_kernel k;
    cl_uint i;
    cl_int rc;
} argset;

static void arg_mem(argset *a, cl_mem m)
{
    if (a->rc == CL_SUCCESS)
        a->rc = clSetKernelArg(a->k, a->i, sizeof m, &m);
    a->i++;
}

static void arg_int(argset *a, int64_t v)
{
    cl_int x = (cl_int)v;
    if (a->rc == CL_SUCCESS)
        a->rc = clSetKernelArg(a->k, a->i, sizeof x, &x);
    a->i++;
}

static void arg_ulong(argset *a, uint64_t v)
{
    cl_ulong x = v;
    if (a->rc == CL_SUCCESS)
        a->rc = clSetKernelArg(a->k, a->i, sizeof x, &x);
    a->i++;
}

static size_t round_up(size_t n, size_t m)
{
    return (n + m - 1) / m * m;
}

static te_status blast_fail(te_err *err, const char *what, CLBlastStatusCode code)
{
    return te_errf(err, code == CLBlastOpenCLOutOfHostMemory ? TE_ENOMEM : TE_EPLUGIN,
                   "opencl plugin: CLBlast %s failed (status %d%s)", what, (int)code,
                   code == CLBlastTempBufferAllocFailure || code == CLBlastOpenCLOutOfResources ? ": out of device memory"
                                                                                               : "");
}

/* ---- the DGEMM limb plan --------------------------------------------------- */

/* The widest input limb xb such that K * mw * (2^xb - 1) < 2^53 (at most 52
 * bits); 0 when not even one bit fits. */
static int limb_input_bits(int64_t K, uint64_t mw)
{
    if (mw == 0)
        return 52;
    uint64_t p = (uint64_t)K * mw; /* K < 2^31, mw <= 2^31 */
    if (p >= LIMB_SUM_BOUND)
        return 0;
    uint64_t q = (LIMB_SUM_BOUND - 1) / p; /* 2^xb - 1 <= q */
    int xb = 0;
    while (xb < 52 && (((uint64_t)1 << (xb + 1)) - 1) <= q)
        xb++;
    return xb;
}

/* Choose n_w weight limbs of wb bits (the top one signed) and xb-bit input
 * limbs so that the fewest limb products cover a 64-bit ring; 0 if none. */
static int plan_limbs(te_plugin_layer *L, const int32_t *w, int64_t nw)
{
    int64_t lo = 0, hi = 0;
    for (int64_t i = 0; i < nw; i++) {
        lo = w[i] < lo ? w[i] : lo;
        hi = w[i] > hi ? w[i] : hi;
    }
    int s = 1; /* signed width of the weights */
    while (s < 33 && (lo < -((int64_t)1 << (s - 1)) || hi >= ((int64_t)1 << (s - 1))))
        s++;
    uint64_t maxabs = (uint64_t)(-lo > hi ? -lo : hi);
    int best = 0;
    for (int n_w = 1; n_w <= 4; n_w++) {
        int wb = n_w == 1 ? 64 : (s + n_w - 1) / n_w;
        uint64_t mw = maxabs;
        if (n_w > 1) {
            int top = s - wb * (n_w - 1); /* signed bits left for the top limb */
            if (top < 1)
                break;
            uint64_t low_max = ((uint64_t)1 << wb) - 1, top_max = (uint64_t)1 << (top - 1);
            mw = low_max > top_max ? low_max : top_max;
        }
        int xb = limb_input_bits(L->K, mw);
        if (xb < 1)
            continue;
        int cost = 0;
        for (int j = 0; j < n_w && (int64_t)wb * j < 64; j++)
            cost += (64 - wb * j + xb - 1) / xb;
        if (!best || cost < best) {
            best = cost;
            L->n_w = n_w;
            L->wb = wb;
            L->xb = xb;
        }
    }
    return best != 0;
}

/* Weights split into limbs, uploaded as doubles [group][n_w * ocg][K]. */
static te_status load_limbs(te_plugin_ctx *ctx, te_plugin_layer *L, const int32_t *w, te_err *err)
{
    int64_t nw = L->g.out_c * L->K;
    if (!plan_limbs(L, w, nw))
        return te_errf(err, TE_EUNSUPPORTED, "opencl plugin: no limb split keeps this layer's sums (K = %lld) below "
                       "2^53", (long long)L->K);
    uint64_t bytes = (uint64_t)nw * (uint64_t)L->n_w * sizeof(double);
    if (bytes > ctx->max_alloc || bytes > SIZE_MAX)
        return te_errf(err, TE_EPLUGIN, "opencl plugin: the layer's %d weight limbs (%llu bytes) exceed the "
                       "device's largest buffer", L->n_w, (unsigned long long)bytes);
    double *wd = malloc((size_t)bytes);
    if (!wd)
        return te_errf(err, TE_ENOMEM, "opencl plugin: out of memory for %llu bytes of weight limbs",
                       (unsigned long long)bytes);
    const int64_t M = L->ocg, K = L->K;
    const uint64_t lmask = L->n_w > 1 ? ((uint64_t)1 << L->wb) - 1 : 0;
    for (int64_t g = 0; g < L->g.group; g++)
        for (int64_t o = 0; o < M; o++)
            for (int64_t k = 0; k < K; k++) {
                int64_t r = w[(g * M + o) * K + k];
                for (int j = 0; j < L->n_w; j++) {
                    int64_t limb = r;
                    if (j + 1 < L->n_w) { /* low limbs unsigned; r stays exact */
                        limb = (int64_t)((uint64_t)r & lmask);
                        r = (r - limb) / ((int64_t)1 << L->wb);
                    }
                    wd[((g * L->n_w + j) * M + o) * K + k] = (double)limb;
                }
            }
    cl_int rc;
    L->wd_buf = clCreateBuffer(ctx->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, (size_t)bytes, wd, &rc);
    free(wd);
    if (rc != CL_SUCCESS) {
        L->wd_buf = NULL;
        return cl_fail(err, "uploading the layer's weight limbs", rc);
    }
    return TE_OK;
}

/* ---- the three runs (context lock held) ----------------------------------- */

/* Set the arguments of the ulong kernel for L and enqueue it. */
static cl_int enqueue_layer(te_plugin_ctx *ctx, const te_plugin_layer *L, uint64_t batch, uint64_t mask)
{
    const te_linear_geom *g = &L->g;
    size_t gws[3], lws[3];
    cl_uint dims;
    argset a = { NULL, 0, CL_SUCCESS };
    if (g->kind == TE_LIN_FC && batch <= OCL_FC_GEMV_MAX_BATCH) {
        a.k = ctx->k_fc;
        arg_mem(&a, L->w_buf);
        arg_mem(&a, ctx->in_buf);
        arg_mem(&a, ctx->out_buf);
        arg_int(&a, g->out_c);
        arg_int(&a, L->K);
        arg_ulong(&a, mask);
        dims = 2;
        gws[0] = (size_t)g->out_c * FC_WG;
        gws[1] = (size_t)batch;
        lws[0] = FC_WG;
        lws[1] = 1;
    } else if (L->path == PATH_DEPTHWISE) {
        int64_t total = (int64_t)batch * L->out_len;
        a.k = ctx->k_dw;
        arg_mem(&a, L->w_buf);
        arg_mem(&a, ctx->in_buf);
        arg_mem(&a, ctx->out_buf);
        arg_int(&a, total);
        arg_int(&a, g->out_c);
        arg_int(&a, L->ocg);
        arg_int(&a, L->P);
        arg_int(&a, g->out_w);
        arg_int(&a, g->in_h);
        arg_int(&a, g->in_w);
        arg_int(&a, g->k_h);
        arg_int(&a, g->k_w);
        arg_int(&a, g->stride_h);
        arg_int(&a, g->stride_w);
        arg_int(&a, g->pad_t);
        arg_int(&a, g->pad_l);
        arg_int(&a, g->dil_h);
        arg_int(&a, g->dil_w);
        arg_int(&a, L->in_len);
        arg_ulong(&a, mask);
        dims = 1;
        gws[0] = round_up((size_t)total, DW_WG);
        lws[0] = DW_WG;
    } else {
        int64_t ncols = (int64_t)batch * L->P;
        a.k = ctx->k_gemm;
        arg_mem(&a, L->w_buf);
        arg_mem(&a, L->ktab_buf);
        arg_mem(&a, ctx->in_buf);
        arg_mem(&a, ctx->out_buf);
        arg_int(&a, L->ocg);
        arg_int(&a, ncols);
        arg_int(&a, L->K);
        arg_int(&a, L->P);
        arg_int(&a, g->out_w);
        arg_int(&a, g->in_h);
        arg_int(&a, g->in_w);
        arg_int(&a, L->in_len);
        arg_int(&a, L->out_len);
        arg_int(&a, L->icg * g->in_h * g->in_w);
        arg_int(&a, g->stride_h);
        arg_int(&a, g->stride_w);
        arg_int(&a, g->pad_t);
        arg_int(&a, g->pad_l);
        arg_ulong(&a, mask);
        dims = 3;
        gws[0] = (size_t)((ncols + ctx->tn - 1) / ctx->tn * ctx->lx);
        gws[1] = (size_t)((L->ocg + ctx->tm - 1) / ctx->tm * ctx->ly);
        gws[2] = (size_t)g->group;
        lws[0] = (size_t)ctx->lx;
        lws[1] = (size_t)ctx->ly;
        lws[2] = 1;
    }
    if (a.rc != CL_SUCCESS)
        return a.rc;
    return clEnqueueNDRangeKernel(ctx->queue, a.k, dims, NULL, gws, lws, 0, NULL, NULL);
}

/* The im2col arguments shared by te_im2col_f and te_im2col_limbs (after
 * the three buffers). */
static void im2col_args(argset *a, const te_plugin_layer *L, int64_t ncols)
{
    const te_linear_geom *g = &L->g;
    arg_int(a, ncols);
    arg_int(a, L->K);
    arg_int(a, L->P);
    arg_int(a, g->out_w);
    arg_int(a, g->in_h);
    arg_int(a, g->in_w);
    arg_int(a, L->in_len);
    arg_int(a, L->icg * g->in_h * g->in_w);
    arg_int(a, g->stride_h);
    arg_int(a, g->stride_w);
    arg_int(a, g->pad_t);
    arg_int(a, g->pad_l);
}

static te_status run_ulong_locked(te_plugin_ctx *ctx, te_plugin_layer *L, unsigned l, uint64_t batch,
                                  const uint64_t *in, uint64_t *out, te_err *err)
{
    size_t in_bytes = (size_t)(batch * (uint64_t)L->in_len) * sizeof(cl_ulong);
    size_t out_bytes = (size_t)(batch * (uint64_t)L->out_len) * sizeof(cl_ulong);
    te_status st = ensure_buf(ctx, &ctx->in_buf, &ctx->in_cap, in_bytes, CL_MEM_READ_ONLY, 0, err);
    if (st == TE_OK)
        st = ensure_buf(ctx, &ctx->out_buf, &ctx->out_cap, out_bytes, CL_MEM_READ_WRITE, 0, err);
    if (st != TE_OK)
        return st;
    cl_int rc = clEnqueueWriteBuffer(ctx->queue, ctx->in_buf, CL_FALSE, 0, in_bytes, in, 0, NULL, NULL);
    if (rc != CL_SUCCESS) {
        st = cl_fail(err, "copying the input to the device", rc);
        goto sync;
    }
    rc = enqueue_layer(ctx, L, batch, te_ring_mask(l));
    if (rc != CL_SUCCESS) {
        st = cl_fail(err, "launching the kernel", rc);
        goto sync;
    }
    rc = clEnqueueReadBuffer(ctx->queue, ctx->out_buf, CL_TRUE, 0, out_bytes, out, 0, NULL, NULL);
    if (rc != CL_SUCCESS)
        st = cl_fail(err, "running the kernel / reading the result", rc);
sync:
    /* Never return while the device may still read `in`. */
    clFinish(ctx->queue);
    return st;
}

/* C = A . B for each group: one CLBlast call (strided over the groups). */
static CLBlastStatusCode dgemm_groups(te_plugin_ctx *ctx, size_t groups, size_t m, size_t n, size_t k, cl_mem a,
                                      size_t a_off, size_t lda, size_t a_stride, cl_mem b, size_t ldb, size_t b_stride,
                                      cl_mem c, size_t c_off, size_t ldc, size_t c_stride)
{
    if (groups == 1)
        return CLBlastDgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, m, n, k, 1.0, a, a_off, lda,
                            b, 0, ldb, 0.0, c, c_off, ldc, &ctx->queue, NULL);
    return CLBlastDgemmStridedBatched(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, m, n, k, 1.0, a,
                                      a_off, lda, a_stride, b, 0, ldb, b_stride, 0.0, c, c_off, ldc, c_stride, groups,
                                      &ctx->queue, NULL);
}

static CLBlastStatusCode sgemm_groups(te_plugin_ctx *ctx, size_t groups, size_t m, size_t n, size_t k, cl_mem a,
                                      size_t lda, size_t a_stride, cl_mem b, size_t ldb, size_t b_stride, cl_mem c,
                                      size_t ldc, size_t c_stride)
{
    if (groups == 1)
        return CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, m, n, k, 1.0f, a, 0, lda, b,
                            0, ldb, 0.0f, c, 0, ldc, &ctx->queue, NULL);
    return CLBlastSgemmStridedBatched(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeNo, m, n, k, 1.0f, a,
                                      0, lda, a_stride, b, 0, ldb, b_stride, 0.0f, c, 0, ldc, c_stride, groups,
                                      &ctx->queue, NULL);
}

/* The exact DGEMM limb path: input limbs by im2col on the device, one
 * DGEMM per weight limb over the input limbs it needs, ulong recombination. */
static te_status run_dgemm_locked(te_plugin_ctx *ctx, te_plugin_layer *L, unsigned l, uint64_t batch,
                                  const uint64_t *in, uint64_t *out, te_err *err)
{
    const size_t groups = (size_t)L->g.group, M = (size_t)L->ocg, K = (size_t)L->K;
    const size_t ncols = (size_t)batch * (size_t)L->P;
    const int n_x = ((int)l + L->xb - 1) / L->xb;
    const size_t width = (size_t)n_x * ncols;
    size_t in_bytes = (size_t)(batch * (uint64_t)L->in_len) * sizeof(cl_ulong);
    size_t out_bytes = (size_t)(batch * (uint64_t)L->out_len) * sizeof(cl_ulong);
    double col_n = (double)groups * (double)K * (double)width, cd_n = (double)groups * L->n_w * (double)M * width;
    if (col_n * 8 > (double)ctx->max_alloc || cd_n * 8 > (double)ctx->max_alloc)
        return te_errf(err, TE_EINVAL, "opencl plugin: batch %llu at l = %u needs DGEMM limb buffers beyond the "
                       "device's largest allocation (%llu bytes); use kernel=ulong", (unsigned long long)batch, l,
                       (unsigned long long)ctx->max_alloc);
    te_status st = ensure_buf(ctx, &ctx->in_buf, &ctx->in_cap, in_bytes, CL_MEM_READ_ONLY, 0, err);
    if (st == TE_OK)
        st = ensure_buf(ctx, &ctx->out_buf, &ctx->out_cap, out_bytes, CL_MEM_READ_WRITE, 0, err);
    if (st == TE_OK)
        st = ensure_buf(ctx, &ctx->col_buf, &ctx->col_cap, (size_t)col_n * 8, CL_MEM_READ_WRITE, 0, err);
    if (st == TE_OK)
        st = ensure_buf(ctx, &ctx->cd_buf, &ctx->cd_cap, (size_t)cd_n * 8, CL_MEM_READ_WRITE, 1, err);
    if (st != TE_OK)
        return st;
    cl_int rc = clEnqueueWriteBuffer(ctx->queue, ctx->in_buf, CL_FALSE, 0, in_bytes, in, 0, NULL, NULL);
    if (rc != CL_SUCCESS) {
        st = cl_fail(err, "copying the input to the device", rc);
        goto sync;
    }
    argset a = { ctx->k_im2col_limbs, 0, CL_SUCCESS };
    arg_mem(&a, ctx->in_buf);
    arg_mem(&a, L->ktab_buf);
    arg_mem(&a, ctx->col_buf);
    im2col_args(&a, L, (int64_t)ncols);
    arg_int(&a, L->xb);
    arg_int(&a, n_x);
    size_t gws[3] = { ncols, K, groups };
    if (a.rc == CL_SUCCESS)
        a.rc = clEnqueueNDRangeKernel(ctx->queue, a.k, 3, NULL, gws, NULL, 0, NULL, NULL);
    if (a.rc != CL_SUCCESS) {
        st = cl_fail(err, "launching the limb im2col kernel", a.rc);
        goto sync;
    }
    for (int j = 0; j < L->n_w; j++) {
        int64_t sj = (int64_t)L->wb * j;
        if (sj >= (int64_t)l)
            break;
        size_t nxj = (size_t)(((int64_t)l - sj + L->xb - 1) / L->xb); /* input limbs with shift < l */
        CLBlastStatusCode bc = dgemm_groups(ctx, groups, M, nxj * ncols, K, L->wd_buf, (size_t)j * M * K, K,
                                            (size_t)L->n_w * M * K, ctx->col_buf, width, K * width, ctx->cd_buf,
                                            (size_t)j * M * width, width, (size_t)L->n_w * M * width);
        if (bc != CLBlastSuccess) {
            st = blast_fail(err, "DGEMM", bc);
            goto sync;
        }
    }
    int64_t total = (int64_t)batch * L->out_len;
    argset c = { ctx->k_combine, 0, CL_SUCCESS };
    arg_mem(&c, ctx->cd_buf);
    arg_mem(&c, ctx->out_buf);
    arg_int(&c, total);
    arg_int(&c, L->ocg);
    arg_int(&c, L->P);
    arg_int(&c, L->out_len);
    arg_int(&c, (int64_t)ncols);
    arg_int(&c, n_x);
    arg_int(&c, L->n_w);
    arg_int(&c, L->xb);
    arg_int(&c, L->wb);
    arg_int(&c, l);
    arg_ulong(&c, te_ring_mask(l));
    size_t gt = (size_t)total;
    if (c.rc == CL_SUCCESS)
        c.rc = clEnqueueNDRangeKernel(ctx->queue, c.k, 1, NULL, &gt, NULL, 0, NULL, NULL);
    if (c.rc != CL_SUCCESS) {
        st = cl_fail(err, "launching the limb recombination kernel", c.rc);
        goto sync;
    }
    rc = clEnqueueReadBuffer(ctx->queue, ctx->out_buf, CL_TRUE, 0, out_bytes, out, 0, NULL, NULL);
    if (rc != CL_SUCCESS)
        st = cl_fail(err, "running the DGEMM limb path / reading the result", rc);
sync:
    clFinish(ctx->queue);
    return st;
}

/* The float32 baseline: im2col on the device, CLBlast SGEMM, scatter (FC:
 * SGEMV or SGEMM on the input as it is). */
static te_status run_f32_locked(te_plugin_ctx *ctx, te_plugin_layer *L, uint64_t batch, const float *in, float *out,
                                te_err *err)
{
    const size_t groups = (size_t)L->g.group, M = (size_t)L->ocg, K = (size_t)L->K;
    const size_t ncols = (size_t)batch * (size_t)L->P, nw = (size_t)(L->g.out_c * L->K);
    size_t in_bytes = (size_t)(batch * (uint64_t)L->in_len) * sizeof(float);
    size_t out_bytes = (size_t)(batch * (uint64_t)L->out_len) * sizeof(float);
    double col_bytes = L->g.kind == TE_LIN_FC ? 0 : (double)groups * (double)K * (double)ncols * sizeof(float);
    if (col_bytes > (double)ctx->max_alloc)
        return te_errf(err, TE_EINVAL, "opencl plugin: batch %llu needs a float32 im2col buffer beyond the device's "
                       "largest allocation (%llu bytes)", (unsigned long long)batch,
                       (unsigned long long)ctx->max_alloc);
    cl_int rc;
    te_status st = TE_OK;
    if (!L->wf_buf) {
        L->wf_buf = clCreateBuffer(ctx->context, CL_MEM_READ_WRITE, nw * sizeof(float), NULL, &rc);
        if (rc != CL_SUCCESS) {
            L->wf_buf = NULL;
            return cl_fail(err, "allocating the float32 weights", rc);
        }
        argset a = { ctx->k_i2f, 0, CL_SUCCESS };
        arg_mem(&a, L->w_buf);
        arg_mem(&a, L->wf_buf);
        arg_int(&a, (int64_t)nw);
        if (a.rc == CL_SUCCESS)
            a.rc = clEnqueueNDRangeKernel(ctx->queue, a.k, 1, NULL, &nw, NULL, 0, NULL, NULL);
        if (a.rc != CL_SUCCESS) {
            clReleaseMemObject(L->wf_buf);
            L->wf_buf = NULL;
            clFinish(ctx->queue);
            return cl_fail(err, "converting the weights to float32", a.rc);
        }
    }
    st = ensure_buf(ctx, &ctx->in_buf, &ctx->in_cap, in_bytes, CL_MEM_READ_ONLY, 0, err);
    if (st == TE_OK)
        st = ensure_buf(ctx, &ctx->out_buf, &ctx->out_cap, out_bytes, CL_MEM_READ_WRITE, 0, err);
    if (st == TE_OK && col_bytes > 0)
        st = ensure_buf(ctx, &ctx->col_buf, &ctx->col_cap, (size_t)col_bytes, CL_MEM_READ_WRITE, 0, err);
    if (st == TE_OK && batch > 1 && L->g.kind != TE_LIN_FC)
        st = ensure_buf(ctx, &ctx->cf_buf, &ctx->cf_cap, out_bytes, CL_MEM_READ_WRITE, 0, err);
    if (st != TE_OK)
        goto sync;
    rc = clEnqueueWriteBuffer(ctx->queue, ctx->in_buf, CL_FALSE, 0, in_bytes, in, 0, NULL, NULL);
    if (rc != CL_SUCCESS) {
        st = cl_fail(err, "copying the input to the device", rc);
        goto sync;
    }
    cl_float zero = 0.0f;
    if (L->g.kind == TE_LIN_FC) {
        /* No im2col: SGEMV for one sample, else out = in . W^T straight into
         * the output layout (the output is cleared first, as below). */
        rc = clEnqueueFillBuffer(ctx->queue, ctx->out_buf, &zero, sizeof zero, 0, out_bytes, 0, NULL, NULL);
        if (rc != CL_SUCCESS) {
            st = cl_fail(err, "clearing the float32 output", rc);
            goto sync;
        }
        CLBlastStatusCode fc =
            batch == 1 ? CLBlastSgemv(CLBlastLayoutRowMajor, CLBlastTransposeNo, M, K, 1.0f, L->wf_buf, 0, K,
                                      ctx->in_buf, 0, 1, 0.0f, ctx->out_buf, 0, 1, &ctx->queue, NULL)
                       : CLBlastSgemm(CLBlastLayoutRowMajor, CLBlastTransposeNo, CLBlastTransposeYes, (size_t)batch, M,
                                      K, 1.0f, ctx->in_buf, 0, K, L->wf_buf, 0, K, 0.0f, ctx->out_buf, 0, M,
                                      &ctx->queue, NULL);
        if (fc != CLBlastSuccess) {
            st = blast_fail(err, batch == 1 ? "SGEMV" : "SGEMM", fc);
            goto sync;
        }
        goto read;
    }
    argset a = { ctx->k_im2col_f, 0, CL_SUCCESS };
    arg_mem(&a, ctx->in_buf);
    arg_mem(&a, L->ktab_buf);
    arg_mem(&a, ctx->col_buf);
    im2col_args(&a, L, (int64_t)ncols);
    size_t gws[3] = { ncols, K, groups };
    if (a.rc == CL_SUCCESS)
        a.rc = clEnqueueNDRangeKernel(ctx->queue, a.k, 3, NULL, gws, NULL, 0, NULL, NULL);
    if (a.rc != CL_SUCCESS) {
        st = cl_fail(err, "launching the float32 im2col kernel", a.rc);
        goto sync;
    }
    /* With one sample, C[g][o][pos] is already the output layout.  C is
     * cleared first: CLBlast may read it even with beta = 0. */
    cl_mem C = batch == 1 ? ctx->out_buf : ctx->cf_buf;
    rc = clEnqueueFillBuffer(ctx->queue, C, &zero, sizeof zero, 0, out_bytes, 0, NULL, NULL);
    if (rc != CL_SUCCESS) {
        st = cl_fail(err, "clearing the float32 output", rc);
        goto sync;
    }
    CLBlastStatusCode bc = sgemm_groups(ctx, groups, M, ncols, K, L->wf_buf, K, M * K, ctx->col_buf, ncols,
                                        K * ncols, C, ncols, M * ncols);
    if (bc != CLBlastSuccess) {
        st = blast_fail(err, "SGEMM", bc);
        goto sync;
    }
    if (batch > 1) {
        int64_t total = (int64_t)batch * L->out_len;
        argset c = { ctx->k_scatter_f, 0, CL_SUCCESS };
        arg_mem(&c, ctx->cf_buf);
        arg_mem(&c, ctx->out_buf);
        arg_int(&c, total);
        arg_int(&c, L->ocg);
        arg_int(&c, L->P);
        arg_int(&c, L->out_len);
        arg_int(&c, (int64_t)ncols);
        size_t gt = (size_t)total;
        if (c.rc == CL_SUCCESS)
            c.rc = clEnqueueNDRangeKernel(ctx->queue, c.k, 1, NULL, &gt, NULL, 0, NULL, NULL);
        if (c.rc != CL_SUCCESS) {
            st = cl_fail(err, "launching the float32 scatter kernel", c.rc);
            goto sync;
        }
    }
read:
    rc = clEnqueueReadBuffer(ctx->queue, ctx->out_buf, CL_TRUE, 0, out_bytes, out, 0, NULL, NULL);
    if (rc != CL_SUCCESS)
        st = cl_fail(err, "running SGEMM / reading the result", rc);
sync:
    clFinish(ctx->queue);
    return st;
}

/* ---- layers ------------------------------------------------------------ */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_dbl(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

/* kernel=auto: time both exact paths on this layer (l = 64, batch 1, one
 * warm-up, then AUTO_REPS alternating runs, medians) and keep the faster.
 * A DGEMM path that fails here is not chosen. */
static te_status choose_path(te_plugin_ctx *ctx, te_plugin_layer *L, te_err *err)
{
    uint64_t *x = malloc((size_t)L->in_len * sizeof *x), *y = malloc((size_t)L->out_len * sizeof *y);
    if (!x || !y) {
        free(x);
        free(y);
        return te_errf(err, TE_ENOMEM, "opencl plugin: out of memory timing the layer");
    }
    uint64_t s = 0x9E3779B97F4A7C15ULL;
    for (int64_t i = 0; i < L->in_len; i++) { /* xorshift64: any full-width values */
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = s;
    }
    double tu[AUTO_REPS], td[AUTO_REPS];
    te_status st = TE_OK;
    int dgemm_ok = 1;
    te_err scratch;
    pthread_mutex_lock(&ctx->lock);
    for (int r = -1; r < AUTO_REPS && st == TE_OK; r++) {
        double t0 = now_s();
        st = run_ulong_locked(ctx, L, 64, 1, x, y, err);
        double t1 = now_s();
        if (dgemm_ok && run_dgemm_locked(ctx, L, 64, 1, x, y, &scratch) != TE_OK)
            dgemm_ok = 0;
        double t2 = now_s();
        if (r >= 0)
            tu[r] = t1 - t0, td[r] = t2 - t1;
    }
    pthread_mutex_unlock(&ctx->lock);
    free(x);
    free(y);
    if (st != TE_OK)
        return st;
    qsort(tu, AUTO_REPS, sizeof *tu, cmp_dbl);
    qsort(td, AUTO_REPS, sizeof *td, cmp_dbl);
    L->t_ulong = tu[AUTO_REPS / 2];
    L->t_dgemm = dgemm_ok ? td[AUTO_REPS / 2] : 0;
    L->use_dgemm = dgemm_ok && L->t_dgemm < L->t_ulong;
    return TE_OK;
}

static void ocl_release_layer(te_plugin_ctx *ctx, te_plugin_layer *L)
{
    (void)ctx;
    if (!L)
        return;
    cl_mem bufs[4] = { L->w_buf, L->ktab_buf, L->wf_buf, L->wd_buf };
    for (int i = 0; i < 4; i++)
        if (bufs[i])
            clReleaseMemObject(bufs[i]);
    free(L);
}

static te_status ocl_load_layer(te_plugin_ctx *ctx, const te_linear_geom *geom, const int32_t *w,
                                te_plugin_layer **out, te_err *err)
{
    *out = NULL;
    if (!geom || !w)
        return te_errf(err, TE_EINVAL, "opencl plugin: load_layer() without geometry or weights");
    te_status st = check_geom(geom, err);
    if (st != TE_OK)
        return st;
    te_plugin_layer *L = calloc(1, sizeof *L);
    if (!L)
        return te_errf(err, TE_ENOMEM, "opencl plugin: out of memory loading a layer");
    L->g = *geom;
    if (geom->kind == TE_LIN_FC) {
        /* An FC layer is the 1x1 convolution of an in_c x 1 x 1 input. */
        L->g.in_h = L->g.in_w = L->g.out_h = L->g.out_w = 1;
        L->g.k_h = L->g.k_w = L->g.stride_h = L->g.stride_w = L->g.dil_h = L->g.dil_w = L->g.group = 1;
        L->g.pad_t = L->g.pad_l = L->g.pad_b = L->g.pad_r = 0;
    }
    const te_linear_geom *g = &L->g;
    L->icg = g->in_c / g->group;
    L->ocg = g->out_c / g->group;
    L->K = L->icg * g->k_h * g->k_w;
    L->P = g->out_h * g->out_w;
    L->in_len = g->in_c * g->in_h * g->in_w;
    L->out_len = g->out_c * L->P;
    L->path = (geom->kind == TE_LIN_CONV && L->icg == 1) ? PATH_DEPTHWISE : PATH_GEMM;
    int64_t nw = g->out_c * L->K;
    if (L->K > INT_MAX || nw > INT_MAX || L->in_len > INT_MAX || L->out_len > INT_MAX ||
        g->in_c > INT_MAX || g->out_c > INT_MAX) {
        free(L);
        return te_errf(err, TE_EUNSUPPORTED, "opencl plugin: layer too large for the kernels (%lld weights)",
                       (long long)nw);
    }
    if ((uint64_t)nw * 4 > ctx->max_alloc) {
        free(L);
        return te_errf(err, TE_EPLUGIN, "opencl plugin: %lld weights exceed the device's largest buffer (%llu bytes)",
                       (long long)nw, (unsigned long long)ctx->max_alloc);
    }
    cl_int rc;
    /* CL_MEM_COPY_HOST_PTR only reads the pointer. */
    L->w_buf = clCreateBuffer(ctx->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, (size_t)nw * sizeof(cl_int),
                              (void *)(uintptr_t)w, &rc);
    if (rc != CL_SUCCESS) {
        L->w_buf = NULL;
        st = cl_fail(err, "uploading the layer's weights", rc);
        goto fail;
    }
    /* The tap table: the ulong GEMM's fused gather and both im2col kernels. */
    cl_int *kt = malloc((size_t)L->K * 4 * sizeof *kt);
    if (!kt) {
        st = te_errf(err, TE_ENOMEM, "opencl plugin: out of memory loading a layer");
        goto fail;
    }
    int64_t k = 0, hw = g->in_h * g->in_w;
    for (int64_t ci = 0; ci < L->icg; ci++)
        for (int64_t kh = 0; kh < g->k_h; kh++)
            for (int64_t kw = 0; kw < g->k_w; kw++, k++) {
                kt[4 * k] = (cl_int)(ci * hw);
                kt[4 * k + 1] = (cl_int)(kh * g->dil_h);
                kt[4 * k + 2] = (cl_int)(kw * g->dil_w);
                kt[4 * k + 3] = 0;
            }
    L->ktab_buf = clCreateBuffer(ctx->context, CL_MEM_READ_ONLY | CL_MEM_COPY_HOST_PTR, (size_t)L->K * 4 * sizeof *kt,
                                 kt, &rc);
    free(kt);
    if (rc != CL_SUCCESS) {
        L->ktab_buf = NULL;
        st = cl_fail(err, "uploading the layer's tap table", rc);
        goto fail;
    }
    if (ctx->kernel_mode != KERNEL_ULONG && ctx->k_combine) {
        st = load_limbs(ctx, L, w, err);
        if (st != TE_OK && ctx->kernel_mode == KERNEL_DGEMM)
            goto fail;
        st = TE_OK; /* kernel=auto: a layer the limbs cannot take runs on the ulong kernels */
    }
    if (L->wd_buf && ctx->kernel_mode == KERNEL_DGEMM)
        L->use_dgemm = 1;
    else if (L->wd_buf && (st = choose_path(ctx, L, err)) != TE_OK)
        goto fail;
    if (L->wd_buf && !L->use_dgemm) { /* the ulong kernels won: free the limbs */
        clReleaseMemObject(L->wd_buf);
        L->wd_buf = NULL;
    }
    if (L->t_ulong > 0 && L->t_dgemm > 0)
        te_plugin_log(ctx->host, TE_PLUGIN_LOG_DEBUG, "layer out_c %lld, K %lld: %s (ulong %.3f ms, dgemm %.3f ms)",
                      (long long)g->out_c, (long long)L->K, L->use_dgemm ? "dgemm" : "ulong", L->t_ulong * 1e3,
                      L->t_dgemm * 1e3);
    else
        te_plugin_log(ctx->host, TE_PLUGIN_LOG_DEBUG, "layer out_c %lld, K %lld: %s", (long long)g->out_c,
                      (long long)L->K, L->use_dgemm ? "dgemm" : "ulong");
    *out = L;
    return TE_OK;
fail:
    ocl_release_layer(ctx, L);
    return st;
}

/* ---- run --------------------------------------------------------------- */

static te_status check_batch(const te_plugin_layer *L, uint64_t batch, size_t elem, uint64_t max_alloc, te_err *err)
{
    if (batch > OCL_MAX_BATCH)
        return te_errf(err, TE_EINVAL, "opencl plugin: batch %llu exceeds the maximum %llu",
                       (unsigned long long)batch, (unsigned long long)OCL_MAX_BATCH);
    uint64_t n_in = batch * (uint64_t)L->in_len, n_out = batch * (uint64_t)L->out_len;
    if (n_in > INT_MAX || n_out > INT_MAX)
        return te_errf(err, TE_EINVAL, "opencl plugin: batch %llu is too large for this layer (at most %lld samples)",
                       (unsigned long long)batch,
                       (long long)(INT_MAX / (L->in_len > L->out_len ? L->in_len : L->out_len)));
    if (n_in * elem > max_alloc || n_out * elem > max_alloc)
        return te_errf(err, TE_EINVAL, "opencl plugin: batch %llu needs buffers beyond the device's largest "
                       "allocation (%llu bytes)", (unsigned long long)batch, (unsigned long long)max_alloc);
    return TE_OK;
}

static te_status ocl_run(te_plugin_ctx *ctx, te_plugin_layer *L, unsigned ring_bits, uint64_t batch,
                         const uint64_t *in, uint64_t *out, te_err *err)
{
    if (!L || !in || !out)
        return te_errf(err, TE_EINVAL, "opencl plugin: run() without a layer or buffers");
    if (ring_bits < 1 || ring_bits > 64)
        return te_errf(err, TE_EINVAL, "opencl plugin: ring width %u outside 1..64", ring_bits);
    te_status st = check_batch(L, batch, sizeof(cl_ulong), ctx->max_alloc, err);
    if (st != TE_OK || batch == 0)
        return st;
    pthread_mutex_lock(&ctx->lock);
    st = L->use_dgemm ? run_dgemm_locked(ctx, L, ring_bits, batch, in, out, err)
                      : run_ulong_locked(ctx, L, ring_bits, batch, in, out, err);
    pthread_mutex_unlock(&ctx->lock);
    return st;
}

/* The no-privacy float32 baseline (te_plugin.h): CLBlast SGEMM on this device. */
static te_status ocl_run_f32(te_plugin_ctx *ctx, te_plugin_layer *L, uint64_t batch, const float *in, float *out,
                             te_err *err)
{
    if (!L || !in || !out)
        return te_errf(err, TE_EINVAL, "opencl plugin: run_f32() without a layer or buffers");
    te_status st = check_batch(L, batch, sizeof(float), ctx->max_alloc, err);
    if (st != TE_OK || batch == 0)
        return st;
    pthread_mutex_lock(&ctx->lock);
    st = run_f32_locked(ctx, L, batch, in, out, err);
    pthread_mutex_unlock(&ctx->lock);
    return st;
}

static const te_plugin_ops ocl_ops = {
    .abi_version = TE_PLUGIN_ABI_VERSION,
    .struct_size = sizeof(te_plugin_ops),
    .name = "opencl",
    .create = ocl_create,
    .destroy = ocl_destroy,
    .caps = ocl_caps,
    .load_layer = ocl_load_layer,
    .run = ocl_run,
    .release_layer = ocl_release_layer,
    .run_f32 = ocl_run_f32,
    .create_host = ocl_create_host,
};

__attribute__((visibility("default"))) te_status te_plugin_entry(uint32_t host_abi_version, const te_plugin_ops **ops,
                                                                 te_err *err)
{
    return te_plugin_offer(&ocl_ops, host_abi_version, ops, err);
}
