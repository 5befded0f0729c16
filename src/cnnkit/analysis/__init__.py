"""Model analysis: per-layer shapes, parameters, MACs, receptive field, memory, effective RF.

- `summary.summary(model, input_size)` -> `ModelSummary` (rows per leaf call, totals adding up), printed
  by `table.format_summary`; it runs on the meta device, so no zoo model takes more than seconds.
- `receptive_field`: per-tensor receptive field and jump through any graph (merge = max).
- `costing`: MACs with FlopCounterMode's convention (conv, linear, matmul), uncosted ops named.
- `effective_rf.effective_receptive_field` (Luo et al. 2016), drawn by `plots.plot_effective_rf`.
- `conv_calculator.conv_report`: one convolution's output size, parameters and MACs.
- `layer_stack.stack_receptive_fields`: receptive field and jump of a stack given as "k7s2,k3s2,...".
- `rf_growth.rf_growth`: receptive field after each conv/pool call, drawn by `plots.plot_rf_growth`.
- `json_view`: plain-JSON views for `--json`.
- `commands`: the `cnnkit summary`, `cnnkit rf` and `cnnkit conv` sub-commands.
"""
