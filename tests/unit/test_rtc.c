/* Unit tests of the MC146818 RTC's interrupts: a fake guest clock and a recording IRQ line. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdatomic.h>
#include <stdbool.h>
#include <string.h>
#include <time.h>

#include "arch/x86/layout.h"
#include "hw/devices.h"
#include "lib/stream.h"
#include "vmm/bus.h"
#include "vmm/device.h"

#define MS 1000000ULL
#define SEC 1000000000ULL

/* --- The fakes: the timer thread reads and raises them too, hence atomics --- */

static atomic_uint_fast64_t fake_now, clock_reads;
static atomic_int line_level, line_raises, line_other_gsi;

static uint64_t fake_clock_ns(void *opaque)
{
	(void)opaque;
	atomic_fetch_add(&clock_reads, 1);
	return atomic_load(&fake_now);
}

static void fake_set_line(void *opaque, uint32_t gsi, int level)
{
	(void)opaque;
	if (gsi != IRQ_RTC) {
		atomic_fetch_add(&line_other_gsi, 1);
		return;
	}
	if (level && !atomic_load(&line_level))
		atomic_fetch_add(&line_raises, 1);
	atomic_store(&line_level, level);
}

static const struct irq_ops fake_irq_ops = { .set_line = fake_set_line };

static struct bus pio;
static void *rtc;

static int rtc_up(void **state)
{
	(void)state;
	atomic_store(&fake_now, 1000 * SEC);
	atomic_store(&line_level, 0);
	atomic_store(&line_raises, 0);
	atomic_store(&line_other_gsi, 0);
	memset(&pio, 0, sizeof(pio));
	const struct device_ctx ctx = {
		.pio = &pio, .irq = { &fake_irq_ops, NULL }, .clock = { fake_clock_ns, NULL },
	};
	rtc = rtc_mc146818_ops.realize(&ctx, NULL);
	return rtc ? 0 : -1;
}

static void rtc_write(uint8_t reg, uint8_t v);

/* The tests' own registers: an alarm hour no time has (not even midnight's 0 0 0 match). */
static int rtc_up_quiet(void **state)
{
	if (rtc_up(state) < 0)
		return -1;
	rtc_write(0x05, 0x3f);
	return 0;
}

static int rtc_down(void **state)
{
	(void)state;
	rtc_mc146818_ops.destroy(rtc);
	assert_int_equal(atomic_load(&line_other_gsi), 0);
	bus_destroy(&pio);
	return 0;
}

static void rtc_write(uint8_t reg, uint8_t v)
{
	assert_true(bus_dispatch(&pio, PORT_RTC, &reg, 1, true));
	assert_true(bus_dispatch(&pio, PORT_RTC + 1, &v, 1, true));
}

static uint8_t rtc_read(uint8_t reg)
{
	uint8_t v = 0;
	assert_true(bus_dispatch(&pio, PORT_RTC, &reg, 1, true));
	assert_true(bus_dispatch(&pio, PORT_RTC + 1, &v, 1, false));
	return v;
}

static void advance(uint64_t ns)
{
	atomic_fetch_add(&fake_now, ns);
}

/* Waits (real time) for the timer thread to raise the line by itself; false after 2 s. */
static bool line_rises_alone(void)
{
	for (int i = 0; i < 400; i++) {
		if (atomic_load(&line_level))
			return true;
		nanosleep(&(struct timespec){ 0, 5 * MS }, NULL);
	}
	return false;
}

/* 1024 Hz (rate 6): a period is 976562.5 ns. PF sets at each period and raises the line;
 * reading C returns IRQF|PF, clears it and lowers the line. */
static void test_periodic(void **state)
{
	(void)state;
	rtc_write(0x0a, 0x26);
	rtc_write(0x0b, 0x42); /* PIE, 24 h */
	assert_int_equal(rtc_read(0x0c) & 0x40, 0); /* no time has passed */
	advance(977 * 1000);
	assert_int_equal(rtc_read(0x0a), 0x26); /* any access brings the flags up to date */
	assert_int_equal(atomic_load(&line_level), 1);
	assert_int_equal(rtc_read(0x0c) & 0xc0, 0xc0);
	assert_int_equal(atomic_load(&line_level), 0);
	assert_int_equal(rtc_read(0x0c) & 0xc0, 0);
	/* The timer raises it with no access while the vCPU would halt. */
	advance(977 * 1000);
	assert_true(line_rises_alone());
	assert_int_equal(rtc_read(0x0c) & 0xc0, 0xc0);
	/* 2 Hz (rate 15): nothing at 0.4 s, PF by 0.5 s (periods fall on multiples). */
	rtc_write(0x0a, 0x2f);
	assert_int_equal(rtc_read(0x0c) & 0xc0, 0);
	uint64_t now = atomic_load(&fake_now);
	advance(SEC / 2 - now % (SEC / 2)); /* to a period's start */
	rtc_read(0x0c);
	advance(400 * MS);
	assert_int_equal(rtc_read(0x0c) & 0xc0, 0);
	advance(100 * MS);
	assert_int_equal(rtc_read(0x0c) & 0xc0, 0xc0);
	/* Rate 1 is 256 Hz, not 32 kHz: nothing 1 ms after a period. */
	rtc_write(0x0a, 0x21);
	rtc_read(0x0c);
	now = atomic_load(&fake_now);
	advance(SEC / 256 - now % (SEC / 256) + 1000);
	assert_int_equal(rtc_read(0x0c) & 0xc0, 0xc0);
	advance(MS);
	assert_int_equal(rtc_read(0x0c) & 0xc0, 0);
	/* Rate 0: off. */
	rtc_write(0x0a, 0x20);
	advance(10 * SEC);
	assert_int_equal(rtc_read(0x0c) & 0x40, 0);
	assert_int_equal(atomic_load(&line_level), 0);
}

/* UF once a second, whatever the steps the clock moves in. */
static void test_update(void **state)
{
	(void)state;
	rtc_write(0x0a, 0x20); /* no periodic flag */
	rtc_write(0x0b, 0x12); /* UIE, 24 h */
	rtc_read(0x0c);
	int seen = 0;
	for (int i = 0; i < 30; i++) {
		advance(100 * MS);
		uint8_t c = rtc_read(0x0c);
		if (c) {
			assert_int_equal(c, 0x90);
			seen++;
		}
	}
	assert_int_equal(seen, 3);
	advance(SEC);
	assert_true(line_rises_alone());
	assert_int_equal(rtc_read(0x0c), 0x90);
	assert_int_equal(atomic_load(&line_level), 0);
	/* SET stops the update cycles. */
	rtc_write(0x0b, 0x92);
	advance(5 * SEC);
	assert_int_equal(rtc_read(0x0c), 0);
}

/* AF when the time matches the alarm (0xc0 and above: any value), at an update cycle. */
static void test_alarm(void **state)
{
	(void)state;
	rtc_write(0x0a, 0x20);
	rtc_write(0x0b, 0x82); /* SET: the guest sets 12:34:10, far from a minute's end */
	rtc_write(0x04, 0x12);
	rtc_write(0x02, 0x34);
	rtc_write(0x00, 0x10);
	rtc_write(0x05, 0x12);
	rtc_write(0x03, 0x34);
	rtc_write(0x01, 0xc0);
	rtc_write(0x0b, 0x22); /* AIE, 24 h */
	rtc_read(0x0c);
	advance(SEC);
	rtc_read(0x0a);
	assert_int_equal(atomic_load(&line_level), 1);
	assert_int_equal(rtc_read(0x0c), 0xb0);   /* IRQF, AF; UF set but not enabled */
	rtc_write(0x05, 0x13);                    /* an hour away: no alarm */
	advance(SEC);
	assert_int_equal(rtc_read(0x0c), 0x10);
	assert_int_equal(atomic_load(&line_level), 0);
	rtc_write(0x05, 0xff);
	rtc_write(0x03, 0xc5);
	advance(SEC);
	assert_int_equal(rtc_read(0x0c), 0xb0);
}

/* Flags set without their enables, but no IRQF and no interrupt ever. */
static void test_disabled(void **state)
{
	(void)state;
	rtc_write(0x0a, 0x23);
	rtc_write(0x05, 0xff);
	rtc_write(0x03, 0xff);
	rtc_write(0x01, 0xff);
	advance(3 * SEC);
	nanosleep(&(struct timespec){ 0, 50 * MS }, NULL);
	assert_int_equal(rtc_read(0x0c), 0x70);
	assert_int_equal(atomic_load(&line_raises), 0);
	/* Enabling with a flag set raises it; disabling it again drops it. */
	advance(SEC);
	rtc_write(0x0b, 0x42);
	assert_int_equal(atomic_load(&line_level), 1);
	rtc_write(0x0b, 0x02);
	assert_int_equal(atomic_load(&line_level), 0);
	assert_int_equal(rtc_read(0x0c), 0x70);
}

/* A paused VM: the guest clock stands still, so no interrupt, and the timer polls instead of
 * spinning on an event that never comes. */
static void test_paused(void **state)
{
	(void)state;
	rtc_write(0x0a, 0x23); /* 8192 Hz */
	rtc_write(0x0b, 0x52); /* PIE, UIE */
	rtc_read(0x0c);
	uint64_t reads = atomic_load(&clock_reads);
	nanosleep(&(struct timespec){ 0, 200 * MS }, NULL);
	reads = atomic_load(&clock_reads) - reads;
	assert_true(reads < 100);
	assert_int_equal(atomic_load(&line_raises), 0);
	advance(SEC); /* resumed */
	assert_true(line_rises_alone());
}

/* A raised line saved with the VM: the restored device lowers it when C is read, and its
 * interrupts go on on the new VM's guest clock. */
static void test_save_load(void **state)
{
	(void)state;
	rtc_write(0x0a, 0x26);
	rtc_write(0x0b, 0x42);
	advance(SEC);
	rtc_read(0x0a);
	assert_int_equal(atomic_load(&line_level), 1);
	struct stream w;
	stream_init_mem_writer(&w);
	stream_write_header(&w, "KVMKITTS", 1);
	stream_begin_section(&w, rtc_mc146818_ops.tag, 0, rtc_mc146818_ops.version);
	rtc_mc146818_ops.save(rtc, &w);
	assert_int_equal(stream_end_section(&w), 0);
	assert_int_equal(stream_flush(&w), 0);
	size_t len;
	const uint8_t *data = stream_mem_data(&w, &len);
	rtc_down(NULL);
	assert_int_equal(rtc_up(NULL), 0);
	atomic_store(&line_level, 1); /* the irqchip's restored state */
	atomic_store(&fake_now, 5 * SEC);
	struct stream r;
	uint32_t version;
	struct stream_section sec;
	stream_init_mem_reader(&r, data, len);
	assert_int_equal(stream_read_header(&r, "KVMKITTS", 1, &version), 0);
	assert_int_equal(stream_next_section(&r, &sec), 0);
	assert_int_equal(rtc_mc146818_ops.load(rtc, &r, sec.version), 0);
	assert_int_equal(stream_end_read(&r), 0);
	stream_close(&r);
	stream_close(&w);
	assert_int_equal(rtc_read(0x0c) & 0xc0, 0xc0); /* and UF: a second passed */
	assert_int_equal(atomic_load(&line_level), 0);
	advance(MS);
	assert_true(line_rises_alone());
}

/* Destroyed while the timer waits for an 8192 Hz tick, and while it runs them. */
static void test_destroy_armed(void **state)
{
	(void)state;
	rtc_write(0x0a, 0x23);
	rtc_write(0x0b, 0x52);
	for (int i = 0; i < 20; i++) {
		rtc_down(NULL);
		assert_int_equal(rtc_up(NULL), 0);
		rtc_write(0x0a, 0x23);
		rtc_write(0x0b, 0x72);
		advance(MS);
	}
}

/* Hostile values: every register byte, odd sizes, huge clock jumps. */
static void test_hostile(void **state)
{
	(void)state;
	for (unsigned reg = 0; reg < 0x100; reg++) {
		rtc_write((uint8_t)reg, 0xff);
		rtc_read((uint8_t)reg);
		advance(SEC / 3);
	}
	rtc_write(0x0a, 0xff);
	rtc_write(0x0b, 0xff);
	uint8_t b4[4] = { 0xff, 0xff, 0xff, 0xff };
	assert_true(bus_dispatch(&pio, PORT_RTC, b4, 2, true));
	assert_true(bus_dispatch(&pio, PORT_RTC, b4, 2, false));
	assert_int_equal(b4[0] & b4[1], 0xff);
	assert_int_equal(rtc_read(0x0a), 0x7f); /* UIP reads as 0 */
	atomic_store(&fake_now, UINT64_MAX / 2);
	assert_int_equal(rtc_read(0x0c) & 0xc0, 0xc0); /* PF (SET: no UF) */
	atomic_store(&fake_now, UINT64_MAX - SEC);
	rtc_read(0x0c);
	advance(SEC / 2);
	rtc_read(0x0c);
	atomic_store(&fake_now, 0); /* a clock going backwards leaves the device quiet */
	assert_int_equal(rtc_read(0x0c), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_periodic, rtc_up_quiet, rtc_down),
		cmocka_unit_test_setup_teardown(test_update, rtc_up_quiet, rtc_down),
		cmocka_unit_test_setup_teardown(test_alarm, rtc_up_quiet, rtc_down),
		cmocka_unit_test_setup_teardown(test_disabled, rtc_up_quiet, rtc_down),
		cmocka_unit_test_setup_teardown(test_paused, rtc_up_quiet, rtc_down),
		cmocka_unit_test_setup_teardown(test_save_load, rtc_up_quiet, rtc_down),
		cmocka_unit_test_setup_teardown(test_destroy_armed, rtc_up_quiet, rtc_down),
		cmocka_unit_test_setup_teardown(test_hostile, rtc_up_quiet, rtc_down),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
