/* The virtual machine: creates the KVM VM (memory, in-kernel irqchip and PIT, devices, ACPI
 * tables, kernel, vCPUs), runs the main event loop until something stops it, and tears it
 * all down again so a guest reset can build a fresh VM in the same process. */
#include "vmm/vm.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/kvm.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "arch/x86/acpi.h"
#include "arch/x86/boot.h"
#include "arch/x86/cpuid.h"
#include "arch/x86/e820.h"
#include "arch/x86/layout.h"
#include "arch/x86/regs.h"
#include "firmware/acpi_loader.h"
#include "firmware/fw_cfg.h"
#include "firmware/smbios.h"
#include "hw/devices.h"
#include "hw/pci.h"
#include "lib/clock.h"
#include "lib/log.h"
#include "virtio/virtio_mmio.h"
#include "vmm/console.h"
#include "vmm/iothread.h"
#include "vmm/irq.h"
#include "vmm/loop.h"
#include "vmm/machine.h"
#include "vmm/vcpu.h"
#include "vmm/vcpu_trace.h"
#include "vmm/sandbox.h"

/* Addresses KVM needs for Intel's real-mode emulation: three pages below the BIOS. */
#define KVM_TSS_ADDR         0xfffbd000ULL
#define KVM_IDENTITY_MAP_ADDR 0xfffbc000ULL

void vm_stop_because(struct vm *vm, enum vm_stop_reason reason, int exit_status,
		     const char *cause)
{
	pthread_mutex_lock(&vm->stop_lock);
	/* The first reason wins, except that an error always overrides. */
	if (vm->stop_reason == VM_STOP_NONE || reason == VM_STOP_ERROR) {
		vm->stop_reason = reason;
		vm->exit_status = exit_status;
		vm->stop_cause = cause;
	}
	bool first = !atomic_exchange(&vm->stopping, true);
	pthread_mutex_unlock(&vm->stop_lock);
	/* Parked vCPUs and a waiting vm_pause see `stopping` and go. */
	pthread_mutex_lock(&vm->pause_lock);
	pthread_cond_broadcast(&vm->pause_cond);
	pthread_mutex_unlock(&vm->pause_lock);
	if (first) {
		uint64_t one = 1;
		if (write(vm->stop_fd, &one, sizeof(one)) < 0)
			log_debug("cannot signal the main loop: %s", strerror(errno));
	}
}

void vm_stop(struct vm *vm, enum vm_stop_reason reason, int exit_status)
{
	vm_stop_because(vm, reason, exit_status, NULL);
}

void vm_set_irq_line(struct vm *vm, uint32_t irq, int level)
{
	struct kvm_irq_level l = { .irq = irq, .level = (uint32_t)level };
	if (ioctl(vm->vm_fd, KVM_IRQ_LINE, &l) < 0)
		log_debug("KVM_IRQ_LINE %u failed: %s", irq, strerror(errno));
}

static int vm_open_kvm(struct vm *vm)
{
	vm->kvm_fd = open("/dev/kvm", O_RDWR | O_CLOEXEC);
	if (vm->kvm_fd < 0) {
		int err = errno;
		if (err == ENOENT)
			log_error("/dev/kvm does not exist: this host has no KVM (load the kvm-intel or "
				  "kvm-amd module, or enable virtualization in the firmware)");
		else if (err == EACCES || err == EPERM)
			log_error("no permission to open /dev/kvm: add your user to the 'kvm' group "
				  "(sudo usermod -aG kvm $USER) and log in again");
		else
			log_error("cannot open /dev/kvm: %s", strerror(err));
		return -err;
	}
	int version = ioctl(vm->kvm_fd, KVM_GET_API_VERSION, 0);
	if (version != KVM_API_VERSION) {
		log_error("/dev/kvm speaks KVM API version %d; kvmkit needs %d", version,
			  KVM_API_VERSION);
		return -ENOTSUP;
	}
	static const struct { int cap; const char *name; } required[] = {
		{ KVM_CAP_IRQCHIP, "in-kernel irqchip" },
		{ KVM_CAP_PIT2, "in-kernel PIT" },
		{ KVM_CAP_USER_MEMORY, "user memory" },
		{ KVM_CAP_IMMEDIATE_EXIT, "immediate exit" },
		{ KVM_CAP_EXT_CPUID, "CPUID setting" },
	};
	for (size_t i = 0; i < sizeof(required) / sizeof(required[0]); i++) {
		if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, required[i].cap) <= 0) {
			log_error("this host's KVM lacks the %s capability kvmkit needs",
				  required[i].name);
			return -ENOTSUP;
		}
	}
	int max_vcpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_MAX_VCPUS);
	if (max_vcpus <= 0)
		max_vcpus = ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_NR_VCPUS);
	if (max_vcpus <= 0)
		max_vcpus = 4;
	if (vm->ncpus > (uint32_t)max_vcpus) {
		log_error("%u vCPUs requested but this host's KVM allows at most %d (--cpus)",
			  vm->ncpus, max_vcpus);
		return -EINVAL;
	}
	vm->run_size = ioctl(vm->kvm_fd, KVM_GET_VCPU_MMAP_SIZE, 0);
	if (vm->run_size <= 0) {
		log_error("cannot query the size of the KVM run area: %s", strerror(errno));
		return -errno;
	}
	return 0;
}

/* The firmware image ends at 4 GiB, where the reset vector is, in a read-only slot: the guest's
 * writes there exit to userspace and are dropped, as a flash chip in read mode ignores them. */
static int vm_map_firmware(struct vm *vm)
{
	/* Q35's 32-bit PCI hole starts at 2 GiB (pci_bus_config.hole_base 0); RAM above that
	 * would have to move above 4 GiB, which the RAM layout does not do yet. */
	if (vm->cfg->ram_size > (2ULL << 30)) {
		log_error("firmware boot supports up to 2 GiB of RAM for now (asked for %llu MiB)",
			  (unsigned long long)(vm->cfg->ram_size >> 20));
		return -EINVAL;
	}
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_READONLY_MEM) <= 0) {
		log_error("this KVM cannot map read-only memory, which firmware boot needs");
		return -ENOTSUP;
	}
	int r = bios_rom_load(&vm->rom, vm->cfg->firmware);
	if (r < 0)
		return r;
	struct kvm_userspace_memory_region region = {
		.slot = (uint32_t)vm->mem.nregions,
		.flags = KVM_MEM_READONLY,
		.guest_phys_addr = vm->rom.gpa,
		.memory_size = vm->rom.size,
		.userspace_addr = (uintptr_t)vm->rom.image,
	};
	if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
		log_error("cannot map the firmware at %#llx: %s", (unsigned long long)vm->rom.gpa,
			  strerror(errno));
		return -errno;
	}
	log_debug("firmware: '%s', %zu KiB at %#llx", vm->cfg->firmware, vm->rom.size >> 10,
		  (unsigned long long)vm->rom.gpa);
	return 0;
}

static int vm_create_machine(struct vm *vm)
{
	vm->vm_fd = ioctl(vm->kvm_fd, KVM_CREATE_VM, 0);
	if (vm->vm_fd < 0) {
		log_error("cannot create a KVM virtual machine: %s", strerror(errno));
		return -errno;
	}
	if (ioctl(vm->vm_fd, KVM_SET_TSS_ADDR, (unsigned long)KVM_TSS_ADDR) < 0)
		log_debug("KVM_SET_TSS_ADDR: %s", strerror(errno));
	uint64_t map_addr = KVM_IDENTITY_MAP_ADDR;
	if (ioctl(vm->vm_fd, KVM_SET_IDENTITY_MAP_ADDR, &map_addr) < 0)
		log_debug("KVM_SET_IDENTITY_MAP_ADDR: %s", strerror(errno));
	if (vm->ncpus > 254) {
		/* APIC IDs above 254 need 32-bit x2APIC IDs in the in-kernel LAPICs. */
		struct kvm_enable_cap cap = { .cap = KVM_CAP_X2APIC_API,
			.args = { KVM_X2APIC_API_USE_32BIT_IDS | KVM_X2APIC_API_DISABLE_BROADCAST_QUIRK } };
		if (ioctl(vm->vm_fd, KVM_ENABLE_CAP, &cap) < 0) {
			log_error("more than 254 vCPUs need x2APIC support from KVM: %s",
				  strerror(errno));
			return -errno;
		}
	}
	if (ioctl(vm->vm_fd, KVM_CREATE_IRQCHIP, 0) < 0) {
		log_error("cannot create the in-kernel interrupt controller: %s", strerror(errno));
		return -errno;
	}
	int r = irq_routing_init(vm);
	if (r < 0) {
		log_error("cannot set up the interrupt routing table: %s", strerror(-r));
		return r;
	}
	struct kvm_pit_config pit = { .flags = KVM_PIT_SPEAKER_DUMMY };
	if (ioctl(vm->vm_fd, KVM_CREATE_PIT2, &pit) < 0) {
		log_error("cannot create the in-kernel PIT: %s", strerror(errno));
		return -errno;
	}

	r = guest_mem_init(&vm->mem, vm->cfg->ram_size);
	if (r < 0) {
		log_error("cannot allocate %llu MiB of guest memory: %s",
			  (unsigned long long)(vm->cfg->ram_size >> 20), strerror(-r));
		return r;
	}
	for (int i = 0; i < vm->mem.nregions; i++) {
		const struct guest_mem_region *reg = &vm->mem.regions[i];
		struct kvm_userspace_memory_region region = {
			.slot = (uint32_t)i,
			.guest_phys_addr = reg->gpa,
			.memory_size = reg->size,
			.userspace_addr = (uintptr_t)reg->host,
		};
		if (ioctl(vm->vm_fd, KVM_SET_USER_MEMORY_REGION, &region) < 0) {
			log_error("cannot give guest memory to KVM: %s", strerror(errno));
			return -errno;
		}
	}
	return vm->cfg->firmware ? vm_map_firmware(vm) : 0;
}

/* The interrupt handles devices are given: KVM's irqchip through irq.c. */
static void vm_irq_set_line(void *vm, uint32_t gsi, int level)
{
	vm_set_irq_line(vm, gsi, level);
}

static int vm_irq_msi_route_alloc(void *vm)
{
	return irq_msi_route_alloc(vm);
}

static void vm_irq_msi_route_free(void *vm, int gsi)
{
	irq_msi_route_free(vm, gsi);
}

static int vm_irq_msi_route_set(void *vm, int gsi, uint64_t address, uint32_t data)
{
	return irq_msi_route_set(vm, gsi, address, data);
}

static int vm_irq_irqfd(void *vm, int eventfd, int gsi, bool assign)
{
	return irq_irqfd(vm, eventfd, gsi, assign);
}

static int vm_irq_ioeventfd(void *vm, uint64_t addr, uint32_t len, bool is_pio, bool datamatch,
			    uint64_t data, int eventfd, bool assign)
{
	if (datamatch)
		return irq_ioeventfd_datamatch(vm, addr, len, is_pio, data, eventfd, assign);
	return irq_ioeventfd(vm, addr, len, is_pio, eventfd, assign);
}

static const struct irq_ops vm_irq_ops = {
	.set_line = vm_irq_set_line,
	.msi_route_alloc = vm_irq_msi_route_alloc,
	.msi_route_free = vm_irq_msi_route_free,
	.msi_route_set = vm_irq_msi_route_set,
	.irqfd = vm_irq_irqfd,
	.ioeventfd = vm_irq_ioeventfd,
};

static void vm_machine_stop(void *vm, enum vm_stop_reason reason, int exit_status)
{
	vm_stop(vm, reason, exit_status);
}

static int vm_create_devices(struct vm *vm)
{
	const struct vm_config *cfg = vm->cfg;
	if (machine_wants_io(cfg) && !(vm->io = iothread_create()))
		return -ENOMEM;
	vm->dev_ctx = (struct device_ctx){
		.pio = &vm->pio_bus,
		.mmio = &vm->mmio_bus,
		.mem = &vm->mem,
		.io = vm->io,
		.irq = { &vm_irq_ops, vm },
		.machine = { vm_machine_stop, vm },
		.clock = { vm_guest_clock_ns, vm },
		.virtio_mmio = cfg->transport == VIRTIO_TRANSPORT_MMIO,
		.registry = &vm->devices,
	};
	return machine_realize(&vm->devices, &vm->dev_ctx, cfg);
}

/* RAM below 4 GiB (guest_mem's layout: the rest continues at 4 GiB). */
static uint64_t vm_ram_below_4g(const struct vm *vm)
{
	return vm->cfg->ram_size < GUEST_MEM_LOW_LIMIT ? vm->cfg->ram_size : GUEST_MEM_LOW_LIMIT;
}

/* What a PC's firmware reads from the CMOS at power-on when nothing else tells it (QEMU's
 * pc_cmos_init): base and extended memory, RAM above 16 MiB and above 4 GiB in 64 KiB units, the
 * CPU count (SeaBIOS's 0x5f). */
static void vm_firmware_cmos(struct vm *vm)
{
	struct rtc_mc146818 *rtc = device_find(&vm->devices, &rtc_mc146818_ops, 0);
	if (!rtc)
		return;
	uint64_t below_4g = vm_ram_below_4g(vm);
	uint64_t above_4g = vm->cfg->ram_size - below_4g;
	uint64_t ext_kib = below_4g > (1u << 20) ? (below_4g - (1u << 20)) >> 10 : 0;
	if (ext_kib > 0xffff)
		ext_kib = 0xffff;
	uint64_t above_16m = below_4g > (16u << 20) ? (below_4g - (16u << 20)) >> 16 : 0;
	if (above_16m > 0xffff)
		above_16m = 0xffff;
	uint64_t high = above_4g >> 16;
	uint8_t boot[3] = { 2, 0, 0 };
	for (size_t i = 0; i < 3 && vm->cfg->boot_order[i]; i++)
		boot[i] = vm->cfg->boot_order[i] == 'c' ? 2 : vm->cfg->boot_order[i] == 'd' ? 3 : 4;
	const struct { uint8_t index, value; } bytes[] = {
		{ 0x15, 640 & 0xff }, { 0x16, 640 >> 8 },                  /* base memory, KiB */
		{ 0x17, (uint8_t)ext_kib }, { 0x18, (uint8_t)(ext_kib >> 8) },
		{ 0x30, (uint8_t)ext_kib }, { 0x31, (uint8_t)(ext_kib >> 8) },
		{ 0x34, (uint8_t)above_16m }, { 0x35, (uint8_t)(above_16m >> 8) },
		{ 0x5b, (uint8_t)high }, { 0x5c, (uint8_t)(high >> 8) }, { 0x5d, (uint8_t)(high >> 16) },
		{ 0x5f, (uint8_t)(vm->ncpus - 1) },
		/* The boot order as QEMU gives SeaBIOS (pc_cmos_init_late): devices 2 disk, 3 CD-ROM,
		 * 4 network; the first two in 0x3d, the third in 0x38's high nibble. */
		{ 0x3d, (uint8_t)(boot[0] | boot[1] << 4) }, { 0x38, (uint8_t)(boot[2] << 4) },
	};
	for (size_t i = 0; i < sizeof(bytes) / sizeof(bytes[0]); i++)
		rtc_mc146818_set_cmos(rtc, bytes[i].index, bytes[i].value);
}

/* What QEMU's x86 machines tell the firmware through fw_cfg: CPUs, RAM and its e820 map, and
 * COM1 as the console (no display yet: SeaBIOS then prints its screen there too). */
static int vm_firmware_fw_cfg(struct vm *vm)
{
	struct fw_cfg *fw = device_find(&vm->devices, &fw_cfg_ops, 0);
	if (!fw)
		return 0;
	struct e820_entry map[E820_MAX_ENTRIES];
	struct fw_cfg_e820_entry e820[E820_MAX_ENTRIES];
	int n = e820_build(&vm->mem, map);
	for (int i = 0; i < n; i++)
		e820[i] = (struct fw_cfg_e820_entry){ map[i].addr, map[i].size, map[i].type };
	const struct fw_cfg_machine m = {
		.ncpus = vm->ncpus,
		.ram_size = vm->cfg->ram_size,
		.e820 = e820,
		.e820_count = n > 0 ? (size_t)n : 0,
		.uuid = vm->cfg->uuid_set ? vm->cfg->uuid : NULL,
		.nographic = true,
		.boot_menu = vm->cfg->boot_menu,
		.boot_menu_wait_ms = vm->cfg->boot_menu ? 3000 : -1, /* SeaBIOS's own default wait */
		.boot_fail_wait_ms = -1,
		.sercon_port = PORT_COM1,
	};
	int r = fw_cfg_add_standard(fw, &m);
	if (r < 0) {
		log_error("cannot give the firmware its configuration (fw_cfg): %s", strerror(-r));
		return r;
	}
	uint64_t below_4g = vm_ram_below_4g(vm);
	const struct smbios_machine sm = { .ncpus = vm->ncpus, .ram_below_4g = below_4g,
					   .ram_above_4g = vm->cfg->ram_size - below_4g,
					   .uuid = m.uuid, .version = KVMKIT_VERSION };
	r = smbios_add_fw_cfg(fw, &sm);
	if (r < 0) {
		log_error("cannot give the firmware the SMBIOS tables: %s", strerror(-r));
		return r;
	}
	/* kvmkit's own ACPI tables, placed by the firmware's table loader. */
	struct acpi_config acpi = { .ncpus = vm->ncpus,
				    .pci = device_find(&vm->devices, &pci_bus_ops, 0) != NULL,
				    .ecam_base = LAYOUT_Q35_ECAM_BASE,
				    .pci_mem_base = LAYOUT_Q35_PCI_MEM_BASE,
				    .pci_mem_end = LAYOUT_Q35_PCI_MEM_END };
	struct acpi_blob blob;
	r = acpi_build_blob(&acpi, &blob);
	if (r == 0)
		r = acpi_loader_add(fw, &blob);
	acpi_blob_free(&blob);
	if (r < 0)
		log_error("cannot give the firmware the ACPI tables: %s", strerror(-r));
	return r;
}

/* Firmware boot: the BIOS at its power-on place, the CMOS filled and fw_cfg's items; the vCPUs
 * keep KVM's reset state (the BSP starts at the reset vector, the others wait for INIT/SIPI). */
static int vm_load_firmware(struct vm *vm)
{
	int r = bios_rom_copy_isa(&vm->rom, &vm->mem);
	if (r < 0) {
		log_error("cannot place the firmware below 1 MiB: %s", strerror(-r));
		return r;
	}
	vm_firmware_cmos(vm);
	return vm_firmware_fw_cfg(vm);
}

static int vm_load_guest(struct vm *vm)
{
	if (vm->cfg->firmware)
		return vm_load_firmware(vm);
	struct acpi_config acpi = { .ncpus = vm->ncpus,
				    .pci = device_find(&vm->devices, &pci_bus_ops, 0) != NULL };
	/* virtio-mmio devices (--transport mmio) have no bus to probe: the DSDT describes them
	 * (LNRO0005, what Linux's virtio_mmio driver matches), and the command line too, for
	 * kernels built with CONFIG_VIRTIO_MMIO_CMDLINE_DEVICES (others ignore the parameter). */
	struct virtio_mmio_window win[ACPI_MAX_VIRTIO_MMIO];
	unsigned nwin = virtio_mmio_windows(&vm->mmio_bus, win, ACPI_MAX_VIRTIO_MMIO);
	if (nwin > ACPI_MAX_VIRTIO_MMIO)
		nwin = ACPI_MAX_VIRTIO_MMIO; /* virtio_mmio.c allows fewer devices than this */
	char *cmdline = strdup(vm->cfg->cmdline);
	for (unsigned i = 0; cmdline && i < nwin; i++) {
		acpi.virtio_mmio[i] = (struct acpi_virtio_mmio){ win[i].base, win[i].size, win[i].gsi };
		char *longer;
		if (asprintf(&longer, "%s%svirtio_mmio.device=%u@%#llx:%u", cmdline,
			     cmdline[0] ? " " : "", win[i].size, (unsigned long long)win[i].base,
			     win[i].gsi) < 0)
			longer = NULL;
		free(cmdline);
		cmdline = longer;
	}
	if (!cmdline) {
		log_error("cannot build the kernel command line: %s", strerror(ENOMEM));
		return -ENOMEM;
	}
	acpi.nvirtio_mmio = nwin;
	uint64_t rsdp;
	int r = acpi_build(&vm->mem, &acpi, &rsdp);
	if (r < 0) {
		log_error("cannot build the ACPI tables: %s", strerror(-r));
		free(cmdline);
		return r;
	}
	struct boot_config boot = {
		.kernel_path = vm->cfg->kernel,
		.initrd_path = vm->cfg->initrd,
		.cmdline = cmdline,
		.rsdp_gpa = rsdp,
	};
	struct boot_entry entry;
	r = boot_load(&vm->mem, &boot, &entry);
	free(cmdline);
	if (r < 0)
		return r;
	r = boot_setup_bsp(vm->vcpus[0].fd, &vm->mem, &entry);
	if (r < 0)
		log_error("cannot set the boot vCPU's registers: %s", strerror(-r));
	return r;
}

static int vm_create_vcpus(struct vm *vm)
{
	/* KVM reports E2BIG until the buffer is large enough. */
	uint32_t capacity = 128;
	struct kvm_cpuid2 *supported = NULL;
	for (;;) {
		free(supported);
		supported = calloc(1, sizeof(*supported) + capacity * sizeof(supported->entries[0]));
		if (!supported)
			return -ENOMEM;
		supported->nent = capacity;
		if (ioctl(vm->kvm_fd, KVM_GET_SUPPORTED_CPUID, supported) == 0)
			break;
		if (errno != E2BIG || capacity >= 4096) {
			log_error("cannot read the CPUID KVM supports: %s", strerror(errno));
			free(supported);
			return -errno;
		}
		capacity *= 2;
	}
	vm->vcpus = calloc(vm->ncpus, sizeof(*vm->vcpus));
	if (!vm->vcpus) {
		free(supported);
		return -ENOMEM;
	}
	for (uint32_t i = 0; i < vm->ncpus; i++)
		vm->vcpus[i].fd = -1;
	if (ioctl(vm->kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_TSC_DEADLINE_TIMER) > 0)
		cpuid_enable_tsc_deadline(supported);
	/* cpuid_setup adds topology leaves: room beyond what KVM returned. */
	uint32_t room = supported->nent + CPUID_EXTRA_ENTRIES;
	int r = 0;
	for (uint32_t i = 0; i < vm->ncpus && r == 0; i++)
		r = vcpu_create(vm, &vm->vcpus[i], i, supported, room);
	free(supported);
	return r;
}

static size_t vm_console_receive(void *opaque, const uint8_t *buf, size_t len)
{
	struct vm *vm = opaque;
	return serial_8250_receive(device_find(&vm->devices, &serial_8250_ops, 0), buf, len);
}

static void vm_console_break(void *opaque)
{
	struct vm *vm = opaque;
	serial_8250_break(device_find(&vm->devices, &serial_8250_ops, 0));
}

static int vm_console_prepare(void *opaque, struct pollfd *pfds, int max, int *timeout_ms)
{
	struct vm *vm = opaque;
	return max < CONSOLE_MAX_FDS ? 0 : console_poll_fds(vm->cfg->console, pfds, timeout_ms);
}

static void vm_console_dispatch(void *opaque, const struct pollfd *pfds, int n)
{
	struct vm *vm = opaque;
	const struct console_sink sink = { vm_console_receive, vm_console_break, vm };
	if (console_handle(vm->cfg->console, pfds, n, &sink))
		vm_stop_because(vm, VM_STOP_EXIT, 0, "host-ui");
}

static const struct loop_source_ops vm_console_source = {
	.prepare = vm_console_prepare,
	.dispatch = vm_console_dispatch,
};

/* The stop request only has to wake the loop: its condition is `stopping`. */
static void vm_stop_requested(void *opaque, int fd, short revents)
{
	(void)opaque, (void)fd, (void)revents;
}

/* The main thread's loop: console input and the stop request are the VM's own; whatever else
 * registered on the loop (signals, the control socket, migration) runs there too. */
static void vm_main_loop(struct vm *vm)
{
	int r = loop_add(vm->loop, vm->stop_fd, POLLIN, vm_stop_requested, vm);
	if (r == 0)
		r = loop_add_source(vm->loop, &vm_console_source, CONSOLE_MAX_FDS, vm);
	if (r < 0)
		log_error("cannot set up the main loop: %s", strerror(-r));
	while (r == 0 && !atomic_load(&vm->stopping))
		r = loop_run_once(vm->loop, -1);
	if (r < 0 && !atomic_load(&vm->stopping)) {
		log_error("the main loop failed: %s", strerror(-r));
		vm_stop(vm, VM_STOP_ERROR, VM_EXIT_STATUS_ERROR);
	}
	loop_remove_source(vm->loop, &vm_console_source, vm);
	loop_remove(vm->loop, vm->stop_fd);
}

int vm_hooks_add(struct vm_hooks *hooks, const struct vm_hook_ops *ops, void *opaque)
{
	if (hooks->n == VM_MAX_HOOKS)
		return -ENOSPC;
	hooks->hook[hooks->n].ops = ops;
	hooks->hook[hooks->n++].opaque = opaque;
	return 0;
}

/* The first hook that loads the guest's state, else the kernel. */
static int vm_load(struct vm *vm, const struct vm_hooks *hooks)
{
	for (unsigned i = 0; hooks && i < hooks->n; i++) {
		if (!hooks->hook[i].ops->load)
			continue;
		int r = hooks->hook[i].ops->load(vm, hooks->hook[i].opaque);
		if (r != 0)
			return r < 0 ? r : 0;
	}
	return vm_load_guest(vm);
}

enum vm_hook_phase { VM_HOOK_STARTED, VM_HOOK_ENDING, VM_HOOK_ENDED };

/* Calls one phase of every hook, in the order they were added. */
static void vm_hooks_call(const struct vm_hooks *hooks, enum vm_hook_phase phase, struct vm *vm)
{
	for (unsigned i = 0; hooks && i < hooks->n; i++) {
		const struct vm_hook_ops *ops = hooks->hook[i].ops;
		void (*fn)(struct vm *, void *) = phase == VM_HOOK_STARTED ? ops->started :
						  phase == VM_HOOK_ENDING ? ops->ending : ops->ended;
		if (fn)
			fn(vm, hooks->hook[i].opaque);
	}
}

static void vm_destroy(struct vm *vm)
{
	for (uint32_t i = 0; vm->vcpus && i < vm->ncpus; i++)
		vcpu_kick(&vm->vcpus[i]);
	for (uint32_t i = 0; vm->vcpus && i < vm->ncpus; i++)
		vcpu_join(&vm->vcpus[i]);
	if (vm->cfg->stats && vm->vcpus)
		vcpu_print_stats(vm);
	/* Where was a guest that had to be killed? Worth knowing when debugging a hang. */
	if (vm->dump_vcpus) {
		for (uint32_t i = 0; vm->vcpus && i < vm->ncpus; i++) {
			fprintf(stderr, "kvmkit: vCPU %u at termination:\n", i);
			regs_dump(vm->vcpus[i].fd, &vm->mem, stderr);
			vcpu_trace_print(&vm->vcpus[i], stderr);
		}
	}
	for (uint32_t i = 0; vm->vcpus && i < vm->ncpus; i++)
		vcpu_destroy(&vm->vcpus[i]);
	free(vm->vcpus);
	/* virtio devices drain their I/O through the I/O thread, which goes after them (and
	 * must run again if a pause held it) */
	if (vm->io)
		iothread_resume(vm->io);
	device_registry_destroy(&vm->devices);
	iothread_destroy(vm->io);
	bus_destroy(&vm->pio_bus);
	bus_destroy(&vm->mmio_bus);
	bios_rom_free(&vm->rom);
	irq_routing_destroy(vm);
	if (vm->vm_fd >= 0)
		close(vm->vm_fd);
	guest_mem_destroy(&vm->mem);
	if (vm->kvm_fd >= 0)
		close(vm->kvm_fd);
	if (vm->stop_fd >= 0)
		close(vm->stop_fd);
	pthread_mutex_destroy(&vm->stop_lock);
	pthread_mutex_destroy(&vm->pause_op_lock);
	pthread_mutex_destroy(&vm->pause_lock);
	pthread_cond_destroy(&vm->pause_cond);
	free(vm);
}

enum vm_stop_reason vm_run(const struct vm_config *cfg, struct loop *loop,
			   const struct vm_hooks *hooks, int *exit_status)
{
	struct vm *vm = calloc(1, sizeof(*vm));
	if (!vm) {
		*exit_status = VM_EXIT_STATUS_ERROR;
		return VM_STOP_ERROR;
	}
	vm->cfg = cfg;
	vm->loop = loop;
	vm->ncpus = cfg->ncpus;
	vm->kvm_fd = vm->vm_fd = -1;
	pthread_mutex_init(&vm->stop_lock, NULL);
	pthread_mutex_init(&vm->pause_op_lock, NULL);
	pthread_mutex_init(&vm->pause_lock, NULL);
	pthread_cond_init(&vm->pause_cond, NULL);
	atomic_store(&vm->clock_base_ns, clock_mono_ns());
	atomic_store(&vm->clock_frozen_ns, -1);
	vm->stop_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);

	int r = vm->stop_fd < 0 ? -errno : 0;
	if (r == 0)
		r = vm_open_kvm(vm);
	if (r == 0)
		r = vm_create_machine(vm);
	if (r == 0)
		r = vm_create_devices(vm);
	if (r == 0)
		r = vm_create_vcpus(vm);
	/* a restored or migrated VM resumes where it was saved instead of booting */
	if (r == 0)
		r = vm_load(vm, hooks);
	if (r == 0)
		log_debug("VM built (%u vCPUs, guest loaded); starting the vCPUs", vm->ncpus);
	if (r == 0 && cfg->start_paused)
		r = vm_pause(vm); /* before the threads start: they park before their first entry */
	if (r == 0)
		vm_hooks_call(hooks, VM_HOOK_STARTED, vm);
	if (r == 0)
		r = sandbox_lockdown(); /* files are open: drop to --runas, filter this thread */
	for (uint32_t i = 0; r == 0 && i < vm->ncpus; i++)
		r = vcpu_start(&vm->vcpus[i]);
	if (r < 0)
		vm_stop(vm, VM_STOP_ERROR, VM_EXIT_STATUS_ERROR);
	else
		vm_main_loop(vm);
	vm_hooks_call(hooks, VM_HOOK_ENDING, vm);
	vm_hooks_call(hooks, VM_HOOK_ENDED, vm);

	enum vm_stop_reason reason = vm->stop_reason;
	*exit_status = vm->exit_status;
	vm_destroy(vm);
	return reason;
}
