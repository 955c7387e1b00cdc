"""Analysis of a graph: receptive regions, tensor liveness, memory accounting and MACs.

Modules: ``regions`` (halo / receptive field), ``liveness`` (lifetimes, arena buffers, lower
bound), ``macs`` (per-op compute and sizes), ``analytic`` (the analytic MCUNetV2 figure),
``inplace_shift`` (which input an op may overwrite, at what shift). Operator facts come from
the operator table (:mod:`tinypatch.ir.optable`); the layer-by-layer memory report, which places
buffers, is :mod:`tinypatch.report.layer_memory`.
"""
