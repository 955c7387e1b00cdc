"""Human-facing output: rich tables and matplotlib plots."""
