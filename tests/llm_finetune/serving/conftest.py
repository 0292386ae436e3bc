"""Fixtures of the endpoint tests on a tiny Llama."""

import pytest

from tests.tiny_causal import build_tiny_causal, one_torch_thread


@pytest.fixture(scope="module")
def single_thread():
    """One torch thread for the module's tiny models (see one_torch_thread)."""
    with one_torch_thread():
        yield


@pytest.fixture(scope="module")
def model(tmp_path_factory, single_thread):
    """A served tiny Llama (text-generation), run on one torch thread."""
    from llm_finetune.inference.served import load_text_model

    return load_text_model(build_tiny_causal(tmp_path_factory.mktemp("llama"), "llama"))
