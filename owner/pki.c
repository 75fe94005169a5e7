/* The deployment CA with OpenSSL 3 (EC P-256, X.509 v3). */
#include "pki.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#define PKI_DAYS 3650L

static te_status ssl_err(te_err *err, const char *what)
{
    char buf[256];
    unsigned long e = ERR_get_error();
    ERR_error_string_n(e, buf, sizeof buf);
    ERR_clear_error();
    return te_errf(err, TE_EIO, "%s: %s", what, e ? buf : "OpenSSL error");
}

static te_status path_join(char *out, size_t cap, const char *dir, const char *name, te_err *err)
{
    if ((size_t)snprintf(out, cap, "%s/%s", dir, name) >= cap)
        return te_errf(err, TE_EINVAL, "path too long: %s/%s", dir, name);
    return TE_OK;
}

static te_status mkdir_p(const char *dir, te_err *err)
{
    char p[4096];
    if ((size_t)snprintf(p, sizeof p, "%s", dir) >= sizeof p)
        return te_errf(err, TE_EINVAL, "path too long: %s", dir);
    for (char *c = p + 1; *c; c++) {
        if (*c != '/')
            continue;
        *c = '\0';
        if (mkdir(p, 0755) != 0 && errno != EEXIST)
            return te_errf(err, TE_EIO, "cannot create %s: %s", p, strerror(errno));
        *c = '/';
    }
    if (mkdir(p, 0755) != 0 && errno != EEXIST)
        return te_errf(err, TE_EIO, "cannot create %s: %s", p, strerror(errno));
    return TE_OK;
}

/* Write a PEM object to path (mode 0600 for keys), replacing it. */
static te_status write_pem(const char *path, const X509 *cert, const EVP_PKEY *key, te_err *err)
{
    char tmp[4200];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
        return te_errf(err, TE_EINVAL, "path too long: %s", path);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, key ? 0600 : 0644);
    if (fd < 0)
        return te_errf(err, TE_EIO, "cannot write %s: %s", tmp, strerror(errno));
    FILE *f = fdopen(fd, "w");
    if (!f) {
        close(fd);
        unlink(tmp);
        return te_errf(err, TE_EIO, "cannot write %s: %s", tmp, strerror(errno));
    }
    int ok = key ? PEM_write_PrivateKey(f, key, NULL, NULL, 0, NULL, NULL) : PEM_write_X509(f, cert);
    if (fclose(f) != 0)
        ok = 0;
    if (!ok || rename(tmp, path) != 0) {
        unlink(tmp);
        return ok ? te_errf(err, TE_EIO, "cannot write %s: %s", path, strerror(errno)) : ssl_err(err, path);
    }
    return TE_OK;
}

static te_status read_ca(const char *ca_dir, X509 **cert, EVP_PKEY **key, te_err *err)
{
    char p[4096];
    te_status st;
    *cert = NULL;
    *key = NULL;
    if ((st = path_join(p, sizeof p, ca_dir, "ca.pem", err)) != TE_OK)
        return st;
    FILE *f = fopen(p, "r");
    if (!f)
        return te_errf(err, TE_EIO, "cannot read the CA certificate %s: %s", p, strerror(errno));
    *cert = PEM_read_X509(f, NULL, NULL, NULL);
    fclose(f);
    if (!*cert)
        return ssl_err(err, p);
    if ((st = path_join(p, sizeof p, ca_dir, "ca.key", err)) != TE_OK)
        goto fail;
    f = fopen(p, "r");
    if (!f) {
        st = te_errf(err, TE_EIO, "cannot read the CA key %s: %s", p, strerror(errno));
        goto fail;
    }
    *key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
    fclose(f);
    if (!*key) {
        st = ssl_err(err, p);
        goto fail;
    }
    return TE_OK;
fail:
    X509_free(*cert);
    *cert = NULL;
    return st;
}

static int add_ext(X509 *cert, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, cert, NULL, NULL, 0);
    X509_EXTENSION *ext = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!ext)
        return 0;
    int ok = X509_add_ext(cert, ext, -1);
    X509_EXTENSION_free(ext);
    return ok;
}

/* A certificate for key with subject CN=cn; self-signed when issuer is NULL. */
static X509 *make_cert(EVP_PKEY *key, const char *cn, X509 *issuer, EVP_PKEY *issuer_key, const char *san,
                       int is_ca)
{
    X509 *c = X509_new();
    if (!c)
        return NULL;
    unsigned char serial[16];
    BIGNUM *bn = NULL;
    int ok = RAND_bytes(serial, sizeof serial) == 1;
    serial[0] &= 0x7f;
    ok = ok && (bn = BN_bin2bn(serial, sizeof serial, NULL)) != NULL;
    ok = ok && X509_set_version(c, 2) && BN_to_ASN1_INTEGER(bn, X509_get_serialNumber(c));
    BN_free(bn);
    ok = ok && X509_gmtime_adj(X509_getm_notBefore(c), -3600) && X509_gmtime_adj(X509_getm_notAfter(c), 86400L * PKI_DAYS);
    ok = ok && X509_set_pubkey(c, key);
    X509_NAME *name = X509_get_subject_name(c);
    ok = ok && X509_NAME_add_entry_by_txt(name, "O", MBSTRING_ASC, (const unsigned char *)"twinedge", -1, -1, 0);
    ok = ok && X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_UTF8, (const unsigned char *)cn, -1, -1, 0);
    ok = ok && X509_set_issuer_name(c, issuer ? X509_get_subject_name(issuer) : name);
    X509 *iss = issuer ? issuer : c;
    if (is_ca) {
        ok = ok && add_ext(c, iss, NID_basic_constraints, "critical,CA:TRUE,pathlen:0") &&
             add_ext(c, iss, NID_key_usage, "critical,keyCertSign,cRLSign");
    } else {
        ok = ok && add_ext(c, iss, NID_basic_constraints, "critical,CA:FALSE") &&
             add_ext(c, iss, NID_key_usage, "critical,digitalSignature,keyAgreement") &&
             add_ext(c, iss, NID_ext_key_usage, "serverAuth,clientAuth");
        if (san)
            ok = ok && add_ext(c, iss, NID_subject_alt_name, san);
    }
    ok = ok && add_ext(c, iss, NID_subject_key_identifier, "hash");
    if (issuer)
        ok = ok && add_ext(c, iss, NID_authority_key_identifier, "keyid:always");
    ok = ok && X509_sign(c, issuer_key ? issuer_key : key, EVP_sha256()) > 0;
    if (!ok) {
        X509_free(c);
        return NULL;
    }
    return c;
}

te_status te_pki_init_ca(const char *dir, te_err *err)
{
    char cp[4096], kp[4096];
    te_status st;
    if ((st = mkdir_p(dir, err)) != TE_OK || (st = path_join(cp, sizeof cp, dir, "ca.pem", err)) != TE_OK ||
        (st = path_join(kp, sizeof kp, dir, "ca.key", err)) != TE_OK)
        return st;
    if (access(cp, F_OK) == 0 || access(kp, F_OK) == 0)
        return te_errf(err, TE_EINVAL, "%s already holds a CA", dir);
    EVP_PKEY *key = EVP_EC_gen("P-256");
    if (!key)
        return ssl_err(err, "generating the CA key");
    X509 *cert = make_cert(key, "twinedge deployment CA", NULL, NULL, NULL, 1);
    if (!cert)
        st = ssl_err(err, "creating the CA certificate");
    else if ((st = write_pem(kp, NULL, key, err)) == TE_OK)
        st = write_pem(cp, cert, NULL, err);
    X509_free(cert);
    EVP_PKEY_free(key);
    return st;
}

static te_status copy_file(const char *from, const char *to, te_err *err)
{
    FILE *in = fopen(from, "rb");
    if (!in)
        return te_errf(err, TE_EIO, "cannot read %s: %s", from, strerror(errno));
    X509 *c = PEM_read_X509(in, NULL, NULL, NULL);
    fclose(in);
    if (!c)
        return ssl_err(err, from);
    te_status st = write_pem(to, c, NULL, err);
    X509_free(c);
    return st;
}

te_status te_pki_issue(const char *ca_dir, const char *cn, int is_host, const char *out_dir, te_err *err)
{
    if (!cn || !*cn || strlen(cn) > 64)
        return te_errf(err, TE_EINVAL, "a certificate name must have 1..64 characters");
    for (const char *c = cn; *c; c++)
        if (!((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
              strchr("-_.:", *c)))
            return te_errf(err, TE_EINVAL, "certificate name '%s' has characters other than [A-Za-z0-9-_.:]", cn);
    X509 *ca = NULL;
    EVP_PKEY *ca_key = NULL;
    te_status st = read_ca(ca_dir, &ca, &ca_key, err);
    if (st != TE_OK)
        return st;
    EVP_PKEY *key = NULL;
    X509 *cert = NULL;
    char p[4096], san[256];
    snprintf(san, sizeof san, "DNS:%s,DNS:localhost,IP:127.0.0.1", cn);
    if ((st = mkdir_p(out_dir, err)) != TE_OK)
        goto out;
    if (!(key = EVP_EC_gen("P-256"))) {
        st = ssl_err(err, "generating a key");
        goto out;
    }
    if (!(cert = make_cert(key, cn, ca, ca_key, is_host ? san : NULL, 0))) {
        st = ssl_err(err, "signing a certificate");
        goto out;
    }
    if ((st = path_join(p, sizeof p, out_dir, "key.pem", err)) != TE_OK ||
        (st = write_pem(p, NULL, key, err)) != TE_OK || (st = path_join(p, sizeof p, out_dir, "cert.pem", err)) != TE_OK ||
        (st = write_pem(p, cert, NULL, err)) != TE_OK)
        goto out;
    char from[4096];
    if ((st = path_join(from, sizeof from, ca_dir, "ca.pem", err)) != TE_OK ||
        (st = path_join(p, sizeof p, out_dir, "ca.pem", err)) != TE_OK)
        goto out;
    st = copy_file(from, p, err);
out:
    X509_free(cert);
    EVP_PKEY_free(key);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return st;
}

te_status te_pki_deployment(const char *deploy_dir, te_err *err)
{
    char ca[4096], a[4096], b[4096], o[4096], cap[4200];
    te_status st;
    if ((st = path_join(ca, sizeof ca, deploy_dir, "ca", err)) != TE_OK ||
        (st = path_join(a, sizeof a, deploy_dir, "hosts/a", err)) != TE_OK ||
        (st = path_join(b, sizeof b, deploy_dir, "hosts/b", err)) != TE_OK ||
        (st = path_join(o, sizeof o, deploy_dir, "owner", err)) != TE_OK ||
        (st = path_join(cap, sizeof cap, ca, "ca.pem", err)) != TE_OK)
        return st;
    if (access(cap, F_OK) != 0 && (st = te_pki_init_ca(ca, err)) != TE_OK)
        return st;
    if ((st = te_pki_issue(ca, "edge-a", 1, a, err)) != TE_OK || (st = te_pki_issue(ca, "edge-b", 1, b, err)) != TE_OK)
        return st;
    return te_pki_issue(ca, "owner", 0, o, err);
}

te_status te_pki_device(const char *deploy_dir, const char *name, const char *device_dir, te_err *err)
{
    char ca[4096], tls[4096], cn[80];
    te_status st;
    if ((size_t)snprintf(cn, sizeof cn, "device:%s", name) >= sizeof cn)
        return te_errf(err, TE_EINVAL, "device name too long");
    if ((st = path_join(ca, sizeof ca, deploy_dir, "ca", err)) != TE_OK ||
        (st = path_join(tls, sizeof tls, device_dir, "tls", err)) != TE_OK)
        return st;
    return te_pki_issue(ca, cn, 0, tls, err);
}
