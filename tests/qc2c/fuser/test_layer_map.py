"""Layer maps. Run: .venv/bin/python -m pytest tests/qc2c/fuser/test_layer_map.py -q"""

from __future__ import annotations

from qc2c.fuser.layer_map import LAYER_MAPS, k_nearest_layers, last_aligned


def test_last_aligned_examples_from_the_reference():
    # docs/c2c.md §1.3 examples
    m = last_aligned(28, 24)
    assert [m[t] for t in range(6)] == [0, 0, 0, 0, 0, 1] and m[27] == 23
    assert last_aligned(28, 16)[12] == 0 and last_aligned(28, 16)[13] == 1
    assert last_aligned(28, 36) == {t: t + 8 for t in range(28)}
    assert last_aligned(28, 28) == {t: t for t in range(28)}
    assert last_aligned(4, 3) == {0: 0, 1: 0, 2: 1, 3: 2}  # conformance pair A
    assert last_aligned(4, 6) == {0: 2, 1: 3, 2: 4, 3: 5}  # conformance pair B


def test_k_nearest_spans_both_ends():
    assert k_nearest_layers(3, 5, 1) == {0: [0], 1: [2], 2: [4]}
    assert k_nearest_layers(3, 5, 2)[2] == [3, 4]
    assert LAYER_MAPS.get("k_nearest")(3, 5) == {0: 0, 1: 2, 2: 4}
