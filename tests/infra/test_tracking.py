"""infra.tracking against a real MLflow SQLite store (one per module: the first migration takes seconds)."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import mlflow
import pytest
from matplotlib.figure import Figure  # no pyplot: no global backend or figure registry
from omegaconf import OmegaConf

from infra.tracking import (
    MAX_PARAM_VAL_LENGTH,
    Tracker,
    flatten_params,
    git_commit,
    resolve_tracking_uri,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    """One SQLite tracking store shared by the module's tests."""
    return f"sqlite:///{tmp_path_factory.mktemp('mlflow') / 'mlflow.db'}"


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    """No ambient tracking server, and anything MLflow writes relative to cwd lands in tmp_path."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.chdir(tmp_path)


@dataclasses.dataclass
class Sim:
    num_envs: int = 8
    sim_dt: float = 0.005
    gains: list = dataclasses.field(default_factory=lambda: [10.0, 20.0])


@dataclasses.dataclass
class RunCfg:
    sim: Sim = dataclasses.field(default_factory=Sim)
    name: str = "walk"


# --- pure functions ------------------------------------------------------------------------------


def test_flatten_nested_dataclass_dictconfig_and_mapping_agree():
    expected = {
        "sim.num_envs": "8",
        "sim.sim_dt": "0.005",
        "sim.gains.0": "10.0",
        "sim.gains.1": "20.0",
        "name": "walk",
    }
    assert flatten_params(RunCfg()) == expected
    assert flatten_params(OmegaConf.structured(RunCfg)) == expected
    assert flatten_params(dataclasses.asdict(RunCfg())) == expected


def test_flatten_resolves_interpolations_truncates_and_sanitizes_only_bad_keys():
    cfg = OmegaConf.create({"a": 2, "b": "${a}", "long": "x" * (MAX_PARAM_VAL_LENGTH + 10)})
    flat = flatten_params(cfg)
    assert flat["b"] == "2"
    assert len(flat["long"]) == MAX_PARAM_VAL_LENGTH == 6000
    flat = flatten_params({"ok key/with-dots.and_more": 1, "bad$key": 2, "a": {"": 3}, "e": {}, "n": None})
    assert flat == {"ok key/with-dots.and_more": "1", "bad_key": "2", "a.": "3", "e": "{}", "n": "None"}


def test_resolve_env_wins_over_configured(monkeypatch, tmp_path):
    env_uri = f"sqlite:///{tmp_path}/env.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", env_uri)
    assert resolve_tracking_uri("http://configured:5000") == env_uri
    assert Tracker("e", tracking_uri="http://configured:5000").tracking_uri == env_uri
    assert not (tmp_path / "env.db").exists()  # constructing a Tracker must not create a store
    monkeypatch.delenv("MLFLOW_TRACKING_URI")
    assert resolve_tracking_uri("http://configured:5000") == "http://configured:5000"


def test_resolve_default_is_sqlite_in_cwd(tmp_path):
    expected = f"sqlite:///{tmp_path.resolve()}/mlflow.db"
    assert resolve_tracking_uri() == expected
    assert resolve_tracking_uri("") == expected
    assert not (tmp_path / "mlflow.db").exists()  # resolving must not create a store


def test_git_commit_outside_a_repo_is_unknown(tmp_path):
    assert git_commit(tmp_path) == "unknown"
    assert git_commit(tmp_path / "missing") == "unknown"


# --- against the store ---------------------------------------------------------------------------


def test_run_round_trip(store, tmp_path):
    video = tmp_path / "rollout.txt"
    video.write_text("frames")
    with Tracker("humanoid-run", run_name="rt", tracking_uri=store, config=RunCfg(), tags={"seed": 3}) as tr:
        for step in (0, 10, 20):
            tr.log_metrics({"perf/steps_per_s": 100.0 + step, "reward/pose": step / 100}, step=step)
        tr.log_artifact(video, artifact_path="videos")
        tr.log_dict({"eval/success": 0.5}, "metrics.json")
        fig = Figure()
        fig.subplots().plot([0, 1], [1, 0])
        tr.log_figure(fig, "plots/timing.png")
        run_id = tr.run_id

    client = mlflow.MlflowClient(tracking_uri=store)
    assert client.get_experiment_by_name("humanoid-run").experiment_id == tr.experiment_id
    run = client.get_run(run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params["sim.num_envs"] == "8"
    assert run.data.params["sim.gains.1"] == "20.0"
    assert run.data.params["name"] == "walk"
    assert run.data.tags["seed"] == "3"
    assert run.data.tags["git_commit"] == "unknown" or len(run.data.tags["git_commit"]) == 40
    history = client.get_metric_history(run_id, "reward/pose")
    assert [(m.step, m.value) for m in sorted(history, key=lambda m: m.step)] == [
        (0, 0.0),
        (10, 0.1),
        (20, 0.2),
    ]
    top = {f.path for f in client.list_artifacts(run_id)}
    assert {"config.yaml", "metrics.json", "videos", "plots"} <= top
    assert [f.path for f in client.list_artifacts(run_id, "plots")] == ["plots/timing.png"]
    assert [f.path for f in client.list_artifacts(run_id, "videos")] == ["videos/rollout.txt"]
    config_yaml = Path(client.download_artifacts(run_id, "config.yaml", str(tmp_path)))
    assert OmegaConf.load(config_yaml).sim.num_envs == 8
    # artifacts sit beside the SQLite file, not in ./mlruns
    store_dir = Path(store.removeprefix("sqlite:///")).parent
    assert (
        run.info.artifact_uri == f"{(store_dir / 'mlartifacts' / 'humanoid-run').as_uri()}/{run_id}/artifacts"
    )
    assert not (tmp_path / "mlruns").exists()


def test_exception_marks_failed_and_still_flushes(store):
    with pytest.raises(RuntimeError, match="boom"):
        with Tracker("humanoid-run", tracking_uri=store) as tr:
            tr.log_metrics({"loss/value": 1.5}, step=1)
            tr.log_metrics({"loss/value": 0.5}, step=2)
            raise RuntimeError("boom")
    client = mlflow.MlflowClient(tracking_uri=store)
    assert client.get_run(tr.run_id).info.status == "FAILED"
    history = sorted(client.get_metric_history(tr.run_id, "loss/value"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in history] == [(1, 1.5), (2, 0.5)]


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_metric_raises_naming_key_and_logs_nothing(store, bad):
    with Tracker("humanoid-run", tracking_uri=store) as tr:
        with pytest.raises(ValueError, match="reward/pose"):
            tr.log_metrics({"perf/ok": 1.0, "reward/pose": bad}, step=0)
    client = mlflow.MlflowClient(tracking_uri=store)
    assert client.get_run(tr.run_id).info.status == "FINISHED"
    assert client.get_metric_history(tr.run_id, "perf/ok") == []


def test_buffer_flushes_at_flush_every(store):
    with Tracker("humanoid-run", tracking_uri=store, flush_every=4) as tr:
        client = mlflow.MlflowClient(tracking_uri=store)
        for step in range(3):
            tr.log_metrics({"timing/a": step}, step=step)
        assert client.get_metric_history(tr.run_id, "timing/a") == []  # still buffered
        tr.log_metrics({"timing/a": 3}, step=3)
        assert len(client.get_metric_history(tr.run_id, "timing/a")) == 4


def test_more_than_100_params_all_land(store):
    cfg = {f"group{g}": {f"p{p}": g * 100 + p for p in range(25)} for g in range(10)}  # 250 leaves
    with Tracker("humanoid-run", tracking_uri=store, config=cfg) as tr:
        pass
    params = mlflow.MlflowClient(tracking_uri=store).get_run(tr.run_id).data.params
    assert len(params) == 250
    assert params["group9.p24"] == "924"


def test_methods_need_an_open_run(store):
    tr = Tracker("humanoid-run", tracking_uri=store)
    with pytest.raises(RuntimeError, match="with Tracker"):
        tr.log_metrics({"a": 1.0})
    with pytest.raises(RuntimeError):
        _ = tr.run_id
