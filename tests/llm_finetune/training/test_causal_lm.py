"""Causal-LM SFT on the Dolly sample with tiny models: completion-only labels, LoRA, merge check, QLoRA, Mixtral."""

import pytest
import torch

from llm_finetune.data.instructions import check_sft_records, instruction_dataset, render_ids
from llm_finetune.errors import MergeError
from llm_finetune.training.causal_lm import (
    build_trainer,
    check_merge,
    keep_4bit_layers_differentiable,
    load_base_model,
    load_tokenizer,
    lora_config,
    resolve_precision,
    train_causal_lm,
    verification_batch,
)
from tests.llm_finetune.causal_helpers import lora_for, small_job, tiny_base


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    work = tmp_path_factory.mktemp("causal")
    base, validated = tiny_base(work, "llama")
    return {"work": work, "base": base, "validated": validated}


@pytest.fixture(scope="module")
def lora_run(llama):
    job = small_job(llama["base"], llama["validated"], llama["work"] / "lora")
    return job, train_causal_lm(job)


def adapter_weights(adapter_dir) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(f"{adapter_dir}/adapter_model.safetensors")


def loss_on(model, batch) -> float:
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    with torch.no_grad():
        return float(model(**batch, labels=labels, use_cache=False).loss)


@pytest.mark.parametrize("completion_only", [True, False])
def test_labels_mask_exactly_the_rendered_prompt(llama, completion_only):
    job = small_job(llama["base"], llama["validated"], llama["work"] / "labels", completion_only_loss=completion_only)
    tokenizer = load_tokenizer(job.base_model)
    report = check_sft_records(job.validated, job.data, tokenizer)
    examples = instruction_dataset(job.validated, "train", job.data)
    trainer = build_trainer(job, load_base_model(job.base_model, job.lora), tokenizer, examples)

    prompts = [render_ids(tokenizer, e["prompt"], add_generation_prompt=True) for e in examples]
    responseless = sum(len(p) >= job.data.max_length for p in prompts)
    assert responseless == report.splits["train"].dropped > 0
    # With completion-only loss TRL drops exactly those records; without, it keeps them (to learn their prompt).
    kept = [(e, p) for e, p in zip(examples, prompts) if len(p) < job.data.max_length or not completion_only]
    assert len(trainer.train_dataset) == len(kept) == len(examples) - (responseless if completion_only else 0)
    for (example, prompt), prepared in zip(kept, trainer.train_dataset):
        full = render_ids(tokenizer, example["prompt"] + example["completion"])[: job.data.max_length]
        assert prepared["input_ids"] == full
        if completion_only:
            assert prepared["labels"] == [-100] * len(prompt) + full[len(prompt):]
        else:
            assert prepared["labels"] == full


def test_lora_training_lowers_loss_changes_adapters_and_merges(llama, lora_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    job, result = lora_run
    assert result.global_step == 12 and result.resumed_from_checkpoint is None
    assert result.loss_curve[-1]["loss"] < result.loss_curve[0]["loss"] - 0.05
    assert 0 < result.trainable_parameters < result.total_parameters
    assert 0 < result.loss_tokens < result.real_tokens < result.padded_tokens and result.tokens_per_second > 0
    assert result.real_tokens == result.loss_curve[-1]["num_tokens"]  # TRL's own count of attended tokens
    assert result.dropped_records == result.data_report.splits["train"].dropped > 0

    weights = adapter_weights(result.adapter_dir)
    lora_b = {k: v for k, v in weights.items() if "lora_B" in k}
    assert len(lora_b) == 2 * 7  # 2 layers x (q, k, v, o, gate, up, down)
    assert all(v.abs().max() > 0 for v in lora_b.values())  # lora_B starts at zero: every adapter trained

    assert result.merge.max_abs_diff <= result.merge.tolerance == 1e-3 < result.merge.adapter_effect
    # The merged folder serves on its own; it computes what base + adapter compute, and fits better than the base.
    tokenizer = AutoTokenizer.from_pretrained(result.model_dir)
    merged = AutoModelForCausalLM.from_pretrained(result.model_dir)
    assert tokenizer.chat_template and tokenizer.pad_token == "<pad>"
    batch = verification_batch(tokenizer, instruction_dataset(job.validated, "train", job.data), 192, n=8)
    base = AutoModelForCausalLM.from_pretrained(job.base_model)
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(job.base_model), result.adapter_dir)
    with torch.no_grad():
        diff = (merged(**batch).logits - adapted(**batch).logits).abs().max()
    assert diff < 1e-3
    assert loss_on(merged, batch) < loss_on(base, batch) - 0.05

    again = train_causal_lm(job)
    assert again.reused and again.model_dir == result.model_dir and again.merge == result.merge


def test_sabotaged_merge_is_detected(lora_run):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    job, result = lora_run
    tokenizer = load_tokenizer(job.base_model)
    batch = verification_batch(tokenizer, instruction_dataset(job.validated, "train", job.data), 192)
    adapted = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(job.base_model), result.adapter_dir).eval()
    with torch.no_grad():
        adapted_logits = adapted(**batch).logits[batch["attention_mask"].bool()]
        with adapted.disable_adapter():
            base_logits = adapted(**batch).logits[batch["attention_mask"].bool()]
    untouched = AutoModelForCausalLM.from_pretrained(job.base_model)
    with pytest.raises(MergeError, match="the merge did nothing: the merged model computes the base model's logits"):
        check_merge(untouched, batch, adapted_logits=adapted_logits, base_logits=base_logits)

    merged = adapted.merge_and_unload()
    assert check_merge(merged, batch, adapted_logits=adapted_logits, base_logits=base_logits).max_abs_diff < 1e-3
    with torch.no_grad():
        merged.model.layers[1].self_attn.o_proj.weight[0, 0] += 0.5
    with pytest.raises(MergeError, match=r"the merged model diverges from base\+adapter: max \|logit difference\|"):
        check_merge(merged, batch, adapted_logits=adapted_logits, base_logits=base_logits)
    with pytest.raises(MergeError, match="the adapter changes no logit"):
        check_merge(merged, batch, adapted_logits=base_logits, base_logits=base_logits)


def test_qlora_on_cpu_still_gets_gradients_after_an_eval_forward(llama):
    import bitsandbytes as bnb
    from peft import get_peft_model

    job = small_job(llama["base"], llama["validated"], llama["work"] / "unused",
                    lora=lora_for("llama", quantization={"load_in_4bit": True}))
    model = load_base_model(job.base_model, job.lora)
    four_bit = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(four_bit) == 2 * 7 and not any(m.support_avx512bf16_for_cpu for m in four_bit)
    for layer in four_bit:  # as bitsandbytes sets it on a CPU with AVX512-BF16
        layer.support_avx512bf16_for_cpu = True
    assert keep_4bit_layers_differentiable(model) == 14
    assert not any(m.support_avx512bf16_for_cpu for m in four_bit)
    model = get_peft_model(model, lora_config(job.lora))
    batch = verification_batch(load_tokenizer(job.base_model), instruction_dataset(job.validated, "train", job.data),
                               64)
    model.eval()  # e.g. evaluating the base model first: bitsandbytes would repack the 4-bit weights for inference
    with torch.no_grad():
        model(**batch, use_cache=False)
    model.train()
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    model(**batch, labels=labels, use_cache=False).loss.backward()
    q_proj = model.base_model.model.model.layers[0].self_attn.q_proj
    assert q_proj.lora_B["default"].weight.grad.abs().max() > 0  # the first backward reaches the lowest layer


def test_qlora_run_merges_into_full_precision_base(llama):
    import bitsandbytes as bnb
    from transformers import AutoModelForCausalLM

    job = small_job(llama["base"], llama["validated"], llama["work"] / "qlora", max_steps=4,
                    lora=lora_for("llama", quantization={"load_in_4bit": True}))
    result = train_causal_lm(job)
    assert result.merge.max_abs_diff <= 1e-3 < result.merge.adapter_effect
    merged = AutoModelForCausalLM.from_pretrained(result.model_dir)
    assert not any(isinstance(m, bnb.nn.Linear4bit) for m in merged.modules())
    assert merged.model.layers[0].self_attn.q_proj.weight.dtype == torch.float32


def test_mixtral_expert_adapters_train_and_router_aux_loss_is_logged(tmp_path):
    base, validated = tiny_base(tmp_path, "mixtral")
    job = small_job(base, validated, tmp_path / "run", family="mixtral", max_steps=4, logging_steps=1,
                    save_steps=100)
    result = train_causal_lm(job)

    weights = adapter_weights(result.adapter_dir)
    experts = {k: v for k, v in weights.items() if ".mlp.experts." in k}
    assert len(experts) == 2 * 2 * 2  # 2 layers x (gate_up_proj, down_proj) x (lora_A, lora_B)
    assert all(v.abs().max() > 0 for k, v in experts.items() if "lora_B" in k)
    assert not any(".mlp.gate." in k for k in weights)  # the router stays frozen
    assert [e["step"] for e in result.loss_curve] == [1, 2, 3, 4]
    assert all(e["aux_loss"] > 0 for e in result.loss_curve)
    assert result.merge.max_abs_diff <= 1e-3 < result.merge.adapter_effect


def test_packing_is_padding_free_and_counts_real_tokens(llama, tmp_path):
    job = small_job(llama["base"], llama["validated"], tmp_path / "run", packing=True, max_steps=2, save_steps=100)
    result = train_causal_lm(job)
    assert result.real_tokens == result.padded_tokens > 0  # packed rows have no padding
    assert result.merge.max_abs_diff <= 1e-3


def test_full_fine_tune_trains_every_weight(llama, tmp_path):
    from transformers import AutoModelForCausalLM

    job = small_job(llama["base"], llama["validated"], tmp_path / "run", lora=lora_for("llama", enabled=False),
                    max_steps=2, learning_rate=1e-3, save_steps=100)
    result = train_causal_lm(job)
    assert result.adapter_dir is None and result.merge is None
    assert result.trainable_parameters == result.total_parameters
    tuned = AutoModelForCausalLM.from_pretrained(result.model_dir)
    base = AutoModelForCausalLM.from_pretrained(job.base_model)
    assert (tuned.model.layers[0].mlp.up_proj.weight - base.model.layers[0].mlp.up_proj.weight).abs().max() > 0


def test_frozen_weights_are_bf16_only_under_lora(llama):
    base = llama["base"]
    assert load_base_model(base, lora_for("llama"), precision="bf16").dtype == torch.bfloat16
    assert load_base_model(base, lora_for("llama"), precision="fp32").dtype == torch.float32
    assert load_base_model(base, lora_for("llama", enabled=False), precision="bf16").dtype == torch.float32


def test_precision_choices():
    assert resolve_precision("fp32") == "fp32" and resolve_precision("bf16") == "bf16"
    assert resolve_precision("auto") in ("fp32", "bf16")



def test_torchrun_two_processes_train_one_model(llama, tmp_path):
    """nproc_per_node 2 through the backend seam: torchrun, two processes on gloo, rank 0 writes one model."""
    import json

    from transformers import AutoModelForCausalLM

    from llm_finetune.backends.local import command, run_training_process

    job = small_job(llama["base"], llama["validated"], tmp_path / "run", max_steps=2, logging_steps=1,
                    per_device_train_batch_size=2, save_steps=100, nproc_per_node=2)
    assert command(job, tmp_path / "job.json")[1:5] == ["-m", "torch.distributed.run", "--standalone",
                                                        "--nproc_per_node=2"]
    result = run_training_process(job)
    printed = [line for line in (tmp_path / "run" / "train.log").read_text().splitlines()
               if line.startswith('{"model_dir"')]
    assert len(printed) == 1  # rank 0 reports
    assert json.loads((tmp_path / "run" / "result.json").read_text()) == json.loads(printed[0])
    assert result.global_step == 2
    assert result.real_tokens == result.loss_curve[-1]["num_tokens"]  # both processes' tokens
    assert result.merge.max_abs_diff <= 1e-3
    AutoModelForCausalLM.from_pretrained(result.model_dir)


DATA_PARALLEL_LOSS_TOLERANCE = 1e-3  # fp32; a plain Trainer matched to 3 decimals (STACK-NOTES); seen here: 1e-6


def test_torchrun_two_processes_match_one_process_on_the_same_global_batch(llama, tmp_path):
    """2 processes x batch 2 under torchrun follow the loss curve of 1 process x batch 4: each global batch holds the
    same records, and the loss is averaged over the response tokens of all processes, not per process."""
    from llm_finetune.backends.local import run_training_process

    settings = {"max_steps": 4, "logging_steps": 1, "save_steps": 100}
    one = run_training_process(small_job(llama["base"], llama["validated"], tmp_path / "one",
                                         per_device_train_batch_size=4, **settings))
    two = run_training_process(small_job(llama["base"], llama["validated"], tmp_path / "two",
                                         per_device_train_batch_size=2, nproc_per_node=2, **settings))

    assert [h["step"] for h in one.loss_curve] == [h["step"] for h in two.loss_curve] == [1, 2, 3, 4]
    assert [h["num_tokens"] for h in one.loss_curve] == [h["num_tokens"] for h in two.loss_curve]  # same records
    assert one.loss_tokens == two.loss_tokens
    for a, b in zip(one.loss_curve, two.loss_curve):
        assert abs(a["loss"] - b["loss"]) <= DATA_PARALLEL_LOSS_TOLERANCE, (one.loss_curve, two.loss_curve)


@pytest.mark.parametrize("family", ["llama", "mixtral"])
def test_packed_records_do_not_attend_to_each_other(tmp_path, family):
    """Padding-free packing (the default) is only right if a packed row's logits equal each record's alone."""
    from transformers import AutoModelForCausalLM

    from tests.tiny_causal import build_tiny_causal

    model = AutoModelForCausalLM.from_pretrained(build_tiny_causal(tmp_path, family)).eval()
    records = [torch.randint(4, model.config.vocab_size, (n,)) for n in (7, 12, 5)]
    positions = torch.cat([torch.arange(len(r)) for r in records])[None]
    with torch.no_grad():
        # As TRL's padding-free collator feeds it: one row, position_ids restarting per record, no attention mask.
        packed = model(input_ids=torch.cat(records)[None], position_ids=positions, use_cache=False).logits[0]
        alone = torch.cat([model(input_ids=r[None], use_cache=False).logits[0] for r in records])
        contaminated = model(input_ids=torch.cat(records)[None], use_cache=False).logits[0]
    assert (packed - alone).abs().max() < 1e-4
    assert (contaminated - alone).abs().max() > 1e-2  # the check can fail: without position_ids records mix


def test_packing_is_refused_for_falcon(tmp_path):
    from transformers import FalconConfig

    from llm_finetune.errors import RecipeError
    from llm_finetune.recipes import SFTParams
    from llm_finetune.training.causal_lm import check_packing

    FalconConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4).save_pretrained(tmp_path)
    with pytest.raises(RecipeError, match=r"training.packing: .* falcon .* set training.packing=false"):
        check_packing(str(tmp_path), SFTParams(packing=True))
    check_packing(str(tmp_path), SFTParams(packing=False))
