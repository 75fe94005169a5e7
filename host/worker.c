/* The host's background workers (precompute on EdgeB, relay ahead on
 * EdgeA): a thread with its lock and conditions, started and stopped alike. */
#include "host_internal.h"

#include <string.h>

te_status host_worker_start(host_worker *w, const char *what, void *(*fn)(void *), void *arg, te_err *err)
{
    w->stop = 0;
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
    int rc = pthread_create(&w->thread, NULL, fn, arg);
    if (rc != 0) {
        pthread_cond_destroy(&w->change);
        pthread_cond_destroy(&w->work);
        pthread_mutex_destroy(&w->mu);
        return te_errf(err, TE_ENOMEM, "cannot start the %s thread: %s", what, strerror(rc));
    }
    w->ready = 1;
    return TE_OK;
}

void host_worker_join(host_worker *w)
{
    pthread_mutex_lock(&w->mu);
    w->stop = 1;
    pthread_cond_broadcast(&w->work);
    pthread_mutex_unlock(&w->mu);
    pthread_join(w->thread, NULL);
}

void host_worker_destroy(host_worker *w)
{
    pthread_cond_destroy(&w->change);
    pthread_cond_destroy(&w->work);
    pthread_mutex_destroy(&w->mu);
    w->ready = 0;
}
