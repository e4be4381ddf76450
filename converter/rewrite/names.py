"""Fast qualified-name resolution from module-level imports, with a shadowing check.

libcst's QualifiedNameProvider builds full scopes: exact, but ~2 s on a 2,000-line file. Model files almost
always bind ``torch``/``nn``/``F`` once at the top and never rebind them; then resolving a dotted name by its
root alias gives the same answer. ``ShadowWatch`` notices any construct where that could be wrong (an alias
rebound by an assignment, parameter, loop, def/class, a nested or star import) and the engine then reruns the
module with QualifiedNameProvider.
"""
from __future__ import annotations

import libcst as cst


def dotted(node: cst.BaseExpression) -> str:
    return cst.Module(body=[]).code_for_node(node)


class ImportResolver:
    """Maps names bound by top-level ``import``/``from ... import`` statements to qualified names."""

    def __init__(self, module: cst.Module) -> None:
        self.aliases: dict[str, str] = {}
        self.top_level_imports: set[int] = set()
        self.import_asnames: set[int] = set()
        for stmt in module.body:
            if not isinstance(stmt, cst.SimpleStatementLine):
                continue
            for small in stmt.body:
                if isinstance(small, cst.Import):
                    self.top_level_imports.add(id(small))
                    self.import_asnames.update(id(a.asname) for a in small.names if a.asname is not None)
                    for alias in small.names:
                        name = dotted(alias.name)
                        if alias.asname is not None and isinstance(alias.asname.name, cst.Name):
                            self.aliases[alias.asname.name.value] = name
                        else:
                            root = name.split(".")[0]
                            self.aliases[root] = root
                elif isinstance(small, cst.ImportFrom):
                    self.top_level_imports.add(id(small))
                    if not isinstance(small.names, cst.ImportStar):
                        self.import_asnames.update(id(a.asname) for a in small.names if a.asname is not None)
                    if small.relative or small.module is None or isinstance(small.names, cst.ImportStar):
                        continue
                    base = dotted(small.module)
                    for alias in small.names:
                        local = alias.asname.name.value if alias.asname is not None and isinstance(
                            alias.asname.name, cst.Name) else dotted(alias.name)
                        self.aliases[local] = f"{base}.{dotted(alias.name)}"

    def resolve(self, node: cst.CSTNode) -> str | None:
        parts: list[str] = []
        current = node
        while isinstance(current, cst.Attribute):
            parts.append(current.attr.value)
            current = current.value
        if isinstance(current, cst.Name):
            base = self.aliases.get(current.value)
            if base is not None:
                return ".".join([base, *reversed(parts)])
        return None


def _target_names(node: cst.CSTNode | None) -> list[str]:
    if isinstance(node, cst.Name):
        return [node.value]
    if isinstance(node, (cst.Tuple, cst.List)):
        return [n for el in node.elements for n in _target_names(el.value)]
    if isinstance(node, cst.StarredElement):
        return _target_names(node.value)
    return []


_BINDING = (cst.Param, cst.FunctionDef, cst.ClassDef, cst.AssignTarget, cst.AnnAssign, cst.AugAssign, cst.For,
            cst.CompFor, cst.NamedExpr, cst.AsName, cst.Global, cst.Nonlocal, cst.ImportStar, cst.Import, cst.ImportFrom)
_BINDS: dict[type, bool] = {}


def _binds(node_type: type) -> bool:
    """Whether ``ShadowWatch.check`` looks at nodes of this class; answered once per class because ``check`` runs
    on every node and the ``isinstance`` chain over libcst's ABC node classes is slow."""
    found = _BINDS.get(node_type)
    if found is None:
        found = _BINDS[node_type] = issubclass(node_type, _BINDING)
    return found


class ShadowWatch:
    """Called for every visited node; ``shadowed`` turns True if the fast resolver could be wrong."""

    def __init__(self, resolver: ImportResolver) -> None:
        self.resolver = resolver
        self.names = set(resolver.aliases)
        self.shadowed = False
        self.reason = ""

    def _flag(self, names: list[str], why: str) -> None:
        hit = [n for n in names if n in self.names]
        if hit:
            self.shadowed = True
            self.reason = f"{why} rebinds {hit[0]!r}"

    def check(self, node: cst.CSTNode) -> None:
        if self.shadowed or not _binds(type(node)):
            return
        if isinstance(node, cst.Param):
            self._flag([node.name.value], "a parameter")
        elif isinstance(node, (cst.FunctionDef, cst.ClassDef)):
            self._flag([node.name.value], "a def/class")
        elif isinstance(node, (cst.AssignTarget, cst.AnnAssign, cst.AugAssign, cst.For, cst.CompFor, cst.NamedExpr)):
            self._flag(_target_names(node.target), "an assignment")
        elif isinstance(node, cst.AsName) and id(node) not in self.resolver.import_asnames:
            self._flag(_target_names(node.name), "an 'as' name")
        elif isinstance(node, (cst.Global, cst.Nonlocal)):
            self._flag([n.name.value for n in node.names], "a global/nonlocal")
        elif isinstance(node, cst.ImportStar):
            self.shadowed, self.reason = True, "a star import"
        elif isinstance(node, (cst.Import, cst.ImportFrom)) and id(node) not in self.resolver.top_level_imports:
            self.shadowed, self.reason = True, "an import below module level"
