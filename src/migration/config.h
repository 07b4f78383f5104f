/* The "CONF" section of a snapshot: the options the VM was started with, so `kvmkit run
 * --restore DIR` rebuilds the same machine without being told again. */
#ifndef KVMKIT_MIGRATION_CONFIG_H
#define KVMKIT_MIGRATION_CONFIG_H

#include <stdint.h>

struct stream;
struct vm_config;

#define CONFIG_TAG STREAM_TAG('C', 'O', 'N', 'F')
#define CONFIG_VERSION 3

/* Writes the body of the CONF section. */
void config_save(const struct vm_config *cfg, struct stream *s);

/* Reads the body into *cfg, keeping whatever host-side settings *cfg already has (console,
 * signal fd, restore directory, stats). Strings are allocated and live as long as the process
 * (the configuration does). Returns 0 or -EBADMSG/-EPROTONOSUPPORT/-ENOMEM. */
int config_load(struct vm_config *cfg, struct stream *s, uint32_t version);

/* Frees the strings of every configuration config_load filled and clears *cfg (tests and
 * fuzzing; kvmkit itself keeps its configuration to the end). */
void config_release(struct vm_config *cfg);

#endif
