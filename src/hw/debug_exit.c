/* QEMU's isa-debug-exit at port 0xf4: a test guest writes v and kvmkit exits with status
 * (v << 1) | 1, so test guests written for QEMU report results unchanged. */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "hw/devices.h"
#include "lib/log.h"
#include "vmm/device.h"

struct debug_exit {
	struct bus *pio;
	struct machine_handle machine;
};

static void debug_exit_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			      bool is_write)
{
	struct debug_exit *d = opaque;
	(void)offset;
	if (!is_write) {
		memset(data, 0xff, len);
		return;
	}
	/* QEMU truncates the status to the exit code's 8 bits the same way. */
	machine_request_stop(&d->machine, VM_STOP_EXIT, ((data[0] << 1) | 1) & 0xff);
}

static void debug_exit_destroy(void *opaque)
{
	struct debug_exit *d = opaque;
	bus_unregister(d->pio, PORT_DEBUG_EXIT, d);
	free(d);
}

static void *debug_exit_realize(const struct device_ctx *ctx, const void *arg)
{
	(void)arg;
	struct debug_exit *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->pio = ctx->pio;
	d->machine = ctx->machine;
	if (bus_register(ctx->pio, PORT_DEBUG_EXIT, 4, debug_exit_access, d, "debug-exit") < 0) {
		log_error("cannot place the debug-exit port at %#x", PORT_DEBUG_EXIT);
		free(d);
		return NULL;
	}
	return d;
}

const struct device_ops debug_exit_ops = {
	.name = "debug-exit port",
	.realize = debug_exit_realize,
	.destroy = debug_exit_destroy,
};
