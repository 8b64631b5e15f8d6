import pytest
import yaml
from conftest import REPO
from hypothesis import given
from hypothesis import strategies as st

from charrnn.config import apply_overrides, config_from_dict, load_config, parse_override
from charrnn.errors import UserError


@pytest.mark.parametrize("name", ["ihello", "alphabet", "shakespeare"])
def test_bundled_configs_load(name):
    cfg = load_config(REPO / "configs" / f"{name}.yaml")
    assert cfg.name == name


def test_overrides_are_parsed_as_yaml_values():
    cfg = load_config(REPO / "configs" / "ihello.yaml", ["train.lr=0.01", "model.cell=gru", "log.tensorboard=false",
                                                        "train.max_steps=null", "train.time_budget=5"])
    assert cfg.train.lr == 0.01 and cfg.model.cell == "gru" and cfg.log.tensorboard is False
    assert cfg.train.max_steps is None and cfg.train.time_budget == 5.0


def test_unknown_key_is_named_with_the_allowed_keys():
    with pytest.raises(UserError) as err:
        config_from_dict({"model": {"hiden_size": 3}})
    assert "model.hiden_size" in str(err.value) and "hidden_size" in str(err.value)


@pytest.mark.parametrize("raw,fragment", [
    ({"train": {"lr": "fast"}}, "train.lr"),
    ({"train": {"batch_size": 2.5}}, "train.batch_size"),
    ({"train": {"batch_size": True}}, "train.batch_size"),
    ({"train": {"batch_size": 0}}, ">= 1"),
    ({"model": {"cell": "transformer"}}, "rnn, gru, lstm"),
    ({"model": {"dropout": 1.0}}, "model.dropout"),
    ({"data": {"val_fraction": 0.6, "test_fraction": 0.5}}, "val_fraction + data.test_fraction"),
    ({"train": {"max_steps": None}}, "max_steps"),
    ({"model": "lstm"}, "section 'model'"),
    ({"model": {"tie_weights": True, "embedding_dim": 4, "hidden_size": 8}}, "tie_weights"),
])
def test_bad_values_name_the_key(raw, fragment):
    with pytest.raises(UserError, match=None) as err:
        config_from_dict(raw)
    assert fragment in str(err.value)


def test_bidirectional_is_refused_with_an_explanation():
    with pytest.raises(UserError, match="must not see the future"):
        config_from_dict({"model": {"bidirectional": True}})


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(UserError, match="not found"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n", encoding="utf-8")
    with pytest.raises(UserError, match="not valid YAML at line"):
        load_config(bad)


def test_resolved_config_round_trips_through_yaml():
    cfg = load_config(REPO / "configs" / "shakespeare.yaml")
    assert config_from_dict(yaml.safe_load(yaml.safe_dump(cfg.to_dict()))) == cfg


keys = st.lists(st.text(alphabet="abcdefghij_", min_size=1, max_size=6), min_size=1, max_size=3)
scalars = st.one_of(st.integers(-10**6, 10**6), st.booleans(), st.text(alphabet="abcxyz", min_size=1, max_size=8))


@given(keys, scalars)
def test_override_parser_round_trips_keys_and_scalar_values(path, value):
    parts, parsed = parse_override(".".join(path) + "=" + yaml.safe_dump(value).strip().removesuffix("..."))
    assert parts == path
    assert parsed == value
    assert apply_overrides({}, [".".join(path) + "=" + yaml.safe_dump(value).strip().removesuffix("...").strip()])


@pytest.mark.parametrize("text", ["train.lr", "=3", "train..lr=3"])
def test_malformed_overrides_are_user_errors(text):
    with pytest.raises(UserError, match="--set"):
        parse_override(text)
