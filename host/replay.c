#include "replay.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* One session: the counter it is at and the layers served at it. */
typedef struct replay_entry {
    struct replay_entry *hnext;          /* hash chain */
    struct replay_entry *prev, *next;    /* LRU list, most recent first */
    uint64_t hash;
    char deployment[33];
    char device[64];
    uint8_t session[TE_SESSION_BYTES];
    uint64_t counter;
    uint64_t *served;                    /* bitmap of layers served at counter */
    uint32_t n_words;
} replay_entry;

struct te_replay {
    pthread_mutex_t mu;
    size_t max, n, n_buckets;
    replay_entry **buckets;
    replay_entry *head, *tail;
};

/* FNV-1a over the identifying fields */
static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const uint8_t *b = p;
    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 0x100000001b3ULL;
    return h;
}

static uint64_t key_hash(const char *dep, const char *dev, const uint8_t *session)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    h = fnv(h, dep, strlen(dep) + 1);
    h = fnv(h, dev, strlen(dev) + 1);
    return fnv(h, session, TE_SESSION_BYTES);
}

te_status te_replay_new(size_t max_sessions, te_replay **out, te_err *err)
{
    *out = NULL;
    te_replay *r = calloc(1, sizeof *r);
    if (!r)
        return te_errf(err, TE_ENOMEM, "out of memory");
    r->max = max_sessions ? max_sessions : 1;
    r->n_buckets = 1;
    while (r->n_buckets < r->max)
        r->n_buckets <<= 1;
    r->buckets = calloc(r->n_buckets, sizeof *r->buckets);
    if (!r->buckets || pthread_mutex_init(&r->mu, NULL) != 0) {
        free(r->buckets);
        free(r);
        return te_errf(err, TE_ENOMEM, "out of memory");
    }
    *out = r;
    return TE_OK;
}

void te_replay_free(te_replay *r)
{
    if (!r)
        return;
    for (replay_entry *e = r->head, *n; e; e = n) {
        n = e->next;
        free(e->served);
        free(e);
    }
    free(r->buckets);
    pthread_mutex_destroy(&r->mu);
    free(r);
}

static void lru_unlink(te_replay *r, replay_entry *e)
{
    if (e->prev)
        e->prev->next = e->next;
    else
        r->head = e->next;
    if (e->next)
        e->next->prev = e->prev;
    else
        r->tail = e->prev;
    e->prev = e->next = NULL;
}

static void lru_push(te_replay *r, replay_entry *e)
{
    e->next = r->head;
    if (r->head)
        r->head->prev = e;
    r->head = e;
    if (!r->tail)
        r->tail = e;
}

static void evict_oldest(te_replay *r)
{
    replay_entry *e = r->tail;
    lru_unlink(r, e);
    for (replay_entry **p = &r->buckets[e->hash & (r->n_buckets - 1)]; *p; p = &(*p)->hnext)
        if (*p == e) {
            *p = e->hnext;
            break;
        }
    free(e->served);
    free(e);
    r->n--;
}

te_status te_replay_admit(te_replay *r, const char *dep, const char *dev, const uint8_t session[TE_SESSION_BYTES],
                          uint64_t counter, uint32_t layer, te_err *err)
{
    if (strlen(dep) >= 33 || strlen(dev) >= 64)
        return te_errf(err, TE_EINVAL, "deployment or device id too long");
    uint64_t h = key_hash(dep, dev, session);
    te_status st = TE_OK;
    pthread_mutex_lock(&r->mu);
    replay_entry **bucket = &r->buckets[h & (r->n_buckets - 1)], *e = *bucket;
    while (e && !(e->hash == h && strcmp(e->deployment, dep) == 0 && strcmp(e->device, dev) == 0 &&
                  memcmp(e->session, session, TE_SESSION_BYTES) == 0))
        e = e->hnext;
    if (!e) {
        if (r->n >= r->max)
            evict_oldest(r);
        if (!(e = calloc(1, sizeof *e))) {
            st = te_errf(err, TE_ENOMEM, "out of memory");
            goto out;
        }
        e->hash = h;
        memcpy(e->deployment, dep, strlen(dep) + 1);
        memcpy(e->device, dev, strlen(dev) + 1);
        memcpy(e->session, session, TE_SESSION_BYTES);
        e->counter = counter;
        e->hnext = *bucket;
        *bucket = e;
        lru_push(r, e);
        r->n++;
    } else {
        lru_unlink(r, e);
        lru_push(r, e);
    }
    if (counter < e->counter) {
        st = te_errf(err, TE_ECOUNTER, "device %s: counter %llu of this session is already past (at %llu): a "
                     "repeated mask would reveal the difference of two inputs, refused", dev,
                     (unsigned long long)counter, (unsigned long long)e->counter);
        goto out;
    }
    if (counter > e->counter) {
        e->counter = counter;
        if (e->served)
            memset(e->served, 0, e->n_words * sizeof *e->served);
    }
    uint32_t w = layer / 64;
    if (w >= e->n_words) {
        uint64_t *nw = realloc(e->served, (size_t)(w + 1) * sizeof *nw);
        if (!nw) {
            st = te_errf(err, TE_ENOMEM, "out of memory");
            goto out;
        }
        memset(nw + e->n_words, 0, (size_t)(w + 1 - e->n_words) * sizeof *nw);
        e->served = nw;
        e->n_words = w + 1;
    }
    uint64_t bit = (uint64_t)1 << (layer % 64);
    if (e->served[w] & bit) {
        st = te_errf(err, TE_ECOUNTER, "device %s: counter %llu, layer %u of this session was already served: a "
                     "repeated mask would reveal the difference of two inputs, refused", dev,
                     (unsigned long long)counter, (unsigned)layer);
        goto out;
    }
    e->served[w] |= bit;
out:
    pthread_mutex_unlock(&r->mu);
    return st;
}
