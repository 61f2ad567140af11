"""Checkpoints: exact round trips, atomic saves, and every kind of bad checkpoint refused by name."""

from __future__ import annotations

import json
import os

import pytest
import torch
from torch import nn

from infra import checkpoint
from infra.checkpoint import (
    CheckpointError,
    check_config_matches,
    flatten_state,
    load_checkpoint,
    save_checkpoint,
    unflatten_state,
)

META = {
    "config": {"model": {"hidden_dims": [256, 128]}, "lr": 3e-4},
    "body": {"n_dof": 65, "name": "humanoid"},
    "normaliser": {"mean": [0.1, -2.5], "var": [1.0, 0.25], "count": 1234},
    "iteration": 100,
    "note": None,
}


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {
        "policy/w": torch.randn(4, 3, generator=g),
        "policy/w_t": torch.randn(3, 4, generator=g).t(),  # non-contiguous
        "step": torch.tensor([7], dtype=torch.int64),
        "mask": torch.tensor([True, False]),
        "half": torch.randn(5, generator=g).to(torch.bfloat16),
    }


@pytest.fixture
def saved(tmp_path):
    return save_checkpoint(tmp_path / "ck.safetensors", _tensors(), META, kind="s0")


def test_round_trip_is_exact(saved):
    ck = load_checkpoint(saved, kind="s0")
    expected = _tensors()
    assert ck.tensors.keys() == expected.keys()
    for name, t in expected.items():
        assert ck.tensors[name].dtype == t.dtype and torch.equal(ck.tensors[name], t), name
    assert ck.meta == META
    assert ck.sidecar["kind"] == "s0" and ck.sidecar["format"] == "humanoid-checkpoint"
    assert ck.sidecar["version"] == 1 and len(ck.sidecar["git_commit"]) > 0
    assert ck.path == saved and saved.with_suffix(".json").is_file()


def test_flatten_unflatten_loads_into_fresh_module(tmp_path):
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    other = {"w": torch.ones(2)}
    path = save_checkpoint(
        tmp_path / "m.safetensors", {**flatten_state("actor", net.state_dict()), **other}, {}, kind="s0"
    )
    fresh = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    fresh.load_state_dict(unflatten_state("actor", load_checkpoint(path).tensors))  # strict: no stray keys
    x = torch.randn(5, 3)
    assert torch.equal(fresh(x), net(x))


def test_flipped_byte_fails_sha256(saved):
    data = bytearray(saved.read_bytes())
    data[-1] ^= 0x01
    saved.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(saved)


def test_truncated_tensors_file_fails(saved):
    saved.write_bytes(saved.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(saved)


def test_unparseable_tensors_file_fails_even_with_matching_sha(saved):
    saved.write_bytes(b"not a safetensors file")
    side = json.loads(saved.with_suffix(".json").read_text())
    side["sha256"] = checkpoint._sha256(saved)
    saved.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(CheckpointError, match="cannot read tensors"):
        load_checkpoint(saved)


def test_missing_sidecar_is_named(saved):
    saved.with_suffix(".json").unlink()
    with pytest.raises(CheckpointError, match="ck.json"):
        load_checkpoint(saved)


def test_missing_tensors_file(tmp_path):
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path / "nope.safetensors")


@pytest.mark.parametrize(
    ("text", "match"),
    [("{not json", "not valid JSON"), ('{"format": "other"}', "not a humanoid-checkpoint"), (None, "version 2")],
)
def test_bad_sidecar(saved, text, match):
    side = saved.with_suffix(".json")
    if text is None:
        text = json.dumps({**json.loads(side.read_text()), "version": 2})
    side.write_text(text)
    with pytest.raises(CheckpointError, match=match):
        load_checkpoint(saved)


def test_kind_mismatch(saved):
    with pytest.raises(CheckpointError, match="expected an s1 checkpoint, got s0"):
        load_checkpoint(saved, kind="s1")


@pytest.mark.parametrize("bad", [float("nan"), float("inf")])
def test_non_finite_tensor_refused_and_nothing_written(tmp_path, bad):
    tensors = {**_tensors(), "critic/bias": torch.tensor([0.0, bad])}
    with pytest.raises(ValueError, match="critic/bias"):
        save_checkpoint(tmp_path / "ck.safetensors", tensors, META, kind="s0")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(
    ("meta", "match"),
    [
        ({"body": {"mass": torch.tensor(1.0)}}, r"meta\.body\.mass has type Tensor"),
        ({"normaliser": {"mean": [0.0, float("nan")]}}, r"meta\.normaliser\.mean\[1\] is nan"),
        ({"by_id": {3: "x"}}, r"meta\.by_id has key 3"),
    ],
)
def test_bad_meta_refused_naming_key(tmp_path, meta, match):
    with pytest.raises(ValueError, match=match):
        save_checkpoint(tmp_path / "ck.safetensors", _tensors(), meta, kind="s0")
    assert list(tmp_path.iterdir()) == []


def test_bad_suffix_refused(tmp_path):
    with pytest.raises(ValueError, match=".safetensors"):
        save_checkpoint(tmp_path / "ck.pt", _tensors(), META, kind="s0")


def test_config_mismatch_lists_every_key_with_both_values():
    saved = {"model": {"hidden_dims": [256, 128]}, "body": {"n_dof": 65}, "lr": 1e-3}
    current = {"model": {"hidden_dims": (512, 128)}, "body": {"n_dof": 29}, "lr": 1e-3}
    with pytest.raises(CheckpointError) as err:
        check_config_matches(saved, current, ["model.hidden_dims", "body.n_dof", "lr", "extra.key"])
    assert str(err.value).splitlines()[1:] == [  # every mismatch, in order; the matching "lr" is not listed
        "  model.hidden_dims: saved [256, 128], current [512, 128]",
        "  body.n_dof: saved 65, current 29",
        "  extra.key: saved '<missing>', current '<missing>'",
    ]
    check_config_matches(saved, {**current, "model": {"hidden_dims": (256, 128)}, "body": {"n_dof": 65}}, ["model"])


def test_config_missing_key_is_a_mismatch():
    with pytest.raises(CheckpointError, match=r"body\.n_dof: saved 65, current '<missing>'"):
        check_config_matches({"body": {"n_dof": 65}}, {"body": {}}, ["body.n_dof"])


def _interrupt_second_replace(monkeypatch):
    real, calls = os.replace, []

    def flaky(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise OSError("simulated crash between the two renames")
        real(src, dst)

    monkeypatch.setattr(checkpoint.os, "replace", flaky)


def test_interrupted_save_leaves_nothing_loadable(tmp_path, monkeypatch):
    _interrupt_second_replace(monkeypatch)
    path = tmp_path / "ck.safetensors"
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(path, _tensors(), META, kind="s0")
    with pytest.raises(CheckpointError):
        load_checkpoint(path)
    assert [p.name for p in tmp_path.iterdir()] == ["ck.safetensors"]  # no temp files linger


def test_interrupted_overwrite_fails_sha_against_old_sidecar(saved, monkeypatch):
    _interrupt_second_replace(monkeypatch)
    new = {name: t + 1 if t.is_floating_point() else t for name, t in _tensors().items()}
    with pytest.raises(OSError, match="simulated crash"):
        save_checkpoint(saved, new, META, kind="s0")
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(saved)
    assert sorted(p.name for p in saved.parent.iterdir()) == ["ck.json", "ck.safetensors"]


def test_tied_and_empty_tensors_save(tmp_path):
    w = torch.randn(3, 3)
    tensors = {"enc/w": w, "dec/w": w, "a": torch.zeros(0), "b": torch.zeros(0, 4)}
    ck = load_checkpoint(save_checkpoint(tmp_path / "t.safetensors", tensors, {}, kind="s1"), kind="s1")
    assert torch.equal(ck.tensors["dec/w"], w) and ck.tensors["b"].shape == (0, 4)
