"""Round a (width-multiplied) channel count to a hardware-friendly multiple.

The rule of the TF MobileNet reference (`_make_divisible` in torchvision, `make_divisible` in timm):
round to the nearest multiple of `divisor`, but never below `min_value` nor more than 10% down.
"""

from __future__ import annotations


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9) -> int:
    """Nearest multiple of `divisor` to `value`, at least `min_value` (default `divisor`).

    If rounding lost more than `1 - round_limit` of `value`, one `divisor` is added back
    (`round_limit=0` disables that correction, as timm's SE module does).
    """
    if divisor < 1:
        raise ValueError(f"divisor must be >= 1, got {divisor}")
    if min_value is None:
        min_value = divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < round_limit * value:
        rounded += divisor
    return rounded
