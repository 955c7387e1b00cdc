"""Planning: schedules for patch-based inference and the placement of buffers in one arena.

Modules: ``plan`` (Plan/Stage and their JSON), ``tiles`` (stage legality and per-tile
regions), ``memory`` (the buffers a plan needs), ``arena`` (offsets in one arena), ``cost``
(MACs, peaks, analytic figure of a plan), ``check`` (validating a plan against a graph),
``columns`` + ``stream`` (stream stages: column geometry, then the step table),
``optimal`` + ``tile_arrays`` (the exact Pareto search), ``search`` (its entry point),
``rewrite`` (graph rewrites a plan records: op order, recomputation), ``reorder`` + ``recompute``
(candidate rewrites), ``rewrite_search`` (the search run on them, fronts merged).
"""
