"""Top-K logit knowledge distillation: the KD cache (format, teachers, build) and its loss (qc2c.kd.loss)."""
