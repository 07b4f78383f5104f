/* placeholder: virtio-net is being written */
#include <stddef.h>

#include "lib/log.h"
#include "virtio/devices.h"

struct virtio_net *virtio_net_create(struct vm *vm, const struct vm_nic *nic)
{
	(void)vm, (void)nic;
	log_error("virtio-net is not available yet");
	return NULL;
}

void virtio_net_destroy(struct virtio_net *net)
{
	(void)net;
}
