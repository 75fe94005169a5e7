/* twinedge-host's log (see log.h). */
#include "log.h"

#include <cjson/cJSON.h>
#include <grpc/support/log.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

static atomic_int log_level = HOSTD_INFO;
static atomic_int log_json = 0;
static pthread_mutex_t log_lock = PTHREAD_MUTEX_INITIALIZER;

static const char *const level_names[] = {"error", "warn", "info", "debug"};

int hostd_level_parse(const char *s)
{
    for (int i = 0; i < (int)(sizeof level_names / sizeof *level_names); i++)
        if (strcmp(s, level_names[i]) == 0)
            return i;
    return -1;
}

const char *hostd_level_name(hostd_level l)
{
    return l >= HOSTD_ERROR && l <= HOSTD_DEBUG ? level_names[l] : "?";
}

int hostd_log_enabled(hostd_level level) { return (int)level <= atomic_load(&log_level); }

static void emit(hostd_level level, const char *source, const char *msg)
{
    if (!hostd_log_enabled(level))
        return;
    struct timeval tv;
    gettimeofday(&tv, NULL);
    struct tm tm;
    gmtime_r(&tv.tv_sec, &tm);
    char ts[80], date[32];
    strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(ts, sizeof ts, "%s.%03ldZ", date, (long)(tv.tv_usec / 1000));
    char *line = NULL;
    if (atomic_load(&log_json)) {
        /* cJSON escapes whatever a message holds (peer names, paths) */
        cJSON *o = cJSON_CreateObject();
        if (o && cJSON_AddStringToObject(o, "ts", ts) && cJSON_AddStringToObject(o, "level", level_names[level]) &&
            cJSON_AddNumberToObject(o, "pid", (double)getpid()) && cJSON_AddStringToObject(o, "source", source) &&
            cJSON_AddStringToObject(o, "msg", msg))
            line = cJSON_PrintUnformatted(o);
        cJSON_Delete(o);
    }
    pthread_mutex_lock(&log_lock);
    if (line)
        fprintf(stderr, "%s\n", line);
    else
        fprintf(stderr, "%s twinedge-host[%ld] %s%s%s: %s\n", ts, (long)getpid(), level_names[level],
                strcmp(source, "host") ? " " : "", strcmp(source, "host") ? source : "", msg);
    fflush(stderr);
    pthread_mutex_unlock(&log_lock);
    cJSON_free(line);
}

void hostd_log_line(hostd_level level, const char *source, const char *msg)
{
    if (level < HOSTD_ERROR || level > HOSTD_DEBUG)
        level = HOSTD_INFO;
    emit(level, source ? source : "host", msg ? msg : "");
}

void hostd_vlogf(hostd_level level, const char *fmt, va_list ap)
{
    if (!hostd_log_enabled(level))
        return;
    char msg[2048];
    vsnprintf(msg, sizeof msg, fmt, ap);
    emit(level, "host", msg);
}

void hostd_logf(hostd_level level, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    hostd_vlogf(level, fmt, ap);
    va_end(ap);
}

/* gRPC core's messages: its INFO lines are connection chatter (debug here),
 * its ERROR lines are errors; the source names gRPC's file and line. */
static void grpc_log(gpr_log_func_args *a)
{
    hostd_level l = a->severity == GPR_LOG_SEVERITY_ERROR ? HOSTD_ERROR : HOSTD_DEBUG;
    if (!hostd_log_enabled(l))
        return;
    const char *file = a->file ? strrchr(a->file, '/') : NULL;
    char source[160];
    snprintf(source, sizeof source, "grpc %s:%d", file ? file + 1 : a->file ? a->file : "?", a->line);
    emit(l, source, a->message ? a->message : "");
}

void hostd_log_set_level(hostd_level level)
{
    atomic_store(&log_level, (int)level);
    /* gRPC formats only what it will hand us */
    gpr_set_log_verbosity(level >= HOSTD_DEBUG ? GPR_LOG_SEVERITY_DEBUG : GPR_LOG_SEVERITY_ERROR);
}

void hostd_log_init(hostd_level level, int json)
{
    atomic_store(&log_json, json);
    gpr_set_log_function(grpc_log);
    hostd_log_set_level(level);
}
