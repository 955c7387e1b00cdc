"""Planning: schedules for patch-based inference and the placement of buffers in the arena."""
