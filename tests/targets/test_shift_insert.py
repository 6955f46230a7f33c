"""``ShiftInsert``: which ORs it rewrites into ``sli`` chains, on which targets, and that the
chain is the same word (the module on an emulated board: ``tests/deploy/test_neon_popcount.py``)."""

from __future__ import annotations

import functools

import pytest
import tvm
import tvm_ffi
from tvm import te, tirx
from tvm.ir.expr import Call

from mptc.targets.shift_insert import ShiftInsert
from mptc.targets.target import resolve_target


def _word(bits: list[int], lanes: int, value: int | None = None) -> tirx.PrimFunc:
    """``y[0:lanes] = OR_j Select(x[j] >= 0, 1 << j, 0)`` over ``bits`` (``value`` instead of ``1 << j`` if given)."""

    def body(x: tirx.Buffer, y: tirx.Buffer) -> tirx.Stmt:
        def bit(j: int) -> tirx.PrimExpr:
            row = tirx.BufferLoad(x, [j, tirx.Ramp(0, 1, lanes)])
            on = tirx.Broadcast(tirx.const(value if value is not None else 1 << j, "uint32"), lanes)
            off = tirx.Broadcast(tirx.const(0, "uint32"), lanes)
            return tirx.Select(row >= tirx.Broadcast(tirx.const(0.0, "float32"), lanes), on, off)

        word = functools.reduce(lambda a, b: a | b, (bit(j) for j in bits))
        return tirx.BufferStore(y, word, [tirx.Ramp(0, 1, lanes)])

    x = te.placeholder((32, lanes), "float32", name="x")
    y = te.extern((lanes,), [x], lambda ins, outs: body(ins[0], outs[0]), name="y", dtype="uint32")
    return te.create_prim_func([x, y])


def _rewritten(func: tirx.PrimFunc, target: str) -> list[Call]:
    func = func.with_attr("target", resolve_target(target, board="rpi4" if target == "arm" else None).tvm_target())
    out = ShiftInsert()(tvm.IRModule({"main": func}))["main"]
    found: list[Call] = []

    def keep(call: Call) -> Call:
        if call.op.name == "tirx.call_llvm_pure_intrin":
            found.append(call)
        return call

    tvm_ffi.structural_map(out.body, [(Call, keep)], order="post")
    return found


@pytest.mark.parametrize("lanes", [2, 4])
def test_a_word_of_single_bits_becomes_a_chain_of_inserts_on_aarch64(lanes):
    """32 bits: one insert per bit below the top one; bits 0-4 of a partial word: 4."""
    assert len(_rewritten(_word(list(range(32)), lanes), "arm")) == 31
    assert len(_rewritten(_word(list(range(5)), lanes), "arm")) == 4


def test_other_targets_and_other_ors_are_left_as_they_are():
    """x86 keeps the OR of selects (a masked OR per bit there); on aarch64 an OR whose selects are
    not single bits, or of eight lanes, is no packed word."""
    assert not _rewritten(_word(list(range(32)), 4), "x86")
    assert not _rewritten(_word(list(range(8)), 4, value=3), "arm")
    assert not _rewritten(_word(list(range(8)), 8), "arm")
