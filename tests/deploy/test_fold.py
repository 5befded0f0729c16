"""Conv-BN folding: same logits for every zoo model, no foldable BatchNorm left, torch's own fusion as oracle."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval
from tiny_runs import randomise_batchnorm
from zoo_inputs import small_input, zoo_params

from cnnkit.deploy.fold import fold_batchnorm, foldable_pairs
from cnnkit.errors import CnnkitError
from cnnkit.models.factory import create_model

# BatchNorms that read something other than a conv's output: DenseNet's pre-activation norms read
# the concatenated features (norm1 of each dense layer, each transition's norm, the final norm5).
# ResNetV2's pre-activation norms likewise read a block's input (norm1) or the last block's sum (norm).
_NOT_AFTER_A_CONV = {"densenet": ("norm1", "norm", "norm5"), "resnetv2": ("norm1", "norm")}  # by family


def _batchnorms(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


@pytest.mark.parametrize("name", zoo_params())
def test_every_zoo_model_folds_to_the_same_logits(name: str) -> None:
    generator = torch.Generator().manual_seed(0)
    torch.manual_seed(0)
    model = create_model(name, num_classes=10).eval()
    randomise_batchnorm(model, generator)
    x = small_input(name, model, 2, generator)
    before = _batchnorms(model)
    folded = fold_batchnorm(model, example_input=x[:1])
    with torch.no_grad():
        expected, actual = model(x), folded(x)
    relative = float((actual - expected).abs().max() / expected.abs().max())
    assert relative <= 1e-4, f"{name}: folded logits differ by {relative:.2e} relative"
    left = _batchnorms(folded)
    allowed = next((names for family, names in _NOT_AFTER_A_CONV.items() if name.startswith(family)), ())
    assert all(n.rpartition(".")[2] in allowed for n in left), f"{name}: BatchNorm left after a conv: {left}"
    assert len(before) - len(left) == len(before) - sum(n.rpartition(".")[2] in allowed for n in before)
    assert foldable_pairs(folded, x[:1]) == []
    assert _batchnorms(model) == before, "the original model is untouched"


def test_fold_equals_torch_fuse_conv_bn_eval() -> None:
    generator = torch.Generator().manual_seed(1)
    conv = nn.Conv2d(4, 6, 3, padding=1, groups=2, bias=True)
    norm = nn.BatchNorm2d(6, eps=1e-3)
    model = nn.Sequential(conv, norm).eval()
    randomise_batchnorm(model, generator)
    oracle = fuse_conv_bn_eval(conv, norm)
    folded = fold_batchnorm(model, example_input=torch.zeros(1, 4, 5, 5))
    assert isinstance(folded[1], nn.Identity)
    torch.testing.assert_close(folded[0].weight, oracle.weight, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(folded[0].bias, oracle.bias, rtol=1e-6, atol=1e-7)


class _CrossedOrder(nn.Module):
    """bn_a is registered right after conv_a but reads conv_b's output: module order would mislead."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a, self.bn_a = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)
        self.conv_b, self.bn_b = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)
        self.shared = nn.Conv2d(4, 4, 1)
        self.bn_shared = nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = self.bn_a(self.conv_b(x)), self.bn_b(torch.relu(self.conv_a(x)))
        return self.bn_shared(self.shared(self.shared(a + b)))


def test_pairs_follow_data_flow_and_skip_shared_convs() -> None:
    model = _CrossedOrder().eval()
    randomise_batchnorm(model, torch.Generator().manual_seed(2))
    x = torch.randn(2, 3, 4, 4)
    assert foldable_pairs(model, x) == [("conv_b", "bn_a")], "bn_b reads a ReLU; `shared` runs twice"
    folded = fold_batchnorm(model, example_input=x)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-6)


class _ConvOutputReadTwice(nn.Module):
    """conv_a's output feeds bn_a and a shortcut; conv_b's is rectified in place before bn_b reads
    the very same tensor: folding either would change what the other reader sees."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_a, self.bn_a = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)
        self.conv_b, self.bn_b = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)
        self.conv_c, self.bn_c = nn.Conv2d(4, 4, 1), nn.BatchNorm2d(4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv_a(x)
        z = self.bn_a(y) + y
        return self.bn_c(self.conv_c(self.bn_b(torch.relu_(self.conv_b(z)))))


def test_a_conv_output_with_other_readers_is_not_folded() -> None:
    model = _ConvOutputReadTwice().eval()
    randomise_batchnorm(model, torch.Generator().manual_seed(3))
    x = torch.randn(2, 3, 4, 4)
    assert foldable_pairs(model, x) == [("conv_c", "bn_c")]
    folded = fold_batchnorm(model, example_input=x)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-5, atol=1e-6)


def test_training_mode_is_refused() -> None:
    with pytest.raises(CnnkitError, match="training mode"):
        fold_batchnorm(nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2)))
