"""Hostile and unlucky input (issue 15): each case ends in one line and exit 2, or works; never a traceback,
never a silent wrong result."""

from __future__ import annotations

import pytest
import yaml
from typer.testing import CliRunner

from charrnn.cli import app
from charrnn.config import read_yaml
from charrnn.errors import UserError

runner = CliRunner()


def one_line_error(res, *fragments: str) -> str:
    assert res.exit_code == 2, (res.exit_code, res.output)
    assert "Traceback" not in res.output
    lines = [line for line in res.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, res.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


# -- config files --------------------------------------------------------------------------------------------

def test_a_duplicate_key_names_the_key_and_both_lines(tmp_path):
    """A second `train:` section silently replaced the first."""
    path = tmp_path / "c.yaml"
    path.write_text("name: x\ntrain:\n  lr: 0.1\nmodel:\n  cell: gru\ntrain:\n  max_steps: 5\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"duplicate key 'train' at lines 2 and 6"):
        read_yaml(path)
    path.write_text("train:\n  lr: 0.1\n  batch_size: 2\n  lr: 0.2\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"duplicate key 'lr' at lines 2 and 4"):
        read_yaml(path)


def test_merge_keys_may_still_be_overridden(tmp_path):
    """YAML's `<<` merge is meant to be overridden: that is not a duplicate."""
    path = tmp_path / "c.yaml"
    path.write_text("base: &b {lr: 0.1, batch_size: 2}\ntrain:\n  <<: *b\n  lr: 0.2\n", encoding="utf-8")
    assert read_yaml(path)["train"] == {"lr": 0.2, "batch_size": 2}


def _billion_laughs(top: str) -> str:
    """Nine levels of nine aliases each: 412 bytes that expand to 9**9 strings."""
    anchors = ['&a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    anchors += [f"&{name} [{','.join(['*' + prev] * 9)}]" for prev, name in zip("abcdefgh", "bcdefghi", strict=True)]
    return f"{top}: [{', '.join(anchors)}]\n"


@pytest.mark.parametrize("top", ["name", "data"])
def test_a_yaml_alias_bomb_is_refused_in_one_short_line(tmp_path, top):
    """A 412-byte 'billion laughs' config ran for 20 s and printed a 39 MB error line."""
    path = tmp_path / "bomb.yaml"
    path.write_text(_billion_laughs(top), encoding="utf-8")
    line = one_line_error(runner.invoke(app, ["train", "--config", str(path)]), "alias", str(path))
    assert len(line) < 400


def test_recursive_yaml_aliases_are_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("name: &a [*a]\n", encoding="utf-8")
    one_line_error(runner.invoke(app, ["train", "--config", str(path)]), "alias")


@pytest.mark.parametrize("value", ["x" * 5000, list(range(5000)), {"k": [[[[["deep"]]]]]}])
def test_errors_echo_at_most_about_200_characters_of_a_value(tmp_path, value):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({"train": {"lr": value}}), encoding="utf-8")
    line = one_line_error(runner.invoke(app, ["train", "--config", str(path)]), "train.lr")
    assert len(line) < 320, len(line)
