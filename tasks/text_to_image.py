"""Text-to-image counting tasks: the pipeline and the detector (Hub id / folder, or tiny ones built offline), the
images, the counts, and the report (accuracy per N and object, confusion table, image grid, MLflow run)."""

from __future__ import annotations

import base64
import io
import json
from pathlib import Path

from prefect import get_run_logger, task
from prefect.artifacts import create_image_artifact, create_markdown_artifact, create_table_artifact
from prefect.settings import get_current_settings
from pydantic import BaseModel

from llm_finetune.evaluation.counting import CountingResult, accuracy_rows, confusion_rows, count_objects, image_grid
from llm_finetune.inference.text_to_image import CountPrompt, ImageSet, generate_images
from llm_finetune.models.tiny_diffusion import build_tiny_image_model
from llm_finetune.recipes.text_to_image import DetectorSpec, DiffusionModelSpec, TextToImageCountingRecipe
from llm_finetune.registry.mlflow_registry import log_run


class CountingReport(BaseModel):
    accuracy: float
    accuracy_per_count: list[dict]
    accuracy_per_object_and_count: list[dict]
    confusion: list[dict]
    grid_path: str
    images_folder: str
    mlflow_run_id: str


@task(name="materialize-image-model")
def materialize_image_model(spec: DiffusionModelSpec | DetectorSpec, corpus: list[str], work_dir: str) -> str:
    """The pipeline or the detector: a Hub id or folder as given, or a tiny one whose CLIP tokenizer is trained on the
    prompts and detector queries."""
    if spec.name_or_path:
        return spec.name_or_path
    return str(build_tiny_image_model(spec.tiny, corpus, Path(work_dir) / "base-models"))


@task(name="generate-images")
def generate_counting_images(pipeline: str, prompts: list[CountPrompt], recipe: TextToImageCountingRecipe) -> ImageSet:
    images = generate_images(pipeline, recipe.pipeline.variant, prompts, recipe.images,
                             Path(recipe.work_dir) / "text-to-image")
    get_run_logger().info("%d images in %s (%s, %s, %.1fs)", len(images.records), images.folder, images.device,
                          images.dtype, images.seconds)
    return images


@task(name="count-objects")
def count_generated_objects(images: ImageSet, detector: str, spec: DetectorSpec, work_dir: str) -> CountingResult:
    result = count_objects(images, detector, spec, Path(work_dir) / "counts")
    get_run_logger().info("counted %d images with %s in %.1fs", len(result.counts), detector, result.seconds)
    return result


@task(name="report-counting")
def report_counting(images: ImageSet, result: CountingResult, recipe: TextToImageCountingRecipe) -> CountingReport:
    """Accuracy per N and object, the asked-vs-found confusion table, an image grid; all in an MLflow run with the
    images, and as Prefect artifacts."""
    per_object, per_count = accuracy_rows(result.counts)
    confusion = confusion_rows(result.counts, recipe.prompts.counts)
    accuracy = sum(c.found == c.count for c in result.counts) / len(result.counts)
    out = Path(images.folder).parent.parent / "counting-reports" / Path(images.folder).name
    out.mkdir(parents=True, exist_ok=True)
    grid_path = out / "grid.png"
    grid = image_grid(images, result.counts, recipe.grid_thumbnail)
    grid.save(grid_path)
    tables = out / "counting.json"
    tables.write_text(json.dumps({"accuracy": accuracy, "per_count": per_count, "per_object_and_count": per_object,
                                  "confusion": confusion, "counts": [c.model_dump() for c in result.counts]}, indent=1))
    run_id = log_run(
        recipe.tracking_uri(), recipe.tracking.experiment, recipe.name,
        params={"pipeline": recipe.pipeline.name_or_path or "tiny", "detector": recipe.detector.name_or_path or "tiny",
                "steps": recipe.images.steps, "guidance_scale": recipe.images.guidance_scale,
                "seeds": recipe.images.seeds, "score_threshold": recipe.detector.score_threshold,
                "device": images.device, "dtype": images.dtype, "template": recipe.prompts.template},
        metrics={"count_accuracy": accuracy, **{f"count_accuracy.n{r['asked']}": r["accuracy"] for r in per_count}},
        files=[grid_path, tables], folders={"images": Path(images.folder)})
    create_table_artifact(key="count-accuracy", table=per_count + [{"asked": "all", "accuracy": round(accuracy, 4)}],
                          description="Images with exactly the asked number of objects found, per N")
    create_table_artifact(key="count-accuracy-per-object", table=per_object, description="Per object and N")
    create_table_artifact(key="count-confusion", table=confusion, description="Asked N (rows) x found (columns)")
    create_image_artifact(key="count-image-grid", image_url=grid_artifact_url(grid),
                          description="Rows: objects; columns: N and seed; captions: asked / found")
    create_markdown_artifact(key="count-run", markdown=(
        f"{len(result.counts)} images from `{recipe.pipeline.name_or_path or 'a tiny random pipeline'}` "
        f"({images.device}, {images.dtype}), counted by `{recipe.detector.name_or_path or 'a tiny random OWLv2'}` "
        f"(score >= {recipe.detector.score_threshold}); accuracy {accuracy:.3f}. MLflow run `{run_id}`."),
        description="What was drawn and counted")
    return CountingReport(accuracy=accuracy, accuracy_per_count=per_count, accuracy_per_object_and_count=per_object,
                          confusion=confusion, grid_path=str(grid_path), images_folder=images.folder,
                          mlflow_run_id=run_id)


def grid_artifact_url(grid, width: int = 1600) -> str:
    """The grid as a JPEG data URL at most `width` wide, halved until it fits half of the server's event size limit:
    an artifact's data rides its events, which the server drops above the limit (the full grid is grid.png)."""
    budget = get_current_settings().server.events.maximum_size_bytes // 2
    while True:
        image = grid.resize((width, round(grid.height * width / grid.width))) if grid.width > width else grid
        buffer = io.BytesIO()
        image.convert("RGB").save(buffer, format="JPEG", quality=85)
        url = "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()
        if len(url) <= budget or width <= 100:
            return url
        width //= 2
