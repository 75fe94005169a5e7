/* The user-space emulated link (linkemu.h). */
#include "linkemu.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 65536

typedef struct chunk {
    struct chunk *next;
    struct timespec release;
    size_t len;      /* 0: end of stream */
    unsigned char data[];
} chunk;

/* One direction of one connection: a reader queues, a writer delivers. */
typedef struct pipe_dir {
    int src, dst;
    double rate_bps, delay_s;
    double busy_until;  /* when the emulated link finishes sending what it has */
    pthread_mutex_t mu;
    pthread_cond_t cv;
    chunk *head, *tail;
    pthread_t reader, writer;
} pipe_dir;

typedef struct conn {
    struct conn *next;
    int fd[2];          /* [0] downstream (the client), [1] upstream */
    pipe_dir dir[2];    /* [0] client -> upstream, [1] upstream -> client */
    int started;
} conn;

struct te_linkemu {
    int lfd;
    struct sockaddr_in up;
    double rate_bps, delay_s;
    pthread_t acceptor;
    pthread_mutex_t mu;
    conn *conns;
    int stopping;
};

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void push(pipe_dir *d, chunk *c)
{
    pthread_mutex_lock(&d->mu);
    c->next = NULL;
    if (d->tail)
        d->tail->next = c;
    else
        d->head = c;
    d->tail = c;
    pthread_cond_signal(&d->cv);
    pthread_mutex_unlock(&d->mu);
}

static void *reader_main(void *arg)
{
    pipe_dir *d = arg;
    for (;;) {
        chunk *c = malloc(sizeof *c + CHUNK);
        if (!c) { /* the writer waits for an end marker: retry rather than leave it waiting */
            usleep(1000);
            continue;
        }
        ssize_t n = read(d->src, c->data, CHUNK);
        if (n < 0 && errno == EINTR) {
            free(c);
            continue;
        }
        c->len = n > 0 ? (size_t)n : 0;
        /* serialize at the link's rate behind what is already on it, then
         * add the propagation delay */
        double t = now_s();
        double start = d->busy_until > t ? d->busy_until : t;
        d->busy_until = start + (double)c->len * 8.0 / d->rate_bps;
        double rel = d->busy_until + d->delay_s;
        c->release.tv_sec = (time_t)rel;
        c->release.tv_nsec = (long)((rel - (double)c->release.tv_sec) * 1e9);
        push(d, c);
        if (n <= 0)
            break;
    }
    return NULL;
}

static void *writer_main(void *arg)
{
    pipe_dir *d = arg;
    for (;;) {
        pthread_mutex_lock(&d->mu);
        while (!d->head)
            pthread_cond_wait(&d->cv, &d->mu);
        chunk *c = d->head;
        d->head = c->next;
        if (!d->head)
            d->tail = NULL;
        pthread_mutex_unlock(&d->mu);
        while (clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &c->release, NULL) == EINTR)
            ;
        size_t off = 0;
        int ok = 1;
        while (off < c->len) {
            /* MSG_NOSIGNAL: a peer that has gone (a host stopped at the end
             * of a test) ends this direction, not the process by SIGPIPE */
            ssize_t w = send(d->dst, c->data + off, c->len - off, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w <= 0) {
                ok = 0;
                break;
            }
            off += (size_t)w;
        }
        int end = c->len == 0 || !ok;
        free(c);
        if (end) {
            shutdown(d->dst, SHUT_WR);
            break;
        }
    }
    return NULL;
}

static void dir_init(pipe_dir *d, int src, int dst, const te_linkemu *e)
{
    memset(d, 0, sizeof *d);
    d->src = src;
    d->dst = dst;
    d->rate_bps = e->rate_bps;
    d->delay_s = e->delay_s;
    pthread_mutex_init(&d->mu, NULL);
    pthread_cond_init(&d->cv, NULL);
}

static void *acceptor_main(void *arg)
{
    te_linkemu *e = arg;
    for (;;) {
        int cfd = accept(e->lfd, NULL, NULL);
        if (cfd < 0) {
            if (errno == EINTR)
                continue;
            break; /* the listening socket was shut down */
        }
        int ufd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        conn *c = calloc(1, sizeof *c);
        if (ufd < 0 || !c || connect(ufd, (const struct sockaddr *)&e->up, sizeof e->up) != 0) {
            close(cfd);
            if (ufd >= 0)
                close(ufd);
            free(c);
            continue;
        }
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(ufd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->fd[0] = cfd;
        c->fd[1] = ufd;
        dir_init(&c->dir[0], cfd, ufd, e);
        dir_init(&c->dir[1], ufd, cfd, e);
        pthread_mutex_lock(&e->mu);
        int stopping = e->stopping;
        if (!stopping) {
            c->next = e->conns;
            e->conns = c;
            c->started = 1;
            for (int i = 0; i < 2; i++) {
                pthread_create(&c->dir[i].reader, NULL, reader_main, &c->dir[i]);
                pthread_create(&c->dir[i].writer, NULL, writer_main, &c->dir[i]);
            }
        }
        pthread_mutex_unlock(&e->mu);
        if (stopping) {
            close(cfd);
            close(ufd);
            free(c);
            break;
        }
    }
    return NULL;
}

te_status te_linkemu_start(const char *upstream, double rate_mbit, double one_way_ms, char *listen_addr,
                           size_t cap, te_linkemu **out, te_err *err)
{
    *out = NULL;
    char host[64];
    int port = 0;
    const char *colon = strrchr(upstream, ':');
    if (!colon || (size_t)(colon - upstream) >= sizeof host || sscanf(colon + 1, "%d", &port) != 1)
        return te_errf(err, TE_EINVAL, "link emulator: bad upstream address '%s'", upstream);
    memcpy(host, upstream, (size_t)(colon - upstream));
    host[colon - upstream] = '\0';
    te_linkemu *e = calloc(1, sizeof *e);
    if (!e)
        return te_errf(err, TE_ENOMEM, "out of memory");
    e->up.sin_family = AF_INET;
    e->up.sin_port = htons((uint16_t)port);
    e->rate_bps = rate_mbit * 1e6;
    e->delay_s = one_way_ms * 1e-3;
    if (inet_pton(AF_INET, host, &e->up.sin_addr) != 1) {
        free(e);
        return te_errf(err, TE_EINVAL, "link emulator: '%s' is not an IPv4 address", host);
    }
    e->lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_in a;
    memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t alen = sizeof a;
    if (e->lfd < 0 || bind(e->lfd, (struct sockaddr *)&a, sizeof a) != 0 || listen(e->lfd, 64) != 0 ||
        getsockname(e->lfd, (struct sockaddr *)&a, &alen) != 0) {
        te_status st = te_errf(err, TE_EIO, "link emulator: cannot listen: %s", strerror(errno));
        if (e->lfd >= 0)
            close(e->lfd);
        free(e);
        return st;
    }
    pthread_mutex_init(&e->mu, NULL);
    if (pthread_create(&e->acceptor, NULL, acceptor_main, e) != 0) {
        close(e->lfd);
        pthread_mutex_destroy(&e->mu);
        free(e);
        return te_errf(err, TE_ENOMEM, "link emulator: cannot start a thread");
    }
    snprintf(listen_addr, cap, "127.0.0.1:%d", ntohs(a.sin_port));
    *out = e;
    return TE_OK;
}

void te_linkemu_stop(te_linkemu *e)
{
    if (!e)
        return;
    pthread_mutex_lock(&e->mu);
    e->stopping = 1;
    pthread_mutex_unlock(&e->mu);
    shutdown(e->lfd, SHUT_RDWR);
    pthread_join(e->acceptor, NULL);
    close(e->lfd);
    for (conn *c = e->conns, *next; c; c = next) {
        next = c->next;
        shutdown(c->fd[0], SHUT_RDWR);
        shutdown(c->fd[1], SHUT_RDWR);
        for (int i = 0; i < 2; i++) {
            pthread_join(c->dir[i].reader, NULL);
            pthread_join(c->dir[i].writer, NULL);
            for (chunk *k = c->dir[i].head, *kn; k; k = kn) {
                kn = k->next;
                free(k);
            }
            pthread_mutex_destroy(&c->dir[i].mu);
            pthread_cond_destroy(&c->dir[i].cv);
        }
        close(c->fd[0]);
        close(c->fd[1]);
        free(c);
    }
    pthread_mutex_destroy(&e->mu);
    free(e);
}
