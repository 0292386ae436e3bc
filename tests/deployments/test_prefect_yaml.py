import json
import re
from pathlib import Path

import yaml
from prefect.flows import Flow

from deployments.serve import PREFECT_YAML, build_deployments, deployment_specs
from tests.conftest import REPO, SHARED_DATA

FLOWS_DIR = Path(__file__).resolve().parents[2] / "flows"


def test_every_flow_module_has_a_deployment():
    modules = {p.stem for p in FLOWS_DIR.glob("*.py") if p.stem not in ("__init__", "release")}  # release: nested
    deployed = {Path(spec["entrypoint"].split(":")[0]).stem for spec in deployment_specs()}
    assert modules == deployed


def test_deployments_load_their_flows_with_recipe_forms():
    deployments = build_deployments(PREFECT_YAML)
    assert [d.name for d in deployments] == [spec["name"] for spec in deployment_specs()]
    for d in deployments:
        schema = d._parameter_openapi_schema.model_dump()
        recipe_type = schema["properties"]["recipe"]["$ref"].rsplit("/", 1)[1]
        assert recipe_type in ("SummarizationRecipe", "InstructionRecipe", "ChatInferenceRecipe",
                               "InstructionProbeRecipe", "TextToImageCountingRecipe", "DialogsumPipelineRecipe",
                               "ContinuedPretrainingRecipe", "CodePretrainingRecipe", "ClassificationRecipe",
                               "QARecipe", "SentimentComparisonRecipe")
        if recipe_type == "ChatInferenceRecipe":  # no training data: prompt suites
            suite_fields = schema["definitions"]["PromptSuiteSpec"]["properties"]
            assert "s3://" in suite_fields["path"]["description"]
            continue
        if recipe_type in ("InstructionProbeRecipe", "TextToImageCountingRecipe"):  # no data: documented sections
            fields = schema["definitions"][recipe_type]["properties"].values()
            sections = [f["$ref"].rsplit("/", 1)[1] for f in fields if "$ref" in f]
            assert sections and [s for s in sections if not schema["definitions"][s].get("description")] == []
            continue
        data_type = schema["definitions"][recipe_type]["properties"]["data"]["$ref"].rsplit("/", 1)[1]
        data_fields = schema["definitions"][data_type]["properties"]
        assert "s3://" in data_fields["train_uri"]["description"]  # field docs show in the UI form


def test_recipe_forms_keep_their_field_order_and_placeholders():
    # A Prefect server on PostgreSQL stores the schema as jsonb, which sorts keys by length; the form sorts by position.
    # The form renders a description as markdown and drops a bare <work_dir> as an HTML tag ('sqlite:////mlflow.db').
    unnumbered, bare = set(), {}
    for d in build_deployments(PREFECT_YAML):
        for name, definition in d._parameter_openapi_schema.model_dump()["definitions"].items():
            properties = definition.get("properties", {})
            if [p.get("position") for p in properties.values()] != list(range(len(properties))):
                unnumbered.add(name)
            for field, prop in [(None, definition), *properties.items()]:
                outside_code = re.sub(r"`[^`]*`", "", prop.get("description") or "")
                if re.search(r"<[A-Za-z/!]", outside_code):
                    bare[f"{name}.{field}" if field else name] = prop["description"]
    assert unnumbered == set() and bare == {}


def test_forms_hold_no_path_of_the_deploying_machine():
    # The stored schema's defaults fill every custom-run form: a worker elsewhere (the image's /opt/llmft) must get
    # paths it can resolve, relative to its own project folder.
    forms = {d.name: json.dumps(d._parameter_openapi_schema.model_dump()) for d in build_deployments(PREFECT_YAML)}
    assert {name: form for name, form in forms.items() if str(REPO) in form or str(SHARED_DATA) in form} == {}
    assert '"train_uri": "../shared/data/dialogsum/train.jsonl"' in forms["dialogsum-flan-t5"]


def test_entrypoints_are_flows():
    from prefect.flows import load_flow_from_entrypoint

    for spec in deployment_specs():
        file, func = spec["entrypoint"].split(":")
        assert isinstance(load_flow_from_entrypoint(f"{PREFECT_YAML.parent / file}:{func}"), Flow)


def test_pull_step_takes_the_project_folder_from_the_worker():
    # A placeholder the worker fills in (scripts/team_up.sh), not the deploying machine's folder ({{ $PWD }} was).
    pull = yaml.safe_load(PREFECT_YAML.read_text())["pull"]
    assert pull == [{"prefect.deployments.steps.set_working_directory": {"directory": "{{ $LLMFT_PROJECT_DIR }}"}}]
