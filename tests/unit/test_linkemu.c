/* twinedge-bench's user-space link emulator (tools/bench/linkemu.h): every
 * byte arrives, in order, in both directions, the end of a stream is passed
 * on, and nothing crosses faster than the emulated link allows (a lower
 * bound only: how much slower depends on the machine). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "linkemu.h"

#define N_BYTES (256 * 1024)

static void *echo_main(void *arg)
{
    int lfd = *(int *)arg;
    int c = accept(lfd, NULL, NULL);
    if (c < 0)
        return NULL;
    char buf[8192];
    for (;;) {
        ssize_t n = read(c, buf, sizeof buf);
        if (n <= 0)
            break;
        for (ssize_t off = 0; off < n;) {
            ssize_t w = write(c, buf + off, (size_t)(n - off));
            if (w <= 0)
                goto done;
            off += w;
        }
    }
done:
    shutdown(c, SHUT_WR);
    close(c);
    return NULL;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

typedef struct sender {
    int fd;
    const unsigned char *data;
} sender;

static void *send_main(void *arg)
{
    sender *s = arg;
    for (size_t off = 0; off < N_BYTES;) {
        ssize_t w = write(s->fd, s->data + off, N_BYTES - off);
        if (w <= 0)
            break;
        off += (size_t)w;
    }
    shutdown(s->fd, SHUT_WR);
    return NULL;
}

static void test_echo_through_link(void **state)
{
    (void)state;
    int lfd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    assert_int_equal(bind(lfd, (struct sockaddr *)&a, sizeof a), 0);
    assert_int_equal(listen(lfd, 4), 0);
    assert_int_equal(getsockname(lfd, (struct sockaddr *)&a, &alen), 0);
    char up[64], emu_addr[64];
    snprintf(up, sizeof up, "127.0.0.1:%d", ntohs(a.sin_port));
    pthread_t echo;
    assert_int_equal(pthread_create(&echo, NULL, echo_main, &lfd), 0);

    const double rate_mbit = 20, one_way_ms = 10;
    te_linkemu *e = NULL;
    te_err err;
    te_err_clear(&err);
    assert_int_equal(te_linkemu_start(up, rate_mbit, one_way_ms, emu_addr, sizeof emu_addr, &e, &err), TE_OK);

    unsigned char *data = malloc(N_BYTES), *back = malloc(N_BYTES);
    assert_non_null(data);
    assert_non_null(back);
    uint64_t s = 88172645463325252ULL;
    for (size_t i = 0; i < N_BYTES; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        data[i] = (unsigned char)s;
    }
    int c = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in ea;
    memset(&ea, 0, sizeof ea);
    ea.sin_family = AF_INET;
    ea.sin_port = htons((uint16_t)atoi(strrchr(emu_addr, ':') + 1));
    ea.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    double t0 = now_s();
    assert_int_equal(connect(c, (struct sockaddr *)&ea, sizeof ea), 0);
    sender sd = {c, data};
    pthread_t snd;
    assert_int_equal(pthread_create(&snd, NULL, send_main, &sd), 0);
    size_t got = 0;
    for (;;) {
        ssize_t n = read(c, back + got, N_BYTES - got + (got == N_BYTES));
        if (n <= 0)
            break;
        got += (size_t)n;
        if (got > N_BYTES)
            fail_msg("more bytes came back than were sent");
    }
    double elapsed = now_s() - t0;
    pthread_join(snd, NULL);
    close(c);
    pthread_join(echo, NULL);
    te_linkemu_stop(e);
    close(lfd);

    assert_int_equal(got, N_BYTES);
    assert_memory_equal(data, back, N_BYTES);
    /* the last byte crossed the link twice: serialized up, then both delays */
    double floor_s = (double)N_BYTES * 8 / (rate_mbit * 1e6) + 2 * one_way_ms * 1e-3;
    if (elapsed < floor_s)
        fail_msg("%.3f s through an emulated link that needs at least %.3f s", elapsed, floor_s);
    free(data);
    free(back);
}

static void test_bad_upstream(void **state)
{
    (void)state;
    char addr[64];
    te_linkemu *e = NULL;
    te_err err;
    te_err_clear(&err);
    assert_int_equal(te_linkemu_start("no-port", 1, 1, addr, sizeof addr, &e, &err), TE_EINVAL);
    assert_null(e);
    assert_int_equal(te_linkemu_start("localhost:80", 1, 1, addr, sizeof addr, &e, &err), TE_EINVAL);
    assert_non_null(strstr(err.msg, "IPv4"));
    te_linkemu_stop(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_echo_through_link),
        cmocka_unit_test(test_bad_upstream),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
