"""Popcounts accumulated in 16-bit counters: the NEON form of the XNOR-popcount step.

NEON counts bits per byte (``cnt.16b``) only; a 64-bit popcount widens the byte counts three
times (``uaddlp`` x3) before it is added. Here each uint64 accumulator of the register tile is
four 16-bit counters instead, and a step adds the popcount of each 16-bit lane of the XNOR word
(``cnt.16b`` + ``uadalp.8h``: two instructions per vector of words instead of five). The
counters are folded into one count per accumulator once per tile, by pairwise adds, before the
epilogue reads them: in word order (``FOLD``), or, for a conv epilogue whose vectors run along
the output columns, into each channel's run of columns (``FOLD_BY_COLUMNS``).

A step or fold is a block of one vector of ``lanes`` words whose scalar body the schedule
blockizes and marks (``mark``); ``expand`` replaces each marked block's body by the vector
statement, from the block's read and write regions (the vector is the last axis of the counts
and of the weight tables). It is what a tensor intrinsic would do, written out because
``Schedule.tensorize`` cannot copy an intrinsic with the FFI this TVM runs on.

The counters hold the exact count while it fits 16 bits: a reduction of at most
``MAX_WORDS`` words (64 bits each) per output.
"""

from __future__ import annotations

import tvm_ffi
from tvm import s_tir, tirx
from tvm.ir import Range
from tvm.ir.expr import Call, TensorLoad

from mptc.targets.kernels import exact_sign

WORD = "uint64"
COUNTERS = 4  # 16-bit counters per uint64 word
MAX_WORDS = (1 << 16) // 64 - 1  # counts up to 64 * MAX_WORDS < 2^16 fold exactly
VECTOR_WORDS = 2  # uint64 words per NEON register
FOLD_WORDS = 8  # words per fold: four vectors' counters, two levels of pairwise adds
COLUMN_GROUP = 4  # columns whose counts two levels of pairwise adds fold into one vector (a fold by columns)
KIND = "mptc.lane_counts"  # block annotation: STEP, FOLD or FOLD_BY_COLUMNS
STEP = "step"
FOLD = "fold"
FOLD_BY_COLUMNS = "fold_by_columns"


def mark(sch: s_tir.Schedule, lanes_loop: s_tir.schedule.LoopRV, kind: str) -> s_tir.schedule.SBlockRV:
    """Blockize the vector loop ``lanes_loop`` (the popcount update's, or the fold copy's) for ``expand``."""
    block = sch.blockize(lanes_loop)
    sch.annotate(block, KIND, kind)
    return block


def expand(func: tirx.PrimFunc) -> tirx.PrimFunc:
    """``func`` with every marked block's body replaced by its vector statement."""
    body = tvm_ffi.structural_map(func.body, [(s_tir.SBlock, _expand_block)], order="post")
    return func if body.same_as(func.body) else func.with_body(body)


def _expand_block(block: s_tir.SBlock) -> s_tir.SBlock:
    kind = block.annotations.get(KIND)
    if kind is None:
        return block
    statement = {STEP: _step, FOLD: _fold, FOLD_BY_COLUMNS: _fold_by_columns}[str(kind)](block)
    annotations = {k: v for k, v in block.annotations.items() if k != KIND}
    return s_tir.SBlock(
        block.iter_vars,
        block.reads,
        block.writes,
        block.name_hint,
        statement,
        block.init,
        block.alloc_buffers,
        block.match_buffers,
        annotations,
    )


def _inner_store(block: s_tir.SBlock) -> tirx.BufferStore:
    """The scalar store of the blockized block (``for lane: block: store``)."""
    found: list[tirx.BufferStore] = []

    def keep(store: tirx.BufferStore) -> tirx.BufferStore:
        found.append(store)
        return store

    tvm_ffi.structural_map(block.body, [(tirx.BufferStore, keep)], order="post")
    if len(found) != 1:
        raise ValueError(f"{block.name_hint}: expected one store under the vector loop, found {len(found)}")
    return found[0]


def _region(block: s_tir.SBlock, buffer, writes: bool = False):
    for region in block.writes if writes else block.reads:
        if region.source.same_as(buffer):
            return region.region
    raise ValueError(f"{block.name_hint} does not access {buffer}")


def _load(block: s_tir.SBlock, load: TensorLoad, lanes: int) -> tirx.PrimExpr:
    """The region of ``load``'s buffer in ``block`` as one value, broadcast to ``lanes`` where it
    is a single element. Where the block reads several of an outer axis (the sign and the mask
    plane of one weight table) the load's own constant index there picks one."""
    region = _region(block, load.source)
    fixed = {
        axis: load.indices[axis]
        for axis, r in enumerate(region[:-1])
        if int(r.extent) != 1 and isinstance(load.indices[axis], tirx.IntImm)
    }
    picked = [Range.from_min_extent(fixed[axis], 1) if axis in fixed else r for axis, r in enumerate(region)]
    value = _access(picked, lanes, lambda index: tirx.BufferLoad(load.source, index))
    return value if _is_vector(picked) else tirx.Broadcast(value, lanes)


def _is_vector(region) -> bool:
    return any(int(r.extent) != 1 for r in region)


def _access(region, lanes: int, make):
    """``make(index)`` of a one-element region, or of the vector index of a region that is one run
    of ``lanes`` elements along the last axis."""
    index = [r.min for r in region]
    if not _is_vector(region):
        return make(index)
    if int(region[-1].extent) != lanes or any(int(r.extent) != 1 for r in region[:-1]):
        raise ValueError(f"region {region} is not one vector of {lanes} along its last axis")
    return make([*index[:-1], tirx.Ramp(index[-1], 1, lanes)])


def _lanes(block: s_tir.SBlock) -> int:
    return int(block.writes[0].region[-1].extent)


def _counters(words: tirx.PrimExpr, lanes: int) -> tirx.PrimExpr:
    return tirx.reinterpret(f"uint16x{COUNTERS * lanes}", words)


def _step(block: s_tir.SBlock) -> tirx.Stmt:
    """``D += popcount((a ^ w) & m)`` -> ``D16 += popcount16((a ^ w) & m)`` on one vector; an
    ONNX ``Sign`` input's exact term (``kernels.exact_sign``) -> ``D16 += COUNTER_OFFSET +
    popcount16(m & z) - 2 popcount16((a ^ w) & m & z)``, and a select between the two on a
    row's flag -> the same select of the vectors (which ``schedules.unswitch`` hoists)."""
    store, lanes = _inner_store(block), _lanes(block)
    total = store.value
    if not isinstance(total, tirx.Add):
        raise ValueError(f"{block.name_hint}: not an accumulated popcount: {total}")
    counts = _access(_region(block, store.buffer, writes=True), lanes, lambda i: tirx.BufferLoad(store.buffer, i))
    value = _counters(counts, lanes) + _added(block, total.b, lanes)
    return tirx.BufferStore(
        store.buffer, tirx.reinterpret(f"{store.buffer.dtype}x{lanes}", value), list(counts.indices)
    )


def _added(block: s_tir.SBlock, term: tirx.PrimExpr, lanes: int) -> tirx.PrimExpr:
    """What one word adds to the counters of one vector: see ``_step``."""
    term = _uncast(term)
    if isinstance(term, Call) and term.op.name == "prim.if_then_else":
        condition = term.args[0]
        if not (isinstance(condition, tirx.NE) and isinstance(condition.a, TensorLoad)):
            raise ValueError(f"{block.name_hint}: not a select on a row's flag: {condition}")
        flag = _access(_region(block, condition.a.source), lanes, lambda i: tirx.BufferLoad(condition.a.source, i))
        chosen = (_added(block, side, lanes) for side in term.args[1:])
        return tirx.if_then_else(flag != condition.b, *chosen)
    if _is_popcount(term):
        act, sign, mask = _operands(block, term.args[0], lanes)
        return tirx.popcount(_counters((act ^ sign) & mask, lanes))
    if isinstance(term, tirx.Sub) and _is_popcount(_uncast(term.a)):  # popcount(m & z) - (popcount(x) << 1)
        valid = _uncast(term.a).args[0]
        twice = _uncast(term.b)
        if not (isinstance(valid, tirx.BitwiseAnd) and isinstance(twice, tirx.LShift)):
            raise ValueError(f"{block.name_hint}: not an exact Sign term: {term}")
        mask, nonzero = (_load(block, load, lanes) for load in (valid.a, valid.b))
        act, sign, _ = _operands(block, _uncast(twice.a).args[0], lanes)
        kept = _counters(mask & nonzero, lanes)
        offset = tirx.Broadcast(tirx.const(exact_sign.COUNTER_OFFSET, "uint16"), COUNTERS * lanes)
        differ = tirx.popcount(_counters(act ^ sign, lanes) & kept)
        return offset + tirx.popcount(kept) - (differ + differ)
    raise ValueError(f"{block.name_hint}: not a popcount term: {term}")


def _operands(block: s_tir.SBlock, masked: tirx.PrimExpr, lanes: int) -> tuple[tirx.PrimExpr, ...]:
    """The vectors ``a``, ``w``, ``m`` of ``(a ^ w) & m``."""
    if not (isinstance(masked, tirx.BitwiseAnd) and isinstance(masked.a, tirx.BitwiseXor)):
        raise ValueError(f"{block.name_hint}: not a popcount of (a ^ w) & m: {masked}")
    loads = (masked.a.a, masked.a.b, masked.b)
    return tuple(_load(block, load, lanes) if isinstance(load, TensorLoad) else load for load in loads)


def _is_popcount(expr: tirx.PrimExpr) -> bool:
    return isinstance(expr, Call) and expr.op.name == "tirx.popcount"


def _uncast(expr: tirx.PrimExpr) -> tirx.PrimExpr:
    return expr.value if isinstance(expr, tirx.Cast) else expr


def fold_words(words: int) -> int:
    """Words per fold block of a tile's ``words`` counts: the most (up to ``FOLD_WORDS``, whole
    vectors) that divide them."""
    return max(w for w in range(VECTOR_WORDS, FOLD_WORDS + 1, VECTOR_WORDS) if words % w == 0)


def _fold(block: s_tir.SBlock) -> tirx.Stmt:
    """A copy of the counters of up to four vectors -> their sum per word (exact below 2^16), as a
    tree of pairwise adds (``addp.8h``): two levels sum each word's four counters, in word order."""
    store, words = _inner_store(block), _lanes(block)
    copied = _uncast(store.value)  # the fold's own dtype may be narrower than the counts'
    if not isinstance(copied, TensorLoad):
        raise ValueError(f"{block.name_hint}: not a copy: {store.value}")
    vectors = words // VECTOR_WORDS
    if words % VECTOR_WORDS or not 0 < vectors <= FOLD_WORDS // VECTOR_WORDS:
        raise ValueError(f"{block.name_hint}: {words} words are not 1 to 4 whole vectors")
    region = _region(block, copied.source)
    *at, first = (r.min for r in region)

    def counters(v: int) -> tirx.PrimExpr:
        run = tirx.Ramp(first + v * VECTOR_WORDS, 1, VECTOR_WORDS)
        return _counters(tirx.BufferLoad(copied.source, [*at, run]), VECTOR_WORDS)

    halves = [_pairwise(counters(v), counters(min(v + 1, vectors - 1))) for v in range(0, vectors, 2)]
    sums = _pairwise(halves[0], halves[-1])  # lane i: word i (a lone half pairs with itself)
    if words < COUNTERS * VECTOR_WORDS:
        sums = tirx.Shuffle([sums], [tirx.const(i, "int32") for i in range(words)])
    out = _access(_region(block, store.buffer, writes=True), words, lambda i: tirx.BufferLoad(store.buffer, i))
    return tirx.BufferStore(store.buffer, sums.astype(f"{store.buffer.dtype}x{words}"), list(out.indices))


def _fold_by_columns(block: s_tir.SBlock) -> tirx.Stmt:
    """The counters of one vector (two words: two output channels) in each of a tile's columns
    -> each channel's counts as a run along the columns, the layout of an NCHW epilogue's vectors.
    Per four columns, a tree of pairwise adds leaves ``[c0 w0, c0 w1, c1 w0, ..., c3 w1]`` in
    one vector, so each channel's run is a shuffle of its even or odd lanes (widened to 32 bits,
    one ``and`` or ``ushr``), where counts folded per column reached the epilogue's column
    vectors a lane at a time."""
    store = _inner_store(block)
    copied = _uncast(store.value)
    if not isinstance(copied, TensorLoad):
        raise ValueError(f"{block.name_hint}: not a copy: {store.value}")
    *at, columns, words = _region(block, copied.source)
    *out_at, out_words, out_columns = _region(block, store.buffer, writes=True)
    if int(words.extent) != VECTOR_WORDS or int(out_words.extent) != VECTOR_WORDS:
        raise ValueError(f"{block.name_hint}: a fold by columns takes one vector of {VECTOR_WORDS} words per column")
    count = int(columns.extent)

    def counters(j: int) -> tirx.PrimExpr:
        index = [r.min for r in at] + [columns.min + min(j, count - 1), tirx.Ramp(words.min, 1, VECTOR_WORDS)]
        return _counters(tirx.BufferLoad(copied.source, index), VECTOR_WORDS)

    groups = [
        _pairwise(_pairwise(counters(g), counters(g + 1)), _pairwise(counters(g + 2), counters(g + 3)))
        for g in range(0, count, COLUMN_GROUP)
    ]
    runs = []
    for word in range(VECTOR_WORDS):
        lanes = [
            (j // COLUMN_GROUP) * COUNTERS * VECTOR_WORDS + (j % COLUMN_GROUP) * VECTOR_WORDS + word
            for j in range(count)
        ]
        run = tirx.Shuffle(groups, [tirx.const(i, "int32") for i in lanes]).astype(f"{store.buffer.dtype}x{count}")
        index = [r.min for r in out_at] + [out_words.min + word, tirx.Ramp(out_columns.min, 1, count)]
        runs.append(tirx.BufferStore(store.buffer, run, index))
    return tirx.SeqStmt(runs)


def _pairwise(a: tirx.PrimExpr, b: tirx.PrimExpr) -> tirx.PrimExpr:
    """The sums of neighbouring counters of ``a``, then of ``b``: NEON's ``addp``, written as
    even plus odd lanes so that any target computes it (LLVM selects ``addp`` on aarch64)."""
    width = COUNTERS * VECTOR_WORDS
    lanes = [tirx.Shuffle([a, b], [tirx.const(i, "int32") for i in range(first, 2 * width, 2)]) for first in (0, 1)]
    return lanes[0] + lanes[1]
