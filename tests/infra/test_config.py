from pathlib import Path

import pytest

from infra.config import ConfigError, load_config, to_yaml, valid_keys
from infra.config.schemas import BenchSimConfig, RunConfig


def test_defaults_then_overrides_apply():
    cfg = load_config(RunConfig, ["sim.num_envs=8", "seconds=2.5", "scene.objects=[]", "push.enabled=true"])
    assert cfg.sim.num_envs == 8 and cfg.seconds == 2.5 and cfg.scene.objects == [] and cfg.push.enabled
    assert cfg.sim.decimation == 10  # derived, not overwritten


def test_unknown_key_names_it_and_lists_valid_keys():
    with pytest.raises(ConfigError, match=r"unknown config key 'sim.nm_envs'.*Did you mean: sim.num_envs") as err:
        load_config(RunConfig, ["sim.nm_envs=4"])
    assert "Valid keys:" in str(err.value) and "video.fps" in str(err.value)


def test_wrong_type_and_unparsable_value_are_config_errors():
    with pytest.raises(ConfigError, match="sim.num_envs"):
        load_config(RunConfig, ["sim.num_envs=many"])
    with pytest.raises(ConfigError, match="cannot parse"):
        load_config(RunConfig, ["seconds={"])
    with pytest.raises(ConfigError, match="key=value"):
        load_config(RunConfig, ["seconds"])


def test_post_init_validates_without_mutating():
    with pytest.raises(ConfigError, match="whole multiple"):
        load_config(RunConfig, ["sim.ctrl_dt=0.003"])
    with pytest.raises(ConfigError, match="num_envs must be >= 1"):
        load_config(BenchSimConfig, ["sim.num_envs=0"])


def test_presets_by_name_and_path(tmp_path: Path):
    assert load_config(RunConfig, [], "push").push.enabled
    yaml = tmp_path / "mine.yaml"
    yaml.write_text("seconds: 3.0\nsim:\n  num_envs: 2\n")
    cfg = load_config(RunConfig, ["seconds=4"], str(yaml))
    assert (cfg.seconds, cfg.sim.num_envs) == (4.0, 2)  # the override wins over the preset
    with pytest.raises(ConfigError, match="unknown preset 'nope'; known presets: .*push"):
        load_config(RunConfig, [], "nope")
    bad = tmp_path / "bad.yaml"
    bad.write_text("sim:\n  threadz: 3\n")
    with pytest.raises(ConfigError, match=r"preset .*bad.yaml: unknown config key 'sim.threadz'"):
        load_config(RunConfig, [], str(bad))


def test_valid_keys_and_yaml_round_trip():
    keys = valid_keys(RunConfig)
    assert "sim.num_envs" in keys and "body.gains" in keys and "tracking.uri" in keys
    cfg = load_config(RunConfig, ["seconds=7"])
    assert "seconds: 7.0" in to_yaml(cfg)
