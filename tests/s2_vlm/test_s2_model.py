"""Tests of S2: the MiniLM text encoder, the latent-goal model, its loss and the Hugging Face VLM adapter.

Latency (one thread, one image + instruction, with and without the text cache)::

    python -c "from s2_vlm.model import *; print(measure_latency(S2Model(S2ModelConfig()), n=100))"
"""

from __future__ import annotations

import json
import math

import pytest
import torch

from infra.config.s2 import S2LossWeights, S2ModelConfig
from s2_vlm.model import S2Model, build_s2_model, fake_inputs, measure_latency, s2_loss
from s2_vlm.text import TEXT_DIM, TextEncoder

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def text_encoder() -> TextEncoder:
    """The frozen MiniLM, loaded once (offline) and shared by the models below."""
    return TextEncoder()


# ---------------------------------------------------------------------------------------------------
# 1. text encoder


@pytest.mark.parametrize(("anchor", "paraphrase", "unrelated"), [
    ("walk to the red box", "go over to the red box", "raise both arms"),
    ("raise both arms", "put your arms up in the air", "walk to the blue sphere"),
    ("turn left", "rotate to your left", "squat down"),
    ("wave with your right hand", "give a wave using your right hand", "squat down"),
])
def test_text_encoder_paraphrases_are_closer(text_encoder, anchor, paraphrase, unrelated):
    e = text_encoder.encode_sentences([anchor, paraphrase, unrelated])  # (3, 384) unit norm
    assert e.shape == (3, TEXT_DIM)
    torch.testing.assert_close(e.norm(dim=-1), torch.ones(3))
    assert float(e[0] @ e[1]) > float(e[0] @ e[2]) + 0.2


def test_text_encoder_tokens_mask_and_cache(text_encoder):
    texts = ["squat down", "point at the green cylinder please"]
    fresh = text_encoder._run(texts)  # uncached reference
    text_encoder.clear_cache()
    enc = text_encoder(texts)
    hits = text_encoder.hits
    again = text_encoder(texts[::-1])
    assert text_encoder.hits == hits + 2
    assert enc.tokens.shape == (2, enc.mask.shape[1], TEXT_DIM) and enc.mask.dtype == torch.bool
    assert enc.mask[1].all() and not enc.mask[0].all()  # the short instruction is padded
    torch.testing.assert_close(enc.tokens * enc.mask[..., None], fresh.tokens * fresh.mask[..., None])
    torch.testing.assert_close(again.sentence, enc.sentence.flip(0))
    assert not enc.tokens.requires_grad and not any(p.requires_grad for p in text_encoder.parameters())
    with pytest.raises(TypeError, match="list of str"):
        text_encoder("squat down")


# ---------------------------------------------------------------------------------------------------
# 2. config, shapes and finiteness


def test_config_validation():
    with pytest.raises(ValueError, match="backbone"):
        S2ModelConfig(backbone="clip")
    with pytest.raises(ValueError, match="hf_path"):
        S2ModelConfig(backbone="hf")
    with pytest.raises(ValueError, match="divisible|multiple"):
        S2ModelConfig(width=130, heads=4)
    with pytest.raises(ValueError, match="image_size"):
        S2ModelConfig(image_size=16)


def test_default_model_shapes_and_range(text_encoder):
    torch.manual_seed(0)
    cfg = S2ModelConfig()
    model = S2Model(cfg, text_encoder=text_encoder).eval()
    assert 500_000 <= model.num_params() <= 2_000_000  # trainable, text encoder excluded
    image, texts = fake_inputs(cfg, batch_size=2)
    assert texts[0] != texts[1] and image.dtype == torch.uint8 and image.shape == (2, 3, 64, 64)
    out = model(image, texts)
    assert out["z"].shape == (2, cfg.z_dim) and torch.isfinite(out["z"]).all() and out["z"].abs().max() < 1
    assert out["bearing"].shape == (2, 2) and out["distance"].shape == (2,) and out["has_target"].shape == (2,)
    assert out["family"].shape == (2, cfg.num_families)
    assert all(torch.isfinite(v).all() for v in out.values())
    torch.testing.assert_close(out["bearing"].norm(dim=-1), torch.ones(2))
    assert (out["distance"] >= 0).all()
    assert not torch.allclose(out["z"][0], out["z"][1])  # different instructions, different goals
    same = model(image[:1].expand(2, -1, -1, -1), [texts[0], texts[1]])
    assert not torch.allclose(same["z"][0], same["z"][1])  # the instruction alone changes z
    with pytest.raises(ValueError, match="one per image"):
        model(image, texts[:1])
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(image[:, :, :16, :16], texts)


def test_measure_latency_reports_cached_and_uncached(text_encoder):
    model = S2Model(S2ModelConfig(), text_encoder=text_encoder)
    lat = measure_latency(model, n=10, warmup=2)
    assert set(lat) == {f"{a}_{b}" for a in ("uncached", "cached") for b in ("p50_ms", "p99_ms", "mean_ms")}
    assert 0 < lat["cached_p50_ms"] < lat["uncached_p50_ms"] < 100  # the full p99 check is run by hand (docstring)
    assert torch.get_num_threads() == 1 and model.training


# ---------------------------------------------------------------------------------------------------
# 3. loss by hand


def test_s2_loss_by_hand_and_masking():
    out = {"z": torch.tensor([[0.5, 0.0], [0.0, 0.5]], requires_grad=True),
           "bearing": torch.tensor([[1.0, 0.0], [1.0, 0.0]], requires_grad=True),
           "distance": torch.tensor([2.0, 5.0], requires_grad=True),
           "has_target": torch.zeros(2, requires_grad=True),
           "family": torch.zeros(2, 3, requires_grad=True)}
    targets = {"z": torch.tensor([[1.0, 0.0], [0.0, -0.5]]),
               "has_target": torch.tensor([1.0, 0.0]),  # sample 1 has no target object
               "bearing": torch.tensor([[0.0, 1.0], [-1.0, 0.0]]),
               "distance": torch.tensor([1.5, 0.0]),
               "family": torch.tensor([2, 0])}
    ones = S2LossWeights(z=1, z_cos=1, bearing=1, distance=1, family=1, has_target=1)
    loss, logs = s2_loss(out, targets, ones)
    # z: mean(0.25, 0, 0, 1) = 0.3125; cos: (0 + 2) / 2; bearing: ((1 + 1) / 2) on sample 0 only; distance 0.5
    expected = {"z": 0.3125, "z_cos": 1.0, "bearing": 1.0, "distance": 0.5, "family": math.log(3),
                "has_target": math.log(2)}
    for name, value in expected.items():
        assert logs[f"loss/{name}"] == pytest.approx(value, abs=1e-6), name
    assert float(loss.detach()) == pytest.approx(sum(expected.values()), abs=1e-5)
    loss.backward()
    assert out["bearing"].grad[1].abs().max() == 0 and out["distance"].grad[1] == 0  # masked out
    assert out["bearing"].grad[0].abs().max() > 0 and out["distance"].grad[0] != 0
    # changing the masked sample's bearing/distance targets changes nothing
    moved = dict(targets, bearing=torch.tensor([[0.0, 1.0], [0.0, -1.0]]), distance=torch.tensor([1.5, 9.0]))
    assert float(s2_loss(out, moved, ones)[0].detach()) == pytest.approx(float(loss.detach()), abs=1e-6)
    # default weights, z only; bad shapes and unmasked aux targets are errors
    z_only, logs = s2_loss(out, {"z": targets["z"]})
    assert set(logs) == {"loss/z", "loss/z_cos", "loss/total"}
    assert float(z_only.detach()) == pytest.approx(0.3125 + 0.1 * 1.0, abs=1e-6)
    with pytest.raises(ValueError, match="shape"):
        s2_loss(out, {"z": torch.zeros(2, 3)})
    with pytest.raises(ValueError, match="has_target"):
        s2_loss(out, {"z": targets["z"], "bearing": targets["bearing"]})


# ---------------------------------------------------------------------------------------------------
# 4. it learns: instruction family -> z, generalising to held-out paraphrases through the frozen MiniLM

PARAPHRASES = [  # 3 for training, the last one held out
    ["walk to the red box", "go over to the red box", "head to the red box", "make your way to the red box"],
    ["point at the blue sphere", "point to the blue sphere", "aim your finger at the blue sphere",
     "indicate the blue sphere with your hand"],
    ["turn left", "rotate to your left", "turn to the left", "spin towards your left side"],
    ["walk forward", "go straight ahead", "move forwards", "step ahead"],
    ["wave your right hand", "give a wave with your right hand", "wave hello with the right hand",
     "greet by waving your right hand"],
    ["squat down", "crouch low", "do a squat", "bend your knees and squat"],
    ["raise both arms", "put your arms up", "lift both arms", "hold your arms up in the air"],
    ["stop", "stop moving", "halt", "stand still and stop"],
]


def test_tiny_model_learns_family_goals_and_generalises_to_paraphrases(text_encoder):
    torch.manual_seed(0)
    cfg = S2ModelConfig(image_size=32, z_dim=32, width=32, heads=2, fusion_layers=1, mlp_ratio=2,
                        cnn_channels=[8, 16], visual_grid=2, num_families=len(PARAPHRASES))
    model = S2Model(cfg, text_encoder=text_encoder)
    goals = torch.tanh(1.5 * torch.randn(len(PARAPHRASES), cfg.z_dim))  # (F, D) a fixed goal per family
    train = [(t, f) for f, ps in enumerate(PARAPHRASES) for t in ps[:-1]]
    held = [(ps[-1], f) for f, ps in enumerate(PARAPHRASES)]
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    g = torch.Generator().manual_seed(1)
    for _ in range(150):
        texts, fams = zip(*train)
        fams = torch.tensor(fams)
        image = torch.randint(0, 256, (len(texts), 3, 32, 32), dtype=torch.uint8, generator=g)
        loss, _ = s2_loss(model(image, list(texts)), {"z": goals[fams], "family": fams})
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        texts, fams = zip(*held)
        image = torch.randint(0, 256, (len(texts), 3, 32, 32), dtype=torch.uint8, generator=g)
        z = model(image, list(texts))["z"]
    err = float((z - goals[list(fams)]).pow(2).mean())
    baseline = float((goals.mean(0) - goals).pow(2).mean())  # predicting the mean goal
    assert err < 0.25 * baseline, (err, baseline)


# ---------------------------------------------------------------------------------------------------
# 5. Hugging Face VLM adapter on a tiny random LLaVA (CLIP vision tower + Llama text model), built offline


def save_tiny_llava(path) -> None:
    """A randomly initialised LLaVA with a word-level tokenizer, written like a downloaded model directory."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import (
        CLIPVisionConfig,
        LlamaConfig,
        LlavaConfig,
        LlavaForConditionalGeneration,
        LlavaProcessor,
        PreTrainedTokenizerFast,
    )

    try:  # transformers >= 5 names the Pillow backend (no torchvision needed) explicitly
        from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil as ImageProcessor
    except ImportError:
        from transformers import CLIPImageProcessor as ImageProcessor

    words = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    words.pre_tokenizer = pre_tokenizers.Whitespace()
    words.train_from_iterator([p for ps in PARAPHRASES for p in ps],
                              trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "<s>", "</s>", "<image>"]))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=words, pad_token="[PAD]", unk_token="[UNK]", bos_token="<s>",
                                        eos_token="</s>", extra_special_tokens={"image_token": "<image>"})
    images = ImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32})
    processor = LlavaProcessor(image_processor=images, tokenizer=tokenizer, patch_size=8, image_token="<image>",
                               vision_feature_select_strategy="default", num_additional_image_tokens=1)
    vision = CLIPVisionConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
                              image_size=32, patch_size=8, projection_dim=32)
    text = LlamaConfig(hidden_size=32, intermediate_size=64, num_hidden_layers=4, num_attention_heads=2,
                       num_key_value_heads=2, vocab_size=len(tokenizer), max_position_embeddings=128, pad_token_id=0)
    config = LlavaConfig(vision_config=vision, text_config=text, vision_feature_layer=-1,
                         image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    torch.manual_seed(0)
    LlavaForConditionalGeneration(config).save_pretrained(path)
    processor.save_pretrained(path)


@pytest.fixture(scope="module")
def tiny_vlm_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny_llava")
    save_tiny_llava(path)
    return path


def test_hf_adapter_shapes_and_one_training_step(tiny_vlm_dir):
    from s2_vlm.hf_backbone import HFGoalModel

    cfg = S2ModelConfig(backbone="hf", hf_path=str(tiny_vlm_dir), z_dim=16, width=32, num_families=8)
    torch.manual_seed(0)
    model = build_s2_model(cfg)
    assert isinstance(model, HFGoalModel) and model.layer == 2  # middle of 4 Llama layers
    image, texts = fake_inputs(cfg, batch_size=2)
    out = model(image, texts)
    assert out["z"].shape == (2, 16) and torch.isfinite(out["z"]).all() and out["z"].abs().max() < 1
    assert out["family"].shape == (2, 8) and out["bearing"].shape == (2, 2)
    assert not any(p.requires_grad for p in model.vlm.parameters())  # frozen by default

    targets = {"z": torch.full((2, 16), 0.5), "family": torch.tensor([0, 3])}
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    loss, _ = s2_loss(out, targets)
    opt.zero_grad()
    loss.backward()
    grad = model.proj[1].weight.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    opt.step()
    after, _ = s2_loss(model(image, texts), targets)
    assert float(after.detach()) < float(loss.detach())


def test_hf_adapter_trains_backbone_when_asked(tiny_vlm_dir):
    from s2_vlm.hf_backbone import HFGoalModel

    cfg = S2ModelConfig(backbone="hf", hf_path=str(tiny_vlm_dir), z_dim=8, width=16, hf_layer=4,
                        hf_train_backbone=True)
    model = HFGoalModel(cfg)
    image, texts = fake_inputs(cfg, batch_size=2, seed=3)
    s2_loss(model(image, texts), {"z": torch.zeros(2, 8) + 0.3})[0].backward()
    grads = [p.grad for p in model.vlm.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads) and sum(g.abs().sum() for g in grads) > 0
    with pytest.raises(ValueError, match="hf_layer 9"):
        HFGoalModel(S2ModelConfig(backbone="hf", hf_path=str(tiny_vlm_dir), hf_layer=9))


def test_hf_adapter_bad_paths_name_the_path_and_what_was_expected(tmp_path):
    from s2_vlm.hf_backbone import HFGoalModel

    def make(path):
        return HFGoalModel(S2ModelConfig(backbone="hf", hf_path=str(path)))

    with pytest.raises(FileNotFoundError, match=r"nowhere.*does not exist.*config\.json"):
        make(tmp_path / "nowhere")
    (tmp_path / "README.md").write_text("not a model")
    with pytest.raises(FileNotFoundError, match=rf"{tmp_path}.*no config\.json"):
        make(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava"}))
    with pytest.raises(FileNotFoundError, match="no .*weights"):
        make(tmp_path)
    with pytest.raises(NotADirectoryError, match="README.md is not a directory"):
        make(tmp_path / "README.md")


def test_word_dropout_keeps_a_word_and_drops_each_at_its_rate():
    import numpy as np

    from s2_vlm.train import drop_words

    rng = np.random.default_rng(0)
    text = "say hi with your right hand"
    assert drop_words(text, 0.0, rng) == text and drop_words("squat", 0.9, rng) == "squat"
    outs = [drop_words(text, 0.5, rng) for _ in range(4000)]
    assert all(o and set(o.split()) <= set(text.split()) for o in outs)
    for word in text.split():  # each word kept about half the time
        assert abs(np.mean([word in o.split() for o in outs]) - 0.5) < 0.04, word
    assert all(o.split() == [w for w in text.split() if w in o.split()] for o in outs)  # order kept
    with pytest.raises(ValueError, match="word_dropout"):
        from infra.config.s2 import TrainS2Config

        TrainS2Config(word_dropout=1.0)
