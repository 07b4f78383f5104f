/* Picks the network backend a --net option names. */
#include "net/net.h"

#include "vmm/vm.h"

struct net_backend *net_backend_open(struct iothread *io, const struct vm_nic *nic)
{
	return nic->backend == VM_NIC_TAP ? net_tap_open(io, nic) : net_slirp_open(io, nic);
}
