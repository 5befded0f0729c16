"""Threads: the forward runs on `ServeSettings.threads` (`--threads`, default the cores over the
workers), decoding on one thread per image (see `ServeState.start`)."""

from __future__ import annotations

import argparse
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from cnnkit.device_info import torch_threads
from cnnkit.errors import CnnkitError
from cnnkit.inference import Predictor
from cnnkit.serve import ServeSettings, commands
from serve_helpers import run, serving


@pytest.fixture(autouse=True)
def keep_torch_threads() -> Iterator[None]:
    """The pools' initializers set torch's count for new threads too: give the test process its own back."""
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


def test_the_forward_runs_on_the_set_threads_and_decoding_on_one(predictor: Predictor) -> None:
    caller = torch.get_num_threads()

    async def scenario():
        async with serving(predictor, threads=3) as client:
            state = client.app.state.serve
            infer = state.inference_pool.submit(torch.get_num_threads).result()
            decode = state.decode_pool.submit(torch.get_num_threads).result()
            return infer, decode, (await client.get("/info")).json()

    infer, decode, info = run(scenario)
    assert (infer, decode) == (3, 1)
    assert info["batching"]["threads"] == 3
    assert torch.get_num_threads() == caller  # the calling thread keeps its own count


def test_without_a_setting_the_forward_gets_the_callers_count(predictor: Predictor) -> None:
    """3, a count no default (cores, torch's own) gives on the 2-core CI machines."""
    with torch_threads(3):
        async def scenario():
            async with serving(predictor) as client:
                pool = client.app.state.serve.inference_pool
                return pool.submit(torch.get_num_threads).result(), (await client.get("/info")).json()

        infer, info = run(scenario)
        assert infer == 3 and info["batching"]["threads"] == 3


def test_threads_default_to_the_cores_over_the_workers() -> None:
    parser = argparse.ArgumentParser()
    commands.register(parser.add_subparsers())
    with torch_threads(4):
        for flags, expected in (([], 4), (["--workers", "2"], 2), (["--workers", "8"], 1),
                                (["--workers", "2", "--threads", "3"], 3)):
            args = parser.parse_args(["serve", "run", *flags])
            assert commands.settings_from_args(args).threads == expected, flags
    with pytest.raises(SystemExit):
        parser.parse_args(["serve", "run", "--threads", "0"])
    with pytest.raises(CnnkitError, match="threads must be >= 1"):
        ServeSettings(threads=0)
