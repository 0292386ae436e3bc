"""A tiny Llama, Mixtral or Mistral built from a config, with a byte-level BPE tokenizer trained locally and the
Llama-2 chat template: the offline stand-in for Llama-2-7B, Mixtral-8x7B and Mistral-7B."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from llm_finetune.data.instructions import LLAMA2_CHAT_TEMPLATE, instruction_dataset
from llm_finetune.fingerprint import build_once, fingerprint
from llm_finetune.recipes import InstructionData, TinyCausalSpec

if TYPE_CHECKING:
    from llm_finetune.data.intake import ValidatedData

UNK, BOS, EOS, PAD = "<unk>", "<s>", "</s>", "<pad>"  # ids 0, 1, 2 as in Llama; a pad distinct from EOS at 3


def train_llama_style_tokenizer(texts: Iterable[str], vocab_size: int):
    """Byte-level BPE (no unknown characters) with Llama's special tokens, a separate pad token and the Llama-2 chat
    template. Plain encoding prepends <s> as Llama's tokenizer does; chat rendering writes its own <s>."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE(unk_token=UNK))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[UNK, BOS, EOS, PAD],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"{BOS} $A", pair=f"{BOS} $A {BOS} $B", special_tokens=[(BOS, tok.token_to_id(BOS))]
    )
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=BOS, eos_token=EOS, unk_token=UNK,
                                        pad_token=PAD, padding_side="right")
    tokenizer.chat_template = LLAMA2_CHAT_TEMPLATE
    return tokenizer


def build_tiny_causal_lm(spec: TinyCausalSpec, corpus: list[str], cache_root: str | Path, corpus_key: str) -> Path:
    """Build (or reuse) a tiny randomly initialised causal LM and its tokenizer under cache_root/<fingerprint>."""
    out = Path(cache_root) / fingerprint("tiny-causal-v1", spec, corpus_key)
    with build_once(out) as needed:
        if needed:
            _save_tiny_causal_lm(spec, corpus, out)
    return out


def tiny_config(spec: TinyCausalSpec, tokenizer):
    """The transformers config of a tiny model; token ids come from the tokenizer (config defaults would be wrong)."""
    from transformers import LlamaConfig, MistralConfig, MixtralConfig

    common = dict(
        vocab_size=len(tokenizer),
        hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size,
        num_hidden_layers=spec.num_hidden_layers,
        num_attention_heads=spec.num_attention_heads,
        num_key_value_heads=spec.num_key_value_heads,
        max_position_embeddings=spec.max_position_embeddings,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=spec.tie_word_embeddings,
        initializer_range=spec.initializer_range or spec.hidden_size ** -0.5,
    )
    if spec.family == "mixtral":
        # output_router_logits: the forward returns the load-balancing aux loss, which the trainer adds and logs.
        return MixtralConfig(**common, num_local_experts=spec.num_local_experts,
                             num_experts_per_tok=spec.num_experts_per_tok, output_router_logits=True)
    if spec.family == "mistral":
        return MistralConfig(**common)
    if spec.family in ("falcon", "gpt2", "gemma2"):
        return _other_family_config(spec, common)
    return LlamaConfig(**common)


def _other_family_config(spec: TinyCausalSpec, common: dict):
    """Falcon (Falcon-7B layout), GPT-2 and Gemma-2 from the same spec fields."""
    from transformers import FalconConfig, Gemma2Config, GPT2Config

    ids = {k: common[k] for k in ("vocab_size", "bos_token_id", "eos_token_id", "pad_token_id",
                                  "tie_word_embeddings", "initializer_range")}
    if spec.family == "falcon":  # multi-query attention, attention and MLP in parallel, no biases, as falcon-7b
        return FalconConfig(**ids, hidden_size=spec.hidden_size, num_hidden_layers=spec.num_hidden_layers,
                            num_attention_heads=spec.num_attention_heads, ffn_hidden_size=spec.intermediate_size,
                            new_decoder_architecture=False, multi_query=True, parallel_attn=True, bias=False,
                            max_position_embeddings=spec.max_position_embeddings)
    if spec.family == "gpt2":
        return GPT2Config(**ids, n_embd=spec.hidden_size, n_layer=spec.num_hidden_layers,
                          n_head=spec.num_attention_heads, n_inner=spec.intermediate_size,
                          n_positions=spec.max_position_embeddings)
    return Gemma2Config(**ids, hidden_size=spec.hidden_size, intermediate_size=spec.intermediate_size,
                        num_hidden_layers=spec.num_hidden_layers, num_attention_heads=spec.num_attention_heads,
                        num_key_value_heads=spec.num_key_value_heads,
                        head_dim=spec.hidden_size // spec.num_attention_heads,
                        max_position_embeddings=spec.max_position_embeddings, sliding_window=min(
                            4096, spec.max_position_embeddings))


def _save_tiny_causal_lm(spec: TinyCausalSpec, corpus: list[str], out: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    tokenizer = train_llama_style_tokenizer(corpus, spec.vocab_size)
    torch.manual_seed(spec.seed)
    model = AutoModelForCausalLM.from_config(tiny_config(spec, tokenizer))
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def build_tiny_causal_for_instructions(spec: TinyCausalSpec, data: InstructionData, validated: ValidatedData,
                                       cache_root: str | Path) -> Path:
    """Tiny causal LM whose tokenizer is trained on the training split's instructions, contexts and responses."""
    examples = instruction_dataset(validated, "train", data, data.max_train_records)
    corpus = [m["content"] for e in examples for m in e["prompt"] + e["completion"]]
    corpus.append("[INST] <<SYS>>\n\n<</SYS>>\n\n [/INST]")  # the template's own markers get merges too
    corpus_key = fingerprint(validated.fingerprint, data.model_dump(exclude={"max_length", "overlong_records"}))
    return build_tiny_causal_lm(spec, corpus, cache_root, corpus_key=corpus_key)
