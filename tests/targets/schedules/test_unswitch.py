"""``schedules.unswitch``: a marked loop becomes two loops under one ``if`` only where its select is invariant."""

import numpy as np
import pytest
import tvm
import tvm_ffi
from tvm import s_tir, te, tirx

from mptc.targets.schedules import unswitch


def _selected_sum(condition: str) -> tirx.PrimFunc:
    """``y[i] = sum_k (x[i, k] if cond else -x[i, k])`` with ``cond`` on ``flag[i]`` or on ``k``."""
    x = te.placeholder((4, 8), "float32", name="x")
    flag = te.placeholder((4,), "int32", name="flag")
    k = te.reduce_axis((0, 8), name="k")

    def term(i):
        cond = flag[i] != 0 if condition == "row" else k < 3
        return te.sum(tirx.if_then_else(cond, x[i, k], -x[i, k]), axis=k)

    return te.create_prim_func([x, flag, te.compute((4,), term, name="y")])


def _unswitched(condition: str) -> tirx.PrimFunc:
    sch = s_tir.Schedule(_selected_sum(condition))
    _, k = sch.get_loops(sch.get_sblock("y"))
    unswitch.mark(sch, k)
    return unswitch.apply(sch.mod["main"])


def _count(func: tirx.PrimFunc, kind) -> int:
    found = []
    tvm_ffi.structural_map(func.body, [(kind, lambda node: found.append(node) or node)], order="post")
    return len(found)


def test_an_invariant_select_becomes_an_if_around_two_loops():
    func = _unswitched("row")
    assert _count(func, tirx.IfThenElse) == 1 and "if_then_else" not in func.script()
    assert _count(func, tirx.For) == 3  # the row loop, and a loop over k in each branch
    assert s_tir.analysis.verify_well_formed(func)  # each branch binds its own variables


def test_a_select_on_the_loop_variable_stays():
    func = _unswitched("k")
    assert _count(func, tirx.IfThenElse) == 0 and "if_then_else" in func.script()


@pytest.mark.parametrize("condition", ["row", "k"])
def test_unswitched_loops_compute_what_the_select_did(condition):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 8)).astype(np.float32)
    flag = np.array([1, 0, 0, 1], np.int32)
    lib = tvm.compile(tvm.IRModule({"main": _unswitched(condition)}), target="llvm")
    y = tvm.runtime.tensor(np.zeros(4, np.float32))
    lib["main"](tvm.runtime.tensor(x), tvm.runtime.tensor(flag), y)
    keep = flag[:, None] != 0 if condition == "row" else np.arange(8)[None, :] < 3
    np.testing.assert_allclose(y.numpy(), np.where(keep, x, -x).sum(1), rtol=1e-5)
