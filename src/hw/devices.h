/* Constructors of the legacy platform devices; each registers itself on the VM's buses and
 * does its own locking (callbacks run on vCPU threads). */
#ifndef KVMKIT_HW_DEVICES_H
#define KVMKIT_HW_DEVICES_H

#include <stddef.h>
#include <stdint.h>

struct vm;
struct console;
struct stream;

/* Snapshot state: each device writes its own versioned section body (*_save) and reads it back
 * checking every field (*_load: 0, or -EBADMSG for a damaged or unknown-version body). The
 * caller frames the section (migration/snapshot.c); the VM is stopped meanwhile. */
#define SERIAL_8250_STATE_VERSION 1
#define RTC_MC146818_STATE_VERSION 1
#define I8042_STATE_VERSION 1
#define ACPI_PM_STATE_VERSION 1

/* 16550A UART at `base` raising ISA `irq`, transmitting to `con`. */
struct serial_8250 *serial_8250_create(struct vm *vm, uint16_t base, uint32_t irq,
				       struct console *con);
void serial_8250_destroy(struct serial_8250 *s);
/* Queues bytes typed by the user; returns how many fit in the receive buffer. */
size_t serial_8250_receive(struct serial_8250 *s, const uint8_t *buf, size_t len);
/* Signals a break condition on the line (Ctrl-A b). */
void serial_8250_break(struct serial_8250 *s);
void serial_8250_save(struct serial_8250 *s, struct stream *st);
int serial_8250_load(struct serial_8250 *s, struct stream *st, uint32_t version);

/* MC146818 CMOS real-time clock at 0x70/0x71, reading the host's time (UTC). */
struct rtc_mc146818 *rtc_mc146818_create(struct vm *vm);
void rtc_mc146818_destroy(struct rtc_mc146818 *rtc);
void rtc_mc146818_save(struct rtc_mc146818 *rtc, struct stream *st);
int rtc_mc146818_load(struct rtc_mc146818 *rtc, struct stream *st, uint32_t version);

/* i8042 keyboard controller: enough for the reset line (command 0xfe) and probing. */
struct i8042 *i8042_create(struct vm *vm);
void i8042_destroy(struct i8042 *kbc);
void i8042_save(struct i8042 *kbc, struct stream *st);
int i8042_load(struct i8042 *kbc, struct stream *st, uint32_t version);

/* ACPI fixed hardware: PM1a event/control blocks (power-off through SLP_EN) and RESET_REG. */
struct acpi_pm *acpi_pm_create(struct vm *vm);
void acpi_pm_destroy(struct acpi_pm *pm);
/* Presses the power button (PWRBTN_STS and an SCI): QMP system_powerdown. Any thread. */
void acpi_pm_power_button(struct acpi_pm *pm);
void acpi_pm_save(struct acpi_pm *pm, struct stream *st);
int acpi_pm_load(struct acpi_pm *pm, struct stream *st, uint32_t version);

/* QEMU's isa-debug-exit at 0xf4: a write of v ends kvmkit with status (v << 1) | 1. */
int debug_exit_create(struct vm *vm);

/* QEMU's pc-testdev: a scratch port at 0xe0 and 64 KiB of scratch MMIO at 0xff000000. */
struct pc_testdev *pc_testdev_create(struct vm *vm);
void pc_testdev_destroy(struct pc_testdev *t);

#endif
