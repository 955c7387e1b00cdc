"""Human-facing output: the layer-by-layer memory report (``layer_memory``), ``tinypatch show``
(``show``), the generated operator list (``supported_ops``), rich tables and matplotlib plots."""
