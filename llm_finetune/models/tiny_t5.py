"""A tiny T5 built from a config, with a Unigram tokenizer trained locally: the offline stand-in for FLAN-T5."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from llm_finetune.data.intake import ValidatedData
from llm_finetune.data.summarization import summarization_records
from llm_finetune.fingerprint import build_once, fingerprint
from llm_finetune.recipes import SummarizationData, TinyT5Spec

PAD, EOS, UNK = "<pad>", "</s>", "<unk>"  # ids 0, 1, 2 as in T5


def train_t5_style_tokenizer(texts: Iterable[str], vocab_size: int):
    """SentencePiece-style Unigram tokenizer with T5's special tokens, trained with `tokenizers`."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.Unigram())
    tok.normalizer = normalizers.NFKC()
    tok.pre_tokenizer = pre_tokenizers.Metaspace()
    tok.decoder = decoders.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=vocab_size, special_tokens=[PAD, EOS, UNK], unk_token=UNK,
                                      show_progress=False)
    tok.train_from_iterator(texts, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single=f"$A {EOS}", pair=f"$A {EOS} $B {EOS}", special_tokens=[(EOS, tok.token_to_id(EOS))]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token=PAD, eos_token=EOS, unk_token=UNK)


def build_tiny_t5(spec: TinyT5Spec, corpus: list[str], cache_root: str | Path, corpus_key: str) -> Path:
    """Build (or reuse) a tiny randomly initialised T5 and its tokenizer under cache_root/<fingerprint>."""
    out = Path(cache_root) / fingerprint("tiny-t5-v1", spec, corpus_key)
    with build_once(out) as needed:
        if needed:
            _save_tiny_t5(spec, corpus, out)
    return out


def _save_tiny_t5(spec: TinyT5Spec, corpus: list[str], out: Path) -> None:
    import torch
    from transformers import T5Config, T5ForConditionalGeneration

    tokenizer = train_t5_style_tokenizer(corpus, spec.vocab_size)
    config = T5Config(
        vocab_size=len(tokenizer),
        d_model=spec.d_model,
        d_ff=spec.d_ff,
        d_kv=spec.d_kv,
        num_heads=spec.num_heads,
        num_layers=spec.num_layers,
        num_decoder_layers=spec.num_decoder_layers,
        feed_forward_proj="gated-gelu",  # as FLAN-T5 (T5 v1.1)
        tie_word_embeddings=False,
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(spec.seed)
    model = T5ForConditionalGeneration(config)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)


def build_tiny_t5_for_summarization(
    spec: TinyT5Spec, data: SummarizationData, validated: ValidatedData, cache_root: str | Path
) -> Path:
    """Tiny T5 whose tokenizer is trained on the training split's prompts and summaries."""
    records = summarization_records(validated, "train", data, data.max_train_records)
    corpus = [r["prompt"] for r in records] + [r["summary"] for r in records]
    return build_tiny_t5(spec, corpus, cache_root, corpus_key=fingerprint(validated.fingerprint, data))
