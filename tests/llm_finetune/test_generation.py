import pytest
from pydantic import ValidationError

from llm_finetune.generation import CausalGenerator, GenerationParams, cut_at_stop
from tests.tiny_causal import build_tiny_causal, dolly_records, one_torch_thread


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    with one_torch_thread():
        yield



@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return CausalGenerator(build_tiny_causal(tmp_path_factory.mktemp("llama"), "llama"))


@pytest.fixture(scope="module")
def mixtral(tmp_path_factory):
    return CausalGenerator(build_tiny_causal(tmp_path_factory.mktemp("mixtral"), "mixtral"))


def prompts() -> list:
    """Chat prompts of different lengths and raw strings, so batches need padding."""
    return [r["prompt"] for r in dolly_records("train", 5)] + ["Why is the sky blue?", "Name three colours"]


@pytest.mark.parametrize("family", ["llama", "mixtral"])
def test_batched_generation_equals_one_at_a_time(family, request):
    generator = request.getfixturevalue(family)
    batched = generator.generate(prompts(), batch_size=3, max_new_tokens=12)
    single = [generator.generate([p], batch_size=1, max_new_tokens=12)[0] for p in prompts()]
    assert batched == single
    assert all(batched) and len(set(batched)) == len(batched)


def test_beam_search_batched_equals_one_at_a_time(llama):
    batched = llama.generate(prompts()[:4], batch_size=4, max_new_tokens=8, num_beams=2)
    single = [llama.generate([p], max_new_tokens=8, num_beams=2)[0] for p in prompts()[:4]]
    assert batched == single


def test_returns_only_the_new_text(llama):
    import torch

    messages = prompts()[0]
    text = llama.tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    ids = llama.tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"]
    with torch.inference_mode():
        full = llama.model.generate(ids, max_new_tokens=12, do_sample=False)
    assert llama.tokenizer.decode(full[0], skip_special_tokens=True).startswith("[INST] <<SYS>>\nAnswer the question.")
    expected = llama.tokenizer.decode(full[0, ids.shape[1] :], skip_special_tokens=True).strip()
    assert llama.generate([messages], max_new_tokens=12, repetition_penalty=1.0) == [expected]


def test_stop_sequences_cut_at_the_first_one(llama):
    prompt = prompts()[:1]
    free = llama.generate(prompt, max_new_tokens=24)[0]
    assert len(free) > 12
    late, early = free[9:12], free[4:7]
    expected = free[: free.find(early)].strip()
    assert llama.generate(prompt, max_new_tokens=24, stop=[late, early]) == [expected]
    assert len(expected) < len(free)
    assert cut_at_stop("answer.\nQ: next", ["\nQ:", "."]) == "answer"
    assert cut_at_stop("no stop here", ["###"]) == "no stop here"


def test_sampling_follows_the_seed(llama):
    settings = dict(max_new_tokens=16, do_sample=True, temperature=2.0, top_k=0)
    first = llama.generate(prompts()[:3], seed=1, **settings)
    assert llama.generate(prompts()[:3], seed=1, **settings) == first
    assert llama.generate(prompts()[:3], seed=2, **settings) != first


def test_settings_from_params_then_overrides(llama):
    params = GenerationParams(max_new_tokens=4)
    short = llama.generate(prompts()[:1], params=params)[0]
    longer = llama.generate(prompts()[:1], params=params, max_new_tokens=12)[0]
    assert longer.startswith(short) and len(longer) > len(short)
    with pytest.raises(ValidationError, match="temprature"):
        llama.generate(prompts()[:1], temprature=0.5)


def test_chat_messages_need_a_chat_template(llama):
    llama.tokenizer.chat_template, template = None, llama.tokenizer.chat_template
    try:
        with pytest.raises(ValueError, match="no chat_template: pass raw strings"):
            llama.generate(prompts()[:1])
    finally:
        llama.tokenizer.chat_template = template
