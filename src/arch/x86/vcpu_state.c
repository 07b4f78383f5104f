/* One x86 vCPU's complete KVM state to and from a migration stream: the KVM structures travel as
 * size-checked blobs (KVM's ABI fixes their layout), the MSRs as (index, value) pairs limited
 * to the set QEMU migrates, and the restore order is QEMU's (registers, XSAVE, XCRs, special
 * registers with the APIC base, LAPIC, MSRs, MP state, events, debug registers). */
#include "arch/x86/vcpu_state.h"

#include <errno.h>
#include <linux/kvm.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>

#include "lib/stream.h"

/* The MSRs saved when KVM lists them: what QEMU's target/i386/kvm.c migrates for a guest
 * without nested virtualisation, PMU or Hyper-V. EFER and APIC_BASE travel in kvm_sregs. */
static const uint32_t vcpu_msr_candidates[] = {
	0x00000010, /* IA32_TSC */
	0x0000003b, /* IA32_TSC_ADJUST */
	0x00000174, /* IA32_SYSENTER_CS */
	0x00000175, /* IA32_SYSENTER_ESP */
	0x00000176, /* IA32_SYSENTER_EIP */
	0x000001a0, /* IA32_MISC_ENABLE */
	0x00000277, /* IA32_PAT */
	0x000002ff, /* MTRR default type */
	0x00000250, 0x00000258, 0x00000259, /* fixed MTRRs */
	0x00000268, 0x00000269, 0x0000026a, 0x0000026b,
	0x0000026c, 0x0000026d, 0x0000026e, 0x0000026f,
	0x00000200, 0x00000201, 0x00000202, 0x00000203, /* variable MTRRs, base/mask pairs */
	0x00000204, 0x00000205, 0x00000206, 0x00000207,
	0x00000208, 0x00000209, 0x0000020a, 0x0000020b,
	0x0000020c, 0x0000020d, 0x0000020e, 0x0000020f,
	0x000006e0, /* IA32_TSC_DEADLINE */
	0xc0000081, /* STAR */
	0xc0000082, /* LSTAR */
	0xc0000083, /* CSTAR */
	0xc0000084, /* FMASK */
	0xc0000102, /* KERNEL_GS_BASE */
	0xc0000103, /* TSC_AUX */
	0x00000011, /* KVM wall clock (old) */
	0x00000012, /* KVM system time (old) */
	0x4b564d00, /* KVM wall clock */
	0x4b564d01, /* KVM system time */
	0x4b564d02, /* async page fault enable */
	0x4b564d03, /* steal time */
	0x4b564d04, /* PV EOI */
	0x4b564d05, /* poll control */
	0x4b564d06, /* async page fault interrupt */
};
#define VCPU_MAX_MSRS (sizeof(vcpu_msr_candidates) / sizeof(vcpu_msr_candidates[0]))

static bool vcpu_msr_is_candidate(uint32_t index)
{
	for (size_t i = 0; i < VCPU_MAX_MSRS; i++)
		if (vcpu_msr_candidates[i] == index)
			return true;
	return false;
}

/* struct kvm_msrs with room for the entries (its header spelt out: a struct with a flexible
 * array cannot be embedded in standard C). */
struct vcpu_msrs {
	uint32_t nmsrs;
	uint32_t pad;
	struct kvm_msr_entry entries[VCPU_MAX_MSRS];
};
_Static_assert(offsetof(struct vcpu_msrs, entries) == offsetof(struct kvm_msrs, entries),
	       "struct vcpu_msrs matches struct kvm_msrs");

/* The candidates that KVM_GET_MSR_INDEX_LIST reports (MTRRs are emulated and may be missing
 * from older lists; KVM_GET_MSRS below drops whatever it then refuses). */
static int vcpu_msr_list(int kvm_fd, struct vcpu_msrs *m)
{
	struct kvm_msr_list probe = { .nmsrs = 0 };
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, &probe) < 0 && errno != E2BIG)
		return -errno;
	struct kvm_msr_list *list = calloc(1, sizeof(*list) + probe.nmsrs * sizeof(uint32_t));
	if (!list)
		return -ENOMEM;
	list->nmsrs = probe.nmsrs;
	if (ioctl(kvm_fd, KVM_GET_MSR_INDEX_LIST, list) < 0) {
		int err = -errno;
		free(list);
		return err;
	}
	memset(m, 0, sizeof(*m));
	for (size_t c = 0; c < VCPU_MAX_MSRS; c++) {
		bool listed = false;
		for (uint32_t i = 0; i < list->nmsrs && !listed; i++)
			listed = list->indices[i] == vcpu_msr_candidates[c];
		bool mtrr = vcpu_msr_candidates[c] >= 0x200 && vcpu_msr_candidates[c] <= 0x2ff;
		if (listed || mtrr)
			m->entries[m->nmsrs++].index = vcpu_msr_candidates[c];
	}
	free(list);
	return 0;
}

/* KVM_GET_MSRS stops at the first MSR it cannot read: drop that one and go on. */
static int vcpu_get_msrs(int vcpu_fd, struct vcpu_msrs *m)
{
	for (;;) {
		int n = ioctl(vcpu_fd, KVM_GET_MSRS, (struct kvm_msrs *)m);
		if (n < 0)
			return -errno;
		if ((uint32_t)n >= m->nmsrs)
			return 0;
		memmove(&m->entries[n], &m->entries[n + 1],
			(m->nmsrs - (uint32_t)n - 1) * sizeof(m->entries[0]));
		m->nmsrs--;
	}
}

static int vcpu_xsave_size(int kvm_fd)
{
	int size = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2);
	return size > (int)sizeof(struct kvm_xsave) ? size : (int)sizeof(struct kvm_xsave);
}

int vcpu_state_complete_io(int vcpu_fd, struct kvm_run *run)
{
	__atomic_store_n(&run->immediate_exit, 1, __ATOMIC_SEQ_CST);
	int r = ioctl(vcpu_fd, KVM_RUN, 0);
	int err = r < 0 ? errno : 0;
	__atomic_store_n(&run->immediate_exit, 0, __ATOMIC_SEQ_CST);
	/* With immediate_exit KVM completes the pending instruction and returns EINTR. */
	return r < 0 && err != EINTR && err != EAGAIN ? -err : 0;
}

/* A KVM structure as u32 size + bytes. */
static void put_blob(struct stream *s, const void *p, uint32_t size)
{
	stream_put_u32(s, size);
	stream_put_bytes(s, p, size);
}

/* Reads a blob that must be exactly `size` bytes. */
static void get_blob(struct stream *s, void *p, uint32_t size)
{
	uint32_t n = stream_get_u32_range(s, size, size);
	stream_get_bytes(s, p, n);
}

int vcpu_state_save(int kvm_fd, int vcpu_fd, struct stream *s)
{
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xcrs xcrs = { 0 };
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	struct kvm_debugregs dbg;
	struct vcpu_msrs msrs;
	bool have_xcrs = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0;
	int xsave_size = vcpu_xsave_size(kvm_fd);
	struct kvm_xsave *xsave = calloc(1, (size_t)xsave_size);
	if (!xsave)
		return -ENOMEM;
	unsigned long get_xsave = ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XSAVE2) > 0 ?
				  KVM_GET_XSAVE2 : KVM_GET_XSAVE;
	int r = 0;
	if (ioctl(vcpu_fd, KVM_GET_REGS, &regs) < 0 || ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0 ||
	    ioctl(vcpu_fd, get_xsave, xsave) < 0 ||
	    (have_xcrs && ioctl(vcpu_fd, KVM_GET_XCRS, &xcrs) < 0) ||
	    ioctl(vcpu_fd, KVM_GET_LAPIC, &lapic) < 0 ||
	    ioctl(vcpu_fd, KVM_GET_VCPU_EVENTS, &events) < 0 ||
	    ioctl(vcpu_fd, KVM_GET_MP_STATE, &mp) < 0 ||
	    ioctl(vcpu_fd, KVM_GET_DEBUGREGS, &dbg) < 0)
		r = -errno;
	if (r == 0)
		r = vcpu_msr_list(kvm_fd, &msrs);
	if (r == 0)
		r = vcpu_get_msrs(vcpu_fd, &msrs);
	int tsc_khz = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
	if (r < 0) {
		free(xsave);
		return r;
	}
	put_blob(s, &regs, sizeof(regs));
	put_blob(s, &sregs, sizeof(sregs));
	put_blob(s, xsave, (uint32_t)xsave_size);
	stream_put_u8(s, have_xcrs);
	put_blob(s, &xcrs, sizeof(xcrs));
	stream_put_u32(s, msrs.nmsrs);
	for (uint32_t i = 0; i < msrs.nmsrs; i++) {
		stream_put_u32(s, msrs.entries[i].index);
		stream_put_u64(s, msrs.entries[i].data);
	}
	put_blob(s, &lapic, sizeof(lapic));
	put_blob(s, &events, sizeof(events));
	stream_put_u32(s, mp.mp_state);
	put_blob(s, &dbg, sizeof(dbg));
	stream_put_u32(s, tsc_khz > 0 ? (uint32_t)tsc_khz : 0);
	free(xsave);
	return stream_error(s);
}

/* Everything a "CPU " section holds, read and checked before anything is set. */
struct vcpu_saved {
	struct kvm_regs regs;
	struct kvm_sregs sregs;
	struct kvm_xsave *xsave;
	bool have_xcrs;
	struct kvm_xcrs xcrs;
	struct vcpu_msrs msrs;
	struct kvm_lapic_state lapic;
	struct kvm_vcpu_events events;
	struct kvm_mp_state mp;
	struct kvm_debugregs dbg;
	uint32_t tsc_khz;
};

static int vcpu_state_read(int kvm_fd, struct stream *s, struct vcpu_saved *v, const char **what)
{
	*what = "the registers";
	get_blob(s, &v->regs, sizeof(v->regs));
	get_blob(s, &v->sregs, sizeof(v->sregs));
	/* An XSAVE area from a host with more state components than this one cannot be loaded;
	 * a smaller one is padded with zeros (the components it lacks stay in their init state). */
	*what = "the FPU/XSAVE area";
	uint32_t host_size = (uint32_t)vcpu_xsave_size(kvm_fd);
	uint32_t size = stream_get_u32_range(s, sizeof(struct kvm_xsave), host_size);
	if (stream_error(s))
		return stream_error(s);
	v->xsave = calloc(1, host_size);
	if (!v->xsave)
		return -ENOMEM;
	stream_get_bytes(s, v->xsave, size);
	*what = "the XCRs";
	v->have_xcrs = stream_get_u8(s) != 0;
	get_blob(s, &v->xcrs, sizeof(v->xcrs));
	if (!stream_error(s) && v->xcrs.nr_xcrs > KVM_MAX_XCRS)
		stream_fail(s, -EBADMSG);
	*what = "the MSRs";
	memset(&v->msrs, 0, sizeof(v->msrs));
	v->msrs.nmsrs = stream_get_u32_range(s, 0, VCPU_MAX_MSRS);
	for (uint32_t i = 0; i < v->msrs.nmsrs && !stream_error(s); i++) {
		v->msrs.entries[i].index = stream_get_u32(s);
		v->msrs.entries[i].data = stream_get_u64(s);
		if (!stream_error(s) && !vcpu_msr_is_candidate(v->msrs.entries[i].index))
			stream_fail(s, -EBADMSG);
	}
	*what = "the local APIC";
	get_blob(s, &v->lapic, sizeof(v->lapic));
	*what = "the pending events";
	get_blob(s, &v->events, sizeof(v->events));
	*what = "the MP state";
	v->mp.mp_state = stream_get_u32_range(s, KVM_MP_STATE_RUNNABLE, KVM_MP_STATE_AP_RESET_HOLD);
	*what = "the debug registers";
	get_blob(s, &v->dbg, sizeof(v->dbg));
	*what = "the TSC frequency";
	v->tsc_khz = stream_get_u32_range(s, 0, 100u * 1000 * 1000); /* up to 100 GHz */
	return stream_error(s);
}

static int vcpu_state_set(int kvm_fd, int vcpu_fd, struct vcpu_saved *v, const char **what)
{
	int cur_khz = ioctl(vcpu_fd, KVM_GET_TSC_KHZ, 0);
	*what = "the TSC frequency";
	if (v->tsc_khz && cur_khz > 0 && (uint32_t)cur_khz != v->tsc_khz &&
	    ioctl(vcpu_fd, KVM_SET_TSC_KHZ, (unsigned long)v->tsc_khz) < 0)
		return -errno;
	*what = "the registers";
	if (ioctl(vcpu_fd, KVM_SET_REGS, &v->regs) < 0)
		return -errno;
	*what = "the FPU/XSAVE area";
	if (ioctl(vcpu_fd, KVM_SET_XSAVE, v->xsave) < 0)
		return -errno;
	*what = "the XCRs";
	if (v->have_xcrs && ioctl(kvm_fd, KVM_CHECK_EXTENSION, KVM_CAP_XCRS) > 0 &&
	    ioctl(vcpu_fd, KVM_SET_XCRS, &v->xcrs) < 0)
		return -errno;
	*what = "the special registers";
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &v->sregs) < 0)
		return -errno;
	*what = "the local APIC";
	if (ioctl(vcpu_fd, KVM_SET_LAPIC, &v->lapic) < 0)
		return -errno;
	/* After the LAPIC: KVM ignores a TSC deadline unless the timer is in deadline mode. */
	*what = "the MSRs";
	int n = ioctl(vcpu_fd, KVM_SET_MSRS, (struct kvm_msrs *)&v->msrs);
	if (n < 0)
		return -errno;
	if ((uint32_t)n != v->msrs.nmsrs)
		return -EINVAL;
	*what = "the MP state";
	if (ioctl(vcpu_fd, KVM_SET_MP_STATE, &v->mp) < 0)
		return -errno;
	/* KVM reports which event fields it filled; on setting, NMI and SIPI state are always
	 * meant, and flags this version does not know are dropped. */
	*what = "the pending events";
	v->events.flags &= KVM_VCPUEVENT_VALID_SHADOW | KVM_VCPUEVENT_VALID_SMM;
	v->events.flags |= KVM_VCPUEVENT_VALID_NMI_PENDING | KVM_VCPUEVENT_VALID_SIPI_VECTOR;
	if (ioctl(vcpu_fd, KVM_SET_VCPU_EVENTS, &v->events) < 0)
		return -errno;
	*what = "the debug registers";
	v->dbg.flags = 0;
	if (ioctl(vcpu_fd, KVM_SET_DEBUGREGS, &v->dbg) < 0)
		return -errno;
	return 0;
}

int vcpu_state_load(int kvm_fd, int vcpu_fd, uint32_t version, struct stream *s,
		    const char **what)
{
	*what = "the section version";
	if (version != VCPU_STATE_VERSION)
		return -EPROTONOSUPPORT;
	struct vcpu_saved *v = calloc(1, sizeof(*v));
	if (!v)
		return -ENOMEM;
	int r = vcpu_state_read(kvm_fd, s, v, what);
	if (r == 0)
		r = stream_end_read(s);
	if (r == 0)
		r = vcpu_state_set(kvm_fd, vcpu_fd, v, what);
	free(v->xsave);
	free(v);
	return r;
}
