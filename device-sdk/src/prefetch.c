#include "prefetch.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/crypto.h>

enum { EMPTY, QUEUED, RUNNING, READY };

typedef struct slot {
    int state;
    int spent; /* taken (or refused) while RUNNING: not READY when done */
    uint8_t key[TE_KEY_BYTES];
    uint64_t t;
    uint32_t layer;
    te_prf_purpose purpose;
    size_t n;
    uint64_t *buf; /* n words when READY; grown by the worker while RUNNING */
    size_t cap;
} slot;

struct te_prefetch {
    pthread_mutex_t mu;
    pthread_cond_t change;
    pthread_t tid;
    pid_t pid; /* a forked child has no worker: it only frees */
    int stop;
    slot s[TE_PREFETCH_SLOTS];
};

static int usable(const te_prefetch *p) { return p && p->pid == getpid(); }

static int generate(slot *s)
{
    if (s->n > s->cap) {
        uint64_t *b = malloc(s->n * sizeof *b);
        if (!b)
            return 0;
        if (s->buf) {
            OPENSSL_cleanse(s->buf, s->cap * sizeof *s->buf);
            free(s->buf);
        }
        s->buf = b;
        s->cap = s->n;
    }
    te_prf_stream ps;
    te_err err;
    te_err_clear(&err);
    int ok = te_prf_stream_open(&ps, s->key, s->t, s->layer, s->purpose, &err) == TE_OK &&
             te_prf_stream_read(&ps, s->buf, s->n, &err) == TE_OK;
    te_prf_stream_close(&ps);
    return ok;
}

static void *worker(void *arg)
{
    te_prefetch *p = arg;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        int k = 0;
        while (k < TE_PREFETCH_SLOTS && p->s[k].state != QUEUED)
            k++;
        if (p->stop)
            break;
        if (k == TE_PREFETCH_SLOTS) {
            pthread_cond_wait(&p->change, &p->mu);
            continue;
        }
        slot *s = &p->s[k];
        s->state = RUNNING;
        /* the slot's fields are the worker's alone while RUNNING */
        pthread_mutex_unlock(&p->mu);
        int ok = generate(s);
        pthread_mutex_lock(&p->mu);
        s->state = ok && !s->spent ? READY : EMPTY;
        pthread_cond_broadcast(&p->change);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

te_prefetch *te_prefetch_new(void)
{
    te_prefetch *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    p->pid = getpid();
    if (pthread_mutex_init(&p->mu, NULL) != 0) {
        free(p);
        return NULL;
    }
    if (pthread_cond_init(&p->change, NULL) != 0) {
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    if (pthread_create(&p->tid, NULL, worker, p) != 0) {
        pthread_cond_destroy(&p->change);
        pthread_mutex_destroy(&p->mu);
        free(p);
        return NULL;
    }
    return p;
}

void te_prefetch_free(te_prefetch *p)
{
    if (!p)
        return;
    if (usable(p)) {
        pthread_mutex_lock(&p->mu);
        p->stop = 1;
        pthread_cond_broadcast(&p->change);
        pthread_mutex_unlock(&p->mu);
        pthread_join(p->tid, NULL);
        pthread_cond_destroy(&p->change);
        pthread_mutex_destroy(&p->mu);
    } /* else a forked child's copy: its worker and lock state stayed in the parent */
    for (int k = 0; k < TE_PREFETCH_SLOTS; k++) {
        /* mask words: with A = x + M on the wire they are as secret as x */
        if (p->s[k].buf)
            OPENSSL_cleanse(p->s[k].buf, p->s[k].cap * sizeof *p->s[k].buf);
        free(p->s[k].buf);
    }
    OPENSSL_cleanse(p, sizeof *p);
    free(p);
}

void te_prefetch_post(te_prefetch *p, int slot_i, const uint8_t key[TE_KEY_BYTES], uint64_t t, uint32_t layer,
                      te_prf_purpose purpose, size_t n)
{
    if (!usable(p) || slot_i < 0 || slot_i >= TE_PREFETCH_SLOTS || n == 0)
        return;
    slot *s = &p->s[slot_i];
    pthread_mutex_lock(&p->mu);
    while (s->state == RUNNING)
        pthread_cond_wait(&p->change, &p->mu);
    memcpy(s->key, key, TE_KEY_BYTES);
    s->t = t;
    s->layer = layer;
    s->purpose = purpose;
    s->n = n;
    s->spent = 0;
    s->state = QUEUED;
    pthread_cond_broadcast(&p->change);
    pthread_mutex_unlock(&p->mu);
}

int te_prefetch_take(te_prefetch *p, int slot_i, const uint8_t key[TE_KEY_BYTES], uint64_t t, uint32_t layer,
                     te_prf_purpose purpose, size_t n, te_prf_stream *ps)
{
    if (!usable(p) || slot_i < 0 || slot_i >= TE_PREFETCH_SLOTS || n == 0)
        return 0;
    slot *s = &p->s[slot_i];
    pthread_mutex_lock(&p->mu);
    int match = s->state != EMPTY && s->t == t && s->layer == layer && s->purpose == purpose && s->n >= n &&
                memcmp(s->key, key, TE_KEY_BYTES) == 0;
    while (match && (s->state == QUEUED || s->state == RUNNING))
        pthread_cond_wait(&p->change, &p->mu);
    match = match && s->state == READY;
    if (match)
        te_prf_stream_open_words(ps, s->buf, n);
    /* once, and not at all after a refusal: the caller made the stream it
     * needed itself */
    if (s->state == RUNNING)
        s->spent = 1;
    else
        s->state = EMPTY;
    pthread_mutex_unlock(&p->mu);
    return match;
}
