/* The device's request counter, persisted before use.
 *
 * A repeated (counter, layer) under one key would hand EdgeA the difference
 * of two inputs, so a counter value is written to disk (fsync'd, atomically
 * replaced) before any message that uses it leaves the device; after a
 * crash the device resumes after the last value it may have used. */
#ifndef TE_COUNTER_H
#define TE_COUNTER_H

#include <stdint.h>
#include "te_error.h"

typedef struct te_counter {
    char path[4096];
    uint64_t next;   /* first value never handed out */
} te_counter;

/* Open DIR/counter; a missing file starts at 0 (fresh device), a corrupted
 * one is an error (never guess). */
te_status te_counter_open(te_counter *c, const char *dir, te_err *err);
/* Hand out the next value, persisting next+1 first. */
te_status te_counter_take(te_counter *c, uint64_t *value, te_err *err);

#endif
