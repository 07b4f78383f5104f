/* Stand-ins for src/lib/log.c in the qcow2 fuzz targets: the parsers report every rejected
 * input, which would flood the fuzzer's output. QCOW2_FUZZ_VERBOSE=1 prints them. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>

#include "lib/log.h"

bool log_verbose;
void log_start_clock(void) {}

static void quiet_log_v(const char *fmt, va_list ap)
{
	static int verbose = -1;
	if (verbose < 0)
		verbose = getenv("QCOW2_FUZZ_VERBOSE") != NULL;
	if (!verbose)
		return;
	fputs("kvmkit: ", stderr);
	vfprintf(stderr, fmt, ap);
	fputc('\n', stderr);
}

void log_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	quiet_log_v(fmt, ap);
	va_end(ap);
}

void log_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	quiet_log_v(fmt, ap);
	va_end(ap);
}

void log_debug(const char *fmt, ...)
{
	(void)fmt;
}
