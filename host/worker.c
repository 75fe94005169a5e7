/* The host's background workers (precompute on EdgeB, relay ahead on
 * EdgeA): a thread with its lock and conditions, started and stopped alike. */
#include "host_internal.h"

#include <string.h>

static void *worker_main(void *arg)
{
    host_worker *w = arg;
    pthread_mutex_lock(&w->mu);
    for (;;) {
        while (!w->stop && !w->queue)
            pthread_cond_wait(&w->work, &w->mu);
        if (w->stop)
            break;
        host_job *j = w->queue;
        w->queue = j->next;
        w->n_jobs--;
        j->next = NULL;
        w->current = j;
        pthread_mutex_unlock(&w->mu);
        w->run(w->h, j);
        pthread_mutex_lock(&w->mu);
        w->current = NULL;
        w->free_job(j);
    }
    pthread_mutex_unlock(&w->mu);
    return NULL;
}

te_status host_worker_start(host_worker *w, const char *what, struct te_host *h, int max_jobs,
                            void (*run)(struct te_host *h, host_job *j), void (*free_job)(host_job *j), te_err *err)
{
    w->stop = 0;
    w->queue = w->current = NULL;
    w->n_jobs = 0;
    w->max_jobs = max_jobs;
    w->h = h;
    w->run = run;
    w->free_job = free_job;
    if (pthread_mutex_init(&w->mu, NULL) != 0)
        return te_errf(err, TE_ENOMEM, "cannot create the %s lock", what);
    if (pthread_cond_init(&w->work, NULL) != 0) {
        pthread_mutex_destroy(&w->mu);
        return te_errf(err, TE_ENOMEM, "cannot create the %s condition", what);
    }
    if (pthread_cond_init(&w->change, NULL) != 0) {
        pthread_cond_destroy(&w->work);
        pthread_mutex_destroy(&w->mu);
        return te_errf(err, TE_ENOMEM, "cannot create the %s condition", what);
    }
    int rc = pthread_create(&w->thread, NULL, worker_main, w);
    if (rc != 0) {
        pthread_cond_destroy(&w->change);
        pthread_cond_destroy(&w->work);
        pthread_mutex_destroy(&w->mu);
        return te_errf(err, TE_ENOMEM, "cannot start the %s thread: %s", what, strerror(rc));
    }
    w->ready = 1;
    return TE_OK;
}

void host_worker_push(host_worker *w, host_job *j)
{
    if (w->n_jobs >= w->max_jobs && w->queue) { /* drop the oldest */
        host_job *old = w->queue;
        w->queue = old->next;
        w->n_jobs--;
        w->free_job(old);
    }
    host_job **tail = &w->queue;
    while (*tail)
        tail = &(*tail)->next;
    j->next = NULL;
    *tail = j;
    w->n_jobs++;
    pthread_cond_signal(&w->work);
}

void host_worker_join(host_worker *w)
{
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->work);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
    while (w->queue) {
        host_job *j = w->queue;
        w->queue = j->next;
        w->free_job(j);
    }
    w->n_jobs = 0;
}

void host_worker_destroy(host_worker *w)
{
    pthread_cond_destroy(&w->change);
    pthread_cond_destroy(&w->work);
    pthread_mutex_destroy(&w->mu);
    w->ready = 0;
}
