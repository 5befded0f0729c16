"""MC dropout: only dropout layers sample, BatchNorm untouched, p=0 is the eval output."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnkit import create_model
from cnnkit.errors import CnnkitError
from cnnkit.explain import mc_dropout


def _model(drop_rate: float) -> nn.Module:
    torch.manual_seed(0)
    model = create_model("mnist_cnn", num_classes=10, in_chans=1, drop_rate=drop_rate)
    # Non-trivial running statistics, as after training.
    model.train()
    with torch.no_grad():
        model(torch.randn(16, 1, 28, 28) * 2 + 0.5)
    return model.eval()


def test_batchnorm_statistics_are_bit_identical_and_modes_restored() -> None:
    model = _model(0.5)
    before = {name: buffer.clone() for name, buffer in model.named_buffers()}
    model.features.train()  # a mixed mode the call must restore exactly
    modes = {name: module.training for name, module in model.named_modules()}
    images = torch.randn(4, 1, 28, 28)
    result = mc_dropout(model, images, samples=6, generator=torch.Generator().manual_seed(1))
    for name, buffer in model.named_buffers():
        assert torch.equal(buffer, before[name]), f"{name} changed"
    assert {name: module.training for name, module in model.named_modules()} == modes
    assert result.mean.shape == (4, 10) and result.std.shape == (4, 10)
    assert float(result.std.max()) > 0, "dropout at p=0.5 must make the samples differ"
    assert torch.allclose(result.mean.sum(dim=1), torch.ones(4), atol=1e-5)
    assert bool((result.mutual_information <= result.entropy + 1e-6).all())


def test_dropout_zero_equals_eval_output() -> None:
    model = _model(0.0)
    images = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        expected = model(images).softmax(dim=1)
    result = mc_dropout(model, images, samples=4, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(result.mean, expected, atol=1e-6)
    assert float(result.std.max()) < 1e-6 and float(result.mutual_information.max()) < 1e-5
    entropy = -(expected * expected.log()).sum(dim=1)
    assert torch.allclose(result.entropy, entropy, atol=1e-5)


def test_samples_are_reproducible_from_the_generator_and_spare_the_global_rng() -> None:
    model, images = _model(0.5), torch.randn(2, 1, 28, 28)
    state = torch.random.get_rng_state()
    first = mc_dropout(model, images, samples=5, generator=torch.Generator().manual_seed(7))
    assert torch.equal(torch.random.get_rng_state(), state)
    second = mc_dropout(model, images, samples=5, generator=torch.Generator().manual_seed(7))
    other = mc_dropout(model, images, samples=5, generator=torch.Generator().manual_seed(8))
    assert torch.equal(first.mean, second.mean) and not torch.equal(first.mean, other.mean)


def test_mutual_information_matches_its_definition() -> None:
    """With a hand-made 'model' whose two dropout draws are known, MI = H[mean] - mean H."""
    model = nn.Sequential(nn.Dropout(0.5), nn.Linear(2, 2, bias=False))
    with torch.no_grad():
        model[1].weight.copy_(torch.tensor([[3.0, 0.0], [0.0, 3.0]]))
    result = mc_dropout(model, torch.tensor([[1.0, 0.0]]), samples=200, generator=torch.Generator().manual_seed(0))
    # Samples are softmax([6, 0]) (kept, scaled by 2) or softmax([0, 0]) (dropped), each half the time.
    kept, dropped = torch.tensor([6.0, 0.0]).softmax(0), torch.tensor([0.5, 0.5])
    p = float((result.mean[0, 0] - dropped[0]) / (kept[0] - dropped[0]))  # share of kept draws
    assert 0.35 < p < 0.65
    assert float(result.std[0, 0]) == pytest.approx(float(kept[0] - dropped[0]) * (p * (1 - p)) ** 0.5, abs=1e-5)
    mean = p * kept + (1 - p) * dropped
    h = lambda q: float(-(q * q.log()).sum())  # noqa: E731
    assert float(result.mutual_information[0]) == pytest.approx(h(mean) - (p * h(kept) + (1 - p) * h(dropped)), abs=1e-5)


def test_a_model_without_dropout_is_a_clear_error() -> None:
    model = create_model("resnet18", num_classes=3).train()
    with pytest.raises(CnnkitError, match="no dropout layer"):
        mc_dropout(model, torch.randn(1, 3, 32, 32))
    assert model.training, "the model is left as it was"


def test_a_float64_batch_runs_in_the_models_float32_and_an_empty_one_is_refused() -> None:
    model, images = _model(0.5), torch.randn(2, 1, 28, 28)
    expected = mc_dropout(model, images, samples=3, generator=torch.Generator().manual_seed(4))
    result = mc_dropout(model, images.double(), samples=3, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(result.mean, expected.mean, atol=1e-6)
    with pytest.raises(CnnkitError, match="empty batch"):
        mc_dropout(model, images[:0])
