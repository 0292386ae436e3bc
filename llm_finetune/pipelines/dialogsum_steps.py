"""What the DialogSum pipeline's steps run inside SageMaker containers; each reads the recipe JSON of the bundle and
the container folders SageMaker mounts (defaults below), and calls the same core code as the local flow.

    python launcher.py prepare  [--data-dir D] [--output-dir O]                       (processing job)
    python launcher.py train    [--dataset-dir D] [--model-dir M] [--checkpoint-dir C] (training job)
    python launcher.py evaluate [--model-dir M] [--data-dir D] [--output-dir O]        (processing job)
"""

from __future__ import annotations

import argparse
import json
import os
import posixpath
import shutil
import tarfile
from pathlib import Path

from llm_finetune.data.shapes import load_data
from llm_finetune.data.summarization import prepare_summarization_dataset, summarization_records
from llm_finetune.evaluation.rouge import evaluate_summarizer
from llm_finetune.models.base import base_model_path
from llm_finetune.recipes import DialogsumPipelineRecipe, SummarizationData
from llm_finetune.training.seq2seq import seq2seq_job, train_seq2seq

RECIPE_FILE = "recipe.json"
PREPARED_FILE = "prepared.json"
EVALUATION_FILE = "evaluation.json"
PROCESSING = "/opt/ml/processing"
DEFAULTS = {
    "prepare": {"data_dir": f"{PROCESSING}/input/data", "output_dir": f"{PROCESSING}/output/dataset"},
    "train": {"dataset_dir": os.environ.get("SM_CHANNEL_DATASET", "/opt/ml/input/data/dataset"),
              "model_dir": os.environ.get("SM_MODEL_DIR", "/opt/ml/model"), "checkpoint_dir": "/opt/ml/checkpoints"},
    "evaluate": {"model_dir": f"{PROCESSING}/model", "data_dir": f"{PROCESSING}/input/data",
                 "output_dir": f"{PROCESSING}/evaluation"},
}


def local_data(data: SummarizationData, data_dir: Path) -> SummarizationData:
    """The recipe's data section read from the folder SageMaker copied the s3:// files into."""
    return data.model_copy(update={"train_uri": str(data_dir / posixpath.basename(data.train_uri)),
                                   "validation_uri": str(data_dir / posixpath.basename(data.validation_uri))})


def prepare(recipe: DialogsumPipelineRecipe, data_dir: Path, output_dir: Path) -> dict:
    """Validate the data, materialize the base model (a tiny one is built here), tokenize; all into output_dir."""
    data = local_data(recipe.data, data_dir)
    validated = load_data(data, output_dir / "checked")
    base = base_model_path(recipe.model, data, validated, output_dir / "base-models")
    prepared = prepare_summarization_dataset(data, validated, base, output_dir / "datasets")
    local_base = Path(base).is_dir()
    summary = {"base_model": str(Path(base).relative_to(output_dir)) if local_base else base,
               "base_model_is_local": local_base, "dataset_dir": str(Path(prepared.path).relative_to(output_dir)),
               "fingerprint": prepared.fingerprint, "num_train": prepared.num_train}
    (output_dir / PREPARED_FILE).write_text(json.dumps(summary, indent=2))
    return summary


def train(recipe: DialogsumPipelineRecipe, dataset_dir: Path, model_dir: Path, checkpoint_dir: Path) -> dict:
    """Train in this process (checkpoints under checkpoint_dir, which SageMaker syncs, so a restarted spot job
    resumes) and leave the model's files at the root of model_dir (SageMaker archives it as model.tar.gz). The run's
    folder there is keyed by base model, data and training parameters, as a local run's: a finished model is reused
    only for the same ones."""
    prepared = json.loads((dataset_dir / PREPARED_FILE).read_text())
    base = str(dataset_dir / prepared["base_model"]) if prepared["base_model_is_local"] else prepared["base_model"]
    job = seq2seq_job(base, str(dataset_dir / prepared["dataset_dir"]), prepared["fingerprint"],
                      recipe.data.prompt_template, recipe.training, checkpoint_dir)
    result = train_seq2seq(job)
    shutil.copytree(result.model_dir, model_dir, dirs_exist_ok=True)
    return result.model_dump(include={"global_step", "train_loss", "reused"})


def evaluate(recipe: DialogsumPipelineRecipe, model_dir: Path, data_dir: Path, output_dir: Path) -> dict:
    """ROUGE of the trained model (model.tar.gz as the training job wrote it) on the validation split, written as
    evaluation.json {"metrics": {"rougeL": {"value": ...}, ...}}: the pipeline's condition reads it."""
    archive = model_dir / "model.tar.gz"
    if archive.exists():
        with tarfile.open(archive) as tar:
            tar.extractall(model_dir / "extracted", filter="data")
        model_dir = model_dir / "extracted"
    data = local_data(recipe.data, data_dir)
    validated = load_data(data, output_dir.parent / "checked-evaluation")
    records = summarization_records(validated, "validation", data, recipe.evaluation.max_records)
    scores = evaluate_summarizer(str(model_dir), records, data.prompt_template,
                                 batch_size=recipe.evaluation.batch_size, generation=recipe.evaluation.generation,
                                 max_source_tokens=data.max_source_tokens)
    report = {"metrics": {k: {"value": v} for k, v in scores.metrics.items()}, "num_records": scores.num_records}
    output_dir.mkdir(parents=True, exist_ok=True)
    (output_dir / EVALUATION_FILE).write_text(json.dumps(report, indent=2))
    return report


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    steps = parser.add_subparsers(dest="step", required=True)
    for step, defaults in DEFAULTS.items():
        sub = steps.add_parser(step)
        sub.add_argument("--recipe", type=Path, default=Path(__file__).resolve().parents[2] / RECIPE_FILE)
        for name, default in defaults.items():
            sub.add_argument(f"--{name.replace('_', '-')}", type=Path, default=Path(default))
    args = vars(parser.parse_args(argv))
    step, recipe_path = args.pop("step"), args.pop("recipe")
    recipe = DialogsumPipelineRecipe.model_validate_json(recipe_path.read_text())
    print(json.dumps({step: {"prepare": prepare, "train": train, "evaluate": evaluate}[step](recipe, **args)}))


if __name__ == "__main__":
    main()
