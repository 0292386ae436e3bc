"""What every trainer shares: the precision `auto` resolves to, the base model loaded for training (LoRA, QLoRA),
the token counter at the model's forward and parameter counts. Imported by each trainer entry point; no trainer
imports another's helpers."""

from __future__ import annotations

import os
from typing import Literal

from llm_finetune.recipes import LoraSpec
from llm_finetune.training.collators import packed_real_tokens


def resolve_precision(precision: str) -> Literal["fp32", "bf16"]:
    """'auto' is bf16 mixed precision where the hardware computes bf16 natively, else fp32.

    GPU: torch.cuda.is_bf16_supported(). CPU: AVX512-BF16 or AMX tiles (torch.cpu capability checks); without them
    bf16 matmuls are emulated and slower than fp32. Trained weights and optimizer state stay fp32 either way.
    """
    if precision != "auto":
        return precision  # type: ignore[return-value]
    import torch

    if torch.cuda.is_available():
        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # torch.cpu's own capability checks
    native = any(getattr(torch.cpu, check, lambda: False)() for check in checks)
    return "bf16" if native else "fp32"


def keep_4bit_layers_differentiable(model) -> int:
    """Stop bitsandbytes repacking 4-bit weights for CPU inference; returns the number of 4-bit layers.

    On a CPU with AVX512-BF16, the first eval-mode forward repacks every Linear4bit, after which its matmul runs a
    kernel without autograd: no gradient reaches the LoRA adapters below the top layer while the loss still moves.
    """
    import bitsandbytes as bnb

    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for layer in layers:
        layer.support_avx512bf16_for_cpu = False
    return len(layers)


def load_base_model(base_model: str, lora: LoraSpec, *, precision: str = "fp32",
                    activation_checkpointing: bool = False, auto_class=None, **model_kwargs):
    """The base model to train: fp32; for LoRA under bf16 precision its frozen weights in bf16 (half the memory; peft
    keeps the adapters fp32); for QLoRA with 4-bit linear layers, frozen and prepared for adapter training.
    A full fine-tune keeps fp32 weights whatever the precision: bf16 is then autocast compute only.
    `auto_class` (default AutoModelForCausalLM) and `model_kwargs` (num_labels, ...) go to from_pretrained."""
    import torch
    from transformers import AutoModelForCausalLM

    auto_class = auto_class or AutoModelForCausalLM
    q = lora.quantization
    if not q.load_in_4bit:
        frozen_bf16 = lora.enabled and resolve_precision(precision) == "bf16"
        return auto_class.from_pretrained(base_model, dtype=torch.bfloat16 if frozen_bf16 else torch.float32,
                                          **model_kwargs)

    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    device = int(os.environ.get("LOCAL_RANK", "0")) if torch.cuda.is_available() else "cpu"
    model = auto_class.from_pretrained(
        base_model,
        **model_kwargs,
        dtype=torch.float32,
        device_map={"": device},
        quantization_config=BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=q.quant_type,
            bnb_4bit_compute_dtype=getattr(torch, q.compute_dtype),
            bnb_4bit_use_double_quant=q.double_quant,
        ),
    )
    keep_4bit_layers_differentiable(model)
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=activation_checkpointing)


class TrainingTokenCounter:
    """Counts the tokens of every training-mode forward of a model: real (attended: the attention mask's; without a
    mask, as packed batches come, all but the rows' trailing padding, see packed_real_tokens; all when no
    `pad_token_id` is given), padded (the batch's full size) and loss tokens (with a label). An encoder-decoder's
    labels are its decoder tokens: counted as real (those with a label) and padded too.

    Counted at the forward, not in the collator: the data loader collates a batch ahead, which is never trained.
    """

    def __init__(self, model, pad_token_id: int | None = None):
        import torch

        self.pad_token_id = pad_token_id
        self.real_tokens = self.padded_tokens = self.loss_tokens = 0
        self.decoder_labels = getattr(getattr(model, "config", None), "is_encoder_decoder", False)
        # Left out of a torch.compile'd graph (training.compile): its Python counts would break the graph there.
        model.register_forward_pre_hook(torch.compiler.disable(self._count), with_kwargs=True)

    def _count(self, module, args, kwargs) -> None:
        if not module.training or kwargs.get("input_ids") is None:
            return
        ids, mask, labels = kwargs["input_ids"], kwargs.get("attention_mask"), kwargs.get("labels")
        if mask is not None:
            self.real_tokens += int(mask.sum())
        elif self.pad_token_id is not None and kwargs.get("position_ids") is not None:
            self.real_tokens += int(packed_real_tokens(ids, kwargs["position_ids"], self.pad_token_id).sum())
        else:
            self.real_tokens += int(ids.numel())
        self.padded_tokens += int(ids.numel())
        if labels is not None:
            self.loss_tokens += int((labels != -100).sum())
            if self.decoder_labels:
                self.real_tokens += int((labels != -100).sum())
                self.padded_tokens += int(labels.numel())


def parameter_counts(model) -> tuple[int, int]:
    """Trainable and total parameters; peft counts a 4-bit weight as the parameters it holds, not its packed bytes."""
    if hasattr(model, "get_nb_trainable_parameters"):
        return model.get_nb_trainable_parameters()
    return sum(p.numel() for p in model.parameters() if p.requires_grad), sum(p.numel() for p in model.parameters())
