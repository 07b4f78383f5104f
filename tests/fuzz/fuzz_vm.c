/* fuzz_vm: the VM the snapshot and migration fuzz targets load state into, and stand-ins for
 * what its devices and the loaders call in the rest of kvmkit. There is no /dev/kvm here: the
 * VM has no vCPUs and an invalid VM fd, so the KVM sections are checked and then refused by
 * the ioctl; tests/migration/snapshot.sh and migrate.sh cover them on a real KVM. */
#include "fuzz_vm.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

#include "hw/devices.h"
#include "lib/log.h"
#include "vmm/sandbox.h"

bool log_verbose;
void log_start_clock(void) {}
/* FUZZ_VERBOSE=1 shows the loaders' refusals when replaying an input. */
void log_error(const char *fmt, ...)
{
	if (!getenv("FUZZ_VERBOSE"))
		return;
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}
void log_warn(const char *fmt, ...) { (void)fmt; }
void log_debug(const char *fmt, ...) { (void)fmt; }
bool vm_is_paused(struct vm *vm) { (void)vm; return false; }
void sandbox_enter(enum sandbox_thread kind) { (void)kind; } /* the RTC's timer: no filter here */
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

struct vm *fuzz_vm_create(struct vm_config *cfg)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm)
		abort();
	vm->cfg = cfg;
	vm->kvm_fd = vm->vm_fd = -1;
	if (cfg->ram_size) {
		void *ram = mmap(NULL, cfg->ram_size, PROT_READ | PROT_WRITE,
				 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		if (ram == MAP_FAILED)
			abort();
		vm->mem.regions[0] = (struct guest_mem_region){ .gpa = 0, .size = cfg->ram_size,
								.host = ram };
		vm->mem.nregions = 1;
		vm->mem.ram_size = vm->mem.mapping_size = cfg->ram_size;
		vm->mem.mapping = ram;
	}
	const struct device_ctx ctx = { .pio = &vm->pio_bus, .mmio = &vm->mmio_bus,
					.mem = &vm->mem, .irq = { &no_irq_ops, NULL },
					.machine = { no_stop, NULL }, .registry = &vm->devices };
	const struct device_ops *platform[] = { &serial_8250_ops, &rtc_mc146818_ops, &i8042_ops,
						&acpi_pm_ops };
	for (size_t i = 0; i < sizeof(platform) / sizeof(platform[0]); i++)
		if (device_realize(&vm->devices, platform[i], &ctx, NULL) < 0)
			abort();
	return vm;
}

void fuzz_vm_clear_ram(struct vm *vm)
{
	if (vm->mem.mapping)
		madvise(vm->mem.mapping, vm->mem.mapping_size, MADV_DONTNEED);
}
