"""The tiny offline Llama / Mixtral: Llama-2 chat format, special tokens, ids wired into the config, cached build."""

import pytest

from llm_finetune.data.instructions import render_ids
from llm_finetune.models.tiny_causal import build_tiny_causal_lm
from tests.llm_finetune.causal_helpers import tiny_base, tiny_spec

CORPUS = ["Name a fish.", "Tope is a fish.", "Oaks grow slowly.", "[INST] <<SYS>> <</SYS>> [/INST]"] * 20


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path, _ = tiny_base(tmp_path_factory.mktemp("tiny"), "llama")
    return AutoTokenizer.from_pretrained(path), AutoModelForCausalLM.from_pretrained(path)


def test_llama2_chat_format_multi_turn_with_system(llama):
    tokenizer, _ = llama
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Name a fish."},
        {"role": "assistant", "content": "Tope"},
        {"role": "user", "content": "Another?"},
        {"role": "assistant", "content": "Cod"},
    ]
    ids = render_ids(tokenizer, messages)
    assert tokenizer.decode(ids) == (
        "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nName a fish. [/INST] Tope </s><s>[INST] Another? [/INST] Cod </s>")
    # chat rendering writes the template's <s> only, no extra one from the tokenizer
    assert ids[0] == tokenizer.bos_token_id and ids.count(tokenizer.bos_token_id) == 2
    assert ids[-1] == tokenizer.eos_token_id


def test_special_tokens_and_config_ids(llama):
    tokenizer, model = llama
    assert [tokenizer.unk_token, tokenizer.bos_token, tokenizer.eos_token, tokenizer.pad_token] == [
        "<unk>", "<s>", "</s>", "<pad>"]
    assert tokenizer.pad_token_id not in (tokenizer.eos_token_id, tokenizer.bos_token_id)
    assert tokenizer("Oaks").input_ids[0] == tokenizer.bos_token_id  # plain encoding starts with <s>, as Llama's
    assert tokenizer.decode(tokenizer("Straße ☃").input_ids, skip_special_tokens=True) == "Straße ☃"  # byte-level
    config = model.config
    assert (config.bos_token_id, config.eos_token_id, config.pad_token_id) == (
        tokenizer.bos_token_id, tokenizer.eos_token_id, tokenizer.pad_token_id)
    assert config.vocab_size == len(tokenizer) == 1000 and type(model).__name__ == "LlamaForCausalLM"


def test_mixtral_returns_router_aux_loss(tmp_path):
    import torch
    from transformers import AutoModelForCausalLM

    path = build_tiny_causal_lm(tiny_spec("mixtral"), CORPUS, tmp_path, corpus_key="c")
    model = AutoModelForCausalLM.from_pretrained(path)
    assert type(model).__name__ == "MixtralForCausalLM"
    ids = torch.tensor([[1, 5, 6, 7]])
    out = model(input_ids=ids, labels=ids)
    assert out.aux_loss is not None and out.aux_loss > 0
    assert tuple(model.model.layers[0].mlp.experts.gate_up_proj.shape)[0] == 4  # fused experts: one 3-D parameter


def test_build_is_cached_by_spec_and_corpus(tmp_path):
    first = build_tiny_causal_lm(tiny_spec(), CORPUS, tmp_path, corpus_key="c")
    assert build_tiny_causal_lm(tiny_spec(), CORPUS, tmp_path, corpus_key="c") == first
    assert build_tiny_causal_lm(tiny_spec(), CORPUS, tmp_path, corpus_key="other") != first
