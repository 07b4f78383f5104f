/* Ring 3 for the hot loops of benchmark guests (shared/PLATFORM.md: on the CI's /dev/kvm ring 0
 * is emulated one instruction at a time). Measured on that kvm-pvm host: ring 3 runs natively
 * only as 64-bit code with paging on. Without paging, or in 32-bit (compatibility mode) ring 3,
 * every instruction is emulated too; 32-bit paging (with or without PAE) is refused outright
 * (#GP on the CR0.PG write); a far return or a 32-bit iret to ring 3 is a KVM internal error,
 * while iretq from 64-bit ring 0 works.
 *
 * So user_init switches the guest to long mode: an identity map of the low 4 GiB in 2 MiB user
 * pages (RAM, PCI BARs, APIC: ring 3 reaches everything ring 0 does), a GDT with 64-bit ring-3
 * segments, a 64-bit TSS and IDT. The guest's own 32-bit code goes on running in ring 0, in
 * compatibility mode. user_run then runs 64-bit ring-3 code: a flat binary built from the guest's
 * *_user.c file (meson.build, lib/user64.ld), embedded by lib/user_blob.S and copied by user_init
 * to USER_CODE_BASE, the address it is linked at. Ring 3 may use every I/O port (the TSS's
 * I/O permission bitmap allows them all), so the serial console and PIT work there too.
 *
 * After user_init the library's 32-bit IDT is gone: interrupts must stay disabled, and an
 * exception (in either ring) ends the guest with guest_fail naming the vector and rip. */
#ifndef GUEST_USER_H
#define GUEST_USER_H

#include "guest.h"

#define USER_CS   0x1b   /* GDT entry 3, DPL 3: 64-bit code */
#define USER_DS   0x23   /* GDT entry 4, DPL 3: data and stack */
#define USER_TSS  0x28   /* GDT entries 5-6: 64-bit TSS (ring 0's stack, I/O bitmap) */
#define USER_CS64 0x38   /* GDT entry 7: 64-bit ring-0 code (entry to ring 3, exception stubs) */

/* Where the ring-3 code runs (lib/user64.ld links it there): RAM the guest image, stack and
 * data do not use. Its entry point, first in the binary, is uint32_t user_main(void *arg) of
 * the 64-bit ABI. */
#define USER_CODE_BASE 0x00800000u
#define USER_CODE_MAX  0x00100000u

/* Long mode, GDT, TSS, IDT (see above), and the ring-3 code copied to USER_CODE_BASE. Call once,
 * in ring 0, with interrupts disabled. */
void user_init(void);

/* Runs user_main(arg) in ring 3 on the stack ending at stack_top (16-byte aligned), with
 * interrupts off; returns what it returned, back in ring 0. Not reentrant. The way in is iretq; user_main returns into a ud2 whose #UD brings ring 0 back. */
uint32_t user_run(void *arg, void *stack_top);

#endif
