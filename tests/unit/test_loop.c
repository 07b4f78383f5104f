/* Unit tests of the main thread's event loop (src/vmm/loop.c): callbacks run for ready fds,
 * modify and remove take effect, a registration removed by an earlier callback of the same
 * round is not called, sources prepare and dispatch every round and shorten the timeout. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "vmm/loop.h"

struct probe {
	struct loop *loop;
	int fd;
	int calls;
	short revents;
	int remove_fd;      /* removed by this callback when >= 0 */
};

static void probe_fn(void *opaque, int fd, short revents)
{
	struct probe *p = opaque;
	assert_int_equal(fd, p->fd);
	p->calls++;
	p->revents = revents;
	if (p->remove_fd >= 0)
		loop_remove(p->loop, p->remove_fd);
}

static int ready_fd(void)
{
	int fd = eventfd(1, EFD_NONBLOCK | EFD_CLOEXEC); /* readable from the start */
	assert_true(fd >= 0);
	return fd;
}

static void test_add_modify_remove(void **state)
{
	(void)state;
	struct loop *l = loop_create();
	int fd = ready_fd();
	struct probe p = { l, fd, 0, 0, -1 };
	assert_int_equal(loop_add(l, fd, POLLIN, probe_fn, &p), 0);
	assert_int_equal(loop_add(l, fd, POLLIN, probe_fn, &p), -EEXIST);
	assert_int_equal(loop_add(l, -1, POLLIN, probe_fn, &p), -EINVAL);
	assert_int_equal(loop_run_once(l, 1000), 0);
	assert_int_equal(p.calls, 1);
	assert_true(p.revents & POLLIN);
	/* watching nothing: not called, the timeout runs out */
	assert_int_equal(loop_modify(l, fd, 0), 0);
	assert_int_equal(loop_run_once(l, 10), 0);
	assert_int_equal(p.calls, 1);
	assert_int_equal(loop_modify(l, fd, POLLIN | POLLOUT), 0);
	assert_int_equal(loop_run_once(l, 1000), 0);
	assert_int_equal(p.calls, 2);
	assert_true(p.revents & POLLOUT);
	assert_int_equal(loop_remove(l, fd), 0);
	assert_int_equal(loop_remove(l, fd), -ENOENT);
	assert_int_equal(loop_modify(l, fd, POLLIN), -ENOENT);
	assert_int_equal(loop_run_once(l, 10), 0);
	assert_int_equal(p.calls, 2);
	close(fd);
	loop_destroy(l);
}

/* Two ready fds; whichever callback runs first removes the other: it must not run. */
static void test_remove_during_round(void **state)
{
	(void)state;
	struct loop *l = loop_create();
	int a = ready_fd(), b = ready_fd();
	struct probe pa = { l, a, 0, 0, b }, pb = { l, b, 0, 0, a };
	assert_int_equal(loop_add(l, a, POLLIN, probe_fn, &pa), 0);
	assert_int_equal(loop_add(l, b, POLLIN, probe_fn, &pb), 0);
	assert_int_equal(loop_run_once(l, 1000), 0);
	assert_int_equal(pa.calls + pb.calls, 1);
	close(a);
	close(b);
	loop_destroy(l);
}

/* Many registrations (the arrays grow), each called once. */
static void test_many(void **state)
{
	(void)state;
	struct loop *l = loop_create();
	enum { N = 100 };
	struct probe p[N];
	for (int i = 0; i < N; i++) {
		p[i] = (struct probe){ l, ready_fd(), 0, 0, -1 };
		assert_int_equal(loop_add(l, p[i].fd, POLLIN, probe_fn, &p[i]), 0);
	}
	assert_int_equal(loop_run_once(l, 1000), 0);
	for (int i = 0; i < N; i++) {
		assert_int_equal(p[i].calls, 1);
		close(p[i].fd);
	}
	loop_destroy(l);
}

struct src {
	int fd;
	int prepared, dispatched, last_n;
	short last_revents;
	int timeout;
};

static int src_prepare(void *opaque, struct pollfd *pfds, int max, int *timeout_ms)
{
	struct src *s = opaque;
	s->prepared++;
	assert_true(max >= 1);
	if (s->timeout >= 0 && (*timeout_ms < 0 || *timeout_ms > s->timeout))
		*timeout_ms = s->timeout;
	if (s->fd < 0)
		return 0;
	pfds[0] = (struct pollfd){ .fd = s->fd, .events = POLLIN };
	return 1;
}

static void src_dispatch(void *opaque, const struct pollfd *pfds, int n)
{
	struct src *s = opaque;
	s->dispatched++;
	s->last_n = n;
	s->last_revents = n ? pfds[0].revents : 0;
}

static const struct loop_source_ops src_ops = { src_prepare, src_dispatch };

static void test_source(void **state)
{
	(void)state;
	struct loop *l = loop_create();
	struct src s = { ready_fd(), 0, 0, 0, 0, -1 };
	assert_int_equal(loop_add_source(l, &src_ops, 2, &s), 0);
	assert_int_equal(loop_run_once(l, 1000), 0);
	assert_int_equal(s.prepared, 1);
	assert_int_equal(s.dispatched, 1);
	assert_int_equal(s.last_n, 1);
	assert_true(s.last_revents & POLLIN);
	/* no fd, a 20 ms timeout from the source: the loop waits no longer (not the -1 given) */
	close(s.fd);
	s.fd = -1;
	s.timeout = 20;
	struct timespec t0, t1;
	clock_gettime(CLOCK_MONOTONIC, &t0);
	assert_int_equal(loop_run_once(l, -1), 0);
	clock_gettime(CLOCK_MONOTONIC, &t1);
	assert_true(t1.tv_sec - t0.tv_sec < 5);
	assert_int_equal(s.dispatched, 2);
	assert_int_equal(s.last_n, 0);
	loop_remove_source(l, &src_ops, &s);
	assert_int_equal(loop_run_once(l, 0), 0);
	assert_int_equal(s.prepared, 2);
	loop_destroy(l);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_modify_remove),
		cmocka_unit_test(test_remove_during_round),
		cmocka_unit_test(test_many),
		cmocka_unit_test(test_source),
	};
	return cmocka_run_group_tests_name("loop", tests, NULL, NULL);
}
