"""Explain a trained model: where it looks, where it is wrong, and how sure it is.

- `activation_maps`: `cam` — Grad-CAM, Grad-CAM++, HiResCAM, XGradCAM, LayerCAM, EigenCAM, Score-CAM.
- `attributions`: `saliency`, `smoothgrad`, `integrated_gradients`, `occlusion` (captum's core set).
- `layer_advice`: `advise_layer` — which map to trust at an input size (small images: LayerCAM
  at an earlier, finer stage). `hooks`: the activation and gradient capture behind the maps.
- `overlay`: a map over its image as uint8 RGB. `filters`: filter grids and feature maps.
- `checks`: `pointing_game`, `energy_in_mask`, deletion / insertion curves and AUCs;
  `sanity`: `sanity_check` (cascading model randomisation, Spearman).
- `calibration`: `calibration_metrics` (ECE, MCE, NLL, Brier) and `fit_temperature` (Guo et al. 2017).
- `uncertainty`: `mc_dropout` (Gal & Ghahramani 2016): mean, std, entropy, mutual information.
- `error_analysis`: streaming confusion matrix, classification report, top losses of a run.
- `commands`: `cnnkit explain`; `report_commands`: `cnnkit interpret`, `cnnkit calibrate`, `cnnkit report`.
"""

from cnnkit.explain.activation_maps import CAM_METHODS, cam
from cnnkit.explain.attributions import integrated_gradients, occlusion, saliency, smoothgrad
from cnnkit.explain.calibration import calibration_metrics, fit_temperature
from cnnkit.explain.checks import (deletion_auc, deletion_curve, energy_in_mask, insertion_auc, insertion_curve,
                                   pointing_game)
from cnnkit.explain.filters import feature_maps, filter_grid
from cnnkit.explain.layer_advice import LayerAdvice, advise_layer
from cnnkit.explain.overlay import overlay
from cnnkit.explain.sanity import sanity_check, spearman
from cnnkit.explain.uncertainty import mc_dropout

__all__ = [
    "CAM_METHODS", "LayerAdvice", "advise_layer", "cam", "calibration_metrics", "deletion_auc", "deletion_curve", "energy_in_mask",
    "feature_maps", "filter_grid", "fit_temperature", "insertion_auc", "insertion_curve",
    "integrated_gradients", "mc_dropout", "occlusion", "overlay", "pointing_game", "saliency",
    "sanity_check", "smoothgrad", "spearman",
]
