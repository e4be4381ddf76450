"""--verify says which outputs each remaining TODO can affect (issue 13, item 1): a data-flow over forward/call."""
from __future__ import annotations

from converter.rewrite.todo import scan
from converter.rewrite.todo_flow import format_reach, reach

CODE = '''import keras

def unused(n):
    # crossport: TODO(unused): helper nobody calls
    return n * 2


class Block(keras.layers.Layer):
    def __init__(self):
        super().__init__()
        # crossport: TODO(block): inside a block class
        self.d = keras.layers.Dense(2)


class Stage(keras.layers.Layer):
    def __init__(self):
        super().__init__()
        self.inner = Block()


class Net(keras.Model):
    def __init__(self):
        super().__init__()
        # crossport: TODO(attr): an attribute
        self.fc1 = keras.layers.Dense(4)
        self.fc2 = keras.layers.Dense(4)
        self.stage = Stage()
        # crossport: TODO(weight-init): commented-out code runs nowhere
        # nn.init.zeros_(self.fc1.bias)
        pass

    def flat(self, x):
        # crossport: TODO(method): a helper method
        return x.size(1)

    def call(self, x, flag=False):
        a = self.fc1(x)
        b = self.fc2(x)
        for _ in range(2):
            # crossport: TODO(loop): inside a loop
            b = b + 1
        c = self.stage(x)
        # crossport: TODO(view): a reshape
        d = c.view(-1)
        # crossport: TODO(branch): a marked if
        if flag:
            a = a * 2
        n = self.flat(d)
        return a, (b, c), n
'''


def _reach() -> dict[str, tuple[str, ...]]:
    return {r.todo.rule_id: r.outputs for r in reach(CODE, scan(CODE), "Net", 4)}


def test_each_todo_reaches_the_outputs_computed_from_it() -> None:
    found = _reach()
    assert found["attr"] == ("out0",)
    assert found["branch"] == ("out0",)
    assert found["method"] == ("out3",)
    assert found["view"] == ("out3",)
    assert found["block"] == ("out2", "out3")  # Block -> Stage -> self.stage -> c -> out2 and, through d, out3
    assert found["unused"] == () and found["weight-init"] == ()


def test_nested_returns_flatten_like_the_outputs() -> None:
    assert _reach()["loop"] == ("out1",)  # ``a, (b, c), n``: b is the second flat output


def test_a_return_whose_leaves_do_not_match_the_outputs_is_taken_whole() -> None:
    # ``return out, state`` with a tuple ``state`` runs to three outputs: two literal leaves cannot name them.
    code = ("class M:\n    def forward(self, x):\n        # crossport: TODO(t): marked\n        out = x + 1\n"
            "        state = (x, x)\n        return out, state\n")
    assert [r.outputs for r in reach(code, scan(code), "M", 3)] == [("out0", "out1", "out2")]
    assert [r.outputs for r in reach(code, scan(code), "M", 2)] == [("out0",)]


def test_builder_entries_are_conservative() -> None:
    code = ("import torch.nn as nn\n\n\ndef other():\n    # crossport: TODO(x): elsewhere\n    return 1\n\n\n"
            "def make_model():\n    # crossport: TODO(y): in the builder\n    return nn.Linear(2, 2)\n")
    found = {r.todo.rule_id: r.outputs for r in reach(code, scan(code), "make_model", 2)}
    assert found == {"x": (), "y": ("out0", "out1")}


def test_report_lines() -> None:
    lines = format_reach(reach(CODE, scan(CODE), "Net", 4), 4)
    assert lines[0].startswith("TODOs on the path to each output")
    assert lines[1] == "  out0: line 25 TODO(attr), line 46 TODO(branch)"
    assert lines[-1] == "  affecting no output: line 5 TODO(unused), line 29 TODO(weight-init)"


def test_verify_report_names_the_todos_per_output() -> None:
    from converter.rewrite.verify import VerifyOptions, format_report, verify_rewrite
    from converter.input_shapes import unnamed_shapes
    from tests.rewrite.test_real_world_fixtures import _torch_result

    path, result = _torch_result("resnet_stem")
    report = verify_rewrite(path, result, VerifyOptions(unnamed_shapes(["2x3x32x32"]), class_name="ResNet"))
    text = format_report(report)
    line = result.todos[0].line
    assert f"  out0: none\n  affecting no output: line {line} TODO(weight-init)\nverify passed" in text, text
    path, result = _torch_result("dcgan_generator")
    report = verify_rewrite(path, result, VerifyOptions(unnamed_shapes(["2x16x1x1"]), class_name="Generator"))
    assert [(r.todo.rule_id, r.outputs) for r in report.todo_reach] == [("device-branch", ("out0",))]
