"""Causal-LM SFT on the Dolly sample with tiny models: completion-only labels, LoRA, merge check, QLoRA, Mixtral."""

import pytest
import torch

from llm_finetune.data.instructions import check_sft_records, instruction_dataset, render_ids
from llm_finetune.errors import MergeError
from llm_finetune.training.causal_lm import (
    build_trainer,
    check_merge,
    load_tokenizer,
    lora_config,
    train_causal_lm,
    verification_batch,
)
from llm_finetune.training.common import keep_4bit_layers_differentiable, load_base_model, resolve_precision
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


def test_packed_rows_and_flat_layouts_train_alike_and_count_real_tokens(llama, tmp_path):
    """Packed rows fed as rows (the CPU default) or flattened (TRL's padding-free) see the same records and targets:
    the same token counts and, up to float rounding, the same loss curve."""
    runs = {layout: train_causal_lm(small_job(llama["base"], llama["validated"], tmp_path / layout, packing=True,
                                              packing_layout=layout, max_steps=3, logging_steps=1, save_steps=100))
            for layout in ("rows", "flat")}
    rows, flat = runs["rows"], runs["flat"]
    assert flat.real_tokens == flat.padded_tokens > 0  # one row a batch: nothing to pad
    assert 0 < rows.real_tokens == flat.real_tokens < rows.padded_tokens  # rows pad to the longest row
    assert rows.loss_tokens == flat.loss_tokens > 0
    for run in (rows, flat):
        assert run.real_tokens == run.loss_curve[-1]["num_tokens"]  # TRL's count agrees (rows: corrected)
        assert run.merge.max_abs_diff <= 1e-3
    assert [h["num_tokens"] for h in rows.loss_curve] == [h["num_tokens"] for h in flat.loss_curve]
    for a, b in zip(rows.loss_curve, flat.loss_curve):
        assert abs(a["loss"] - b["loss"]) <= 1e-4, (rows.loss_curve, flat.loss_curve)


def test_compile_changes_speed_not_losses_or_weights(llama, tmp_path):
    """training.compile=true (the Trainer's torch_compile) trains the same fp32 losses and adapters as eager, counts
    the same tokens, and saves plain (uncompiled) weight names. A first compile on a 2-core CPU takes ~1 minute;
    torch's on-disk compile cache makes a rerun ~15 s."""
    runs = {compiled: train_causal_lm(small_job(llama["base"], llama["validated"], tmp_path / str(compiled),
                                                packing=True, compile=compiled, max_steps=3, logging_steps=1,
                                                save_steps=100))
            for compiled in (False, True)}
    eager, compiled = runs[False], runs[True]
    assert len(compiled.loss_curve) == 3
    assert [h["loss"] for h in compiled.loss_curve] == pytest.approx([h["loss"] for h in eager.loss_curve], rel=1e-4)
    assert (compiled.real_tokens, compiled.loss_tokens) == (eager.real_tokens, eager.loss_tokens)
    eager_weights, compiled_weights = adapter_weights(eager.adapter_dir), adapter_weights(compiled.adapter_dir)
    assert compiled_weights.keys() == eager_weights.keys()  # no "_orig_mod." in the saved names
    for name, weight in eager_weights.items():  # Adam moves a weight by ~lr (1e-2) where its gradient is ~0, so a
        # reordered fp32 sum there shows as up to ~1e-4 (seen: one element of 512 off by 2.5e-5)
        torch.testing.assert_close(compiled_weights[name], weight, rtol=1e-4, atol=1e-4)
    assert compiled.merge.max_abs_diff <= 1e-3


def test_packing_layout_auto_is_flat_only_under_varlen_flash_attention(llama):
    from types import SimpleNamespace

    from llm_finetune.recipes import SFTParams
    from llm_finetune.training.causal_lm import packing_layout

    def model(attention):
        return SimpleNamespace(config=SimpleNamespace(_attn_implementation=attention))

    assert packing_layout(SFTParams(packing=True), model("sdpa")) == "rows"
    assert packing_layout(SFTParams(packing=True), model("flash_attention_2")) == "flat"
    assert packing_layout(SFTParams(packing=True, packing_layout="rows"), model("flash_attention_2")) == "rows"
    assert packing_layout(SFTParams(packing=False), model("sdpa")) is None


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
    """Packing is only right if a packed row's logits equal each record's alone, in both layouts: flattened (TRL's
    padding-free collator) and rows (PackedRowsCollator, with a padded row)."""
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from llm_finetune.training.collators import PackedRowsCollator
    from tests.tiny_causal import build_tiny_causal

    model = AutoModelForCausalLM.from_pretrained(build_tiny_causal(tmp_path, family)).eval()
    pad = 0
    records = [torch.randint(4, model.config.vocab_size, (n,)) for n in (7, 12, 5, 9, 3)]
    packed_rows = [{"input_ids": torch.cat(records[:3]).tolist(), "seq_lengths": [7, 12, 5]},
                   {"input_ids": torch.cat(records[3:]).tolist(), "seq_lengths": [9, 3]}]  # 12 real + 12 pads
    with torch.no_grad():
        alone = [model(input_ids=r[None], use_cache=False).logits[0] for r in records]
        flat = DataCollatorForLanguageModeling(pad_token_id=pad, padding_free=True)(packed_rows)
        flat_logits = model(input_ids=flat["input_ids"], position_ids=flat["position_ids"], use_cache=False).logits
        rows = PackedRowsCollator(pad_token_id=pad)(packed_rows)
        assert "attention_mask" not in rows and rows["input_ids"].shape == (2, 24)
        rows_logits = model(**{k: rows[k] for k in ("input_ids", "position_ids")}, use_cache=False).logits
        contaminated = model(input_ids=flat["input_ids"], use_cache=False).logits[0]
    assert (flat_logits[0] - torch.cat(alone)).abs().max() < 1e-4
    assert (rows_logits[0] - torch.cat(alone[:3])).abs().max() < 1e-4
    assert (rows_logits[1, :12] - torch.cat(alone[3:])).abs().max() < 1e-4
    assert (contaminated - torch.cat(alone)).abs().max() > 1e-2  # the check can fail: without position_ids records mix
    # Targets: no record's first token is learned from the record before it, and no pad is a target.
    starts = torch.tensor([0, 7, 19])
    assert (rows["labels"][0, starts] == -100).all() and (rows["labels"][1, [0, 9]] == -100).all()
    assert (rows["labels"][1, 12:] == -100).all() and (rows["labels"][0, 1:7] == records[0][1:]).all()


@pytest.mark.parametrize("multiple", [None, 8])
def test_packed_rows_equal_trls_collator_without_its_attention_mask(multiple):
    """PackedRowsCollator builds in numpy what TRL's collator builds (same tensors, dtypes and label masking)."""
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    from llm_finetune.training.collators import PackedRowsCollator

    g = torch.Generator().manual_seed(0)
    examples = [{"input_ids": torch.randint(1, 50, (n,), generator=g).tolist(), "seq_lengths": lengths}
                for n, lengths in ((13, [7, 6]), (5, [5]), (11, [1, 4, 6]))]
    examples[0]["labels"] = [-100] * 9 + examples[0]["input_ids"][9:]  # completion-only labels
    ours = PackedRowsCollator(pad_token_id=0, pad_to_multiple_of=multiple)(examples)
    trls = DataCollatorForLanguageModeling(pad_token_id=0, return_position_ids=True,
                                           pad_to_multiple_of=multiple)(examples)
    trls["labels"][trls["position_ids"] == 0] = -100
    assert set(ours) == {"input_ids", "labels", "position_ids"}
    assert ours["input_ids"].shape[1] == (16 if multiple else 13)
    for key, value in ours.items():
        assert value.dtype == trls[key].dtype and torch.equal(value, trls[key]), key


def test_packed_rows_tell_padding_from_a_pad_token_in_the_text():
    """Llama pads with <unk>, which text can also hold: only each row's trailing padding is not a real token."""
    from llm_finetune.training.collators import PackedRowsCollator, packed_real_tokens

    pad = 0
    rows = PackedRowsCollator(pad_token_id=pad)([{"input_ids": [1, 5, pad, 6, 1, pad], "seq_lengths": [4, 2]},
                                                 {"input_ids": [1, 7], "seq_lengths": [2]}])
    real = packed_real_tokens(rows["input_ids"], rows["position_ids"], pad)
    assert real.tolist() == [[True] * 6, [True, True, False, False, False, False]]


def test_packed_rows_trainer_counts_flops_as_the_trainer_does(llama):
    """The packed-rows trainer counts parameters once, and estimates each batch's FLOPs as Trainer's default does."""
    from transformers import Trainer

    from llm_finetune.training.causal_lm import packed_rows_trainer_class

    job = small_job(llama["base"], llama["validated"], llama["work"] / "flops", packing=True)
    trainer = build_trainer(job, load_base_model(job.base_model, job.lora), load_tokenizer(job.base_model),
                            instruction_dataset(job.validated, "train", job.data))
    assert isinstance(trainer, packed_rows_trainer_class())
    batch = next(iter(trainer.get_train_dataloader()))
    narrow = {"input_ids": batch["input_ids"][:1, :7]}
    for inputs in (batch, narrow, batch):
        assert trainer.floating_point_ops(inputs) == Trainer.floating_point_ops(trainer, inputs) > 0


def test_fused_lm_head_scores_only_labelled_positions_on_cpu(llama, monkeypatch):
    """The trainer's forward projects only the positions with a label through the LM head, and its loss is the
    loss of the model's own full-logits forward."""
    import trl.trainer.utils as trl_utils

    job = small_job(llama["base"], llama["validated"], llama["work"] / "compact")
    tokenizer = load_tokenizer(job.base_model)
    trainer = build_trainer(job, load_base_model(job.base_model, job.lora), tokenizer,
                            instruction_dataset(job.validated, "train", job.data))
    batch = {k: v for k, v in next(iter(trainer.get_train_dataloader())).items()}
    scored = []
    chunked = trl_utils._ChunkedLogProbFunction.apply
    monkeypatch.setattr(trl_utils._ChunkedLogProbFunction, "apply",
                        lambda hidden, *args: scored.append(hidden.shape[0]) or chunked(hidden, *args))
    trainer.model.eval()
    with torch.no_grad():
        fused = trainer.model(**batch, fused_lm_head=True, use_cache=False).loss
        full = trainer.model(**batch, use_cache=False).loss
    labelled = int((batch["labels"][:, 1:] != -100).sum())
    assert scored == [labelled] and 0 < labelled < batch["labels"][:, 1:].numel()
    assert abs(float(fused) - float(full)) < 1e-5


def test_packing_is_refused_for_falcon(tmp_path):
    from transformers import FalconConfig

    from llm_finetune.errors import RecipeError
    from llm_finetune.recipes import SFTParams
    from llm_finetune.training.causal_lm import check_packing

    FalconConfig(vocab_size=100, hidden_size=32, num_hidden_layers=1, num_attention_heads=4).save_pretrained(tmp_path)
    with pytest.raises(RecipeError, match=r"training.packing: .* falcon .* set training.packing=false"):
        check_packing(str(tmp_path), SFTParams(packing=True))
    check_packing(str(tmp_path), SFTParams(packing=False))



@pytest.mark.parametrize("softcap, temperature", [(None, 1.0), (30.0, 0.7)])
def test_plain_labelled_logits_equal_trl_chunked_log_probs_and_gradients(softcap, temperature, monkeypatch):
    """On a CPU the trainer's LM head uses plain logits where they fit, TRL's chunked function above the budget:
    the same log-probabilities, entropy, top-1 flags and gradients either way."""
    import trl.trainer.utils as trl_utils
    from trl.kernels import ChunkedLogProbFunction

    from llm_finetune.training import labelled_logits

    labelled_logits.use_labelled_logits_on_cpu()
    head = trl_utils._ChunkedLogProbFunction
    assert isinstance(head, labelled_logits.PlainOrChunkedLogProbs)
    torch.manual_seed(0)
    hidden, weight = torch.randn(37, 16) * 3, torch.randn(301, 16)
    targets = torch.randint(0, 301, (37,))
    fields = ("log_probs", "entropy", "log_sum_sq_probs", "mean_logits", "is_top1")
    upstream = torch.randn(37)  # a gradient that differs per position, as a loss with weights would send

    def run(apply):
        h, w = hidden.clone().requires_grad_(), weight.clone().requires_grad_()
        log_probs, entropy, sum_sq, mean, top1 = apply(h, w, None, targets, temperature, 128, softcap, 1.0, fields)
        (log_probs * upstream).sum().backward()
        return log_probs.detach(), entropy.detach(), sum_sq.detach(), mean.detach(), top1, h.grad, w.grad

    used = []
    plain_log_probs = labelled_logits.plain_log_probs
    monkeypatch.setattr(labelled_logits, "plain_log_probs", lambda *a: used.append(1) or plain_log_probs(*a))
    plain, chunked = run(head.apply), run(ChunkedLogProbFunction.apply)
    assert used == [1]
    for mine, trl in zip(plain, chunked, strict=True):
        assert mine.dtype == trl.dtype and torch.allclose(mine.float(), trl.float(), atol=1e-4), (mine, trl)
    assert 0 < int(plain[4].sum()) < 37  # the top-1 check can fail: some targets are the argmax, some not
    # Above the budget the call goes to TRL's function.
    monkeypatch.setattr(labelled_logits, "PLAIN_LOGITS_BUDGET_BYTES", 37 * 301 * 4 - 1)
    run(head.apply)
    assert used == [1]
