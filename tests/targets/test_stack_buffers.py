"""``LocalBuffersOnStack``: which allocations it keeps on the stack, and what that does to the LLVM IR."""

import numpy as np
import pytest
import tvm
import tvm_ffi
from tvm import te, tirx
from tvm.script.ir_builder import IRBuilder
from tvm.script.ir_builder import tirx as T

from mptc.targets.build import TIR_PIPELINE
from mptc.targets.stack_buffers import DISABLE_LOWER_BUILTIN, LocalBuffersOnStack, fits_on_stack
from mptc.targets.target import resolve_target

WORKSPACE_CALL = "TVMBackendAllocWorkspace, align"


def accumulate(small: int, large: int, scope: str = "local") -> tirx.PrimFunc:
    """``y[i] = sum_j x[i] * (j + 1)`` through a ``small``-float ``local`` tile and a ``large``-float scratch buffer."""

    def body(x, y):
        with IRBuilder() as ib:
            with T.parallel(0, 4) as i:
                tile = T.alloc_local((small,), "float32")
                scratch = T.alloc_buffer((large,), "float32", scope=scope)
                with T.serial(0, small) as lane:
                    T.buffer_store(tile, tirx.const(0.0, "float32"), [lane])
                with T.serial(0, large) as j:
                    T.buffer_store(scratch, x[i, 0] * tirx.Cast("float32", j + 1), [j])
                with T.serial(0, large) as j, T.serial(0, small) as lane:
                    T.buffer_store(tile, tile[lane] + scratch[j], [lane])
                with T.serial(0, small) as lane:
                    T.buffer_store(y, tile[lane], [i, lane])
        return ib.get()

    x = te.placeholder((4, 1), "float32", name="x")
    y = te.extern((4, small), [x], lambda ins, outs: body(ins[0], outs[0]), name="y", dtype="float32")
    return te.create_prim_func([x, y])


def llvm_ir(func: tirx.PrimFunc, pipeline: str) -> tuple[str, tvm.runtime.Module]:
    lib = tvm.compile(tvm.IRModule({"main": func}), target=resolve_target("x86").tvm_target(), tir_pipeline=pipeline)
    return lib.mod.inspect_source("ll"), lib


def test_small_local_tile_is_an_alloca_and_large_buffers_stay_workspace():
    func = accumulate(small=16, large=1024, scope="local")  # 64 bytes, 4 KB
    default, _ = llvm_ir(func, "default")
    ours, lib = llvm_ir(func, TIR_PIPELINE)
    # the premise: TVM 0.27 allocates both from the workspace (if this fails, the pass is no longer needed)
    assert default.count(WORKSPACE_CALL) == 2
    assert ours.count(WORKSPACE_CALL) == 1
    x = np.arange(1, 5, dtype=np.float32).reshape(4, 1)
    y = tvm.runtime.tensor(np.zeros((4, 16), np.float32))
    lib["main"](tvm.runtime.tensor(x), y)
    np.testing.assert_allclose(y.numpy(), np.repeat(x * 1024 * 1025 / 2, 16, axis=1))


@pytest.mark.parametrize(
    ("shape", "dtype", "scope", "expected"),
    [
        ((16,), "float32", "local", True),
        ((256,), "float32", "local", True),  # 1024 bytes: 16 AVX-512 vectors, TVM's own limit excludes it
        ((512,), "float32", "local", True),  # 2048: AVX-512's 32 vector registers
        ((513,), "float32", "local", False),
        ((4, 8), "uint64x8", "local", True),  # vector dtypes count their lanes: 2048 bytes
        ((5, 8), "uint64x8", "local", False),
        ((16,), "float32", "global", False),
    ],
)
def test_fits_on_stack(shape, dtype, scope, expected):
    assert fits_on_stack(tirx.decl_buffer(shape, dtype, scope=scope)) is expected


def test_pass_annotates_only_what_fits():
    func = accumulate(small=16, large=1024, scope="local")
    lowered = tvm.tirx.transform.FlattenBuffer()(tvm.s_tir.transform.LowerOpaqueBlock()(tvm.IRModule({"main": func})))
    out = LocalBuffersOnStack()(lowered)["main"]
    annotated = []

    def record(alloc):
        annotated.append((int(alloc.buffer.ty.shape[0]), DISABLE_LOWER_BUILTIN in alloc.annotations))
        return alloc

    tvm_ffi.structural_map(out.body, [(tirx.AllocBuffer, record)], order="post")
    assert sorted(annotated) == [(16, True), (1024, False)]
