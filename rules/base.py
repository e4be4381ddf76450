"""The rule contract: what a rule is, what it may ask of the engine, and how it documents itself.

A rule is a small libcst transformer fragment: it implements ``leave_<NodeType>(original, updated)`` handlers
and the engine (``converter.rewrite.engine``) runs every rule's handlers in **one** metadata-resolved traversal
(Fixit-style batching) so that a 2,000-line file is parsed and name-resolved once, not once per rule.
Rules match on the *original* node's qualified names (``QualifiedNameProvider``) and build their result from
the *updated* node, so ``nn.Linear``, ``torch.nn.Linear`` and ``from torch.nn import Linear`` are one thing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Protocol, TypeVar

import libcst as cst

from rules.cst_tools import Unbindable
from rules.cst_walk import walk
from rules.model_facts import Analysis, ClassInfo
from rules.traced import TracedCall

_H = TypeVar("_H", bound=Callable[..., object])


@dataclass(frozen=True)
class Example:
    """A documented behaviour of a rule; ``after=None`` means the code must stay unchanged."""

    before: str
    after: str | None = None
    layout: str = "channels_first"


class RuleContext(Protocol):
    """What the engine offers a rule while it walks the tree."""

    layout: str
    analysis: Analysis

    def qualified_name(self, node: cst.CSTNode) -> str | None:
        """The torch/keras qualified name a Name/Attribute/Call refers to, if it is imported."""

    def current_class(self) -> ClassInfo | None:
        """The innermost enclosing torch model class, or None."""

    def in_model_scope(self) -> bool:
        """Inside a torch model class or a block-building helper function."""

    def current_model(self) -> ClassInfo | None:
        """The enclosing model class, or (--to torch) the builder function being turned into a module."""

    def current_function(self) -> str | None:
        """The innermost enclosing function's name."""

    def in_tensor_code(self) -> bool:
        """Inside a method (other than ``__init__``) of a torch model class: tensors flow here."""

    def remaps_dims(self) -> bool:
        """True when dims must be remapped NCHW -> NHWC here (channels_last layout, spatial class)."""

    def todo(self, rule_id: str, why: str) -> None:
        """Mark the enclosing statement with ``# crossport: TODO(rule_id): why`` and record a warning."""

    def add_import(self, module: str, asname: str | None = None) -> None:
        """Ask for ``import module [as asname]`` in the output (through AddImportsVisitor)."""

    def facts_for(self, node: cst.CSTNode, what: str = "") -> object | None:
        """--to torch with --input-shape: the Keras input shape recorded for the layer the original call builds."""

    def traced(self, node: cst.CSTNode) -> TracedCall | None:
        """--to keras with --input-shape: what one torch run saw at the original call ``node`` (``rules.traced``)."""

    def remove_import_if_unused(self, node: cst.CSTNode) -> None:
        """Schedule an import statement for removal if nothing uses it after the rewrite (RemoveImportsVisitor)."""

    def statement_has_todo(self) -> bool:
        """Whether another rule already marked the statement being left."""

    def statement_words(self, node: cst.CSTNode) -> frozenset[str]:
        """Every identifier (names and attribute names) in ``node``; cached, for cheap pre-checks."""

    def keep_comments(self, comments: list[str]) -> None:
        """Re-attach comments a rewrite would drop as comment lines above the enclosing statement."""


class Rule:
    """Base class: subclasses set ``id``, ``description``, ``EXAMPLES`` and implement ``leave_*`` handlers."""

    id: ClassVar[str] = ""
    description: ClassVar[str] = ""
    #: Lower runs first when two rules handle the same node type (all rules share one traversal).
    order: ClassVar[int] = 50
    EXAMPLES: ClassVar[tuple[Example, ...]] = ()

    def __init__(self, ctx: RuleContext) -> None:
        self.ctx = ctx

    def todo(self, why: str) -> None:
        self.ctx.todo(self.id, why)


class _CommentCollector(cst.CSTVisitor):
    def __init__(self) -> None:
        self.found: list[str] = []

    def visit_Comment(self, node: cst.Comment) -> None:
        self.found.append(node.value)


def _comment_list(node: cst.CSTNode) -> list[str]:
    collector = _CommentCollector()
    walk(node, collector)
    return collector.found


def _whitespace_comments(call: cst.Call) -> set[str]:
    """Comments living in a call's own whitespace (after commas, before the first argument): the ones a rule
    that rebuilds the argument list would drop. Cheap: no traversal of the argument values."""
    found: set[str] = set()
    spaces: list[object] = [call.whitespace_before_args]
    for a in call.args:
        spaces.append(a.whitespace_after_arg)
        if isinstance(a.comma, cst.Comma):
            spaces += [a.comma.whitespace_before, a.comma.whitespace_after]
    for space in spaces:
        if isinstance(space, cst.ParenthesizedWhitespace):
            if space.first_line.comment is not None:
                found.add(space.first_line.comment.value)
            found.update(line.comment.value for line in space.empty_lines if line.comment is not None)
    return found


def _no_comment(space: cst.ParenthesizedWhitespace) -> cst.ParenthesizedWhitespace:
    return space.with_changes(first_line=cst.TrailingWhitespace(), empty_lines=[])


def _same_layout(original: cst.Call, result: cst.BaseExpression) -> cst.BaseExpression:
    """One argument per line in, one argument per line out (the user's formatting survives the rewrite)."""
    if not isinstance(result, cst.Call) or not result.args or len(original.args) < 2:
        return result
    if not isinstance(original.whitespace_before_args, cst.ParenthesizedWhitespace):
        return result
    first = original.args[0].comma
    if not (isinstance(first, cst.Comma) and isinstance(first.whitespace_after, cst.ParenthesizedWhitespace)):
        return result
    sep = _no_comment(first.whitespace_after)
    last = original.args[-1]
    closing = last.comma.whitespace_after if isinstance(last.comma, cst.Comma) else last.whitespace_after_arg
    if not isinstance(closing, cst.ParenthesizedWhitespace):
        return result
    if len(result.args) == 1 and isinstance(result.args[0].value, cst.List):
        # keras.Sequential([padding, layer]) standing in for one layer: one element per line.
        listing = result.args[0].value
        if isinstance(listing.lbracket.whitespace_after, cst.ParenthesizedWhitespace) or not listing.elements:
            return result  # already laid out (the sequential rule keeps the user's own line breaks)
        elements = [e.with_changes(comma=cst.Comma(whitespace_after=sep)) for e in listing.elements[:-1]]
        elements.append(listing.elements[-1].with_changes(comma=cst.Comma(whitespace_after=_no_comment(closing))))
        listing = listing.with_changes(
            lbracket=cst.LeftSquareBracket(whitespace_after=_no_comment(original.whitespace_before_args)),
            elements=elements)
        return result.with_changes(args=[result.args[0].with_changes(value=listing)])
    args = [a.with_changes(comma=cst.Comma(whitespace_after=sep)) for a in result.args[:-1]]
    args.append(result.args[-1].with_changes(comma=cst.Comma(whitespace_after=_no_comment(closing))))
    return result.with_changes(whitespace_before_args=_no_comment(original.whitespace_before_args), args=args)


def _comments(node: cst.CSTNode) -> set[str]:
    return set(_comment_list(node))


def _comments_order(node: cst.CSTNode):  # type: ignore[no-untyped-def]
    order = {c: i for i, c in enumerate(_comment_list(node))}
    return lambda c: order.get(c, 0)


def targeted(handler: _H) -> _H:
    """Mark a ``leave_Call`` that changes nothing and records nothing unless the called name (the qualified name of
    ``original_node.func``, a Name or Attribute) is a key of the rule's ``TARGETS``. The engine resolves that name
    once per call and runs only the rules that target it, instead of every call rule on every call."""
    handler.targeted = True  # type: ignore[attr-defined]
    return handler


class CallRule(Rule):
    """A rule that rewrites calls to known torch callables (``TARGETS``: qualified name -> method name).

    The method receives the updated ``cst.Call`` and returns the replacement, or ``None`` after calling
    ``self.todo(...)`` when the call has no faithful translation (the code is then left as it was).
    """

    TARGETS: ClassVar[dict[str, str]] = {}
    #: "model": anywhere in a model class or builder; "tensor": only in methods where tensors flow.
    SCOPE: ClassVar[str] = "model"
    #: --input-shape, channels_last: what the torch run saw at the call being rewritten (``rules.traced``).
    traced: TracedCall | None = None

    def remaps_dims(self) -> bool:
        """Whether this call's dims are remapped NCHW -> NHWC: the context's answer, unless the trace saw a plain input."""
        if self.traced is not None:
            return self.traced.before_moved
        return self.ctx.remaps_dims()

    def trace_of(self, original_node: cst.Call) -> TracedCall | None:
        """The traced facts of ``original_node`` when its dims would be remapped (channels_last image code)."""
        fact = self.ctx.traced(original_node) if self.ctx.remaps_dims() else None
        return fact if isinstance(fact, TracedCall) else None

    @targeted
    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        if self.SCOPE == "tensor":
            if not self.ctx.in_tensor_code():
                return updated_node
        elif not self.ctx.in_model_scope():
            return updated_node
        if not isinstance(original_node.func, (cst.Name, cst.Attribute)):
            return updated_node  # ``f(...)(x)``: the provider names call results too; only direct calls match
        name = self.ctx.qualified_name(original_node.func)
        method = self.TARGETS.get(name or "")
        if method is None:
            return updated_node
        self.traced = self.trace_of(original_node)
        try:
            result = getattr(self, method)(updated_node, name)
        except Unbindable as err:
            self.todo(f"cannot name the arguments of {name.rsplit('.', 1)[-1]}(...) ({err})")  # type: ignore[union-attr]
            return updated_node
        except KeyError as err:
            self.todo(f"{name.rsplit('.', 1)[-1]}(...) is missing the required argument {err.args[0]!r}")  # type: ignore[union-attr]
            return updated_node
        finally:
            self.traced = None
        if result is None:
            return updated_node
        self.add_imports()
        lost = _whitespace_comments(original_node)
        if lost:
            lost -= _comments(result)
        if lost:
            self.ctx.keep_comments(sorted(lost, key=_comments_order(original_node)))
        return _same_layout(original_node, result)

    def add_imports(self) -> None:
        """The imports a rewritten call needs (Keras rules: ``import keras``)."""
        self.ctx.add_import("keras")

    # -- helpers shared by call rules --------------------------------------------------------------------
    def data_format(self) -> list[cst.Arg]:
        """``data_format="channels_first"`` in channels_first mode; Keras' default (channels_last) otherwise."""
        from rules.cst_tools import arg

        if self.ctx.layout == "channels_first":
            return [arg("channels_first", "data_format")]
        return []

    def channel_axis(self) -> int:
        return 1 if self.ctx.layout == "channels_first" else -1

    def remap_dim(self, node: cst.BaseExpression) -> cst.BaseExpression | None:
        """The Keras axis for torch dim ``node``: unchanged unless NCHW->NHWC; None when it cannot be known."""
        from rules.cst_tools import is_unknown, lit, literal, tuple_of

        if not self.remaps_dims():
            return node
        value = literal(node)
        if is_unknown(value):
            return None

        rank = self.traced.rank if self.traced is not None else None

        def one(d: object) -> int | None:
            if isinstance(d, bool) or not isinstance(d, int):
                return None
            if d < 0 and rank is not None and -rank <= d:
                d += rank  # the traced rank says which axis a negative dim is
            if d == 0:
                return 0
            if d == 1:
                return -1
            if d >= 2:
                return d - 1
            return None  # negative dims depend on the rank

        if isinstance(value, (tuple, list)):
            mapped = [one(d) for d in value]
            if any(m is None for m in mapped):
                return None
            return tuple_of([lit(m) for m in mapped])
        mapped_one = one(value)
        return None if mapped_one is None else lit(mapped_one)


TORCH_IMPORTS = "import torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"


def model_src(init: tuple[str, ...] = (), forward: tuple[str, ...] = (), *, keras: bool = False,
              imports: str = TORCH_IMPORTS, base: str = "nn.Module") -> str:
    """A small model module for rule examples: ``init`` lines go in ``__init__``, ``forward`` lines in forward.

    ``keras=True`` adds the ``import keras`` line where libcst's AddImportsVisitor puts it.
    """
    text = imports + ("import keras\n" if keras else "") + f"\n\nclass M({base}):\n"
    text += "    def __init__(self):\n        super().__init__()\n"
    text += "".join(f"        {line}\n" for line in init)
    if forward:
        text += "\n    def forward(self, x):\n" + "".join(f"        {line}\n" for line in forward)
    return text


class _AliasRefs(cst.CSTVisitor):
    """Dotted references (``torch.randn_like``, ``keras.random.normal``) whose root is one of ``aliases``."""

    def __init__(self, aliases: set[str]) -> None:
        self.aliases = aliases
        self.found: list[str] = []

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        root: cst.BaseExpression = node
        while isinstance(root, cst.Attribute):
            root = root.value
        if isinstance(root, cst.Name) and root.value in self.aliases:
            self.found.append(cst.Module(body=[]).code_for_node(node))
        else:
            walk(node.value, self)  # ``keras.ops.relu``: the attribute name is not a reference to ``relu``
        return False

    def visit_Name(self, node: cst.Name) -> None:
        if node.value in self.aliases:
            self.found.append(node.value)


class LeftoverRule(Rule):
    """Marks model-code statements that still reference the source framework after every other rule ran."""

    order = 98

    def source_aliases(self) -> set[str]:
        raise NotImplementedError

    def leave_SimpleStatementLine(self, original_node: cst.SimpleStatementLine,
                                  updated_node: cst.SimpleStatementLine) -> cst.SimpleStatementLine:
        if not self.ctx.in_model_scope() or self.ctx.statement_has_todo():
            return updated_node
        if any(isinstance(s, (cst.Import, cst.ImportFrom)) for s in updated_node.body):
            return updated_node
        aliases = self.source_aliases()
        if not self.ctx.statement_words(updated_node) & aliases:
            return updated_node
        refs = _AliasRefs(aliases)
        for small in updated_node.body:
            walk(small, refs)
        if refs.found:
            self.todo("no rule translates " + ", ".join(dict.fromkeys(refs.found)))
        return updated_node
