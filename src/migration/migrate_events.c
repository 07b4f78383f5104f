/* The queue of live migration's events, from its thread to the main thread: unbounded in
 * practice (it grows as needed), capped so a main loop that stopped reading cannot make it grow
 * without end; past the cap the oldest event goes, and that is logged once. */
#include "migration/migrate_events.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lib/log.h"

int migrate_events_post(struct migrate_events *q, const struct migrate_event *ev)
{
	if (q->len == MIGRATE_EVENTS_CAP) {
		/* Nobody has read thousands of events: the newest say more than the oldest. */
		if (!q->dropped)
			log_warn("live migration's events are not being read: the oldest are dropped");
		q->dropped++;
		q->head = (q->head + 1) % q->cap;
		q->len--;
	}
	if (q->len == q->cap) {
		size_t cap = q->cap ? q->cap * 2 : 16;
		struct migrate_event *grown = malloc(cap * sizeof(*grown));
		if (!grown) {
			log_warn("a live migration event is lost: out of memory");
			q->dropped++;
			return -ENOMEM;
		}
		for (size_t i = 0; i < q->len; i++)
			grown[i] = q->ring[(q->head + i) % q->cap];
		free(q->ring);
		q->ring = grown;
		q->cap = cap;
		q->head = 0;
	}
	q->ring[(q->head + q->len) % q->cap] = *ev;
	q->len++;
	return 0;
}

bool migrate_events_next(struct migrate_events *q, struct migrate_event *ev)
{
	if (q->len == 0)
		return false;
	*ev = q->ring[q->head];
	q->head = (q->head + 1) % q->cap;
	q->len--;
	return true;
}

void migrate_events_free(struct migrate_events *q)
{
	free(q->ring);
	memset(q, 0, sizeof(*q));
}
