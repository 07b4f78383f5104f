/* MC146818 CMOS real-time clock at 0x70/0x71: the guest reads the host's UTC time, and a time
 * the guest sets (hwclock -w) is kept as an offset from it. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "arch/x86/layout.h"
#include "hw/devices.h"
#include "lib/stream.h"
#include "lib/log.h"
#include "vmm/device.h"

#define RTC_SECONDS 0x00
#define RTC_MINUTES 0x02
#define RTC_HOURS   0x04
#define RTC_WEEKDAY 0x06
#define RTC_DAY     0x07
#define RTC_MONTH   0x08
#define RTC_YEAR    0x09
#define RTC_REG_A   0x0a
#define RTC_REG_B   0x0b
#define RTC_REG_C   0x0c
#define RTC_REG_D   0x0d
#define RTC_CENTURY 0x32 /* named by the FADT's century field */

#define REG_B_SET   0x80 /* guest is updating the time registers */
#define REG_B_BIN   0x04 /* binary instead of BCD */
#define REG_B_24H   0x02
#define REG_D_VRT   0x80 /* battery good */

struct rtc_mc146818 {
	pthread_mutex_t lock;
	struct bus *pio;
	uint8_t index;
	uint8_t cmos[128];
	time_t offset; /* guest time minus host time, in seconds */
};

static uint8_t to_bcd(const struct rtc_mc146818 *r, int v)
{
	return (r->cmos[RTC_REG_B] & REG_B_BIN) ? (uint8_t)v : (uint8_t)(((v / 10) << 4) | (v % 10));
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
	gmtime_r(&now, &tm);
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
	if (!is_write) {
		if (idx <= RTC_YEAR || idx == RTC_CENTURY) {
			if (!(r->cmos[RTC_REG_B] & REG_B_SET))
				rtc_latch_time(r);
		}
		data[0] = r->cmos[idx];
		if (idx == RTC_REG_C)
			r->cmos[RTC_REG_C] = 0; /* reading C acknowledges */
	} else {
		switch (idx) {
		case RTC_REG_B: {
			bool was_set = r->cmos[RTC_REG_B] & REG_B_SET;
			if (!was_set && (data[0] & REG_B_SET))
				rtc_latch_time(r); /* the guest edits from the current time */
			r->cmos[RTC_REG_B] = data[0];
			if (was_set && !(data[0] & REG_B_SET))
				rtc_commit_time(r);
			break;
		}
		case RTC_REG_A:
			r->cmos[idx] = data[0] & 0x7f; /* UIP is read-only */
			break;
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
	pthread_mutex_unlock(&r->lock);
	return 0;
}

static void rtc_mc146818_destroy(void *opaque)
{
	struct rtc_mc146818 *r = opaque;
	bus_unregister(r->pio, PORT_RTC, r);
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
	r->cmos[RTC_REG_A] = 0x26; /* 32.768 kHz time base, 1024 Hz rate */
	r->cmos[RTC_REG_B] = REG_B_24H;
	r->cmos[RTC_REG_D] = REG_D_VRT;
	r->pio = ctx->pio;
	if (bus_register(ctx->pio, PORT_RTC, 2, rtc_access, r, "rtc") < 0) {
		log_error("cannot place the CMOS clock at %#x", PORT_RTC);
		pthread_mutex_destroy(&r->lock);
		free(r);
		return NULL;
	}
	return r;
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
