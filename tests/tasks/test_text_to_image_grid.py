"""The counting report's artifacts: the image grid stays within what the Prefect server publishes as an event."""

import base64
import io

import numpy as np
from PIL import Image
from prefect.settings import get_current_settings

from flows.text_to_image_counting import DEFAULT_RECIPE_PATH
from llm_finetune.evaluation.counting import ImageCount, image_grid
from llm_finetune.inference.text_to_image import ImageSet, counting_prompts
from llm_finetune.recipes import load_recipe
from llm_finetune.recipes.text_to_image import TextToImageCountingRecipe
from tasks.text_to_image import grid_artifact_url


def test_grid_of_the_default_recipe_fits_an_artifact_event(tmp_path):
    """An artifact's data rides the server's artifact events; above events.maximum_size_bytes the server drops them
    ('Refusing to publish event'). Noise thumbnails, as the tiny pipeline draws, compress worst."""
    recipe = load_recipe(DEFAULT_RECIPE_PATH, TextToImageCountingRecipe)
    rng = np.random.default_rng(0)
    counts = []
    for prompt in counting_prompts(recipe.prompts):
        for seed in recipe.images.seeds:
            file = f"{prompt.object}-{prompt.count}-{seed}.png"
            Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(tmp_path / file)
            counts.append(ImageCount(**prompt.model_dump(), seed=seed, file=file, found=prompt.count, scores=[]))
    images = ImageSet(folder=str(tmp_path), records=counts, device="cpu", dtype="float32", seconds=0.0)
    grid = image_grid(images, counts, recipe.grid_thumbnail)

    url = grid_artifact_url(grid)
    assert len(url) < get_current_settings().server.events.maximum_size_bytes // 2
    shown = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert abs(shown.width / shown.height - grid.width / grid.height) < 0.01  # scaled down, not cropped
