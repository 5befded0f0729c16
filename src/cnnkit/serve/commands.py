"""`cnnkit serve RUN_OR_ONNX [--index DIR]`: the HTTP service and page of a trained model (or the
/embed and /search service of an embedding run and its gallery), on uvicorn."""

from __future__ import annotations

import argparse
import functools
import math
import sys
from collections.abc import Callable
from pathlib import Path

from typing import TYPE_CHECKING

from cnnkit.errors import CnnkitError
from cnnkit.serve.settings import ServeSettings, is_loopback

if TYPE_CHECKING:
    from fastapi import FastAPI

    from cnnkit.embeddings.gallery import Gallery
    from cnnkit.inference import Predictor


def _positive(kind: type[int] | type[float]) -> Callable[[str], float]:
    """argparse type: a finite number > 0 (ints may be written 40e6, but must be whole)."""
    def parse(text: str) -> float:
        try:
            number = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if not (math.isfinite(number) and number > 0):
            raise argparse.ArgumentTypeError(f"must be a finite number > 0, got {text}")
        if kind is int and not number.is_integer():
            raise argparse.ArgumentTypeError(f"must be a whole number, got {text}")
        return kind(number)
    return parse


def register(subparsers: argparse._SubParsersAction) -> None:
    serve = subparsers.add_parser("serve", help="serve a trained model over HTTP (predict, explain, a web page)")
    serve.add_argument("model", metavar="RUN_OR_ONNX", help="run directory (or an exported .onnx file)")
    serve.add_argument("--host", default="127.0.0.1", help="bind address (default loopback; others need "
                                                           "--api-key-file or --no-auth)")
    serve.add_argument("--port", type=int, default=8000, help="TCP port (default 8000)")
    serve.add_argument("--max-batch-size", type=_positive(int), default=16, help="samples per forward pass")
    serve.add_argument("--max-delay-ms", type=float, default=5.0, help="longest wait to fill a batch")
    serve.add_argument("--max-upload-mb", type=_positive(float), default=10.0, help="request body limit (413)")
    serve.add_argument("--max-pixels", type=_positive(int), default=40_000_000,
                       help="pixel count limit read from the image header (413)")
    serve.add_argument("--max-queue", type=_positive(int), default=256, help="waiting samples before 503")
    serve.add_argument("--timeout-s", type=_positive(float), default=30.0, help="longest wait for an answer (504)")
    serve.add_argument("--workers", type=_positive(int), default=1, help="server processes, one model each")
    serve.add_argument("--device", default="cpu", help="cpu, cuda, ... (default cpu)")
    serve.add_argument("--threads", type=_positive(int), default=None,
                       help="CPU threads of each worker's forward pass (default: the cores over --workers)")
    serve.add_argument("--api-key-file", default=None, help="file whose first line is the bearer key clients send")
    serve.add_argument("--no-auth", action="store_true", help="serve a non-loopback address without a key")
    serve.add_argument("--index", default=None, metavar="DIR",
                       help="gallery folder from `cnnkit index` that POST /search looks in (embedding runs)")
    serve.set_defaults(func=run_serve)


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    import torch

    if args.api_key_file is not None and args.no_auth:
        raise CnnkitError("--api-key-file and --no-auth exclude each other")
    from cnnkit.serve.auth import read_api_key

    api_key = read_api_key(args.api_key_file) if args.api_key_file is not None else None
    return ServeSettings(host=args.host, port=args.port, max_batch_size=args.max_batch_size,
                         max_delay_ms=args.max_delay_ms, max_upload_mb=args.max_upload_mb,
                         max_pixels=args.max_pixels, max_queue=args.max_queue, timeout_s=args.timeout_s,
                         workers=args.workers, api_key=api_key, allow_no_auth=args.no_auth,
                         threads=args.threads or max(1, torch.get_num_threads() // args.workers))


def load_predictor(source: str, *, device: str, batch_size: int, threads: int | None = None) -> Predictor:
    """A run directory's Predictor (an embedding run's embedder too), or an exported .onnx file's
    (ONNX Runtime on `device`, with `threads` intra-op threads)."""
    from cnnkit.embeddings.runs import embedding_predictor
    from cnnkit.inference import Predictor, read_summary
    from cnnkit.train.distributed import checked_device

    path = Path(source)
    if path.suffix.lower() == ".onnx":
        return Predictor.from_onnx(path, batch_size=batch_size, device=device, threads=threads)
    if not path.is_dir():
        raise CnnkitError(f"{path}: not a run directory or an .onnx file")
    torch_device = checked_device(device)  # a device the machine lacks is named here, not by torch's traceback
    if read_summary(path).task == "embedding":
        return embedding_predictor(path, device=torch_device, batch_size=batch_size)[0]
    return Predictor.from_run(path, device=torch_device, batch_size=batch_size)


def load_gallery(index: str | None, source: str) -> Gallery | None:
    """The gallery folder `--index` names, checked to hold embeddings of the run being served."""
    from cnnkit.embeddings.gallery import Gallery

    if index is None:
        return None
    gallery = Gallery.load(index)
    run = str(Path(source).resolve())
    if gallery.run and gallery.run != run:
        raise CnnkitError(f"--index {index} holds embeddings of run {gallery.run}, not of {run}: index this run "
                          "with `cnnkit index`")
    return gallery


def build_app(source: str, device: str, settings: ServeSettings, index: str | None = None) -> FastAPI:
    """The app of `source` (module level, so uvicorn's worker processes can rebuild it)."""
    from cnnkit.serve.app import create_app

    predictor = load_predictor(source, device=device, batch_size=settings.max_batch_size, threads=settings.threads)
    return create_app(predictor, settings, gallery=load_gallery(index, source))


def run_serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = settings_from_args(args)
    if settings.api_key is None and not is_loopback(settings.host):
        print(f"cnnkit serve: WARNING: serving {settings.host} without authentication (--no-auth): "
              "anyone who reaches this address can use the model", file=sys.stderr)
    factory = functools.partial(build_app, args.model, args.device, settings, args.index)
    app = factory()  # a bad model or index is refused here, with a clear message, before the banner or a fork
    host = f"[{settings.host}]" if ":" in settings.host else settings.host
    print(f"cnnkit serve: {args.model} on http://{host}:{settings.port}/ (API reference at /docs, "
          f"{settings.workers} worker{'s' if settings.workers > 1 else ''}; Ctrl+C stops)", file=sys.stderr)
    if settings.workers == 1:
        uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning", access_log=False)
        return 0
    del app  # each worker process builds its own
    config = uvicorn.Config(factory, factory=True, host=settings.host, port=settings.port,
                            workers=settings.workers, log_level="warning", access_log=False)
    from uvicorn.supervisors import Multiprocess

    Multiprocess(config, sockets=[config.bind_socket()]).run()
    return 0
