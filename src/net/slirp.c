/* User-mode networking through libslirp, QEMU's defaults (10.0.2.0/24, host 10.0.2.2, DNS
 * 10.0.2.3, DHCP from 10.0.2.15; fec0::/64), host port forwarding. Slirp runs wholly on the I/O
 * thread: its sockets sit in a private epoll set watched by that thread, its timers on a
 * timerfd. While the guest has no receive buffers, frames wait in a short queue and slirp's
 * sockets are not read, so host peers see TCP flow control instead of losses.
 *
 * Snapshots and migration do not save slirp (slirp_state_save is not used): what libslirp can
 * save is its DHCP lease table, the IP id counter and guestfwd connections (not offered here);
 * the guest's NAT connections are host sockets it cannot save either. A restored VM gets a
 * fresh slirp: host forwards listen again, the guest's TCP connections through it are reset,
 * and its DHCP renewal of 10.0.2.15 is granted again (slirp hands a requested free address in
 * its range to whoever asks), so nothing of value is lost. */
#include <arpa/inet.h>
#include <errno.h>
#include <libslirp.h>
#include <poll.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include "lib/clock.h"
#include "lib/iov.h"
#include "lib/log.h"
#include "net/hostfwd.h"
#include "net/net.h"
#include "vmm/device_config.h"
#include "vmm/iothread.h"

/* Frames kept for a guest that has no buffers; more are dropped (slirp allows it: TCP resends). */
#define SLIRP_QUEUE_MAX 256
/* Timers whose callbacks re-arm them in the past are not run more often than this per tick. */
#define SLIRP_TIMER_RUNS 64

struct slirp_frame {
	struct slirp_frame *next;
	size_t len;
	uint8_t data[];
};

struct slirp_timer {
	struct slirp_timer *next;
	SlirpTimerCb cb;
	void *cb_opaque;
	int64_t expire_ms;       /* -1: not armed */
};

struct watched_fd {
	int fd;
	uint32_t events;
};

struct net_slirp {
	struct net_backend be;
	struct iothread *io;
	Slirp *slirp;
	int epfd;                /* slirp's sockets, watched as one fd by the I/O thread */
	int timer_fd;            /* the next slirp timeout or timer */
	int kick_fd;             /* eventfd: run slirp now (after input, notify, resume) */
	bool started;
	bool kicked;             /* kick_fd was written and not yet read */
	net_receive_fn receive;
	void *opaque;
	/* The poll set of the last slirp_pollfds_fill. */
	struct pollfd *pfd;
	unsigned npfd, pfd_cap;
	/* What epfd holds. */
	struct watched_fd *watched;
	unsigned nwatched, watched_cap;
	struct slirp_timer *timers;
	/* Frames the guest could not take yet; while any wait, sockets are not read. */
	struct slirp_frame *q_head, **q_tail;
	unsigned q_len;
	uint64_t rx_dropped;
	uint8_t tx_buf[NET_MAX_FRAME];
};

static int64_t now_ns(void)
{
	return (int64_t)clock_mono_ns();
}

static void kick(struct net_slirp *s)
{
	if (s->kicked)
		return;
	uint64_t one = 1;
	if (write(s->kick_fd, &one, sizeof(one)) == sizeof(one))
		s->kicked = true;
}

/* --- slirp's callbacks ---------------------------------------------------------------------- */

static ssize_t cb_send_packet(const void *buf, size_t len, void *opaque)
{
	struct net_slirp *s = opaque;
	if (!s->q_head && s->receive) {
		struct iovec iov = { .iov_base = (void *)buf, .iov_len = len };
		if (s->receive(s->opaque, &iov, 1))
			return (ssize_t)len;
	}
	struct slirp_frame *f = s->q_len < SLIRP_QUEUE_MAX ? malloc(sizeof(*f) + len) : NULL;
	if (!f) {
		s->rx_dropped++;
		return (ssize_t)len; /* a negative value only makes slirp log */
	}
	f->next = NULL;
	f->len = len;
	memcpy(f->data, buf, len);
	*s->q_tail = f;
	s->q_tail = &f->next;
	s->q_len++;
	return (ssize_t)len;
}

static void cb_guest_error(const char *msg, void *opaque)
{
	(void)opaque;
	log_debug("slirp: guest error: %s", msg);
}

static int64_t cb_clock_get_ns(void *opaque)
{
	(void)opaque;
	return now_ns();
}

static void *cb_timer_new(SlirpTimerCb cb, void *cb_opaque, void *opaque)
{
	struct net_slirp *s = opaque;
	struct slirp_timer *t = calloc(1, sizeof(*t));
	if (!t) {
		log_error("slirp: out of memory for a timer");
		abort(); /* slirp has no way to handle a missing timer */
	}
	t->cb = cb;
	t->cb_opaque = cb_opaque;
	t->expire_ms = -1;
	t->next = s->timers;
	s->timers = t;
	return t;
}

static void cb_timer_free(void *timer, void *opaque)
{
	struct net_slirp *s = opaque;
	for (struct slirp_timer **p = &s->timers; *p; p = &(*p)->next) {
		if (*p == timer) {
			*p = (*p)->next;
			free(timer);
			return;
		}
	}
}

static void cb_timer_mod(void *timer, int64_t expire_ms, void *opaque)
{
	(void)opaque;
	struct slirp_timer *t = timer;
	t->expire_ms = expire_ms < 0 ? 0 : expire_ms;
	/* The timerfd is re-armed at the end of the round this runs in (every slirp call is). */
}

static void unwatch(struct net_slirp *s, unsigned i)
{
	/* Fails harmlessly when slirp already closed the fd (epoll dropped it then). */
	epoll_ctl(s->epfd, EPOLL_CTL_DEL, s->watched[i].fd, NULL);
	s->watched[i] = s->watched[--s->nwatched];
}

static void cb_register_poll_fd(int fd, void *opaque)
{
	(void)fd, (void)opaque; /* every fd slirp wants polled comes through slirp_pollfds_fill */
}

static void cb_unregister_poll_fd(int fd, void *opaque)
{
	/* slirp is about to close fd: forget it before its number can be reused. */
	struct net_slirp *s = opaque;
	for (unsigned i = 0; i < s->nwatched; i++) {
		if (s->watched[i].fd == fd) {
			unwatch(s, i);
			return;
		}
	}
}

static void cb_notify(void *opaque)
{
	kick(opaque);
}

static const SlirpCb slirp_callbacks = {
	.send_packet = cb_send_packet,
	.guest_error = cb_guest_error,
	.clock_get_ns = cb_clock_get_ns,
	.timer_new = cb_timer_new,
	.timer_free = cb_timer_free,
	.timer_mod = cb_timer_mod,
	.register_poll_fd = cb_register_poll_fd,
	.unregister_poll_fd = cb_unregister_poll_fd,
	.notify = cb_notify,
};

/* --- the poll loop on the I/O thread --------------------------------------------------------- */

static int cb_add_poll(int fd, int events, void *opaque)
{
	struct net_slirp *s = opaque;
	if (s->npfd == s->pfd_cap) {
		unsigned cap = s->pfd_cap ? 2 * s->pfd_cap : 32;
		struct pollfd *p = realloc(s->pfd, cap * sizeof(*p));
		if (!p)
			return -1; /* not polled this time */
		s->pfd = p;
		s->pfd_cap = cap;
	}
	short ev = 0;
	/* While frames wait for the guest, nothing more is read from the host. */
	if ((events & SLIRP_POLL_IN) && !s->q_head)
		ev |= POLLIN;
	if ((events & SLIRP_POLL_PRI) && !s->q_head)
		ev |= POLLPRI;
	if (events & SLIRP_POLL_OUT)
		ev |= POLLOUT;
	s->pfd[s->npfd] = (struct pollfd){ .fd = fd, .events = ev };
	return (int)s->npfd++;
}

static int cb_get_revents(int idx, void *opaque)
{
	struct net_slirp *s = opaque;
	if (idx < 0 || (unsigned)idx >= s->npfd)
		return 0;
	short re = s->pfd[idx].revents;
	int r = 0;
	if (re & POLLIN)
		r |= SLIRP_POLL_IN;
	if (re & POLLOUT)
		r |= SLIRP_POLL_OUT;
	if (re & POLLPRI)
		r |= SLIRP_POLL_PRI;
	if (re & POLLERR)
		r |= SLIRP_POLL_ERR;
	if (re & POLLHUP)
		r |= SLIRP_POLL_HUP;
	return r;
}

/* Makes epfd hold exactly the fds of the last fill with their events. A watched fd slirp has
 * closed and a new socket got the same number: MOD fails with ENOENT, and ADD puts it back. */
static void sync_watches(struct net_slirp *s)
{
	for (unsigned i = 0; i < s->nwatched;) {
		bool wanted = false;
		for (unsigned j = 0; j < s->npfd && !wanted; j++)
			wanted = s->pfd[j].fd == s->watched[i].fd && s->pfd[j].events;
		if (wanted)
			i++;
		else
			unwatch(s, i);
	}
	for (unsigned j = 0; j < s->npfd; j++) {
		uint32_t ev = (uint32_t)s->pfd[j].events & (EPOLLIN | EPOLLOUT | EPOLLPRI);
		if (!ev)
			continue;
		struct epoll_event e = { .events = ev, .data.fd = s->pfd[j].fd };
		unsigned i = 0;
		while (i < s->nwatched && s->watched[i].fd != s->pfd[j].fd)
			i++;
		if (i == s->nwatched) {
			if (s->nwatched == s->watched_cap) {
				unsigned cap = s->watched_cap ? 2 * s->watched_cap : 32;
				struct watched_fd *w = realloc(s->watched, cap * sizeof(*w));
				if (!w)
					continue; /* retried at the next round */
				s->watched = w;
				s->watched_cap = cap;
			}
			s->watched[s->nwatched++] = (struct watched_fd){ .fd = s->pfd[j].fd, .events = ev };
			if (epoll_ctl(s->epfd, EPOLL_CTL_ADD, e.data.fd, &e) < 0 && errno == EEXIST)
				epoll_ctl(s->epfd, EPOLL_CTL_MOD, e.data.fd, &e);
		} else {
			s->watched[i].events = ev;
			if (epoll_ctl(s->epfd, EPOLL_CTL_MOD, e.data.fd, &e) < 0 && errno == ENOENT)
				epoll_ctl(s->epfd, EPOLL_CTL_ADD, e.data.fd, &e);
		}
	}
}

/* Asks slirp what to wait for next: its sockets into epfd, the earliest deadline on the timer. */
static void rearm(struct net_slirp *s)
{
	uint32_t timeout = UINT32_MAX;
	s->npfd = 0;
	slirp_pollfds_fill(s->slirp, &timeout, cb_add_poll, s);
	sync_watches(s);

	int64_t deadline = timeout == UINT32_MAX ? INT64_MAX : now_ns() / 1000000 + timeout;
	for (struct slirp_timer *t = s->timers; t; t = t->next)
		if (t->expire_ms >= 0 && t->expire_ms < deadline)
			deadline = t->expire_ms;
	struct itimerspec its = { 0 };
	if (deadline != INT64_MAX) {
		if (deadline < 1)
			deadline = 1; /* zero would disarm */
		its.it_value.tv_sec = deadline / 1000;
		its.it_value.tv_nsec = (deadline % 1000) * 1000000;
	}
	if (timerfd_settime(s->timer_fd, TFD_TIMER_ABSTIME, &its, NULL) < 0)
		log_warn("slirp: cannot arm its timer: %s", strerror(errno));
}

/* One pass of slirp's loop: what is ready now, slirp's own timeouts, then what to wait for. */
static void slirp_round(struct net_slirp *s)
{
	uint32_t timeout = UINT32_MAX;
	s->npfd = 0;
	slirp_pollfds_fill(s->slirp, &timeout, cb_add_poll, s);
	int r = poll(s->pfd, s->npfd, 0);
	slirp_pollfds_poll(s->slirp, r < 0, cb_get_revents, s);
	rearm(s);
}

static void slirp_sockets_ready(void *opaque, uint32_t events)
{
	(void)events;
	slirp_round(opaque);
}

static void slirp_timer_fired(void *opaque, uint32_t events)
{
	(void)events;
	struct net_slirp *s = opaque;
	uint64_t ticks;
	if (read(s->timer_fd, &ticks, sizeof(ticks)) != sizeof(ticks))
		return; /* spurious */
	int64_t now = now_ns() / 1000000;
	/* A callback may modify or free any timer: rescan after each. */
	for (int runs = 0; runs < SLIRP_TIMER_RUNS; runs++) {
		struct slirp_timer *t = s->timers;
		while (t && !(t->expire_ms >= 0 && t->expire_ms <= now))
			t = t->next;
		if (!t)
			break;
		t->expire_ms = -1;
		t->cb(t->cb_opaque);
	}
	slirp_round(s);
}

static void slirp_kicked(void *opaque, uint32_t events)
{
	(void)events;
	struct net_slirp *s = opaque;
	uint64_t count;
	if (read(s->kick_fd, &count, sizeof(count)) != sizeof(count))
		return;
	s->kicked = false;
	slirp_round(s);
}

/* --- backend operations -------------------------------------------------------------------- */

static int nslirp_start(struct net_backend *be, net_receive_fn receive, void *opaque)
{
	struct net_slirp *s = (struct net_slirp *)be;
	s->receive = receive;
	s->opaque = opaque;
	int r = iothread_add(s->io, s->kick_fd, EPOLLIN, slirp_kicked, s);
	if (r == 0) {
		r = iothread_add(s->io, s->timer_fd, EPOLLIN, slirp_timer_fired, s);
		if (r == 0) {
			r = iothread_add(s->io, s->epfd, EPOLLIN, slirp_sockets_ready, s);
			if (r == 0) {
				s->started = true;
				return 0;
			}
			iothread_remove(s->io, s->timer_fd);
		}
		iothread_remove(s->io, s->kick_fd);
	}
	return r;
}

static int nslirp_send(struct net_backend *be, const struct iovec *iov, unsigned cnt)
{
	struct net_slirp *s = (struct net_slirp *)be;
	size_t len = iov_size(iov, cnt);
	if (len > sizeof(s->tx_buf))
		return -EMSGSIZE;
	iov_to_buf(iov, cnt, 0, s->tx_buf, len);
	slirp_input(s->slirp, s->tx_buf, (int)len);
	/* New connections and data for host sockets: one round after the batch looks at them. */
	kick(s);
	return 0;
}

static void nslirp_resume(struct net_backend *be)
{
	struct net_slirp *s = (struct net_slirp *)be;
	if (!s->q_head)
		return;
	while (s->q_head) {
		struct slirp_frame *f = s->q_head;
		struct iovec iov = { .iov_base = f->data, .iov_len = f->len };
		if (!s->receive(s->opaque, &iov, 1))
			return;
		s->q_head = f->next;
		s->q_len--;
		free(f);
	}
	s->q_tail = &s->q_head;
	kick(s); /* read the sockets again */
}

static void nslirp_destroy(struct net_backend *be)
{
	struct net_slirp *s = (struct net_slirp *)be;
	if (s->started) {
		iothread_remove(s->io, s->epfd);
		iothread_remove(s->io, s->timer_fd);
		iothread_remove(s->io, s->kick_fd);
	}
	if (s->slirp)
		slirp_cleanup(s->slirp); /* closes its sockets, frees its timers */
	if (s->rx_dropped)
		log_debug("slirp: %llu frames for the guest dropped", (unsigned long long)s->rx_dropped);
	while (s->q_head) {
		struct slirp_frame *f = s->q_head;
		s->q_head = f->next;
		free(f);
	}
	while (s->timers) {
		struct slirp_timer *t = s->timers;
		s->timers = t->next;
		free(t);
	}
	if (s->epfd >= 0)
		close(s->epfd);
	if (s->timer_fd >= 0)
		close(s->timer_fd);
	if (s->kick_fd >= 0)
		close(s->kick_fd);
	free(s->pfd);
	free(s->watched);
	free(s);
}

static const struct net_backend_ops slirp_ops = {
	.start = nslirp_start,
	.send = nslirp_send,
	.resume = nslirp_resume,
	.destroy = nslirp_destroy,
};

static struct in_addr ip4(const char *a)
{
	struct in_addr r;
	inet_pton(AF_INET, a, &r);
	return r;
}

static struct in6_addr ip6(const char *a)
{
	struct in6_addr r;
	inet_pton(AF_INET6, a, &r);
	return r;
}

static int add_hostfwds(struct net_slirp *s, const struct vm_nic *nic)
{
	for (unsigned i = 0; i < nic->nhostfwd; i++) {
		struct net_hostfwd fwd;
		const char *why;
		if (net_hostfwd_parse(nic->hostfwd[i], &fwd, &why) < 0) {
			log_error("--net user: hostfwd=%s %s", nic->hostfwd[i], why);
			return -1;
		}
		errno = 0;
		if (slirp_add_hostfwd(s->slirp, fwd.udp, fwd.host_addr, fwd.host_port, fwd.guest_addr,
				      fwd.guest_port) < 0) {
			char addr[INET_ADDRSTRLEN];
			inet_ntop(AF_INET, &fwd.host_addr, addr, sizeof(addr));
			log_error("--net user: hostfwd=%s: cannot listen on %s port %u: %s",
				  nic->hostfwd[i], addr, fwd.host_port,
				  errno ? strerror(errno) : "refused by slirp");
			return -1;
		}
	}
	return 0;
}

struct net_backend *net_slirp_open(struct iothread *io, const struct vm_nic *nic)
{
	struct net_slirp *s = calloc(1, sizeof(*s));
	if (!s) {
		log_error("out of memory for user-mode networking");
		return NULL;
	}
	s->io = io;
	s->q_tail = &s->q_head;
	s->epfd = epoll_create1(EPOLL_CLOEXEC);
	s->timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK | TFD_CLOEXEC);
	s->kick_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	if (s->epfd < 0 || s->timer_fd < 0 || s->kick_fd < 0) {
		log_error("user-mode networking: cannot create its event fds: %s", strerror(errno));
		goto fail;
	}
	SlirpConfig cfg;
	memset(&cfg, 0, sizeof(cfg));
	cfg.version = SLIRP_CONFIG_VERSION_MAX < 4 ? SLIRP_CONFIG_VERSION_MAX : 4;
	cfg.restricted = 0;
	cfg.in_enabled = true;
	cfg.vnetwork = ip4("10.0.2.0");
	cfg.vnetmask = ip4("255.255.255.0");
	cfg.vhost = ip4("10.0.2.2");
	cfg.vdhcp_start = ip4("10.0.2.15");
	cfg.vnameserver = ip4("10.0.2.3");
	cfg.in6_enabled = true;
	cfg.vprefix_addr6 = ip6("fec0::");
	cfg.vprefix_len = 64;
	cfg.vhost6 = ip6("fec0::2");
	cfg.vnameserver6 = ip6("fec0::3");
	s->slirp = slirp_new(&cfg, &slirp_callbacks, s);
	if (!s->slirp) {
		log_error("user-mode networking: libslirp %s refused its configuration",
			  slirp_version_string());
		goto fail;
	}
	if (add_hostfwds(s, nic) < 0)
		goto fail;
	rearm(s); /* the hostfwd listeners go into epfd; no thread runs slirp yet */
	s->be.ops = &slirp_ops;
	s->be.kind = "user";
	log_debug("slirp: libslirp %s, 10.0.2.0/24, %u hostfwd rule(s)", slirp_version_string(),
		  nic->nhostfwd);
	return &s->be;

fail:
	nslirp_destroy(&s->be);
	return NULL;
}
