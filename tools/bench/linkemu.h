/* A user-space emulated link for machines whose kernel has no netem: a TCP
 * relay on loopback that, in each direction separately, serializes the bytes
 * at a fixed rate and delivers them a fixed one-way delay later (a queue
 * without loss).  twinedge-bench uses it in place of tc netem. */
#ifndef TE_LINKEMU_H
#define TE_LINKEMU_H

#include <stddef.h>
#include "te_error.h"

typedef struct te_linkemu te_linkemu;

/* Listen on 127.0.0.1 (a free port, written to listen_addr as HOST:PORT) and
 * relay every connection to upstream ("HOST:PORT", IPv4). */
te_status te_linkemu_start(const char *upstream, double rate_mbit, double one_way_ms, char *listen_addr,
                           size_t cap, te_linkemu **out, te_err *err);
/* Close every connection and join every thread.  NULL is fine. */
void te_linkemu_stop(te_linkemu *e);

#endif
