"""Doubles of the inference containers SageMaker endpoints run (test code, never product behaviour): each takes a
request body in its container's format, checks the parameters as that container does, and answers with the real
model's output in that container's format, or raises Refused with the status and body the container would answer.

- HF DLC (sagemaker-huggingface-inference-toolkit): `pipeline(inputs, **parameters)` for the HF_TASK; any failure is
  a 400 with the exception's text. transformers 5 has no text2text-generation or summarization pipeline (the DLCs ship
  transformers 4), so those are the pipeline's own steps: tokenize, `generate(**parameters)` (which refuses unused
  kwargs as the pipeline's call does), decode; text-generation answers the prompt plus the answer unless
  `return_full_text` is false.
- TGI: text-generation-inference's router validation (422 {"error", "error_type": "validation"}, same messages);
  unknown parameters are ignored (serde); the SageMaker route answers [{"generated_text"}].
- LMI (djl-serving, vLLM ranges: temperature >= 0, top_p in (0, 1], top_k -1 or >= 1): 400; answers
  {"generated_text"}.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar


class Refused(Exception):
    """The container's error answer: HTTP `status` with a JSON `body`."""

    def __init__(self, status: int, body: dict):
        super().__init__(json.dumps(body))
        self.status, self.body = status, body


class LoadedModel:
    """A model folder (seq2seq or causal, by its config) that generates for one text with raw generate kwargs."""

    def __init__(self, model_dir: str | Path):
        from transformers import AutoConfig, AutoModelForCausalLM, AutoModelForSeq2SeqLM, AutoTokenizer

        self.encoder_decoder = bool(AutoConfig.from_pretrained(model_dir).is_encoder_decoder)
        auto = AutoModelForSeq2SeqLM if self.encoder_decoder else AutoModelForCausalLM
        self.tokenizer = AutoTokenizer.from_pretrained(model_dir)
        self.model = auto.from_pretrained(model_dir).eval()
        self.lock = threading.Lock()  # the stand-in answers requests on several threads

    def generate(self, text: str, *, truncate: int | None = None, seed: int | None = None, **generate_kwargs) -> str:
        import torch

        encoded = self.tokenizer(text, return_tensors="pt")
        if truncate is not None:  # keep the last tokens, as TGI's `truncate` does
            encoded = {k: v[:, -truncate:] for k, v in encoded.items()}
        with self.lock, torch.no_grad():
            if seed is not None:
                torch.manual_seed(seed)
            out = self.model.generate(**encoded, **generate_kwargs)
        new = out[0] if self.encoder_decoder else out[0, encoded["input_ids"].shape[1]:]
        return self.tokenizer.decode(new, skip_special_tokens=True)


def _body(raw: bytes, status: int) -> tuple[Any, dict]:
    try:
        data = json.loads(raw)
    except ValueError as e:
        raise Refused(status, {"error": f"invalid JSON: {e}"}) from None
    if not isinstance(data, dict) or "inputs" not in data:
        raise Refused(status, {"error": "missing field `inputs`"})
    parameters = data.get("parameters") or {}
    if not isinstance(parameters, dict):
        raise Refused(status, {"error": "`parameters` must be an object"})
    return data["inputs"], dict(parameters)


class HfDlcDouble:
    """The Hugging Face inference DLC (inference toolkit) running the HF_TASK pipeline."""

    ANSWER_KEYS: ClassVar[dict[str, str]] = {"text2text-generation": "generated_text", "summarization": "summary_text",
                                             "text-generation": "generated_text"}

    def __init__(self, model_dir: Path, environment: dict[str, str]):
        self.task = environment.get("HF_TASK")
        if self.task not in self.ANSWER_KEYS:  # the toolkit infers a task only for Hub models
            raise ValueError(f"HF_TASK {self.task!r}: the double serves {', '.join(self.ANSWER_KEYS)}")
        self.model = LoadedModel(model_dir)

    def __call__(self, raw: bytes) -> Any:
        inputs, parameters = _body(raw, 400)
        texts = [inputs] if isinstance(inputs, str) else inputs
        if not isinstance(texts, list) or not all(isinstance(t, str) for t in texts):  # the pipeline's tokenizer
            message = f"text input must be of type `str` or `list[str]`, not {type(inputs).__name__}"
            raise Refused(400, {"code": 400, "type": "InternalServerException", "message": message})
        try:
            answers = [self._one(text, dict(parameters)) for text in texts]
        except Exception as e:  # noqa: BLE001 - the toolkit answers any failure with 400 and its text
            raise Refused(400, {"code": 400, "type": "InternalServerException", "message": str(e)}) from None
        nested = not isinstance(inputs, str) and self.task == "text-generation"  # a list per input there
        return [[a] for a in answers] if nested else answers

    def _one(self, text: str, parameters: dict) -> dict:
        full_text = parameters.pop("return_full_text", True) if self.task == "text-generation" else False
        answer = self.model.generate(text, **parameters)
        return {self.ANSWER_KEYS[self.task]: text + answer if full_text else answer}


def _check(problems: list[tuple[bool, str]], status: int, body: Callable[[str], dict]) -> None:
    for failed, message in problems:
        if failed:
            raise Refused(status, body(message))


def _sampling(parameters: dict) -> dict:
    """generate kwargs of a TGI/LMI request: sampling when asked for or when a sampling setting is given."""
    names = ("temperature", "top_p", "top_k")
    sample = bool(parameters.get("do_sample")) or any(parameters.get(n) is not None for n in names)
    kwargs = {"do_sample": sample, "repetition_penalty": parameters.get("repetition_penalty") or 1.0}
    if sample:
        kwargs |= {n: parameters[n] for n in names if parameters.get(n) is not None}
        kwargs.setdefault("top_k", 0)  # absent: no top-k (transformers would default to 50)
    return kwargs


def _cut_after(text: str, stop: list[str]) -> str:
    ends = [text.find(s) + len(s) for s in stop if s in text]
    return text[: min(ends)] if ends else text


class TgiDouble:
    """text-generation-inference behind SageMaker's /invocations."""

    MAX_STOP = 4  # the launcher's --max-stop-sequences default

    def __init__(self, model_dir: Path, environment: dict[str, str]):
        self.model = LoadedModel(model_dir)

    def __call__(self, raw: bytes) -> Any:
        inputs, p = _body(raw, 422)

        def not_positive(name: str) -> bool:
            return p.get(name) is not None and p[name] <= 0

        _check([
            (not isinstance(inputs, str), "Failed to deserialize the JSON body: inputs: invalid type"),
            (not_positive("temperature"), "`temperature` must be strictly positive"),
            (not_positive("repetition_penalty"), "`repetition_penalty` must be strictly positive"),
            (p.get("top_p") is not None and not 0 < p["top_p"] < 1, "`top_p` must be > 0.0 and < 1.0"),
            (not_positive("top_k"), "`top_k` must be strictly positive"),
            (p.get("max_new_tokens") == 0, "`max_new_tokens` must be strictly positive"),
            (len(p.get("stop") or []) > self.MAX_STOP,
             f"`stop` supports up to {self.MAX_STOP} stop sequences. Given: {len(p.get('stop') or [])}"),
            (not_positive("truncate"), "`truncate` must be strictly positive"),
        ], 422, lambda message: {"error": message, "error_type": "validation"})
        text = self.model.generate(inputs, max_new_tokens=p.get("max_new_tokens") or 20, truncate=p.get("truncate"),
                                   seed=p.get("seed"), **_sampling(p))
        text = _cut_after(text, p.get("stop") or [])  # TGI keeps the stop sequence in the text
        return [{"generated_text": inputs + text if p.get("return_full_text") else text}]


class LmiDouble:
    """DJL LMI (rolling batch, vLLM) behind SageMaker's /invocations."""

    def __init__(self, model_dir: Path, environment: dict[str, str]):
        self.model = LoadedModel(model_dir)

    def __call__(self, raw: bytes) -> Any:
        inputs, p = _body(raw, 400)
        _check([
            (not isinstance(inputs, str), "inputs must be a string"),
            (p.get("temperature") is not None and p["temperature"] < 0, "temperature must be non-negative"),
            (p.get("top_p") is not None and not 0 < p["top_p"] <= 1, "top_p must be in (0, 1]"),
            (p.get("top_k") is not None and p["top_k"] != -1 and p["top_k"] < 1,
             f"top_k must be -1 (disable), or at least 1, got {p.get('top_k')}"),
            (p.get("max_new_tokens") is not None and p["max_new_tokens"] < 1, "max_new_tokens must be at least 1"),
            (p.get("repetition_penalty") is not None and p["repetition_penalty"] <= 0,
             "repetition_penalty must be greater than zero"),
        ], 400, lambda message: {"code": 400, "error": message})
        if p.get("top_k") == -1:
            p["top_k"] = None
        text = self.model.generate(inputs, max_new_tokens=p.get("max_new_tokens") or 30, seed=p.get("seed"),
                                   **_sampling(p))
        return {"generated_text": _cut_after(text, p.get("stop_sequences") or [])}


# Image repository -> the double of the container it runs (the images real recipes name).
DOUBLES: dict[str, type] = {"huggingface-pytorch-inference": HfDlcDouble,
                            "huggingface-pytorch-tgi-inference": TgiDouble, "djl-inference": LmiDouble}


def container_double(image: str, model_dir: Path, environment: dict[str, str]):
    """The double of the container `image` runs, loaded on `model_dir`; ValueError for an image without one."""
    repository = image.rsplit("/", 1)[-1].split(":", 1)[0]
    if repository not in DOUBLES:
        raise ValueError(f"no container double for image {image!r} (doubles: {', '.join(DOUBLES)})")
    return DOUBLES[repository](model_dir, environment)
