"""GPT-2 offline: the exact GPT-2 tokenizer rebuilt from its BPE ranks (shipped in `assets/`), a byte-level BPE
trained on a corpus the way CodeParrot trains its tokenizer, and a GPT-2 built from a config with random weights."""

from __future__ import annotations

import base64
import gzip
from collections.abc import Iterable
from functools import lru_cache
from pathlib import Path

from llm_finetune.fingerprint import build_once, fingerprint
from llm_finetune.recipes.pretraining import GPT2ConfigSpec

GPT2_RANKS = Path(__file__).with_name("assets") / "gpt2.tiktoken.gz"
EOS = "<|endoftext|>"  # GPT-2's only special token: BOS, EOS and (here) padding


@lru_cache(maxsize=1)
def _gpt2_vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    """vocab.json / merges.txt of GPT-2 from its tiktoken ranks: a merge is every split of a token into two tokens
    of lower rank, ordered by the rank of the token it makes (as transformers' TikTokenConverter does)."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    ranks: dict[bytes, int] = {}
    with gzip.open(GPT2_RANKS, "rt") as f:
        for line in f:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    byte_chars = bytes_to_unicode()

    def text(token: bytes) -> str:
        return "".join(byte_chars[b] for b in token)

    merges: list[tuple[int, int, int, str, str]] = []
    for token, rank in ranks.items():
        for i in range(1, len(token)):
            left, right = token[:i], token[i:]
            if left in ranks and right in ranks:
                merges.append((rank, ranks[left], ranks[right], text(left), text(right)))
    merges.sort()
    vocab = {text(token): rank for token, rank in ranks.items()}
    vocab[EOS] = len(vocab)
    return vocab, [(m[3], m[4]) for m in merges]


def gpt2_tokenizer():
    """The GPT-2 tokenizer (50,257 tokens, byte-level BPE, `<|endoftext|>` as BOS/EOS), built offline; it pads with
    EOS, as GPT-2 has no pad token (raw-text training packs blocks and never pads)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast

    vocab, merges = _gpt2_vocab_and_merges()
    tok = Tokenizer(models.BPE(vocab=dict(vocab), merges=list(merges)))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)  # GPT-2's own split regex
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    tok.add_special_tokens([EOS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=EOS, eos_token=EOS, unk_token=EOS,
                                   pad_token=EOS, model_max_length=1024)


def train_code_tokenizer(texts: Iterable[str], vocab_size: int):
    """A byte-level BPE of `vocab_size` tokens trained on `texts` from GPT-2's tokenizer, keeping its pre-tokenizer,
    byte alphabet and `<|endoftext|>` (CodeParrot's `train_new_from_iterator` recipe)."""
    from tokenizers import pre_tokenizers

    return gpt2_tokenizer().train_new_from_iterator(
        texts, vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)


def gpt2_config(spec: GPT2ConfigSpec, tokenizer):
    """GPT-2 config of the spec's sizes; vocabulary and special ids from the tokenizer."""
    from transformers import GPT2Config

    return GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=spec.n_positions,
        n_embd=spec.n_embd,
        n_layer=spec.n_layer,
        n_head=spec.n_head,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        # CodeParrot's settings for training from scratch (scale_attn_by_inverse_layer_idx, reorder_and_upcast_attn)
        scale_attn_by_inverse_layer_idx=True,
        reorder_and_upcast_attn=True,
    )


def build_gpt2(spec: GPT2ConfigSpec, corpus: Iterable[str], cache_root: str | Path, corpus_key: str) -> Path:
    """A GPT-2 with random weights and its tokenizer (GPT-2's, or trained on `corpus`) under
    cache_root/<fingerprint>, built once."""
    key = fingerprint("gpt2-v1", spec, corpus_key if spec.tokenizer == "train" else "gpt2-tokenizer")
    out = Path(cache_root) / key
    with build_once(out) as needed:
        if needed:
            import torch
            from transformers import GPT2LMHeadModel

            tokenizer = train_code_tokenizer(corpus, spec.vocab_size) if spec.tokenizer == "train" \
                else gpt2_tokenizer()
            torch.manual_seed(spec.seed)
            model = GPT2LMHeadModel(gpt2_config(spec, tokenizer))
            model.generation_config.pad_token_id = tokenizer.pad_token_id
            model.save_pretrained(out)
            tokenizer.save_pretrained(out)
    return out
