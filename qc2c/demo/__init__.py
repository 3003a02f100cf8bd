"""The demo world: a trained, knowledge-asymmetric model pair, so qc2c's numbers mean something offline.

world.py    entities, facts, the A/B/C split, the `demo` questions and the fusers' chat data
vocab.py    the demo tokenizers (Qwen-style shared by receiver and sharer, Llama-style of its own)
pretrain.py pretraining a model from scratch on the facts it should know
models.py   the three demo models and how one is built
build.py    writing the world data and building the models (python -m qc2c.demo ...)
zoo.py      the shipped zoo: `demo:` references, SHA256SUMS

The fusers are trained by the runner (`make demo-zoo`, runner/demo_zoo.py), so they come out of the same
`kind: train` path users run.
"""
