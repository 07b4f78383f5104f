/* QEMU's isa-debug-exit at port 0xf4: a test guest writes v and kvmkit exits with status
 * (v << 1) | 1, so test guests written for QEMU report results unchanged. */
#include <stdbool.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "hw/devices.h"
#include "vmm/vm.h"

static void debug_exit_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			      bool is_write)
{
	struct vm *vm = opaque;
	(void)offset;
	if (!is_write) {
		memset(data, 0xff, len);
		return;
	}
	/* QEMU truncates the status to the exit code's 8 bits the same way. */
	vm_stop(vm, VM_STOP_EXIT, ((data[0] << 1) | 1) & 0xff);
}

int debug_exit_create(struct vm *vm)
{
	return bus_register(&vm->pio_bus, PORT_DEBUG_EXIT, 4, debug_exit_access, vm, "debug-exit");
}
