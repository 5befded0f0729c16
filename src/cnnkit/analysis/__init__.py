"""Model analysis: per-layer shapes, parameters, MACs, receptive field, memory, effective RF."""
