/* Logging and user-facing error messages: one clear sentence per problem, on stderr. */
#include "lib/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

bool log_verbose;

static struct timespec log_start;

void log_start_clock(void)
{
	clock_gettime(CLOCK_MONOTONIC, &log_start);
}

static void log_vprint(const char *prefix, const char *fmt, va_list ap)
{
	/* One fprintf-sized write keeps lines from different threads from interleaving. */
	char line[1024];
	int n = vsnprintf(line, sizeof(line), fmt, ap);
	if (n < 0)
		return;
	fprintf(stderr, "kvmkit: %s%s\n", prefix, line);
}

void log_error(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vprint("", fmt, ap);
	va_end(ap);
}

void log_warn(const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	log_vprint("warning: ", fmt, ap);
	va_end(ap);
}

bool log_debug_enabled(void)
{
	static int env = -1;
	if (env < 0)
		env = getenv("KVMKIT_DEBUG") != NULL;
	return env || log_verbose;
}

void log_debug(const char *fmt, ...)
{
	if (!log_debug_enabled())
		return;
	/* Seconds since log_start_clock: where start-up time goes, read off the debug lines. */
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	double t = (double)(now.tv_sec - log_start.tv_sec) + (now.tv_nsec - log_start.tv_nsec) / 1e9;
	char prefix[40];
	snprintf(prefix, sizeof(prefix), "debug: +%.3f s: ", t);
	va_list ap;
	va_start(ap, fmt);
	log_vprint(prefix, fmt, ap);
	va_end(ap);
}
