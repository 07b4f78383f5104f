/* Logging and user-facing error messages: one clear sentence per problem, on stderr. */
#ifndef KVMKIT_LIB_LOG_H
#define KVMKIT_LIB_LOG_H

#include <stdbool.h>

/* Prints "kvmkit: <message>\n" on stderr. Used at the edges (CLI, loaders) for errors a user
 * must act on; internal code returns -errno and lets its caller say what failed. */
void log_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Debug output, only when KVMKIT_DEBUG is set in the environment (or log_verbose set), each
 * line stamped with the seconds since log_start_clock(). */
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

extern bool log_verbose;

/* Whether log_debug prints (KVMKIT_DEBUG set, or log_verbose). */
bool log_debug_enabled(void);

/* Sets the origin of debug time stamps; call it first thing in main. */
void log_start_clock(void);

#endif
