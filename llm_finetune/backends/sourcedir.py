"""The project's code as a SageMaker source dir: `sourcedir.tar.gz` with the llm_finetune package, the entry script
and a requirements file. Packed byte for byte the same for the same code, so its S3 key can be its hash."""

from __future__ import annotations

import gzip
import hashlib
import io
import tarfile
from importlib import metadata
from pathlib import Path

import llm_finetune

ENTRY_SCRIPT = "llmft_sagemaker_entry.py"
REQUIREMENTS_FILE = "requirements.txt"
ENTRY_SOURCE = '''"""SageMaker entry point of llm-finetune-flows: see llm_finetune/backends/sagemaker_container.py."""
import sys

from llm_finetune.backends.sagemaker_container import main

sys.exit(main())
'''
# What the trainers and the preparation step import, pinned to the versions this project runs. Not torch: the image's
# CUDA build stays (this project's pin is a CPU wheel).
CONTAINER_PACKAGES = ("transformers", "tokenizers", "datasets", "accelerate", "trl", "peft", "bitsandbytes",
                      "sentencepiece", "pydantic", "pyyaml", "filelock", "zstandard")


def requirements_text() -> str:
    return "".join(f"{name}=={metadata.version(name)}\n" for name in CONTAINER_PACKAGES)


def _files() -> list[tuple[str, bytes]]:
    package = Path(llm_finetune.__file__).resolve().parent
    files = [(f"llm_finetune/{p.relative_to(package).as_posix()}", p.read_bytes())
             for p in sorted(package.rglob("*"))
             if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".pyc", ".lock")]
    return [*files, (ENTRY_SCRIPT, ENTRY_SOURCE.encode()), (REQUIREMENTS_FILE, requirements_text().encode())]


def pack_sourcedir(dest_dir: str | Path) -> tuple[Path, str]:
    """Write <dest_dir>/sourcedir.tar.gz; return its path and sha256. No timestamps or owners inside."""
    buffer = io.BytesIO()
    with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as gz, tarfile.open(fileobj=gz, mode="w") as tar:
        for name, data in _files():
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), 0o644, 0
            tar.addfile(info, io.BytesIO(data))
    data = buffer.getvalue()
    path = Path(dest_dir) / "sourcedir.tar.gz"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()
