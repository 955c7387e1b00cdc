"""Joint architecture + schedule search (MCUNetV2 §3.3): ``space`` (the MCUNet search space),
``evaluate`` (a candidate's best schedule under the constraints), ``evolution`` (the
evolutionary search, resumable), ``executors`` (in-process and Ray candidate evaluation).

Accuracy as the objective and the way to the board (PyTorch, imported only by these modules):
``data`` (digits, ``.npz``, image folders; held-out split), ``supernet`` (the weight-sharing
supernet and its objective), ``export`` (subnet -> int8 graph), ``verify`` (three-way check),
``pipeline`` (the steps of ``tinypatch nas``).
"""
