"""The package itself: importing it keeps optional-kernel notices of libraries out of every command's output."""

import subprocess
import sys

from tests.conftest import REPO

# bitsandbytes registers its CPU kernels at import; on a CPU with AVX512-BF16 it then warns that the optional
# `kernels` package is missing. Forced here on any CPU by reloading that module with the check answering yes.
FORCE_KERNEL_NOTICE = ("import importlib, bitsandbytes.functional as F, bitsandbytes.backends.cpu.ops as ops; "
                       "F.has_avx512bf16 = lambda: True; importlib.reload(ops)")


def python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-W", "ignore", "-c", code], cwd=REPO, capture_output=True, text=True,
                          timeout=300)


def test_bitsandbytes_kernel_notice_is_silenced_once_the_package_is_imported():
    assert "Failed to load CPU gemm_4bit_forward" in python(FORCE_KERNEL_NOTICE).stderr  # what users saw
    quiet = python("import llm_finetune; " + FORCE_KERNEL_NOTICE)
    assert quiet.returncode == 0 and "gemm_4bit_forward" not in quiet.stderr, quiet.stderr
