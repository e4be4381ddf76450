"""Apply rules to one module: parse with libcst, resolve names once, run every rule in one traversal.

The runner is a ``VisitorBasedCodemodCommand``; rules ask for imports through libcst's ``AddImportsVisitor`` /
``RemoveImportsVisitor`` (run on the import header, see ``imports.py``). It keeps the scope facts rules need
(which class, which method, whether dims are remapped) and attaches TODO comments to the innermost statement.

Name resolution: libcst's ``QualifiedNameProvider`` (full scope analysis) costs ~2 s on a 2,000-line file, so
by default names are resolved from the module's import table and ``ShadowWatch`` checks, during the same pass,
that no imported name is rebound; if one is, the module is rewritten again with ``QualifiedNameProvider``. A
test asserts both paths give identical output on every fixture and rule example.

Speed (issue 8: a 2,000-line file well under 2 s): the traversal (``traverse.transform``) rebuilds only nodes whose
children changed and steps over whitespace/punctuation subtrees no handler is about; handlers are looked up per
node type once (``dispatch.HandlerTable``), call rules by the callee's qualified name; read-only passes use
``rules.cst_walk.walk``, which does not rebuild the tree as libcst's ``visit`` does.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import replace
from typing import Callable, Mapping, Sequence

import libcst as cst
from libcst.codemod import Codemod, CodemodContext, VisitorBasedCodemodCommand
from libcst.codemod.visitors import AddImportsVisitor, RemoveImportsVisitor
from libcst.metadata import QualifiedNameProvider

from converter.rewrite import todo as todo_marks
from converter.rewrite.imports import apply_import_changes
from converter.rewrite.dispatch import HandlerTable
from converter.rewrite.names import ImportResolver, ShadowWatch
from converter.rewrite.node_kinds import CLASS, FUNCTION, STATEMENT, node_kind
from converter.rewrite.traverse import transform
from converter.rewrite.analysis import analyse
from converter.rewrite.keras_analysis import analyse_keras, canonical_keras
from converter.rewrite.errors import SourceSyntaxError
from converter.rewrite.hoist import hoist_module_models
from converter.rewrite.layout_groups import channels_first_defs
from converter.rewrite.script_calls import neutralize_script_calls
from converter.rewrite.torch_trace import call_key
from converter.rewrite.options import RewriteOptions, RewriteResult
from rules.base import Rule
from rules.model_facts import Analysis, ClassInfo
from rules.traced import TracedCall
from rules.cst_walk import names_in, skippable


_EMPTY = cst.Module(body=[])


class RuleRunner(VisitorBasedCodemodCommand):
    """Runs a batch of rules over a module in a single pass (Fixit-style batching: one traversal, not one per rule)."""

    METADATA_DEPENDENCIES = (QualifiedNameProvider,)

    def __init__(self, context: CodemodContext, rule_classes: Sequence[type[Rule]], layout: str,
                 precise: bool = False, to: str = "keras", facts: Mapping[str, object] | None = None,
                 hoisted: Mapping[str, str] | None = None, class_layouts: Mapping[str, str] | None = None) -> None:
        super().__init__(context)
        #: --to torch: builder functions made from module-level models -> the model's variable name.
        self.hoisted = dict(hoisted or {})
        self.default_layout = layout
        #: --to keras, layout chosen per group of classes: top-level class/function name -> its layout.
        self.class_layouts = dict(class_layouts or {})
        self._defs: list[str] = []
        #: --to keras with traced shapes (``torch_trace``): original Call node id -> its structural key.
        self._tracing = to == "keras" and any("|" in k for k in (facts or {}))
        self._call_keys: dict[int, str] = {}
        self._call_counts: Counter[tuple[str, str]] = Counter()
        #: the target framework: "keras" rewrites torch sources, "torch" rewrites Keras sources.
        self.to = to
        self.facts = dict(facts or {})
        #: precise: libcst's QualifiedNameProvider; else ImportResolver, valid while ShadowWatch stays quiet.
        self.precise = precise
        self._resolver: ImportResolver | None = None
        self.watch: ShadowWatch | None = None
        self.analysis: Analysis = Analysis()
        self.rules = [cls(self) for cls in rule_classes]
        self.applied: Counter[str] = Counter()
        self._handlers = HandlerTable(self.rules)
        self._classes: list[ClassInfo | None] = []
        self._functions: list[str] = []
        self._statements: list[list[str]] = []
        self._words: dict[int, tuple[cst.CSTNode, frozenset[str]]] = {}

    # -- the RuleContext protocol -------------------------------------------------------------------------
    @property
    def layout(self) -> str:
        """The layout of the code being rewritten: its top-level class's (or function's) own, else the file's."""
        if self._defs and self._defs[0] in self.class_layouts:
            return self.class_layouts[self._defs[0]]
        return self.default_layout

    def qualified_name(self, node: cst.CSTNode) -> str | None:
        if self._resolver is not None:
            found = self._resolver.resolve(node)
        else:
            names = self.get_metadata(QualifiedNameProvider, node, None)
            if not names:
                return None
            ordered = sorted(q.name for q in names)
            found = next((n for n in ordered if n.startswith(("torch", "keras", "tensorflow"))), ordered[0])
        return canonical_keras(found) if self.to == "torch" and found else found

    def current_class(self) -> ClassInfo | None:
        return self._classes[-1] if self._classes else None

    def current_model(self) -> ClassInfo | None:
        """The enclosing model class, or (--to torch) the builder function being turned into one."""
        if self._classes:
            return self._classes[-1]
        if self._functions and self._functions[0] in self.analysis.builders:
            return self.analysis.classes.get(self._functions[0])
        return None

    def current_function(self) -> str | None:
        return self._functions[-1] if self._functions else None

    def in_model_scope(self) -> bool:
        if self._classes:
            return self._classes[-1] is not None
        return bool(self._functions) and self._functions[0] in self.analysis.builders

    def in_tensor_code(self) -> bool:
        if self.to == "torch" and not self._classes and self._functions:
            return self._functions[0] in self.analysis.functional  # a functional-API builder: tensors flow there
        return bool(self._classes) and self._classes[-1] is not None and bool(self._functions) and (
            self._functions[-1] != "__init__"
        )

    def remaps_dims(self) -> bool:
        info = self.current_class()
        return self.layout == "channels_last" and info is not None and info.spatial

    def todo(self, rule_id: str, why: str) -> None:
        if self._statements:
            self._statements[-1].append(todo_marks.marker(rule_id, why))

    def statement_words(self, node: cst.CSTNode) -> frozenset[str]:
        """Every identifier in ``node`` (names and attribute names), computed once per node: statement-level rules
        test membership first and only walk the statement when a word they care about is present."""
        cached = self._words.get(id(node))
        if cached is None or cached[0] is not node:
            cached = (node, frozenset(names_in(node, set())))
            self._words = {id(node): cached}
        return cached[1]

    def statement_has_todo(self) -> bool:
        return bool(self._statements) and any(m.startswith(todo_marks.MARKER) for m in self._statements[-1])

    def keep_comments(self, comments: list[str]) -> None:
        if self._statements:
            self._statements[-1].extend(comments)

    def add_import(self, module: str, asname: str | None = None) -> None:
        AddImportsVisitor.add_needed_import(self.context, module, asname=asname)

    def facts_for(self, node: cst.CSTNode, what: str = "") -> object | None:
        """The recorded Keras input shape (or ``what``: another recorded fact, e.g. ``"#heads"``) of the layer built
        by the original call ``node``; None without facts."""
        key = self.analysis.sites.get(id(node))
        return None if key is None else self.facts.get(key + what)

    def traced(self, node: cst.CSTNode) -> TracedCall | None:
        """What the torch run (``torch_trace``) saw at the original call ``node``; None without a trace."""
        key = self._call_keys.get(id(node))
        found = None if key is None else self.facts.get(key)
        return found if isinstance(found, TracedCall) else None

    def remove_import_if_unused(self, node: cst.CSTNode) -> None:
        RemoveImportsVisitor.remove_unused_import_by_node(self.context, node)

    # -- traversal ----------------------------------------------------------------------------------------
    def transform_module(self, tree: cst.Module) -> cst.Module:
        """Codemod's metadata-resolved transform, then the import visitors on the import header only."""
        if self.precise:
            tree = Codemod.transform_module(self, tree)
        else:
            self._resolver = ImportResolver(tree)
            self.watch = ShadowWatch(self._resolver)
            tree = self.transform_module_impl(tree)
            if self.watch.shadowed:
                return tree  # the caller reruns precisely; imports are not touched
        return apply_import_changes(tree, self.context)

    def transform_module_impl(self, tree: cst.Module) -> cst.Module:
        if self.to == "torch":
            self.analysis = analyse_keras(tree, self.qualified_name, _top_level_lines(tree), self.hoisted)
        else:
            self.analysis = analyse(tree, self.qualified_name, _top_level_lines(tree))
        result = transform(tree, self, skippable(self._handlers.handled_types()))
        assert isinstance(result, cst.Module)
        return result

    # Rules are dispatched by node type below; libcst's matcher-decorator machinery (MatcherDecoratableTransformer)
    # is bypassed because it costs a dozen attribute lookups per node and no rule uses decorators. The traversal is
    # ``traverse.transform`` (libcst's protocol without rebuilding unchanged subtrees); the attribute hooks stay
    # no-ops in case libcst's own ``visit`` drives this runner.
    def on_visit_attribute(self, node: cst.CSTNode, attribute: str) -> None:
        return None

    def on_leave_attribute(self, original_node: cst.CSTNode, attribute: str) -> None:
        return None

    def on_visit(self, node: cst.CSTNode) -> bool:
        if self.watch is not None:
            self.watch.check(node)
        if self._tracing and type(node) is cst.Call:
            path, text = ".".join(self._defs), _EMPTY.code_for_node(node)
            n = self._call_counts[(path, text)]
            self._call_counts[(path, text)] = n + 1
            self._call_keys[id(node)] = call_key(path, text, n)
        kind = node_kind(type(node))
        if kind:
            if kind & CLASS:
                info = self.analysis.classes.get(node.name.value)  # type: ignore[attr-defined]
                self._classes.append(info if info is not None and info.torch_model else None)
                self._defs.append(node.name.value)  # type: ignore[attr-defined]
            elif kind & FUNCTION:
                self._functions.append(node.name.value)  # type: ignore[attr-defined]
                self._defs.append(node.name.value)  # type: ignore[attr-defined]
            if kind & STATEMENT:
                self._statements.append([])
        return True

    def on_leave(self, original_node: cst.CSTNode, updated_node: cst.CSTNode):  # type: ignore[override]
        updated = updated_node
        node_type = type(original_node)
        if self.watch is not None and self.watch.shadowed:
            handlers: Sequence[tuple[Rule, Callable[..., cst.CSTNode]]] = ()
        elif node_type is cst.Call:
            func = original_node.func  # type: ignore[attr-defined]
            name = self.qualified_name(func) if type(func) in (cst.Name, cst.Attribute) else None
            handlers = self._handlers.for_call(name)
        else:
            handlers = self._handlers.for_type(node_type.__name__)
        for rule, handler in handlers:
            if not isinstance(updated, node_type):
                break
            result = handler(original_node, updated)
            if result is not updated:
                self.applied[rule.id] += 1
                updated = result
        kind = node_kind(node_type)
        if kind:
            if kind & STATEMENT:
                messages = self._statements.pop()
                if messages and isinstance(updated, cst.CSTNode):
                    updated = todo_marks.attach(updated, messages)
            if kind & CLASS:
                self._classes.pop()
                self._defs.pop()
            elif kind & FUNCTION:
                self._functions.pop()
                self._defs.pop()
        return updated


def _top_level_lines(tree: cst.Module):  # type: ignore[no-untyped-def]
    """Line numbers of top-level statements (their ``def``/``class`` line), without PositionProvider's cost."""
    lines: dict[int, int] = {}

    def line_of(node: cst.CSTNode) -> int:
        if not lines:  # computed on first use: most files never need it
            line = 1 + len(tree.header)
            for stmt in tree.body:
                decorators = len(getattr(stmt, "decorators", ()))
                lines[id(stmt)] = line + len(getattr(stmt, "leading_lines", ())) + decorators
                line += tree.code_for_node(stmt).count("\n")
        return lines.get(id(node), 0)

    return line_of


def select_rules(options: RewriteOptions, rules: Sequence[type[Rule]] | None = None) -> list[type[Rule]]:
    from rules import discover_rules

    chosen = list(rules) if rules is not None else discover_rules(options.to)
    if options.only_rules:
        chosen = [r for r in chosen if r.id in options.only_rules]
    return chosen


#: Words in a TODO that say an axis' meaning is unknown in channels_last (NHWC) output.
LAYOUT_WORDS = ("channels_last", "NCHW->NHWC", "NHWC")


def rewrite_source(
    source: str,
    options: RewriteOptions = RewriteOptions(),
    rules: Sequence[type[Rule]] | None = None,
    filename: str = "<string>",
    precise: bool = False,
) -> RewriteResult:
    """Rewrite model source into the other framework (``options.to``); never raises on untranslatable code (it marks it).

    With ``options.layout_auto`` (--to keras, no --layout given) the classes where a channels_last rewrite leaves
    TODOs only an NHWC layout causes (``x.view(b, c, 1, 1)``, ``permute``, ``x.size()`` of image tensors) are redone
    in channels_first, where those are exact, together with the classes and functions they share tensors with
    (``layout_groups``); the other models of the file stay channels_last. The result says so in its notes.
    """
    result = _rewrite_once(source, options, rules, filename, precise)
    if not (options.layout_auto and options.to == "keras" and options.layout == "channels_last"):
        return result
    caused = [t.line for t in result.todos if any(w in t.why for w in LAYOUT_WORDS)]
    if not caused:
        return result
    what = (f"in channels_last {len(caused)} construct(s) depend on the NCHW axis order (view/permute/size of "
            "image tensors); channels_first keeps them exact (pass --layout to choose)")
    names = channels_first_defs(source, result.code, caused)
    models = set(result.model_classes)
    if names is not None and not models <= names:
        mixed = _rewrite_once(source, options, rules, filename, precise,
                              class_layouts={n: "channels_first" for n in names})
        if len(mixed.todos) < len(result.todos):
            listed = ", ".join(sorted(names & models) or sorted(names))
            return replace(mixed, class_layouts=tuple((n, "channels_first") for n in sorted(names)),
                           notes=(*mixed.notes, f"layout channels_first for {listed} (the rest channels_last): {what}"))
        return result
    first = _rewrite_once(source, replace(options, layout="channels_first"), rules, filename, precise)
    if len(first.todos) >= len(result.todos):
        return result
    return replace(first, notes=(*first.notes, f"layout channels_first: {what}"))


def _rewrite_once(
    source: str,
    options: RewriteOptions,
    rules: Sequence[type[Rule]] | None,
    filename: str,
    precise: bool,
    class_layouts: Mapping[str, str] | None = None,
) -> RewriteResult:
    """One rewrite in ``options.layout`` (``class_layouts``: other layouts for some top-level names); never raises on untranslatable code (it marks it).

    ``precise=True`` always resolves names with libcst's QualifiedNameProvider (full scope analysis); by default
    the import-table resolver is used and the engine switches to QualifiedNameProvider by itself whenever an
    imported name is rebound anywhere in the module (see ``converter.rewrite.names``).
    """
    try:
        module = cst.parse_module(source)
    except cst.ParserSyntaxError as err:
        raise SourceSyntaxError(f"{filename}:{err.raw_line}:{err.raw_column}: cannot parse: {err.message}") from None
    chosen = select_rules(options, rules)
    facts = dict(options.facts)
    hoisted: dict[str, str] = {}
    if options.to == "torch":
        lifted = hoist_module_models(module)
        module, hoisted = lifted.module, lifted.builders
    else:
        module = neutralize_script_calls(module)
    runner = RuleRunner(CodemodContext(filename=filename), chosen, options.layout, precise=precise, to=options.to,
                        facts=facts, hoisted=hoisted, class_layouts=class_layouts)
    new_module = runner.transform_module(module)
    if runner.watch is not None and runner.watch.shadowed:
        # An import alias is rebound somewhere (runner.watch.reason): resolve names with full scope analysis.
        runner = RuleRunner(CodemodContext(filename=filename), chosen, options.layout, precise=True, to=options.to,
                            facts=facts, hoisted=hoisted, class_layouts=class_layouts)
        new_module = runner.transform_module(module)
    code = new_module.code
    analysis = runner.analysis
    entry = analysis.entry_names  # a hoisted builder is verified as the module-level model it builds
    return RewriteResult(
        source=source,
        code=code,
        applied=tuple(sorted(runner.applied.items())),
        todos=todo_marks.scan(code),
        not_rewritten=tuple(analysis.not_rewritten),
        model_classes=tuple(entry.get(c.name, c.name) for c in analysis.model_classes()),
        top_models=tuple(entry.get(c.name, c.name) for c in analysis.top_models()),
        spatial_classes=tuple(entry.get(c.name, c.name) for c in analysis.model_classes() if c.spatial),
        layout=options.layout if options.to == "keras" else "channels_first",
        filename=filename,
        to=options.to,
    )
