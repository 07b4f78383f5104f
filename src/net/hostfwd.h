/* Host port forwarding rules of user-mode networking, in QEMU's syntax:
 * "[tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport" (hostfwd=tcp::2222-:22). */
#ifndef KVMKIT_NET_HOSTFWD_H
#define KVMKIT_NET_HOSTFWD_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>

struct net_hostfwd {
	bool udp;
	struct in_addr host_addr;  /* INADDR_ANY when left out */
	uint16_t host_port;
	struct in_addr guest_addr; /* 0.0.0.0 when left out: the first DHCP address */
	uint16_t guest_port;
};

/* Parses spec into *fwd. Returns 0, or -1 with *why set to a phrase saying what is wrong. */
int net_hostfwd_parse(const char *spec, struct net_hostfwd *fwd, const char **why);

#endif
