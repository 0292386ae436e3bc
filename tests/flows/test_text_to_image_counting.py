"""The counting flow end to end on the tiny pipeline and detector (they draw and count noise)."""

from pathlib import Path

import mlflow
import numpy as np
import pytest
from PIL import Image

from flows.text_to_image_counting import DEFAULT_RECIPE_PATH, text_to_image_counting
from llm_finetune.inference.text_to_image import counting_prompts, generate_images
from llm_finetune.recipes import load_recipe
from llm_finetune.recipes.text_to_image import TextToImageCountingRecipe
from tests.tiny_causal import one_torch_thread

pytestmark = pytest.mark.usefixtures("prefect_server")  # the process's temporary Prefect server (conftest)


def test_one_image_per_count_object_and_seed_and_a_confusion_table_that_adds_up(tmp_path):
    recipe = load_recipe(DEFAULT_RECIPE_PATH, TextToImageCountingRecipe, [
        f"work_dir={tmp_path}", "prompts.objects=[{name: apple, plural: apples}, {name: car, plural: cars}]",
        "images.seeds=[3, 4]", "detector.score_threshold=0.99"])
    with one_torch_thread():
        outcome = text_to_image_counting(recipe=recipe)

    report, folder = outcome.report, Path(outcome.report.images_folder)
    names = sorted(p.name for p in folder.glob("*.png"))
    assert names == sorted(f"{o}-{n}-seed{s}.png" for o in ("apple", "car") for n in range(1, 7) for s in (3, 4))
    assert outcome.num_images == 24 and Image.open(folder / names[0]).size == (64, 64)
    assert outcome.caveat.startswith("pipeline and detector built offline with random weights: these counts are noise")
    assert [r["asked"] for r in report.confusion] == [1, 2, 3, 4, 5, 6]
    assert all(r["total"] == 2 * 2 == sum(v for k, v in r.items() if k not in ("asked", "total"))
               for r in report.confusion)
    assert sum(r["correct"] for r in report.accuracy_per_count) == sum(r[str(r["asked"])] for r in report.confusion)
    assert report.accuracy == sum(r["correct"] for r in report.accuracy_per_count) / 24
    assert Image.open(report.grid_path).size == (60 + 12 * 128, 2 * (128 + 14))  # 2 objects x (6 counts x 2 seeds)

    client = mlflow.MlflowClient(recipe.tracking_uri())
    artifacts = {a.path for a in client.list_artifacts(report.mlflow_run_id, "images")}
    assert {f"images/{n}" for n in names} <= artifacts
    assert client.get_run(report.mlflow_run_id).data.metrics["count_accuracy"] == report.accuracy

    # Fixed seeds: drawing the same prompts again (elsewhere, not read back from the cache) gives the same pixels.
    with one_torch_thread():
        again = generate_images(outcome.pipeline, None, counting_prompts(recipe.prompts), recipe.images,
                                tmp_path / "again")
    assert again.folder != report.images_folder
    for record in again.records:
        assert np.array_equal(np.asarray(Image.open(again.path(record))), np.asarray(Image.open(folder / record.file)))
