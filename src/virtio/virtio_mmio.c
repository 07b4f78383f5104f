/* placeholder: the virtio-mmio transport is being written */
#include "virtio/virtio_mmio.h"

#include <stddef.h>

#include "lib/log.h"

struct virtio_mmio *virtio_mmio_create(struct vm *vm, struct virtio_device *vdev)
{
	(void)vm, (void)vdev;
	log_error("the virtio-mmio transport is not available yet");
	return NULL;
}

void virtio_mmio_destroy(struct virtio_mmio *m)
{
	(void)m;
}
