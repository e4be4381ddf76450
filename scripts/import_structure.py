"""Import structure of ``converter`` and ``rules``: module-level circles, package-level circles, arrows that run
back up (into the CLI, out of ``rules``, out of the upstream adapters), and modules over 400 lines.

Every ``import`` counts, including those inside functions (they are deferred for start-up time, not for
structure). Run: ``python scripts/import_structure.py [root]``.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

PACKAGES = ("converter", "rules")
ADAPTERS = ("converter.adapters", "converter.routes")  # upstream-tool adapters (old and new name)
ADAPTER_MAY_USE = ("converter.errors", "converter.layout", "converter.frameworks", "converter.memory",
                   "converter.formats", "converter.to_torch.modules", "converter.torch_runtime.modules")


def modules(root: Path) -> dict[str, Path]:
    found = {}
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join(parts)] = path
    return found


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text())
    out: set[str] = set()
    is_pkg = path.name == "__init__.py"
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                out.add(t)
    return out


def sccs(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of size > 1."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    result: list[list[str]] = []
    counter = [0]
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                result.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(result)


def package_of(mod: str) -> str:
    parts = mod.split(".")
    return ".".join(parts[:2]) if parts[0] == "converter" and len(parts) > 1 else parts[0]


def main(root: Path) -> None:
    known = modules(root)
    graph = {m: imports(m, p, known) for m, p in known.items()}
    # a package's __init__ re-exporting its own submodules is not a circle worth counting
    graph = {m: {t for t in ts if not (m in known and known[m].name == "__init__.py" and t.startswith(m + "."))}
             for m, ts in graph.items()}
    circles = sccs(graph)
    print(f"modules: {len(known)}; import arrows: {sum(len(v) for v in graph.values())}")
    print(f"module-level import circles: {len(circles)}")
    for c in circles:
        print(f"  ({len(c)}) " + " <-> ".join(c))
    pgraph: dict[str, set[str]] = {}
    for m, ts in graph.items():
        pm = package_of(m)
        pgraph.setdefault(pm, set()).update(package_of(t) for t in ts if package_of(t) != pm)
    pcircles = sccs(pgraph)
    print(f"package-level circles: {len(pcircles)}")
    for c in pcircles:
        print(f"  ({len(c)}) " + " <-> ".join(c))
    back = []
    for m, ts in sorted(graph.items()):
        for t in sorted(ts):
            if t.startswith("converter.cli") and not m.startswith("converter.cli") and m != "converter":
                back.append(f"{m} -> {t}  (into the CLI)")
            elif m.startswith("rules") and t.startswith("converter"):
                back.append(f"{m} -> {t}  (rules is the ground floor)")
            elif m.startswith(ADAPTERS) and not t.startswith((*ADAPTERS, *ADAPTER_MAY_USE)):
                back.append(f"{m} -> {t}  (adapter reaches up)")
    print(f"arrows that run back up: {len(back)}")
    for b in back:
        print(f"  {b}")
    big = sorted(((len(p.read_text().splitlines()), m) for m, p in known.items()), reverse=True)
    over = [(n, m) for n, m in big if n > 400]
    print(f"modules over 400 lines: {len(over)}")
    for n, m in over:
        print(f"  {n:5d} {m}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parents[1])
