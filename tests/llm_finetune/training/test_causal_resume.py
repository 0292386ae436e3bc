"""A LoRA training process killed with SIGKILL resumes from its last complete checkpoint, adapter weights and
whole-run totals included."""

import pytest
import torch
from transformers import TrainerCallback

from llm_finetune.backends.local import command
from llm_finetune.training.causal_lm import train_causal_lm
from llm_finetune.training.job import last_complete_checkpoint
from tests.conftest import REPO
from tests.llm_finetune.causal_helpers import small_job, tiny_base
from tests.training_helpers import kill_at_first_checkpoint, step_weighted_mean_loss


class AdapterAtStart(TrainerCallback):
    """The LoRA weights the trainer starts from (after it has loaded any checkpoint)."""

    def __init__(self):
        self.weights: dict[str, torch.Tensor] = {}

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        self.weights = {n.replace(".default", ""): p.detach().clone() for n, p in model.named_parameters()
                        if "lora_" in n}


def test_killed_lora_run_resumes_from_last_checkpoint(tmp_path):
    from safetensors.torch import load_file

    base, validated = tiny_base(tmp_path)
    job = small_job(base, validated, tmp_path / "run", max_steps=12, save_steps=3, save_total_limit=2)
    job_file = tmp_path / "job.json"
    job_file.write_text(job.model_dump_json())
    checkpoints = tmp_path / "run" / "checkpoints"
    step_at_kill = kill_at_first_checkpoint(command(job, job_file), REPO, checkpoints)
    assert not (tmp_path / "run" / "model").exists() and not (tmp_path / "run" / "adapter").exists()
    killed_at = last_complete_checkpoint(checkpoints)
    assert 3 <= step_at_kill < 12

    saved = load_file(killed_at / "adapter_model.safetensors")  # read now: later checkpoints rotate it away

    start = AdapterAtStart()
    resumed = train_causal_lm(job, callbacks=[start])
    assert resumed.resumed_from_checkpoint == str(killed_at)
    # The trainer continued from the checkpoint's adapters, not from fresh ones (lora_B = 0).
    assert saved.keys() == start.weights.keys()
    assert all(torch.equal(saved[k], start.weights[k]) for k in saved)
    assert any(v.abs().max() > 0 for k, v in saved.items() if "lora_B" in k)
    assert resumed.global_step == 12 and resumed.loss_curve[-1]["step"] == 12
    assert resumed.loss_curve[0]["step"] == 2  # the curve keeps the steps logged before the kill
    assert resumed.merge.max_abs_diff <= 1e-3
    # Totals of the whole run, as an uninterrupted run counts them; the loss averaged over every step.
    whole = train_causal_lm(job.model_copy(update={"output_dir": str(tmp_path / "whole")}))
    assert whole.resumed_from_checkpoint is None
    for count in ("real_tokens", "padded_tokens", "loss_tokens"):
        assert getattr(resumed, count) == getattr(whole, count) > 0, count
    assert resumed.train_loss == pytest.approx(step_weighted_mean_loss(resumed.loss_curve))
    assert resumed.train_loss == pytest.approx(whole.train_loss, rel=1e-3)

    again = train_causal_lm(job)
    assert again.reused and again.model_dir == resumed.model_dir and again.global_step == 12
