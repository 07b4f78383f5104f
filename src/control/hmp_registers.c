/* `info registers` in QEMU's layout (the 64-bit one when the vCPU runs 64-bit code, else the
 * 32-bit one), so scripts that read QEMU's dump read kvmkit's. The FPU/SSE lines are left out. */
#include <linux/kvm.h>
#include <string.h>
#include <sys/ioctl.h>

#include "control/control_int.h"
#include "vmm/vm.h"

#define X86_EFLAGS_CF 0x0001
#define X86_EFLAGS_PF 0x0004
#define X86_EFLAGS_AF 0x0010
#define X86_EFLAGS_ZF 0x0040
#define X86_EFLAGS_SF 0x0080
#define X86_EFLAGS_DF 0x0400
#define X86_EFLAGS_OF 0x0800
#define X86_EFER_LMA  (1u << 10)
#define X86_CR0_PE    1u

/* The descriptor's second word, as QEMU prints it (type, S, DPL, P, AVL, L, D/B, G). */
static unsigned seg_flags(const struct kvm_segment *s)
{
	return (unsigned)s->type << 8 | (unsigned)s->s << 12 | (unsigned)s->dpl << 13 |
	       (unsigned)s->present << 15 | (unsigned)s->avl << 20 | (unsigned)s->l << 21 |
	       (unsigned)s->db << 22 | (unsigned)s->g << 23;
}

static void format_segment(struct outbuf *o, const char *name, const struct kvm_segment *s,
			   bool wide, bool protected_mode, bool lma)
{
	if (wide)
		outbuf_printf(o, "%-3s=%04x %016llx %08x %08x", name, s->selector,
			      (unsigned long long)s->base, s->limit, seg_flags(s));
	else
		outbuf_printf(o, "%-3s=%04x %08x %08x %08x", name, s->selector, (unsigned)s->base,
			      s->limit, seg_flags(s));
	if (protected_mode && s->present) {
		outbuf_printf(o, " DPL=%u ", s->dpl);
		if (s->s && (s->type & 8)) {          /* code: conforming, readable, accessed */
			outbuf_printf(o, "%s [%c%c%c]", s->l ? "CS64" : s->db ? "CS32" : "CS16",
				      s->type & 4 ? 'C' : '-', s->type & 2 ? 'R' : '-',
				      s->type & 1 ? 'A' : '-');
		} else if (s->s) {                    /* data: expand-down, writable, accessed */
			outbuf_printf(o, "%s [%c%c%c]", s->db || lma ? "DS  " : "DS16",
				      s->type & 4 ? 'E' : '-', s->type & 2 ? 'W' : '-',
				      s->type & 1 ? 'A' : '-');
		} else {
			static const char *const legacy[16] = {
				"Reserved", "TSS16-avl", "LDT", "TSS16-busy", "CallGate16", "TaskGate",
				"IntGate16", "TrapGate16", "Reserved", "TSS32-avl", "Reserved",
				"TSS32-busy", "CallGate32", "Reserved", "IntGate32", "TrapGate32" };
			static const char *const longmode[16] = {
				"<hiword>", "Reserved", "LDT", "Reserved", "Reserved", "Reserved",
				"Reserved", "Reserved", "Reserved", "TSS64-avl", "Reserved", "TSS64-busy",
				"CallGate64", "Reserved", "IntGate64", "TrapGate64" };
			outbuf_printf(o, "%s", (lma ? longmode : legacy)[s->type & 15]);
		}
	}
	outbuf_printf(o, "\n");
}

void hmp_format_registers(struct vcpu *v, struct outbuf *o)
{
	struct kvm_regs r;
	struct kvm_sregs s;
	struct kvm_debugregs d;
	struct kvm_vcpu_events ev;
	struct kvm_mp_state mp;
	outbuf_printf(o, "\nCPU#%u\n", v->index);
	if (ioctl(v->fd, KVM_GET_REGS, &r) < 0 || ioctl(v->fd, KVM_GET_SREGS, &s) < 0) {
		outbuf_printf(o, "(registers unavailable)\n");
		return;
	}
	if (ioctl(v->fd, KVM_GET_DEBUGREGS, &d) < 0)
		memset(&d, 0, sizeof(d));
	if (ioctl(v->fd, KVM_GET_VCPU_EVENTS, &ev) < 0)
		memset(&ev, 0, sizeof(ev));
	if (ioctl(v->fd, KVM_GET_MP_STATE, &mp) < 0)
		mp.mp_state = KVM_MP_STATE_RUNNABLE;

	bool lma = s.efer & X86_EFER_LMA;
	bool wide = lma && s.cs.l;   /* QEMU's HF_CS64: 64-bit code */
	bool pe = s.cr0 & X86_CR0_PE;
	unsigned long long fl = r.rflags;
	char flags[8] = {
		fl & X86_EFLAGS_DF ? 'D' : '-', fl & X86_EFLAGS_OF ? 'O' : '-',
		fl & X86_EFLAGS_SF ? 'S' : '-', fl & X86_EFLAGS_ZF ? 'Z' : '-',
		fl & X86_EFLAGS_AF ? 'A' : '-', fl & X86_EFLAGS_PF ? 'P' : '-',
		fl & X86_EFLAGS_CF ? 'C' : '-', 0 };
	unsigned cpl = pe ? s.ss.dpl : 0;
	if (wide) {
		outbuf_printf(o, "RAX=%016llx RBX=%016llx RCX=%016llx RDX=%016llx\n"
			      "RSI=%016llx RDI=%016llx RBP=%016llx RSP=%016llx\n"
			      "R8 =%016llx R9 =%016llx R10=%016llx R11=%016llx\n"
			      "R12=%016llx R13=%016llx R14=%016llx R15=%016llx\n"
			      "RIP=%016llx RFL=%08llx",
			      r.rax, r.rbx, r.rcx, r.rdx, r.rsi, r.rdi, r.rbp, r.rsp, r.r8, r.r9, r.r10,
			      r.r11, r.r12, r.r13, r.r14, r.r15, r.rip, fl);
	} else {
		outbuf_printf(o, "EAX=%08x EBX=%08x ECX=%08x EDX=%08x\n"
			      "ESI=%08x EDI=%08x EBP=%08x ESP=%08x\n"
			      "EIP=%08x EFL=%08x",
			      (unsigned)r.rax, (unsigned)r.rbx, (unsigned)r.rcx, (unsigned)r.rdx,
			      (unsigned)r.rsi, (unsigned)r.rdi, (unsigned)r.rbp, (unsigned)r.rsp,
			      (unsigned)r.rip, (unsigned)fl);
	}
	outbuf_printf(o, " [%s] CPL=%u II=%u A20=1 SMM=%u HLT=%u\n", flags, cpl,
		      ev.interrupt.shadow ? 1u : 0u, ev.smi.smm ? 1u : 0u,
		      mp.mp_state == KVM_MP_STATE_HALTED ? 1u : 0u);
	const struct { const char *name; const struct kvm_segment *seg; } segs[] = {
		{ "ES", &s.es }, { "CS", &s.cs }, { "SS", &s.ss }, { "DS", &s.ds },
		{ "FS", &s.fs }, { "GS", &s.gs }, { "LDT", &s.ldt }, { "TR", &s.tr },
	};
	for (size_t i = 0; i < sizeof(segs) / sizeof(segs[0]); i++)
		format_segment(o, segs[i].name, segs[i].seg, wide, pe, lma);
	if (wide) {
		outbuf_printf(o, "GDT=     %016llx %08x\nIDT=     %016llx %08x\n"
			      "CR0=%08llx CR2=%016llx CR3=%016llx CR4=%08llx\n",
			      s.gdt.base, s.gdt.limit, s.idt.base, s.idt.limit, s.cr0, s.cr2, s.cr3,
			      s.cr4);
	} else {
		outbuf_printf(o, "GDT=     %08x %08x\nIDT=     %08x %08x\n"
			      "CR0=%08x CR2=%08x CR3=%08x CR4=%08x\n",
			      (unsigned)s.gdt.base, s.gdt.limit, (unsigned)s.idt.base, s.idt.limit,
			      (unsigned)s.cr0, (unsigned)s.cr2, (unsigned)s.cr3, (unsigned)s.cr4);
	}
	for (int i = 0; i < 4; i++)
		outbuf_printf(o, "DR%d=%016llx ", i, d.db[i]);
	outbuf_printf(o, "\nDR6=%016llx DR7=%016llx\nEFER=%016llx\n", d.dr6, d.dr7, s.efer);
}
