/* placeholder: virtio-console is being written */
#include <stddef.h>

#include "lib/log.h"
#include "virtio/devices.h"

struct virtio_console *virtio_console_create(struct vm *vm, const struct vm_vconsole *c)
{
	(void)vm, (void)c;
	log_error("virtio-console is not available yet");
	return NULL;
}

void virtio_console_destroy(struct virtio_console *con)
{
	(void)con;
}
