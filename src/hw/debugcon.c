/* QEMU's isa-debugcon at port 0x402, where SeaBIOS (and OVMF) write their debug log: bytes the
 * guest writes go to the --firmware-log file, or are logged a line at a time (KVMKIT_DEBUG shows
 * them); a read returns 0xe9, the value firmware checks before it writes there. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lib/log.h"
#include "vmm/device.h"

#define DEBUGCON_PORT 0x402
#define DEBUGCON_READBACK 0xe9
#define DEBUGCON_LINE 256 /* a longer line is logged in pieces */

struct debugcon {
	pthread_mutex_t lock;
	struct bus *pio;
	int fd;                     /* the --firmware-log file (the VM's), or -1 */
	char line[DEBUGCON_LINE];
	size_t len;
};

/* Logs the line so far; a guest's control characters are not passed to the terminal. */
static void debugcon_flush(struct debugcon *d)
{
	if (d->fd >= 0) {
		/* The file gets the bytes as they are (QEMU's chardev does); a full disk loses them. */
		if (write(d->fd, d->line, d->len) < 0)
			log_debug("debugcon: cannot write the firmware log: %s", strerror(errno));
		d->len = 0;
		return;
	}
	for (size_t i = 0; i < d->len; i++)
		if ((unsigned char)d->line[i] < 0x20 || (unsigned char)d->line[i] >= 0x7f)
			d->line[i] = '.';
	log_debug("debugcon: %.*s", (int)d->len, d->line);
	d->len = 0;
}

static void debugcon_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			    bool is_write)
{
	struct debugcon *d = opaque;
	(void)offset;
	if (!is_write) {
		memset(data, DEBUGCON_READBACK, len);
		return;
	}
	pthread_mutex_lock(&d->lock);
	/* QEMU writes only the first byte of a wider access. */
	if (d->fd >= 0) {
		d->line[d->len++] = (char)data[0];
		if (data[0] == '\n')
			debugcon_flush(d);
	} else if (data[0] == '\n') {
		debugcon_flush(d);
	} else if (data[0] != '\r') {
		d->line[d->len++] = (char)data[0];
	}
	if (d->len == DEBUGCON_LINE)
		debugcon_flush(d);
	pthread_mutex_unlock(&d->lock);
}

static void debugcon_destroy(void *opaque)
{
	struct debugcon *d = opaque;
	bus_unregister(d->pio, DEBUGCON_PORT, d);
	if (d->len)
		debugcon_flush(d);
	pthread_mutex_destroy(&d->lock);
	free(d);
}

/* arg: the --firmware-log file descriptor (int *, -1 for none), or NULL. */
static void *debugcon_realize(const struct device_ctx *ctx, const void *arg)
{
	struct debugcon *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->fd = arg ? *(const int *)arg : -1;
	pthread_mutex_init(&d->lock, NULL);
	d->pio = ctx->pio;
	if (bus_register(ctx->pio, DEBUGCON_PORT, 1, debugcon_access, d, "debugcon") < 0) {
		log_error("cannot place the debug console at port %#x", DEBUGCON_PORT);
		pthread_mutex_destroy(&d->lock);
		free(d);
		return NULL;
	}
	return d;
}

/* Nothing to save: a line cut by a snapshot is logged in two pieces. */
const struct device_ops debugcon_ops = {
	.name = "debug console",
	.realize = debugcon_realize,
	.destroy = debugcon_destroy,
};
