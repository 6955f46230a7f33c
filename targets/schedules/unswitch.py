"""Loop unswitching on scheduled TIR: a loop whose blocks select with a loop-invariant condition
becomes two loops under one ``if``.

A TE compute can only choose per value (``if_then_else`` in its expression); where the
condition does not change inside a loop, that choice belongs outside it, so the loop's body
holds one side of the select and no branch. TVM's ``HoistExpression`` does this on lowered TIR
only (over block boundaries it leaves block variables outside their blocks) and the Relax
pipeline needs the kernels as blocks, so the schedule marks the loop (``mark``) and ``apply``
rewrites it: each block's condition is read through the block's bindings, and the loop is
unswitched on it when no variable bound at or inside the loop appears in it and nothing inside
the loop writes a buffer it reads.
"""

from __future__ import annotations

import tvm_ffi
from tvm import s_tir, tirx
from tvm.ir import Op
from tvm.ir.expr import Call, TensorLoad

_SELECT = Op.get("prim.if_then_else")
UNSWITCH = "mptc.unswitch"  # loop annotation: unswitch this loop on its blocks' invariant selects


def mark(sch: s_tir.Schedule, loop: s_tir.schedule.LoopRV) -> None:
    """Ask ``apply`` to unswitch ``loop``."""
    sch.annotate(loop, UNSWITCH, 1)


def apply(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """``func`` with every marked loop unswitched on its first invariant select, if it has one."""
    body = tvm_ffi.structural_map(func.body, [(tirx.For, _unswitch)], order="post")
    return func if body.same_as(func.body) else func.with_body(body)


def _unswitch(loop: tirx.For) -> tirx.Stmt:
    if UNSWITCH not in loop.annotations:
        return loop
    annotations = {k: v for k, v in loop.annotations.items() if k != UNSWITCH}
    loop = tirx.For(loop.loop_var, loop.min, loop.extent, loop.kind, loop.body, loop.thread_binding, annotations)
    condition = _invariant_condition(loop)
    if condition is None:
        return loop
    return tirx.IfThenElse(condition, _take(loop, condition, 1), _renamed(_take(loop, condition, 2)))


def _invariant_condition(loop: tirx.For) -> tirx.PrimExpr | None:
    """The first select condition of a block under ``loop``, in the loop's variables, that is
    invariant in the loop; None if there is none."""
    inner: set = {loop.loop_var}
    written: set = set()
    found: list[tirx.PrimExpr] = []

    def visit(node):
        if isinstance(node, tirx.For):
            inner.add(node.loop_var)
        elif isinstance(node, s_tir.SBlockRealize):
            inner.update(iv.var for iv in node.block.iter_vars)
            found.extend(_conditions(node))
        elif isinstance(node, tirx.BufferStore):
            written.add(node.buffer)
        return node

    tvm_ffi.structural_map(loop.body, [((tirx.For, s_tir.SBlockRealize, tirx.BufferStore), visit)], order="post")
    for condition in found:
        free = tirx.analysis.undefined_vars(condition, [])
        if not any(v in inner for v in free) and not (_loaded(condition) & written):
            return condition
    return None


def _conditions(realize: s_tir.SBlockRealize) -> list[tirx.PrimExpr]:
    """The conditions of the selects in the block of ``realize``, its variables replaced by their bindings."""
    bound = dict(zip((iv.var for iv in realize.block.iter_vars), realize.iter_values))
    conditions: list[tirx.PrimExpr] = []

    def keep(call: Call) -> Call:
        if call.op.same_as(_SELECT):
            conditions.append(_substitute(call.args[0], bound))
        return call

    tvm_ffi.structural_map(realize.block.body, [(Call, keep)], order="post")
    return conditions


def _take(loop: tirx.For, condition: tirx.PrimExpr, side: int) -> tirx.Stmt:
    """``loop`` with each select on ``condition`` replaced by its ``side`` (1: then, 2: else)."""

    def realize(node: s_tir.SBlockRealize) -> s_tir.SBlockRealize:
        bound = dict(zip((iv.var for iv in node.block.iter_vars), node.iter_values))

        def choose(call: Call):
            if call.op.same_as(_SELECT) and tvm_ffi.structural_equal(_substitute(call.args[0], bound), condition):
                return call.args[side]
            return call

        body = tvm_ffi.structural_map(node.block.body, [(Call, choose)], order="post")
        if body.same_as(node.block.body):
            return node
        block = node.block
        block = s_tir.SBlock(
            block.iter_vars,
            block.reads,
            block.writes,
            block.name_hint,
            body,
            block.init,
            block.alloc_buffers,
            block.match_buffers,
            block.annotations,
        )
        return s_tir.SBlockRealize(node.iter_values, node.predicate, block)

    return tvm_ffi.structural_map(loop, [(s_tir.SBlockRealize, realize)], order="post")


def _renamed(loop: tirx.For) -> tirx.For:
    """``loop`` with fresh variables for those it binds: its copy beside the original stays in SSA form."""
    fresh: dict = {}

    def rename(node):
        bound = [node.loop_var] if isinstance(node, tirx.For) else [iv.var for iv in node.block.iter_vars]
        fresh.update((v, tirx.Var(v.name, v.ty)) for v in bound)
        return node

    tvm_ffi.structural_map(loop, [((tirx.For, s_tir.SBlockRealize), rename)], order="post")
    return _substitute(loop, fresh)


def _substitute(expr: tirx.PrimExpr, bound: dict) -> tirx.PrimExpr:
    return tvm_ffi.structural_map(expr, [(tirx.Var, lambda v: bound.get(v, v))], order="post")


def _loaded(expr: tirx.PrimExpr) -> set:
    """The buffers ``expr`` loads."""
    loaded: set = set()

    def keep(load: TensorLoad) -> TensorLoad:
        loaded.add(load.source)
        return load

    tvm_ffi.structural_map(expr, [(TensorLoad, keep)], order="post")
    return loaded
