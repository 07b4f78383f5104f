/* ACPI fixed hardware: the PM1a event and control blocks (SLP_EN with the \_S5 type powers the
 * VM off, the fixed-feature power button raises an SCI) and the FADT's RESET_REG. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "hw/devices.h"
#include "lib/le.h"
#include "lib/log.h"
#include "migration/stream.h"
#include "vmm/vm.h"

struct acpi_pm {
	pthread_mutex_t lock;
	struct vm *vm;
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
	vm_set_irq_line(pm->vm, IRQ_ACPI_SCI, level);
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
		vm_stop(pm->vm, VM_STOP_POWEROFF, VM_EXIT_STATUS_POWEROFF);
	else
		log_debug("guest asked for ACPI sleep type %u, which is not supported", slp_typ);
}

/* The three ranges share one callback; offsets are relative to PORT_ACPI_PM1A_EVT. */
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
			vm_stop(pm->vm, VM_STOP_RESET, VM_EXIT_STATUS_RESET);
		}
	}
	pthread_mutex_unlock(&pm->lock);
}

void acpi_pm_save(struct acpi_pm *pm, struct stream *st)
{
	pthread_mutex_lock(&pm->lock);
	stream_put_u16(st, pm->pm1_sts);
	stream_put_u16(st, pm->pm1_en);
	stream_put_u16(st, pm->pm1_cnt);
	pthread_mutex_unlock(&pm->lock);
}

int acpi_pm_load(struct acpi_pm *pm, struct stream *st, uint32_t version)
{
	if (version != ACPI_PM_STATE_VERSION)
		return -EBADMSG;
	uint16_t sts = stream_get_u16(st), en = stream_get_u16(st), cnt = stream_get_u16(st);
	/* SLP_EN is a write-only trigger and SCI_EN always reads 1 (acpi_pm_cnt_write). */
	if (stream_error(st) || (cnt & ACPI_PM1_CNT_SLP_EN) || !(cnt & ACPI_PM1_CNT_SCI_EN))
		return -EBADMSG;
	pthread_mutex_lock(&pm->lock);
	pm->pm1_sts = sts;
	pm->pm1_en = en;
	pm->pm1_cnt = cnt;
	pthread_mutex_unlock(&pm->lock);
	return 0;
}

struct acpi_pm *acpi_pm_create(struct vm *vm)
{
	struct acpi_pm *pm = calloc(1, sizeof(*pm));
	if (!pm)
		return NULL;
	pthread_mutex_init(&pm->lock, NULL);
	pm->vm = vm;
	pm->pm1_cnt = ACPI_PM1_CNT_SCI_EN;
	/* 0x600-0x608 in one range: the event block, the control block and the reset register. */
	if (bus_register(&vm->pio_bus, PORT_ACPI_PM1A_EVT, PORT_ACPI_RESET + 1 - PORT_ACPI_PM1A_EVT,
			 acpi_pm_access, pm, "acpi-pm") < 0) {
		acpi_pm_destroy(pm);
		return NULL;
	}
	return pm;
}

void acpi_pm_destroy(struct acpi_pm *pm)
{
	if (!pm)
		return;
	pthread_mutex_destroy(&pm->lock);
	free(pm);
}
