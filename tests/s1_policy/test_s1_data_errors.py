"""Bad datasets give clear errors naming the file and the column; flow matching lands on a toy 2-D target."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from infra.config.s1 import S1ModelConfig
from s1_policy.dataset import DatasetError, DatasetWriter, DemoDataset, Feature
from s1_policy.model import S1Model
from s1_policy.train import load_demos


@pytest.fixture()
def small(tmp_path):
    root = tmp_path / "ds"
    features = {"observation.state": Feature("float32", (3,)), "action": Feature("float32", (4,))}
    with DatasetWriter(root, 25, features) as w:
        for i in range(5):
            w.add_frame({"observation.state": np.full(3, i, np.float32), "action": np.ones(4, np.float32)}, "stop")
        w.save_episode()
    return root


def _rewrite(root, change):
    path = root / "data/chunk-000/file-000.parquet"
    pq.write_table(change(pq.read_table(path)), path)


def test_missing_column_names_file_and_key(small):
    _rewrite(small, lambda t: t.drop(["action"]))
    with pytest.raises(DatasetError, match=r"file-000\.parquet.*'action'"):
        DemoDataset(small).column("action")


def test_wrong_shape_names_the_column(small):
    bad = pa.array([[1.0, 2.0]] * 5, type=pa.list_(pa.float32(), 2))
    _rewrite(small, lambda t: t.set_column(t.schema.get_field_index("action"), "action", bad))
    with pytest.raises(DatasetError, match="action"):
        DemoDataset(small).column("action")


def test_s1_needs_its_features(small):
    with pytest.raises(DatasetError, match="observation.images.head|observation.goal"):
        load_demos(small, horizon=2)


def test_flow_matching_lands_on_the_modes_of_a_toy_2d_distribution():
    """Unconditional (constant inputs) bimodal target: samples must land near (-2, 0) or (2, 0), both used."""
    torch.manual_seed(0)
    torch.set_num_threads(1)
    cfg = S1ModelConfig(image_size=32, proprio_dim=2, z_dim=2, horizon=1, action_dim=2, width=32, heads=2, layers=1,
                        cnn_channels=[4], keypoints=2, visual_grid=1, head="flow")
    model = S1Model(cfg)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    image, proprio, z = torch.zeros(256, 3, 32, 32, dtype=torch.uint8), torch.zeros(256, 2), torch.zeros(256, 2)
    modes = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    for _ in range(400):
        target = modes[torch.randint(0, 2, (256,))] + 0.05 * torch.randn(256, 2)
        loss, _ = model.loss(image, proprio, z, target[:, None])
        opt.zero_grad()
        loss.backward()
        opt.step()
    samples = model.sample(image, proprio, z, generator=torch.Generator().manual_seed(1))[:, 0]  # (256, 2)
    dist = torch.cdist(samples, modes).min(dim=1).values
    assert (dist < 0.5).float().mean() > 0.9
    left = (samples[:, 0] < 0).float().mean()
    assert 0.2 < left < 0.8
