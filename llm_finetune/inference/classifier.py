"""Batched text classification from a saved model directory: used by evaluation, the MLflow pyfunc and the endpoint.
Texts are cut exactly as in training (the truncation rule saved beside the model)."""

from __future__ import annotations

from pathlib import Path

from llm_finetune.data.classification import TextEncoder, TruncationRule
from llm_finetune.kinds import serving_setting


def saved_truncation(model_dir: str | Path) -> TruncationRule | None:
    settings = serving_setting(model_dir, "truncation")
    return TruncationRule(**settings) if settings else None


class TextClassifier:
    """A sequence classifier. `head` (num_labels, id2label, ...) and `seed` build a new, seeded head on a base model
    that has none (to score a base model before fine-tuning); a trained model brings its own."""

    def __init__(self, model_dir: str | Path, rule: TruncationRule | None = None, *, head: dict | None = None,
                 seed: int = 0, device: str | None = None):
        import torch
        import transformers
        from transformers import AutoModelForSequenceClassification

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.tokenizer = load_classifier_tokenizer(str(model_dir))
        rule = rule or saved_truncation(model_dir)
        if rule is None:
            raise ValueError(f"{model_dir} has no saved truncation rule: pass one")
        self.encoder = TextEncoder(self.tokenizer, rule)
        torch.manual_seed(seed)
        transformers.logging.set_verbosity_error()  # a base model's new head is reported as missing weights
        kwargs = {**(head or {}), "pad_token_id": self.tokenizer.pad_token_id}
        self.model = AutoModelForSequenceClassification.from_pretrained(model_dir, **kwargs).to(self.device).eval()
        self.labels = [self.model.config.id2label[i] for i in range(self.model.config.num_labels)]

    def probabilities(self, texts: list[str], batch_size: int = 16) -> list[list[float]]:
        """Class probabilities per text, in input order; batches of similar length (less padding)."""
        import torch

        encoded = self.encoder.encode(texts)["input_ids"]
        order = sorted(range(len(texts)), key=lambda i: len(encoded[i]), reverse=True)
        probs: list[list[float]] = [[] for _ in texts]
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            batch = self.tokenizer.pad({"input_ids": [encoded[i] for i in idx]}, return_tensors="pt").to(self.device)
            with torch.inference_mode():
                p = torch.softmax(self.model(**batch).logits.float(), dim=-1)
            for i, row in zip(idx, p.tolist()):
                probs[i] = row
        return probs

    def classify(self, texts: list[str], batch_size: int = 16, top_k: int | None = 1) -> list[list[dict]]:
        """Per text, the top_k (None: all) {'label', 'score'} pairs, best first, as the Hugging Face pipeline."""
        results = []
        for row in self.probabilities(texts, batch_size):
            ranked = sorted(zip(self.labels, row), key=lambda lp: lp[1], reverse=True)[:top_k]
            results.append([{"label": label, "score": score} for label, score in ranked])
        return results


def load_classifier_tokenizer(name_or_path: str):
    """The tokenizer, right-padded, with a pad token: GPT-2 has none, so it pads with EOS (as the Hugging Face
    text-classification example does; the classifier reads the last non-pad token)."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(name_or_path)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token
    tokenizer.padding_side = "right"
    return tokenizer
