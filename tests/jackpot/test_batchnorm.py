import torch
from torch import nn

from mptc.data import DataSplit
from mptc.jackpot.batchnorm import recalibrated


def test_recalibration_measures_the_statistics_and_leaves_the_model_alone():
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    x = torch.randn(600, 3) * 3 + 1
    fixed = recalibrated(model, DataSplit(x, torch.zeros(600, dtype=torch.long)), batch_size=100)
    with torch.no_grad():
        pre = model[0](x)
    torch.testing.assert_close(fixed[1].running_mean, pre.mean(0), rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(fixed[1].running_var, pre.var(0), rtol=0.05, atol=1e-4)
    assert torch.equal(model[1].running_mean, torch.zeros(4)) and not fixed.training
