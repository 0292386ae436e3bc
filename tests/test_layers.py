"""The code's layers only point down, no layer has an import cycle inside it (pyproject's import-linter contracts),
and a function imports inside its body only to keep a heavy dependency off a light path."""

import ast
import contextlib
import io
import os
import subprocess
import sys

import pytest
from importlinter.cli import lint_imports

from tests.conftest import REPO

# Third-party packages a function may import in its body, and why: each takes long to import (or pulls a framework)
# and is needed only on some paths; loading a recipe, checking data or listing flows must not wait for it.
HEAVY = {
    "torch": "1-3 s; training, inference", "transformers": "several s; training, inference",
    "peft": "pulls transformers", "trl": "pulls transformers", "datasets": "pulls pyarrow, fsspec",
    "diffusers": "text-to-image only", "bitsandbytes": "4-bit runs only (logs a kernel warning on import)",
    "tokenizers": "tiny-model builds only", "mlflow": "seconds; registry and tracking only",
    "sagemaker": "seconds; SageMaker paths only", "boto3": "AWS paths only", "botocore": "AWS paths only",
    "matplotlib": "plots only", "sklearn": "a metric or two", "scipy": "a metric or two", "PIL": "images only",
    "pyarrow": "file formats only", "pandas": "MLflow signatures only", "fsspec": "remote files only",
    "rouge_score": "ROUGE only", "pysbd": "sentence splitting only",
}
LAZY_REASON = "# lazy:"  # any other import in a function body says why, on its line (or the line before)


def test_import_contracts_hold():
    """import-linter: flows -> tasks -> llm_finetune, the core's layer order, no cycle among siblings."""
    out = io.StringIO()
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        with contextlib.redirect_stdout(out):
            code = lint_imports(config_filename=str(REPO / "pyproject.toml"), no_cache=True)
    finally:
        os.chdir(cwd)
    assert code == 0, out.getvalue()[-4000:]


def function_body_imports(path):
    source = path.read_text()
    lines = source.splitlines()
    for fn in ast.walk(ast.parse(source)):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                    said = LAZY_REASON in lines[node.lineno - 1] or LAZY_REASON in lines[node.lineno - 2]
                    yield node.lineno, module, said


@pytest.mark.parametrize("package", ["llm_finetune", "tasks", "flows"])
def test_function_body_imports_are_heavy_or_say_why(package):
    unexplained = [f"{path.relative_to(REPO)}:{line}: {module}"
                   for path in sorted((REPO / package).rglob("*.py"))
                   for line, module, said in function_body_imports(path)
                   if module.split(".")[0] not in HEAVY and not said]
    assert not unexplained, "imports inside functions that keep nothing heavy away:\n" + "\n".join(unexplained)


def test_the_check_finds_an_unexplained_import(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text("def f():\n    import json\n    # lazy: a reason\n    import os\n    import torch\n")
    assert [(m, said) for _, m, said in function_body_imports(sample)] == [("json", False), ("os", True),
                                                                         ("torch", False)]


# Read on light paths (a recipe loaded, data checked, a job described, a flow's tasks imported, the CLI started):
# none of them may pull in a training framework.
LIGHT = ["llm_finetune.recipes", "llm_finetune.data.shapes", "llm_finetune.training.job", "llm_finetune.training.seq2seq",
         "llm_finetune.training.causal_lm", "llm_finetune.backends.local", "tasks.data", "deployments.cli"]


def test_light_paths_import_no_training_framework():
    code = (f"import importlib, sys\nfor m in {LIGHT!r}: importlib.import_module(m)\n"
            "print(sorted(p for p in ('torch', 'transformers', 'peft', 'trl', 'bitsandbytes') if p in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]", out.stdout
