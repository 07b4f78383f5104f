/* i8042 keyboard controller at 0x60/0x64: the CPU reset line (command 0xfe, or the output port
 * through 0xd1) and enough of the command set for probing; no keyboard is attached. */
#include <errno.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/layout.h"
#include "hw/devices.h"
#include "lib/stream.h"
#include "lib/log.h"
#include "vmm/device.h"

#define STATUS_OBF    0x01 /* output buffer full */
#define STATUS_SYS    0x04 /* self-test passed */
#define STATUS_CMD    0x08 /* last write was to the command port */

#define CMD_READ_CTR  0x20
#define CMD_WRITE_CTR 0x60
#define CMD_SELF_TEST 0xaa
#define CMD_KBD_TEST  0xab
#define CMD_AUX_TEST  0xa9
#define CMD_READ_OUT  0xd0
#define CMD_WRITE_OUT 0xd1
#define CMD_RESET     0xfe

#define OUT_RESET_N   0x01 /* output port bit 0 low = assert CPU reset */

struct i8042 {
	pthread_mutex_t lock;
	struct bus *pio;
	struct machine_handle machine;
	uint8_t status;
	uint8_t ctr;
	uint8_t out_port;
	uint8_t pending_cmd; /* command waiting for its data byte */
	uint8_t obuf;
};

static void i8042_reply(struct i8042 *k, uint8_t v)
{
	k->obuf = v;
	k->status |= STATUS_OBF;
}

static void i8042_command(struct i8042 *k, uint8_t cmd)
{
	switch (cmd) {
	case CMD_READ_CTR:  i8042_reply(k, k->ctr); break;
	case CMD_SELF_TEST: i8042_reply(k, 0x55); break;
	case CMD_KBD_TEST:
	case CMD_AUX_TEST:  i8042_reply(k, 0x00); break;
	case CMD_READ_OUT:  i8042_reply(k, k->out_port); break;
	case CMD_WRITE_CTR:
	case CMD_WRITE_OUT: k->pending_cmd = cmd; break;
	case CMD_RESET:     machine_request_stop(&k->machine, VM_STOP_RESET, VM_EXIT_STATUS_RESET); break;
	default:            break; /* enable/disable ports and the like: nothing to do */
	}
}

static void i8042_data(struct i8042 *k, uint8_t v)
{
	uint8_t cmd = k->pending_cmd;
	k->pending_cmd = 0;
	if (cmd == CMD_WRITE_CTR) {
		k->ctr = v;
	} else if (cmd == CMD_WRITE_OUT) {
		k->out_port = v;
		if (!(v & OUT_RESET_N))
			machine_request_stop(&k->machine, VM_STOP_RESET, VM_EXIT_STATUS_RESET);
	}
	/* Bytes for the (absent) keyboard are dropped; the guest's probe times out cleanly. */
}

static void i8042_access(struct i8042 *k, bool cmd_port, uint8_t *data, uint32_t len,
			 bool is_write)
{
	pthread_mutex_lock(&k->lock);
	if (is_write) {
		if (cmd_port) {
			k->status |= STATUS_CMD;
			i8042_command(k, data[0]);
		} else {
			k->status &= (uint8_t)~STATUS_CMD;
			i8042_data(k, data[0]);
		}
	} else {
		memset(data, 0, len);
		if (cmd_port) {
			data[0] = k->status;
		} else {
			data[0] = k->obuf;
			k->status &= (uint8_t)~STATUS_OBF;
		}
	}
	pthread_mutex_unlock(&k->lock);
}

/* Two one-byte ranges (0x61 between them belongs to the in-kernel PIT's speaker), so each
 * port has its own entry point: both see offset 0. */
static void i8042_data_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			      bool is_write)
{
	(void)offset;
	i8042_access(opaque, false, data, len, is_write);
}

static void i8042_cmd_access(void *opaque, uint64_t offset, uint8_t *data, uint32_t len,
			     bool is_write)
{
	(void)offset;
	i8042_access(opaque, true, data, len, is_write);
}

static void i8042_save(void *opaque, struct stream *st)
{
	struct i8042 *k = opaque;
	pthread_mutex_lock(&k->lock);
	const uint8_t regs[] = { k->status, k->ctr, k->out_port, k->pending_cmd, k->obuf };
	stream_put_bytes(st, regs, sizeof(regs));
	pthread_mutex_unlock(&k->lock);
}

static int i8042_load(void *opaque, struct stream *st, uint32_t version)
{
	struct i8042 *k = opaque;
	uint8_t r[5];
	if (version != I8042_STATE_VERSION)
		return -EBADMSG;
	stream_get_bytes(st, r, sizeof(r));
	/* Only the two commands that take a data byte can be pending. */
	if (stream_error(st) || (r[3] && r[3] != CMD_WRITE_CTR && r[3] != CMD_WRITE_OUT))
		return -EBADMSG;
	pthread_mutex_lock(&k->lock);
	k->status = r[0];
	k->ctr = r[1];
	k->out_port = r[2];
	k->pending_cmd = r[3];
	k->obuf = r[4];
	pthread_mutex_unlock(&k->lock);
	return 0;
}

/* Unregisters what was registered (a failed realize's ranges too: the bus must not keep a
 * port pointing at the freed controller) and frees k. */
static void i8042_destroy(void *opaque)
{
	struct i8042 *k = opaque;
	bus_unregister(k->pio, PORT_I8042_DATA, k);
	bus_unregister(k->pio, PORT_I8042_CMD, k);
	pthread_mutex_destroy(&k->lock);
	free(k);
}

static void *i8042_realize(const struct device_ctx *ctx, const void *arg)
{
	(void)arg;
	struct i8042 *k = calloc(1, sizeof(*k));
	if (!k)
		return NULL;
	pthread_mutex_init(&k->lock, NULL);
	k->pio = ctx->pio;
	k->machine = ctx->machine;
	k->status = STATUS_SYS;
	k->ctr = 0x30; /* ports disabled, no interrupts, as after a firmware probe */
	k->out_port = OUT_RESET_N | 0x02; /* not in reset, A20 on */
	if (bus_register(ctx->pio, PORT_I8042_DATA, 1, i8042_data_access, k, "i8042") < 0 ||
	    bus_register(ctx->pio, PORT_I8042_CMD, 1, i8042_cmd_access, k, "i8042") < 0) {
		log_error("cannot place the i8042 controller at ports %#x and %#x",
			  PORT_I8042_DATA, PORT_I8042_CMD);
		i8042_destroy(k);
		return NULL;
	}
	return k;
}

const struct device_ops i8042_ops = {
	.name = "i8042 controller",
	.tag = STREAM_TAG('K', 'B', 'C', ' '),
	.version = I8042_STATE_VERSION,
	.realize = i8042_realize,
	.destroy = i8042_destroy,
	.save = i8042_save,
	.load = i8042_load,
};
