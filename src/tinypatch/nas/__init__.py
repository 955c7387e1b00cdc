"""Joint architecture + schedule search (MCUNetV2 §3.3): ``space`` (the MCUNet search space),
``evaluate`` (a candidate's best schedule under the constraints), ``evolution`` (the
evolutionary search, resumable), ``executors`` (in-process and Ray candidate evaluation).
"""
