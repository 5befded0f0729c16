"""The model registry: one name per builder, discoverable, with clear errors for unknown names."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.models.factory import create_model, list_models
from cnnkit.models.registry import register_model, unregister_model

CALLS: list[dict[str, object]] = []
PROBE = "zoo_infra_registry_probe"


def zoo_infra_registry_probe(num_classes: int = 1000, in_chans: int = 3, **overrides: object) -> nn.Module:
    """A throw-away builder that records what create_model passed it."""
    CALLS.append({"num_classes": num_classes, "in_chans": in_chans, **overrides})
    return nn.Linear(in_chans, num_classes)


@pytest.fixture
def probe() -> Iterator[str]:
    CALLS.clear()
    register_model(PROBE, zoo_infra_registry_probe)
    yield PROBE
    unregister_model(PROBE)


def test_register_model_refuses_a_duplicate_name(probe):
    with pytest.raises(ValueError, match="already registered"):
        register_model(PROBE, zoo_infra_registry_probe)
    zoo_name = list_models()[0]

    def impostor(num_classes: int = 1000, in_chans: int = 3) -> nn.Module:
        return nn.Identity()

    with pytest.raises(ValueError, match=f"{zoo_name!r} is already registered"):
        register_model(zoo_name)(impostor)


def test_register_model_takes_the_name_as_a_decorator_argument():
    @register_model("zoo_infra_decorated_probe")
    def builder(num_classes: int = 1000, in_chans: int = 3) -> nn.Module:
        return nn.Linear(in_chans, num_classes)

    try:
        assert builder.__name__ == "builder"  # the registry does not read or rename the function
        assert isinstance(create_model("zoo_infra_decorated_probe", num_classes=2), nn.Linear)
    finally:
        unregister_model("zoo_infra_decorated_probe")
    with pytest.raises(TypeError, match="needs the model's name as its first argument"):
        register_model(builder)  # type: ignore[call-overload]  # the old, name-less form


def test_unregister_removes_and_refuses_unknown(probe):
    assert probe in list_models()
    unregister_model(probe)
    assert probe not in list_models()
    with pytest.raises(ValueError, match="is not registered"):
        unregister_model(probe)
    register_model(PROBE, zoo_infra_registry_probe)  # the fixture removes it again


def test_create_model_passes_classes_channels_and_overrides(probe):
    model = create_model(probe, num_classes=5, in_chans=2, width=8)
    assert CALLS == [{"num_classes": 5, "in_chans": 2, "width": 8}]
    assert isinstance(model, nn.Linear) and (model.in_features, model.out_features) == (2, 5)


@pytest.mark.parametrize(
    "bad, least", [({"num_classes": -3}, 0), ({"in_chans": 0}, 1), ({"num_classes": 2.5}, 0), ({"in_chans": -1}, 1)]
)
def test_create_model_refuses_bad_sizes_naming_the_argument(probe, bad, least):
    """num_classes may be 0 (timm's feature extractor, see test_headless.py); in_chans may not."""
    (argument,) = bad
    with pytest.raises(CnnkitError, match=f"{argument} must be an int >= {least}"):
        create_model(probe, **bad)
    assert CALLS == []  # refused before the builder ran


def test_unknown_model_is_a_clear_error_with_suggestions(probe):
    expected = r"unknown model 'zoo_infra_registry_prob'; similar: zoo_infra_registry_probe"
    with pytest.raises(CnnkitError, match=expected):
        create_model("zoo_infra_registry_prob")


def test_list_models_is_sorted_and_filters_by_pattern(probe):
    names = list_models()
    assert names == sorted(names) and len(names) == len(set(names))
    assert list_models("zoo_infra_*") == [probe]
    assert list_models("no_such_model_*") == []
