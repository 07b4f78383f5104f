/* snapshot_fuzz: a libFuzzer target for the snapshot state parser: the stream framing
 * (src/lib/stream.c, built with STREAM_FUZZING so a wrong CRC does not stop an input
 * before the field checks), the configuration section (config.c) and vmstate's loader with the
 * platform devices' loaders (serial, CMOS RTC, i8042, ACPI PM) on real device objects, in the
 * VM of fuzz_vm.c (no KVM: its sections are checked, then refused).
 * Built and run by tests/fuzz/snapshot_run.sh. */
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_vm.h"
#include "migration/config.h"
#include "lib/stream.h"
#include "migration/vmstate.h"
#include "vmm/vm.h"

static struct vm *vm;

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	static struct vm_config cfg; /* no disks, no rng: no virtio device */
	if (!vm)
		vm = fuzz_vm_create(&cfg);
	struct stream s;
	stream_init_mem_reader(&s, data, size);
	uint32_t version;
	struct stream_section sec;
	struct vmstate_loader loader;
	if (vmstate_loader_init(&loader, vm, "fuzz") < 0)
		abort();
	int r = stream_read_header(&s, "KVMKITSS", 1, &version);
	for (int n = 0; r == 0 && n < 64 && stream_next_section(&s, &sec) == 0; n++) {
		if (sec.tag == STREAM_TAG_END)
			break;
		bool handled;
		if (sec.tag == CONFIG_TAG) {
			struct vm_config cfg;
			memset(&cfg, 0, sizeof(cfg));
			r = config_load(&cfg, &s, sec.version);
			config_release(&cfg);
		} else if ((r = vmstate_load_section(&loader, &sec, &s, &handled)) == 0 && !handled) {
			stream_skip_rest(&s); /* RAM and the unknown */
			r = stream_end_read(&s);
		}
	}
	vmstate_loader_finish(&loader, r == 0);
	stream_close(&s);
	return 0;
}
