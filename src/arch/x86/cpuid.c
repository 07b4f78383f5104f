/* Guest CPUID: edits KVM's supported table into one socket of single-thread cores and announces KVM. */
#include "arch/x86/cpuid.h"

#include <errno.h>
#include <stdbool.h>
#include <string.h>

#include <asm/kvm_para.h>

#define CPUID_1_ECX_TSC_DEADLINE   (1u << 24)
#define CPUID_1_ECX_HYPERVISOR     (1u << 31)
#define CPUID_1_EDX_HTT            (1u << 28)
#define CPUID_8000_0001_ECX_CMP_LEGACY (1u << 1)

/* Leaf 0xB / 0x1F level types (ECX[15:8]) */
#define TOPO_LEVEL_INVALID 0
#define TOPO_LEVEL_SMT     1
#define TOPO_LEVEL_CORE    2

enum cpu_vendor { VENDOR_OTHER, VENDOR_INTEL, VENDOR_AMD };

static int entry_index(const struct kvm_cpuid2 *c, uint32_t function, uint32_t index)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		const struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function == function &&
		    (!(e->flags & KVM_CPUID_FLAG_SIGNIFCANT_INDEX) || e->index == index))
			return (int)i;
	}
	return -1;
}

const struct kvm_cpuid_entry2 *cpuid_find(const struct kvm_cpuid2 *c, uint32_t function,
                                          uint32_t index)
{
	int i = entry_index(c, function, index);
	return i < 0 ? NULL : &c->entries[i];
}

static struct kvm_cpuid_entry2 *find(struct kvm_cpuid2 *c, uint32_t function, uint32_t index)
{
	int i = entry_index(c, function, index);
	return i < 0 ? NULL : &c->entries[i];
}

static uint32_t count_function(const struct kvm_cpuid2 *c, uint32_t function)
{
	uint32_t n = 0;
	for (uint32_t i = 0; i < c->nent; i++)
		n += c->entries[i].function == function;
	return n;
}

static void remove_function(struct kvm_cpuid2 *c, uint32_t function)
{
	uint32_t j = 0;
	for (uint32_t i = 0; i < c->nent; i++)
		if (c->entries[i].function != function)
			c->entries[j++] = c->entries[i];
	c->nent = j;
}

/* The caller has checked the capacity. */
static struct kvm_cpuid_entry2 *append(struct kvm_cpuid2 *c, uint32_t function, uint32_t index,
                                       uint32_t flags)
{
	struct kvm_cpuid_entry2 *e = &c->entries[c->nent++];
	memset(e, 0, sizeof(*e));
	e->function = function;
	e->index = index;
	e->flags = flags;
	return e;
}

static enum cpu_vendor vendor_of(const struct kvm_cpuid2 *c)
{
	const struct kvm_cpuid_entry2 *e = cpuid_find(c, 0, 0);
	if (!e)
		return VENDOR_OTHER;
	char v[12];
	memcpy(v, &e->ebx, 4);
	memcpy(v + 4, &e->edx, 4);
	memcpy(v + 8, &e->ecx, 4);
	if (!memcmp(v, "GenuineIntel", 12))
		return VENDOR_INTEL;
	if (!memcmp(v, "AuthenticAMD", 12) || !memcmp(v, "HygonGenuine", 12))
		return VENDOR_AMD;
	return VENDOR_OTHER;
}

/* Bits needed to number n things: the smallest k with 2^k >= n. */
static uint32_t count_order(uint32_t n)
{
	uint32_t k = 0;
	while (k < 32 && (1ULL << k) < n)
		k++;
	return k;
}

static uint32_t min_u32(uint32_t a, uint32_t b)
{
	return a < b ? a : b;
}

static void setup_leaf1(struct kvm_cpuid2 *c, uint32_t apic_id, uint32_t ncpus)
{
	struct kvm_cpuid_entry2 *e = find(c, 1, 0);
	if (!e)
		return;
	/* Keep CLFLUSH size and brand index; the 8-bit initial APIC ID is the low byte of the
	 * x2APIC ID, which leaf 0xB reports in full. */
	e->ebx = (e->ebx & 0xffffu) | ((apic_id & 0xffu) << 24) | (min_u32(ncpus, 255) << 16);
	if (ncpus > 1)
		e->edx |= CPUID_1_EDX_HTT;
	else
		e->edx &= ~CPUID_1_EDX_HTT;
	/* Linux checks this bit before it looks at the 0x40000000 leaves (kvmclock, PV EOI). */
	e->ecx |= CPUID_1_ECX_HYPERVISOR;
}

/* Leaf 4 (Intel) and 0x8000001D (AMD) describe one cache per subleaf until cache type 0.
 * With one thread per core, L1 and L2 are private and the last level is shared by all cores. */
static void setup_cache_leaf(struct kvm_cpuid2 *c, uint32_t function, uint32_t ncpus)
{
	for (uint32_t i = 0; i < c->nent; i++) {
		struct kvm_cpuid_entry2 *e = &c->entries[i];
		if (e->function != function || (e->eax & 0x1f) == 0)
			continue;
		uint32_t level = (e->eax >> 5) & 7;
		uint32_t sharing = level >= 3 ? min_u32(ncpus - 1, 0xfff) : 0;
		e->eax = (e->eax & ~(0xfffu << 14)) | (sharing << 14);
		if (function == 4) {
			/* EAX[31:26]: addressable core IDs in the package - 1; 6 bits hold 64 at most. */
			uint32_t order = count_order(ncpus);
			uint32_t cores = order >= 6 ? 63 : (1u << order) - 1;
			e->eax = (e->eax & 0x03ffffffu) | (cores << 26);
		}
	}
}

/* Leaf 0xB / 0x1F: an SMT level of one thread and a core level of ncpus cores, x2APIC ID in
 * EDX of every subleaf, then the terminating invalid level. Replaces whatever was there (KVM
 * reports an empty subleaf 0, hosts may report more levels). */
static void setup_ext_topology(struct kvm_cpuid2 *c, uint32_t function, uint32_t apic_id,
                               uint32_t ncpus)
{
	remove_function(c, function);
	struct kvm_cpuid_entry2 *e = append(c, function, 0, KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
	e->eax = 0; /* APIC ID bits below the core level: no SMT */
	e->ebx = 1;
	e->ecx = 0 | (TOPO_LEVEL_SMT << 8);
	e->edx = apic_id;
	e = append(c, function, 1, KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
	e->eax = count_order(ncpus); /* APIC ID bits below the package level */
	e->ebx = min_u32(ncpus, 0xffff);
	e->ecx = 1 | (TOPO_LEVEL_CORE << 8);
	e->edx = apic_id;
	e = append(c, function, 2, KVM_CPUID_FLAG_SIGNIFCANT_INDEX);
	e->ecx = 2 | (TOPO_LEVEL_INVALID << 8);
	e->edx = apic_id;
}

static void setup_amd(struct kvm_cpuid2 *c, uint32_t ncpus)
{
	/* CmpLegacy: the HTT logical processor count counts cores, not threads. Intel tables do
	 * not get it: Linux would then discard their thread information. */
	struct kvm_cpuid_entry2 *e = find(c, 0x80000001, 0);
	if (e) {
		if (ncpus > 1)
			e->ecx |= CPUID_8000_0001_ECX_CMP_LEGACY;
		else
			e->ecx &= ~CPUID_8000_0001_ECX_CMP_LEGACY;
	}
	/* ECX[7:0] NC = cores - 1, ECX[15:12] ApicIdCoreIdSize = APIC ID bits for the core. */
	e = find(c, 0x80000008, 0);
	if (e)
		e->ecx = (e->ecx & ~0xffffu) | min_u32(ncpus - 1, 255) |
		         (min_u32(count_order(ncpus), 15) << 12);
}

void cpuid_enable_tsc_deadline(struct kvm_cpuid2 *cpuid)
{
	struct kvm_cpuid_entry2 *e = find(cpuid, 1, 0);
	if (e)
		e->ecx |= CPUID_1_ECX_TSC_DEADLINE;
}

int cpuid_setup(struct kvm_cpuid2 *cpuid, uint32_t capacity, uint32_t cpu_index, uint32_t ncpus)
{
	if (!cpuid || ncpus == 0 || cpu_index >= ncpus || cpuid->nent > capacity)
		return -EINVAL;
	const uint32_t apic_id = cpu_index;

	/* Count the entries first, so that -ENOSPC leaves the table as it was. KVM serves leaf
	 * 0xB (0x1F) only up to the maximum basic leaf, so those are written only when in range. */
	const struct kvm_cpuid_entry2 *leaf0 = cpuid_find(cpuid, 0, 0);
	uint32_t max_basic = leaf0 ? leaf0->eax : 0;
	bool want_0b = max_basic >= 0xb, want_1f = max_basic >= 0x1f;
	uint64_t nent = cpuid->nent;
	if (want_0b)
		nent = nent - count_function(cpuid, 0xb) + 3;
	if (want_1f)
		nent = nent - count_function(cpuid, 0x1f) + 3;
	if (!cpuid_find(cpuid, KVM_CPUID_SIGNATURE, 0))
		nent++;
	if (nent > capacity)
		return -ENOSPC;

	enum cpu_vendor vendor = vendor_of(cpuid);
	setup_leaf1(cpuid, apic_id, ncpus);
	setup_cache_leaf(cpuid, 4, ncpus);
	setup_cache_leaf(cpuid, 0x8000001d, ncpus);
	if (want_0b)
		setup_ext_topology(cpuid, 0xb, apic_id, ncpus);
	if (want_1f)
		setup_ext_topology(cpuid, 0x1f, apic_id, ncpus);
	if (vendor == VENDOR_AMD)
		setup_amd(cpuid, ncpus);

	/* AMD topology extensions: extended APIC ID, core ID, one thread per core, one node. */
	struct kvm_cpuid_entry2 *e = find(cpuid, 0x8000001e, 0);
	if (e) {
		e->eax = apic_id;
		e->ebx = apic_id & 0xff; /* [15:8] threads per core - 1 = 0 */
		e->ecx = 0;              /* node 0, [10:8] nodes per package - 1 = 0 */
		e->edx = 0;
	}

	/* No virtual PMU is promised: version 0 tells the guest there is no architectural PMU. */
	e = find(cpuid, 0xa, 0);
	if (e)
		e->eax = e->ebx = e->ecx = e->edx = 0;

	e = find(cpuid, KVM_CPUID_SIGNATURE, 0);
	if (!e)
		e = append(cpuid, KVM_CPUID_SIGNATURE, 0, 0);
	e->eax = KVM_CPUID_FEATURES; /* highest KVM leaf; its feature bits stay as KVM reported */
	memcpy(&e->ebx, "KVMK", 4);
	memcpy(&e->ecx, "VMKV", 4);
	memcpy(&e->edx, "M\0\0\0", 4);
	return 0;
}
