/* System Control Port A at 0x92 (the "fast A20 gate"): bit 1 is the A20 gate, a 1 written to
 * bit 0 resets the machine. SeaBIOS and bootloaders use it; KVM cannot mask address line 20, so
 * the gate is kept as a value that reads back, as QEMU's port92 does. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>

#include "hw/devices.h"
#include "lib/log.h"
#include "lib/stream.h"
#include "vmm/device.h"

#define PORT92 0x92
#define PORT92_RESET 0x01
#define PORT92_A20 0x02
#define PORT92_STATE_VERSION 1

struct port92 {
	pthread_mutex_t lock;
	struct bus *pio;
	struct machine_handle machine;
	uint8_t value;      /* what the guest wrote, without the self-clearing reset bit */
};

static void port92_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			  bool is_write)
{
	struct port92 *p = opaque;
	(void)offset, (void)len;
	pthread_mutex_lock(&p->lock);
	if (!is_write) {
		data[0] = p->value;
	} else {
		p->value = data[0] & (uint8_t)~PORT92_RESET;
		if (data[0] & PORT92_RESET)
			machine_request_stop(&p->machine, VM_STOP_RESET, VM_EXIT_STATUS_RESET);
	}
	pthread_mutex_unlock(&p->lock);
}

static void port92_save(void *opaque, struct stream *st)
{
	struct port92 *p = opaque;
	pthread_mutex_lock(&p->lock);
	stream_put_u8(st, p->value);
	pthread_mutex_unlock(&p->lock);
}

static int port92_load(void *opaque, struct stream *st, uint32_t version)
{
	struct port92 *p = opaque;
	if (version != PORT92_STATE_VERSION)
		return -EBADMSG;
	uint8_t v = stream_get_u8(st);
	if (stream_error(st) || (v & PORT92_RESET))
		return -EBADMSG;
	pthread_mutex_lock(&p->lock);
	p->value = v;
	pthread_mutex_unlock(&p->lock);
	return 0;
}

static void port92_destroy(void *opaque)
{
	struct port92 *p = opaque;
	bus_unregister(p->pio, PORT92, p);
	pthread_mutex_destroy(&p->lock);
	free(p);
}

static void *port92_realize(const struct device_ctx *ctx, const void *arg)
{
	(void)arg;
	struct port92 *p = calloc(1, sizeof(*p));
	if (!p)
		return NULL;
	pthread_mutex_init(&p->lock, NULL);
	p->pio = ctx->pio;
	p->machine = ctx->machine;
	p->value = PORT92_A20; /* A20 on: KVM guests always see all address lines */
	if (bus_register(ctx->pio, PORT92, 1, port92_access, p, "port92") < 0) {
		log_error("cannot place System Control Port A at %#x", PORT92);
		pthread_mutex_destroy(&p->lock);
		free(p);
		return NULL;
	}
	return p;
}

const struct device_ops port92_ops = {
	.name = "system control port A",
	.tag = STREAM_TAG('P', '9', '2', 'A'),
	.version = PORT92_STATE_VERSION,
	.realize = port92_realize,
	.destroy = port92_destroy,
	.save = port92_save,
	.load = port92_load,
};
