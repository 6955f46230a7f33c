"""Lottery jackpots (Zhang et al. 2021): masks searched inside a frozen pre-trained model.

* :mod:`~mptc.jackpot.pretrained`: load a ``--method dense`` run (or a safetensors state dict)
  as our architecture and copy it onto the masked model.
* :mod:`~mptc.jackpot.magnitude`: one global magnitude threshold -> per-layer kept counts, the
  magnitude mask and the 1.0/0.99 initial scores; the overlap of two masks.
* :mod:`~mptc.jackpot.restriction`: the short restriction (bounded mask swaps per step).
* :mod:`~mptc.jackpot.search`: the training hooks that put these together, registered for
  ``--method jackpot`` and ``--method magnitude`` when this package is imported.
"""

from mptc.jackpot.magnitude import global_kept_counts, magnitude_mask, magnitude_scores, mask_overlap
from mptc.jackpot.restriction import restrict_mask_change, restriction_rate
from mptc.jackpot.search import JackpotSearch, start_from_magnitude

__all__ = [
    "JackpotSearch",
    "global_kept_counts",
    "magnitude_mask",
    "magnitude_scores",
    "mask_overlap",
    "restrict_mask_change",
    "restriction_rate",
    "start_from_magnitude",
]
