"""``LocalBuffersOnStack``: small ``local`` buffers of CPU kernels stay on the stack.

TVM 0.27's ``LowerTVMBuiltin`` turns every ``local`` allocation of a host function into a
``TVMBackendAllocWorkspace`` call unless the allocation is annotated ``disable_lower_builtin``
(its documented rule, "on the stack below ``kMaxStackAlloca`` bytes", no longer applies: the
device attribute it tests is not set there). A register tile is such a buffer: as workspace
memory it is an opaque pointer, LLVM cannot promote it to registers, and every accumulation goes
through memory (the XNOR-popcount conv ran 2x slower than its arithmetic allows). On the stack,
SROA splits the tile into vector registers.

The pass runs after ``StorageRewrite`` (which drops allocation annotations) and right before
``LowerTVMBuiltin``. It annotates each ``local`` allocation of constant size up to
``MAX_STACK_BYTES``; larger or dynamic ones are left to the workspace allocator. The bound is a
register tile's largest size, AVX-512's whole vector register file, not TVM's own stack limit
(``kMaxStackAlloca``, 1 KB, exclusive): a tile of 16 AVX-512 vectors, the fp32 convs' usual one,
is exactly 1 KB, and on the heap each of its updates went through memory (docs/performance.md).
"""

from __future__ import annotations

import math

import tvm
import tvm_ffi
from tvm import tirx

MAX_STACK_BYTES = 2048  # 32 vector registers of 64 bytes (AVX-512)
DISABLE_LOWER_BUILTIN = "disable_lower_builtin"


@tirx.transform.prim_func_pass(opt_level=0, name="mptc.LocalBuffersOnStack")
class LocalBuffersOnStack:
    """``AllocBuffer(b, scope="local", nbytes < 1024)`` -> the same, annotated to stay an ``alloca``."""

    def transform_function(
        self, func: tirx.PrimFunc, _mod: tvm.IRModule, _ctx: tvm.transform.PassContext
    ) -> tirx.PrimFunc:
        body = tvm_ffi.structural_map(func.body, [(tirx.AllocBuffer, _annotate)], order="post")
        return func if body.same_as(func.body) else func.with_body(body)


def _annotate(alloc: tirx.AllocBuffer) -> tirx.AllocBuffer:
    annotations = dict(alloc.annotations)
    if DISABLE_LOWER_BUILTIN in annotations or not fits_on_stack(alloc.buffer):
        return alloc
    annotations[DISABLE_LOWER_BUILTIN] = tirx.const(True, "bool")
    return tirx.AllocBuffer(alloc.buffer, annotations=annotations, span=alloc.span)


def fits_on_stack(buffer: tirx.Buffer) -> bool:
    """A ``local`` buffer of constant shape of at most ``MAX_STACK_BYTES``."""
    if buffer.scope() != "local" or not all(isinstance(d, tirx.IntImm) for d in buffer.ty.shape):
        return False
    dtype = tvm.runtime.DataType(buffer.ty.dtype)
    return math.prod(int(d) for d in buffer.ty.shape) * dtype.bits * dtype.lanes // 8 <= MAX_STACK_BYTES
