/* Unit tests of cpuid_setup on synthetic KVM_GET_SUPPORTED_CPUID tables of Intel and AMD hosts. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "arch/x86/cpuid.h"

#define SIG KVM_CPUID_FLAG_SIGNIFCANT_INDEX
#define CAPACITY 64

enum host { INTEL_KVM_LIKE, INTEL_HOST_TOPOLOGY, AMD };

static uint32_t str4(const char *s)
{
	uint32_t v;
	memcpy(&v, s, 4);
	return v;
}

static void add(struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx, uint32_t flags, uint32_t eax,
                uint32_t ebx, uint32_t ecx, uint32_t edx)
{
	c->entries[c->nent++] = (struct kvm_cpuid_entry2){
		.function = fn, .index = idx, .flags = flags,
		.eax = eax, .ebx = ebx, .ecx = ecx, .edx = edx,
	};
}

/* What KVM_GET_SUPPORTED_CPUID returns on such a host, trimmed to the leaves that matter. */
static struct kvm_cpuid2 *make_table(enum host host)
{
	struct kvm_cpuid2 *c = calloc(1, sizeof(*c) + CAPACITY * sizeof(c->entries[0]));
	assert_non_null(c);
	if (host == AMD) {
		add(c, 0, 0, 0, 0x10, str4("Auth"), str4("cAMD"), str4("enti"));
		/* host: 16 logical processors, HTT; OSXSAVE (27) as KVM leaves it */
		add(c, 1, 0, 0, 0x00a20f10, 0x00100800, 0x7ef8320b, 0x178bfbff);
		add(c, 7, 0, SIG, 0, 0x219c97a9, 0x0040068c, 0x00000010);
		add(c, 0xd, 0, SIG, 0x7, 0x340, 0x340, 0);
		add(c, 0xd, 1, SIG, 0xf, 0x340, 0, 0);
	} else {
		uint32_t max = host == INTEL_HOST_TOPOLOGY ? 0x1f : 0x16;
		add(c, 0, 0, 0, max, str4("Genu"), str4("ntel"), str4("ineI"));
		add(c, 1, 0, 0, 0x000906ea, 0x0a100800, 0x7ffafbff, 0x178bfbff);
		/* caches: L1d, L1i, L2 shared by 2 threads, L3 by 16; 8 cores; then the null one */
		add(c, 4, 0, SIG, 0x1c004121, 0x01c0003f, 0x3f, 0);
		add(c, 4, 1, SIG, 0x1c004122, 0x01c0003f, 0x3f, 0);
		add(c, 4, 2, SIG, 0x1c004143, 0x00c0003f, 0x3ff, 0);
		add(c, 4, 3, SIG, 0x1c03c163, 0x03c0003f, 0x2fff, 0x6);
		add(c, 4, 4, SIG, 0, 0, 0, 0);
		add(c, 7, 0, SIG, 0, 0x029c6fbf, 0x40000000, 0xbc000400);
		add(c, 0xa, 0, 0, 0x07300404, 0, 0, 0x603);
		if (host == INTEL_KVM_LIKE) {
			add(c, 0xb, 0, SIG, 0, 0, 0, 0); /* KVM: "no topology" */
		} else {
			/* a host's own topology: 2 threads, 16 logical, a die level in 0x1F */
			add(c, 0xb, 0, SIG, 1, 2, 0x100, 7);
			add(c, 0xb, 1, SIG, 4, 16, 0x201, 7);
			add(c, 0xb, 2, SIG, 0, 0, 2, 7);
			add(c, 0x1f, 0, SIG, 1, 2, 0x100, 7);
			add(c, 0x1f, 1, SIG, 4, 16, 0x201, 7);
			add(c, 0x1f, 2, SIG, 5, 16, 0x502, 7);
			add(c, 0x1f, 3, SIG, 0, 0, 3, 7);
		}
		add(c, 0xd, 0, SIG, 0x7, 0x340, 0x340, 0);
	}
	add(c, 0x40000000, 0, 0, 0x40000001, str4("KVMK"), str4("VMKV"), str4("M\0\0\0"));
	add(c, 0x40000001, 0, 0, 0x01007afb, 0, 0, 0);
	if (host == AMD) {
		add(c, 0x80000000, 0, 0, 0x80000021, str4("Auth"), str4("cAMD"), str4("enti"));
		/* CmpLegacy (1) and TopologyExtensions (22) set by the host */
		add(c, 0x80000001, 0, 0, 0x00a20f10, 0, 0x75c237ff, 0x2fd3fbff);
		add(c, 0x80000008, 0, 0, 0x3030, 0x0300d205, 0x0000700f, 0);
		add(c, 0x8000001d, 0, SIG, 0x00004121, 0x01c0003f, 0x3f, 0);
		add(c, 0x8000001d, 1, SIG, 0x00004122, 0x01c0003f, 0x3f, 0);
		add(c, 0x8000001d, 2, SIG, 0x00004143, 0x01c0003f, 0x3ff, 2);
		add(c, 0x8000001d, 3, SIG, 0x0003c163, 0x03c0003f, 0x7fff, 1);
		add(c, 0x8000001d, 4, SIG, 0, 0, 0, 0);
		add(c, 0x8000001e, 0, 0, 0, 0, 0, 0); /* KVM hides the host's */
	} else {
		add(c, 0x80000000, 0, 0, 0x80000008, 0, 0, 0);
		add(c, 0x80000001, 0, 0, 0, 0, 0x121, 0x2c100800);
		add(c, 0x80000008, 0, 0, 0x3027, 0, 0, 0);
	}
	return c;
}

static struct kvm_cpuid2 *dup_table(const struct kvm_cpuid2 *c)
{
	size_t size = sizeof(*c) + CAPACITY * sizeof(c->entries[0]);
	struct kvm_cpuid2 *d = malloc(size);
	assert_non_null(d);
	memcpy(d, c, size);
	return d;
}

static const struct kvm_cpuid_entry2 *get(const struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx)
{
	const struct kvm_cpuid_entry2 *e = cpuid_find(c, fn, idx);
	if (!e)
		fail_msg("no CPUID leaf %#x.%u", fn, idx);
	return e;
}

static uint32_t order(uint32_t n) /* ceil(log2(n)) */
{
	uint32_t k = 0;
	while ((1ULL << k) < n)
		k++;
	return k;
}

/* Leaf 0xB/0x1F as Linux's detect_extended_topology reads it: the package and core IDs derived
 * from the x2APIC ID must give one package of n cores with 1 thread each. */
static void check_ext_topology(const struct kvm_cpuid2 *c, uint32_t fn, uint32_t idx, uint32_t n)
{
	uint32_t count = 0;
	for (uint32_t i = 0; i < c->nent; i++)
		count += c->entries[i].function == fn;
	assert_int_equal(count, 3);
	for (uint32_t sub = 0; sub < 3; sub++) {
		const struct kvm_cpuid_entry2 *e = get(c, fn, sub);
		assert_int_equal(e->index, sub);
		assert_true(e->flags & SIG);
		assert_int_equal(e->ecx & 0xff, sub);
		assert_int_equal(e->edx, idx);
	}
	const struct kvm_cpuid_entry2 *smt = get(c, fn, 0), *core = get(c, fn, 1), *end = get(c, fn, 2);
	assert_int_equal((smt->ecx >> 8) & 0xff, 1);  /* SMT */
	assert_int_equal(smt->ebx & 0xffff, 1);       /* 1 thread per core */
	assert_int_equal(smt->eax & 0x1f, 0);
	assert_int_equal((core->ecx >> 8) & 0xff, 2); /* core */
	assert_int_equal(core->ebx & 0xffff, n);
	assert_int_equal(core->eax & 0x1f, order(n));
	assert_int_equal((end->ecx >> 8) & 0xff, 0);  /* invalid: the end */
	assert_int_equal(end->eax, 0);
	assert_int_equal(end->ebx, 0);

	uint32_t x2apic_id = smt->edx, shift = core->eax & 0x1f;
	uint32_t package = shift >= 32 ? 0 : x2apic_id >> shift;
	uint32_t core_id = x2apic_id & ((1ULL << shift) - 1);
	assert_int_equal(package, 0);
	assert_int_equal(core_id, idx);
}

/* Every field cpuid_setup owns has its value; everything else is as KVM reported it. */
static void check_setup(enum host host, uint32_t idx, uint32_t n)
{
	struct kvm_cpuid2 *orig = make_table(host);
	struct kvm_cpuid2 *c = dup_table(orig);
	assert_int_equal(cpuid_setup(c, CAPACITY, idx, n), 0);
	assert_true(c->nent <= CAPACITY);

	/* no (function, index) twice */
	for (uint32_t i = 0; i < c->nent; i++)
		for (uint32_t j = i + 1; j < c->nent; j++)
			assert_false(c->entries[i].function == c->entries[j].function &&
			             c->entries[i].index == c->entries[j].index);

	/* leaf 1 */
	const struct kvm_cpuid_entry2 *o = get(orig, 1, 0), *e = get(c, 1, 0);
	assert_int_equal(e->eax, o->eax);
	assert_int_equal(e->ebx >> 24, idx & 0xff);
	assert_int_equal((e->ebx >> 16) & 0xff, n < 255 ? n : 255);
	assert_int_equal(e->ebx & 0xffff, o->ebx & 0xffff);
	assert_int_equal(e->ecx, o->ecx | (1u << 31)); /* hypervisor; nothing cleared */
	assert_int_equal(!!(e->edx & (1u << 28)), n > 1);
	assert_int_equal(e->edx & ~(1u << 28), o->edx & ~(1u << 28));

	/* deterministic cache parameters */
	uint32_t cache_fn = host == AMD ? 0x8000001d : 4;
	for (uint32_t sub = 0; sub < 5; sub++) {
		o = get(orig, cache_fn, sub);
		e = get(c, cache_fn, sub);
		if ((o->eax & 0x1f) == 0) {
			assert_memory_equal(e, o, sizeof(*e)); /* the null subleaf ends the list */
			continue;
		}
		uint32_t level = (o->eax >> 5) & 7;
		assert_int_equal((e->eax >> 14) & 0xfff, level >= 3 ? n - 1 : 0);
		assert_int_equal(e->eax & 0x3fff, o->eax & 0x3fff);
		if (cache_fn == 4) {
			uint32_t pow2 = 1u << order(n);
			assert_int_equal(e->eax >> 26, (pow2 > 64 ? 64 : pow2) - 1);
		} else {
			assert_int_equal(e->eax >> 26, o->eax >> 26);
		}
		assert_int_equal(e->ebx, o->ebx);
		assert_int_equal(e->ecx, o->ecx);
		assert_int_equal(e->edx, o->edx);
	}

	/* extended topology */
	check_ext_topology(c, 0xb, idx, n);
	if (host == INTEL_HOST_TOPOLOGY)
		check_ext_topology(c, 0x1f, idx, n);
	else
		assert_null(cpuid_find(c, 0x1f, 0));

	if (host == AMD) {
		o = get(orig, 0x80000001, 0);
		e = get(c, 0x80000001, 0);
		assert_int_equal(!!(e->ecx & 2), n > 1); /* CmpLegacy */
		assert_int_equal(e->ecx & ~2u, o->ecx & ~2u);
		assert_int_equal(e->edx, o->edx);
		o = get(orig, 0x80000008, 0);
		e = get(c, 0x80000008, 0);
		assert_int_equal(e->eax, o->eax);
		assert_int_equal(e->ebx, o->ebx);
		assert_int_equal(e->ecx & 0xff, (n < 256 ? n : 256) - 1);
		assert_int_equal((e->ecx >> 12) & 0xf, order(n));
		assert_int_equal(e->ecx >> 16, o->ecx >> 16);
		e = get(c, 0x8000001e, 0);
		assert_int_equal(e->eax, idx);            /* extended APIC ID */
		assert_int_equal(e->ebx & 0xff, idx & 0xff); /* core ID */
		assert_int_equal((e->ebx >> 8) & 0xff, 0);  /* threads per core - 1 */
		assert_int_equal(e->ecx & 0x7ff, 0);        /* node 0 of 1 */
	} else {
		/* Intel: no CmpLegacy (Linux would drop the thread information), 0x80000008 kept */
		assert_memory_equal(get(c, 0x80000001, 0), get(orig, 0x80000001, 0),
		                    sizeof(struct kvm_cpuid_entry2));
		assert_memory_equal(get(c, 0x80000008, 0), get(orig, 0x80000008, 0),
		                    sizeof(struct kvm_cpuid_entry2));
		e = get(c, 0xa, 0); /* no architectural PMU */
		assert_int_equal(e->eax | e->ebx | e->ecx | e->edx, 0);
	}

	/* KVM leaves */
	e = get(c, 0x40000000, 0);
	assert_int_equal(e->eax, 0x40000001);
	char sig[12];
	memcpy(sig, &e->ebx, 4);
	memcpy(sig + 4, &e->ecx, 4);
	memcpy(sig + 8, &e->edx, 4);
	assert_memory_equal(sig, "KVMKVMKVM\0\0\0", 12);
	assert_memory_equal(get(c, 0x40000001, 0), get(orig, 0x40000001, 0),
	                    sizeof(struct kvm_cpuid_entry2));

	/* leaves nobody owns are untouched */
	assert_memory_equal(get(c, 7, 0), get(orig, 7, 0), sizeof(struct kvm_cpuid_entry2));
	assert_memory_equal(get(c, 0xd, 0), get(orig, 0xd, 0), sizeof(struct kvm_cpuid_entry2));

	/* editing an edited table again changes nothing */
	struct kvm_cpuid2 *again = dup_table(c);
	assert_int_equal(cpuid_setup(again, CAPACITY, idx, n), 0);
	assert_int_equal(again->nent, c->nent);
	assert_memory_equal(again->entries, c->entries, c->nent * sizeof(c->entries[0]));

	free(again);
	free(c);
	free(orig);
}

static const uint32_t combos[][2] = { /* {cpu_index, ncpus} */
	{0, 1}, {0, 2}, {1, 2}, {0, 4}, {3, 4}, {5, 6}, {0, 64}, {17, 64}, {63, 64},
	{64, 65}, {254, 255}, {255, 256}, {300, 1024}, {1023, 1024},
};

static void run_combos(enum host host)
{
	for (size_t i = 0; i < sizeof(combos) / sizeof(combos[0]); i++) {
		/* printed first, so that a failure below is attributed to its combination */
		print_message("vCPU %u of %u\n", combos[i][0], combos[i][1]);
		check_setup(host, combos[i][0], combos[i][1]);
	}
}

static void test_intel_kvm_like(void **state) { (void)state; run_combos(INTEL_KVM_LIKE); }
static void test_intel_host_topology(void **state) { (void)state; run_combos(INTEL_HOST_TOPOLOGY); }
static void test_amd(void **state) { (void)state; run_combos(AMD); }

static void test_capacity(void **state)
{
	(void)state;
	/* Intel, KVM-like: leaf 0xB grows from 1 entry to 3. */
	struct kvm_cpuid2 *orig = make_table(INTEL_KVM_LIKE);
	struct kvm_cpuid2 *c = dup_table(orig);
	size_t size = sizeof(*c) + CAPACITY * sizeof(c->entries[0]);
	assert_int_equal(cpuid_setup(c, orig->nent + 1, 0, 4), -ENOSPC);
	assert_memory_equal(c, orig, size); /* untouched */
	assert_int_equal(cpuid_setup(c, orig->nent + 2, 0, 4), 0);
	assert_int_equal(c->nent, orig->nent + 2);
	free(c);
	free(orig);

	/* AMD without leaf 0xB and without 0x40000000: 3 + 1 more entries. */
	orig = make_table(AMD);
	for (uint32_t i = 0; i < orig->nent; i++)
		if (orig->entries[i].function == 0x40000000)
			orig->entries[i].function = 0x40000002; /* out of the way */
	c = dup_table(orig);
	assert_int_equal(cpuid_setup(c, orig->nent + 3, 0, 4), -ENOSPC);
	assert_memory_equal(c, orig, size);
	assert_int_equal(cpuid_setup(c, orig->nent + 4, 0, 4), 0);
	assert_int_equal(c->nent, orig->nent + 4);
	assert_non_null(cpuid_find(c, 0x40000000, 0));
	assert_non_null(cpuid_find(c, 0xb, 2));
	free(c);
	free(orig);
}

static void test_invalid(void **state)
{
	(void)state;
	struct kvm_cpuid2 *c = make_table(AMD);
	assert_int_equal(cpuid_setup(c, CAPACITY, 0, 0), -EINVAL);
	assert_int_equal(cpuid_setup(c, CAPACITY, 4, 4), -EINVAL);
	assert_int_equal(cpuid_setup(c, c->nent - 1, 0, 4), -EINVAL); /* nent > capacity */
	assert_int_equal(cpuid_setup(NULL, CAPACITY, 0, 1), -EINVAL);
	free(c);
}

/* An old CPU whose highest basic leaf is below 0xB gets no topology leaves. */
static void test_no_leaf_b(void **state)
{
	(void)state;
	struct kvm_cpuid2 *c = make_table(AMD);
	c->entries[0].eax = 0xa;
	assert_int_equal(cpuid_setup(c, CAPACITY, 1, 2), 0);
	assert_null(cpuid_find(c, 0xb, 0));
	assert_int_equal(get(c, 1, 0)->ebx >> 24, 1);
	free(c);
}

static void test_find(void **state)
{
	(void)state;
	struct kvm_cpuid2 *c = make_table(INTEL_KVM_LIKE);
	/* an index-insensitive leaf matches any index, as the CPU does */
	assert_ptr_equal(cpuid_find(c, 1, 0), cpuid_find(c, 1, 7));
	assert_int_equal(cpuid_find(c, 1, 7)->function, 1);
	/* an indexed leaf matches only its index */
	assert_int_equal(cpuid_find(c, 4, 3)->index, 3);
	assert_int_equal(cpuid_find(c, 4, 3)->eax, 0x1c03c163);
	assert_null(cpuid_find(c, 4, 5));
	assert_null(cpuid_find(c, 0x12345678, 0));
	free(c);
}

/* The TSC-deadline bit is added to leaf 1 and nothing else changes. */
static void test_tsc_deadline(void **state)
{
	(void)state;
	struct kvm_cpuid2 *c = make_table(AMD);
	struct kvm_cpuid2 *orig = make_table(AMD);
	assert_int_equal(get(c, 1, 0)->ecx & (1u << 24), 0);
	cpuid_enable_tsc_deadline(c);
	assert_int_equal(get(c, 1, 0)->ecx, get(orig, 1, 0)->ecx | (1u << 24));
	cpuid_enable_tsc_deadline(orig);
	assert_memory_equal(c, orig, sizeof(*c) + c->nent * sizeof(c->entries[0]));
	free(c);
	free(orig);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_intel_kvm_like),
		cmocka_unit_test(test_intel_host_topology),
		cmocka_unit_test(test_amd),
		cmocka_unit_test(test_capacity),
		cmocka_unit_test(test_invalid),
		cmocka_unit_test(test_no_leaf_b),
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_tsc_deadline),
	};
	return cmocka_run_group_tests_name("cpuid", tests, NULL, NULL);
}
