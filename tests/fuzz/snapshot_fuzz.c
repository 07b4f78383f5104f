/* snapshot_fuzz: a libFuzzer target for the snapshot state parser: the stream framing
 * (src/migration/stream.c, built with STREAM_FUZZING so a wrong CRC does not stop an input
 * before the field checks), the configuration section (config.c) and the platform devices'
 * loaders (serial, CMOS RTC, i8042, ACPI PM) on real device objects. The KVM sections (CPU,
 * irqchip, PIT, clock) need /dev/kvm and are left to tests/migration/snapshot.sh.
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
#include "vmm/vm.h"

/* Stand-ins for what the devices call in the rest of kvmkit. */
bool log_verbose;
void log_start_clock(void) {}
void log_error(const char *fmt, ...) { (void)fmt; }
void log_warn(const char *fmt, ...) { (void)fmt; }
void log_debug(const char *fmt, ...) { (void)fmt; }
void vm_set_irq_line(struct vm *vm, uint32_t irq, int level) { (void)vm; (void)irq; (void)level; }
void vm_stop(struct vm *vm, enum vm_stop_reason reason, int status)
{
	(void)vm; (void)reason; (void)status;
}
void vm_stop_because(struct vm *vm, enum vm_stop_reason reason, int status, const char *cause)
{
	(void)vm; (void)reason; (void)status; (void)cause;
}
struct console;
void console_write(struct console *c, const uint8_t *buf, size_t len)
{
	(void)c; (void)buf; (void)len;
}

static struct vm *vm;

static void make_devices(void)
{
	vm = calloc(1, sizeof(*vm));
	vm->com1 = serial_8250_create(vm, 0x3f8, 4, NULL);
	vm->rtc = rtc_mc146818_create(vm);
	vm->i8042 = i8042_create(vm);
	vm->acpi_pm = acpi_pm_create(vm);
	if (!vm->com1 || !vm->rtc || !vm->i8042 || !vm->acpi_pm)
		abort();
}

static void load_section(const struct stream_section *sec, struct stream *s)
{
	switch (sec->tag) {
	case CONFIG_TAG: {
		struct vm_config cfg;
		memset(&cfg, 0, sizeof(cfg));
		config_load(&cfg, s, sec->version);
		config_release(&cfg);
		return;
	}
	case STREAM_TAG('S', 'E', 'R', 'L'): serial_8250_load(vm->com1, s, sec->version); break;
	case STREAM_TAG('R', 'T', 'C', ' '): rtc_mc146818_load(vm->rtc, s, sec->version); break;
	case STREAM_TAG('K', 'B', 'C', ' '): i8042_load(vm->i8042, s, sec->version); break;
	case STREAM_TAG('A', 'C', 'P', 'I'): acpi_pm_load(vm->acpi_pm, s, sec->version); break;
	default: stream_skip_rest(s);
	}
	stream_end_read(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!vm)
		make_devices();
	struct stream s;
	stream_init_mem_reader(&s, data, size);
	uint32_t version;
	struct stream_section sec;
	if (stream_read_header(&s, "KVMKITSS", 1, &version) == 0) {
		for (int n = 0; n < 64 && stream_next_section(&s, &sec) == 0; n++) {
			if (sec.tag == STREAM_TAG_END)
				break;
			load_section(&sec, &s);
			if (stream_error(&s))
				break;
		}
	}
	stream_close(&s);
	return 0;
}
