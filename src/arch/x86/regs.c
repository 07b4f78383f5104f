/* vCPU register state: the boot vCPU's entry state for each boot mode, the MSR/FPU/LAPIC state
 * every vCPU starts with, and a readable dump of a failed vCPU. */
#include "arch/x86/regs.h"

#include <errno.h>
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>

#include "arch/x86/boot.h"
#include "arch/x86/layout.h"
#include "lib/log.h"

#define CR0_PE 0x1ULL
#define CR0_ET 0x10ULL
#define CR0_PG 0x80000000ULL
#define CR4_PAE 0x20ULL
#define EFER_LME 0x100ULL
#define EFER_LMA 0x400ULL

#define GDT_CODE32 0x08
#define GDT_CODE64 0x10
#define GDT_DATA   0x18

static const uint64_t boot_gdt[] = {
	0,                       /* null */
	0x00cf9b000000ffffULL,   /* 0x08: 32-bit code, flat */
	0x00af9b000000ffffULL,   /* 0x10: 64-bit code */
	0x00cf93000000ffffULL,   /* 0x18: data, flat */
};

static struct kvm_segment seg_from_gdt(uint16_t sel)
{
	uint64_t d = boot_gdt[sel >> 3];
	uint32_t limit = (uint32_t)((d & 0xffff) | ((d >> 32) & 0xf0000));
	struct kvm_segment s = {
		.base = (uint32_t)(((d >> 16) & 0xffffff) | ((d >> 32) & 0xff000000)),
		.selector = sel,
		.type = (d >> 40) & 0xf,
		.present = (d >> 47) & 1,
		.dpl = (d >> 45) & 3,
		.db = (d >> 54) & 1,
		.s = (d >> 44) & 1,
		.l = (d >> 53) & 1,
		.g = (d >> 55) & 1,
	};
	s.limit = s.g ? (limit << 12) | 0xfff : limit;
	return s;
}

/* Identity map of the low 4 GiB with 2 MiB pages (1 GiB pages fail on some hosts). */
static int setup_page_tables(const struct guest_mem *mem)
{
	uint64_t *pml4 = guest_mem_ptr(mem, LAYOUT_PML4, 0x1000);
	uint64_t *pdpt = guest_mem_ptr(mem, LAYOUT_PDPT, 0x1000);
	uint64_t *pd = guest_mem_ptr(mem, LAYOUT_PD, 4 * 0x1000);
	if (!pml4 || !pdpt || !pd)
		return -EFAULT;
	memset(pml4, 0, 0x1000);
	memset(pdpt, 0, 0x1000);
	pml4[0] = LAYOUT_PDPT | 0x3; /* present, writable */
	for (uint64_t i = 0; i < 4; i++)
		pdpt[i] = (LAYOUT_PD + i * 0x1000) | 0x3;
	for (uint64_t i = 0; i < 4 * 512; i++)
		pd[i] = (i << 21) | 0x83; /* present, writable, 2 MiB page */
	return 0;
}

int boot_setup_bsp(int vcpu_fd, const struct guest_mem *mem, const struct boot_entry *e)
{
	if (guest_mem_write(mem, LAYOUT_GDT, boot_gdt, sizeof(boot_gdt)) < 0)
		return -EFAULT;

	struct kvm_sregs sregs;
	if (ioctl(vcpu_fd, KVM_GET_SREGS, &sregs) < 0)
		return -errno;
	sregs.gdt.base = LAYOUT_GDT;
	sregs.gdt.limit = sizeof(boot_gdt) - 1;
	sregs.idt.base = 0;
	sregs.idt.limit = 0;

	struct kvm_segment data = seg_from_gdt(GDT_DATA);
	sregs.ds = sregs.es = sregs.fs = sregs.gs = sregs.ss = data;
	/* VMX needs a usable TR even when the guest never switches tasks: a busy 32-bit TSS. */
	sregs.tr = (struct kvm_segment){ .limit = 0x67, .type = 11, .present = 1, .s = 0 };

	if (e->mode == BOOT_MODE_LINUX64) {
		int r = setup_page_tables(mem);
		if (r < 0)
			return r;
		sregs.cs = seg_from_gdt(GDT_CODE64);
		sregs.cr3 = LAYOUT_PML4;
		sregs.cr4 = CR4_PAE;
		sregs.cr0 = CR0_PE | CR0_ET | CR0_PG;
		sregs.efer = EFER_LME | EFER_LMA;
	} else {
		sregs.cs = seg_from_gdt(GDT_CODE32);
		sregs.cr0 = CR0_PE | CR0_ET;
		sregs.cr3 = 0;
		sregs.cr4 = 0;
		sregs.efer = 0;
	}
	if (ioctl(vcpu_fd, KVM_SET_SREGS, &sregs) < 0)
		return -errno;

	struct kvm_regs regs = {
		.rflags = 0x2, /* reserved bit; interrupts off */
		.rip = e->rip,
		.rsi = e->rsi,
		.rbx = e->rbx,
		.rax = e->rax,
	};
	if (ioctl(vcpu_fd, KVM_SET_REGS, &regs) < 0)
		return -errno;
	return 0;
}

#define MSR_IA32_TSC            0x10
#define MSR_IA32_SYSENTER_CS    0x174
#define MSR_IA32_SYSENTER_ESP   0x175
#define MSR_IA32_SYSENTER_EIP   0x176
#define MSR_IA32_MISC_ENABLE    0x1a0
#define MSR_MTRR_DEF_TYPE       0x2ff
#define MSR_STAR                0xc0000081
#define MSR_LSTAR               0xc0000082
#define MSR_CSTAR               0xc0000083
#define MSR_SYSCALL_MASK        0xc0000084
#define MSR_KERNEL_GS_BASE      0xc0000102

#define MISC_ENABLE_FAST_STRING 0x1
#define MTRR_ENABLE_WRITEBACK   ((1u << 11) | 6) /* MTRRs on, default type write-back */

#define APIC_LVT0 0x350
#define APIC_LVT1 0x360
#define APIC_MODE_NMI    (4u << 8)
#define APIC_MODE_EXTINT (7u << 8)

int regs_init_vcpu(int vcpu_fd)
{
	static const struct { uint32_t index; uint64_t value; } msrs[] = {
		{ MSR_IA32_SYSENTER_CS, 0 }, { MSR_IA32_SYSENTER_ESP, 0 },
		{ MSR_IA32_SYSENTER_EIP, 0 }, { MSR_STAR, 0 }, { MSR_CSTAR, 0 },
		{ MSR_KERNEL_GS_BASE, 0 }, { MSR_SYSCALL_MASK, 0 }, { MSR_LSTAR, 0 },
		{ MSR_IA32_TSC, 0 },
		{ MSR_IA32_MISC_ENABLE, MISC_ENABLE_FAST_STRING },
		/* Without enabled MTRRs Linux maps all RAM uncached: painfully slow. */
		{ MSR_MTRR_DEF_TYPE, MTRR_ENABLE_WRITEBACK },
	};
	enum { N = sizeof(msrs) / sizeof(msrs[0]) };
	struct {
		struct kvm_msrs hdr;
		struct kvm_msr_entry e[N];
	} m;
	memset(&m, 0, sizeof(m));
	m.hdr.nmsrs = N;
	for (int i = 0; i < N; i++) {
		m.e[i].index = msrs[i].index;
		m.e[i].data = msrs[i].value;
	}
	int n = ioctl(vcpu_fd, KVM_SET_MSRS, &m);
	if (n < 0)
		return -errno;
	if (n != N)
		log_debug("KVM accepted %d of %d initial MSRs (stopped at 0x%x)", n, N,
			  m.e[n].index);

	struct kvm_fpu fpu = { .fcw = 0x37f, .mxcsr = 0x1f80 };
	if (ioctl(vcpu_fd, KVM_SET_FPU, &fpu) < 0)
		return -errno;

	struct kvm_lapic_state lapic;
	if (ioctl(vcpu_fd, KVM_GET_LAPIC, &lapic) < 0)
		return -errno;
	uint32_t lvt0 = APIC_MODE_EXTINT, lvt1 = APIC_MODE_NMI;
	memcpy(&lapic.regs[APIC_LVT0], &lvt0, 4);
	memcpy(&lapic.regs[APIC_LVT1], &lvt1, 4);
	if (ioctl(vcpu_fd, KVM_SET_LAPIC, &lapic) < 0)
		return -errno;
	return 0;
}

static void dump_segment(FILE *out, const char *name, const struct kvm_segment *s)
{
	fprintf(out, "%-3s sel=%04x base=%016llx limit=%08x type=%x dpl=%u p=%u db=%u l=%u g=%u\n",
		name, s->selector, (unsigned long long)s->base, s->limit, s->type, s->dpl,
		s->present, s->db, s->l, s->g);
}

void regs_dump(int vcpu_fd, const struct guest_mem *mem, FILE *out)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	if (ioctl(vcpu_fd, KVM_GET_REGS, &r) < 0 || ioctl(vcpu_fd, KVM_GET_SREGS, &s) < 0) {
		fprintf(out, "(registers unavailable: %s)\n", strerror(errno));
		return;
	}
	fprintf(out, "RAX=%016llx RBX=%016llx RCX=%016llx RDX=%016llx\n"
		     "RSI=%016llx RDI=%016llx RBP=%016llx RSP=%016llx\n"
		     "R8 =%016llx R9 =%016llx R10=%016llx R11=%016llx\n"
		     "R12=%016llx R13=%016llx R14=%016llx R15=%016llx\n"
		     "RIP=%016llx RFLAGS=%08llx\n",
		r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10, r.r11,
		r.r12, r.r13, r.r14, r.r15, r.rip, r.rflags);
	dump_segment(out, "CS", &s.cs);
	dump_segment(out, "SS", &s.ss);
	dump_segment(out, "DS", &s.ds);
	dump_segment(out, "ES", &s.es);
	dump_segment(out, "FS", &s.fs);
	dump_segment(out, "GS", &s.gs);
	dump_segment(out, "TR", &s.tr);
	fprintf(out, "GDT=%016llx/%04x IDT=%016llx/%04x\n", (unsigned long long)s.gdt.base,
		s.gdt.limit, (unsigned long long)s.idt.base, s.idt.limit);
	fprintf(out, "CR0=%08llx CR2=%016llx CR3=%016llx CR4=%08llx EFER=%08llx APIC_BASE=%llx\n",
		s.cr0, s.cr2, s.cr3, s.cr4, s.efer, s.apic_base);

	/* Code bytes: translate the linear address of RIP (paging may be on). */
	uint64_t linear = s.cs.base + r.rip;
	struct kvm_translation t = { .linear_address = linear - 16 };
	uint64_t gpa = linear - 16;
	if (s.cr0 & CR0_PG) {
		if (ioctl(vcpu_fd, KVM_TRANSLATE, &t) < 0 || !t.valid) {
			fprintf(out, "Code: (RIP not mapped)\n");
			return;
		}
		gpa = t.physical_address;
	}
	const uint8_t *code = guest_mem_ptr(mem, gpa, 32);
	if (!code) {
		fprintf(out, "Code: (RIP outside guest RAM)\n");
		return;
	}
	fprintf(out, "Code:");
	for (int i = 0; i < 32; i++)
		fprintf(out, i == 16 ? " <%02x>" : " %02x", code[i]);
	fprintf(out, "\n");
}
