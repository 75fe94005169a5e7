/* twinedge-host's log: one line per event on stderr, text or JSON lines,
 * with a level; gRPC core's own messages go through it too.
 *
 * Process-wide state (the one exception in the daemon): gRPC's log hook
 * takes no context, so the level and format live in this module, set once
 * at start-up by hostd_log_init and changed only by hostd_log_set_level
 * (SIGHUP); both are atomic, lines are written whole under a lock. */
#ifndef TE_HOSTD_LOG_H
#define TE_HOSTD_LOG_H

#include <stdarg.h>

typedef enum hostd_level {
    HOSTD_ERROR = 0,
    HOSTD_WARN = 1,
    HOSTD_INFO = 2,
    HOSTD_DEBUG = 3
} hostd_level;

/* "error", "warn", "info", "debug" -> level; -1 when none. */
int hostd_level_parse(const char *s);
const char *hostd_level_name(hostd_level l);

/* json: 1 for JSON lines {"ts","level","pid","source","msg"}; 0 for text.
 * Routes gRPC core's log (its INFO as debug, ERROR as error) here. */
void hostd_log_init(hostd_level level, int json);
void hostd_log_set_level(hostd_level level);
int hostd_log_enabled(hostd_level level);

void hostd_logf(hostd_level level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void hostd_vlogf(hostd_level level, const char *fmt, va_list ap) __attribute__((format(printf, 2, 0)));
/* One line from another source ("plugin cpu", "grpc FILE:LINE"). */
void hostd_log_line(hostd_level level, const char *source, const char *msg);

#endif
