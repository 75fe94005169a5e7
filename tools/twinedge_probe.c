/* twinedge-probe: asks a twinedge-host for its health (grpc.health.v1
 * Check) over mutual TLS, for service managers and Kubernetes exec probes.
 * Kubelet's own gRPC probe cannot present a client certificate, and hosts
 * answer authenticated callers only. */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>

#include "health.pb-c.h"
#include "te_net.h"
#include "te_net_transport.h"
#include "twinedge_version.h"

enum { PROBE_SERVING = 0, PROBE_NOT_SERVING = 1, PROBE_ERROR = 2 };

static void usage(FILE *f)
{
    fprintf(f,
            "usage: twinedge-probe --target HOST:PORT --credentials DIR [--server-name edge-a|edge-b]\n"
            "                      [--live] [--timeout-ms N] [--quiet] [--watch N] [--version]\n"
            "\n"
            "Asks the host at TARGET for its health over mutual TLS (DIR holds ca.pem, cert.pem,\n"
            "key.pem: a certificate of the deployment, e.g. the host's own). The host's\n"
            "certificate must carry --server-name (default: the common name of DIR/cert.pem).\n"
            "Exit status: 0 serving; 1 answering but not serving (no deployment, or EdgeA\n"
            "without its EdgeB); 2 no answer (unreachable, refused credentials, timeout).\n"
            "--live: 0 whenever the host answers (a liveness probe: a host that is up but\n"
            "not ready must not be restarted for it).\n"
            "--watch N: follow the host's health (grpc.health.v1 Watch) and print each status\n"
            "it reports, until N have come or --timeout-ms has passed; exit 0 once N came.\n");
}

/* The common name of the probe's own certificate: a host probing itself
 * with its own credentials expects its own name (edge-a or edge-b). */
static int own_name(const te_net_creds *c, char *name, int cap)
{
    BIO *b = c->cert_pem ? BIO_new_mem_buf(c->cert_pem, -1) : NULL;
    X509 *x = b ? PEM_read_bio_X509(b, NULL, NULL, NULL) : NULL;
    int n = x ? X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, name, cap) : -1;
    X509_free(x);
    BIO_free(b);
    return n > 0;
}

static const char *status_name(int st)
{
    return st == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING        ? "SERVING"
           : st == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING ? "NOT_SERVING"
                                                                                         : "UNKNOWN";
}

/* Follow Watch until n statuses have come: 0, else PROBE_ERROR. */
static int watch_health(const te_net_channel_config *cc, const char *target, const uint8_t *req, size_t req_len,
                        int n, int timeout_ms, int quiet)
{
    te_err err;
    te_net_channel *ch = NULL;
    te_net_stream *s = NULL;
    int got = 0;
    uint8_t *resp = NULL;
    size_t len = 0;
    te_status st = te_net_channel_new(cc, &ch, &err);
    if (st == TE_OK)
        st = te_net_stream_open(ch, TE_SVC_HEALTH_WATCH, timeout_ms, &s, &err);
    if (st == TE_OK)
        st = te_net_stream_exchange(s, req, req_len, &resp, &len, &err);
    while (st == TE_OK) {
        Grpc__Health__V1__HealthCheckResponse *r = grpc__health__v1__health_check_response__unpack(NULL, len, resp);
        free(resp);
        resp = NULL;
        if (!r) {
            st = te_errf(&err, TE_EFORMAT, "malformed health answer");
            break;
        }
        if (!quiet)
            printf("%s: %s\n", target, status_name(r->status));
        fflush(stdout);
        grpc__health__v1__health_check_response__free_unpacked(r, NULL);
        if (++got >= n)
            break;
        st = te_net_stream_recv(s, &resp, &len, &err);
    }
    if (st != TE_OK)
        fprintf(stderr, "twinedge-probe: %s: %s\n", target, err.msg);
    free(resp);
    te_net_stream_free(s);
    te_net_channel_free(ch);
    return got >= n ? PROBE_SERVING : PROBE_ERROR;
}

int main(int argc, char **argv)
{
    const char *target = NULL, *dir = NULL, *name = NULL;
    int live = 0, quiet = 0, timeout_ms = 2000, watch = 0;
    enum { O_TARGET = 256, O_CREDS, O_NAME, O_LIVE, O_TIMEOUT, O_QUIET, O_WATCH, O_VERSION };
    static const struct option opts[] = {{"target", required_argument, NULL, O_TARGET},
                                         {"credentials", required_argument, NULL, O_CREDS},
                                         {"server-name", required_argument, NULL, O_NAME},
                                         {"live", no_argument, NULL, O_LIVE},
                                         {"timeout-ms", required_argument, NULL, O_TIMEOUT},
                                         {"quiet", no_argument, NULL, O_QUIET},
                                         {"watch", required_argument, NULL, O_WATCH},
                                         {"version", no_argument, NULL, O_VERSION},
                                         {"help", no_argument, NULL, 'h'},
                                         {NULL, 0, NULL, 0}};
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case O_TARGET: target = optarg; break;
        case O_CREDS: dir = optarg; break;
        case O_NAME: name = optarg; break;
        case O_LIVE: live = 1; break;
        case O_TIMEOUT: timeout_ms = atoi(optarg); break;
        case O_QUIET: quiet = 1; break;
        case O_WATCH: watch = atoi(optarg); break;
        case O_VERSION: printf("twinedge-probe %s\n", TWINEDGE_VERSION_STRING); return 0;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return PROBE_ERROR;
        }
    }
    if (optind != argc || !target || !dir || timeout_ms <= 0) {
        usage(stderr);
        return PROBE_ERROR;
    }
    te_err err;
    te_net_creds creds;
    te_net_channel *ch = NULL;
    uint8_t *resp = NULL;
    size_t len = 0;
    int rc = PROBE_ERROR;
    if (te_net_creds_load(dir, &creds, &err) != TE_OK) {
        fprintf(stderr, "twinedge-probe: %s\n", err.msg);
        return PROBE_ERROR;
    }
    char cn[256];
    if (!name) {
        if (!own_name(&creds, cn, (int)sizeof cn)) {
            fprintf(stderr, "twinedge-probe: %s/cert.pem has no common name: give --server-name\n", dir);
            te_net_creds_free(&creds);
            return PROBE_ERROR;
        }
        name = cn;
    }
    te_net_channel_config cc = {target, &creds, name, 0};
    Grpc__Health__V1__HealthCheckRequest q = GRPC__HEALTH__V1__HEALTH_CHECK_REQUEST__INIT;
    q.service = (char *)"twinedge.EdgeHost";
    uint8_t req[64];
    size_t req_len = grpc__health__v1__health_check_request__pack(&q, req);
    if (watch > 0) {
        rc = watch_health(&cc, target, req, req_len, watch, timeout_ms, quiet);
        te_net_creds_free(&creds);
        return rc;
    }
    if (te_net_channel_new(&cc, &ch, &err) != TE_OK ||
        te_net_unary(ch, TE_SVC_HEALTH_CHECK, req, req_len, &resp, &len, timeout_ms, &err) != TE_OK) {
        fprintf(stderr, "twinedge-probe: %s: %s\n", target, err.msg);
        goto done;
    }
    Grpc__Health__V1__HealthCheckResponse *r = grpc__health__v1__health_check_response__unpack(NULL, len, resp);
    if (!r) {
        fprintf(stderr, "twinedge-probe: %s: malformed health answer\n", target);
        goto done;
    }
    int serving = r->status == GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING;
    grpc__health__v1__health_check_response__free_unpacked(r, NULL);
    if (!quiet)
        printf("%s: %s\n", target, serving ? "SERVING" : "NOT_SERVING");
    rc = serving || live ? PROBE_SERVING : PROBE_NOT_SERVING;
done:
    free(resp);
    te_net_channel_free(ch);
    te_net_creds_free(&creds);
    te_net_quiesce(TE_NET_QUIESCE_MS); /* gRPC's threads done before exit (te_net.h) */
    return rc;
}
