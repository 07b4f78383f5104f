# PASS/FAIL bookkeeping shared by the tier B test scripts (sourced by bash).
# --known-bug CHECK=WHY: a check that fails because of a bug recorded in an open issue is still
# run and reported, as XFAIL with the reason; should it pass, it counts as a pass and says so.
passed=0 failed=0 xfailed=0
known_bug_check=${known_bug_check:-} known_bug_why=${known_bug_why:-}
pass() {
    if [[ -n "$known_bug_check" && "${1#*/}" == "$known_bug_check" ]]; then
        echo "PASS $1 (marked as a known bug, but it passed: drop --known-bug)"
    else
        echo "PASS $1"
    fi
    passed=$((passed + 1))
}
fail() {
    if [[ -n "$known_bug_check" && "${1#*/}" == "$known_bug_check" ]]; then
        echo "XFAIL $1 ($2; known bug: $known_bug_why)"
        xfailed=$((xfailed + 1))
        return
    fi
    echo "FAIL $1 ($2)"
    failed=$((failed + 1))
}
# check NAME CONDITION-STATUS WHY: pass when the status is 0.
check() { if [[ "$2" == 0 ]]; then pass "$1"; else fail "$1" "$3"; fi; }
# field KEY LINE: the value of KEY=value in a BOOT-RESULT line.
field() { sed -n "s/.* $1=\([^ ]*\).*/\1/p" <<< "$2"; }
# report_tails L2_LINES L1_LOG: after a failure, the guest's last console lines and the last
# kernel messages of L1 itself (a soft lockup or RCU stall there means the nested host, not the
# VMM, stopped).
report_tails() {
    echo "  last L2 console lines:"
    tail -n 30 <<< "$1" | sed 's/^/  L2| /'
    local k
    k=$(grep -v '^L2|' <<< "$2" | grep '^\[ *[0-9.]*\]' | tail -n 15 || true)
    [[ -z "$k" ]] || { echo "  last L1 kernel messages:"; sed 's/^/  L1| /' <<< "$k"; }
}
# report_end [L1_LOG]: the summary line; the script's exit status. A failed run whose L1 log shows
# an L2 guest's triple fault says so on a line of its own (the tails printed above may have cut
# it): scripts/test.sh runs such a stage once more (the open intermittent fault, issue 9's note).
report_end() {
    [[ $xfailed -eq 0 ]] || echo "$xfailed check(s) XFAIL: known bug, see above"
    if [[ $failed -ne 0 ]] && grep -q 'the guest triple-faulted' <<< "${1:-}"; then
        # The evidence (KVMKIT_DEBUG: every vCPU's registers and last exits) in full, since the
        # L1 log stays on the machine that ran the test.
        echo "  the triple fault and what kvmkit printed after it:"
        sed -n '/the guest triple-faulted/,$p' <<< "$1" | grep -v '^BOOT-\|^L1-' | head -n 200 | sed 's/^/  | /'
        echo "TIER-B-TRIPLE-FAULT: an L2 guest triple-faulted in this run (the whole L1 log shows where)"
    fi
    echo "$passed passed, $failed failed"
    [[ $failed -eq 0 ]]
}
