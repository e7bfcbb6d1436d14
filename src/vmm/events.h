/* What happens in a run, as one JSON object per event: VMs started,
 * stopped, crashed, added and removed, balloon targets reached, cross-talk
 * detected and undone, the memory budget changed. Any thread may emit (vCPU
 * threads too: nothing here blocks for long or opens files); the control
 * socket pushes the events to its subscribers (docs/API.md, "events").
 *
 * One process-wide ring of the latest EVENTS_RING events, like the log: a
 * subscriber that falls further behind loses the oldest and is told how
 * many. Without events_init() (unit tests, fuzzing) events are dropped. */
#ifndef FERRY_EVENTS_H
#define FERRY_EVENTS_H

#include <stdint.h>

struct cJSON;

#define EVENTS_RING 1024

/* Sets up the ring and its eventfd (made here: call before the sandboxed
 * threads start). 0 or -1. */
int events_init(void);
void events_shutdown(void);

/* {"event": type, "time": ISO 8601 UTC, "vm": vm (if not NULL), ...fields}.
 * fields (may be NULL) is consumed. Each event is also logged (debug level
 * for the frequent balloon ones). */
void events_emit(const char *type, const char *vm, struct cJSON *fields);

/* Readable (EPOLLIN) after new events; events_ack() empties it. -1 if none. */
int events_fd(void);
void events_ack(void);
/* Makes events_fd() readable now (a new reader wants what the ring holds). */
void events_poke(void);

/* The sequence number the next event will get. */
uint64_t events_next_seq(void);
/* Calls fn for every event from *cursor on (oldest first), at most `max`,
 * and advances *cursor; *lost gets how many were overwritten before they
 * could be read. Returns how many were passed to fn. */
unsigned events_read(uint64_t *cursor, unsigned max, void (*fn)(void *arg, const char *line), void *arg,
		     uint64_t *lost);
/* Events emitted so far. */
uint64_t events_total(void);

#endif
