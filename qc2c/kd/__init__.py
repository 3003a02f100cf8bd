"""Top-K logit knowledge distillation: the KD cache (format, teachers, build) and its loss (qc2c.kd.loss).

`TEACHERS` lives here, not in qc2c.kd.teacher, so the manifest schema can name them without importing
transformers (the runner's CLI must not, before it sets the offline switches).
"""

TEACHERS = ("c2c_fp16", "compressed", "receiver", "sharer")
