"""Tickets inside random +-1 networks that approximate a given trained MLP (Sreenivasan et al. 2022).

Two routes: :mod:`~mptc.approximate.distill` learns a mask over a wider signed-constant network
by matching the target's logits; :mod:`~mptc.approximate.construct` builds one exactly on the
target's integer form (:mod:`~mptc.approximate.integer`) from a counter-based random network
(:mod:`~mptc.approximate.rng`). :mod:`~mptc.approximate.sweep` measures error against width.
"""

from mptc.approximate.construct import Construction, construct
from mptc.approximate.distill import DistillConfig, distill
from mptc.approximate.integer import IntegerForm, integer_form
from mptc.approximate.sweep import ApproximateConfig, approximate
from mptc.approximate.target import AffineMLP, fold_mlp, load_target

__all__ = [
    "AffineMLP",
    "ApproximateConfig",
    "Construction",
    "DistillConfig",
    "IntegerForm",
    "approximate",
    "construct",
    "distill",
    "fold_mlp",
    "integer_form",
    "load_target",
]
