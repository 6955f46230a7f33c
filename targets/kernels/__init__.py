"""Compute-only TE definitions of the ``ai.mptc`` kernels (schedules live in ``targets.schedules``)."""
