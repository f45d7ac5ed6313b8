"""The static archive's symbols, read with nm: every global symbol it defines carries the
asink_ prefix (so libattnsink.a links beside llm.c-style code with layernorm_forward and
friends), and the files of each module call each other in no circle (lib/model: weights <-
pass <- slices <- model; lib/attn: attn <- blocked <- plan, rows).

    test_symbols.py LIBATTNSINK.a
"""
import collections
import re
import subprocess
import sys


def members(archive):
    """{member object: (defined globals, undefined symbols)} from nm."""
    out = subprocess.run(["nm", "-A", "-g", archive], check=True, capture_output=True,
                         text=True).stdout
    defs, uses = collections.defaultdict(set), collections.defaultdict(set)
    for line in out.splitlines():
        m = re.match(r"^.*:([^:/]+\.o):\s*[0-9a-fA-F]*\s+(\w)\s+(\S+)$", line)
        if not m:
            continue
        obj, kind, sym = m.groups()
        (uses if kind == "U" else defs)[obj].add(sym)
    return {o: (defs[o], uses[o]) for o in set(defs) | set(uses)}


def module_of(obj):
    """lib_model_pass.c.o -> ('model', 'pass.c'); ISA objects -> ('kernels', ...)."""
    name = obj[:-2] if obj.endswith(".o") else obj
    parts = name.split("_", 2)
    if parts[0] == "lib" and len(parts) == 3:
        return parts[1], parts[2]
    return "kernels", name


def cycle(graph):
    """One cycle of a directed graph {node: set(node)} as a list, or None."""
    state = {}

    def visit(n, path):
        state[n] = 1
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return path[path.index(m):] + [m]
            if m not in state:
                found = visit(m, path + [m])
                if found:
                    return found
        state[n] = 2
        return None

    for n in sorted(graph):
        if n not in state:
            found = visit(n, [n])
            if found:
                return found
    return None


def main():
    table = members(sys.argv[1])
    failures = 0
    unprefixed = sorted((s, o) for o, (d, _) in table.items() for s in d
                        if not s.startswith("asink_"))
    for sym, obj in unprefixed:
        print("global symbol without the asink_ prefix: %s (in %s)" % (sym, obj))
    failures += len(unprefixed)
    print("%d global symbols, %d without the prefix" %
          (sum(len(d) for d, _ in table.values()), len(unprefixed)))

    owner = {s: o for o, (d, _) in table.items() for s in d}
    by_module = collections.defaultdict(dict)
    for obj, (_, used) in table.items():
        mod, f = module_of(obj)
        deps = {module_of(owner[s])[1] for s in used
                if s in owner and owner[s] != obj and module_of(owner[s])[0] == mod}
        by_module[mod][f] = deps
    for mod in sorted(by_module):
        c = cycle(by_module[mod])
        if c:
            print("lib/%s: files call each other in a circle: %s" % (mod, " -> ".join(c)))
            failures += 1
        else:
            print("lib/%s: no circle among %d files" % (mod, len(by_module[mod])))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
