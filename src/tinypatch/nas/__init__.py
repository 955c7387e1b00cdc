"""Joint architecture + schedule search (MCUNetV2 §3.3): ``space`` (MCUNet's search space over
specs), ``evaluate`` (a network's best schedule under the limits), ``chain`` (the same figures
from a spec's layer chain, without building the graph), ``evolution`` (the seeded, cached,
resumable evolutionary search), ``executors`` (candidate evaluation on Ray).
"""
