/* What every tier A guest gets from the library: console output, pass/fail exit, string helpers. */
#ifndef GUEST_GUEST_H
#define GUEST_GUEST_H

#include <stdarg.h>
#include "io.h"
#include "multiboot.h"

/* Exit convention (QEMU isa-debug-exit semantics: the VMM exits with status (value << 1) | 1).
 * The runner checks these exact statuses; 0 is never used because QEMU turns it into status 1,
 * which is indistinguishable from a VMM that failed on its own. */
#define PORT_DEBUG_EXIT  0xf4
#define GUEST_EXIT_PASS  0x10  /* VMM exit status 33 */
#define GUEST_EXIT_FAIL  0x11  /* VMM exit status 35 */

/* Each guest defines these two: its name (prefix of its output lines) and its test body.
 * guest_main returns 0 for PASS; the library prints "<name>: PASS|FAIL" and exits. */
extern const char guest_name[];
int guest_main(const struct multiboot_info *mbi);

/* Serial console on COM1 (16550A at 0x3f8, IRQ 4). */
#define PORT_COM1 0x3f8
#define IRQ_COM1  4
void serial_init(void);
void serial_putc(char c);
bool serial_rx_ready(void);
uint8_t serial_rx_byte(void);
void serial_enable_rx_irq(void);

/* printf-lite: %c %s %d %u %x %p with optional '0' flag, width and 'l'/'ll' (64-bit u, x). */
void kprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void kvprintf(const char *fmt, va_list ap);

/* Prints "<name>: FAIL: <why>" and exits with GUEST_EXIT_FAIL right away. */
__attribute__((noreturn, format(printf, 1, 2))) void guest_fail(const char *fmt, ...);
__attribute__((noreturn)) void guest_exit(uint8_t value);

void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

#endif
