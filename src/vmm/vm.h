/* The virtual machine: one KVM VM with its memory, buses, devices and vCPU threads, and the
 * stop protocol by which any thread ends the run (power-off, reset, debug exit, error). */
#ifndef KVMKIT_VMM_VM_H
#define KVMKIT_VMM_VM_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include "firmware/bios_rom.h"
#include "vmm/bus.h"
#include "vmm/device.h"
#include "vmm/device_config.h"
#include "vmm/memory.h"

struct console;
struct kvm_run;
struct irq_routing;
struct iothread;
struct loop;

/* What the user asked for; filled by the CLI, read-only while the VM runs. */
struct vm_config {
	const char *firmware;  /* a BIOS image to boot through (--firmware), NULL: --kernel */
	int firmware_log_fd;   /* --firmware-log: port 0x402's bytes go there (> 2); else the debug log */
	char boot_order[4];    /* --boot order=: QEMU's letters, c disk, d CD-ROM, n network ("" = c) */
	bool boot_menu;        /* --boot menu=on: the firmware offers its boot menu */
	const char *kernel;
	const char *initrd;    /* may be NULL */
	const char *cmdline;   /* never NULL ("" when not given) */
	uint64_t ram_size;
	uint32_t ncpus;
	bool uuid_set;         /* --uuid: uuid (as written) in fw_cfg and SMBIOS; else all zero */
	uint8_t uuid[16];
	bool no_reboot;        /* a guest reset ends kvmkit (status VM_EXIT_STATUS_RESET) */
	bool testdev;          /* QEMU's pc-testdev for test guests */
	bool stats;            /* print exit statistics when the VM stops */
	struct vm_disk disks[VM_MAX_DISKS];
	unsigned ndisks;
	bool rng;              /* a virtio-rng device */
	struct vm_nic nics[VM_MAX_NICS];
	unsigned nnics;
	struct vm_vconsole vconsole;   /* path NULL: none */
	enum virtio_transport_kind transport;
	struct console *console; /* the serial console backend; outlives VM resets */
	const char *restore_dir; /* --restore: build the VM, then load this snapshot (migration/) */
	const char *snapshot_at_exit; /* save a snapshot here when the run ends in VM_STOP_EXIT */
	const char *incoming_uri; /* --incoming: build the VM, then receive it (migration/) */
	bool start_paused;      /* the run starts with its vCPUs parked (-S, or paused before a reset) */
};

/* enum vm_stop_reason and the exit statuses: vmm/device.h (devices request stops too). */

/* VM-exit reasons counted per vCPU for --stats (index = KVM_EXIT_* below this bound). */
#define VCPU_STAT_REASONS 64

struct vcpu_trace;

struct vcpu {
	struct vm *vm;
	uint32_t index;
	int fd;
	struct kvm_run *run;
	pthread_t thread;
	bool thread_started;
	int tid;                /* the thread's kernel ID once it runs (QMP query-cpus-fast) */
	uint64_t exits[VCPU_STAT_REASONS];
	struct vcpu_trace *trace; /* its last exits, kept with KVMKIT_DEBUG (vmm/vcpu_trace.c) */
};

struct vm {
	const struct vm_config *cfg;
	struct loop *loop;     /* the main thread's event loop (vmm/loop.h) */
	int kvm_fd;
	int vm_fd;
	int run_size;
	struct guest_mem mem;
	struct bus pio_bus;
	struct bus mmio_bus;
	struct vcpu *vcpus;
	uint32_t ncpus;

	/* Stop protocol: the first caller of vm_stop wins; the main loop waits on stop_fd. */
	pthread_mutex_t stop_lock;
	atomic_bool stopping;
	enum vm_stop_reason stop_reason;
	int exit_status;
	int stop_fd; /* eventfd, readable once the VM is stopping */
	bool dump_vcpus; /* print every vCPU's registers on the way out (KVMKIT_DEBUG + signal) */
	const char *stop_cause; /* QEMU's ShutdownCause name given by the winning stopper, or NULL */

	/* Pause protocol (vmm/pause.c): while pause_requested, vCPUs park on pause_cond. */
	pthread_mutex_t pause_op_lock;  /* one vm_pause/vm_resume/vm_with_vcpus_parked at a time */
	pthread_mutex_t pause_lock;
	pthread_cond_t pause_cond;      /* parked vCPUs wait for resume; pausers wait for parking */
	atomic_bool pause_requested;
	uint32_t vcpus_parked;          /* under pause_lock */
	atomic_bool paused;             /* vm_pause completed: vCPUs parked, devices held */
	bool clock_saved;
	uint64_t paused_clock;          /* KVM_GET_CLOCK at the pause, restored at the resume */
	/* The devices' guest clock (vm_guest_clock_ns): host monotonic time minus clock_base_ns
	 * while running; clock_frozen_ns (>= 0) while paused, -1 while running. */
	_Atomic uint64_t clock_base_ns;
	_Atomic int64_t clock_frozen_ns;

	/* Devices: created from the machine's table (vm.c), found by kind and instance */
	struct device_registry devices;
	struct device_ctx dev_ctx;  /* the handles every device is given */

	struct bios_rom rom;       /* the firmware image when cfg->firmware (firmware/bios_rom.c) */
	struct irq_routing *irq;   /* GSI routing table (vmm/irq.c) */
	struct iothread *io;       /* the thread that runs device back-ends (vmm/iothread.c) */
};

/* What others do at the edges of a run (an incoming migration or a snapshot loads the VM, the
 * control plane attaches to it, a snapshot is saved at exit): registered by main(), called by
 * vm_run in the order they were added, so vm.c knows none of them. Any member may be NULL. */
struct vm_hook_ops {
	/* The VM is built, its vCPUs not started: 1 when this hook loaded the guest's state (the
	 * later hooks' load and the kernel's boot are skipped), 0 to leave it to them, or -errno
	 * after printing one sentence. */
	int (*load)(struct vm *vm, void *opaque);
	/* The vCPUs are about to start and the main loop to run (register on vm->loop). */
	void (*started)(struct vm *vm, void *opaque);
	/* The main loop has ended: stop whatever still acts on the VM (an outgoing migration). */
	void (*ending)(struct vm *vm, void *opaque);
	/* After every hook's ending, before the VM is destroyed: save it, report how it stopped. */
	void (*ended)(struct vm *vm, void *opaque);
};

#define VM_MAX_HOOKS 8
struct vm_hooks {
	struct { const struct vm_hook_ops *ops; void *opaque; } hook[VM_MAX_HOOKS];
	unsigned n;
};
/* Adds a hook at the end of the list. 0 or -ENOSPC. */
int vm_hooks_add(struct vm_hooks *hooks, const struct vm_hook_ops *ops, void *opaque);

/* Builds and runs the VM until it stops, its main thread's events on loop (which outlives the
 * run: what registered for the run unregisters in the hooks' ending or ended); returns the stop
 * reason and the exit status to use. Prints a clear sentence for any setup error and returns
 * VM_STOP_ERROR. */
enum vm_stop_reason vm_run(const struct vm_config *cfg, struct loop *loop,
			   const struct vm_hooks *hooks, int *exit_status);

/* Asks every thread to stop the VM. Safe from any thread; the first reason wins (an error
 * overrides everything). */
void vm_stop(struct vm *vm, enum vm_stop_reason reason, int exit_status);
/* The same, naming the cause as QEMU's SHUTDOWN/RESET events do ("host-signal", ...). */
void vm_stop_because(struct vm *vm, enum vm_stop_reason reason, int exit_status,
		     const char *cause);

/* Pause and resume (vmm/pause.c), from any thread but a vCPU's. vm_pause returns once every
 * vCPU has left KVM_RUN (pending port/MMIO accesses completed) and parked, the I/O thread
 * runs no device handler and the KVM clock is saved; vm_resume restores the clock, so the
 * guest's kvmclock time does not jump by the paused time, and lets everything go on. Both
 * return 0 (also when there was nothing to do) or -ESHUTDOWN when the VM is stopping. */
int vm_pause(struct vm *vm);
int vm_resume(struct vm *vm);
bool vm_is_paused(struct vm *vm);
/* The guest clock devices see (struct guest_clock): stands still while the VM is paused. */
uint64_t vm_guest_clock_ns(void *vm);
/* Runs fn with every vCPU parked (briefly pausing the vCPUs of a running VM, without the clock
 * and device handling of vm_pause), e.g. to read vCPU registers from another thread. */
int vm_with_vcpus_parked(struct vm *vm, void (*fn)(struct vm *vm, void *opaque), void *opaque);
/* Called by a vCPU thread after KVM_RUN returned EINTR: waits there while a pause lasts. */
void vm_park_vcpu(struct vcpu *v);

/* Drives a legacy interrupt line (ISA IRQ / IOAPIC pin) of the in-kernel irqchip. */
void vm_set_irq_line(struct vm *vm, uint32_t irq, int level);

#endif
