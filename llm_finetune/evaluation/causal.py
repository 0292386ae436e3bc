"""Causal-LM evaluation: loss and perplexity on response tokens, ROUGE of greedy generations (overall and per
category), base vs fine-tuned comparison, and mixture-of-experts routing shares (did routing collapse?).

Records are chat examples: {"prompt": [messages], "completion": [assistant message] | "text", "category": optional}.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from pathlib import Path

from pydantic import BaseModel

from llm_finetune.errors import DataValidationError, RecordProblem
from llm_finetune.evaluation.comparison import PairedScores, ReleaseEvidence, paired_means
from llm_finetune.evaluation.rouge import ROUGE_KEYS, rouge_per_record, rouge_scores
from llm_finetune.generation import CausalGenerator, GenerationParams

LOSS_KEYS = ("loss", "perplexity")
LOWER_IS_BETTER = frozenset(LOSS_KEYS)
UNCATEGORIZED = "(none)"


def completion_messages(record: dict) -> list[dict]:
    completion = record["completion"]
    return [{"role": "assistant", "content": completion}] if isinstance(completion, str) else completion


def reference_text(record: dict) -> str:
    return completion_messages(record)[-1]["content"]


def check_chat_records(records: list[dict], source: str = "records") -> None:
    """Raise once, naming every record (1-based) whose prompt or completion has the wrong shape."""
    problems = []
    for n, r in enumerate(records, start=1):
        prompt, completion = r.get("prompt"), r.get("completion")
        if not (isinstance(prompt, list) and prompt and all(isinstance(m, dict) and "content" in m for m in prompt)):
            problems.append(RecordProblem(source, n, "prompt", "must be a non-empty list of chat messages "
                                          "{'role': ..., 'content': ...}", unit="record"))
        if not (isinstance(completion, str) or (isinstance(completion, list) and completion
                                                and isinstance(completion[-1], dict) and "content" in completion[-1])):
            problems.append(RecordProblem(source, n, "completion", "must be the reference text or a list with the "
                                          "assistant message", unit="record"))
    if problems:
        raise DataValidationError(problems)


def _perplexity(loss: float) -> float:
    return math.exp(loss) if loss < 700 else math.inf


# ---- loss on response tokens ----

def response_token_ids(tokenizer, record: dict, max_length: int) -> tuple[list[int], list[int]]:
    """(input ids, labels) of prompt + completion rendered with the chat template; labels are -100 on prompt tokens.

    Prompt tokens are found by character offsets into the rendered text, so a token merged across the prompt/response
    boundary counts as prompt, and no tokenization of the prompt alone has to be a prefix of the whole."""
    prompt = tokenizer.apply_chat_template(record["prompt"], tokenize=False, add_generation_prompt=True)
    full = tokenizer.apply_chat_template(record["prompt"] + completion_messages(record), tokenize=False)
    if not full.startswith(prompt):
        raise ValueError("the chat template renders the prompt differently on its own and before a completion; "
                         f"prompt: {prompt[-80:]!r}")
    enc = tokenizer(full, add_special_tokens=False, return_offsets_mapping=True, truncation=True,
                    max_length=max_length)
    ids = enc["input_ids"]
    labels = [-100 if start < len(prompt) else tok for tok, (start, _) in zip(ids, enc["offset_mapping"])]
    return ids, labels


def response_losses(model, tokenizer, records: list[dict], batch_size: int, max_length: int) -> list[tuple[float, int]]:
    """Per record: (summed cross-entropy over its response tokens, number of response tokens), in input order.

    A record whose response is cut away by max_length scores (0.0, 0)."""
    import torch

    rows = [response_token_ids(tokenizer, r, max_length) for r in records]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    order = sorted(range(len(rows)), key=lambda i: len(rows[i][0]), reverse=True)
    results: list[tuple[float, int]] = [(0.0, 0)] * len(rows)
    device = model.device
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        width = max(len(rows[i][0]) for i in idx)
        # Right padding: positions of real tokens start at 0 as when alone; padded labels are -100.
        input_ids = torch.tensor([rows[i][0] + [pad_id] * (width - len(rows[i][0])) for i in idx], device=device)
        labels = torch.tensor([rows[i][1] + [-100] * (width - len(rows[i][1])) for i in idx], device=device)
        mask = torch.tensor([[1] * len(rows[i][0]) + [0] * (width - len(rows[i][0])) for i in idx], device=device)
        with torch.inference_mode():
            # use_cache=False: with a cache, transformers 5 builds the mask differently (STACK-NOTES, packing).
            logits = model(input_ids=input_ids, attention_mask=mask, use_cache=False).logits.float()
        targets = labels[:, 1:]
        token_loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].transpose(1, 2), targets, ignore_index=-100, reduction="none"
        )
        counted = targets != -100
        for row, i in enumerate(idx):
            results[i] = (token_loss[row][counted[row]].sum().item(), int(counted[row].sum()))
    return results


def _loss_metrics(losses: list[tuple[float, int]]) -> dict[str, float]:
    """Token-weighted mean cross-entropy over all response tokens, and its exp."""
    total = sum(s for s, _ in losses)
    tokens = sum(n for _, n in losses)
    if tokens == 0:
        raise ValueError("no response tokens to score: every response was cut by max_length, or all are empty")
    loss = total / tokens
    return {"loss": loss, "perplexity": _perplexity(loss)}


def response_perplexity(model_dir: str | Path, examples: list[dict], batch_size: int = 8,
                        max_length: int = 1024) -> dict[str, float]:
    """{'loss', 'perplexity', 'response_tokens'}: mean cross-entropy over the response tokens of `examples`."""
    check_chat_records(examples)
    generator = CausalGenerator(model_dir)
    losses = response_losses(generator.model, generator.tokenizer, examples, batch_size, max_length)
    return {**_loss_metrics(losses), "response_tokens": sum(n for _, n in losses)}


# ---- instruction evaluation ----

class CategoryEval(BaseModel):
    num_records: int
    response_tokens: int
    metrics: dict[str, float]


class InstructionEval(BaseModel):
    """One model on one set of chat records: loss/perplexity on response tokens and ROUGE of greedy generations,
    overall and per category, with the predictions."""

    model: str
    metrics: dict[str, float]
    per_category: dict[str, CategoryEval]
    predictions: list[str]
    prompts: list[str | list[dict]]
    references: list[str]
    categories: list[str | None]
    num_records: int
    response_tokens: int
    truncated_responses: int  # responses max_length cut away entirely: they add nothing to the loss
    losses: list[tuple[float, int]] = []  # per record: summed response-token loss, response tokens
    rouge_per_record: dict[str, list[float]] = {}
    seconds: float  # scoring and generation, model loading excluded
    records_per_second: float


def _metrics(losses: list[tuple[float, int]], predictions: list[str], references: list[str]) -> dict[str, float]:
    return {**_loss_metrics(losses), **rouge_scores(predictions, references)}


def evaluate_instruction_model(
    model_dir: str | Path,
    records: list[dict],
    batch_size: int = 8,
    max_length: int = 1024,
    generation: GenerationParams | None = None,
) -> InstructionEval:
    """Score `records` with the model in model_dir: loss on the references' tokens, ROUGE of generations (greedy
    unless `generation` says otherwise) against them; the same per record category."""
    if not records:
        raise ValueError("no records to evaluate")
    check_chat_records(records)
    generator = CausalGenerator(model_dir)
    start = time.perf_counter()
    losses = response_losses(generator.model, generator.tokenizer, records, batch_size, max_length)
    predictions = generator.generate([r["prompt"] for r in records], batch_size=batch_size, params=generation)
    seconds = time.perf_counter() - start
    references = [reference_text(r) for r in records]
    categories = [r.get("category") for r in records]

    per_category = {}
    if any(c is not None for c in categories):
        groups: dict[str, list[int]] = defaultdict(list)
        for i, c in enumerate(categories):
            groups[UNCATEGORIZED if c is None else str(c)].append(i)
        for name, idx in sorted(groups.items()):
            group_losses = [losses[i] for i in idx]
            per_category[name] = CategoryEval(
                num_records=len(idx),
                response_tokens=sum(n for _, n in group_losses),
                metrics=_metrics(group_losses, [predictions[i] for i in idx], [references[i] for i in idx]),
            )
    rouge = rouge_per_record(predictions, references)
    return InstructionEval(
        model=str(model_dir),
        metrics={**_loss_metrics(losses), **{k: sum(v) / len(v) for k, v in rouge.items()}},
        losses=losses,
        rouge_per_record=rouge,
        per_category=per_category,
        predictions=predictions,
        prompts=[r["prompt"] for r in records],
        references=references,
        categories=categories,
        num_records=len(records),
        response_tokens=sum(n for _, n in losses),
        truncated_responses=sum(1 for _, n in losses if n == 0),
        seconds=seconds,
        records_per_second=len(records) / seconds if seconds > 0 else 0.0,
    )


class InstructionComparison(BaseModel):
    """Base vs fine-tuned on the same records; gain is fine-tuned minus base (for loss/perplexity, lower is better)."""

    base: InstructionEval
    finetuned: InstructionEval
    num_samples: int = 3

    def metric_rows(self) -> list[dict]:
        return [self._row(k, self.base.metrics, self.finetuned.metrics) for k in (*LOSS_KEYS, *ROUGE_KEYS)]

    def category_rows(self) -> list[dict]:
        rows = []
        for category, tuned in self.finetuned.per_category.items():
            base = self.base.per_category[category]
            for k in ("loss", "perplexity", "rougeL"):
                rows.append({"category": category, "records": tuned.num_records,
                             **self._row(k, base.metrics, tuned.metrics)})
        return rows

    @staticmethod
    def _row(metric: str, base: dict[str, float], tuned: dict[str, float]) -> dict:
        return {
            "metric": metric,
            "base": round(base[metric], 4),
            "fine_tuned": round(tuned[metric], 4),
            "gain": round(tuned[metric] - base[metric], 4),
            "better": "lower" if metric in LOWER_IS_BETTER else "higher",
        }

    def markdown(self) -> str:
        lines = ["| metric | base | fine-tuned | gain | better |", "|---|---|---|---|---|"]
        lines += [f"| {r['metric']} | {r['base']} | {r['fine_tuned']} | {r['gain']:+} | {r['better']} |"
                  for r in self.metric_rows()]
        if self.finetuned.per_category:
            lines += ["", "#### Per category", "",
                      "| category | records | metric | base | fine-tuned | gain |", "|---|---|---|---|---|---|"]
            lines += [f"| {r['category']} | {r['records']} | {r['metric']} | {r['base']} | {r['fine_tuned']} "
                      f"| {r['gain']:+} |" for r in self.category_rows()]
        for i in range(min(self.num_samples, self.finetuned.num_records)):
            messages = self.finetuned.prompts[i]
            if isinstance(messages, str):
                messages = [{"role": "prompt", "content": messages}]
            prompt = "<br>".join(f"*{m['role']}:* {_cell(m['content'], 600)}" for m in messages)
            category = self.finetuned.categories[i]
            lines += [
                "", f"### Sample {i + 1}" + (f" ({category})" if category else ""), f"**Prompt:** {prompt}", "",
                f"- **reference:** {_cell(self.finetuned.references[i])}",
                f"- **base:** {_cell(self.base.predictions[i])}",
                f"- **fine-tuned:** {_cell(self.finetuned.predictions[i])}",
            ]
        return "\n".join(lines)


    def evidence(self) -> ReleaseEvidence:
        samples = [{"prompt": self.finetuned.prompts[i], "reference": self.finetuned.references[i],
                    "base": self.base.predictions[i], "finetuned": self.finetuned.predictions[i]}
                   for i in range(min(self.num_samples, self.finetuned.num_records))]
        per_record = paired_means(self.base.rouge_per_record, self.finetuned.rouge_per_record)
        if self.base.losses and self.finetuned.losses:
            per_record["perplexity"] = PairedScores.perplexity(self.base.losses, self.finetuned.losses)
            per_record["loss"] = PairedScores.perplexity(self.base.losses, self.finetuned.losses, transform="identity")
        return ReleaseEvidence(base_metrics=self.base.metrics, finetuned_metrics=self.finetuned.metrics,
                               samples=samples, report_markdown=self.markdown(),
                               num_records=self.finetuned.num_records, per_record=per_record)


def _cell(text: str, limit: int = 400) -> str:
    # One markdown line: newlines would end the list item, pipes would split a table cell.
    return " ".join(text[:limit].split()).replace("|", "\\|")


def compare(base_eval: InstructionEval, finetuned_eval: InstructionEval, num_samples: int = 3) -> InstructionComparison:
    """Side by side on the same records (checked: same prompts and references)."""
    if base_eval.prompts != finetuned_eval.prompts or base_eval.references != finetuned_eval.references:
        raise ValueError(f"{base_eval.model} and {finetuned_eval.model} were evaluated on different records")
    return InstructionComparison(base=base_eval, finetuned=finetuned_eval, num_samples=num_samples)


# ---- mixture-of-experts routing ----

def expert_routing_shares(model_dir: str | Path, texts: list[str], batch_size: int = 8,
                          max_length: int = 1024) -> list[list[float]]:
    """Per layer, the share of routed (token, expert) assignments each expert receives under top-k routing, over
    the non-padding tokens of `texts`; each row sums to 1 (an expert chosen for every token has 1/k)."""
    import torch

    generator = CausalGenerator(model_dir)
    model, tokenizer = generator.model, generator.tokenizer
    top_k = getattr(model.config, "num_experts_per_tok", None)
    if top_k is None:
        raise ValueError(f"{model_dir} is not a mixture-of-experts model (no num_experts_per_tok in its config)")
    ids = [tokenizer(t, truncation=True, max_length=max_length)["input_ids"] for t in texts]
    counts = None
    for start in range(0, len(ids), batch_size):
        batch = ids[start : start + batch_size]
        width = max(len(x) for x in batch)
        input_ids = torch.tensor([x + [tokenizer.pad_token_id] * (width - len(x)) for x in batch], device=model.device)
        mask = torch.tensor([[1] * len(x) + [0] * (width - len(x)) for x in batch], device=model.device)
        with torch.inference_mode():
            out = model(input_ids=input_ids, attention_mask=mask, output_router_logits=True, use_cache=False)
        real = mask.reshape(-1).bool()
        layer_counts = []
        for logits in out.router_logits:  # one (batch * seq, experts) tensor per layer
            chosen = logits.reshape(-1, logits.shape[-1])[real].topk(top_k, dim=-1).indices
            layer_counts.append(torch.bincount(chosen.reshape(-1), minlength=logits.shape[-1]).double())
        batch_counts = torch.stack(layer_counts)
        counts = batch_counts if counts is None else counts + batch_counts
    if counts is None:
        raise ValueError("no texts to route")
    return (counts / counts.sum(dim=1, keepdim=True)).tolist()


def routing_shares_markdown(base: list[list[float]], finetuned: list[list[float]]) -> str:
    """Layers x experts table, 'base -> fine-tuned' per cell, with each layer's largest share and normalised entropy
    (1 = even routing; log k / log experts = every token sent to the same k experts, a collapse)."""
    _check_same_shape(base, finetuned)
    experts = len(base[0])
    header = "| layer | " + " | ".join(f"expert {e}" for e in range(experts)) + " | max share | entropy |"
    lines = [
        f"Share of routed tokens per expert, base -> fine-tuned (even routing: {1 / experts:.3f} each).", "",
        header, "|" + "---|" * (experts + 3),
    ]
    for layer, (b, f) in enumerate(zip(base, finetuned)):
        cells = " | ".join(f"{x:.3f} -> {y:.3f}" for x, y in zip(b, f))
        lines.append(f"| {layer} | {cells} | {max(b):.3f} -> {max(f):.3f} "
                     f"| {_entropy(b):.2f} -> {_entropy(f):.2f} |")
    return "\n".join(lines)


def _check_same_shape(base: list[list[float]], finetuned: list[list[float]]) -> None:
    shape = (len(base), len(base[0]) if base else 0)
    other = (len(finetuned), len(finetuned[0]) if finetuned else 0)
    if shape != other or 0 in shape:
        raise ValueError(f"routing shares differ in shape (layers, experts): base {shape}, fine-tuned {other}")


def _entropy(shares: list[float]) -> float:
    return -sum(s * math.log(s) for s in shares if s > 0) / math.log(len(shares)) if len(shares) > 1 else 1.0


def routing_heatmap_png(base: list[list[float]], finetuned: list[list[float]], path: str | Path) -> Path:
    """Two heat maps (layers x experts), base and fine-tuned, on one colour scale; written to `path`."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    # Figure + Agg canvas, not pyplot: no global backend switch, safe in workers without a display.
    _check_same_shape(base, finetuned)
    layers, experts = len(base), len(base[0])
    fig = Figure(figsize=(2 + 1.6 * experts, 1 + 0.5 * layers), layout="constrained")
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=True)
    vmax = max(max(map(max, base)), max(map(max, finetuned)))
    for ax, shares, title in zip(axes, (base, finetuned), ("base", "fine-tuned")):
        image = ax.imshow(shares, vmin=0, vmax=vmax, cmap="viridis", aspect="auto")
        ax.set_title(title)
        ax.set_xlabel("expert")
        ax.set_xticks(range(experts))
        ax.set_yticks(range(layers))
        for layer in range(layers):
            for e in range(experts):
                value = shares[layer][e]
                ax.text(e, layer, f"{value:.2f}", ha="center", va="center", fontsize=8,
                        color="black" if value > 0.6 * vmax else "white")
    axes[0].set_ylabel("layer")
    fig.suptitle(f"Share of routed tokens per expert (even routing: {1 / experts:.2f})")
    fig.colorbar(image, ax=list(axes), label="share of routed tokens")
    path = Path(path)
    fig.savefig(path, dpi=100)
    return path
