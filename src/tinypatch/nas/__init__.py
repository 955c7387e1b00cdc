"""Joint architecture + schedule search (MCUNetV2 §3.3): ``space`` (MCUNet's search space over
specs), ``evaluate`` (a network's best schedule under the limits), ``chain`` (the same figures
from a spec's layer chain, without building the graph), ``evolution`` (the seeded, cached,
resumable evolutionary search), ``executors`` (candidate evaluation on Ray).

Accuracy as the objective and the way to the board (PyTorch, imported only by these modules):
``data`` (digits, ``.npz``, image folders; held-out split), ``supernet`` (the weight-sharing
supernet and its objective), ``export`` (subnet -> int8 graph), ``verify`` (three-way check),
``pipeline`` (the steps of ``tinypatch nas``).
"""
