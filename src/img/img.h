/* kvmkit-img's shared pieces: the subcommands, format probing, qcow2 header facts for
 * `info`, and -o option lists. */
#ifndef KVMKIT_IMG_IMG_H
#define KVMKIT_IMG_IMG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "block/block.h"

/* Subcommands: argv[0] is the subcommand's name; each returns the process exit status. */
int img_create(int argc, char **argv);
int img_info(int argc, char **argv);
int img_convert(int argc, char **argv);
int img_compare(int argc, char **argv);
int img_check(int argc, char **argv);
int img_map(int argc, char **argv);
int img_resize(int argc, char **argv);
int img_snapshot(int argc, char **argv);
int img_commit(int argc, char **argv);
int img_rebase(int argc, char **argv);

/* Prints "kvmkit-img: <message>\n" on stderr: one sentence per problem. */
void img_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Set by the fuzz target (tests/fuzz/qcow2_fuzz.c): img_error prints nothing. */
extern bool img_quiet;
/* Parses "[-f FMT] [--output=human|json] FILE" for command cmd (the file is argv[optind]
 * afterwards). Returns -1 to go on, or the exit status to return (0 after --help, 1 after an
 * error it printed). */
int img_parse_fmt_output(int argc, char **argv, const char *cmd, const char **fmt, bool *json);
/* After getopt: exactly one operand (the image) is left, else one error sentence and false. */
bool img_one_file(int argc);
/* Prints s as a JSON string (quotes, backslashes and control characters escaped). */
void img_json_str(const char *s);

/* "qcow2" if the file starts with the qcow2 magic, else "raw"; NULL (after an error message)
 * if it cannot be read. */
const char *img_probe(const char *path);
/* Checks a -f/-O/-F format name: raw or qcow2 (else one error sentence, false). */
bool img_known_format(const char *path, const char *fmt);
/* block_open with the format given or probed; prints one sentence on failure. */
int img_open(const char *path, const char *fmt, bool readonly, struct block_dev **out);


bool img_all_zero(const uint8_t *p, size_t len);

/* -p: prints "    (NN.NN/100%)\r" as qemu-img does, each time the whole percentage changes;
 * *last starts at -100. Does nothing unless on. */
void img_progress(bool on, uint64_t done, uint64_t total, int *last);

/* What a qcow2 header says, for `info` and `resize` (qcow2_info.c). */
struct img_qcow2_info {
	uint32_t version;
	uint64_t size;
	uint32_t cluster_size;
	uint32_t refcount_bits;
	bool lazy_refcounts, corrupt, dirty, extended_l2;
	uint8_t compression;   /* 0 zlib, 1 zstd */
	char backing[1024];    /* "" = none */
	char backing_fmt[16];  /* "" = not recorded (QCOW2_BACKING_FMT_MAX) */
};
int img_qcow2_read_info(const char *path, struct img_qcow2_info *q);

/* The -o list: key=value[,key=value...] into block_create_options (strings point into text,
 * which is modified). Returns false after one error sentence. */
bool img_parse_create_options(char *text, struct block_create_options *o, uint64_t *size);

/* Human sizes the way qemu-img prints them: "1 GiB", "196 KiB", "1.5 MiB". */
void img_size_str(uint64_t v, char *buf, size_t len);

#endif
