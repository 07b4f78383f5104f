/* Picks the network backend a --net option names. */
#include "net/net.h"

#include "lib/log.h"
#include "vmm/device_config.h"

struct net_backend *net_backend_open(struct iothread *io, const struct vm_nic *nic)
{
	if (nic->backend == VM_NIC_TAP)
		return net_tap_open(io, nic);
#ifdef KVMKIT_HAVE_SLIRP
	return net_slirp_open(io, nic);
#else
	(void)io;
	log_error("this kvmkit was built without libslirp: --net user is not available (use --net tap)");
	return NULL;
#endif
}
