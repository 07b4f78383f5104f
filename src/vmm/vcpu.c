/* One vCPU: its KVM fd and shared kvm_run page, its thread, and the exit-dispatch loop that
 * sends port-I/O and MMIO to the buses and stops the VM, with a register dump, on failures. */
#include "vmm/vcpu.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include "arch/x86/cpuid.h"
#include "arch/x86/regs.h"
#include "lib/log.h"
#include "vmm/sandbox.h"
#include "vmm/vcpu_trace.h"

#define VCPU_KICK_SIGNAL SIGUSR1

static void vcpu_kick_handler(int sig)
{
	(void)sig; /* only interrupts KVM_RUN */
}

void vcpu_init_signals(void)
{
	struct sigaction sa = { .sa_handler = vcpu_kick_handler };
	sigemptyset(&sa.sa_mask);
	sigaction(VCPU_KICK_SIGNAL, &sa, NULL); /* no SA_RESTART: KVM_RUN returns EINTR */
}

int vcpu_create(struct vm *vm, struct vcpu *v, uint32_t index, const struct kvm_cpuid2 *supported,
		uint32_t supported_capacity)
{
	memset(v, 0, sizeof(*v));
	v->vm = vm;
	v->index = index;
	v->fd = ioctl(vm->vm_fd, KVM_CREATE_VCPU, (unsigned long)index);
	if (v->fd < 0) {
		int err = errno;
		log_error("cannot create vCPU %u: %s", index, strerror(err));
		return -err;
	}
	v->run = mmap(NULL, (size_t)vm->run_size, PROT_READ | PROT_WRITE, MAP_SHARED, v->fd, 0);
	if (v->run == MAP_FAILED) {
		int err = errno;
		v->run = NULL;
		log_error("cannot map the run area of vCPU %u: %s", index, strerror(err));
		return -err;
	}

	size_t size = sizeof(struct kvm_cpuid2) +
		      supported_capacity * sizeof(struct kvm_cpuid_entry2);
	struct kvm_cpuid2 *cpuid = malloc(size);
	if (!cpuid)
		return -ENOMEM;
	memcpy(cpuid, supported, sizeof(*supported) + supported->nent * sizeof(supported->entries[0]));
	int r = cpuid_setup(cpuid, supported_capacity, index, vm->ncpus);
	if (r == 0 && ioctl(v->fd, KVM_SET_CPUID2, cpuid) < 0)
		r = -errno;
	free(cpuid);
	if (r < 0) {
		log_error("cannot set the CPUID of vCPU %u: %s", index, strerror(-r));
		return r;
	}
	r = regs_init_vcpu(v->fd);
	if (r < 0) {
		log_error("cannot set the initial state of vCPU %u: %s", index, strerror(-r));
		return r;
	}
	vcpu_trace_init(v);
	return 0;
}

static void vcpu_fail(struct vcpu *v, const char *what)
{
	/* Only the first failing vCPU prints: the others are being stopped because of it. */
	pthread_mutex_lock(&v->vm->stop_lock);
	bool first = !atomic_load(&v->vm->stopping);
	pthread_mutex_unlock(&v->vm->stop_lock);
	if (first) {
		fprintf(stderr, "\r\nkvmkit: vCPU %u stopped: %s\n", v->index, what);
		regs_dump(v->fd, &v->vm->mem, stderr);
		/* With KVMKIT_DEBUG every vCPU's last exits follow once all have stopped. */
		v->vm->dump_vcpus = v->trace != NULL;
	}
	vm_stop(v->vm, VM_STOP_ERROR, VM_EXIT_STATUS_ERROR);
}

static void vcpu_handle_io(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	bool is_write = run->io.direction == KVM_EXIT_IO_OUT;
	uint32_t size = run->io.size;
	/* KVM puts the data inside the shared run area; check it rather than trust it. */
	uint64_t bytes = (uint64_t)run->io.count * size;
	if (size == 0 || size > 4 || run->io.data_offset > (uint64_t)v->vm->run_size ||
	    bytes > (uint64_t)v->vm->run_size - run->io.data_offset) {
		vcpu_fail(v, "KVM reported a port-I/O exit with its data outside the run area");
		return;
	}
	uint8_t *data = (uint8_t *)run + run->io.data_offset;
	for (uint32_t i = 0; i < run->io.count; i++) {
		if (!bus_dispatch(&v->vm->pio_bus, run->io.port, data, size, is_write))
			log_debug("vCPU %u: unhandled %s of %u bytes at port 0x%x", v->index,
				  is_write ? "write" : "read", size, run->io.port);
		data += size;
	}
}

static void vcpu_handle_mmio(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	uint32_t len = run->mmio.len > sizeof(run->mmio.data) ? sizeof(run->mmio.data) : run->mmio.len;
	if (!bus_dispatch(&v->vm->mmio_bus, run->mmio.phys_addr, run->mmio.data, len,
			  run->mmio.is_write))
		log_debug("vCPU %u: unhandled MMIO %s of %u bytes at 0x%llx", v->index,
			  run->mmio.is_write ? "write" : "read", len,
			  (unsigned long long)run->mmio.phys_addr);
}

static void vcpu_handle_system_event(struct vcpu *v)
{
	switch (v->run->system_event.type) {
	case KVM_SYSTEM_EVENT_SHUTDOWN:
		vm_stop(v->vm, VM_STOP_POWEROFF, VM_EXIT_STATUS_POWEROFF);
		break;
	case KVM_SYSTEM_EVENT_RESET:
		vm_stop(v->vm, VM_STOP_RESET, VM_EXIT_STATUS_RESET);
		break;
	default:
		vcpu_fail(v, "the guest reported a crash");
	}
}

/* Returns false when the vCPU must stop. */
static bool vcpu_handle_exit(struct vcpu *v)
{
	struct kvm_run *run = v->run;
	char why[128];
	if (run->exit_reason < VCPU_STAT_REASONS)
		v->exits[run->exit_reason]++;
	vcpu_trace_exit(v);
	switch (run->exit_reason) {
	case KVM_EXIT_IO:
		vcpu_handle_io(v);
		return true;
	case KVM_EXIT_MMIO:
		vcpu_handle_mmio(v);
		return true;
	case KVM_EXIT_INTR:
		return true;
	case KVM_EXIT_SYSTEM_EVENT:
		vcpu_handle_system_event(v);
		return false;
	case KVM_EXIT_SHUTDOWN:
		vcpu_fail(v, "the guest triple-faulted (KVM_EXIT_SHUTDOWN)");
		return false;
	case KVM_EXIT_INTERNAL_ERROR:
		snprintf(why, sizeof(why), "KVM internal error, suberror %u",
			 run->internal.suberror);
		vcpu_fail(v, why);
		return false;
	case KVM_EXIT_FAIL_ENTRY:
		snprintf(why, sizeof(why), "VM entry failed, hardware reason 0x%llx",
			 (unsigned long long)run->fail_entry.hardware_entry_failure_reason);
		vcpu_fail(v, why);
		return false;
	default:
		snprintf(why, sizeof(why), "unexpected exit reason %u", run->exit_reason);
		vcpu_fail(v, why);
		return false;
	}
}

static void *vcpu_thread(void *arg)
{
	struct vcpu *v = arg;
	sandbox_enter(SANDBOX_VCPU);
	sigset_t set;
	sigemptyset(&set);
	sigaddset(&set, VCPU_KICK_SIGNAL);
	pthread_sigmask(SIG_UNBLOCK, &set, NULL);

	__atomic_store_n(&v->tid, (int)gettid(), __ATOMIC_RELEASE);

	while (!atomic_load(&v->vm->stopping)) {
		/* A pause parks the vCPU only after a KVM_RUN that returned EINTR: with immediate_exit
		 * KVM first completes a pending port or MMIO access (KVM API, "KVM_RUN"), so whoever
		 * reads the parked vCPU's state sees a consistent one. */
		if (atomic_load(&v->vm->pause_requested))
			__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
		if (ioctl(v->fd, KVM_RUN, 0) < 0) {
			if (errno == EINTR || errno == EAGAIN) {
				/* Cleared before the pause flag is read (both seq_cst), so a kick that
				 * raced with the clear still finds the flag set. */
				__atomic_store_n(&v->run->immediate_exit, 0, __ATOMIC_SEQ_CST);
				vm_park_vcpu(v);
				continue;
			}
			char why[128];
			snprintf(why, sizeof(why), "KVM_RUN failed: %s", strerror(errno));
			vcpu_fail(v, why);
			break;
		}
		if (!vcpu_handle_exit(v))
			break;
	}
	return NULL;
}

#define VCPU_THREAD_STACK (256u << 10)

int vcpu_start(struct vcpu *v)
{
	char name[16];
	/* A vCPU thread runs exit handlers with small frames. The default 8 MiB stack is not only
	 * wasted address space: on hosts with THP "always", a 2 MiB-aligned stack gets a huge page
	 * at its first touch and 2 MiB of RSS. Below 2 MiB it cannot. */
	pthread_attr_t attr;
	int r = pthread_attr_init(&attr);
	if (r == 0) {
		r = pthread_attr_setstacksize(&attr, VCPU_THREAD_STACK);
		if (r == 0)
			r = pthread_create(&v->thread, &attr, vcpu_thread, v);
		pthread_attr_destroy(&attr);
	}
	if (r != 0) {
		log_error("cannot start the thread of vCPU %u: %s", v->index, strerror(r));
		return -r;
	}
	snprintf(name, sizeof(name), "vcpu%u", v->index);
	pthread_setname_np(v->thread, name);
	v->thread_started = true;
	return 0;
}

void vcpu_kick(struct vcpu *v)
{
	if (!v->thread_started)
		return;
	/* immediate_exit covers the window before the thread enters KVM_RUN; the signal
	 * interrupts it if it is already inside. */
	__atomic_store_n(&v->run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	pthread_kill(v->thread, VCPU_KICK_SIGNAL);
}

void vcpu_join(struct vcpu *v)
{
	if (v->thread_started)
		pthread_join(v->thread, NULL);
	v->thread_started = false;
}

void vcpu_destroy(struct vcpu *v)
{
	if (v->run)
		munmap(v->run, (size_t)v->vm->run_size);
	if (v->fd >= 0)
		close(v->fd);
	v->run = NULL;
	v->fd = -1;
	vcpu_trace_free(v);
}

static const char *exit_reason_name(unsigned r)
{
	switch (r) {
	case KVM_EXIT_IO: return "io";
	case KVM_EXIT_MMIO: return "mmio";
	case KVM_EXIT_INTR: return "intr (kick)";
	case KVM_EXIT_SYSTEM_EVENT: return "system-event";
	case KVM_EXIT_SHUTDOWN: return "shutdown";
	case KVM_EXIT_HLT: return "hlt";
	default: return NULL;
	}
}

void vcpu_print_stats(struct vm *vm)
{
	uint64_t total = 0;
	fprintf(stderr, "kvmkit: exits to userspace by reason:\n");
	for (unsigned r = 0; r < VCPU_STAT_REASONS; r++) {
		uint64_t n = 0;
		for (uint32_t i = 0; i < vm->ncpus; i++)
			n += vm->vcpus[i].exits[r];
		if (!n)
			continue;
		total += n;
		const char *name = exit_reason_name(r);
		if (name)
			fprintf(stderr, "  %-14s %llu\n", name, (unsigned long long)n);
		else
			fprintf(stderr, "  reason-%-7u %llu\n", r, (unsigned long long)n);
	}
	fprintf(stderr, "  %-14s %llu\n", "total", (unsigned long long)total);
}
