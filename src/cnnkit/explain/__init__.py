"""Explain a trained model: where it looks, where it is wrong, and how sure it is.

- `calibration`: `calibration_metrics` (ECE, MCE, NLL, Brier) and `fit_temperature` (Guo et al. 2017).
- `uncertainty`: `mc_dropout` (Gal & Ghahramani 2016): mean, std, entropy, mutual information.
- `error_analysis`: streaming confusion matrix, classification report, top losses of a run.
- `report_commands`: `cnnkit interpret`, `cnnkit calibrate`, `cnnkit report`.
"""

from cnnkit.explain.calibration import calibration_metrics, fit_temperature
from cnnkit.explain.uncertainty import mc_dropout

__all__ = ["calibration_metrics", "fit_temperature", "mc_dropout"]
