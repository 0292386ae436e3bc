"""The text-to-image counting recipe: a diffusers pipeline asked for "a photo of {N} {objects}", a zero-shot detector
counting what it drew, accuracy per N and object and the asked-vs-found confusion table."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from llm_finetune.recipes.base import AwsSection, RunTracking, Strict, require_exactly_one
from llm_finetune.recipes.paths import CwdPath, RecipeModel

NUMBER_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
                "twelve")


class TinyDiffusionSpec(Strict):
    """A randomly initialised Stable Diffusion pipeline built from configs (offline; it draws noise)."""

    image_size: int = Field(64, ge=16, le=256, description="Pixels per side; keep it small, this runs on a CPU")
    block_out_channels: list[int] = Field(default_factory=lambda: [32, 64], min_length=2, max_length=4,
                                          description="UNet and VAE channel widths (one per resolution)")
    text_hidden_size: int = Field(32, gt=0, description="CLIP text encoder width (= UNet cross-attention width)")
    text_layers: int = Field(2, gt=0)
    vocab_size: int = Field(600, ge=520, description="CLIP BPE size incl. the 512 byte symbols")
    seed: int = 0

    @model_validator(mode="after")
    def _sizes(self) -> TinyDiffusionSpec:
        factor = 4 ** (len(self.block_out_channels) - 1)  # the VAE's downsampling, then the UNet's (2x per block each)
        if self.image_size % factor:
            raise ValueError(f"image_size must be a multiple of {factor} for {len(self.block_out_channels)} blocks")
        if any(c % min(self.block_out_channels) for c in self.block_out_channels):
            raise ValueError("block_out_channels must be multiples of the smallest (group norm)")
        return self


class DiffusionModelSpec(Strict):
    """The text-to-image pipeline: a Hub id or local folder any diffusers AutoPipelineForText2Image loads
    (stabilityai/stable-diffusion-xl-base-1.0), or a tiny offline one."""

    name_or_path: RecipeModel | None = None
    tiny: TinyDiffusionSpec | None = None
    variant: str | None = Field(None, description="Weights variant on the Hub, e.g. 'fp16' (smaller download)")

    @model_validator(mode="after")
    def _exactly_one(self) -> DiffusionModelSpec:
        require_exactly_one(self, ("name_or_path", "tiny"))
        return self


class ImageSettings(Strict):
    """How each image is drawn. The same seed, prompt and settings give the same image."""

    seeds: list[int] = Field(default_factory=lambda: [0, 1], min_length=1, description="One image per seed")
    steps: int = Field(30, gt=0, description="Denoising steps")
    guidance_scale: float = Field(7.5, ge=0, description="Classifier-free guidance; above 1 follows the prompt more")
    height: int | None = Field(None, gt=0, description="Default: the pipeline's own size (1024 for SDXL)")
    width: int | None = Field(None, gt=0)
    negative_prompt: str | None = None
    batch_size: int = Field(4, gt=0, description="Images per pipeline call")
    device: Literal["auto", "cpu", "cuda"] = Field("auto", description="auto: CUDA when present")
    dtype: Literal["auto", "float16", "bfloat16", "float32"] = Field(
        "auto", description="auto: float16 on CUDA, float32 on CPU")


class CountingObject(Strict):
    """An object word in its two forms."""

    name: str = Field(min_length=1, description="Singular, as in 'a photo of one apple'")
    plural: str = Field(min_length=1, description="As in 'a photo of three apples'")


class CountingPrompts(Strict):
    """The prompts: the template filled with each N (as a word or digits) and each object (its plural above one)."""

    template: str = Field("a photo of {count} {object}", description="Must contain {count} and {object}")
    counts: list[int] = Field(default_factory=lambda: [1, 2, 3, 4, 5, 6], min_length=1)
    objects: list[CountingObject] = Field(min_length=1)
    number_words: bool = Field(True, description="'three' rather than '3' in the prompt")

    @field_validator("template")
    @classmethod
    def _slots(cls, v: str) -> str:
        missing = [slot for slot in ("{count}", "{object}") if slot not in v]
        if missing:
            raise ValueError(f"template must contain {' and '.join(missing)}")
        return v

    @field_validator("counts")
    @classmethod
    def _counts(cls, v: list[int]) -> list[int]:
        if any(n < 1 or n >= len(NUMBER_WORDS) for n in v) or len(set(v)) != len(v):
            raise ValueError(f"counts must be distinct, from 1 to {len(NUMBER_WORDS) - 1}")
        return v


class TinyDetectorSpec(Strict):
    """A randomly initialised OWLv2 built from its config (offline; its detections are noise)."""

    image_size: int = Field(64, ge=16, le=960)
    patch_size: int = Field(8, gt=0)
    vision_hidden_size: int = Field(32, gt=0)
    vision_layers: int = Field(2, gt=0)
    text_hidden_size: int = Field(32, gt=0)
    text_layers: int = Field(2, gt=0)
    vocab_size: int = Field(600, ge=520, description="CLIP BPE size incl. the 512 byte symbols")
    seed: int = 0

    @model_validator(mode="after")
    def _patches(self) -> TinyDetectorSpec:
        if self.image_size % self.patch_size:
            raise ValueError("image_size must be a multiple of patch_size")
        return self


class DetectorSpec(Strict):
    """The counter: a zero-shot object detector through transformers (google/owlv2-base-patch16-ensemble)."""

    name_or_path: RecipeModel | None = None
    tiny: TinyDetectorSpec | None = None
    query_template: str = Field("a photo of a {object}", description="Text query per object; must contain {object}")
    score_threshold: float = Field(0.3, ge=0, le=1, description="Boxes scoring below it are not counted")
    nms_iou: float = Field(0.3, gt=0, le=1, description="Boxes overlapping more than this (IoU) count once")
    batch_size: int = Field(8, gt=0)

    @model_validator(mode="after")
    def _exactly_one(self) -> DetectorSpec:
        require_exactly_one(self, ("name_or_path", "tiny"))
        if "{object}" not in self.query_template:
            raise ValueError("query_template must contain {object}")
        return self


class TextToImageCountingRecipe(Strict):
    """Everything one counting run needs."""

    name: str = "text-to-image-counting"
    work_dir: CwdPath = Field(".llmft", description="Caches, images, MLflow store (relative to the working directory)")
    pipeline: DiffusionModelSpec
    images: ImageSettings = Field(default_factory=ImageSettings)
    prompts: CountingPrompts
    detector: DetectorSpec
    grid_thumbnail: int = Field(128, ge=16, le=512, description="Pixels per image in the grid artifact")
    tracking: RunTracking = Field(default_factory=lambda: RunTracking(experiment="text-to-image-counting"))
    aws: AwsSection

    def tracking_uri(self) -> str:
        return self.tracking.uri(self.work_dir)

    def random_weights_caveat(self) -> str | None:
        """One line saying the counts are noise when a model is built from a config with random weights."""
        random = [name for name, spec in (("pipeline", self.pipeline), ("detector", self.detector)) if spec.tiny]
        if not random:
            return None
        return (f"{' and '.join(random)} built offline with random weights: these counts are noise and measure no "
                "model (name_or_path a trained pipeline and detector, e.g. the SDXL recipe, for real figures)")
