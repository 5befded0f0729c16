"""Load a local weight file into a zoo model: safe formats only, strict names, adapted ends.

`.safetensors` files are read with safetensors; `.pth/.pt/.bin` with `torch.load(weights_only=True)`,
which refuses pickles that would build arbitrary objects (never an unsafe unpickle). A classifier
of another size is re-initialised and a first conv of another channel count is adapted
(`cnnkit.models.adapt`); every other tensor must match by name and shape (strict=True).
"""

from __future__ import annotations

import logging
import pickle
import re
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from cnnkit.errors import CnnkitError
from cnnkit.models.adapt import adapt_input_conv, model_cfg

logger = logging.getLogger("cnnkit")
StateDict = dict[str, torch.Tensor]

TORCH_SUFFIXES = (".pth", ".pt", ".bin")
WRAPPER_ENTRIES = ("state_dict", "model")  # where training checkpoints keep the weights
# Prefixes a wrapper adds to every key of its model's state dict: DDP's 'module.' and torch.compile's
# '_orig_mod.' (in either order when both wrap one model).
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
MAX_LISTED_KEYS = 5
# torchvision's published DenseNet files name the dense layers' parts 'norm.1', 'conv.2', ... (from
# before module names could not hold dots); torchvision renames them when it loads them
# (torchvision.models.densenet._load_state_dict), and so does cnnkit.
LEGACY_DENSE_LAYER_KEY = re.compile(
    r"^(.*denselayer\d+\.(?:norm|relu|conv))\.((?:[12])\.(?:weight|bias|running_mean|running_var))$"
)


def _listed(keys: list[str]) -> str:
    shown = ", ".join(keys[:MAX_LISTED_KEYS])
    return shown + (f" (+{len(keys) - MAX_LISTED_KEYS} more)" if len(keys) > MAX_LISTED_KEYS else "")


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        reason = str(error).strip().splitlines()[0][:200]
        raise CnnkitError(
            f"refused to load {path}: it is not a plain weights file (weights_only unpickling failed: {reason}); "
            "cnnkit never runs an unsafe unpickle, convert it to .safetensors"
        ) from error
    except (RuntimeError, EOFError, ValueError, OSError) as error:
        raise CnnkitError(f"cannot read {path} as a torch weight file: {error}") from error


def _unwrap(obj: Any, path: Path) -> StateDict:
    """The tensor dict in a raw state dict or in a checkpoint's 'state_dict'/'model' entry."""
    if isinstance(obj, Mapping):
        for entry in WRAPPER_ENTRIES:
            if isinstance(obj.get(entry), Mapping):
                obj = obj[entry]
                break
    if not isinstance(obj, Mapping) or not obj:
        found = f"keys {_listed([str(k) for k in obj])}" if isinstance(obj, Mapping) else type(obj).__name__
        raise CnnkitError(
            f"{path} holds no state dict (expected name -> tensor, or a 'state_dict'/'model' entry; found {found})"
        )
    not_tensors = [str(k) for k, v in obj.items() if not isinstance(v, torch.Tensor)]
    if not_tensors:
        raise CnnkitError(f"{path}: entries that are not tensors: {_listed(not_tensors)}")
    return dict(obj)


def read_state_dict(path: str | Path) -> StateDict:
    """The state dict stored in a local `.safetensors` or `.pth/.pt/.bin` file, on the CPU.

    The prefixes DDP ('module.') and torch.compile ('_orig_mod.') put on every key are stripped.
    Errors are CnnkitError naming the file.
    """
    path = Path(path)
    if not path.is_file():
        raise CnnkitError(f"weight file {path} not found")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        try:
            state = load_file(path, device="cpu")
        except (SafetensorError, OSError, ValueError) as error:
            raise CnnkitError(f"cannot read {path} as a safetensors file: {error}") from error
    elif suffix in TORCH_SUFFIXES:
        state = _unwrap(_torch_load(path), path)
    else:
        supported = ", ".join((".safetensors", *TORCH_SUFFIXES))
        raise CnnkitError(f"{path}: unsupported weight file type {suffix!r} (use {supported})")
    return _strip_wrapper_prefixes(state)


def _strip_wrapper_prefixes(state: StateDict) -> StateDict:
    """`state` without the wrapper prefixes that every one of its keys starts with."""
    while state:
        prefix = next((p for p in WRAPPER_PREFIXES if all(key.startswith(p) for key in state)), None)
        if prefix is None:
            break
        state = {key[len(prefix):]: value for key, value in state.items()}
    return state


def _replace_classifier_entries(
    model: nn.Module, state: StateDict, own: StateDict, source: str, classifier: str | None = None
) -> str | None:
    """Swap the file's classifier (default_cfg's, or `classifier`) for the model's own fresh one
    when their shapes differ; drop it for a model with num_classes=0 (no classifier parameters)."""
    classifier = classifier or model_cfg(model).classifier
    prefix = classifier + "."
    own_keys = [key for key in own if key.startswith(prefix)]
    file_keys = [key for key in state if key.startswith(prefix)]
    if all(key in state and state[key].shape == own[key].shape for key in own_keys) and (own_keys or not file_keys):
        return None
    file_weight = state.get(prefix + "weight")
    file_classes = file_weight.shape[0] if file_weight is not None else "none"
    for key in file_keys:
        del state[key]
    if not own_keys:
        return f"{source}: classifier {classifier!r} dropped: the model has no classifier (file has {file_classes})"
    state.update({key: own[key] for key in own_keys})
    classes = own[prefix + "weight"].shape[0]
    return f"{source}: classifier {classifier!r} re-initialised for {classes} classes (file has {file_classes})"


def _fit_aux_heads(model: nn.Module, state: StateDict, own: StateDict, source: str) -> list[str | None]:
    """The file's auxiliary heads (torchvision's GoogLeNet and Inception-v3 files hold them): dropped
    when the model was built without them (as torchvision does), their classifiers re-sized otherwise."""
    notes: list[str | None] = []
    for classifier in getattr(model, "aux_classifiers", ()):
        head = classifier.rsplit(".", 1)[0]
        if any(key.startswith(head + ".") for key in own):
            notes.append(_replace_classifier_entries(model, state, own, source, classifier))
            continue
        dropped = [key for key in state if key.startswith(head + ".")]
        for key in dropped:
            del state[key]
        if dropped:
            notes.append(f"{source}: auxiliary head {head!r} dropped ({len(dropped)} entries; no aux_logits)")
    return notes


def _adapt_first_conv(model: nn.Module, state: StateDict, own: StateDict, source: str) -> str | None:
    """Adapt the file's first-conv weight to the model's input channels when they differ."""
    key = model_cfg(model).first_conv + ".weight"
    if key not in state or key not in own or state[key].ndim != 4 or state[key].shape[1] == own[key].shape[1]:
        return None
    file_chans, in_chans = state[key].shape[1], own[key].shape[1]
    try:
        state[key] = adapt_input_conv(state[key], in_chans)
    except ValueError as error:
        raise CnnkitError(f"{source}: {key}: {error}") from error
    return f"{source}: first conv {key!r} adapted from {file_chans} to {in_chans} input channels"


def _rename_legacy_keys(state: StateDict) -> None:
    """'features.denseblock1.denselayer1.norm.1.weight' -> '...denselayer1.norm1.weight', in place."""
    for key in list(state):
        match = LEGACY_DENSE_LAYER_KEY.match(key)
        if match:
            state[match.group(1) + match.group(2)] = state.pop(key)


def _fill_batch_counters(state: StateDict, own: StateDict) -> None:
    """BatchNorm's `num_batches_tracked`, absent from files saved before PyTorch 0.4.1 (torchvision's
    original weights, e.g. resnet18-f37072fd.pth): the model's own, as load_state_dict fills them."""
    for key, value in own.items():
        if key.endswith(".num_batches_tracked") and key not in state:
            state[key] = value


def fit_and_load(model: nn.Module, state: StateDict, *, source: str) -> list[str]:
    """Load `state` into `model` with strict=True after adapting its classifier and first conv.

    Returns one-line notes saying what was adapted (empty when the weights fit as they were).
    Missing, unexpected or mis-shaped keys are a CnnkitError naming `source` and up to 5 keys.
    """
    state = dict(state)
    _rename_legacy_keys(state)
    own = model.state_dict()
    notes = [
        _replace_classifier_entries(model, state, own, source),
        *_fit_aux_heads(model, state, own, source),
        _adapt_first_conv(model, state, own, source),
    ]
    _fill_batch_counters(state, own)
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    mismatched = [
        f"{key} {tuple(state[key].shape)} vs {tuple(own[key].shape)}"
        for key in own
        if key in state and state[key].shape != own[key].shape
    ]
    labelled = {"missing keys": missing, "unexpected keys": unexpected, "shape mismatch (file vs model)": mismatched}
    problems = [f"{label}: {_listed(keys)}" for label, keys in labelled.items() if keys]
    if problems:
        raise CnnkitError(f"{source} does not fit {type(model).__name__}: " + "; ".join(problems))
    model.load_state_dict(state, strict=True)
    return [note for note in notes if note is not None]


def load_pretrained(model: nn.Module, path: str | Path) -> list[str]:
    """Load the weight file at `path` into `model` (see `fit_and_load`); returns the adaptation notes."""
    return fit_and_load(model, read_state_dict(path), source=str(path))


def build_with_weights(
    builder: Callable[..., nn.Module],
    path: Path,
    *,
    num_classes: int,
    in_chans: int,
    remove_classifier: bool = False,
    **overrides: Any,
) -> nn.Module:
    """Read `path`, build a model with `builder`, load the weights; each adaptation is logged at INFO on 'cnnkit'.
    `remove_classifier` (num_classes=0) removes the final layer before loading: the file's is dropped."""
    state = read_state_dict(path)  # first, so that a bad file fails before an expensive build
    model = builder(num_classes=num_classes, in_chans=in_chans, **overrides)
    if remove_classifier:
        if not callable(getattr(model, "reset_classifier", None)):
            raise CnnkitError(f"{type(model).__name__} is not a ClassifierModel: it takes no num_classes=0")
        model.reset_classifier(0)
    for note in fit_and_load(model, state, source=str(path)):
        logger.info(note)
    return model
