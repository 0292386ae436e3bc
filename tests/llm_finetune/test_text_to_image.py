import pytest

from llm_finetune.inference.text_to_image import counting_prompts, device_and_dtype
from llm_finetune.recipes.text_to_image import CountingPrompts, ImageSettings, TinyDiffusionSpec


def test_prompts_use_number_words_and_the_plural_above_one():
    prompts = CountingPrompts(objects=[{"name": "mouse", "plural": "mice"}], counts=[1, 3])
    assert [p.prompt for p in counting_prompts(prompts)] == ["a photo of one mouse", "a photo of three mice"]
    digits = prompts.model_copy(update={"number_words": False, "template": "{count} {object} on a table"})
    assert [p.prompt for p in counting_prompts(digits)] == ["1 mouse on a table", "3 mice on a table"]


def test_fp16_on_cuda_float32_on_cpu(monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert device_and_dtype(ImageSettings()) == ("cpu", "float32")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert device_and_dtype(ImageSettings()) == ("cuda", "float16")
    assert device_and_dtype(ImageSettings(device="cpu", dtype="bfloat16")) == ("cpu", "bfloat16")


def test_recipe_sections_refuse_what_cannot_work():
    with pytest.raises(ValueError, match=r"template must contain \{count\}"):
        CountingPrompts(template="a photo of {object}", objects=[{"name": "cat", "plural": "cats"}])
    with pytest.raises(ValueError, match="counts must be distinct"):
        CountingPrompts(counts=[1, 1], objects=[{"name": "cat", "plural": "cats"}])
    with pytest.raises(ValueError, match="image_size must be a multiple of 16 for 3 blocks"):
        TinyDiffusionSpec(image_size=40, block_out_channels=[32, 32, 64])


def test_only_random_weights_carry_the_noise_caveat():
    from llm_finetune.recipes import load_recipe
    from llm_finetune.recipes.text_to_image import TextToImageCountingRecipe
    from tests.conftest import REPO

    tiny = load_recipe(REPO / "recipes" / "text_to_image_counting_tiny.yaml", TextToImageCountingRecipe)
    sdxl = load_recipe(REPO / "recipes" / "text_to_image_counting_sdxl.yaml", TextToImageCountingRecipe)
    assert "counts are noise" in tiny.random_weights_caveat() and sdxl.random_weights_caveat() is None
