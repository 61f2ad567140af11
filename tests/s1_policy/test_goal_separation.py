"""The goal encoder's family-separation term (``s1_policy.goal.family_separation_loss``)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from s1_policy.goal import GoalEncoder, family_separation_loss
from s1_policy.train import family_labels

pytestmark = pytest.mark.usefixtures("one_thread")


def test_only_pairs_from_two_families_above_the_margin_count():
    e = torch.eye(3)
    same = torch.tensor([0, 0, 0])
    assert float(family_separation_loss(torch.ones(3, 3), same, 0.3)) == 0.0  # one family: nothing to separate
    assert float(family_separation_loss(e, torch.tensor([0, 1, 2]), 0.3)) == 0.0  # orthogonal
    parallel = family_separation_loss(torch.ones(3, 3), torch.tensor([0, 1, 2]), 0.3)
    assert float(parallel) == pytest.approx(0.7 ** 2)
    # two samples of family 0 along x, one of family 1 at 60 degrees: cosine 0.5, hinge 0.2 on its 4 pairs
    z = torch.tensor([[1.0, 0.0], [2.0, 0.0], [0.5, 0.75 ** 0.5]])
    assert float(family_separation_loss(z, torch.tensor([0, 0, 1]), 0.3)) == pytest.approx(0.2 ** 2, rel=1e-5)


def test_training_on_the_term_pulls_family_goals_apart():
    torch.manual_seed(0)
    n_families = 6
    enc = GoalEncoder(n_families + 4, z_dim=16, width=32)
    with torch.no_grad():  # start where behaviour cloning left the committed encoder: every z nearly parallel
        enc.net[-1].bias.fill_(2.0)
    goals = torch.zeros(60, n_families + 4)
    family = torch.arange(60) % n_families
    goals[torch.arange(60), family] = 1.0
    goals[:, -4:] = torch.rand(60, 4)  # bearing and distance vary within a family

    def worst() -> float:
        with torch.no_grad():
            zn = F.normalize(enc(goals), dim=-1)
            sim = zn @ zn.T
            return float(sim[family[:, None] != family[None, :]].max())

    before = worst()
    opt = torch.optim.Adam(enc.parameters(), lr=3e-3)
    for _ in range(300):
        loss = family_separation_loss(enc(goals), family, 0.3)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert before > 0.9
    assert worst() < 0.4


def test_family_labels_come_from_the_named_one_hot_entries():
    names = ["family.a", "family.b", "family.c", "target.cos", "target.sin"]
    goal = np.array([[0, 1, 0, 0.5, 0.5], [0, 0, 1, 0, 0], [0, 0, 0, 1, 0]], dtype=np.float32)
    assert family_labels(goal, names).tolist() == [1, 2, -1]
    assert family_labels(goal, None).tolist() == [-1, -1, -1]
