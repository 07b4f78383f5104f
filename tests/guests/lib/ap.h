/* Starting the first application processor (AP) the MADT lists into a C function of the guest. */
#ifndef GUEST_AP_H
#define GUEST_AP_H

#include "guest.h"

/* INIT + SIPI (a second SIPI only if the first did not take) to the first MADT CPU that is not
 * this one: the AP enters protected mode with the kernel's GDT, gets a 4 KiB stack and calls
 * fn with interrupts off (it halts for good if fn returns). Needs the PIT ticking (pit_start)
 * for the start-up delays; uses RAM at 0x8000 (SIPI vector 0x08). Returns whether an AP runs. */
bool ap_start(void (*fn)(void));

#endif
