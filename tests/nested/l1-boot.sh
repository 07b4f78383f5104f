# Helpers sourced by payload scripts inside L1 (busybox sh): run one VMM boot with timing, RSS and exit counts.
# (No shebang/set -e: it is sourced by busybox sh scripts; see l1_boot below.)

# l1_now: L1's uptime in seconds (10 ms resolution), the clock every timing in here uses.
l1_now() { read -r _n _ < /proc/uptime; echo "$_n"; }

# l1_exits: VM exits of the VMs alive now (KVM's debugfs sums its per-VM counters over live VMs only:
# a VM's counts vanish when it is destroyed, so they are sampled while it runs).
l1_exits() {
    if [ -r /sys/kernel/debug/kvm/exits ]; then cat /sys/kernel/debug/kvm/exits; else echo na; fi
}

# l1_exit_kinds: "io=N,mmio=N,..." from KVM's debugfs counters (live VMs), or "na".
l1_exit_kinds() {
    _o=
    for _k in io_exits mmio_exits halt_exits irq_exits irq_window_exits request_irq_exits signal_exits \
              pf_taken insn_emulation hypercalls; do
        [ -r "/sys/kernel/debug/kvm/$_k" ] || continue
        read -r _v < "/sys/kernel/debug/kvm/$_k"
        _o="$_o${_o:+,}${_k%_exits}=$_v"
    done
    echo "${_o:-na}"
}

# l1_boot NAME TIMEOUT_S CMD ARGS...
# Runs CMD (the VMM) with stdin from /dev/null, its output (the L2 console) going through a stamper.
# The VMM is stopped (timeout=1) after TIMEOUT_S, or L1_DONE_GRACE s (default 15) after the guest's
# L2-DONE line (it is about to power off: a VMM still running then missed the power-off): SIGTERM
# first (kvmkit with KVMKIT_DEBUG set then prints its vCPUs' registers), SIGKILL 3 s later.
# Writes /tmp/boot-NAME.log: every output line as "<L1 uptime> <line>", and prints
#   L2|NAME| <line>               for every line as it comes (so a log cut short by a hung L1
#                                 still shows how far the guest got)
#   BOOT-RESULT name=NAME rc=<status> timeout=<0|1> wall=<s> init_wall=<s|na> hwm_kb=<kB>
#               exits_init=<n|na> exits_last=<n|na> rss_init_kb=<kB|na> guest_ram_rss_init_kb=<kB|na>
#               exit_kinds_init=<io=N,mmio=N,halt=N,...|na> poll=<s>
# wall: VMM start to exit (its output closing); init_wall: VMM start to the L2-INIT-REACHED line; hwm_kb: last VmHWM seen
# (polled every L1_POLL seconds, default 0.2); exits_init: exits when L2-INIT-REACHED was read;
# exits_last: the last sample before the VM went away; rss_init_kb: VmRSS when L2-INIT-REACHED was
# read, guest_ram_rss_init_kb: the Rss of the VMM's largest mapping (its guest RAM) then;
# exit_kinds_init: some of KVM's per-reason counters then (insn_emulation: instructions KVM emulated).
l1_boot() {
    _name=$1 _tmo=$2
    shift 2
    _d=/tmp/boot-$_name.d
    rm -rf "$_d"; mkdir -p "$_d"
    mkfifo "$_d/fifo"
    _poll=${L1_POLL:-0.2}
    exec 3>&1
    (
        while IFS= read -r _line || [ -n "$_line" ]; do
            read -r _t _ < /proc/uptime
            printf '%s %s\n' "$_t" "$_line"
            printf 'L2|%s| %s\n' "$_name" "$_line" >&3
            case "$_line" in
            *L2-INIT-REACHED*)
                if [ ! -f "$_d/init_t" ]; then
                    echo "$_t" > "$_d/init_t"
                    l1_exits > "$_d/init_exits"
                    l1_exit_kinds > "$_d/init_kinds"
                    read -r _p < "$_d/pid"
                    cat "/proc/$_p/smaps" > "$_d/smaps_init" 2>/dev/null
                    cat "/proc/$_p/status" > "$_d/status_init" 2>/dev/null
                fi ;;
            *L2-DONE*)
                [ -f "$_d/done_t" ] || echo "$_t" > "$_d/done_t" ;;
            esac
            _line=
        done < "$_d/fifo" > "/tmp/boot-$_name.log"
        read -r _t _ < /proc/uptime
        echo "$_t" > "$_d/eof_t"
    ) &
    _spid=$!
    _t0=$(l1_now)
    "$@" < /dev/null > "$_d/fifo" 2>&1 &
    _pid=$!
    echo "$_pid" > "$_d/pid"
    _hwm=0 _ex=na _to=0 _dl='' _grace=${L1_DONE_GRACE:-15}
    while kill -0 "$_pid" 2>/dev/null; do
        while read -r _k _v _; do
            [ "$_k" = "VmHWM:" ] && _hwm=$_v
        done < "/proc/$_pid/status" 2>/dev/null
        _e=$(l1_exits)
        [ "$_e" != na ] && [ "$_e" != 0 ] && _ex=$_e
        _now=$(l1_now)
        if [ -z "$_dl" ] && [ -f "$_d/done_t" ]; then
            read -r _dl < "$_d/done_t"
            _dl=$((${_dl%.*} + _grace))
        fi
        if [ $((${_now%.*} - ${_t0%.*})) -ge "$_tmo" ] || { [ -n "$_dl" ] && [ "${_now%.*}" -ge "$_dl" ]; }; then
            _to=1
            kill -TERM "$_pid" 2>/dev/null
            _k=0
            while kill -0 "$_pid" 2>/dev/null && [ $_k -lt 15 ]; do sleep 0.2; _k=$((_k + 1)); done
            kill -9 "$_pid" 2>/dev/null
            break
        fi
        sleep "$_poll"
    done
    _rc=0
    wait "$_pid" || _rc=$?
    _t1=$(l1_now)
    wait "$_spid" 2>/dev/null
    # The VMM's end: when its output closed (exact), else when the poll loop saw it gone (+ poll).
    [ "$_to" = 0 ] && [ -f "$_d/eof_t" ] && read -r _t1 < "$_d/eof_t"
    _iw=na _ie=na
    [ -f "$_d/init_t" ] && _iw=$(awk -v a="$_t0" -v b="$(cat "$_d/init_t")" 'BEGIN { printf "%.2f", b - a }')
    [ -f "$_d/init_exits" ] && _ie=$(cat "$_d/init_exits")
    _ik=na
    [ -f "$_d/init_kinds" ] && _ik=$(cat "$_d/init_kinds")
    # RSS at init, and the Rss of the largest mapping (the guest's RAM) at that moment.
    _ri=na _gr=na
    if [ -s "$_d/status_init" ]; then
        _ri=$(awk '$1 == "VmRSS:" { print $2 }' "$_d/status_init")
        _gr=$(awk '/^[0-9a-f]+-[0-9a-f]+ / { m = 1; next }
                   m && $1 == "Size:" { sz = $2 }
                   m && $1 == "Rss:" { if (sz > best) { best = sz; rss = $2 } }
                   END { print (best > 0) ? rss : "na" }' "$_d/smaps_init")
    fi
    exec 3>&-
    echo "BOOT-RESULT name=$_name rc=$_rc timeout=$_to wall=$(awk -v a="$_t0" -v b="$_t1" 'BEGIN { printf "%.2f", b - a }') init_wall=$_iw hwm_kb=$_hwm exits_init=$_ie exits_last=$_ex rss_init_kb=$_ri guest_ram_rss_init_kb=$_gr exit_kinds_init=$_ik poll=$_poll"
    return 0
}
