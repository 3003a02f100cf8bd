"""Fused native kernels for the kv codec (see qc2c.kv.kernels.cpu)."""
