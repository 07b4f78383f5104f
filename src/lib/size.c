/* Parsing of human sizes ("512M", "2G", "4096") as users type them on the command line. */
#include "lib/size.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

int size_parse(const char *text, uint64_t default_unit, uint64_t *out)
{
	if (!text || !isdigit((unsigned char)text[0]))
		return -EINVAL;
	errno = 0;
	char *end;
	unsigned long long value = strtoull(text, &end, 10);
	if (errno == ERANGE)
		return -ERANGE;

	uint64_t unit = default_unit;
	if (*end) {
		switch (toupper((unsigned char)*end)) {
		case 'K': unit = 1ULL << 10; break;
		case 'M': unit = 1ULL << 20; break;
		case 'G': unit = 1ULL << 30; break;
		case 'T': unit = 1ULL << 40; break;
		case 'B': unit = 1; end--; break; /* "4096B": fall into the suffix check below */
		default: return -EINVAL;
		}
		end++;
		if (*end && strcasecmp(end, "B") != 0 && strcasecmp(end, "iB") != 0)
			return -EINVAL;
	}
	if (value != 0 && unit > UINT64_MAX / value)
		return -ERANGE;
	*out = value * unit;
	return 0;
}
