"""MLflow tracking helper: one run per `Tracker` context, config as params, buffered metrics.

Where runs go, first match wins: the ``MLFLOW_TRACKING_URI`` environment variable (a cluster's
tracking server, e.g. ``http://mlflow:5000``); the URI from config (``Tracker(tracking_uri=...)``);
else the embedded default, a SQLite file ``sqlite:///<cwd>/mlflow.db`` in the working directory that
needs no server (browse it with ``mlflow ui --backend-store-uri sqlite:///mlflow.db``).

For a SQLite store, experiments this module creates keep their artifacts beside the database, in
``<db dir>/mlartifacts/<experiment>/``, not in MLflow's default ``./mlruns`` relative to whatever
directory the process runs in; existing experiments keep the location they were created with.

Only the client API (`mlflow.MlflowClient`) is used, never the fluent ``mlflow.start_run`` globals, so
nothing leaks between runs, threads or tests. Metrics go out in ``log_batch`` calls because one
synchronous ``log_metric`` costs about 2 ms on SQLite; NaN and inf raise instead of being logged.
"""

from __future__ import annotations

import dataclasses
import math
import os
import posixpath
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import mlflow
from mlflow.entities import Metric, Param, RunStatus
from mlflow.exceptions import MlflowException
from omegaconf import DictConfig, ListConfig, OmegaConf

from infra.git import git_commit  # noqa: F401  (re-exported: checkpoints import it without MLflow)

try:
    from mlflow.utils.validation import MAX_PARAM_VAL_LENGTH
except ImportError:  # moved or renamed in some MLflow version
    MAX_PARAM_VAL_LENGTH = 6000

MAX_KEY_LENGTH = 250  # MLflow's limit on param and metric key length
PARAMS_PER_BATCH = 100  # MLflow's limit on params per log_batch call
METRICS_PER_BATCH = 1000  # MLflow's limit on metrics per log_batch call
# MLflow accepts alphanumerics, underscores, dashes, periods, spaces, slashes (and colons off Windows).
_VALID_KEY = re.compile(r"^[/\w.\- ]*$")
_INVALID_KEY_CHAR = re.compile(r"[^/\w.\- ]")


def resolve_tracking_uri(configured: str | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` if set, else ``configured`` if non-empty, else ``sqlite:///<cwd>/mlflow.db``."""
    env = os.environ.get("MLFLOW_TRACKING_URI", "").strip()
    return env or (configured or "").strip() or f"sqlite:///{(Path.cwd() / 'mlflow.db').as_posix()}"


def _accepted(key: str) -> bool:
    """Whether MLflow takes ``key`` as a param or metric name (it also refuses path-like names)."""
    ok = bool(_VALID_KEY.match(key)) and 0 < len(key) <= MAX_KEY_LENGTH
    return ok and posixpath.normpath(key) == key and key != "." and not key.startswith(("/", ".."))


def _sanitize_key(key: str) -> str:
    """``key`` unchanged when MLflow accepts it, else with bad characters (and, if needed, slashes) -> _."""
    if _accepted(key):
        return key
    key = _INVALID_KEY_CHAR.sub("_", key)[:MAX_KEY_LENGTH]
    return key if _accepted(key) else ("_" + key.replace("/", "_"))[:MAX_KEY_LENGTH]


def _is_nested(value: Any) -> bool:
    return isinstance(value, (Mapping, list, tuple, DictConfig, ListConfig)) or (
        dataclasses.is_dataclass(value) and not isinstance(value, type)
    )


def _to_container(cfg: Any) -> Mapping | list | tuple:
    """A DictConfig or dataclass as plain dicts and lists (interpolations resolved); Mappings as-is."""
    if isinstance(cfg, (DictConfig, ListConfig)):
        return OmegaConf.to_container(cfg, resolve=True, enum_to_str=True)
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        try:
            return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True, enum_to_str=True)
        except Exception:  # fields OmegaConf cannot type (arrays, arbitrary objects)
            return dataclasses.asdict(cfg)
    if isinstance(cfg, (Mapping, list, tuple)):
        return cfg
    raise TypeError(f"config must be a Mapping, a dataclass instance or a DictConfig, got {type(cfg)}")


def flatten_params(cfg: Any) -> dict[str, str]:
    """Flatten a config to MLflow params: ``{"sim": {"num_envs": 8}}`` -> ``{"sim.num_envs": "8"}``.

    List items become ``key.0``, ``key.1``, ...; empty containers are kept as ``"{}"`` / ``"[]"``.
    Values are ``str()``-ed and cut to MLflow's ``MAX_PARAM_VAL_LENGTH`` (6000) characters; keys are
    rewritten only when MLflow would refuse them (bad characters, path-like, over 250 characters).
    """
    out: dict[str, str] = {}

    def walk(prefix: str, node: Any) -> None:
        node = _to_container(node)
        items = node.items() if isinstance(node, Mapping) else enumerate(node)
        if not node:
            if prefix:  # keep an empty section visible; an empty config has no params at all
                out[_sanitize_key(prefix)] = "{}" if isinstance(node, Mapping) else "[]"
            return
        for k, v in items:
            key = f"{prefix}.{k}" if prefix else str(k)
            if _is_nested(v):
                walk(key, v)
            else:
                out[_sanitize_key(key)] = str(v)[:MAX_PARAM_VAL_LENGTH]

    walk("", cfg)
    return out


def _config_yaml(cfg: Any) -> str:
    """The resolved config as YAML; flat ``key: value`` lines if OmegaConf cannot hold a value."""
    try:
        if isinstance(cfg, (DictConfig, ListConfig)) or dataclasses.is_dataclass(cfg):
            return OmegaConf.to_yaml(cfg, resolve=True)
        return OmegaConf.to_yaml(OmegaConf.create(dict(cfg)), resolve=True)
    except Exception:  # e.g. numpy scalars or arbitrary objects in a plain dict
        return OmegaConf.to_yaml(OmegaConf.create(flatten_params(cfg)))


def _sqlite_artifact_location(uri: str, experiment: str) -> str | None:
    """``file://<db dir>/mlartifacts/<experiment>`` for a SQLite file store, else None (MLflow decides)."""
    if not uri.startswith("sqlite:///"):
        return None
    db = uri[len("sqlite:///") :].split("?", 1)[0]  # four slashes: absolute; three: relative to cwd
    if not db or db == ":memory:":
        return None
    safe = re.sub(r"[^\w.\-]", "_", experiment).lstrip(".") or "experiment"
    return (Path(db).resolve().parent / "mlartifacts" / safe).as_uri()


class Tracker:
    """One MLflow run, opened by ``with`` and closed FINISHED (or FAILED if an exception escapes).

    On enter: get or create ``experiment``, create the run with ``tags`` plus ``git_commit``, log every
    leaf of ``config`` as a param (`flatten_params`) and the resolved config as ``config.yaml``.
    `log_metrics` buffers; the buffer goes out with ``log_batch`` when it holds ``flush_every``
    metrics, on `flush`, and on exit (also when the block raised).
    """

    def __init__(
        self,
        experiment: str,
        run_name: str | None = None,
        tracking_uri: str | None = None,
        config: Any = None,
        tags: Mapping[str, Any] | None = None,
        flush_every: int = 500,
    ) -> None:
        if flush_every < 1:
            raise ValueError(f"flush_every must be >= 1, got {flush_every}")
        self.experiment = experiment
        self.run_name = run_name
        self.config = config
        self.tags = {str(k): str(v) for k, v in (tags or {}).items()}
        self.flush_every = flush_every
        self._uri = resolve_tracking_uri(tracking_uri)
        self._client: mlflow.MlflowClient | None = None  # made on enter: it creates a SQLite file at once
        self._run_id: str | None = None
        self._experiment_id: str | None = None
        self._buffer: list[Metric] = []

    @property
    def tracking_uri(self) -> str:
        """The URI actually used, after `resolve_tracking_uri`."""
        return self._uri

    @property
    def run_id(self) -> str:
        return self._require_run()

    @property
    def experiment_id(self) -> str:
        self._require_run()
        return self._experiment_id  # type: ignore[return-value]

    def __enter__(self) -> Tracker:
        self._client = mlflow.MlflowClient(tracking_uri=self._uri)
        self._experiment_id = self._get_or_create_experiment()
        tags = {"git_commit": git_commit(), **self.tags}
        run = self._client.create_run(self._experiment_id, run_name=self.run_name, tags=tags)
        self._run_id = run.info.run_id
        if self.config is not None:
            try:
                params = [Param(k, v) for k, v in flatten_params(self.config).items()]
                for i in range(0, len(params), PARAMS_PER_BATCH):
                    self._client.log_batch(self._run_id, params=params[i : i + PARAMS_PER_BATCH])
                self._client.log_text(self._run_id, _config_yaml(self.config), "config.yaml")
            except BaseException:  # __exit__ will not run: do not leave the run RUNNING forever
                self._client.set_terminated(self._run_id, status=RunStatus.to_string(RunStatus.FAILED))
                raise
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        status = RunStatus.FAILED if exc_type is not None else RunStatus.FINISHED
        try:
            self.flush()
        except BaseException:
            status = RunStatus.FAILED
            raise
        finally:
            self._client.set_terminated(self.run_id, status=RunStatus.to_string(status))
        return False

    def log_metrics(self, metrics: Mapping[str, Any], step: int = 0) -> None:
        """Buffer scalar metrics at ``step``; raises ValueError (logging none) on a NaN/inf or bad key."""
        self._require_run()
        stamp = int(time.time() * 1000)
        batch = []
        for key, value in metrics.items():
            try:
                number = float(value)  # python, numpy and 0-d torch scalars
            except (TypeError, ValueError) as err:
                raise ValueError(f"metric {key!r} is not a scalar: {value!r}") from err
            if not math.isfinite(number):
                raise ValueError(f"metric {key!r} is not finite ({number}) at step {step}")
            if not _accepted(key):
                raise ValueError(f"metric key {key!r} is not a valid MLflow name")
            batch.append(Metric(key, number, stamp, int(step)))
        self._buffer.extend(batch)
        if len(self._buffer) >= self.flush_every:
            self.flush()

    def flush(self) -> None:
        """Write buffered metrics now, in ``log_batch`` calls of at most 1000."""
        buffer, self._buffer = self._buffer, []
        for i in range(0, len(buffer), METRICS_PER_BATCH):
            self._client.log_batch(self.run_id, metrics=buffer[i : i + METRICS_PER_BATCH])

    def log_artifact(self, path: str | Path, artifact_path: str | None = None) -> None:
        """Copy a local file (or directory) into the run's artifacts, under ``artifact_path``."""
        self._client.log_artifact(self.run_id, str(path), artifact_path)

    def log_dict(self, obj: Mapping[str, Any], artifact_file: str) -> None:
        """Store ``obj`` as a JSON (or YAML, by extension) artifact at ``artifact_file``."""
        self._client.log_dict(self.run_id, dict(obj), artifact_file)

    def log_figure(self, fig: Any, artifact_file: str) -> None:
        """Render a matplotlib (or plotly) figure to ``artifact_file``, e.g. ``plots/timing.png``."""
        self._client.log_figure(self.run_id, fig, artifact_file)

    def _require_run(self) -> str:
        if self._run_id is None:
            raise RuntimeError("Tracker has no run yet; use it as `with Tracker(...) as tr:`")
        return self._run_id

    def _get_or_create_experiment(self) -> str:
        found = self._client.get_experiment_by_name(self.experiment)
        if found is None:
            location = _sqlite_artifact_location(self._uri, self.experiment)
            try:
                return self._client.create_experiment(self.experiment, artifact_location=location)
            except MlflowException:  # another process created it in between
                found = self._client.get_experiment_by_name(self.experiment)
                if found is None:
                    raise
        if found.lifecycle_stage != "active":
            raise RuntimeError(f"experiment {self.experiment!r} is deleted; restore it or pick another name")
        return found.experiment_id
