"""Model analysis: per-layer shapes, parameters, MACs, receptive field, memory, effective RF.

- `summary.summary(model, input_size)` -> `ModelSummary` (rows per leaf call, totals), printed
  by `table.format_summary`; it runs on the meta device, so no zoo model takes more than seconds.
- `receptive_field`: per-tensor receptive field and jump through any graph (merge = max).
- `costing`: MACs with FlopCounterMode's convention (conv, linear, matmul), uncosted ops named.
- `effective_rf.effective_receptive_field` (Luo et al. 2016), drawn by `plots.plot_effective_rf`.
- `conv_calculator.conv_report`: one convolution's output size, parameters and MACs.
- `commands`: the `cnnkit summary` and `cnnkit conv` sub-commands.
"""
