"""Users' own models, importable by path (``tests.models.user_nets:TinyResNet``): not from the zoo."""

from __future__ import annotations

from torch import Tensor, nn

ACTIVATIONS = {"relu": nn.ReLU, "hardtanh": nn.Hardtanh}


class Block(nn.Module):
    """A ResNet basic block: ``act(bn2(conv2(act(bn1(conv1(x))))) + shortcut(x))``.

    With ``act="hardtanh"`` the inputs of the convs can be negative, so binary activations in
    front of them carry information (after a ReLU, sign(x) is always +1).
    """

    def __init__(self, cin: int, cout: int, stride: int, act: str = "relu") -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu = ACTIVATIONS[act]()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x: Tensor) -> Tensor:
        y = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(y)) + self.shortcut(x))


class TinyResNet(nn.Module):
    """Stem, two blocks (the second down-sampling), global pooling and a classifier with a bias."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, width: int = 8, act: str = "relu") -> None:
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), ACTIVATIONS[act]()
        )
        self.layer1 = Block(width, width, 1, act)
        self.layer2 = Block(width, 2 * width, 2, act)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * width, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.pool(self.layer2(self.layer1(self.stem(x)))).flatten(1))


class MixedConvNet(nn.Module):
    """Every Conv2d option a conversion must carry: groups, depthwise, dilation, bias, padding mode."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1, bias=True)
        self.grouped = nn.Conv2d(8, 8, 3, padding=2, dilation=2, groups=2, bias=False)
        self.depthwise = nn.Conv2d(8, 8, (3, 1), padding=(1, 0), groups=8, bias=True, padding_mode="reflect")
        self.pointwise = nn.Conv2d(8, 16, 1, stride=2)
        self.act = nn.ReLU()
        self.head = nn.Linear(16 * 4 * 4, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        x = self.act(self.conv(x))
        x = self.act(self.grouped(x))
        x = self.act(self.depthwise(x))
        x = self.act(self.pointwise(x))
        return self.head(x.flatten(1))


def tiny_resnet(width: int = 8) -> nn.Module:
    """A factory function, as ``torchvision.models:resnet18`` is one."""
    return TinyResNet(width=width)


class DropoutNet(nn.Module):
    """A conv and a classifier with dropout between them: training draws from the global RNG."""

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 8, 3, padding=1)
        self.drop = nn.Dropout(0.3)
        self.fc = nn.Linear(8 * 8 * 8, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc(self.drop(self.conv(x).relu()).flatten(1))


def not_a_model() -> str:
    """A factory that returns something else: refused when called."""
    return "a string"
