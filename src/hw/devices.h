/* The legacy platform devices (vmm/device.h's interface); each registers itself on the VM's
 * buses and does its own locking (callbacks run on vCPU threads). */
#ifndef KVMKIT_HW_DEVICES_H
#define KVMKIT_HW_DEVICES_H

#include <stddef.h>
#include <stdint.h>

#include "vmm/device.h"

struct serial_8250;
struct acpi_pm;

/* Section versions of their saved state (vmm/device.h's save and load). */
#define SERIAL_8250_STATE_VERSION 1
#define RTC_MC146818_STATE_VERSION 1
#define I8042_STATE_VERSION 1
#define ACPI_PM_STATE_VERSION 2

/* 16550A UART at COM1 (IRQ 4); realize's arg: the struct console it transmits to. */
extern const struct device_ops serial_8250_ops;
/* Queues bytes typed by the user; returns how many fit in the receive buffer. */
size_t serial_8250_receive(struct serial_8250 *s, const uint8_t *buf, size_t len);
/* Signals a break condition on the line (Ctrl-A b). */
void serial_8250_break(struct serial_8250 *s);

/* MC146818 CMOS real-time clock at 0x70/0x71, reading the host's time (UTC). */
extern const struct device_ops rtc_mc146818_ops;
struct rtc_mc146818;
/* Sets a byte of the CMOS memory (index 0x0e-0x7f; the clock's own registers below are not
 * settable here): where the firmware reads the RAM size and CPU count at power-on. */
void rtc_mc146818_set_cmos(struct rtc_mc146818 *r, uint8_t index, uint8_t value);

/* i8042 keyboard controller: enough for the reset line (command 0xfe) and probing. */
extern const struct device_ops i8042_ops;

/* ACPI fixed hardware: PM1a event/control blocks (power-off through SLP_EN) and RESET_REG. */
extern const struct device_ops acpi_pm_ops;
/* Presses the power button (PWRBTN_STS and an SCI): QMP system_powerdown. Any thread. */
void acpi_pm_power_button(struct acpi_pm *pm);
/* Moves the block (PM1a EVT at base, CNT at +4, the timer at +8, RESET_REG at +0xc): the ICH9
 * LPC's PMBASE. It changes the port bus's ranges, which vCPUs look up without a lock (bus.h):
 * safe while only the vCPU calling it does port I/O, as when firmware programs PMBASE on the
 * boot vCPU. Returns 0, -EINVAL (0 or beyond 64 Ki ports) or -EEXIST (another device decodes
 * there; the block stays put). */
int acpi_pm_set_base(struct acpi_pm *pm, uint16_t base);

/* QEMU's isa-debug-exit at 0xf4: a write of v ends kvmkit with status (v << 1) | 1. */
extern const struct device_ops debug_exit_ops;

/* QEMU's pc-testdev: a scratch port at 0xe0, 64 KiB of scratch MMIO at 0xff000000 and the
 * IRQ-line ports (0x2000 + line). */
extern const struct device_ops pc_testdev_ops;

#endif
