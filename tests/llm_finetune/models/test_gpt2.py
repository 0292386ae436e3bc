"""GPT-2 offline: the exact GPT-2 tokenizer from its shipped BPE ranks, a code BPE trained CodeParrot's way, and a
GPT-2 built from a config with the tokenizer's ids."""

import json

from llm_finetune.models.gpt2 import EOS, build_gpt2, gpt2_tokenizer, train_code_tokenizer
from llm_finetune.recipes import GPT2ConfigSpec
from tests.conftest import SHARED_DATA

CODE = SHARED_DATA / "python_code"


def test_gpt2_tokenizer_gives_gpt2s_ids():
    tok = gpt2_tokenizer()
    assert len(tok) == 50257 and tok.eos_token_id == tok.bos_token_id == 50256
    # ids of the published GPT-2 tokenizer (the Hugging Face docs' examples)
    assert tok("Hello world")["input_ids"] == [15496, 995]
    assert tok("Hello, my dog is cute")["input_ids"] == [15496, 11, 616, 3290, 318, 13779]
    assert tok(" the")["input_ids"] == [262]
    assert tok(EOS)["input_ids"] == [50256]
    text = "def f(x):\n    return x  # héllo 日本\n"
    assert tok.decode(tok(text)["input_ids"]) == text  # byte-level: no unknown characters


def code(n: int) -> list[str]:
    return [json.loads(line)["content"] for line in (CODE / "train.jsonl").read_text().splitlines()[:n]]


def test_code_tokenizer_is_trained_on_the_code_and_keeps_eos():
    texts = code(100)
    tok = train_code_tokenizer(texts, vocab_size=600)
    assert len(tok) == 600 and tok.convert_ids_to_tokens(tok.eos_token_id) == EOS
    sample = texts[0][:500]
    assert tok.decode(tok(sample)["input_ids"]) == sample
    # trained on code: runs of indentation are single tokens, unlike in GPT-2's vocabulary
    assert len(tok("    return")["input_ids"]) < len(gpt2_tokenizer()("    return")["input_ids"])


def test_gpt2_from_config_uses_the_tokenizers_ids(tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    spec = GPT2ConfigSpec(tokenizer="train", vocab_size=400, n_embd=32, n_layer=1, n_head=2, n_positions=64)
    path = build_gpt2(spec, code(30), tmp_path, corpus_key="k")
    assert build_gpt2(spec, [], tmp_path, corpus_key="k") == path  # built once per spec and corpus
    model, tok = AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path)
    assert model.config.vocab_size == len(tok) == 400
    assert model.config.eos_token_id == tok.eos_token_id == model.generation_config.pad_token_id
    assert (model.config.n_embd, model.config.n_layer, model.config.n_positions) == (32, 1, 64)
