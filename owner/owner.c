/* Deployment assembly: build, write, provision, work report. */
#define _XOPEN_SOURCE 700
#include "owner.h"

#include <errno.h>
#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "compile.h"
#include "keys.h"
#include "onnx_import.h"
#include "pki.h"
#include "precision.h"
#include "te_bundle.h"
#include "te_npy.h"

#define BUNDLE_MAX_FILE ((size_t)4 << 30)

void te_owner_options_init(te_owner_options *o)
{
    memset(o, 0, sizeof *o);
    o->weight_bits = 16;
    o->act_bits = 16;
    o->precision = TE_PREC_AUTO;
    o->min_cosine = 0.9999;
    o->headroom = 1;
    o->default_frac_bits = 16;
    o->default_ring_bits = 64;
    o->fuse = TE_FUSE_EMBED;
}

static te_status check_options(const te_owner_options *o, te_err *err)
{
    if (o->weight_bits < 2 || o->weight_bits > 24)
        return te_errf(err, TE_EINVAL, "--weight-bits must be in 2..24, got %d", o->weight_bits);
    if (o->act_bits < 1 || o->act_bits > 40)
        return te_errf(err, TE_EINVAL, "--act-bits must be in 1..40, got %d", o->act_bits);
    if (o->headroom < 0 || o->headroom > 32)
        return te_errf(err, TE_EINVAL, "--headroom must be in 0..32, got %d", o->headroom);
    if (o->precision != TE_PREC_AUTO && o->precision != TE_PREC_FIXED)
        return te_errf(err, TE_EINVAL, "unknown precision mode %d", o->precision);
    /* written so that NaN fails too */
    if (o->precision == TE_PREC_AUTO && !(o->min_cosine > 0 && o->min_cosine < 1))
        return te_errf(err, TE_EINVAL, "--min-cosine must be in (0, 1), got %g", o->min_cosine);
    if (o->fuse < TE_FUSE_NONE || o->fuse > TE_FUSE_EMBED)
        return te_errf(err, TE_EINVAL, "unknown fusion mode %d", o->fuse);
    if (o->default_frac_bits < 0 || o->default_frac_bits > 40 || o->default_ring_bits < 2 ||
        o->default_ring_bits > 64)
        return te_errf(err, TE_EINVAL, "default frac bits must be in 0..40 and ring bits in 2..64");
    return TE_OK;
}

/* Samples in a calibration array: [S, *input] or [S*N, *input[1:]]. */
static te_status calib_samples(const te_shape *in, const te_shape *cs, int64_t *n, te_err *err)
{
    int ok = 0;
    if (cs->ndim == in->ndim + 1) {
        ok = 1;
        for (int j = 0; j < in->ndim; j++)
            ok &= cs->d[j + 1] == in->d[j];
    } else if (cs->ndim == in->ndim && in->ndim >= 1 && in->d[0] > 0 && cs->d[0] % in->d[0] == 0) {
        ok = 1;
        for (int j = 1; j < in->ndim; j++)
            ok &= cs->d[j] == in->d[j];
    }
    int64_t ni = te_shape_numel(in), nc = te_shape_numel(cs);
    if (!ok || ni <= 0 || nc <= 0 || nc % ni) {
        char a[160] = "", b[160] = "";
        size_t oa = 0, ob = 0;
        for (int j = 0; j < in->ndim; j++)
            oa += (size_t)snprintf(a + oa, sizeof a - oa, "%s%lld", j ? "," : "", (long long)in->d[j]);
        for (int j = 0; j < cs->ndim && ob < sizeof b; j++)
            ob += (size_t)snprintf(b + ob, sizeof b - ob, "%s%lld", j ? "," : "", (long long)cs->d[j]);
        return te_errf(err, TE_ESHAPE,
                       "calibration data of shape [%s] does not hold inputs of shape [%s] stacked on axis 0", b, a);
    }
    *n = nc / ni;
    return TE_OK;
}

te_status te_owner_build(const char *onnx_path, const char *calib_npy, const te_owner_options *opt_in,
                         te_model **out, te_err *err)
{
    te_owner_options opt;
    if (opt_in)
        opt = *opt_in;
    else
        te_owner_options_init(&opt);
    *out = NULL;
    te_status st = check_options(&opt, err);
    if (st != TE_OK)
        return st;
    te_model *m = NULL;
    te_import_opts io = {.n_shapes = opt.n_input_shapes, .shapes = opt.input_shapes, .hint = opt.input_hint};
    te_shape cal_shape;
    if (!io.hint && calib_npy) {
        /* open dimensions come from the calibration data's shape */
        float *d = NULL;
        if ((st = te_npy_read(calib_npy, &cal_shape, &d, err)) != TE_OK) {
            te_err_wrap(err, "calibration data");
            return st;
        }
        free(d);
        io.hint = &cal_shape;
        io.hint_stacked = 1;
    }
    if ((st = te_onnx_import_opts(onnx_path, &io, &m, err)) != TE_OK)
        return st;
    if (m->n_layers == 0) {
        te_model_free(m);
        return te_errf(err, TE_EUNSUPPORTED, "%s: the model has no Conv/Gemm/MatMul layer to outsource", onnx_path);
    }
    if (opt.n_norm) {
        const te_shape *in = &m->values[m->input].shape;
        int64_t ch = in->ndim == 4 ? in->d[1] : 0;
        if (ch < 1 || ch > 4 || (opt.n_norm != 1 && opt.n_norm != ch)) {
            st = te_errf(err, TE_EINVAL, "--mean/--std: the model input %s is not an image with %d channel(s)",
                         te_shape_str(in, (char[64]){0}, 64), opt.n_norm);
            goto fail;
        }
        m->pre.present = 1;
        m->pre.channels = (int)ch;
        for (int c = 0; c < ch; c++) {
            int k = opt.n_norm == 1 ? 0 : c;
            if (!(opt.std[k] > 0)) {
                st = te_errf(err, TE_EINVAL, "--std values must be positive");
                goto fail;
            }
            m->pre.mean[c] = opt.mean[k];
            m->pre.std[c] = opt.std[k];
        }
    }
    if ((st = te_owner_quantize(m, opt.weight_bits, err)) != TE_OK || (st = te_owner_make_bounds(m, err)) != TE_OK)
        goto fail;
    te_owner_default_bits(m, &opt);
    if (calib_npy) {
        te_shape cs;
        float *data = NULL;
        int64_t n = 0;
        if ((st = te_npy_read(calib_npy, &cs, &data, err)) != TE_OK)
            goto fail;
        st = calib_samples(&m->values[m->input].shape, &cs, &n, err);
        if (st == TE_OK && opt.precision == TE_PREC_AUTO)
            st = te_owner_auto_precision(m, data, n, &opt, err);
        else if (st == TE_OK)
            st = te_owner_calibrate(m, data, n, &opt, NULL, &m->calib_cosine, err);
        free(data);
        if (st != TE_OK) {
            te_err_wrap(err, "calibration with %s", calib_npy);
            goto fail;
        }
    }
    /* after calibration: the branches' frac and ring bits decide the fused layer's */
    if ((st = te_owner_fuse(m, (te_fuse_mode)opt.fuse, err)) != TE_OK)
        goto fail;
    if ((st = te_owner_deployment_id(m->deployment_id, err)) != TE_OK)
        goto fail;
    *out = m;
    return TE_OK;
fail:
    te_model_free(m);
    return st;
}

static te_status join(char *buf, size_t cap, const char *a, const char *b, te_err *err)
{
    int n = snprintf(buf, cap, "%s/%s", a, b);
    if (n < 0 || (size_t)n >= cap)
        return te_errf(err, TE_EINVAL, "path too long: %s/%s", a, b);
    return TE_OK;
}

static te_status write_bundles(const te_model *m, const char *dir, te_err *err)
{
    char p[PATH_MAX];
    te_status st;
    if ((st = join(p, sizeof p, dir, "device.bundle", err)) || (st = te_device_bundle_write(p, m, err)))
        return st;
    if ((st = join(p, sizeof p, dir, "edge.bundle", err)) || (st = te_edge_bundle_write(p, m, err)))
        return st;
    return TE_OK;
}

static void remove_tmp(const char *tmp)
{
    char p[PATH_MAX];
    static const char *files[] = {"device.bundle", "edge.bundle"};
    for (int k = 0; k < 2; k++)
        if (snprintf(p, sizeof p, "%s/%s", tmp, files[k]) < (int)sizeof p)
            unlink(p);
    rmdir(tmp);
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int file_exists(const char *dir, const char *name)
{
    char p[PATH_MAX];
    return snprintf(p, sizeof p, "%s/%s", dir, name) < (int)sizeof p && access(p, F_OK) == 0;
}

/* The deployment's credentials: a CA in dir/ca unless one is there, and
 * each party's certificate unless it has one (so a CA or certificates the
 * operator brought, and the credentials of running hosts, are kept). */
static te_status ensure_pki(const char *dir, te_err *err)
{
    char ca[PATH_MAX], p[PATH_MAX];
    te_status st;
    if ((st = join(ca, sizeof ca, dir, "ca", err)) != TE_OK)
        return st;
    static const struct { const char *sub, *cn; int host; } parties[] = {
        {"hosts/a", "edge-a", 1}, {"hosts/b", "edge-b", 1}, {"owner", "owner", 0}};
    int missing = 0;
    for (int k = 0; k < 3; k++) {
        if ((st = join(p, sizeof p, dir, parties[k].sub, err)) != TE_OK)
            return st;
        missing |= !file_exists(p, "cert.pem");
    }
    if (!missing)
        return TE_OK;
    if (!file_exists(ca, "ca.pem") && (st = te_pki_init_ca(ca, err)) != TE_OK)
        return st;
    for (int k = 0; k < 3; k++) {
        if ((st = join(p, sizeof p, dir, parties[k].sub, err)) != TE_OK)
            return st;
        if (!file_exists(p, "cert.pem") && (st = te_pki_issue(ca, parties[k].cn, parties[k].host, p, err)) != TE_OK)
            return te_err_wrap(err, "issuing the %s certificate", parties[k].cn);
    }
    return TE_OK;
}

te_status te_owner_write(const te_model *m, const char *out_dir, te_err *err)
{
    struct stat sb;
    int exists = stat(out_dir, &sb) == 0;
    if (exists && !S_ISDIR(sb.st_mode))
        return te_errf(err, TE_EIO, "%s exists and is not a directory", out_dir);
    char tmp[PATH_MAX];
    size_t len = strlen(out_dir);
    while (len > 1 && out_dir[len - 1] == '/')
        len--;
    if (snprintf(tmp, sizeof tmp, "%.*s.tmp-XXXXXX", (int)len, out_dir) >= (int)sizeof tmp)
        return te_errf(err, TE_EINVAL, "path too long: %s", out_dir);
    if (!mkdtemp(tmp))
        return te_errf(err, TE_EIO, "cannot create a directory next to %s: %s", out_dir, strerror(errno));
    /* a new deployment gets its credentials inside the temporary directory,
     * an existing one keeps its CA */
    te_status st = write_bundles(m, tmp, err);
    if (st == TE_OK)
        st = ensure_pki(exists ? out_dir : tmp, err);
    if (st != TE_OK) {
        nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        return st;
    }
    if (rename(tmp, out_dir) == 0)
        return TE_OK;
    if (!exists) {
        st = te_errf(err, TE_EIO, "cannot rename %s to %s: %s", tmp, out_dir, strerror(errno));
        nftw(tmp, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
        return st;
    }
    /* out_dir exists and is not empty (e.g. registered devices): replace the
     * two bundles one by one, each atomically */
    char a[PATH_MAX], b[PATH_MAX];
    static const char *files[] = {"device.bundle", "edge.bundle"};
    for (int k = 0; k < 2 && st == TE_OK; k++) {
        if ((st = join(a, sizeof a, tmp, files[k], err)) || (st = join(b, sizeof b, out_dir, files[k], err)))
            break;
        if (rename(a, b) != 0)
            st = te_errf(err, TE_EIO, "cannot rename %s to %s: %s", a, b, strerror(errno));
    }
    remove_tmp(tmp);
    return st;
}

te_status te_owner_compile(const char *onnx_path, const char *calib_npy, const te_owner_options *opt,
                           const char *out_dir, te_err *err)
{
    te_model *m = NULL;
    te_status st = te_owner_build(onnx_path, calib_npy, opt, &m, err);
    if (st == TE_OK)
        st = te_owner_write(m, out_dir, err);
    te_model_free(m);
    return st;
}

int te_owner_device_name_ok(const char *name)
{
    size_t n = name ? strlen(name) : 0;
    if (n < 1 || n > 63 || !strcmp(name, ".") || !strcmp(name, ".."))
        return 0;
    for (size_t k = 0; k < n; k++) {
        char c = name[k];
        int ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                 c == '.' || c == '-';
        if (!ok)
            return 0;
    }
    return 1;
}

static te_status mkdir_p(const char *path, te_err *err)
{
    char p[PATH_MAX];
    if (snprintf(p, sizeof p, "%s", path) >= (int)sizeof p)
        return te_errf(err, TE_EINVAL, "path too long: %s", path);
    for (char *s = p + 1; *s; s++) {
        if (*s != '/')
            continue;
        *s = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return te_errf(err, TE_EIO, "cannot create %s: %s", p, strerror(errno));
        *s = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        return te_errf(err, TE_EIO, "cannot create %s: %s", p, strerror(errno));
    struct stat sb;
    if (stat(p, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return te_errf(err, TE_EIO, "%s is not a directory", p);
    return TE_OK;
}

static te_status write_key(const char *path, const te_device_key *k, te_err *err)
{
    te_status st = te_device_key_write(path, k, err);
    if (st == TE_OK && chmod(path, 0600) != 0)
        return te_errf(err, TE_EIO, "cannot restrict the permissions of %s: %s", path, strerror(errno));
    return st;
}

/* The deployment's template with this device's own integrity keys: r drawn
 * now, s = W^T r from the edge bundle's weights. */
static te_status device_model(const char *deploy_dir, te_model **out, te_err *err)
{
    char p[PATH_MAX];
    te_model *m = NULL, *edge = NULL;
    te_status st;
    *out = NULL;
    if ((st = join(p, sizeof p, deploy_dir, "device.bundle", err)) || (st = te_device_bundle_read(p, &m, err)))
        goto out;
    if ((st = join(p, sizeof p, deploy_dir, "edge.bundle", err)) || (st = te_edge_bundle_read(p, &edge, err)))
        goto out;
    if (strcmp(m->deployment_id, edge->deployment_id) != 0 || m->n_layers != edge->n_layers) {
        st = te_errf(err, TE_EFORMAT, "device.bundle and edge.bundle in %s are not from one deployment", deploy_dir);
        goto out;
    }
    for (int i = 0; i < m->n_layers; i++) {
        if (memcmp(&m->layers[i].geom, &edge->layers[i].geom, sizeof m->layers[i].geom) != 0) {
            st = te_errf(err, TE_EFORMAT, "layer %d differs between device.bundle and edge.bundle in %s", i,
                         deploy_dir);
            goto out;
        }
        m->layers[i].w = edge->layers[i].w; /* lent for te_owner_make_keys */
    }
    st = te_owner_make_keys(m, err);
    for (int i = 0; i < m->n_layers; i++)
        m->layers[i].w = NULL;
out:
    te_model_free(edge);
    if (st != TE_OK) {
        te_model_free(m);
        m = NULL;
    }
    *out = m;
    return st;
}

te_status te_owner_provision_check(const char *deploy_dir, const char *device_name, const char *device_dir,
                                   te_err *err)
{
    char name[80];
    snprintf(name, sizeof name, "hosts/b/devices/%s.key", device_name ? device_name : "");
    /* a new key for a name in use leaves the device that holds the old one
     * failing every inference with an integrity error, which reads like an
     * attack: replacing it must be asked for */
    if (file_exists(deploy_dir, name))
        return te_errf(err, TE_EINVAL, "device '%s' is already provisioned in %s (%s/%s): provisioning it again draws "
                       "a new key, and the device holding the old one would then fail every inference with an "
                       "integrity error; use --force to replace it (then install the new device directory on "
                       "the device and register it with EdgeB again)", device_name, deploy_dir, deploy_dir, name);
    if (file_exists(device_dir, "device.key"))
        return te_errf(err, TE_EINVAL, "%s already holds a provisioned device (device.key): use --force to replace "
                       "it, or choose another directory", device_dir);
    return TE_OK;
}

te_status te_owner_provision(const char *deploy_dir, const char *device_name, const char *device_dir,
                             te_err *err)
{
    if (!te_owner_device_name_ok(device_name))
        return te_errf(err, TE_EINVAL, "invalid device name '%s' (allowed: [A-Za-z0-9_.-]{1,63})",
                       device_name ? device_name : "");
    char p[PATH_MAX];
    te_model *m = NULL;
    te_device_key key;
    memset(&key, 0, sizeof key);
    te_status st;
    if ((st = device_model(deploy_dir, &m, err)) != TE_OK)
        return st;
    snprintf(key.device_id, sizeof key.device_id, "%s", device_name);
    memcpy(key.deployment_id, m->deployment_id, sizeof key.deployment_id);
    key.deployment_id[32] = '\0';
    if ((st = te_random_bytes(key.key, sizeof key.key, err)) != TE_OK)
        goto out;
    /* the device's directory is its owner's alone (its files hold secrets) */
    if ((st = mkdir_p(device_dir, err)) != TE_OK)
        goto out;
    if (chmod(device_dir, 0700) != 0) {
        st = te_errf(err, TE_EIO, "cannot restrict the permissions of %s: %s", device_dir, strerror(errno));
        goto out;
    }
    if ((st = join(p, sizeof p, device_dir, "device.bundle", err)) || (st = te_device_bundle_write(p, m, err)) ||
        (st = join(p, sizeof p, device_dir, "device.key", err)) || (st = write_key(p, &key, err)))
        goto out;
    char dev_dir[PATH_MAX], name[80];
    snprintf(name, sizeof name, "%s.key", device_name);
    if ((st = join(dev_dir, sizeof dev_dir, deploy_dir, "hosts/b/devices", err)) || (st = mkdir_p(dev_dir, err)) ||
        (st = join(p, sizeof p, dev_dir, name, err)) || (st = write_key(p, &key, err)))
        goto out;
    /* the device's TLS identity, "device:<name>", signed by the deployment CA */
    if ((st = ensure_pki(deploy_dir, err)) != TE_OK || (st = te_pki_device(deploy_dir, device_name, device_dir, err)))
        te_err_wrap(err, "device credentials");
out:
    memset(key.key, 0, sizeof key.key);
    te_model_free(m);
    return st;
}

/* ---- work estimate ---- */

void te_owner_report_compute(const te_model *m, te_owner_report *r)
{
    memset(r, 0, sizeof *r);
    for (int i = 0; i < m->n_nodes; i++) {
        const te_node *n = &m->nodes[i];
        if (n->op <= TE_OP_INVALID || n->op >= TE_OP_COUNT_)
            continue;
        r->op_count[n->op]++;
        double f;
        if (n->op == TE_OP_LINEAR) {
            if (n->layer < 0 || n->layer >= m->n_layers)
                continue;
            const te_linear_geom *g = &m->layers[n->layer].geom;
            double in = (double)(g->batch * te_geom_in_len(g)), out = (double)(g->batch * te_geom_out_len(g));
            r->edge_flops += 2.0 * (double)te_geom_macs(g) * (double)g->batch;
            r->upload_elems += in;
            int nb = m->layers[n->layer].n_branches;
            r->n_source_layers += nb > 1 ? nb : 1;
            r->n_fused += nb > 1;
            /* encode 2 + mask 1 + check 2 per input; unmask 1 + check 2 + decode/bias 2 per output */
            f = 5 * in + 5 * out;
            r->device_linear_flops += f;
            if (g->kind == TE_LIN_CONV)
                r->n_conv++;
            else
                r->n_fc++;
        } else {
            f = te_node_flops(m, n); /* the op's descriptor (te_model.c) */
        }
        r->op_device_flops[n->op] += f;
        r->device_flops += f;
    }
    double total = r->edge_flops + r->device_flops;
    r->outsourcing_rate = total > 0 ? 100.0 * r->edge_flops / total : 0;
}
