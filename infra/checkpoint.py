"""Checkpoints as safetensors plus a JSON sidecar; no pickle, so they are safe to move between machines.

Layout for a checkpoint ``run/ck.safetensors``:
- ``run/ck.safetensors``: a flat ``{name: tensor}`` map, contiguous, on CPU. Nested state (module or
  optimizer state dicts) is flattened by the caller into ``prefix/name`` keys (`flatten_state`).
- ``run/ck.json``: ``{"format": "humanoid-checkpoint", "version": 1, "kind": "s0", "sha256": <hex of
  the tensors file>, "created": <ISO-8601 UTC>, "git_commit": ..., "meta": {...}}``; ``meta`` is the
  caller's JSON (config dict, body info, normaliser statistics as lists, iteration; tuples -> lists).
Saving is atomic: both files go to fsynced temporaries beside ``path``, then the tensors file is renamed
into place and the sidecar last; a crash between leaves a sidecar whose sha256 mismatches, or none.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

FORMAT = "humanoid-checkpoint"
VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be loaded or does not match what the caller expects."""


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint: the tensors, the caller's ``meta``, the whole sidecar and the tensors path."""

    tensors: dict[str, torch.Tensor]
    meta: dict[str, Any]
    sidecar: dict[str, Any]
    path: Path


def flatten_state(prefix: str, state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``{name: t}`` -> ``{f"{prefix}/{name}": t}`` for a plain (tensor-valued) module state_dict."""
    return {f"{prefix}/{name}": t for name, t in state_dict.items()}


def unflatten_state(prefix: str, tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The inverse of `flatten_state`: the entries under ``prefix/``, with the prefix stripped."""
    head = f"{prefix}/"
    return {name[len(head) :]: t for name, t in tensors.items() if name.startswith(head)}


def optimizer_tensors(opt: torch.optim.Optimizer, prefix: str = "optim") -> dict[str, torch.Tensor]:
    """An optimiser's per-parameter state as flat tensors ``{prefix}/<param index>/<name>`` (safetensors-ready;
    the param groups, plain numbers, belong in the sidecar if a caller needs them)."""
    return {f"{prefix}/{i}/{k}": v for i, st in opt.state_dict()["state"].items() for k, v in st.items()
            if torch.is_tensor(v)}


def optimizer_state(tensors: Mapping[str, torch.Tensor], prefix: str = "optim") -> dict[int, dict[str, torch.Tensor]]:
    """The inverse of `optimizer_tensors`: ``{param index: {name: tensor}}``, an optimiser state_dict's "state"."""
    state: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in unflatten_state(prefix, tensors).items():
        index, name = key.split("/", 1)
        state.setdefault(int(index), {})[name] = value
    return state


def _check_json(value: Any, where: str) -> None:
    """Raise ValueError naming ``where`` unless ``value`` is plain, finite JSON (str keys only)."""
    if value is None or isinstance(value, (bool, int, str)):
        return
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where} is {value}; checkpoints refuse NaN/inf")
    elif isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                raise ValueError(f"{where} has key {k!r} of type {type(k).__name__}; JSON keys must be str")
            _check_json(v, f"{where}.{k}")
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _check_json(v, f"{where}[{i}]")
    else:
        raise ValueError(f"{where} has type {type(value).__name__}, not JSON-serialisable (use .tolist()/float())")


def _prepare(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Detached, contiguous CPU copies where needed; refuses non-tensors and non-finite float tensors."""
    out, storages = {}, set()
    for name, t in tensors.items():
        if not isinstance(name, str) or not isinstance(t, torch.Tensor):
            raise ValueError(f"tensor {name!r} must be a str -> torch.Tensor entry, got {type(t).__name__}")
        t = t.detach().to("cpu").contiguous()
        if (t.is_floating_point() or t.is_complex()) and not bool(torch.isfinite(t).all()):
            raise ValueError(f"tensor {name!r} contains NaN/inf; refusing to save")
        ptr = t.untyped_storage().data_ptr()
        if ptr in storages:  # safetensors refuses tensors sharing storage (tied weights): copy them
            t = t.clone()
        storages.add(ptr)
        out[name] = t
    return out


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()  # hashlib.file_digest is 3.11+
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)  # a directory too: fsyncing it makes renames inside it durable
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def save_checkpoint(path: str | Path, tensors: Mapping[str, torch.Tensor], meta: dict, *, kind: str) -> Path:
    """Atomically write ``path`` (``*.safetensors``) and its ``.json`` sidecar; returns ``path``.

    Raises ValueError before writing anything for a bad suffix or kind, a non-JSON or NaN/inf value in
    ``meta`` (naming its key) or a NaN/inf float tensor (naming it).
    """
    from infra.git import git_commit

    path = Path(path)
    if path.suffix != ".safetensors":
        raise ValueError(f"checkpoint path must end with .safetensors: {path}")
    if not isinstance(kind, str) or not kind or not isinstance(meta, dict):
        raise ValueError(f"need a non-empty str kind and a dict meta, got {kind!r} and {type(meta).__name__}")
    _check_json(meta, "meta")
    prepared = _prepare(tensors)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_tensors, tmp_json = (path.with_name(f".{path.stem}.{uuid.uuid4().hex[:8]}.{x}.tmp") for x in ("st", "json"))
    try:
        save_file(prepared, str(tmp_tensors))
        _fsync(tmp_tensors)
        sidecar = {
            "format": FORMAT, "version": VERSION, "kind": kind, "sha256": _sha256(tmp_tensors),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "git_commit": git_commit(Path(__file__).resolve().parent), "meta": meta,
        }  # fmt: skip
        tmp_json.write_text(json.dumps(sidecar, indent=2, allow_nan=False))
        _fsync(tmp_json)
        os.replace(tmp_tensors, path)  # tensors first: a sidecar never points at a file not yet in place
        os.replace(tmp_json, path.with_suffix(".json"))
        _fsync(path.parent)  # make the renames durable
    except BaseException:
        for tmp in (tmp_tensors, tmp_json):
            tmp.unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path: str | Path, *, kind: str | None = None, device: str | torch.device = "cpu") -> Checkpoint:
    """Load ``path`` and its sidecar, checking format, version, ``kind`` (if given) and sha256."""
    path = Path(path)
    side = path.with_suffix(".json")
    if path.suffix != ".safetensors" or not path.is_file():
        raise CheckpointError(f"{path}: tensors file is missing (or does not end with .safetensors)")
    if not side.is_file():
        raise CheckpointError(f"{path}: sidecar {side} is missing (half-written checkpoint?)")
    try:
        sidecar = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"{side}: sidecar is not valid JSON ({e})") from e
    if not isinstance(sidecar, dict) or sidecar.get("format") != FORMAT or not isinstance(sidecar.get("meta"), dict):
        raise CheckpointError(f"{side}: not a {FORMAT} sidecar")
    if sidecar.get("version") != VERSION:
        raise CheckpointError(f"{side}: version {sidecar.get('version')!r}, this code reads version {VERSION}")
    if kind is not None and sidecar.get("kind") != kind:
        raise CheckpointError(f"{path}: expected an {kind} checkpoint, got {sidecar.get('kind')}")
    if _sha256(path) != sidecar.get("sha256"):
        raise CheckpointError(f"{path}: sha256 does not match the sidecar's (corrupted or half-written)")
    try:
        tensors = load_file(path, device=str(device))
    except Exception as e:  # SafetensorError, or a bad device string
        raise CheckpointError(f"{path}: cannot read tensors ({e})") from e
    return Checkpoint(tensors=tensors, meta=sidecar["meta"], sidecar=sidecar, path=path)


def _lookup(tree: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(tree, Mapping) or part not in tree:
            return "<missing>"
        tree = tree[part]
    return _plain(tree)


def _plain(value: Any) -> Any:
    """Tuples -> lists, recursively, so a current config compares equal to its JSON round trip."""
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def check_config_matches(saved: Mapping, current: Mapping, keys: list[str]) -> None:
    """Raise CheckpointError listing every dotted key (``"model.hidden_dims"``) that differs or is missing."""
    bad = []
    for key in keys:
        old, new = _lookup(saved, key), _lookup(current, key)
        if old != new or old == "<missing>":  # missing from both: a misspelt key, not a match
            bad.append(f"  {key}: saved {old!r}, current {new!r}")
    if bad:
        raise CheckpointError("checkpoint config does not match the current config:\n" + "\n".join(bad))
