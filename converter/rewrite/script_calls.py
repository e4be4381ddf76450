"""--to keras: module-level script code that would crash on the rewritten (Keras) model is commented out.

Tutorial files build the model at module level and then drive it with torch's nn.Module API::

    net = Net().to(device)                 ->  net = Net()          (under a TODO: Keras places tensors itself)
    net.apply(weights_init)                ->  # net.apply(weights_init)      (under a TODO)
    optimizer = optim.Adam(net.parameters())  ->  commented out (under a TODO)

Left live, these lines stop the rewritten file from importing. Code under ``if __name__ == "__main__":`` and inside
functions is not run on import and is left as it is.
"""
from __future__ import annotations

import libcst as cst

from converter.rewrite.names import ImportResolver
from converter.rewrite.todo import marker
from rules.cst_walk import names_in

RULE_ID = "torch-script"
#: nn.Module methods a Keras model does not have (``eval``/``train`` included: Keras takes ``training=``).
MODULE_API = frozenset({"to", "cuda", "cpu", "float", "double", "half", "apply", "train", "eval", "parameters",
                        "named_parameters", "state_dict", "load_state_dict", "zero_grad", "requires_grad_",
                        "modules", "children", "share_memory"})
_CHAIN = frozenset({"to", "cuda", "cpu", "float", "double", "half", "train", "eval"})


def neutralize_script_calls(module: cst.Module) -> cst.Module:
    resolver = ImportResolver(module)
    models = _model_classes(module, resolver)
    if not models:
        return module
    instances: set[str] = set()
    out: list[cst.BaseStatement] = []
    pending: list[cst.EmptyLine] = []
    for stmt in module.body:
        new, why = _rewrite(stmt, models, instances, resolver)
        if new is None:  # commented out
            pending += list(getattr(stmt, "leading_lines", ()))
            pending += _comment_lines(stmt, why)
            continue
        if why:
            new = new.with_changes(leading_lines=[*new.leading_lines, cst.EmptyLine(
                comment=cst.Comment(marker(RULE_ID, why)))])
        if pending:
            new = new.with_changes(leading_lines=[*pending, *new.leading_lines])
            pending = []
        out.append(new)
    if pending:
        out.append(cst.SimpleStatementLine([cst.Pass()], leading_lines=pending))
    return module.with_changes(body=out) if out != list(module.body) else module


def _model_classes(module: cst.Module, resolver: ImportResolver) -> set[str]:
    found: set[str] = set()
    for stmt in module.body:
        if isinstance(stmt, cst.ClassDef) and any(
                resolver.resolve(b.value) == "torch.nn.Module" or (isinstance(b.value, cst.Name) and b.value.value in found)
                for b in stmt.bases):
            found.add(stmt.name.value)
    return found


def _is_model_call(node: cst.BaseExpression, models: set[str]) -> bool:
    return isinstance(node, cst.Call) and isinstance(node.func, cst.Name) and node.func.value in models


def _strip_chain(node: cst.BaseExpression, models: set[str]) -> tuple[cst.BaseExpression, list[str]]:
    """``Net(...).to(device).eval()`` -> (``Net(...)``, ["to", "eval"]); anything else unchanged."""
    dropped: list[str] = []
    current = node
    while (isinstance(current, cst.Call) and isinstance(current.func, cst.Attribute)
           and current.func.attr.value in _CHAIN):
        dropped.append(current.func.attr.value)
        current = current.func.value
    return (current, dropped[::-1]) if dropped and _is_model_call(current, models) else (node, [])


def _rewrite(stmt: cst.BaseStatement, models: set[str], instances: set[str],
             resolver: ImportResolver) -> tuple[cst.BaseStatement | None, str]:
    if not isinstance(stmt, cst.SimpleStatementLine) or len(stmt.body) != 1:
        return stmt, ""
    small = stmt.body[0]
    if isinstance(small, cst.Assign) and len(small.targets) == 1 and isinstance(small.targets[0].target, cst.Name):
        name = small.targets[0].target.value
        value, dropped = _strip_chain(small.value, models)
        if _is_model_call(value, models):
            instances.add(name)
            if dropped:
                return stmt.with_changes(body=[small.with_changes(value=value)]), (
                    f"nn.Module call(s) .{'(), .'.join(dropped)}() dropped: Keras places tensors itself and takes "
                    "training= per call")
            return stmt, ""
        if _uses_module_api(small.value, instances, resolver):
            instances.discard(name)
            return None, "uses the nn.Module API of a rewritten model (optimizers, DataParallel, state_dict, ...)"
        return stmt, ""
    if isinstance(small, cst.Expr) and _uses_module_api(small.value, instances, resolver):
        return None, "nn.Module API on a rewritten model: Keras has no such method; write the Keras equivalent by hand"
    return stmt, ""


def _uses_module_api(node: cst.CSTNode, instances: set[str], resolver: ImportResolver) -> bool:
    if not instances or not names_in(node, set()) & instances:
        return False
    found = False

    class _Finder(cst.CSTVisitor):
        def visit_Call(self, call: cst.Call) -> None:
            nonlocal found
            func = call.func
            if isinstance(func, cst.Attribute) and isinstance(func.value, cst.Name) and func.value.value in instances \
                    and func.attr.value in MODULE_API:
                found = True
            qname = resolver.resolve(func) if isinstance(func, (cst.Name, cst.Attribute)) else None
            if qname in ("torch.nn.DataParallel", "torch.nn.parallel.DistributedDataParallel") and any(
                    isinstance(a.value, cst.Name) and a.value.value in instances for a in call.args):
                found = True

    from rules.cst_walk import walk

    walk(node, _Finder())
    return found


def _comment_lines(stmt: cst.BaseStatement, why: str) -> list[cst.EmptyLine]:
    lines = [cst.EmptyLine(comment=cst.Comment(marker(RULE_ID, why)))]
    text = cst.Module(body=[]).code_for_node(stmt.with_changes(leading_lines=[])).rstrip("\n")
    return lines + [cst.EmptyLine(comment=cst.Comment(("# " + ln).rstrip())) for ln in text.splitlines()]
