"""Whatever is thrown at the command line, a user error ends in exit code 2 and one line on stderr:
no traceback, and no half-made run folder that gets in the way of the next run."""

from __future__ import annotations

from charrnn.config import load_config


def test_exponent_numbers_are_numbers_in_yaml_and_set(tmp_path):
    """PyYAML reads 1e6 and 3e-4 as strings (YAML 1.1); charrnn reads them as numbers, as users mean."""
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 3e-4\n  weight_decay: 1E-2\n", encoding="utf-8")
    cfg = load_config(path, ["train.grad_clip=5e0", "train.max_steps=2000"])
    assert (cfg.train.lr, cfg.train.weight_decay, cfg.train.grad_clip) == (3e-4, 1e-2, 5.0)
    assert load_config(None, ["name=1e3x"]).name == "1e3x"
