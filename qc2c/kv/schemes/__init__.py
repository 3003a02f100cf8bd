"""Quantization scheme members, one module per family of formats; `qc2c.kv.quant` is the public entry."""
