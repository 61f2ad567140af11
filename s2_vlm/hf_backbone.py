"""S2 on a pretrained Hugging Face vision-language model, loaded from a local directory (no downloads).

Following GR00T N1, the VLM is a feature extractor: image + instruction go through ``AutoProcessor`` and the
image-text-to-text model (SmolVLM/Idefics3, PaliGemma, Qwen2-VL, LLaVA, ...) with ``output_hidden_states=True``;
the hidden states of one language-model layer (the middle one by default, which GR00T found better for action
than the last) are mean-pooled over the real tokens, projected to width d and read out by the same
:class:`~s2_vlm.model.GoalHeads` as :class:`~s2_vlm.model.S2Model`::

    image (B,3,H,W) uint8, texts [B] ─ processor ─▶ VLM ─▶ hidden_states[layer] (B, T, C) ─ masked mean ─▶ (B, C)
        ─ LayerNorm, Linear, SiLU ─▶ (B, d) ─ GoalHeads ─▶ z (B, D), bearing, distance, has_target, family
"""

from __future__ import annotations

import inspect
import os
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from infra.config.s2 import S2ModelConfig
from s2_vlm.model import GoalHeads
from s2_vlm.text import mean_pool

_EXPECTED = "a local Hugging Face model directory written by save_pretrained (config.json, *.safetensors or " \
            "*.bin weights, and the processor's files: processor_config.json/preprocessor_config.json, tokenizer)"


def check_model_dir(path: str | Path) -> Path:
    """Raise a clear error unless ``path`` looks like a saved Hugging Face model; returns it as a Path."""
    path = Path(path).expanduser()
    if not path.exists():
        raise FileNotFoundError(f"HFGoalModel: {path} does not exist; expected {_EXPECTED}")
    if not path.is_dir():
        raise NotADirectoryError(f"HFGoalModel: {path} is not a directory; expected {_EXPECTED}")
    if not (path / "config.json").is_file():
        raise FileNotFoundError(f"HFGoalModel: {path} has no config.json; expected {_EXPECTED}")
    if not any(path.glob("*.safetensors")) and not any(path.glob("*.bin")):
        raise FileNotFoundError(f"HFGoalModel: {path} has config.json but no *.safetensors or *.bin weights; "
                                f"expected {_EXPECTED}")
    return path


def load_vlm(path: Path) -> tuple[object, nn.Module]:
    """(processor, image-text-to-text model in float32) from a checked local directory, offline."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import transformers

    auto_classes = [getattr(transformers, name) for name in ("AutoModelForImageTextToText", "AutoModelForVision2Seq")
                    if hasattr(transformers, name)]
    try:
        processor = transformers.AutoProcessor.from_pretrained(path, local_files_only=True)
    except Exception as exc:  # noqa: BLE001 - transformers raises OSError, ValueError, KeyError, ...
        raise ValueError(f"HFGoalModel: cannot load a processor from {path}: {exc}; expected {_EXPECTED}") from exc
    errors = []
    for auto in auto_classes:
        try:
            return processor, auto.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        except ValueError as exc:  # config type not mapped by this auto class
            errors.append(f"{auto.__name__}: {exc}")
    raise ValueError(f"HFGoalModel: {path}/config.json is not a vision-language model that transformers "
                     f"{transformers.__version__} can load: {' | '.join(errors)}")


def resolve_layer(layer: int, num_layers: int, where: str = "") -> int:
    """Index into hidden_states (length num_layers + 1, 0 = embeddings): -1 -> the middle layer num_layers // 2."""
    if layer == -1:
        return max(num_layers // 2, 1)
    if not 0 <= layer <= num_layers:
        raise ValueError(f"HFGoalModel: hf_layer {layer} is out of range for {where} with {num_layers} layers; "
                         f"use 0..{num_layers} or -1 (middle)")
    return layer


class HFGoalModel(nn.Module):
    """S2 with a local Hugging Face VLM backbone: image (B, 3, H, W) uint8 + B instructions -> the S2 output dict.

    Same interface and outputs as :class:`~s2_vlm.model.S2Model` (z (B, D) in (-1, 1), bearing (B, 2),
    distance (B,), has_target (B,), family (B, F)). The VLM is frozen (eval mode, no gradient) unless
    ``config.hf_train_backbone``; the projection and heads always train. The processor resizes the image.
    """

    def __init__(self, config: S2ModelConfig, path: str | Path | None = None):
        super().__init__()
        self.config = config
        self.path = check_model_dir(path or config.hf_path)
        self.processor, self.vlm = load_vlm(self.path)
        text_cfg = self.vlm.config.get_text_config()
        self.layer = resolve_layer(config.hf_layer, text_cfg.num_hidden_layers, f"{self.path}/config.json")
        self.train_backbone = config.hf_train_backbone
        self.vlm.requires_grad_(self.train_backbone)
        # ForConditionalGeneration wraps a base model that returns hidden states without computing vocab logits
        base = getattr(self.vlm, "model", None)
        self._base = base if isinstance(base, nn.Module) and "pixel_values" in inspect.signature(
            base.forward).parameters else self.vlm
        self.proj = nn.Sequential(nn.LayerNorm(text_cfg.hidden_size), nn.Linear(text_cfg.hidden_size, config.width),
                                  nn.SiLU())
        self.heads = GoalHeads(config.width, config.z_dim, config.num_families)
        self.train(self.training)

    def train(self, mode: bool = True) -> HFGoalModel:
        super().train(mode)
        if not self.train_backbone:
            self.vlm.eval()
        return self

    def prompts(self, texts: list[str]) -> list[str]:
        """One prompt per instruction, with the processor's image placeholder (chat template when it has one)."""
        template = getattr(self.processor, "chat_template", None)
        if template:
            return [self.processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": t}]}],
                add_generation_prompt=False, tokenize=False) for t in texts]
        image_token = getattr(self.processor, "image_token", None)
        if not image_token:
            raise ValueError(f"HFGoalModel: the processor in {self.path} has neither a chat_template nor an "
                             "image_token, so the image cannot be placed in the prompt")
        return [f"{image_token}{t}" for t in texts]

    def features(self, image: Tensor, texts: list[str]) -> Tensor:
        """image (B, 3, H, W) uint8, texts [B] -> pooled hidden state of the chosen layer (B, C)."""
        if not isinstance(image, Tensor) or image.ndim != 4 or image.shape[1] != 3:
            shape = tuple(image.shape) if isinstance(image, Tensor) else type(image).__name__
            raise ValueError(f"HFGoalModel: image must be a (B, 3, H, W) uint8 tensor, got {shape}")
        if isinstance(texts, str) or len(texts) != image.shape[0]:
            raise ValueError(f"HFGoalModel: texts must be a list of {image.shape[0]} instructions, got {texts!r:.80}")
        pixels = image.detach().to("cpu", torch.uint8).permute(0, 2, 3, 1).numpy()  # (B, H, W, 3)
        images = [[np.ascontiguousarray(p)] for p in pixels]  # one image per prompt
        inputs = self.processor(images=images, text=self.prompts(list(texts)), return_tensors="pt", padding=True)
        device = self.proj[1].weight.device
        inputs = {k: v.to(device) for k, v in inputs.items() if isinstance(v, Tensor)}
        with torch.set_grad_enabled(self.train_backbone and torch.is_grad_enabled()):
            out = self._base(**inputs, output_hidden_states=True)
        hidden = out.hidden_states[self.layer].float()  # (B, T, C)
        return mean_pool(hidden, inputs["attention_mask"].bool())

    def forward(self, image: Tensor, texts: list[str]) -> dict[str, Tensor]:
        """image (B, 3, H, W) uint8, texts: B instructions -> {z (B, D), bearing (B, 2), distance (B,),
        has_target (B,), family (B, F)}."""
        return self.heads(self.proj(self.features(image, texts)))
