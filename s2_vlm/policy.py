"""The trained S2 as an inference object: (head-camera image, instruction) -> z and the auxiliary heads.

Rate: S2's (5 Hz by default); batch 1. The frozen MiniLM comes from its package; the rest from a
``s2-policy`` (or ``s2-train``) checkpoint. ``known_similarity`` tells how close an instruction is to the
instructions S2 was trained on (cosine of MiniLM sentence embeddings), which the stack uses to refuse
instructions outside the task families.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from infra.checkpoint import CheckpointError, load_checkpoint
from infra.config.s2 import S2ModelConfig
from s2_vlm.model import build_s2_model
from s2_vlm.train import load_s2_weights

KINDS = ("s2-policy", "s2-train")


class S2Policy:
    """``infer(image (S, S, 3) uint8, instruction) -> dict(z (D,), family (F,) probabilities, bearing (2,),
    distance, has_target)``, numpy float32."""

    def __init__(self, path: str | Path) -> None:
        ckpt = load_checkpoint(path)
        if ckpt.sidecar.get("kind") not in KINDS:
            raise CheckpointError(f"{path}: expected an S2 checkpoint ({' or '.join(KINDS)}), "
                                  f"got {ckpt.sidecar.get('kind')}")
        self.path, self.meta = Path(path), ckpt.meta
        self.config = S2ModelConfig(**ckpt.meta["model"])
        self.model = build_s2_model(self.config)
        try:
            load_s2_weights(self.model, ckpt.tensors)
        except ValueError as exc:
            raise CheckpointError(f"{path}: {exc}") from exc
        self.model.eval()
        self.known = list(ckpt.meta.get("instructions", []))
        self._known_emb = None

    def reset(self) -> None:
        """Stateless."""

    @torch.inference_mode()
    def infer(self, image: np.ndarray, instruction: str) -> dict[str, np.ndarray]:
        img = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)[None]
        out = self.model(img, [instruction])
        return {"z": out["z"][0].numpy(), "family": torch.softmax(out["family"][0], -1).numpy(),
                "bearing": out["bearing"][0].numpy(), "distance": out["distance"][0].numpy(),
                "has_target": torch.sigmoid(out["has_target"][0]).numpy()}

    @torch.inference_mode()
    def similarities(self, instruction: str) -> np.ndarray:
        """Cosine similarity (MiniLM sentence embeddings) between the instruction and each of ``known``, the
        instructions S2 was trained on: (len(known),) float32."""
        text = self.model.text
        if self._known_emb is None:
            self._known_emb = text.encode_sentences(self.known)
        return (self._known_emb @ text.encode_sentences([instruction])[0]).numpy()

    def known_similarity(self, instruction: str) -> float:
        """Largest cosine similarity between the instruction and the training instructions (1 = seen)."""
        return float(self.similarities(instruction).max()) if self.known else 1.0
