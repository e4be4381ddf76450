"""``if input.is_cuda and self.ngpu > 1: out = nn.parallel.data_parallel(...) else: out = self.main(input)`` ->
the else branch, under a TODO: multi-GPU dispatch is a runtime concern (Keras distributes with
``keras.distribution`` / ``tf.distribute``), and the single-device branch is the model's forward pass."""
from __future__ import annotations

import libcst as cst

from rules.base import Example, Rule, model_src
from rules.cst_walk import names_in

_PARALLEL = frozenset({"data_parallel", "DataParallel", "DistributedDataParallel", "parallel_apply", "replicate"})
_DEVICE = frozenset({"is_cuda", "ngpu", "device_count", "cuda", "is_available", "device", "num_gpus", "n_gpu"})


class DeviceBranchRule(Rule):
    id = "device-branch"
    description = ("`if x.is_cuda and self.ngpu > 1: <data_parallel(...)> else: <forward>` in forward code -> the "
                   "else branch (multi-GPU dispatch is not model code in Keras), marked with a TODO")
    order = 20
    EXAMPLES = (
        Example(model_src(("self.main = nn.Linear(2, 2)", "self.ngpu = 1"),
                          ("if x.is_cuda and self.ngpu > 1:",
                           "    out = nn.parallel.data_parallel(self.main, x, range(self.ngpu))",
                           "else:", "    out = self.main(x)", "return out")),
                model_src(("self.main = nn.Linear(2, 2)", "self.ngpu = 1"),
                          ("# crossport: TODO(device-branch): multi-GPU dispatch (data_parallel) dropped: the "
                           "single-device branch is the forward pass; distribute with keras.distribution",
                           "out = self.main(x)", "return out"))),
    )

    def leave_If(self, original_node: cst.If, updated_node: cst.If):  # type: ignore[no-untyped-def]
        if not self.ctx.in_tensor_code() or not isinstance(updated_node.orelse, cst.Else):
            return updated_node
        if not names_in(original_node.test, set()) & _DEVICE:
            return updated_node
        parallel = names_in(original_node.body, set()) & _PARALLEL
        if not parallel:
            return updated_node
        body = list(updated_node.orelse.body.body) if isinstance(updated_node.orelse.body, cst.IndentedBlock) else []
        if not body:
            return updated_node
        note = cst.EmptyLine(comment=cst.Comment(
            f"# crossport: TODO({self.id}): multi-GPU dispatch ({', '.join(sorted(parallel))}) dropped: the "
            "single-device branch is the forward pass; distribute with keras.distribution"))
        body[0] = body[0].with_changes(leading_lines=[*updated_node.leading_lines, note, *body[0].leading_lines])
        return cst.FlattenSentinel(body)
