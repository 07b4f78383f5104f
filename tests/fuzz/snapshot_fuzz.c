/* snapshot_fuzz: a libFuzzer target for the snapshot state parser: the stream framing
 * (src/migration/stream.c, built with STREAM_FUZZING so a wrong CRC does not stop an input
 * before the field checks), the configuration section (config.c) and vmstate's loader with the
 * platform devices' loaders (serial, CMOS RTC, i8042, ACPI PM) on real device objects. There is
 * no /dev/kvm here: the VM has no vCPUs and an invalid VM fd, so the KVM sections are checked
 * and then refused by the ioctl; tests/migration/snapshot.sh covers them on a real KVM.
 * Built and run by tests/fuzz/snapshot_run.sh. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hw/devices.h"
#include "lib/log.h"
#include "migration/config.h"
#include "migration/stream.h"
#include "migration/vmstate.h"
#include "vmm/vm.h"

/* Stand-ins for what the devices call in the rest of kvmkit. */
bool log_verbose;
void log_start_clock(void) {}
void log_error(const char *fmt, ...) { (void)fmt; }
void log_warn(const char *fmt, ...) { (void)fmt; }
void log_debug(const char *fmt, ...) { (void)fmt; }
bool vm_is_paused(struct vm *vm) { (void)vm; return false; }
struct console;
void console_write(struct console *c, const uint8_t *buf, size_t len)
{
	(void)c; (void)buf; (void)len;
}

/* The devices' handles: interrupts and machine requests go nowhere. */
static void no_line(void *opaque, uint32_t gsi, int level) { (void)opaque; (void)gsi; (void)level; }
static const struct irq_ops no_irq_ops = { .set_line = no_line };
static void no_stop(void *opaque, enum vm_stop_reason reason, int status)
{
	(void)opaque; (void)reason; (void)status;
}

static struct vm *vm;

static void make_devices(void)
{
	static struct vm_config cfg; /* no disks, no rng: no virtio device */
	vm = calloc(1, sizeof(*vm));
	vm->cfg = &cfg;
	vm->kvm_fd = vm->vm_fd = -1;
	const struct device_ctx ctx = { .pio = &vm->pio_bus, .mmio = &vm->mmio_bus,
					.irq = { &no_irq_ops, NULL }, .machine = { no_stop, NULL },
					.registry = &vm->devices };
	const struct device_ops *platform[] = { &serial_8250_ops, &rtc_mc146818_ops, &i8042_ops,
						&acpi_pm_ops };
	for (size_t i = 0; i < sizeof(platform) / sizeof(platform[0]); i++)
		if (device_realize(&vm->devices, platform[i], &ctx, NULL) < 0)
			abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!vm)
		make_devices();
	struct stream s;
	stream_init_mem_reader(&s, data, size);
	uint32_t version;
	struct stream_section sec;
	struct vmstate_loader loader;
	if (vmstate_loader_init(&loader, vm, "fuzz") < 0)
		abort();
	int r = stream_read_header(&s, "KVMKITSS", 1, &version);
	for (int n = 0; r == 0 && n < 64 && stream_next_section(&s, &sec) == 0; n++) {
		if (sec.tag == STREAM_TAG_END)
			break;
		bool handled;
		if (sec.tag == CONFIG_TAG) {
			struct vm_config cfg;
			memset(&cfg, 0, sizeof(cfg));
			r = config_load(&cfg, &s, sec.version);
			config_release(&cfg);
		} else if ((r = vmstate_load_section(&loader, &sec, &s, &handled)) == 0 && !handled) {
			stream_skip_rest(&s); /* RAM and the unknown */
			r = stream_end_read(&s);
		}
	}
	vmstate_loader_finish(&loader, r == 0);
	stream_close(&s);
	return 0;
}
