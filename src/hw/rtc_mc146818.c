/* MC146818 CMOS real-time clock at 0x70/0x71: the guest reads the host's UTC time, and a time
 * the guest sets (hwclock -w) is kept as an offset from it; periodic, update-ended and alarm
 * interrupts on IRQ 8, timed on the guest clock by a timer thread of its own. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arch/x86/layout.h"
#include "hw/devices.h"
#include "lib/stream.h"
#include "lib/log.h"
#include "vmm/device.h"
#include "vmm/sandbox.h"

#define RTC_SECONDS 0x00
#define RTC_SECONDS_ALARM 0x01
#define RTC_MINUTES 0x02
#define RTC_MINUTES_ALARM 0x03
#define RTC_HOURS   0x04
#define RTC_HOURS_ALARM 0x05
#define RTC_WEEKDAY 0x06
#define RTC_DAY     0x07
#define RTC_MONTH   0x08
#define RTC_YEAR    0x09
#define RTC_REG_A   0x0a
#define RTC_REG_B   0x0b
#define RTC_REG_C   0x0c
#define RTC_REG_D   0x0d
#define RTC_CENTURY 0x32 /* named by the FADT's century field */

#define REG_A_RS    0x0f /* periodic rate select */
#define REG_B_SET   0x80 /* guest is updating the time registers: no update cycles */
#define REG_B_PIE   0x40 /* enables: the same bits as their flags in C */
#define REG_B_AIE   0x20
#define REG_B_UIE   0x10
#define REG_C_IRQF  0x80 /* an enabled flag is set: the IRQ line is high */
#define REG_C_PF    0x40 /* periodic */
#define REG_C_AF    0x20 /* alarm */
#define REG_C_UF    0x10 /* update ended */
#define REG_C_FLAGS (REG_C_PF | REG_C_AF | REG_C_UF)
#define REG_B_BIN   0x04 /* binary instead of BCD */
#define REG_B_24H   0x02
#define REG_D_VRT   0x80 /* battery good */

#define NS_PER_SEC  1000000000ULL
#define RTC_HZ      32768ULL   /* the time base the periodic rates divide */
/* The guest clock did not move since the last wake: the VM is paused, poll it this slowly. */
#define RTC_PAUSED_POLL_NS 10000000ULL

struct rtc_mc146818 {
	pthread_mutex_t lock;
	pthread_cond_t wake;     /* registers changed, or destroy: the timer looks again */
	pthread_t timer;
	bool timer_started, stop;
	struct bus *pio;
	struct irq_line irq;
	struct guest_clock clock;
	int irq_level;
	uint8_t index;
	uint8_t cmos[128];
	time_t offset; /* guest time minus host time, in seconds */
	/* On the guest clock, not saved (a restored VM's guest clock starts again): the next
	 * periodic tick (in 32768 Hz ticks) and the next update cycle (in ns). */
	uint64_t pf_next_tick, uf_next_ns;
	uint64_t timer_last_now; /* the guest clock at the timer's last wake */
};

/* A register holds two digits: a time the guest set in a year far from ours (it may switch
 * between binary and BCD while SET) comes out modulo 100, never as a negative shift. */
static uint8_t to_bcd(const struct rtc_mc146818 *r, int v)
{
	unsigned d = (unsigned)((v % 100 + 100) % 100);
	return (r->cmos[RTC_REG_B] & REG_B_BIN) ? (uint8_t)v : (uint8_t)((d / 10) << 4 | d % 10);
}

static int from_bcd(const struct rtc_mc146818 *r, uint8_t v)
{
	return (r->cmos[RTC_REG_B] & REG_B_BIN) ? v : (v >> 4) * 10 + (v & 0x0f);
}

/* Fills the time registers from host time + offset. */
static void rtc_latch_time(struct rtc_mc146818 *r)
{
	time_t now = time(NULL) + r->offset;
	struct tm tm;
	if (!gmtime_r(&now, &tm))
		return; /* a year gmtime cannot represent: the registers keep their values */
	int hour = tm.tm_hour;
	uint8_t pm = 0;
	if (!(r->cmos[RTC_REG_B] & REG_B_24H)) {
		pm = hour >= 12 ? 0x80 : 0;
		hour = hour % 12 ? hour % 12 : 12;
	}
	r->cmos[RTC_SECONDS] = to_bcd(r, tm.tm_sec);
	r->cmos[RTC_MINUTES] = to_bcd(r, tm.tm_min);
	r->cmos[RTC_HOURS] = to_bcd(r, hour) | pm;
	r->cmos[RTC_WEEKDAY] = to_bcd(r, tm.tm_wday + 1);
	r->cmos[RTC_DAY] = to_bcd(r, tm.tm_mday);
	r->cmos[RTC_MONTH] = to_bcd(r, tm.tm_mon + 1);
	r->cmos[RTC_YEAR] = to_bcd(r, tm.tm_year % 100);
	r->cmos[RTC_CENTURY] = to_bcd(r, (tm.tm_year + 1900) / 100);
}

/* The guest finished setting the clock: remember its time as an offset to the host's. */
static void rtc_commit_time(struct rtc_mc146818 *r)
{
	struct tm tm = { 0 };
	uint8_t hour = r->cmos[RTC_HOURS];
	tm.tm_sec = from_bcd(r, r->cmos[RTC_SECONDS]);
	tm.tm_min = from_bcd(r, r->cmos[RTC_MINUTES]);
	if (r->cmos[RTC_REG_B] & REG_B_24H) {
		tm.tm_hour = from_bcd(r, hour);
	} else {
		tm.tm_hour = from_bcd(r, hour & 0x7f) % 12 + ((hour & 0x80) ? 12 : 0);
	}
	tm.tm_mday = from_bcd(r, r->cmos[RTC_DAY]);
	tm.tm_mon = from_bcd(r, r->cmos[RTC_MONTH]) - 1;
	tm.tm_year = from_bcd(r, r->cmos[RTC_CENTURY]) * 100 + from_bcd(r, r->cmos[RTC_YEAR]) - 1900;
	time_t t = timegm(&tm);
	if (t != (time_t)-1)
		r->offset = t - time(NULL);
}

/* The periodic interrupt's period in 32768 Hz ticks, 0 if off: rates 1 and 2 give 256 and
 * 128 Hz as 8 and 9 do (the datasheet's table for a 32.768 kHz time base). */
static uint64_t rtc_period_ticks(const struct rtc_mc146818 *r)
{
	unsigned rs = r->cmos[RTC_REG_A] & REG_A_RS;
	if (rs == 0)
		return 0;
	if (rs <= 2)
		rs += 7;
	return 1ULL << (rs - 1);
}

/* Guest ns to 32768 Hz ticks (rounded down) and back (the first ns of a tick); split at the
 * second so that neither overflows. */
static uint64_t rtc_ns_to_tick(uint64_t ns)
{
	return ns / NS_PER_SEC * RTC_HZ + ns % NS_PER_SEC * RTC_HZ / NS_PER_SEC;
}

static uint64_t rtc_tick_to_ns(uint64_t tick)
{
	return tick / RTC_HZ * NS_PER_SEC + (tick % RTC_HZ * NS_PER_SEC + RTC_HZ - 1) / RTC_HZ;
}

/* The periodic ticks fall on multiples of the period: the next one after now. */
static void rtc_periodic_restart(struct rtc_mc146818 *r, uint64_t now)
{
	uint64_t period = rtc_period_ticks(r);
	if (period)
		r->pf_next_tick = (rtc_ns_to_tick(now) / period + 1) * period;
}

/* Update cycles end on the host's second boundaries (the time registers read host time): the
 * next one after now. */
static void rtc_update_restart(struct rtc_mc146818 *r, uint64_t now)
{
	struct timespec ts;
	clock_gettime(CLOCK_REALTIME, &ts);
	r->uf_next_ns = now + (NS_PER_SEC - (uint64_t)ts.tv_nsec);
}

/* An alarm byte with its two high bits set matches any value. */
static bool rtc_alarm_match(const struct rtc_mc146818 *r, int alarm, int now)
{
	return (r->cmos[alarm] & 0xc0) == 0xc0 || r->cmos[alarm] == r->cmos[now];
}

/* Sets the flags of the events due by now (missed ones count once: the flags are bits), then
 * IRQF and the line from the flags and their enables. Under the lock. */
static void rtc_run(struct rtc_mc146818 *r, uint64_t now)
{
	uint8_t *c = &r->cmos[RTC_REG_C];
	uint64_t period = rtc_period_ticks(r);
	uint64_t tick = rtc_ns_to_tick(now);
	if (period && tick >= r->pf_next_tick) {
		*c |= REG_C_PF;
		r->pf_next_tick = (tick / period + 1) * period;
	}
	if (now >= r->uf_next_ns) {
		r->uf_next_ns += ((now - r->uf_next_ns) / NS_PER_SEC + 1) * NS_PER_SEC;
		if (!(r->cmos[RTC_REG_B] & REG_B_SET)) {
			*c |= REG_C_UF;
			rtc_latch_time(r);
			if (rtc_alarm_match(r, RTC_SECONDS_ALARM, RTC_SECONDS) &&
			    rtc_alarm_match(r, RTC_MINUTES_ALARM, RTC_MINUTES) &&
			    rtc_alarm_match(r, RTC_HOURS_ALARM, RTC_HOURS))
				*c |= REG_C_AF;
		}
	}
	if (*c & r->cmos[RTC_REG_B] & REG_C_FLAGS)
		*c |= REG_C_IRQF;
	else
		*c &= (uint8_t)~REG_C_IRQF;
	int level = (*c & REG_C_IRQF) ? 1 : 0;
	if (level != r->irq_level) {
		r->irq_level = level;
		irq_line_set(&r->irq, level);
	}
}

/* When the timer must next look: the first enabled event whose flag is not yet set (a set flag
 * keeps the line high until the guest reads C, which wakes the timer), UINT64_MAX if none. */
static uint64_t rtc_next_event(const struct rtc_mc146818 *r)
{
	uint8_t armed = r->cmos[RTC_REG_B] & (uint8_t)~r->cmos[RTC_REG_C];
	uint64_t next = UINT64_MAX;
	if ((armed & REG_B_PIE) && rtc_period_ticks(r))
		next = rtc_tick_to_ns(r->pf_next_tick);
	if ((armed & (REG_B_UIE | REG_B_AIE)) && r->uf_next_ns < next)
		next = r->uf_next_ns;
	return next;
}

/* The timer thread: raises the interrupts while the vCPUs halt. It sleeps until the next
 * event on the host's monotonic clock, which runs as the guest clock does except while the VM
 * is paused: then the guest clock stands still and the timer only polls it, slowly. */
static void *rtc_timer_main(void *opaque)
{
	struct rtc_mc146818 *r = opaque;
	sandbox_enter(SANDBOX_TIMER);
	pthread_mutex_lock(&r->lock);
	while (!r->stop) {
		uint64_t now = guest_clock_ns(&r->clock);
		rtc_run(r, now);
		uint64_t next = rtc_next_event(r);
		if (next == UINT64_MAX) {
			pthread_cond_wait(&r->wake, &r->lock);
			continue;
		}
		uint64_t wait = next > now ? next - now : 0;
		if (now == r->timer_last_now && wait < RTC_PAUSED_POLL_NS)
			wait = RTC_PAUSED_POLL_NS;
		r->timer_last_now = now;
		struct timespec ts;
		clock_gettime(CLOCK_MONOTONIC, &ts);
		uint64_t ns = (uint64_t)ts.tv_nsec + wait % NS_PER_SEC;
		ts.tv_sec += (time_t)(wait / NS_PER_SEC + ns / NS_PER_SEC);
		ts.tv_nsec = (long)(ns % NS_PER_SEC);
		pthread_cond_timedwait(&r->wake, &r->lock, &ts);
	}
	pthread_mutex_unlock(&r->lock);
	return NULL;
}

static void rtc_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len, bool is_write)
{
	struct rtc_mc146818 *r = opaque;
	if (len != 1) {
		if (!is_write)
			memset(data, 0xff, len);
		return;
	}
	pthread_mutex_lock(&r->lock);
	if (offset == 0) {
		if (is_write)
			r->index = data[0] & 0x7f; /* bit 7 masks NMIs; nothing to mask here */
		else
			data[0] = 0xff;
		pthread_mutex_unlock(&r->lock);
		return;
	}
	uint8_t idx = r->index;
	rtc_run(r, guest_clock_ns(&r->clock));
	if (!is_write) {
		if (idx <= RTC_YEAR || idx == RTC_CENTURY) {
			if (!(r->cmos[RTC_REG_B] & REG_B_SET))
				rtc_latch_time(r);
		}
		data[0] = r->cmos[idx];
		if (idx == RTC_REG_C) { /* reading C acknowledges: the line goes low */
			r->cmos[RTC_REG_C] = 0;
			rtc_run(r, guest_clock_ns(&r->clock));
			pthread_cond_signal(&r->wake);
		}
	} else {
		switch (idx) {
		case RTC_REG_B: {
			bool was_set = r->cmos[RTC_REG_B] & REG_B_SET;
			if (!was_set && (data[0] & REG_B_SET))
				rtc_latch_time(r); /* the guest edits from the current time */
			r->cmos[RTC_REG_B] = data[0];
			if (was_set && !(data[0] & REG_B_SET))
				rtc_commit_time(r);
			rtc_run(r, guest_clock_ns(&r->clock)); /* an enable may raise or drop IRQF */
			pthread_cond_signal(&r->wake);
			break;
		}
		case RTC_REG_A: {
			uint64_t period = rtc_period_ticks(r);
			r->cmos[idx] = data[0] & 0x7f; /* UIP is read-only */
			if (rtc_period_ticks(r) != period)
				rtc_periodic_restart(r, guest_clock_ns(&r->clock));
			pthread_cond_signal(&r->wake);
			break;
		}
		case RTC_REG_C:
		case RTC_REG_D:
			break; /* read-only */
		default:
			r->cmos[idx] = data[0];
			if ((idx <= RTC_YEAR || idx == RTC_CENTURY) && !(r->cmos[RTC_REG_B] & REG_B_SET))
				rtc_commit_time(r);
		}
	}
	pthread_mutex_unlock(&r->lock);
}

/* The CMOS bytes, the index register, and the guest's time as an offset to UTC: a restore on
 * another day still shows the guest the time it set, moved on by the real time since. */
static void rtc_mc146818_save(void *opaque, struct stream *st)
{
	struct rtc_mc146818 *r = opaque;
	pthread_mutex_lock(&r->lock);
	stream_put_u8(st, r->index);
	stream_put_bytes(st, r->cmos, sizeof(r->cmos));
	stream_put_u64(st, (uint64_t)(int64_t)r->offset);
	pthread_mutex_unlock(&r->lock);
}

static int rtc_mc146818_load(void *opaque, struct stream *st, uint32_t version)
{
	struct rtc_mc146818 *r = opaque;
	uint8_t cmos[sizeof(r->cmos)];
	if (version != RTC_MC146818_STATE_VERSION)
		return -EBADMSG;
	uint8_t index = stream_get_u8(st);
	stream_get_bytes(st, cmos, sizeof(cmos));
	int64_t offset = (int64_t)stream_get_u64(st);
	/* An offset beyond +-10000 years cannot come from a guest setting a real date. */
	if (stream_error(st) || index > 0x7f || offset > 316000000000LL || offset < -316000000000LL)
		return -EBADMSG;
	pthread_mutex_lock(&r->lock);
	r->index = index;
	memcpy(r->cmos, cmos, sizeof(cmos));
	r->offset = (time_t)offset;
	/* The event times restart on this VM's guest clock. A raised line is in the in-kernel
	 * irqchip's saved state already; reading C lowers it. */
	uint64_t now = guest_clock_ns(&r->clock);
	rtc_periodic_restart(r, now);
	rtc_update_restart(r, now);
	r->irq_level = (r->cmos[RTC_REG_C] & REG_C_IRQF) ? 1 : 0;
	pthread_cond_signal(&r->wake);
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static void rtc_mc146818_destroy(void *opaque)
{
	struct rtc_mc146818 *r = opaque;
	bus_unregister(r->pio, PORT_RTC, r);
	if (r->timer_started) {
		pthread_mutex_lock(&r->lock);
		r->stop = true;
		pthread_cond_signal(&r->wake);
		pthread_mutex_unlock(&r->lock);
		pthread_join(r->timer, NULL);
	}
	pthread_cond_destroy(&r->wake);
	pthread_mutex_destroy(&r->lock);
	free(r);
}

static void *rtc_mc146818_realize(const struct device_ctx *ctx, const void *arg)
{
	(void)arg;
	struct rtc_mc146818 *r = calloc(1, sizeof(*r));
	if (!r)
		return NULL;
	pthread_mutex_init(&r->lock, NULL);
	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC); /* the timer's sleeps */
	pthread_cond_init(&r->wake, &attr);
	pthread_condattr_destroy(&attr);
	r->cmos[RTC_REG_A] = 0x26; /* 32.768 kHz time base, 1024 Hz rate */
	r->cmos[RTC_REG_B] = REG_B_24H;
	r->cmos[RTC_REG_D] = REG_D_VRT;
	r->pio = ctx->pio;
	r->irq = (struct irq_line){ ctx->irq, IRQ_RTC };
	r->clock = ctx->clock;
	uint64_t now = guest_clock_ns(&r->clock);
	rtc_periodic_restart(r, now);
	rtc_update_restart(r, now);
	/* Its signals are the VMM's: the timer blocks them all (it inherits the mask). */
	sigset_t all, old;
	sigfillset(&all);
	pthread_sigmask(SIG_SETMASK, &all, &old);
	int err = pthread_create(&r->timer, NULL, rtc_timer_main, r);
	pthread_sigmask(SIG_SETMASK, &old, NULL);
	r->timer_started = err == 0;
	if (err != 0)
		log_error("cannot start the CMOS clock's timer: %s", strerror(err));
	else if (bus_register(ctx->pio, PORT_RTC, 2, rtc_access, r, "rtc") < 0)
		log_error("cannot place the CMOS clock at %#x", PORT_RTC);
	else
		return r;
	rtc_mc146818_destroy(r);
	return NULL;
}

void rtc_mc146818_set_cmos(struct rtc_mc146818 *r, uint8_t index, uint8_t value)
{
	if (index < 0x0e || index >= sizeof(r->cmos))
		return;
	pthread_mutex_lock(&r->lock);
	r->cmos[index] = value;
	pthread_mutex_unlock(&r->lock);
}

const struct device_ops rtc_mc146818_ops = {
	.name = "CMOS clock",
	.tag = STREAM_TAG('R', 'T', 'C', ' '),
	.version = RTC_MC146818_STATE_VERSION,
	.realize = rtc_mc146818_realize,
	.destroy = rtc_mc146818_destroy,
	.save = rtc_mc146818_save,
	.load = rtc_mc146818_load,
};
