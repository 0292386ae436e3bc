"""Text-to-image generation with diffusers for the counting probe: "a photo of {N} {objects}" for each N, object and
seed; fp16 on CUDA, float32 on CPU (or as the recipe says). One PNG per (object, N, seed) and a manifest."""

from __future__ import annotations

import re
import time
from pathlib import Path

from pydantic import BaseModel

from llm_finetune.fingerprint import build_once, fingerprint, name_or_path_key
from llm_finetune.recipes.text_to_image import NUMBER_WORDS, CountingPrompts, ImageSettings

MANIFEST = "images.json"


class CountPrompt(BaseModel):
    object: str
    count: int
    prompt: str


class ImageRecord(CountPrompt):
    seed: int
    file: str  # relative to the image set's folder


class ImageSet(BaseModel):
    folder: str
    records: list[ImageRecord]
    device: str
    dtype: str
    seconds: float

    def path(self, record: ImageRecord) -> Path:
        return Path(self.folder) / record.file


def counting_prompts(prompts: CountingPrompts) -> list[CountPrompt]:
    """One prompt per (object, N): the singular for N = 1, the plural otherwise."""
    out = []
    for obj in prompts.objects:
        for n in prompts.counts:
            count = NUMBER_WORDS[n] if prompts.number_words else str(n)
            text = prompts.template.replace("{count}", count).replace("{object}", obj.name if n == 1 else obj.plural)
            out.append(CountPrompt(object=obj.name, count=n, prompt=text))
    return out


def device_and_dtype(settings: ImageSettings) -> tuple[str, str]:
    import torch

    device = settings.device if settings.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    dtype = settings.dtype if settings.dtype != "auto" else ("float16" if device == "cuda" else "float32")
    return device, dtype


def load_text_to_image(name_or_path: str, device: str, dtype: str, variant: str | None = None):
    """Any text-to-image pipeline diffusers knows (SD 1.x/2.x, SDXL, ...), on `device` in `dtype`."""
    import torch
    from diffusers import AutoPipelineForText2Image

    pipeline = AutoPipelineForText2Image.from_pretrained(name_or_path, dtype=getattr(torch, dtype), variant=variant)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline.to(device)


def generate_images(pipeline_path: str, variant: str | None, prompts: list[CountPrompt], settings: ImageSettings,
                    out_root: str | Path) -> ImageSet:
    """Every prompt x seed, drawn once: kept under a fingerprint of pipeline, prompts and settings (a re-run reads
    them back). Seeds are per image (a generator each), so an image does not depend on its batch-mates' seeds."""
    device, dtype = device_and_dtype(settings)
    key = fingerprint("text-to-image-v1", name_or_path_key(pipeline_path), variant, prompts, settings, device, dtype)
    out = Path(out_root) / key
    with build_once(out) as needed:
        if needed:
            _draw(pipeline_path, variant, prompts, settings, device, dtype, out)
    image_set = ImageSet.model_validate_json((out / MANIFEST).read_text())
    return image_set.model_copy(update={"folder": str(out.resolve())})  # where it is now, not where it was drawn


def _draw(pipeline_path, variant, prompts, settings, device, dtype, out: Path) -> None:
    import torch

    pipeline = load_text_to_image(pipeline_path, device, dtype, variant)
    jobs = [(p, seed) for p in prompts for seed in settings.seeds]
    records = []
    start = time.perf_counter()
    for i in range(0, len(jobs), settings.batch_size):
        batch = jobs[i : i + settings.batch_size]
        images = pipeline(
            prompt=[p.prompt for p, _ in batch],
            negative_prompt=[settings.negative_prompt] * len(batch) if settings.negative_prompt else None,
            num_inference_steps=settings.steps, guidance_scale=settings.guidance_scale,
            height=settings.height, width=settings.width,
            generator=[torch.Generator(device).manual_seed(seed) for _, seed in batch],
        ).images
        for (p, seed), image in zip(batch, images):
            name = re.sub(r"[^\w-]+", "_", p.object)
            record = ImageRecord(**p.model_dump(), seed=seed, file=f"{name}-{p.count}-seed{seed}.png")
            image.save(out / record.file)
            records.append(record)
    image_set = ImageSet(folder=str(out.resolve()), records=records, device=device, dtype=dtype,
                         seconds=round(time.perf_counter() - start, 2))
    (out / MANIFEST).write_text(image_set.model_dump_json(indent=1))
