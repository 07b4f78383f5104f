/* Parser of QEMU-style host port forwarding rules (see hostfwd.h). */
#include "net/hostfwd.h"

#include <arpa/inet.h>
#include <string.h>

/* Splits *p at the first `sep`: returns the part before it (NUL-terminated in place), *p moves
 * past the separator. NULL when sep does not occur. */
static char *take(char **p, char sep)
{
	char *start = *p, *end = strchr(start, sep);
	if (!end)
		return NULL;
	*end = '\0';
	*p = end + 1;
	return start;
}

/* A decimal port 1..65535, digits only. */
static int parse_port(const char *s, uint16_t *port)
{
	unsigned long v = 0;
	if (!*s || strlen(s) > 5)
		return -1;
	for (const char *c = s; *c; c++) {
		if (*c < '0' || *c > '9')
			return -1;
		v = v * 10 + (unsigned long)(*c - '0');
	}
	if (v == 0 || v > 65535)
		return -1;
	*port = (uint16_t)v;
	return 0;
}

/* A dotted-quad IPv4 address, or empty for 0.0.0.0. */
static int parse_addr(const char *s, struct in_addr *addr)
{
	if (!*s) {
		addr->s_addr = htonl(INADDR_ANY);
		return 0;
	}
	return inet_pton(AF_INET, s, addr) == 1 ? 0 : -1;
}

int net_hostfwd_parse(const char *spec, struct net_hostfwd *fwd, const char **why)
{
	char buf[128];
	memset(fwd, 0, sizeof(*fwd));
	if (strlen(spec) >= sizeof(buf)) {
		*why = "is too long";
		return -1;
	}
	strcpy(buf, spec);
	char *p = buf;
	char *proto = take(&p, ':');
	char *haddr = proto ? take(&p, ':') : NULL;
	char *hport = haddr ? take(&p, '-') : NULL;
	char *gaddr = hport ? take(&p, ':') : NULL;
	char *gport = p;
	if (!gaddr) {
		*why = "is not [tcp|udp]:[hostaddr]:hostport-[guestaddr]:guestport";
		return -1;
	}
	if (strcmp(proto, "udp") == 0) {
		fwd->udp = true;
	} else if (*proto && strcmp(proto, "tcp") != 0) {
		*why = "has a protocol other than tcp or udp";
		return -1;
	}
	if (parse_addr(haddr, &fwd->host_addr) < 0 || parse_addr(gaddr, &fwd->guest_addr) < 0) {
		*why = "has an address that is not an IPv4 address like 127.0.0.1";
		return -1;
	}
	if (parse_port(hport, &fwd->host_port) < 0 || parse_port(gport, &fwd->guest_port) < 0) {
		*why = "has a port that is not a number from 1 to 65535";
		return -1;
	}
	return 0;
}
