# Sourced by the golden tests (tests/img/golden/NNN) and by tests/img/repair.sh: commands that
# print a tool's output deterministically, and q2poke, which damages qcow2 metadata on purpose.
# Needs $KVMKIT_IMG (the binary); runs in the current (scratch) directory.

# The scratch directory, disk usage and timestamps vary from run to run: replaced by placeholders.
golden_filter() {
	sed -e "s|$PWD|SCRATCH|g" -E \
	    -e 's/^(disk size:).*/\1 DISK_SIZE/' \
	    -e 's/("actual-size": )[0-9]+/\1ACTUAL_SIZE/'
}

# run NAME CMD...: prints "$ NAME ARGS", the command's stdout, its stderr (each line prefixed
# with "stderr: ", after stdout, so the interleaving of the two cannot vary) and its exit code.
run() {
	local name=$1
	shift
	echo "\$ $name ${*:2}"
	"$@" >.run.out 2>.run.err
	local rc=$?
	golden_filter <.run.out
	golden_filter <.run.err | sed 's/^/stderr: /'
	echo "[exit $rc]"
	rm -f .run.out .run.err
}
ki() { run kvmkit-img "$KVMKIT_IMG" "$@"; }
qi() { run qemu-img qemu-img "$@"; }
# qemu-io to set up contents: silent unless it fails.
qio() { qemu-io "$@" >/dev/null || echo "qemu-io $* failed"; }

# q2poke FILE WHAT ARGS: damages a qcow2 image (16-bit refcounts).
#   rc CLUSTER VALUE        sets the stored refcount of a host cluster
#   l2copied GUEST_OFFSET   clears COPIED in the L2 entry of a guest offset
#   l1copied GUEST_OFFSET   clears COPIED in the L1 entry covering a guest offset
#   l1set GUEST_OFFSET V    sets that L1 entry to V
#   dirty                   sets the dirty bit (incompatible feature bit 0)
#   l2get GUEST_OFFSET      prints the L2 entry (hex)
q2poke() {
	python3 - "$@" <<'PY'
import struct, sys
what, path, args = sys.argv[2], sys.argv[1], [int(x, 0) for x in sys.argv[3:]]
f = open(path, "r+b")
def rd(off, n):
    f.seek(off); return f.read(n)
def wr(off, b):
    f.seek(off); f.write(b)
def be64(off): return struct.unpack(">Q", rd(off, 8))[0]
h = rd(0, 104)
cs = 1 << struct.unpack(">I", h[20:24])[0]
l1, rt = struct.unpack(">Q", h[40:48])[0], struct.unpack(">Q", h[48:56])[0]
per = cs // 8
def l1_loc(g): return l1 + g // (cs * per) * 8
def l2_loc(g): return (be64(l1_loc(g)) & 0x00fffffffffffe00) + (g // cs) % per * 8
if what == "rc":
    rb = be64(rt + args[0] // (cs * 8 // 16) * 8)
    wr(rb + args[0] % (cs * 8 // 16) * 2, struct.pack(">H", args[1]))
elif what == "l2copied":
    wr(l2_loc(args[0]), struct.pack(">Q", be64(l2_loc(args[0])) & ~(1 << 63)))
elif what == "l1copied":
    wr(l1_loc(args[0]), struct.pack(">Q", be64(l1_loc(args[0])) & ~(1 << 63)))
elif what == "l1set":
    wr(l1_loc(args[0]), struct.pack(">Q", args[1]))
elif what == "dirty":
    wr(72, struct.pack(">Q", be64(72) | 1))
elif what == "l2get":
    print(hex(be64(l2_loc(args[0]))))
else:
    sys.exit("q2poke: unknown action " + what)
PY
}

# The header's incompatible feature bits, in hex.
q2incompat() { python3 -c 'import struct,sys; print(hex(struct.unpack(">Q", open(sys.argv[1],"rb").read(80)[72:80])[0]))' "$1"; }
