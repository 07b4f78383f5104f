/* ACPI fixed hardware: the PM1a event and control blocks (SLP_EN with the \_S5 type powers the
 * VM off, the fixed-feature power button raises an SCI), the PM timer and the FADT's RESET_REG. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "hw/devices.h"
#include "lib/le.h"
#include "lib/log.h"
#include "lib/stream.h"
#include "vmm/device.h"

struct acpi_pm {
	pthread_mutex_t lock;
	struct bus *pio;
	uint16_t base;       /* where the block decodes (PM1a EVT); LPC's PMBASE on Q35 */
	struct irq_line sci;
	struct machine_handle machine;
	struct guest_clock clock;
	uint64_t tmr_base;   /* the timer reads ticks(guest clock) - tmr_base, modulo 2^24 */
	uint16_t pm1_sts;
	uint16_t pm1_en;
	uint16_t pm1_cnt;
};

#define ACPI_PM1_PWRBTN 0x0100  /* PWRBTN_STS in PM1_STS, PWRBTN_EN in PM1_EN */

/* The SCI (level-triggered, IRQ 9) is asserted while an enabled event's status bit is set, as
 * PIIX4/ICH9 PM do; the guest's handler clears the status (write one) and so lowers it. */
static void acpi_pm_update_sci(struct acpi_pm *pm)
{
	bool level = (pm->pm1_sts & pm->pm1_en & ACPI_PM1_PWRBTN) &&
		     (pm->pm1_cnt & ACPI_PM1_CNT_SCI_EN);
	irq_line_set(&pm->sci, level);
}

void acpi_pm_power_button(struct acpi_pm *pm)
{
	pthread_mutex_lock(&pm->lock);
	pm->pm1_sts |= ACPI_PM1_PWRBTN;
	acpi_pm_update_sci(pm);
	pthread_mutex_unlock(&pm->lock);
}

static void acpi_pm_cnt_write(struct acpi_pm *pm, uint16_t v)
{
	/* SCI_EN stays set: there is no SMI handover, the machine is always in ACPI mode. */
	pm->pm1_cnt = (uint16_t)((v & ~ACPI_PM1_CNT_SLP_EN) | ACPI_PM1_CNT_SCI_EN);
	if (!(v & ACPI_PM1_CNT_SLP_EN))
		return;
	unsigned slp_typ = (v >> ACPI_PM1_CNT_SLP_TYP_SHIFT) & 7;
	if (slp_typ == ACPI_SLP_TYP_S5)
		machine_request_stop(&pm->machine, VM_STOP_POWEROFF, VM_EXIT_STATUS_POWEROFF);
	else
		log_debug("guest asked for ACPI sleep type %u, which is not supported", slp_typ);
}

/* Guest-clock nanoseconds as PM timer ticks (3.579545 MHz), without overflowing 64 bits. */
static uint64_t acpi_pm_ticks(uint64_t ns)
{
	return ns / 1000000000u * ACPI_PM_TIMER_HZ + ns % 1000000000u * ACPI_PM_TIMER_HZ / 1000000000u;
}

static uint64_t acpi_pm_timer(const struct acpi_pm *pm)
{
	return acpi_pm_ticks(guest_clock_ns(&pm->clock)) - pm->tmr_base;
}

/* The block: PM1a EVT, CNT, the timer and the reset register, at the same offsets from its
 * base as at their default places. */
#define ACPI_PM_BLOCK_LEN (PORT_ACPI_RESET + 1 - PORT_ACPI_PM1A_EVT)

/* The ranges share one callback; offsets are relative to the block's base, and the registers
 * are named by their default ports. */
static void acpi_pm_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			   bool is_write)
{
	struct acpi_pm *pm = opaque;
	uint64_t port = PORT_ACPI_PM1A_EVT + offset;
	pthread_mutex_lock(&pm->lock);
	if (!is_write) {
		uint64_t v = 0;
		if (port == PORT_ACPI_PM1A_EVT)
			v = pm->pm1_sts | ((uint32_t)pm->pm1_en << 16);
		else if (port == PORT_ACPI_PM1A_EVT + 2)
			v = pm->pm1_en;
		else if (port == PORT_ACPI_PM1A_CNT)
			v = pm->pm1_cnt;
		else if (port >= PORT_ACPI_PM_TMR && port < PORT_ACPI_PM_TMR + 4)
			v = (acpi_pm_timer(pm) & 0xffffff) >> (8 * (port - PORT_ACPI_PM_TMR));
		else if (port != PORT_ACPI_RESET)
			v = ~0ULL;
		le_put(data, len, v);
	} else {
		uint64_t v = le_get(data, len);
		if (port == PORT_ACPI_PM1A_EVT) {
			pm->pm1_sts &= (uint16_t)~v; /* write one to clear */
			if (len == 4)
				pm->pm1_en = (uint16_t)(v >> 16);
		} else if (port == PORT_ACPI_PM1A_EVT + 2) {
			pm->pm1_en = (uint16_t)v;
		}
		if (port == PORT_ACPI_PM1A_EVT || port == PORT_ACPI_PM1A_EVT + 2) {
			acpi_pm_update_sci(pm);
		} else if (port == PORT_ACPI_PM1A_CNT) {
			acpi_pm_cnt_write(pm, (uint16_t)v);
		} else if (port == PORT_ACPI_RESET && (v & 0xff) == ACPI_RESET_VALUE) {
			machine_request_stop(&pm->machine, VM_STOP_RESET, VM_EXIT_STATUS_RESET);
		}
	}
	pthread_mutex_unlock(&pm->lock);
}

static void acpi_pm_save(void *opaque, struct stream *st)
{
	struct acpi_pm *pm = opaque;
	pthread_mutex_lock(&pm->lock);
	stream_put_u16(st, pm->pm1_sts);
	stream_put_u16(st, pm->pm1_en);
	stream_put_u16(st, pm->pm1_cnt);
	stream_put_u64(st, acpi_pm_timer(pm)); /* the count goes on from here after a restore */
	pthread_mutex_unlock(&pm->lock);
}

static int acpi_pm_load(void *opaque, struct stream *st, uint32_t version)
{
	struct acpi_pm *pm = opaque;
	if (version != ACPI_PM_STATE_VERSION)
		return -EBADMSG;
	uint16_t sts = stream_get_u16(st), en = stream_get_u16(st), cnt = stream_get_u16(st);
	uint64_t timer = stream_get_u64(st);
	/* SLP_EN is a write-only trigger and SCI_EN always reads 1 (acpi_pm_cnt_write). */
	if (stream_error(st) || (cnt & ACPI_PM1_CNT_SLP_EN) || !(cnt & ACPI_PM1_CNT_SCI_EN))
		return -EBADMSG;
	pthread_mutex_lock(&pm->lock);
	pm->pm1_sts = sts;
	pm->pm1_en = en;
	pm->pm1_cnt = cnt;
	pm->tmr_base = acpi_pm_ticks(guest_clock_ns(&pm->clock)) - timer;
	pthread_mutex_unlock(&pm->lock);
	return 0;
}

static void acpi_pm_destroy(void *opaque)
{
	struct acpi_pm *pm = opaque;
	bus_unregister(pm->pio, pm->base, pm);
	pthread_mutex_destroy(&pm->lock);
	free(pm);
}

static void *acpi_pm_realize(const struct device_ctx *ctx, const void *arg)
{
	(void)arg;
	struct acpi_pm *pm = calloc(1, sizeof(*pm));
	if (!pm)
		return NULL;
	pthread_mutex_init(&pm->lock, NULL);
	pm->pio = ctx->pio;
	pm->sci = (struct irq_line){ ctx->irq, IRQ_ACPI_SCI };
	pm->machine = ctx->machine;
	pm->clock = ctx->clock;
	pm->tmr_base = acpi_pm_ticks(guest_clock_ns(&pm->clock)); /* counts from 0 at power-on */
	pm->pm1_cnt = ACPI_PM1_CNT_SCI_EN;
	/* 0x600-0x60c in one range: the event and control blocks, the timer, the reset register. */
	pm->base = PORT_ACPI_PM1A_EVT;
	if (bus_register(ctx->pio, pm->base, ACPI_PM_BLOCK_LEN, acpi_pm_access, pm, "acpi-pm") < 0) {
		log_error("cannot place the ACPI registers at %#x", PORT_ACPI_PM1A_EVT);
		pthread_mutex_destroy(&pm->lock);
		free(pm);
		return NULL;
	}
	return pm;
}

int acpi_pm_set_base(struct acpi_pm *pm, uint16_t base)
{
	if (base == pm->base)
		return 0;
	if (base == 0 || base > 0x10000 - ACPI_PM_BLOCK_LEN)
		return -EINVAL;
	bus_unregister(pm->pio, pm->base, pm);
	int r = bus_register(pm->pio, base, ACPI_PM_BLOCK_LEN, acpi_pm_access, pm, "acpi-pm");
	if (r < 0) {
		/* Something else decodes there: the block stays where it was. */
		bus_register(pm->pio, pm->base, ACPI_PM_BLOCK_LEN, acpi_pm_access, pm, "acpi-pm");
		return r;
	}
	pm->base = base;
	return 0;
}

const struct device_ops acpi_pm_ops = {
	.name = "ACPI registers",
	.tag = STREAM_TAG('A', 'C', 'P', 'I'),
	.version = ACPI_PM_STATE_VERSION,
	.realize = acpi_pm_realize,
	.destroy = acpi_pm_destroy,
	.save = acpi_pm_save,
	.load = acpi_pm_load,
};
