import torch

from mptc.approximate.distill import DistillConfig, RandomBinaryStudent, distill
from mptc.approximate.target import load_target
from mptc.data import load_dataset
from mptc.nn.layers import masked_layers


def test_student_is_a_random_signed_constant_network():
    student = RandomBinaryStudent([64, 16, 10], DistillConfig(factor=2, depth=2))
    assert student.widths == [64, 32, 32, 10]
    for _, layer in masked_layers(student):
        assert layer.weight.abs().unique().numel() == 1  # +-sigma
    assert sorted(n for n, p in student.named_parameters() if p.requires_grad) == [
        "body.1.scores",
        "body.4.scores",
        "body.7.scores",
        "scale",
    ]


def test_small_distillation_mimics_the_target(tiny_dense_run):
    model, target, _ = load_target(tiny_dense_run.run_dir)
    dataset = load_dataset("digits")
    student = distill(model, dataset, target.widths, DistillConfig(factor=0.5, epochs=3))
    with torch.no_grad():
        agreement = (student(dataset.test.x).argmax(1) == model(dataset.test.x).argmax(1)).float().mean()
    assert agreement > 0.8


def test_random_inputs_join_each_batch(tiny_dense_run):
    model, target, _ = load_target(tiny_dense_run.run_dir)
    dataset = load_dataset("digits")
    calls = []
    hook = model.register_forward_hook(lambda module, inputs, output: calls.append(len(inputs[0])))
    distill(model, dataset, target.widths, DistillConfig(factor=0.25, epochs=1, batch_size=512, random_inputs=0.5))
    hook.remove()
    assert calls[0] == len(dataset.train) and calls[1:] == [256, 256, 206]
