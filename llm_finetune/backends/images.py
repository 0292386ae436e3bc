"""Container image URIs from the sagemaker SDK's image URI tables (bundled with the SDK, offline) for a region and an
instance type: a GPU instance gets a GPU image, a CPU instance a CPU one. The images are the newest the tables list
for this project's stack; the code bundle's requirements.txt pins its own library versions on top."""

from __future__ import annotations

from functools import cache

from llm_finetune.errors import RecipeError
from llm_finetune.recipes import SageMakerModelPackageSpec

# Hugging Face PyTorch training DLC: transformers 5.3.0, torch 2.9.0; the tables list it for GPU instances only.
HF_TRAINING = {"framework": "huggingface", "version": "5.3.0", "base_framework_version": "pytorch2.9.0",
               "py_version": "py312", "image_scope": "training"}
# PyTorch training DLC with the same torch: the CPU image of training and processing jobs.
PYTORCH_TRAINING = {"framework": "pytorch", "version": "2.9.0", "py_version": "py312", "image_scope": "training"}
# Hugging Face PyTorch inference DLC (transformers 5.5.3), CPU and GPU.
HF_INFERENCE = {"framework": "huggingface", "version": "5.5.3", "base_framework_version": "pytorch2.6.0",
                "py_version": "py312", "image_scope": "inference"}


def is_gpu_instance(instance_type: str) -> bool:
    """ml.g*/ml.p* instances have NVIDIA GPUs (the SDK's own rule for picking a DLC's processor)."""
    family = instance_type.split(".")[1] if instance_type.count(".") >= 2 else ""
    return family[:1] in ("g", "p")


@cache
def job_image(region: str, instance_type: str, field: str) -> str:
    """A training or processing job's image: the HF training DLC on a GPU instance, else the PyTorch training CPU
    image. `field` is the recipe field that pins another image (named when the tables have none)."""
    return _retrieve(HF_TRAINING if is_gpu_instance(instance_type) else PYTORCH_TRAINING, region, instance_type, field)


@cache
def inference_image(region: str, instance_type: str, field: str) -> str:
    """The HF PyTorch inference DLC for the instance type (its CPU or GPU variant)."""
    return _retrieve(HF_INFERENCE, region, instance_type, field)


def _retrieve(table: dict[str, str], region: str, instance_type: str, field: str) -> str:
    from sagemaker.core import image_uris

    try:
        return image_uris.retrieve(region=region, instance_type=instance_type, **table)
    except ValueError as e:
        raise RecipeError(f"{field}: the sagemaker SDK's image tables have no {table['framework']} "
                          f"{table['image_scope']} image for {instance_type} in {region} ({e}); "
                          f"set {field} to an image URI") from None


def package_image(spec: SageMakerModelPackageSpec, region: str) -> str:
    """A model package's inference image: the recipe's, else the tables' for its first inference instance type."""
    return spec.image_uri or inference_image(region, spec.inference_instance_types[0], "registry.sagemaker.image_uri")
