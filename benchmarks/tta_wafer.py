"""Test-time augmentation on the demo's wafer maps: does averaging flipped and turned views help on
the ordinary test, and on the shifted test whose loc and scratch defects sit in the half of the
wafer that training never showed?

Trains the demo's compact CNN exactly as `cnnkit demo` does (same splits, seed, epochs), loads the
kept run with `Predictor.from_run`, and scores it without TTA (which must reproduce the demo's own
scores) and with each set of views (`Predictor.with_tta`). A horizontal flip moves a right-half
defect into the left half, where training saw them: on the shifted test it is the control's
answer key, so read that row as what "showing the unseen half" buys, not as a general gain.
Last line `tta_wafer: shifted loc+scratch recall <none>% -> <hflip>% with hflip; test accuracy
<none>% -> <all views>%`.
"""

from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

from cnnkit.data.wafer import WAFER_CLASSES
from cnnkit.device_info import device_info, torch_threads
from cnnkit.inference import TTA, Predictor
from cnnkit.train.demo import DEMO_THREADS, run_torch_demo
from cnnkit.train.demo_scores import SplitScores
from cnnkit.train.engine_demo import MOVED_CLASSES, DemoConfig, demo_splits

VIEW_SETS: tuple[tuple[str, ...], ...] = (
    (), ("hflip",), ("vflip",), ("rot180",), ("hflip", "vflip", "rot180"),
    ("hflip", "vflip", "rot90", "rot180", "rot270"),
)


def moved_recall(scores: SplitScores) -> float:
    return float(np.mean([scores.recall[k] for k in MOVED_CLASSES]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=DemoConfig.epochs)
    parser.add_argument("--seed", type=int, default=DemoConfig.seed)
    args = parser.parse_args()
    print(f"# {device_info().describe()}")
    print(f"# load average at start: {os.getloadavg()[0]:.2f}")
    config = DemoConfig(epochs=args.epochs, seed=args.seed)
    splits = demo_splits(config)
    with torch_threads(DEMO_THREADS), tempfile.TemporaryDirectory() as tmp:
        demo = run_torch_demo(config, Path(tmp), quiet=True)[0]
        predictor = Predictor.from_run(Path(tmp) / "compact_cnn", batch_size=256)
        rows = {}
        for views in VIEW_SETS:
            chosen = predictor.with_tta(TTA(views)) if views else predictor
            rows[views] = {name: SplitScores.of(chosen.probabilities(torch.from_numpy(splits[name].grey_levels())).argmax(1).numpy(),
                                                splits[name].labels, len(WAFER_CLASSES))
                           for name in ("test", "shifted")}
    plain = rows[()]
    for name in ("test", "shifted"):
        same = np.array_equal(plain[name].confusion, demo.splits[name].confusion)
        print(f"# without TTA, {name}: the demo's own confusion matrix reproduced: {same}")
        if not same:
            raise SystemExit(f"the Predictor's scores on {name} differ from the demo's: no comparison")
    moved = "+".join(WAFER_CLASSES[k] for k in MOVED_CLASSES)
    print(f"\ncompact_cnn, seed {config.seed}, {config.epochs} epochs, {config.size} px; {len(splits['test'].labels)} "
          f"test maps; one forward pass per view")
    print(f"{'views':<38} {'test acc':>8} {'test F1':>7} {'shifted acc':>11} {'shifted F1':>10} "
          f"{moved + ' recall test -> shifted':>32}")
    for views, scores in rows.items():
        test, shifted = scores["test"], scores["shifted"]
        print(f"{'+'.join(('image',) + views):<38} {100 * test.accuracy:>7.1f}% {test.macro_f1:>7.3f} "
              f"{100 * shifted.accuracy:>10.1f}% {shifted.macro_f1:>10.3f} "
              f"{100 * moved_recall(test):>21.1f}% -> {100 * moved_recall(shifted):>5.1f}%")
    every = rows[VIEW_SETS[-1]]
    print(f"tta_wafer: shifted {moved} recall {100 * moved_recall(plain['shifted']):.1f}% -> "
          f"{100 * moved_recall(rows[('hflip',)]['shifted']):.1f}% with hflip; test accuracy "
          f"{100 * plain['test'].accuracy:.1f}% -> {100 * every['test'].accuracy:.1f}% with all five views")


if __name__ == "__main__":
    main()
