"""A training process killed with SIGKILL resumes from its last complete checkpoint, with whole-run totals."""

import sys
from pathlib import Path

import pytest

from llm_finetune.data.summarization import prepare_summarization_dataset
from llm_finetune.training.seq2seq import Seq2SeqTrainJob, last_complete_checkpoint, seq2seq_job, train_seq2seq
from tests.conftest import REPO, seed_work_dir
from tests.training_helpers import kill_at_first_checkpoint, step_weighted_mean_loss


def test_killed_run_resumes_from_last_checkpoint(trained_tiny_model, tmp_path):
    recipe, prepared = trained_tiny_model["recipe"], trained_tiny_model["prepared"]
    params = recipe.training.model_copy(update={"max_steps": 12, "save_steps": 4, "save_total_limit": 3})
    job = Seq2SeqTrainJob(base_model=trained_tiny_model["base"], dataset_dir=prepared.path,
                          output_dir=str(tmp_path / "run"), prompt_template=recipe.data.prompt_template, params=params)
    job_file = tmp_path / "job.json"
    job_file.write_text(job.model_dump_json())
    checkpoints = tmp_path / "run" / "checkpoints"
    step_at_kill = kill_at_first_checkpoint([sys.executable, "-m", "llm_finetune.training.seq2seq", "--job",
                                             str(job_file)], REPO, checkpoints)
    assert not (tmp_path / "run" / "model").exists()
    assert 4 <= step_at_kill < 12

    resumed = train_seq2seq(job)
    assert resumed.resumed_from_checkpoint is not None
    resumed_step = int(resumed.resumed_from_checkpoint.rsplit("-", 1)[1])
    assert resumed_step >= step_at_kill
    assert resumed.global_step == 12
    # only the steps after the checkpoint were trained again
    assert resumed.loss_curve[-1]["step"] == 12
    # Totals of the whole run, as an uninterrupted run counts them; the loss averaged over every step.
    whole = train_seq2seq(job.model_copy(update={"output_dir": str(tmp_path / "whole")}))
    assert resumed.real_tokens == whole.real_tokens and 0 < resumed.real_tokens < resumed.padded_tokens
    assert resumed.padded_tokens == whole.padded_tokens
    assert resumed.train_loss == pytest.approx(step_weighted_mean_loss(resumed.loss_curve))
    assert resumed.train_loss == pytest.approx(whole.train_loss, rel=1e-3)

    again = train_seq2seq(job)
    assert again.reused and again.model_dir == resumed.model_dir and again.global_step == 12


def test_partial_checkpoints_are_skipped(tmp_path):
    good = tmp_path / "checkpoint-10"
    good.mkdir()
    (good / "trainer_state.json").write_text("{}")
    (good / "model.safetensors").write_bytes(b"x")
    partial = tmp_path / "checkpoint-20"
    partial.mkdir()
    (partial / "model.safetensors").write_bytes(b"x")  # killed before trainer_state.json was written
    assert last_complete_checkpoint(tmp_path) == good
    assert last_complete_checkpoint(tmp_path / "absent") is None


def test_a_copied_work_dir_reuses_its_runs_and_data_from_where_they_are_now(trained_tiny_model, small_trained_work_dir,
                                                                             tmp_path):
    copy = seed_work_dir(tmp_path / "moved", small_trained_work_dir)
    recipe, base = trained_tiny_model["recipe"], trained_tiny_model["base"]
    prepared = prepare_summarization_dataset(recipe.data, trained_tiny_model["validated"], base, copy / "datasets")
    assert prepared.reused and Path(prepared.path).is_relative_to(copy / "datasets" / prepared.fingerprint)
    job = seq2seq_job(base, prepared.path, prepared.fingerprint, recipe.data.prompt_template, recipe.training, copy)
    reused = train_seq2seq(job)
    assert reused.reused and reused.model_dir == str(Path(job.output_dir) / "model")
    assert Path(job.output_dir).is_relative_to(copy) and reused.global_step == trained_tiny_model["result"].global_step
