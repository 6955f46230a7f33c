"""Re-evaluate a run directory's ticket, rebuilt from its seed and mask bits."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from mptc.data import load_dataset
from mptc.errors import InputError, VerificationError
from mptc.ticket import load_ticket, ticket_signature
from mptc.train.loop import evaluate
from mptc.train.rundir import RunDir


def evaluate_run(run_dir: str | Path, dataset: str | None = None) -> dict[str, Any]:
    """Test accuracy and loss of the run's ticket on ``dataset`` (default: the run's own)."""
    run = RunDir(Path(run_dir))
    if not run.ticket.is_file():
        raise InputError(f"{run.root} has no ticket.safetensors: train it first (or finish it with --resume)")
    model, config = load_ticket(run.ticket)
    data = load_dataset(dataset or config.dataset)
    input_shape, num_classes = ticket_signature(run.ticket)
    if (tuple(data.input_shape), data.num_classes) != (input_shape, num_classes):
        raise InputError(
            f"dataset {data.name} has input shape {data.input_shape} and {data.num_classes} classes; "
            f"the run was trained on {config.dataset} with {input_shape} and {num_classes}"
        )
    accuracy, loss = evaluate(model, data.test)
    if not math.isfinite(loss):  # NaN logits still have an argmax: the accuracy would look like one
        raise VerificationError(
            f"the ticket's logits on {data.name} hold NaN or Inf (test loss {loss}): its accuracy means nothing"
        )
    return {"dataset": data.name, "test_accuracy": accuracy, "test_loss": loss, "samples": len(data.test)}
