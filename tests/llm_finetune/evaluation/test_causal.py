import math

import pytest

from llm_finetune.errors import DataValidationError
from llm_finetune.evaluation.causal import (
    UNCATEGORIZED,
    compare,
    evaluate_instruction_model,
    response_losses,
    response_perplexity,
)
from llm_finetune.evaluation.rouge import rouge_scores
from llm_finetune.generation import CausalGenerator, GenerationParams
from tests.tiny_causal import build_tiny_causal, dolly_records, one_torch_thread, overfit


@pytest.fixture(scope="module", autouse=True)
def single_thread():
    with one_torch_thread():
        yield


SHORT = GenerationParams(max_new_tokens=12)


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    return build_tiny_causal(tmp_path_factory.mktemp("llama"), "llama")


@pytest.fixture(scope="module")
def tuned_llama(llama, tmp_path_factory):
    return overfit(llama, tmp_path_factory.mktemp("tuned"), dolly_records("train", 8))


def hand_response_loss(model_dir, records) -> tuple[float, int]:
    """Summed -log p over response tokens, one unpadded sequence at a time, positions picked by re-tokenizing the
    prompt alone (independent of the offset-based masking under test)."""
    import torch

    generator = CausalGenerator(model_dir)
    tok, total, count = generator.tokenizer, 0.0, 0
    for r in records:
        prompt = tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
        full = tok.apply_chat_template(r["prompt"] + r["completion"], tokenize=False)
        prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
        ids = tok(full, add_special_tokens=False)["input_ids"]
        assert ids[: len(prompt_ids)] == prompt_ids and ids[-1] == tok.eos_token_id
        with torch.no_grad():
            logp = torch.log_softmax(generator.model(torch.tensor([ids])).logits[0].double(), dim=-1)
        for t in range(len(prompt_ids), len(ids)):
            total -= logp[t - 1, ids[t]].item()
            count += 1
    return total, count


def test_response_perplexity_equals_hand_computation_and_ignores_padding(llama):
    records = dolly_records("train", 2)  # prompts and responses of different lengths: the batch is padded
    total, count = hand_response_loss(llama, records)
    batched = response_perplexity(llama, records, batch_size=2, max_length=512)
    single = response_perplexity(llama, records, batch_size=1, max_length=512)
    assert batched["response_tokens"] == single["response_tokens"] == count
    assert batched["loss"] == pytest.approx(total / count, rel=1e-5)
    assert single["loss"] == pytest.approx(batched["loss"], rel=1e-6)
    assert batched["perplexity"] == pytest.approx(math.exp(batched["loss"]))
    # Token-weighted over the set, not a mean of per-record means.
    per_record = [hand_response_loss(llama, [r]) for r in records]
    assert batched["loss"] != pytest.approx(sum(s / n for s, n in per_record) / 2, rel=1e-3)


def test_completion_as_text_or_message_scores_the_same(llama):
    records = dolly_records("validation", 3)
    as_text = [{**r, "completion": r["completion"][0]["content"]} for r in records]
    assert response_perplexity(llama, as_text, 2, 512) == response_perplexity(llama, records, 2, 512)


def test_responses_cut_by_max_length_are_counted_not_scored(llama):
    generator = CausalGenerator(llama)
    records = dolly_records("train", 3)
    losses = response_losses(generator.model, generator.tokenizer, records, batch_size=3, max_length=20)
    assert losses == [(0.0, 0)] * 3  # every rendered prompt is longer than 20 tokens
    with pytest.raises(ValueError, match="no response tokens to score"):
        response_perplexity(llama, records, 3, max_length=20)


def test_bad_records_named_before_loading(tmp_path):
    records = dolly_records("train", 3)
    records[0] = {**records[0], "prompt": "not messages"}
    records[2] = {k: v for k, v in records[2].items() if k != "completion"}
    with pytest.raises(DataValidationError) as error:
        evaluate_instruction_model(tmp_path / "no-model-here", records)
    assert str(error.value).splitlines()[1:] == [
        "  - records, record 1, field 'prompt': must be a non-empty list of chat messages"
        " {'role': ..., 'content': ...}",
        "  - records, record 3, field 'completion': must be the reference text or a list with the assistant message",
    ]


def test_metrics_split_by_category(llama):
    records = dolly_records("validation")  # open_qa 3, general_qa 2, information_extraction 1
    records[-1] = {k: v for k, v in records[-1].items() if k != "category"}
    result = evaluate_instruction_model(llama, records, batch_size=4, max_length=512, generation=SHORT)

    groups: dict[str, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault(r.get("category", UNCATEGORIZED), []).append(i)
    assert set(result.per_category) == set(groups) and UNCATEGORIZED in groups
    for name, idx in groups.items():
        part = result.per_category[name]
        assert part.num_records == len(idx)
        subset = rouge_scores([result.predictions[i] for i in idx], [result.references[i] for i in idx])
        assert part.metrics["rougeL"] == pytest.approx(subset["rougeL"])
        alone = response_perplexity(llama, [records[i] for i in idx], 4, 512)
        assert part.metrics["loss"] == pytest.approx(alone["loss"], rel=1e-5)
        assert part.response_tokens == alone["response_tokens"]
    # Category losses recombine, weighted by tokens, into the overall loss.
    recombined = sum(c.metrics["loss"] * c.response_tokens for c in result.per_category.values())
    assert recombined / result.response_tokens == pytest.approx(result.metrics["loss"])
    assert result.metrics["rougeL"] == pytest.approx(rouge_scores(result.predictions, result.references)["rougeL"])
    assert result.predictions == CausalGenerator(llama).generate([r["prompt"] for r in records], params=SHORT)
    assert result.num_records == 6 and result.truncated_responses == 0 and result.records_per_second > 0


def test_no_categories_no_split(llama):
    records = [{k: v for k, v in r.items() if k != "category"} for r in dolly_records("validation", 2)]
    assert evaluate_instruction_model(llama, records, generation=SHORT).per_category == {}


def test_compare_base_and_finetuned(llama, tuned_llama):
    records = dolly_records("train", 8)
    base = evaluate_instruction_model(llama, records, batch_size=8, max_length=512, generation=SHORT)
    tuned = evaluate_instruction_model(tuned_llama, records, batch_size=8, max_length=512, generation=SHORT)
    comparison = compare(base, tuned, num_samples=2)

    rows = {r["metric"]: r for r in comparison.metric_rows()}
    assert set(rows) == {"loss", "perplexity", "rouge1", "rouge2", "rougeL", "rougeLsum"}
    assert rows["loss"]["fine_tuned"] < rows["loss"]["base"]  # the stand-in fine-tune learned these responses
    for name, row in rows.items():
        assert row["gain"] == pytest.approx(round(tuned.metrics[name] - base.metrics[name], 4), abs=1e-4)
        assert row["better"] == ("lower" if name in ("loss", "perplexity") else "higher")
    categories = {r["category"] for r in comparison.category_rows()}
    assert categories == {r["category"] for r in records}
    assert len(comparison.category_rows()) == 3 * len(categories)

    md = comparison.markdown()
    assert md.count("### Sample") == 2 and "#### Per category" in md
    assert records[1]["completion"][0]["content"] in md
    assert "*user:* Which is a species of fish? Tope or Rope" in md
    with pytest.raises(ValueError, match="different records"):
        compare(base, evaluate_instruction_model(llama, records[:2], generation=SHORT))
