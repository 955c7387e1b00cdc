"""Analysis of a graph: receptive regions, tensor liveness, memory accounting and MACs.

Modules: ``regions`` (halo / receptive field), ``liveness`` (lifetimes, arena buffers, lower
bound), ``macs`` (per-op compute and sizes), ``memory`` (analytic MCUNetV2 figure and the
layer-by-layer memory report).
"""
