/* Unit tests of live migration's event queue (src/migration/migrate_events.c): no event is lost
 * below the cap (there were 16 slots and the 17th was dropped silently), order is kept across
 * growth, and past the cap the oldest go and are counted. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "migration/migrate_events.h"

static struct migrate_event ev_n(unsigned n)
{
	return (struct migrate_event){ (enum migrate_event_kind)(n % 3),
				       (enum migrate_status)(n % 7) };
}

static void expect_ev(struct migrate_events *q, unsigned n)
{
	struct migrate_event ev, want = ev_n(n);
	assert_true(migrate_events_next(q, &ev));
	assert_int_equal(ev.kind, want.kind);
	assert_int_equal(ev.status, want.status);
}

static void test_many_events_kept_in_order(void **state)
{
	(void)state;
	struct migrate_events q = { 0 };
	unsigned next = 0;
	/* interleaved posts and reads make the ring wrap while it grows */
	for (unsigned i = 0; i < 1000; i++) {
		struct migrate_event ev = ev_n(i);
		assert_int_equal(migrate_events_post(&q, &ev), 0);
		if (i % 3 == 0)
			expect_ev(&q, next++);
	}
	while (next < 1000)
		expect_ev(&q, next++);
	struct migrate_event ev;
	assert_false(migrate_events_next(&q, &ev));
	assert_int_equal(q.dropped, 0);
	migrate_events_free(&q);
}

static void test_cap_drops_oldest(void **state)
{
	(void)state;
	struct migrate_events q = { 0 };
	unsigned total = MIGRATE_EVENTS_CAP + 10;
	for (unsigned i = 0; i < total; i++) {
		struct migrate_event ev = ev_n(i);
		migrate_events_post(&q, &ev);
	}
	assert_int_equal(q.len, MIGRATE_EVENTS_CAP);
	assert_int_equal(q.dropped, 10);
	for (unsigned i = 10; i < total; i++)
		expect_ev(&q, i);
	migrate_events_free(&q);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_many_events_kept_in_order),
		cmocka_unit_test(test_cap_drops_oldest),
	};
	return cmocka_run_group_tests_name("migrate_events", tests, NULL, NULL);
}
