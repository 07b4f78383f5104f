/* The x86 machine kvmkit presents: where boot structures live in guest RAM, and the fixed
 * port and interrupt assignments of its legacy devices. One place, so boot code, ACPI tables,
 * devices and test guests agree. */
#ifndef KVMKIT_ARCH_X86_LAYOUT_H
#define KVMKIT_ARCH_X86_LAYOUT_H

/* --- Guest RAM below 1 MiB used while booting --- */
#define LAYOUT_GDT            0x0500ULL   /* boot GDT (null, code64, code32, data) */
#define LAYOUT_BOOT_INFO      0x6000ULL   /* PVH start_info / multiboot info + its tables (4 KiB) */
#define LAYOUT_ZERO_PAGE      0x7000ULL   /* Linux boot_params */
#define LAYOUT_PML4           0x9000ULL   /* identity page tables for the 64-bit entry */
#define LAYOUT_PDPT           0xa000ULL
#define LAYOUT_PD             0xb000ULL   /* 4 page directories: 4 GiB of 2 MiB pages */
#define LAYOUT_CMDLINE        0x20000ULL  /* kernel command line */
#define LAYOUT_CMDLINE_MAX    0x10000ULL
#define LAYOUT_EBDA_START     0x9fc00ULL  /* RAM below this is usable; up to 1 MiB is reserved */
#define LAYOUT_ACPI_START     0xe0000ULL  /* ACPI tables: RSDP first (BIOS search area) */
#define LAYOUT_ACPI_END       0x100000ULL
#define LAYOUT_KERNEL         0x100000ULL /* protected-mode kernel load address */

/* --- Interrupt controllers (in-kernel) --- */
#define LAYOUT_IOAPIC_ADDR    0xfec00000ULL
#define LAYOUT_LAPIC_ADDR     0xfee00000ULL
#define LAYOUT_IOAPIC_PINS    24

/* --- Legacy ports, the same as QEMU's pc/q35 machines so existing test kernels run --- */
#define PORT_COM1             0x3f8
#define IRQ_COM1              4
#define PORT_RTC              0x70        /* index 0x70, data 0x71 */
#define IRQ_RTC               8
#define PORT_I8042_DATA       0x60
#define PORT_I8042_CMD        0x64
#define PORT_DEBUG_EXIT       0xf4        /* QEMU isa-debug-exit: status = (value << 1) | 1 */
#define PORT_TESTDEV          0xe0        /* QEMU pc-testdev: 4-byte scratch register */
#define PORT_TESTDEV_IRQ      0x2000      /* QEMU pc-testdev: a byte V at +N sets GSI N to V != 0 */
#define TESTDEV_IRQ_LINES     LAYOUT_IOAPIC_PINS
#define LAYOUT_TESTDEV_MMIO   0xff000000ULL /* QEMU pc-testdev iomem, 64 KiB scratch memory */
#define LAYOUT_TESTDEV_MMIO_LEN 0x10000ULL

/* ACPI fixed hardware (PIIX4/ICH9 compatible addresses) */
#define PORT_ACPI_PM1A_EVT    0x600       /* 4 bytes: PM1 status (2), PM1 enable (2) */
#define PORT_ACPI_PM1A_CNT    0x604       /* 2 bytes: SCI_EN, SLP_TYP, SLP_EN */
#define PORT_ACPI_PM_TMR      0x608       /* 4 bytes: the PM timer, 24 bits at ACPI_PM_TIMER_HZ (ICH9's place) */
#define PORT_ACPI_RESET       0x60c       /* 1 byte: FADT RESET_REG; writing ACPI_RESET_VALUE resets */
#define ACPI_PM_TIMER_HZ      3579545u
#define ACPI_RESET_VALUE      0x01
#define IRQ_ACPI_SCI          9
#define ACPI_SLP_TYP_S5       5           /* the DSDT's \_S5 package value */
#define ACPI_PM1_CNT_SCI_EN   0x0001
#define ACPI_PM1_CNT_SLP_EN   0x2000
#define ACPI_PM1_CNT_SLP_TYP_SHIFT 10

/* --- PCI: one host bridge, bus 0 only (hw/pci.c; described by the MCFG and \_SB.PCI0) --- */
#define PORT_PCI_CONFIG       0xcf8       /* mechanism #1: address 0xcf8, data 0xcfc-0xcff */
#define PORT_PCI_CONFIG_LEN   8
/* ECAM (MMCONFIG) for bus 0: 32 devices x 8 functions x 4 KiB. Outside the BAR window and
 * reserved in the e820 map and by a PNP0C02 device, as Linux wants before it trusts it. */
#define LAYOUT_PCI_ECAM_BASE  0xe0000000ULL
#define LAYOUT_PCI_ECAM_SIZE  0x100000ULL
/* 32-bit memory BAR window, right above the low RAM limit (GUEST_MEM_LOW_LIMIT) and below the
 * ECAM; every BAR (64-bit ones too) is pre-assigned here, naturally aligned. */
#define LAYOUT_PCI_MEM_BASE   0xc0000000ULL
/* Under firmware on Q35: the ECAM where SeaBIOS and OVMF program PCIEXBAR (QEMU's MCH default)
 * and the 32-bit BAR window SeaBIOS then allocates from, up to the IOAPIC. */
#define LAYOUT_Q35_ECAM_BASE    0xb0000000ULL
#define LAYOUT_Q35_PCI_MEM_BASE 0xc0000000ULL
#define LAYOUT_Q35_PCI_MEM_END  0xfec00000ULL
#define LAYOUT_PCI_MEM_SIZE   0x20000000ULL
/* I/O BAR window: above every legacy port kvmkit decodes. */
#define PORT_PCI_IO_BASE      0xc000
#define PORT_PCI_IO_SIZE      0x4000
/* INTx: four IOAPIC pins from GSI 16, swizzled by slot as a PCI-to-PCI bridge would (so slots
 * sharing INTA# spread over the pins). pin: 0 = INTA# ... 3 = INTD# (the _PRT's numbering). */
#define PCI_INTX_GSI_BASE     16
#define PCI_INTX_PINS         4
#define PCI_INTX_GSI(slot, pin) (PCI_INTX_GSI_BASE + ((unsigned)(slot) + (unsigned)(pin)) % PCI_INTX_PINS)

/* --- virtio-mmio (--transport mmio; virtio/virtio_mmio.c): no PCI bus then --- */
/* One 512-byte register window per device, packed from the base: in the 32-bit hole above the
 * PCI ECAM (present only in PCI mode, but the ranges stay disjoint anyway) and below the
 * IOAPIC, where no other device decodes. */
#define LAYOUT_VIRTIO_MMIO_BASE  0xfe000000ULL
#define LAYOUT_VIRTIO_MMIO_SIZE  0x200ULL
/* Each device has its own level-triggered IOAPIC pin from GSI 16 (the pins PCI INTx uses in PCI
 * mode; no ISA device claims them), so the eight pins 16-23 limit the machine to 8 devices. */
#define VIRTIO_MMIO_GSI_BASE     16
#define LAYOUT_VIRTIO_MMIO_COUNT (LAYOUT_IOAPIC_PINS - VIRTIO_MMIO_GSI_BASE)
#define VIRTIO_MMIO_GSI(n)       (VIRTIO_MMIO_GSI_BASE + (unsigned)(n))

#endif
