"""`Predictor`: the one inference path, from whatever a user holds to logits, features and top-k.

It owns what every caller would otherwise repeat: the run's evaluation preprocessing (decode with
the pixel guard and the training decode hint, resize / centre-crop / normalise from
`default_cfg`), batching, the backend's forward pass, temperature, softmax and top-k. `cnnkit
predict`, `cnnkit eval`, explain, serve and embeddings all go through it.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from cnnkit.data.decode import DEFAULT_MAX_PIXELS, BadImageError
from cnnkit.data.pipeline import Pipeline, eval_pipeline
from cnnkit.errors import CnnkitError
from cnnkit.inference.backends import Backend, TorchBackend
from cnnkit.inference.images import ImageLike, source_name, to_uint8_image
from cnnkit.inference.tta import TTA, TTABackend
from cnnkit.models.base import DefaultCfg, require_classifier


@dataclass(frozen=True)
class ClassScore:
    """One ranked class: its name, its index in the model's output and its probability."""

    label: str
    index: int
    probability: float


@dataclass(frozen=True)
class Prediction:
    """The top-k classes of one input, best first; `error` instead when the input was unusable."""

    source: str
    top: tuple[ClassScore, ...] = ()
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def label(self) -> str:
        return self._best().label

    @property
    def index(self) -> int:
        return self._best().index

    @property
    def probability(self) -> float:
        return self._best().probability

    def _best(self) -> ClassScore:
        if not self.top:
            raise CnnkitError(f"{self.source}: no prediction ({self.error})")
        return self.top[0]


@dataclass(frozen=True)
class Failure:
    """An input that could not be used, by its position in the call and its name."""

    position: int
    source: str
    reason: str


@dataclass(frozen=True)
class Prepared:
    """Model-ready inputs (N, C, H, W) float, the positions they came from, and the failures."""

    batch: torch.Tensor
    positions: list[int]
    failures: list[Failure]


class Predictor:
    """A trained classifier ready for new images: `Predictor.from_run("runs/wafer").predict([...])`."""

    def __init__(self, backend: Backend, *, class_names: Sequence[str], default_cfg: DefaultCfg,
                 model_name: str = "", temperature: float | None = None, batch_size: int = 32,
                 max_pixels: int = DEFAULT_MAX_PIXELS) -> None:
        if batch_size < 1:
            raise CnnkitError(f"batch_size must be >= 1, got {batch_size}")
        if temperature is not None and not temperature > 0:
            raise CnnkitError(f"temperature must be > 0, got {temperature}")
        self.backend = backend
        self.class_names = tuple(class_names)
        self.default_cfg = default_cfg
        self.model_name = model_name
        self.temperature = temperature
        self.batch_size = batch_size
        self.max_pixels = max_pixels
        self.pipeline: Pipeline = eval_pipeline(default_cfg)
        self.mode = "L" if default_cfg.input_size[0] == 1 else "RGB"

    @classmethod
    def from_run(cls, run_dir: str | Path, *, device: str | torch.device | None = None,
                 batch_size: int = 32) -> Predictor:
        """The run's best weights, preprocessing and fitted temperature (if `cnnkit calibrate` ran)."""
        from cnnkit.inference.run import load_run

        model, summary = load_run(run_dir, device=device)
        return cls(TorchBackend(model, device=device), class_names=summary.class_names,
                   default_cfg=summary.default_cfg, model_name=summary.model_name,
                   temperature=summary.temperature, batch_size=batch_size)

    @classmethod
    def from_onnx(cls, path: str | Path, *, batch_size: int = 32, threads: int | None = None,
                  device: str | torch.device | None = "cpu") -> Predictor:
        """An .onnx written by `cnnkit export`, run with ONNX Runtime on `device` (cpu, cuda[:N];
        None: CUDA when onnxruntime has it); class names and preprocessing come from the file's
        metadata, and so does a calibrated run's temperature. `threads`: ONNX Runtime's intra-op
        threads."""
        from cnnkit.inference.onnx_backend import OnnxBackend, onnx_metadata

        meta = onnx_metadata(path)
        return cls(OnnxBackend(path, threads=threads, device=device), class_names=meta.class_names,
                   default_cfg=meta.default_cfg, model_name=meta.model_name, temperature=meta.temperature,
                   batch_size=batch_size)

    @classmethod
    def from_model(cls, model: nn.Module, class_names: Sequence[str], *, default_cfg: DefaultCfg | None = None,
                   device: str | torch.device | None = None, batch_size: int = 32) -> Predictor:
        """Wrap a model in memory; its own `default_cfg` decides the preprocessing unless given."""
        cfg = default_cfg if default_cfg is not None else getattr(model, "default_cfg", None)
        if cfg is None:
            raise CnnkitError(f"{type(model).__name__} has no default_cfg: pass default_cfg=")
        require_classifier(model, "a Predictor")
        return cls(TorchBackend(model, device=device), class_names=class_names, default_cfg=cfg,
                   batch_size=batch_size)

    def with_tta(self, tta: TTA) -> Predictor:
        """This predictor with test-time augmentation: each image's logits averaged over it and the
        views of `tta` (`cnnkit.inference.tta`); preprocessing, temperature and batching unchanged.
        Once: a TTA predictor refuses a second `with_tta` (it would average views of views)."""
        if isinstance(self.backend, TTABackend):
            raise CnnkitError(f"this predictor already averages the views {self.backend.tta.describe()}; name all "
                              "views in one TTA, e.g. TTA(('hflip', 'vflip'))")
        tta.check_input(*self.default_cfg.input_size[1:])
        return Predictor(TTABackend(self.backend, tta), class_names=self.class_names, default_cfg=self.default_cfg,
                         model_name=self.model_name, temperature=self.temperature, batch_size=self.batch_size,
                         max_pixels=self.max_pixels)

    @property
    def model(self) -> nn.Module:
        """The torch module behind the torch backend (Grad-CAM, features, fine-tuning need it)."""
        model = getattr(self.backend, "model", None)
        if not isinstance(model, nn.Module):
            raise CnnkitError(f"the {self.backend.name} backend has no torch model")
        return model

    @property
    def device(self) -> torch.device:
        """Where the backend runs the model."""
        return self.backend.device

    # -- preprocessing -------------------------------------------------------------------------

    def load(self, image: ImageLike, *, name: str = "<image>") -> torch.Tensor:
        """One input -> uint8 (C, H, W), decoded as training decoded it; BadImageError if unusable."""
        return to_uint8_image(image, mode=self.mode, size_hint=self.pipeline.decode_hint,
                              max_pixels=self.max_pixels, name=name)

    def sample(self, image: ImageLike, *, name: str = "<image>") -> torch.Tensor:
        """One input -> the per-sample stage's uint8 (C, H, W) at the model's input size."""
        return self.pipeline.sample(self.load(image, name=name))

    def normalise(self, samples: torch.Tensor) -> torch.Tensor:
        """uint8 (N, C, H, W) from `sample` -> the model's float input (the batch stage)."""
        return self.pipeline.batch(samples)

    def preprocess(self, images: Sequence[ImageLike] | torch.Tensor) -> Prepared:
        """Model-ready float batch of the usable inputs; unusable ones are listed, not raised."""
        if isinstance(images, torch.Tensor) and images.is_floating_point():
            batch = (images[None] if images.dim() == 3 else images).float()  # float64 / half: as decoded inputs
            self._check_shape(batch)
            return Prepared(batch, list(range(len(batch))), [])
        return self._prepare(_as_list(images), start=0)

    def _prepared_chunks(self, images: Sequence[ImageLike] | torch.Tensor | ImageLike) -> Iterator[Prepared]:
        """`preprocess` of batch_size inputs at a time, positions counted over the whole call, so a
        long list of files is never held as one float batch (10k images at 224 px: 6 GB)."""
        if isinstance(images, torch.Tensor) and images.is_floating_point():
            yield self.preprocess(images)
            return
        items = _as_list(images)
        for start in range(0, len(items), self.batch_size):
            yield self._prepare(items[start:start + self.batch_size], start=start)

    def _prepare(self, items: list[ImageLike], *, start: int) -> Prepared:
        samples, positions, failures = [], [], []
        for position, image in enumerate(items, start=start):
            name = source_name(image, position)
            if isinstance(image, torch.Tensor) and image.is_floating_point():
                self._check_shape(image[None])
                samples.append(image.float())
                positions.append(position)
                continue
            try:
                samples.append(self.normalise(self.sample(image, name=name)[None])[0])
            except (BadImageError, OSError) as error:
                failures.append(Failure(position, name, getattr(error, "reason", str(error))))
                continue
            positions.append(position)
        _, height, width = self.default_cfg.input_size
        channels = self.default_cfg.input_size[0]
        batch = torch.stack(samples) if samples else torch.empty(0, channels, height, width)
        return Prepared(batch, positions, failures)

    def _check_shape(self, batch: torch.Tensor) -> None:
        if batch.dim() != 4 or batch.shape[1] != self.default_cfg.input_size[0]:
            raise CnnkitError(f"a preprocessed tensor must be (N, {self.default_cfg.input_size[0]}, H, W), "
                              f"got {tuple(batch.shape)}")

    # -- outputs -------------------------------------------------------------------------------

    def _forward(self, batch: torch.Tensor, method: str) -> torch.Tensor:
        run = getattr(self.backend, method)
        parts = [run(chunk).cpu() for chunk in _chunks(batch, self.batch_size)]
        return torch.cat(parts) if parts else torch.empty(0, len(self.class_names))

    def _outputs(self, images: Sequence[ImageLike] | torch.Tensor | ImageLike, method: str) -> torch.Tensor:
        parts, failures = [], []
        for prepared in self._prepared_chunks(images):
            failures += prepared.failures
            if not failures:  # after the first failure only the names of the others are still needed
                parts.append(self._forward(prepared.batch, method))
        if failures:
            more = f" (and {len(failures) - 1} more)" if len(failures) > 1 else ""
            raise BadImageError(failures[0].source, failures[0].reason + more)
        return torch.cat(parts) if parts else torch.empty(0, len(self.class_names))

    def logits(self, images: Sequence[ImageLike] | torch.Tensor | ImageLike) -> torch.Tensor:
        """(N, K) raw logits (no temperature); BadImageError names the first unusable input."""
        return self._outputs(images, "logits")

    def features(self, images: Sequence[ImageLike] | torch.Tensor | ImageLike) -> torch.Tensor:
        """(N, D) pre-logits vectors (`forward_head(..., pre_logits=True)`)."""
        return self._outputs(images, "features")

    def probabilities_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """softmax(logits / T), T the fitted temperature (1 when the run was not calibrated)."""
        return (logits / (self.temperature or 1.0)).softmax(dim=1)

    def probabilities(self, images: Sequence[ImageLike] | torch.Tensor | ImageLike) -> torch.Tensor:
        """(N, K) class probabilities with the fitted temperature; BadImageError as `logits`."""
        return self.probabilities_from_logits(self.logits(images))

    def predict(self, images: Sequence[ImageLike] | torch.Tensor | ImageLike, *, top_k: int = 5) -> list[Prediction]:
        """One Prediction per input, in order. In a list, an unusable input gets a Prediction with
        `error` set and the others are answered; a single input that is unusable raises
        BadImageError."""
        if top_k < 1:
            raise CnnkitError(f"top_k must be >= 1, got {top_k}")
        batched = isinstance(images, (list, tuple)) or (isinstance(images, torch.Tensor) and images.dim() == 4)
        single = not batched
        sources = _sources(images)
        predictions: list[Prediction] = []
        for prepared in self._prepared_chunks(images):
            if single and prepared.failures:
                raise BadImageError(prepared.failures[0].source, prepared.failures[0].reason)
            probabilities = self.probabilities_from_logits(self._forward(prepared.batch, "logits"))
            predictions += self.top_k(probabilities, prepared, top_k=top_k, sources=sources)
        return predictions

    def top_k(self, probabilities: torch.Tensor, prepared: Prepared, *, top_k: int,
              sources: Sequence[str] | dict[int, str]) -> list[Prediction]:
        """Predictions in input order from the probabilities of `prepared`'s usable inputs."""
        k = min(top_k, len(self.class_names))
        # A stable sort, not topk: equal probabilities rank by class index, the same in every batch.
        values, indices = probabilities.sort(dim=1, descending=True, stable=True)
        values, indices = values[:, :k], indices[:, :k]
        results: dict[int, Prediction] = {}
        for row, position in enumerate(prepared.positions):
            top = tuple(ClassScore(self.class_names[int(i)], int(i), float(p))
                        for p, i in zip(values[row], indices[row]))
            results[position] = Prediction(sources[position], top)
        for failure in prepared.failures:
            results[failure.position] = Prediction(failure.source, error=failure.reason)
        return [results[position] for position in sorted(results)]


def _as_list(images: Sequence[ImageLike] | ImageLike) -> list[ImageLike]:
    if isinstance(images, (list, tuple)):
        return list(images)
    if isinstance(images, torch.Tensor) and images.dtype == torch.uint8 and images.dim() == 4:
        return list(images)
    return [images]


def _sources(images: Sequence[ImageLike] | torch.Tensor | ImageLike) -> list[str]:
    if isinstance(images, torch.Tensor) and images.is_floating_point():
        return [f"image {i}" for i in range(len(images) if images.dim() == 4 else 1)]
    return [source_name(image, i) for i, image in enumerate(_as_list(images))]


def _chunks(batch: torch.Tensor, size: int) -> Iterator[torch.Tensor]:
    for start in range(0, len(batch), size):
        yield batch[start:start + size]
