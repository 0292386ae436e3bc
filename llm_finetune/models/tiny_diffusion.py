"""Tiny offline stand-ins for text-to-image counting: a Stable Diffusion pipeline built from configs (UNet, VAE,
CLIP text encoder, DDIM scheduler) and an OWLv2 zero-shot detector, both with a CLIP BPE tokenizer trained locally.
Random weights: they run the same code as stabilityai/stable-diffusion-xl-base-1.0 and
google/owlv2-base-patch16-ensemble, and produce noise."""

from __future__ import annotations

import json
from pathlib import Path

from llm_finetune.fingerprint import build_once, fingerprint
from llm_finetune.recipes.text_to_image import TinyDetectorSpec, TinyDiffusionSpec

BOS, EOS = "<|startoftext|>", "<|endoftext|>"
CLIP_MAX_LENGTH = 77


def train_clip_tokenizer(texts: list[str], vocab_size: int):
    """CLIP's byte-level BPE (lowercased, `</w>` ends a word) trained on `texts`, in CLIP's vocabulary layout: the 256
    byte symbols, the same with `</w>`, the merges, then BOS and EOS last, so EOS has the highest id (OWL and CLIP
    pool the text at the EOS; OWL also reads id 0 as padding, so BOS must not be 0)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers
    from transformers import CLIPTokenizer

    template = CLIPTokenizer(vocab={BOS: 0, EOS: 1}, merges=[])  # CLIP's normalizer and pre-tokenizer, to train on
    tok = Tokenizer(models.BPE(end_of_word_suffix="</w>"))
    tok.normalizer = template.backend_tokenizer.normalizer
    tok.pre_tokenizer = template.backend_tokenizer.pre_tokenizer
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, initial_alphabet=alphabet, end_of_word_suffix="</w>",
                                  show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    merges = [tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
              for m in json.loads(tok.to_str())["model"]["merges"]]
    symbols = alphabet + [c + "</w>" for c in alphabet] + ["".join(m) for m in merges]
    vocab = {s: i for i, s in enumerate(dict.fromkeys(symbols))}
    vocab[BOS], vocab[EOS] = len(vocab), len(vocab) + 1
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CLIP_MAX_LENGTH)


def _text_config(spec: TinyDiffusionSpec | TinyDetectorSpec, tokenizer) -> dict:
    width = spec.text_hidden_size
    return dict(vocab_size=len(tokenizer), hidden_size=width, intermediate_size=2 * width,
                num_hidden_layers=spec.text_layers, num_attention_heads=2, max_position_embeddings=CLIP_MAX_LENGTH,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id)


def build_tiny_image_model(spec: TinyDiffusionSpec | TinyDetectorSpec, corpus: list[str],
                           cache_root: str | Path) -> Path:
    """A saved folder that from_pretrained loads, built once under cache_root/<fingerprint>: a StableDiffusionPipeline
    for a TinyDiffusionSpec, an Owlv2ForObjectDetection with its Owlv2Processor for a TinyDetectorSpec."""
    save = _save_tiny_text_to_image if isinstance(spec, TinyDiffusionSpec) else _save_tiny_detector
    out = Path(cache_root) / fingerprint("tiny-image-model-v1", type(spec).__name__, spec, corpus)
    with build_once(out) as needed:
        if needed:
            save(spec, corpus, out)
    return out


def _save_tiny_text_to_image(spec: TinyDiffusionSpec, corpus: list[str], out: Path) -> None:
    import torch
    from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    tokenizer = train_clip_tokenizer(corpus, spec.vocab_size)
    torch.manual_seed(spec.seed)
    channels = tuple(spec.block_out_channels)
    unet = UNet2DConditionModel(
        sample_size=spec.image_size // 2 ** (len(channels) - 1), in_channels=4, out_channels=4,
        block_out_channels=channels, layers_per_block=1, norm_num_groups=min(channels),
        down_block_types=("DownBlock2D",) + ("CrossAttnDownBlock2D",) * (len(channels) - 1),
        up_block_types=("CrossAttnUpBlock2D",) * (len(channels) - 1) + ("UpBlock2D",),
        cross_attention_dim=spec.text_hidden_size, attention_head_dim=2)
    vae = AutoencoderKL(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=channels, layers_per_block=1,
        norm_num_groups=min(channels), sample_size=spec.image_size,
        down_block_types=("DownEncoderBlock2D",) * len(channels), up_block_types=("UpDecoderBlock2D",) * len(channels))
    text_encoder = CLIPTextModel(CLIPTextConfig(**_text_config(spec, tokenizer)))
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", clip_sample=False,
                              set_alpha_to_one=False, steps_offset=1)
    pipeline = StableDiffusionPipeline(unet=unet, vae=vae, text_encoder=text_encoder, tokenizer=tokenizer,
                                       scheduler=scheduler, safety_checker=None, feature_extractor=None,
                                       requires_safety_checker=False)
    pipeline.save_pretrained(out)


def _save_tiny_detector(spec: TinyDetectorSpec, corpus: list[str], out: Path) -> None:
    import torch
    from transformers import Owlv2Config, Owlv2ForObjectDetection, Owlv2ImageProcessor, Owlv2Processor

    tokenizer = train_clip_tokenizer(corpus, spec.vocab_size)
    torch.manual_seed(spec.seed)
    config = Owlv2Config(
        text_config=_text_config(spec, tokenizer),
        vision_config=dict(image_size=spec.image_size, patch_size=spec.patch_size, hidden_size=spec.vision_hidden_size,
                           intermediate_size=2 * spec.vision_hidden_size, num_hidden_layers=spec.vision_layers,
                           num_attention_heads=2),
        projection_dim=spec.text_hidden_size)
    model = Owlv2ForObjectDetection(config)
    size = {"height": spec.image_size, "width": spec.image_size}
    processor = Owlv2Processor(image_processor=Owlv2ImageProcessor(size=size), tokenizer=tokenizer)
    model.save_pretrained(out)
    processor.save_pretrained(out)
