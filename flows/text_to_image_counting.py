"""Object counting in text-to-image: a diffusers pipeline draws "a photo of {N} {objects}" for N = 1..6 over several
objects and fixed seeds; a zero-shot detector (OWLv2) counts what it drew; accuracy per N and object, the
asked-vs-found confusion table and an image grid (images also logged to MLflow).

    llmft run text-to-image-counting [--recipe recipes/text_to_image_counting_sdxl.yaml] [key.sub=value ...]
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

from prefect import flow
from pydantic import BaseModel

from llm_finetune.inference.text_to_image import counting_prompts
from llm_finetune.recipes import load_recipe
from llm_finetune.recipes.text_to_image import TextToImageCountingRecipe
from tasks.aws import aws_from_recipe
from tasks.text_to_image import (
    CountingReport,
    count_generated_objects,
    generate_counting_images,
    materialize_image_model,
    report_counting,
)

DEFAULT_RECIPE_PATH = Path(__file__).resolve().parent.parent / "recipes" / "text_to_image_counting_tiny.yaml"


class CountingOutcome(BaseModel):
    cli_exclude: ClassVar[dict] = {"report": {"accuracy_per_object_and_count"}}

    pipeline: str
    detector: str
    num_images: int
    report: CountingReport
    caveat: str | None = None  # set when the figures cannot mean anything (random weights)


@flow(name="text-to-image-counting", log_prints=True)
@aws_from_recipe
def text_to_image_counting(
    recipe: TextToImageCountingRecipe = load_recipe(DEFAULT_RECIPE_PATH, TextToImageCountingRecipe),
) -> CountingOutcome:
    prompts = counting_prompts(recipe.prompts)
    corpus = [p.prompt for p in prompts] + [recipe.detector.query_template.replace("{object}", o.name)
                                            for o in recipe.prompts.objects]
    pipeline = materialize_image_model(recipe.pipeline, corpus, recipe.work_dir)
    detector = materialize_image_model(recipe.detector, corpus, recipe.work_dir)
    images = generate_counting_images(pipeline, prompts, recipe)
    counts = count_generated_objects(images, detector, recipe.detector, recipe.work_dir)
    report = report_counting(images, counts, recipe)
    return CountingOutcome(pipeline=pipeline, detector=detector, num_images=len(images.records), report=report,
                           caveat=recipe.random_weights_caveat())
