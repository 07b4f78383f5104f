#!/usr/bin/env python3
"""Include graph of src/: reports dependency cycles between the device code (src/hw, src/virtio)
and the VM core (src/vmm/vm.c, vm.h), and every other cycle between modules for information.

A module is a .c/.h pair (src/vmm/vm = vm.c + vm.h). A file that includes a header depends on
that header's module; a header without a .c of its own name also depends on every .c file of its
directory that includes it (the call graph: net/net.h is implemented by net/backend.c, slirp.c
and tap.c). Exit status 1
if the device code and the VM core are in one cycle, else 0.
Usage: scripts/include_cycles.py [SRC_DIR]"""
import os
import re
import sys

INCLUDE = re.compile(r'^\s*#\s*include\s+"([^"]+)"', re.M)


def modules(src):
    """{module: set of modules it depends on} for every file under src."""
    files = {}
    for root, _, names in os.walk(src):
        for name in names:
            if name.endswith(('.c', '.h')):
                path = os.path.join(root, name)
                with open(path, encoding='utf-8', errors='replace') as f:
                    files[os.path.relpath(path, src)] = INCLUDE.findall(f.read())
    deps = {}
    for path, includes in files.items():
        mod = os.path.splitext(path)[0]
        deps.setdefault(mod, set())
        for inc in includes:
            if inc not in files:
                continue  # a header of a test or a generated one: not a module of src/
            target = os.path.splitext(inc)[0]
            if target == mod:
                continue
            deps[mod].add(target)
            # A header without a .c of its name (net/net.h, hw/devices.h) is implemented
            # (called into) by the .c files of its directory that include it.
            if (path.endswith('.c') and os.path.dirname(path) == os.path.dirname(inc) and
                    target + '.c' not in files):
                deps.setdefault(target, set()).add(mod)
    return deps


def cycles(deps):
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = [0]
    for start in deps:
        if start in index:
            continue
        work = [(start, iter(sorted(deps.get(start, ()))))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, it = work[-1]
            advanced = False
            for nxt in it:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(deps.get(nxt, ())))))
                    advanced = True
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            if advanced:
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def main():
    src = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), '..', 'src')
    deps = modules(src)
    core = 'vmm/vm'
    bad = False
    for comp in cycles(deps):
        devices = [m for m in comp if m.startswith(('hw/', 'virtio/'))]
        if core in comp and devices:
            bad = True
            print(f'CYCLE between the VM core and device code: {" ".join(comp)}')
        elif len({m.split('/')[0] for m in comp}) > 1:  # within one directory: its own affair
            print(f'cycle (not between devices and the VM core): {" ".join(comp)}')
    ndev = sum(1 for m in deps if m.startswith(('hw/', 'virtio/')))
    if bad:
        print('include_cycles: the device code and the VM core (vmm/vm) depend on each other')
        print('0 passed, 1 failed')
        return 1
    print(f'include_cycles: no cycle between the VM core (vmm/vm) and the {ndev} device '
          'modules of hw/ and virtio/')
    print('1 passed, 0 failed')
    return 0


if __name__ == '__main__':
    sys.exit(main())
