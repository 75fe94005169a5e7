/* The host's Prometheus metrics (host/daemon/metrics.c): the exposition text
 * (cumulative buckets, sums, counts, escaped labels, gauges) and its HTTP
 * endpoint, read over a real socket. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <cmocka.h>

#include "metrics.h"

static void has(const char *text, const char *line)
{
    if (!strstr(text, line))
        fail_msg("missing line: %s\n--- in:\n%s", line, text);
}

static void gauges(void *ctx, hostd_gauges *g)
{
    (void)ctx;
    g->open_calls = 3;
    g->devices_connected = 2;
    g->deployments = 1;
    g->devices_registered = 7;
    g->plugin_runs = 4;
    g->requests_batched = 10;
    g->precompute_hits = 2;
    g->precompute_misses = 1;
}

static void test_render(void **state)
{
    (void)state;
    hostd_metrics *m = NULL;
    te_err err;
    assert_int_equal(hostd_metrics_new("1.2.3", "a", "cpu", "x86 \"AVX2\"", &m, &err), TE_OK);
    hostd_metrics_set_gauges(m, gauges, NULL);
    hostd_metrics_call(m, "/twinedge.EdgeHost/Infer", 0, 0.7);   /* 0.0007 s */
    hostd_metrics_call(m, "/twinedge.EdgeHost/Infer", 0, 30.0);  /* 0.03 s */
    hostd_metrics_call(m, "/twinedge.EdgeHost/Infer", 7, 1.0);
    hostd_metrics_error(m, "replay");
    hostd_metrics_layer(m, "a", "d0", 3, 2.0);
    size_t len = 0;
    char *t = hostd_metrics_render(m, &len);
    assert_non_null(t);
    assert_int_equal(strlen(t), len);
    has(t, "twinedge_build_info{version=\"1.2.3\",role=\"a\",plugin=\"cpu\",plugin_device=\"x86 \\\"AVX2\\\"\"} 1\n");
    has(t, "# TYPE twinedge_calls_total counter\n");
    has(t, "twinedge_calls_total{method=\"/twinedge.EdgeHost/Infer\",code=\"OK\"} 2\n");
    has(t, "twinedge_calls_total{method=\"/twinedge.EdgeHost/Infer\",code=\"PERMISSION_DENIED\"} 1\n");
    /* cumulative: 0.0007 s is in le=0.001 and up, 0.001 s too, 0.03 s from le=0.05 */
    has(t, "twinedge_call_seconds_bucket{method=\"/twinedge.EdgeHost/Infer\",le=\"0.0005\"} 0\n");
    has(t, "twinedge_call_seconds_bucket{method=\"/twinedge.EdgeHost/Infer\",le=\"0.001\"} 2\n");
    has(t, "twinedge_call_seconds_bucket{method=\"/twinedge.EdgeHost/Infer\",le=\"0.025\"} 2\n");
    has(t, "twinedge_call_seconds_bucket{method=\"/twinedge.EdgeHost/Infer\",le=\"0.05\"} 3\n");
    has(t, "twinedge_call_seconds_bucket{method=\"/twinedge.EdgeHost/Infer\",le=\"+Inf\"} 3\n");
    has(t, "twinedge_call_seconds_count{method=\"/twinedge.EdgeHost/Infer\"} 3\n");
    has(t, "twinedge_call_seconds_sum{method=\"/twinedge.EdgeHost/Infer\"} 0.0317\n");
    has(t, "twinedge_errors_total{kind=\"PERMISSION_DENIED\"} 1\n");
    has(t, "twinedge_errors_total{kind=\"replay\"} 1\n");
    has(t, "twinedge_layer_seconds_bucket{role=\"a\",deployment=\"d0\",layer=\"3\",le=\"0.0025\"} 1\n");
    has(t, "# TYPE twinedge_plugin_runs_total counter\ntwinedge_plugin_runs_total 4\n");
    has(t, "twinedge_requests_batched_total 10\n");
    has(t, "twinedge_precompute_hits_total 2\n");
    has(t, "twinedge_precompute_misses_total 1\n");
    has(t, "twinedge_open_calls 3\n");
    has(t, "twinedge_devices_connected 2\n");
    has(t, "twinedge_devices_registered 7\n");
    /* a label value cannot end a line or a string early */
    hostd_metrics_error(m, "a\"b\nc\\");
    free(t);
    t = hostd_metrics_render(m, &len);
    has(t, "twinedge_errors_total{kind=\"a\\\"b\\nc\\\\\"} 1\n");
    free(t);
    hostd_metrics_free(m);
}

/* GET PATH from 127.0.0.1:port; the whole answer, malloc'd. */
static char *http_get(int port, const char *method, const char *path)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fd >= 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(connect(fd, (struct sockaddr *)&a, sizeof a), 0);
    char req[256];
    int n = snprintf(req, sizeof req, "%s %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", method, path);
    assert_int_equal(write(fd, req, (size_t)n), n);
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    ssize_t r;
    while ((r = read(fd, buf + len, cap - len - 1)) > 0)
        len += (size_t)r;
    buf[len] = 0;
    close(fd);
    return buf;
}

static void test_http(void **state)
{
    (void)state;
    hostd_metrics *m = NULL;
    te_err err;
    assert_int_equal(hostd_metrics_new("1.2.3", "b", "cpu", "", &m, &err), TE_OK);
    hostd_metrics_error(m, "replay");
    int port = 0;
    assert_int_equal(hostd_metrics_listen(m, "127.0.0.1:0", &port, &err), TE_OK);
    assert_true(port > 0);
    char *r = http_get(port, "GET", "/metrics");
    has(r, "HTTP/1.1 200");
    has(r, "Content-Type: text/plain; version=0.0.4");
    has(r, "twinedge_errors_total{kind=\"replay\"} 1\n");
    free(r);
    r = http_get(port, "GET", "/");
    has(r, "HTTP/1.1 404");
    free(r);
    r = http_get(port, "POST", "/metrics");
    has(r, "HTTP/1.1 405");
    free(r);
    /* the same port twice: a clear error */
    hostd_metrics *m2 = NULL;
    assert_int_equal(hostd_metrics_new("1.2.3", "b", "cpu", "", &m2, &err), TE_OK);
    char listen[64];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", port);
    assert_int_equal(hostd_metrics_listen(m2, listen, NULL, &err), TE_EIO);
    assert_non_null(strstr(err.msg, listen));
    assert_int_equal(hostd_metrics_listen(m2, "no-port", NULL, &err), TE_EINVAL);
    hostd_metrics_free(m2);
    hostd_metrics_free(m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_render),
        cmocka_unit_test(test_http),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
