"""The one hook of the ``ai.mptc`` operators into TVM's ONNX importer (``tvm.relax.frontend.onnx``).

TVM's ``from_onnx`` looks converters up by op_type only, in a private table, and takes no custom
ops. Rather than patch that table for the whole process, :class:`MptcGraphImporter` subclasses
TVM's graph importer: ``ai.mptc`` nodes go to our ``OnnxOpConverter`` subclasses, every other
node to TVM's own converters. Each converter unpacks the layer's constant bits at compile time,
chooses a kernel (``targets.chooser``, by the compile's ``targets.policy``), builds its TE compute
(``targets.kernels``), schedules it for the target family (``targets.schedules``) and emits
``relax.call_tir`` of the scheduled PrimFunc. The per-compile context (:class:`Lowering`) reaches
the converters typed, as the ``params`` argument of TVM's ``_impl_v1(bb, inputs, attr, params)``
(:class:`ConverterContext`), which this importer is the only one to call. The dense real-input
form is plain Relax ``conv2d`` / ``matmul`` on the unpacked, scaled weight, scheduled by the glue
rules (``targets.schedules.cpu_glue``), which re-lay the constant weight into the order the tiles
read it.

Binary chains: when a binary-input layer's output feeds only the next binary-input layer of the
same kind (``BinaryConv -> BinaryConv``, ``BinaryDense -> BinaryDense``; the sign between them
is folded into ``input_mode`` and the batch norm into ``scale`` / ``bias`` by the passes), possibly
through ``MaxPool`` nodes, the producer's epilogue writes the packed signs directly, the pools OR
words, and the consumer reads words: the float tensor between them never exists
(:func:`packed_edges`). A float-output conv's kernel also absorbs a following residual ``Add`` and
``Relu`` (``targets.epilogue``).
"""

from __future__ import annotations

import contextlib
import io
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import onnx
import tvm
from onnx import numpy_helper
from tvm import relax, tirx
from tvm.relax.frontend.onnx import onnx_frontend as _onnx

from mptc.conventions import node_label
from mptc.errors import InputError, MptcError, UnsupportedError, first_line
from mptc.ops.reference import DOMAIN, OPSET_VERSION, unpack_ternary
from mptc.ops.validate import (
    PackedAttributes,
    check_node_sizes,
    check_packed_proto,
    check_standard_node,
    check_tensors,
    packed_attributes,
    pool_geometry,
    proto_attribute_types,
)
from mptc.targets import chooser, layout
from mptc.targets.epilogue import ONNX_DOMAINS, Epilogue, epilogues
from mptc.targets.int8_inputs import Int8Input, int8_inputs
from mptc.targets.kernels import binary_conv, binary_dense, dense_ternary, depthwise, packed_pool, winograd
from mptc.targets.policy import KernelPolicy
from mptc.targets.schedules import KernelSchedules

OP_PATTERN_OPAQUE = 8  # relay/relax OpPatternKind::kOpaque


@dataclass(frozen=True)
class LayerRecord:
    """What the compiler did with one ``ai.mptc`` layer (written to the manifest)."""

    name: str
    op_type: str
    input_mode: str
    sparsity: float
    kernel: str
    reason: str
    input_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    packed_bytes: int  # sign + mask bits as stored in the ONNX model
    lowered_bytes: int  # the constants the chosen kernel reads
    input_words: bool  # reads the previous layer's packed signs (no float input)
    output_words: bool  # writes the packed signs of its output for the next layer
    epilogue: str = ""  # the nodes after it its kernel absorbed (``targets.epilogue``), e.g. "add+relu"


@dataclass
class Lowering:
    """Per-compilation context the importer hands to the converters."""

    kernels: KernelSchedules  # the target family's schedules (``targets.schedules.kernel_schedules``)
    policy: KernelPolicy  # break-evens and block sizes of the chooser and layout (``targets.policy``)
    break_even: float | None = None  # overrides every break-even of ``policy`` for every layer
    layers: list[LayerRecord] = field(default_factory=list)
    pack_activations: bool = True  # let binary chains pass packed signs (``packed_edges``)
    words_out: frozenset[str] = frozenset()  # names of the layers whose output travels packed
    epilogues: dict[str, Epilogue] = field(default_factory=dict)  # by conv name (``targets.epilogue``)
    absorbed: dict[str, relax.Expr] = field(default_factory=dict)  # absorbed node name -> the fused result
    packed: list[tuple[relax.Var, tuple[int, ...]]] = field(default_factory=list)  # words var, logical shape
    int8_inputs: dict[str, Int8Input] = field(default_factory=dict)  # by layer name (``targets.int8_inputs``)
    passed_through: frozenset[str] = frozenset()  # the QDQ nodes of ``int8_inputs``: they pass their input on

    def fold_int8_inputs(self, graph: onnx.GraphProto) -> None:
        """Let the int8 kernels of this family apply the QDQ pairs before their layers themselves."""
        ops = {
            op
            for op, kernel in (("BinaryDense", self.kernels.int8_dense), ("BinaryConv", self.kernels.int8_conv))
            if kernel
        }
        self.int8_inputs = int8_inputs(graph, frozenset(ops), self.policy.int8_conv_below)
        self.passed_through = frozenset(name for quantized in self.int8_inputs.values() for name in quantized.nodes)

    def call_kernel(
        self, bb: relax.BlockBuilder, func: tirx.PrimFunc, name: str, args: list[relax.Expr], shape, logical_shape=None
    ) -> relax.Expr:
        """Add the scheduled ``func`` under a unique symbol and call it; ``logical_shape`` marks a words output."""
        gv = bb.add_func(func, f"mptc_{len(self.layers)}_{re.sub(r'[^0-9A-Za-z_]', '_', name)}")
        # kOpaque: FuseOps must not merge a scheduled kernel with its neighbours (FuseTIR would
        # rebuild it unscheduled, and its epilogue already holds what could be fused).
        attrs = {"global_symbol": gv.name_hint, "tirx.is_scheduled": True, "op_pattern": OP_PATTERN_OPAQUE}
        bb.update_func(gv, func.with_attrs(attrs))
        dtype = "float32" if logical_shape is None else "uint64"
        call = relax.call_tir(gv, args, relax.TensorType(list(shape), dtype))
        if logical_shape is None:
            return call
        words = bb.emit(call)
        self.packed.append((words, tuple(logical_shape)))
        return words

    def logical_shape(self, x: relax.Expr) -> tuple[int, ...] | None:
        """The float shape a words tensor stands for, or None if ``x`` is not packed."""
        return next((shape for var, shape in self.packed if var.same_as(x)), None)


@dataclass(frozen=True)
class ConverterContext:
    """The ``params`` :class:`MptcGraphImporter` passes to an ``ai.mptc`` converter's
    ``_impl_v1(bb, inputs, attr, params)`` (TVM's importer passes its own converters ``[nodes, params]``)."""

    lowering: Lowering
    nodes: dict[str, relax.Expr]  # the tensors imported so far, by name (a fused residual is one)


@dataclass(frozen=True)
class _Layer:
    """The parsed, validated inputs of one ``ai.mptc`` node."""

    name: str
    op_type: str
    lowering: Lowering
    x: relax.Expr
    shape: tuple[int, ...]
    sign_bits: np.ndarray
    mask_bits: np.ndarray
    scale: np.ndarray
    bias: np.ndarray
    attributes: PackedAttributes  # checked by ``mptc.ops.validate``, defaults filled in

    @property
    def input_mode(self) -> str:
        """The node's ``input_mode``, or ``"int8"`` where the layer quantizes its real input itself."""
        return "int8" if self.name in self.lowering.int8_inputs else self.attributes.input_mode

    @property
    def label(self) -> str:
        """The layer as messages name it."""
        return node_label(self.name, self.op_type)

    @classmethod
    def parse(cls, op_type: str, inputs, attr: dict, lowering: Lowering) -> _Layer:
        """The node's inputs and attributes, checked by ``mptc.ops.validate`` against the input's
        static shape (:func:`check_nodes` checked what the proto alone tells, before the import)."""
        name = attr["tvm_custom"]["name"] or op_type
        where = node_label(name, op_type)
        if len(inputs) != 5 or any(i is None for i in inputs):
            raise InputError(f"{where}: expected inputs X, sign_bits, mask_bits, scale, bias")
        attributes = packed_attributes(where, op_type, {k: v for k, v in attr.items() if k != "tvm_custom"})
        if attributes.group != 1:
            raise UnsupportedError(f"{where}: group={attributes.group} (only group=1 is compiled)")
        x = inputs[0]
        shape = lowering.logical_shape(x) or _static_shape(x)
        if shape is None:
            raise UnsupportedError(f"{where}: input needs a static shape, got {getattr(x.ty, 'shape', None)}")
        consts = []
        for role, value in zip(("sign_bits", "mask_bits", "scale", "bias"), inputs[1:]):
            if not isinstance(value, tvm.ir.GenericConst):
                raise UnsupportedError(f"{where}: {role} must be an initializer (constant) to be compiled")
            consts.append(value.value.numpy())
        sign_bits, mask_bits, scale, bias = consts
        check_tensors(where, attributes, sign_bits, mask_bits, scale, bias, tuple(int(d) for d in shape))
        return cls(
            name, op_type, lowering, x, tuple(int(d) for d in shape), sign_bits, mask_bits, scale, bias, attributes
        )

    @property
    def words_in(self) -> bool:
        return self.lowering.logical_shape(self.x) is not None

    @property
    def words_out(self) -> bool:
        return self.name in self.lowering.words_out

    def lower(
        self,
        weight: np.ndarray,
        out_shape,
        kernel_call,
        flat_outputs: int | None = None,
        epilogue: Epilogue | None = None,
        batch: int = 1,
    ) -> relax.Expr:
        """Choose the kernel, emit it via ``kernel_call(choice)`` -> (expr, constants) and record the
        layer; the nodes of a fused ``epilogue`` become its result."""
        sparsity = float(1.0 - np.count_nonzero(weight) / weight.size)
        choice = chooser.choose_kernel(
            self.op_type,
            self.input_mode,
            sparsity,
            self.lowering.policy,
            self.lowering.break_even,
            flat_outputs,
            weight.size,
            batch,
            self.attributes.taps,
            max(self.attributes.strides),
        )
        expr, consts = kernel_call(choice)
        self.lowering.layers.append(
            LayerRecord(
                self.name,
                self.op_type,
                self.input_mode,
                sparsity,
                choice.kernel,
                choice.reason,
                self.shape,
                tuple(out_shape),
                int(self.sign_bits.nbytes + self.mask_bits.nbytes),
                int(sum(np.asarray(c).nbytes for c in consts)),
                self.words_in,
                self.words_out,
                epilogue.label if epilogue else "",
            )
        )
        for node in epilogue.nodes if epilogue else ():
            self.lowering.absorbed[node] = expr
        return expr

    def fused_epilogue(self, out_shape, nodes: dict[str, relax.Expr]) -> tuple[Epilogue | None, relax.Expr | None]:
        """The chain this layer absorbs and its residual expression (:func:`fused_chain`); none
        when the output travels packed."""
        return (None, None) if self.words_out else fused_chain(self.lowering, self.name, out_shape, nodes)

    def call(
        self,
        bb: relax.BlockBuilder,
        func: tirx.PrimFunc,
        consts: list[np.ndarray],
        out_shape,
        extra=(),
        flat_x: bool = False,
        x: relax.Expr | None = None,
    ) -> relax.Expr:
        """Call a kernel on the layer's input (``flat_x``: reshaped to ``(N, C * H * W)``, a view;
        ``x``: this expression instead), ``consts`` and ``extra`` expressions; a words output
        ``(N, [OH, OW,] ceil(O / 64))`` stands for ``out_shape``."""
        if x is None:
            x = relax.op.reshape(self.x, (self.shape[0], int(np.prod(self.shape[1:])))) if flat_x else self.x
        args = [x] + [relax.const(c) for c in consts] + list(extra)
        if not self.words_out:
            return self.lowering.call_kernel(bb, func, self.name, args, out_shape)
        spatial = tuple(out_shape[2:])  # NCHW -> NHWC words; (N, O) -> (N, words)
        words = (out_shape[0], *spatial, layout.ceil_div(out_shape[1], layout.WORD_BITS))
        return self.lowering.call_kernel(bb, func, self.name, args, words, logical_shape=out_shape)


class BinaryConv(_onnx.OnnxOpConverter):
    """``ai.mptc.BinaryConv`` -> XNOR-popcount, block-sparse, dense-ternary, int8 (a uint8 QDQ input) or
    dense fp32 conv (``docs/operators.md``)."""

    @classmethod
    def _impl_v1(cls, bb: relax.BlockBuilder, inputs, attr: dict, params: ConverterContext) -> relax.Expr:
        layer = _Layer.parse("BinaryConv", inputs, attr, params.lowering)
        attributes = layer.attributes
        pad_value = attributes.pad_value
        geo = layout.ConvGeometry(
            *layer.shape,
            out_channels=layer.sign_bits.shape[0],
            kernel=attributes.kernel_shape,
            strides=attributes.strides,
            pads=attributes.pads,
            dilations=attributes.dilations,
        )
        weight = layout.ternary_conv_weight(layer.sign_bits, layer.mask_bits, geo)
        out_shape = (geo.batch, geo.out_channels, geo.out_height, geo.out_width)
        kernels = layer.lowering.kernels

        flat = layout.flat_input(geo, layer.lowering.policy)
        epilogue, residual = layer.fused_epilogue(out_shape, params.nodes)
        fused = dict(
            residual=residual is not None,
            relu=bool(epilogue and epilogue.relu),
            upper=epilogue.upper if epilogue else None,
        )
        extra = [] if residual is None else [residual]

        def kernel_call(choice: chooser.KernelChoice):
            if choice.kernel == chooser.INT8_DOT:
                quantized = layer.lowering.int8_inputs[layer.name]
                t = layout.int8_tables(weight, layer.scale, quantized.scale, quantized.zero_point)
                func = kernels.int8_conv(geo, quantized.scale, quantized.zero_point, **fused)
                consts = [t.codes, t.offset, t.rescale, layer.bias]
                return layer.call(bb, func, consts, out_shape, extra), consts
            if choice.kernel == chooser.XNOR_POPCOUNT and layer.input_mode == "sign":
                t = layout.binary_conv_tables(weight, geo, kernels.word_lanes)
                counts = kernels.exact_sign_counts(geo.tap_words)
                func = kernels.binary_conv(
                    binary_conv.exact_sign_conv_func(
                        geo, kernels.word_lanes, t.border.shape[:2], **fused, counts=counts
                    )
                )
                consts = [t.planes, t.border_by_column, t.row_class, layer.scale, layer.bias]
                return layer.call(bb, func, consts, out_shape, extra), consts
            if choice.kernel == chooser.XNOR_POPCOUNT:
                outputs = layout.table_outputs(geo.out_channels, kernels.word_lanes, layer.words_out)
                t = layout.binary_conv_tables(weight, geo, kernels.word_lanes, pad_value, outputs)
                func = kernels.binary_conv(
                    binary_conv.xnor_conv_func(
                        geo, kernels.word_lanes, t.border.shape[:2], layer.words_in, layer.words_out, **fused
                    )
                )
                if layer.words_out:
                    taps = geo.channels * geo.kernel[0] * geo.kernel[1]
                    threshold, flip = layout.sign_thresholds(t.border, layer.scale, layer.bias, taps)
                    consts = [t.planes, threshold, t.row_class, t.col_class, flip]
                else:
                    consts = [t.planes, t.border_by_column, t.row_class, layer.scale, layer.bias]
                return layer.call(bb, func, consts, out_shape, extra), consts
            if choice.kernel in (chooser.BLOCK_SPARSE, chooser.TERNARY_LUT):
                lut = layer.lowering.policy.lut_group if choice.kernel == chooser.TERNARY_LUT else 0
                gathered, read = weight, geo  # the weight the gather walks, over the planes it reads
                if lut:
                    gathered = layout.lut_conv_weight(weight, lut)
                    read = replace(geo, channels=gathered.shape[1])
                read_flat = replace(flat, planes=flat.planes // geo.channels * read.channels)
                chunk = kernels.conv_chunk(flat.flat_outputs, choice.block)
                group = kernels.conv_group(
                    read.channels,
                    layout.channel_floats(read, read_flat, chunk),
                    choice.grouped,
                    geo.kernel[0] * geo.kernel[1],
                )
                t = layout.block_sparse_conv_tables(gathered, read, read_flat, choice.block, group)
                gather = binary_conv.SparseGather(
                    geo.batch,
                    layout.ceil_div(geo.out_channels, choice.block),
                    choice.block,
                    layout.ceil_div(read.channels, group),
                    layout.ceil_div(flat.flat_outputs, chunk) * chunk,
                    chunk,
                    t.group_floats,
                    str(t.index.dtype),
                )
                in_place = not lut and layout.flat_is_input(geo, flat, gather.outputs)
                func = kernels.block_sparse_conv(
                    binary_conv.block_sparse_conv_func(
                        geo,
                        flat,
                        gather,
                        t.index.size,
                        kernels.sparse_gather,
                        **fused,
                        lut_group=lut,
                        in_place=in_place,
                        fused=kernels.fused_gather_epilogue,
                    )
                )
                consts = [t.ptr, t.index, layer.scale, layer.bias]
                return layer.call(bb, func, consts, out_shape, extra, flat_x=in_place), consts
            if choice.kernel == chooser.DENSE_TERNARY:
                plus, minus = layout.ternary_planes(weight)
                consts = [plus, minus, layer.scale, layer.bias]
                pointwise = layout.pointwise_geometry(geo)
                if pointwise is not None:
                    func = kernels.pointwise_ternary(dense_ternary.pointwise_ternary_func(pointwise, **fused))
                    strided = tuple(geo.strides) != (1, 1)
                    x = bb.normalize(subsampled(layer.x, (geo.height, geo.width), geo.strides)) if strided else layer.x
                    return layer.call(bb, func, consts, out_shape, extra, x=x), consts
                in_registers = geo.out_height * geo.out_width < layer.lowering.policy.decode_block_pixels
                func = kernels.conv_ternary(
                    dense_ternary.conv_ternary_func(geo, kernels.float_lanes, **fused, in_registers=in_registers)
                )
                return layer.call(bb, func, consts, out_shape, extra), consts
            dense = (weight * layer.scale[:, None, None, None]).astype(np.float32)
            conv = relax.op.nn.conv2d(
                layer.x, relax.const(dense), strides=geo.strides, padding=geo.pads, dilation=geo.dilations
            )
            bias = layer.bias.reshape(1, -1, 1, 1)
            y = relax.op.add(bb.normalize(conv), relax.const(bias))
            y = y if residual is None else relax.op.add(bb.normalize(y), residual)
            y = clamped_expr(bb, y, fused["relu"], fused["upper"])
            return y, [dense, bias]

        return layer.lower(weight, out_shape, kernel_call, flat.flat_outputs, epilogue)


class BinaryDense(_onnx.OnnxOpConverter):
    """``ai.mptc.BinaryDense`` -> XNOR-popcount, sparse sign-split, dense-ternary, int8 (a uint8 QDQ
    input) or dense fp32 matmul (``docs/operators.md``)."""

    @classmethod
    def _impl_v1(cls, bb: relax.BlockBuilder, inputs, attr: dict, params: ConverterContext) -> relax.Expr:
        layer = _Layer.parse("BinaryDense", inputs, attr, params.lowering)
        batch, k = layer.shape
        out = layer.sign_bits.shape[0]
        weight = unpack_ternary(layer.sign_bits, layer.mask_bits, (out, k))
        kernels = layer.lowering.kernels
        chain, residual = layer.fused_epilogue((batch, out), params.nodes)
        # the int8 and the real-input kernels absorb a ReLU / ReLU6 (no residual); the XNOR ones none
        clamped = (
            chain
            if layer.input_mode in ("int8", "real") and residual is None and chain and chain.residual is None
            else None
        )
        clamp = {"relu": bool(clamped and clamped.relu), "upper": clamped.upper if clamped else None}

        def kernel_call(choice: chooser.KernelChoice):
            if choice.kernel == chooser.INT8_DOT:
                quantized = layer.lowering.int8_inputs[layer.name]
                t = layout.int8_tables(weight, layer.scale, quantized.scale, quantized.zero_point)
                func = kernels.int8_dense(batch, k, out, quantized.scale, quantized.zero_point, **clamp)
                consts = [t.codes, t.offset, t.rescale, layer.bias]
                return layer.call(bb, func, consts, (batch, out)), consts
            if choice.kernel == chooser.XNOR_POPCOUNT and layer.input_mode == "sign":
                t = layout.binary_dense_tables(weight, kernels.word_lanes)
                counts = kernels.exact_sign_counts(layout.ceil_div(k, layout.WORD_BITS))
                func = kernels.binary_dense(
                    binary_dense.exact_sign_dense_func(batch, k, out, kernels.word_lanes, counts)
                )
                consts = [t.sign, t.mask, t.count, layer.scale, layer.bias]
                return layer.call(bb, func, consts, (batch, out)), consts
            if choice.kernel == chooser.XNOR_POPCOUNT:
                outputs = layout.table_outputs(out, kernels.word_lanes, layer.words_out)
                t = layout.binary_dense_tables(weight, kernels.word_lanes, outputs)
                func = kernels.binary_dense(
                    binary_dense.xnor_dense_func(batch, k, out, kernels.word_lanes, layer.words_in, layer.words_out)
                )
                if layer.words_out:
                    consts = [t.sign, t.mask, *layout.sign_thresholds(t.count, layer.scale, layer.bias, k)]
                else:
                    consts = [t.sign, t.mask, t.count, layer.scale, layer.bias]
                return layer.call(bb, func, consts, (batch, out)), consts
            row_sums = kernels.sparse_row_sums
            if choice.kernel == chooser.SPARSE_SIGN_SPLIT and row_sums is not None and not choice.batch_lanes:
                rows = layout.sparse_dense_rows(weight)
                func = binary_dense.sparse_rows_func(batch, k, out, len(rows.index), row_sums, **clamp)
                consts = [rows.ptr, rows.index, layer.scale, layer.bias]
                return layer.call(bb, kernels.sparse_dense(func), consts, (batch, out)), consts
            if choice.kernel == chooser.SPARSE_SIGN_SPLIT:  # lanes along the batch, or over outputs
                index = layout.sparse_dense_index(weight, 1 if choice.batch_lanes else kernels.float_lanes)
                func = binary_dense.sparse_dense_func(batch, k, out, index.shape, choice.batch_lanes, **clamp)
                func = kernels.sparse_dense_batched(func) if choice.batch_lanes else kernels.sparse_dense(func)
                consts = [index, layer.scale, layer.bias]
                return layer.call(bb, func, consts, (batch, out)), consts
            if choice.kernel == chooser.DENSE_TERNARY:
                nibbles = kernels.ternary_nibbles
                weights = (
                    [layout.ternary_nibbles(weight), layout.NIBBLE_TABLE] if nibbles else layout.ternary_planes(weight)
                )
                func = kernels.dense_ternary(
                    dense_ternary.dense_ternary_func(batch, k, out, kernels.float_lanes, nibbles=nibbles, **clamp)
                )
                consts = [*weights, layer.scale, layer.bias]
                return layer.call(bb, func, consts, (batch, out)), consts
            dense_t = np.ascontiguousarray(
                (weight * layer.scale[:, None]).T.astype(np.float32)
            )  # (K, O): matmul's layout
            matmul = relax.op.matmul(layer.x, relax.const(dense_t))
            y = relax.op.add(bb.normalize(matmul), relax.const(layer.bias))
            return clamped_expr(bb, y, **clamp), [dense_t, layer.bias]

        return layer.lower(weight, (batch, out), kernel_call, epilogue=clamped, batch=batch)


class PackedMaxPool(_onnx.OnnxOpConverter):
    """``MaxPool`` whose input is packed signs (between two binary convs): an OR over the window."""

    @classmethod
    def _impl_v1(cls, bb: relax.BlockBuilder, inputs, attr: dict, params: ConverterContext) -> relax.Expr:
        lowering, name = params.lowering, attr["tvm_custom"]["name"] or "MaxPool"
        batch, channels, height, width = lowering.logical_shape(inputs[0])
        kernel, strides, pads, dilations = pool_geometry(node_label(name, "MaxPool"), attr, (height, width))
        geo = layout.ConvGeometry(
            batch, channels, height, width, channels, kernel=kernel, strides=strides, pads=pads, dilations=dilations
        )
        func = lowering.kernels.or_pool(packed_pool.or_pool_func(geo))
        words = (batch, geo.out_height, geo.out_width, geo.channel_words)
        logical = (batch, channels, geo.out_height, geo.out_width)
        return lowering.call_kernel(bb, func, name, [inputs[0]], words, logical_shape=logical)


def clamped_expr(bb: relax.BlockBuilder, y: relax.Expr, relu: bool, upper: float | None) -> relax.Expr:
    """``y`` through the ReLU (``upper``: ReLU6) a layer absorbed, as Relax ops, where its kernel is TVM's own."""
    if not relu:
        return y
    y = relax.op.nn.relu(bb.normalize(y))
    return y if upper is None else relax.op.minimum(bb.normalize(y), relax.const(upper))


def fused_chain(
    lowering: Lowering, name: str, out_shape, nodes: dict[str, relax.Expr]
) -> tuple[Epilogue | None, relax.Expr | None]:
    """The chain conv ``name`` absorbs (``targets.epilogue``) and its residual expression, if the
    residual is a float tensor of the output's shape (no broadcasting) that exists already."""
    chain = lowering.epilogues.get(name)
    if chain is None or chain.residual is None:
        return chain, None
    residual = nodes.get(chain.residual)
    usable = (
        residual is not None
        and lowering.logical_shape(residual) is None
        and _static_shape(residual) == tuple(out_shape)
        and getattr(residual.ty, "dtype", None) == "float32"
    )
    return (chain, residual) if usable else (None, None)


@dataclass(frozen=True)
class FloatConv:
    """The parts of a float ONNX ``Conv`` that an mptc kernel can compute: named (the epilogue it
    absorbs is known by name), a static 4-D float32 input, constant float32 weight and bias."""

    name: str
    x: relax.Expr
    weight: np.ndarray
    bias: np.ndarray
    group: int
    geo: layout.ConvGeometry


def float_conv(inputs, attr: dict) -> FloatConv | None:
    """The :class:`FloatConv` of an ONNX ``Conv``'s converter arguments; None where its input or
    weight is not static, it is unnamed, or it pads by ``auto_pad`` (TVM's converter takes it)."""
    name = attr["tvm_custom"]["name"]
    x, weight = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    shape = _static_shape(x)
    if (
        not name
        or shape is None
        or len(shape) != 4
        or getattr(x.ty, "dtype", None) != "float32"
        or not isinstance(weight, tvm.ir.GenericConst)
        or not (bias is None or isinstance(bias, tvm.ir.GenericConst))
        or attr.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET")
    ):
        return None
    w = weight.value.numpy()
    if w.dtype != np.float32 or w.ndim != 4:
        return None
    geo = layout.ConvGeometry(
        *shape,
        out_channels=w.shape[0],
        kernel=tuple(w.shape[2:]),
        strides=tuple(attr.get("strides", (1, 1))),
        pads=tuple(attr.get("pads", (0, 0, 0, 0))),
        dilations=tuple(attr.get("dilations", (1, 1))),
    )
    b = bias.value.numpy().astype(np.float32) if bias is not None else np.zeros(w.shape[0], np.float32)
    return FloatConv(name, x, w, b, int(attr.get("group", 1)), geo)


def _absorbing(
    bb: relax.BlockBuilder, params: ConverterContext, conv: FloatConv, make: Callable[..., tirx.PrimFunc | None]
) -> Callable[[list[relax.Expr]], relax.Expr] | None:
    """The kernel that ends ``conv`` with the epilogue it absorbs (``fused_chain``), as a call on
    the kernel's other arguments: ``make(residual=, relu=, upper=)`` builds the scheduled kernel
    (None: the family has none, and so is the result); the call adds the residual argument and
    marks the chain's nodes absorbed by its result."""
    lowering, geo = params.lowering, conv.geo
    out_shape = (geo.batch, geo.out_channels, geo.out_height, geo.out_width)
    chain, residual = fused_chain(lowering, conv.name, out_shape, params.nodes)
    func = make(residual=residual is not None, relu=bool(chain and chain.relu), upper=chain.upper if chain else None)
    if func is None:
        return None

    def call(args: list[relax.Expr]) -> relax.Expr:
        expr = lowering.call_kernel(bb, func, conv.name, args + ([residual] if residual is not None else []), out_shape)
        for node in chain.nodes if chain else ():
            lowering.absorbed[node] = expr
        return expr

    return call


def depthwise_conv(bb: relax.BlockBuilder, inputs, attr: dict, params: ConverterContext) -> relax.Expr | None:
    """An ONNX ``Conv`` with one filter per channel, on a map at least ``policy.depthwise_min_width``
    wide, as ``kernels.depthwise`` with the epilogue it absorbs; None for any other conv (TVM's
    converter takes it: a grouped conv, a weight that is no constant, a dynamic shape, ``auto_pad``)."""
    lowering = params.lowering
    conv = float_conv(inputs, attr)
    least = lowering.policy.depthwise_min_width
    if least is None or conv is None:
        return None
    geo = conv.geo
    if conv.weight.shape[:2] != (geo.channels, 1) or conv.group != geo.channels or geo.out_width < least:
        return None
    outputs = depthwise_outputs(lowering.kernels, geo)
    call = _absorbing(
        bb,
        params,
        conv,
        lambda **epilogue: lowering.kernels.depthwise(depthwise.depthwise_func(geo, outputs, **epilogue)),
    )
    if call is None:
        return None
    return call([conv.x, relax.const(np.ascontiguousarray(conv.weight[:, 0])), relax.const(conv.bias)])


def winograd_conv(bb: relax.BlockBuilder, inputs, attr: dict, params: ConverterContext) -> relax.Expr | None:
    """A float ONNX ``Conv`` that ``kernels.winograd`` computes (3x3, stride 1, one group, at
    least ``policy.winograd_min_channels`` input channels; the scheme ``winograd.choose`` picks
    from ``policy.winograd_tiles`` and the two byte limits) as its input transform, TVM's matmul
    of the weights transformed at compile time (the fp32 glue schedules it) and its output
    transform with the epilogue it absorbs; None for any other conv."""
    lowering, policy = params.lowering, params.lowering.policy
    conv = float_conv(inputs, attr)
    if policy.winograd_min_channels is None or conv is None:
        return None
    geo = conv.geo
    if conv.group != 1 or geo.channels < policy.winograd_min_channels:
        return None
    scheme = winograd.choose(geo, policy.winograd_tiles, policy.winograd_max_bytes, policy.winograd_max_weight_bytes)
    if scheme is None:
        return None
    transform = lowering.kernels.winograd_input(winograd.input_func(geo, scheme))
    call = _absorbing(
        bb,
        params,
        conv,
        lambda **epilogue: lowering.kernels.winograd_output(winograd.output_func(geo, scheme, **epilogue)),
    )
    if transform is None or call is None:
        return None
    tiles_shape = (scheme.positions, geo.channels, winograd.tiles(geo, scheme))
    transformed = bb.emit(lowering.call_kernel(bb, transform, conv.name, [conv.x], tiles_shape))
    weights = relax.const(winograd.transformed_weights(conv.weight, scheme))
    products = bb.emit(relax.op.matmul(weights, transformed))
    return call([products, relax.const(conv.bias)])


def depthwise_outputs(kernels: KernelSchedules, geo: layout.ConvGeometry) -> int | None:
    """The flat outputs per channel of a depthwise conv or max-pool (whole register tiles), or
    None where the kernels take it by rows (``depthwise_row_lanes``)."""
    if kernels.depthwise_row_lanes(geo.out_width) is not None:
        return None
    tile = kernels.depthwise_tile
    return layout.ceil_div(geo.out_height * geo.phase_width, tile) * tile


def max_pool(bb: relax.BlockBuilder, inputs, attr: dict, params: ConverterContext) -> relax.Expr | None:
    """A float ``MaxPool`` on a map at least ``policy.depthwise_min_width`` wide as
    ``kernels.depthwise.max_pool_func`` (a ResNet's pool after the stem); None for any other
    (TVM's converter takes it: ceil mode, a second output, a dynamic shape, ``auto_pad``)."""
    lowering = params.lowering
    x = inputs[0]
    shape = _static_shape(x)
    if (
        lowering.policy.depthwise_min_width is None
        or shape is None
        or len(shape) != 4
        or getattr(x.ty, "dtype", None) != "float32"
        or attr.get("ceil_mode", 0)
        or attr.get("storage_order", 0)
        or attr.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET")
    ):
        return None
    name = attr["tvm_custom"]["name"] or "MaxPool"
    kernel, strides, pads, dilations = pool_geometry(node_label(name, "MaxPool"), attr, shape[2:])
    geo = layout.ConvGeometry(
        *shape, out_channels=shape[1], kernel=kernel, strides=strides, pads=pads, dilations=dilations
    )
    if geo.out_width < lowering.policy.depthwise_min_width:
        return None
    func = lowering.kernels.depthwise(depthwise.max_pool_func(geo, depthwise_outputs(lowering.kernels, geo)))
    if func is None:
        return None
    return lowering.call_kernel(bb, func, name, [x], (geo.batch, geo.channels, geo.out_height, geo.out_width))


def subsampled_pointwise(bb: relax.BlockBuilder, inputs, attr: dict) -> tuple[list, dict]:
    """A strided 1x1 conv without padding (a ResNet's downsampling shortcut) reads every s-th
    pixel: as the subsampled input (one strided copy) and a stride-1 1x1 conv, which the glue runs
    as a GEMM over contiguous pixels, instead of gathering each vector lane by lane. Any other
    conv comes back unchanged."""
    x, weight = inputs[0], inputs[1]
    shape = _static_shape(x)
    strides = tuple(attr.get("strides", (1, 1)))
    if (
        shape is None
        or len(shape) != 4
        or strides == (1, 1)
        or not isinstance(weight, tvm.ir.GenericConst)
        or tuple(weight.value.shape[2:]) != (1, 1)
        or any(attr.get("pads", (0, 0, 0, 0)))
        or tuple(attr.get("dilations", (1, 1))) != (1, 1)
        or attr.get("group", 1) != 1
        or attr.get("auto_pad", "NOTSET") not in ("NOTSET", b"NOTSET")
    ):
        return inputs, attr
    return [bb.normalize(subsampled(x, shape[2:], strides)), *inputs[1:]], {**attr, "strides": (1, 1)}


def subsampled(x: relax.Expr, size: Sequence[int], strides: Sequence[int]) -> relax.Expr:
    """Every ``strides``-th pixel of ``x`` (NCHW, spatial ``size``): the input a strided 1x1
    unpadded conv reads, one strided copy, for the stride-1 conv on it."""
    return relax.op.strided_slice(x, axes=[2, 3], begin=[0, 0], end=list(size), strides=list(strides))


CONVERTERS: dict[str, type[_onnx.OnnxOpConverter]] = {"BinaryConv": BinaryConv, "BinaryDense": BinaryDense}
WORD_CONVERTERS: dict[str, type[_onnx.OnnxOpConverter]] = {"MaxPool": PackedMaxPool}  # when the input is words


class MptcGraphImporter(_onnx.ONNXGraphImporter):
    """TVM's ONNX graph importer, with the ``ai.mptc`` converters and typed errors for unknown ops."""

    def __init__(self, lowering: Lowering, shape_dict: dict[str, list[int]]):
        super().__init__(shape_dict, "float32")
        self.lowering = lowering

    def from_onnx(self, graph: onnx.GraphProto, opset: int) -> tvm.IRModule:
        """TVM's import, quiet: its importer prints each failing node on stdout before re-raising
        (stdout is the command's output, the error reaches the user as one line), and a failure
        leaves the builder's last block open, which TVM warns about on stderr, after that line,
        whenever the builder is freed: the block is closed here instead."""
        self.lowering.words_out = packed_edges(graph) if self.lowering.pack_activations else frozenset()
        self.lowering.epilogues = epilogues(graph)
        self.lowering.fold_int8_inputs(graph)
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                return super().from_onnx(graph, opset)
        except BaseException:
            _close_blocks(self.bb)
            raise

    def _check_for_unsupported_ops(self, graph: onnx.GraphProto) -> None:
        known = set(_onnx._get_convert_map()) | {"If", "Constant"}
        unsupported = sorted(
            {
                f"{node.domain or 'ai.onnx'}.{node.op_type}"
                for node in graph.node
                if (node.domain == DOMAIN and node.op_type not in CONVERTERS)
                or (node.domain != DOMAIN and (node.domain not in ONNX_DOMAINS or node.op_type not in known))
            }
        )
        if unsupported:
            raise UnsupportedError(f"operators not supported by the TVM targets: {', '.join(unsupported)}")

    def _convert_operator(self, op_name: str, inputs, attrs: dict, opset: int) -> relax.Expr:
        if attrs.get("tvm_custom", {}).get("name") in self.lowering.passed_through:
            return inputs[0]  # a QDQ pair the int8 layer after it applies in its kernel
        absorbed = self.lowering.absorbed.get(attrs.get("tvm_custom", {}).get("name"))
        if absorbed is not None:  # an Add / Relu a conv's epilogue already applied
            return self.bb.normalize(absorbed)
        if op_name == "Conv":
            context = ConverterContext(self.lowering, self._nodes)
            special = depthwise_conv(self.bb, inputs, attrs, context)
            if special is None:
                special = winograd_conv(self.bb, inputs, attrs, context)
            if special is not None:
                return self.bb.normalize(special)
            if self.lowering.policy.subsample_strided_pointwise:
                inputs, attrs = subsampled_pointwise(self.bb, inputs, attrs)
        if op_name == "MaxPool" and self.lowering.logical_shape(inputs[0]) is None:
            pooled = max_pool(self.bb, inputs, attrs, ConverterContext(self.lowering, self._nodes))
            if pooled is not None:
                return self.bb.normalize(pooled)
        converter = CONVERTERS.get(op_name)
        if converter is None and op_name in WORD_CONVERTERS and self.lowering.logical_shape(inputs[0]) is not None:
            converter = WORD_CONVERTERS[op_name]
        if converter is None:
            try:
                return super()._convert_operator(op_name, inputs, attrs, opset)
            except MptcError:
                raise
            except Exception as error:  # TVM's own converters assert and index what they are given
                name = attrs.get("tvm_custom", {}).get("name")
                raise UnsupportedError(
                    f"{node_label(name, op_name)}: TVM's ONNX importer cannot convert it: {first_line(error)}"
                ) from error
        impl = converter.get_converter(OPSET_VERSION)
        return self.bb.normalize(impl(self.bb, inputs, attrs, ConverterContext(self.lowering, self._nodes)))


def packed_edges(graph: onnx.GraphProto) -> frozenset[str]:
    """Names of the layers whose output can travel packed to the next layer.

    A binary-input ``ai.mptc`` node qualifies when its output reaches exactly one node, a
    binary-input node of the same op_type reading it as ``X``, either directly or through plain
    ``MaxPool`` nodes (``sign`` commutes with max: they run as an OR on the words), with every
    tensor on the way consumed once and none a graph output. Both ends then take the
    XNOR-popcount kernel, so the consumer only ever needs ``sign(y)``. Unnamed or duplicate node
    names are left alone (the converters know a node only by its name).
    """
    names = Counter(node.name for node in graph.node)
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    outputs = {o.name for o in graph.output}

    def consumer(tensor: str) -> onnx.NodeProto | None:
        while tensor not in outputs and len(readers.get(tensor, [])) == 1:
            node = readers[tensor][0]
            if not _is_word_pool(node):
                return (
                    node
                    if _is_binary(node) and list(node.input).index(tensor) == 0 and list(node.input).count(tensor) == 1
                    else None
                )
            tensor = node.output[0]
        return None

    edges = set()
    for node in graph.node:
        if _is_binary(node) and node.name and names[node.name] == 1:
            reached = consumer(node.output[0])
            if reached is not None and reached.op_type == node.op_type:
                edges.add(node.name)
    return frozenset(edges)


def _static_shape(x: relax.Expr) -> tuple[int, ...] | None:
    """``x``'s shape if every dimension is a known integer."""
    dims = tuple(x.ty.shape.values) if getattr(x.ty, "shape", None) is not None else ()
    return tuple(int(d) for d in dims) if dims and all(isinstance(d, tirx.IntImm) for d in dims) else None


def _attrs(node: onnx.NodeProto) -> dict[str, Any]:
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _is_binary(node: onnx.NodeProto) -> bool:
    return node.domain == DOMAIN and node.op_type in CONVERTERS and _attrs(node).get("input_mode") == b"binary"


def _is_word_pool(node: onnx.NodeProto) -> bool:
    """A 2-D ``MaxPool`` that :class:`PackedMaxPool` runs on words (floor mode, one output)."""
    attrs = _attrs(node)
    return (
        node.op_type == "MaxPool"
        and node.domain in ONNX_DOMAINS
        and len([o for o in node.output if o]) == 1
        and len(attrs.get("kernel_shape", ())) == 2
        and not attrs.get("ceil_mode", 0)
        and attrs.get("auto_pad", b"NOTSET") == b"NOTSET"
        and not attrs.get("storage_order", 0)
    )


def from_onnx(model: onnx.ModelProto, lowering: Lowering, shape_dict: dict[str, list[int]]):
    """Import a packed ONNX model into a Relax ``IRModule`` whose ``ai.mptc`` layers call scheduled kernels.

    Raises:
        UnsupportedError: an operator, opset or layer configuration the targets do not compile.
    """
    opsets = {o.domain or "ai.onnx": o.version for o in model.opset_import}
    if DOMAIN in opsets and opsets[DOMAIN] != OPSET_VERSION:
        raise UnsupportedError(f"{DOMAIN} opset {opsets[DOMAIN]} (the targets compile version {OPSET_VERSION})")
    check_nodes(model.graph, opsets.get("ai.onnx", 1))
    return MptcGraphImporter(lowering, shape_dict).from_onnx(model.graph, opsets.get("ai.onnx", 1))


def check_nodes(graph: onnx.GraphProto, opset: int) -> None:
    """What TVM's importer and our converters take for granted, checked on the proto first: node
    sizes, the attribute types and input counts of ONNX nodes, and everything about an ``ai.mptc``
    node its proto and initializers tell (``mptc.ops.validate``; the converters check the rest
    against the input's static shape).

    Raises:
        InputError: a malformed node, named. UnsupportedError: a node past mptc's size limits.
    """
    check_node_sizes(graph)
    initializers = {tensor.name: tensor for tensor in graph.initializer}
    for node in graph.node:
        if node.domain == DOMAIN and node.op_type in CONVERTERS:
            check_packed_proto(node, _constants(node, initializers))
        elif node.domain in ONNX_DOMAINS:
            where = node_label(node.name, node.op_type, node.output)
            types = proto_attribute_types(node)
            check_standard_node(where, node.op_type, opset, types, len(node.input), len(node.output))
            empty = next((a.name for a in node.attribute if not _has_value(a)), None)
            if empty is not None:  # a list with no element sets no field: TVM's attribute parser fails on it
                raise UnsupportedError(f"{where}: attribute {empty} is empty, which TVM's ONNX importer cannot read")


def _has_value(attribute: onnx.AttributeProto) -> bool:
    return any(field.name not in ("name", "type", "doc_string", "ref_attr_name") for field, _ in attribute.ListFields())


def _constants(node: onnx.NodeProto, initializers: dict[str, onnx.TensorProto]) -> dict[str, np.ndarray]:
    arrays = {}
    for name in node.input[1:]:
        if name in initializers:
            try:
                arrays[name] = numpy_helper.to_array(initializers[name])
            except Exception as error:  # data that does not fill its shape, external data: onnx raises several types
                raise InputError(
                    f"{node_label(node.name, node.op_type, node.output)}: initializer {name!r} cannot be read: "
                    f"{first_line(error)}"
                ) from error
    return arrays


def _close_blocks(bb: relax.BlockBuilder, most: int = 8) -> None:
    """End the blocks a failed import left open in ``bb`` (TVM ends them only on success)."""
    for _ in range(most):
        try:
            bb._end_block()
        except Exception:  # noqa: BLE001 - TVM's "no block is being built" check: all closed
            return
