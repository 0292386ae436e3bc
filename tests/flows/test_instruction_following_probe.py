"""The probe flow end to end (a tiny model and an HTTP endpoint), and the probe gate in the release subflow."""

import json
from pathlib import Path

import mlflow
import pytest

from flows.instruction_following_probe import DEFAULT_RECIPE_PATH, instruction_following_probe
from flows.release import release_model
from llm_finetune.evaluation.comparison import ReleaseEvidence
from llm_finetune.fingerprint import fingerprint
from llm_finetune.kinds import EndpointTestCase
from llm_finetune.models.tiny_causal import build_tiny_causal_lm
from llm_finetune.recipes import InstructionRecipe, load_recipe
from llm_finetune.recipes.instruction import TinyCausalSpec
from llm_finetune.recipes.probes import InstructionProbeRecipe
from llm_finetune.training.job import TrainingResult
from tests.chat_helpers import contract_app
from tests.http_helpers import serving_in_thread
from tests.probe_helpers import asked, mute_copy
from tests.tiny_causal import one_torch_thread

REPO = Path(__file__).resolve().parents[2]
# Answers that follow the first three prompts of the shipped suite.
GOOD = {"List exactly five steps": "- boil water\n- warm the pot\n- add tea\n- pour\n- wait three minutes",
        "Name three fruits": "- strawberry\n- cherry\n- raspberry",
        "Explain what a rainbow": "Sunlight bent and split by raindrops into its colours."}


def good_answer(prompt: str) -> str:
    return next(answer for start, answer in GOOD.items() if start in prompt)


pytestmark = pytest.mark.usefixtures("prefect_server")  # the process's temporary Prefect server (conftest)


def test_probe_flow_records_every_answer_and_pass_rates_per_model(tmp_path):
    with serving_in_thread(contract_app(asked(good_answer))) as url, one_torch_thread():
        recipe = load_recipe(DEFAULT_RECIPE_PATH, InstructionProbeRecipe, [
            f"work_dir={tmp_path}", "probes.max_prompts=3", "probes.variants=[zero_shot, few_shot]",
            "probes.chat.max_tokens=8",
            f"models=[{{name: tiny, tiny: {{vocab_size: 300}}}}, {{name: endpoint, endpoint_url: '{url}'}}]"])
        outcome = instruction_following_probe(recipe=recipe)

    answers = [json.loads(line) for line in Path(outcome.report.answers_path).read_text().splitlines()]
    assert len(answers) == 2 * 3 * 2  # models x prompts x variants
    assert {(a["model"], a["variant"]) for a in answers} == {(m, v) for m in ("tiny", "endpoint")
                                                             for v in ("zero_shot", "few_shot")}
    assert all(a["checks"] and a["passed"] == all(c["passed"] for c in a["checks"]) for a in answers)
    assert outcome.report.overall["endpoint"] == 1.0 and outcome.report.overall["tiny"] < 1.0
    rows = {(r["model"], r["variant"], r["check_type"]): r for r in outcome.report.pass_rates}
    assert rows[("endpoint", "few_shot", "list_items")]["total"] == 2  # two list prompts, one check each
    assert rows[("tiny", "all", "all")]["total"] == 6
    assert [t.kind for t in outcome.targets] == ["local", "http"]

    client = mlflow.MlflowClient(recipe.tracking_uri())
    run = client.get_run(outcome.report.mlflow_run_id)
    assert run.data.metrics["pass_rate.endpoint.all.all"] == 1.0
    assert {a.path for a in client.list_artifacts(run.info.run_id)} == {"answers.jsonl", "pass_rates.json",
                                                                        "pass_rates.png"}


def release(tmp_path: Path, base_model: Path, finetuned: Path):
    suite = tmp_path / "suite.yaml"
    suite.write_text("""
name: say-something
system_prompt: Answer.
prompts:
  - id: anything
    prompt: Say anything at all.
    checks: [{type: word_count, min: 1}]
    examples: [{prompt: Say a word., answer: word}]
""")
    recipe = load_recipe(REPO / "recipes" / "dolly_llama2_tiny.yaml", InstructionRecipe, [
        f"work_dir={tmp_path}", f"registry.tracking_uri=sqlite:///{tmp_path / 'mlflow.db'}",
        f"probe_gate={{suite: '{suite}', tolerance: 0.0, chat: {{max_tokens: 12}}}}", "endpoint.num_test_records=1",
        "endpoint.generation.max_new_tokens=4",
        # only the probe gate decides here: no metric threshold, and never a pause for a reviewer
        "approval.min_relative_decrease={}", "approval.require_gain=false", "approval.manual_review=false"])
    training = TrainingResult(model_dir=str(finetuned), global_step=1, train_loss=None, loss_curve=[],
                              resumed_from_checkpoint=None, train_runtime_s=0.0, real_tokens=0, padded_tokens=0,
                              tokens_per_second=0.0, fingerprint=fingerprint(str(finetuned)))
    evidence = ReleaseEvidence(base_metrics={"rougeL": 0.1}, finetuned_metrics={"rougeL": 0.2}, samples=[],
                               report_markdown="", num_records=1)
    with one_torch_thread():
        return release_model(recipe, str(base_model), "data", training, evidence,
                             [EndpointTestCase(id="1", inputs="Say hi.", reference="hi")], kind="text-generation")


@pytest.fixture(scope="module")
def talking_and_mute(tmp_path_factory):
    root = tmp_path_factory.mktemp("gate-models")
    corpus = ["Say anything at all.", "Say a word.", "word", "Answer."]
    talking = build_tiny_causal_lm(TinyCausalSpec(vocab_size=300), corpus, root, fingerprint(corpus))
    return talking, mute_copy(talking, root / "mute")


def test_release_rejects_a_model_whose_probe_pass_rate_regresses(tmp_path, talking_and_mute):
    talking, mute = talking_and_mute
    outcome = release(tmp_path, base_model=talking, finetuned=mute)
    assert (outcome.probe_gate.base_rate, outcome.probe_gate.finetuned_rate) == (1.0, 0.0)
    assert not outcome.decision.approved and outcome.decision.reviewer == "policy"
    assert outcome.decision.reason.startswith("probe gate: pass rate 0.000 < base 1.000 - tolerance 0.000; "
                                              "probe gate: newly failing checks: anything/zero_shot/word_count "
                                              "(0 words; wanted at least 1 words)")
    assert outcome.endpoint_test is None
    tags = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_model_version(
        outcome.version.name, outcome.version.version).tags
    assert tags["approval_status"] == "rejected" and tags["approval_reason"] == outcome.decision.reason


def test_release_accepts_a_model_that_does_not_regress(tmp_path, talking_and_mute):
    talking, mute = talking_and_mute
    outcome = release(tmp_path, base_model=mute, finetuned=talking)
    assert (outcome.probe_gate.base_rate, outcome.probe_gate.finetuned_rate) == (0.0, 1.0)
    assert not outcome.probe_gate.failures
    assert outcome.decision.approved and outcome.endpoint_test.num_requests == 1
