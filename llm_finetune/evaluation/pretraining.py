"""Pretraining evaluation: perplexity of held-out documents packed into blocks (in and out of domain), two models
side by side (champion vs challenger, or random init vs trained) as a table and a plot, and Python completions that
count only when they add a statement to the function body and parse."""

from __future__ import annotations

import ast
import math
from pathlib import Path

from pydantic import BaseModel

from llm_finetune.data.raw_text import IN_DOMAIN, OUT_OF_DOMAIN, continuation_prompts, pack_blocks, tokenize_documents
from llm_finetune.evaluation.comparison import PairedScores, ReleaseEvidence
from llm_finetune.generation import CausalGenerator, GenerationParams
from llm_finetune.recipes import PerplexityEvaluationParams


def block_losses(model, blocks: list[list[int]], batch_size: int) -> list[tuple[float, int]]:
    """Per block, in order: (summed cross-entropy, predicted tokens); each block is scored alone from its first
    token, batched with blocks of the same length (no padding). A one-token block predicts nothing: (0.0, 0)."""
    import torch

    results: list[tuple[float, int]] = [(0.0, 0)] * len(blocks)
    by_length: dict[int, list[int]] = {}
    for i, block in enumerate(blocks):
        if len(block) > 1:
            by_length.setdefault(len(block), []).append(i)
    for group in by_length.values():
        for start in range(0, len(group), batch_size):
            idx = group[start : start + batch_size]
            ids = torch.tensor([blocks[i] for i in idx], device=model.device)
            with torch.inference_mode():
                # use_cache=False: a cache changes how transformers 5 builds the mask (STACK-NOTES, packing).
                logits = model(input_ids=ids, attention_mask=torch.ones_like(ids), use_cache=False).logits.float()
            loss = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
            for row, i in enumerate(idx):
                results[i] = (loss[row].sum().item(), ids.shape[1] - 1)
    return results


class SetPerplexity(BaseModel):
    loss: float
    perplexity: float
    tokens: int
    documents: int
    blocks: list[tuple[float, int]] = []  # per packed block: summed loss, predicted tokens (the gate resamples them)

    @classmethod
    def of(cls, blocks: list[tuple[float, int]], documents: int) -> SetPerplexity:
        total, tokens = sum(s for s, _ in blocks), sum(n for _, n in blocks)
        return cls(loss=total / tokens if tokens else math.nan, perplexity=_perplexity(total, tokens), tokens=tokens,
                   documents=documents, blocks=blocks)


def _perplexity(total: float, tokens: int) -> float:
    if tokens == 0:
        raise ValueError("no tokens to score")
    return math.exp(total / tokens) if total / tokens < 700 else math.inf


def held_out_perplexity(model_dir: str | Path, sets: dict[str, list[str]], block_size: int,
                        batch_size: int = 8) -> dict[str, SetPerplexity]:
    """Per named set of documents: mean next-token loss and perplexity over its packed blocks (EOS between
    documents, the last shorter block kept), plus 'out_of_domain' over every set but 'in_domain' together."""
    generator = CausalGenerator(model_dir)
    results, ood_blocks, ood_docs = {}, [], 0
    for name, texts in sets.items():
        blocks = pack_blocks(tokenize_documents(generator.tokenizer, texts), block_size,
                             generator.tokenizer.eos_token_id, keep_remainder=True)
        results[name] = SetPerplexity.of(block_losses(generator.model, blocks, batch_size), len(texts))
        if name != IN_DOMAIN:
            ood_blocks, ood_docs = ood_blocks + results[name].blocks, ood_docs + len(texts)
    if any(n for _, n in ood_blocks):
        results[OUT_OF_DOMAIN] = SetPerplexity.of(ood_blocks, ood_docs)
    return results


def perplexity_metrics(sets: dict[str, SetPerplexity]) -> dict[str, float]:
    return {f"perplexity_{name}": s.perplexity for name, s in sets.items()}


def paired_perplexities(base: dict[str, SetPerplexity], trained: dict[str, SetPerplexity]) -> dict[str, PairedScores]:
    """Per set both models scored on the same blocks (same tokenizer): the blocks' paired losses."""
    return {f"perplexity_{name}": PairedScores.perplexity(b.blocks, trained[name].blocks)
            for name, b in base.items()
            if name in trained and b.blocks and len(b.blocks) == len(trained[name].blocks)
            and [n for _, n in b.blocks] == [n for _, n in trained[name].blocks]}


# ---- Python completions ----

def truncate_at_next_statement(code: str) -> str:
    """A completion cut where the function ends: at the first line after the first one that starts at column 0
    (the next top-level statement, as CodeParrot/HumanEval stop sequences do), without trailing blank lines."""
    lines = code.split("\n")
    for i, line in enumerate(lines[1:], start=1):
        if line and not line[0].isspace():
            lines = lines[:i]
            break
    return "\n".join(lines).rstrip()


def _tree(code: str) -> ast.Module | None:
    try:
        return ast.parse(code)
    except (SyntaxError, ValueError):  # ValueError: source with NUL bytes
        return None


def parses(code: str) -> bool:
    return _tree(code) is not None


def _placeholder(node: ast.stmt) -> bool:
    # `pass`, `...` or a bare string: fills a body without doing anything.
    return isinstance(node, ast.Pass) or (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant))


def added_statements(prompt: str, program: str) -> int:
    """Statements of `program` (the prompt plus its cut completion) that start after the prompt, placeholders
    (`pass`, `...`, a string) left out; 0 when the program does not parse."""
    tree = _tree(program)
    if tree is None:
        return 0
    end = (prompt.count("\n") + 1, len(prompt.rsplit("\n", 1)[-1].encode()))  # col_offset counts UTF-8 bytes
    return sum(isinstance(node, ast.stmt) and not _placeholder(node) and (node.lineno, node.col_offset) >= end
               for node in ast.walk(tree))


def _added_lines(prompt: str, program: str) -> int:
    """Non-blank lines of the program after the prompt."""
    added = program[len(prompt):] if program.startswith(prompt) else ""
    return sum(1 for line in added.split("\n") if line.strip())


class CompletionEval(BaseModel):
    """Completions of fixed Python prompts: the prompt plus its completion, cut at the next top-level statement. A
    completion counts when the program parses and the completion adds at least one statement (the prompts, a
    signature and docstring, parse alone)."""

    model: str
    prompts: list[str]
    completions: list[str]  # prompt + generated text, truncated
    parsed: list[bool]

    @property
    def counted(self) -> list[int]:
        """Per prompt, 1 when the completion counts, else 0 (the values the mean `body_parse_rate` resamples)."""
        return [int(ok and added_statements(p, c) > 0) for p, c, ok in zip(self.prompts, self.completions, self.parsed)]

    @property
    def added_lines(self) -> list[int]:
        """Per prompt, the non-blank lines a counted completion adds (0 for one that does not count)."""
        return [_added_lines(p, c) if n else 0 for p, c, n in zip(self.prompts, self.completions, self.counted)]

    def per_record(self) -> dict[str, list[float]]:
        return {"body_parse_rate": [float(n) for n in self.counted],
                "mean_added_lines": [float(n) for n in self.added_lines]}

    def metrics(self) -> dict[str, float]:
        """Each metric the mean of its per-prompt values."""
        return {key: sum(values) / len(values) for key, values in self.per_record().items()}


def completion_eval(model: str, prompts: list[str], raw_completions: list[str]) -> CompletionEval:
    """Each prompt plus its raw completion, cut at the next top-level statement, and whether that parses."""
    programs = [truncate_at_next_statement(p + c) for p, c in zip(prompts, raw_completions, strict=True)]
    return CompletionEval(model=model, prompts=prompts, completions=programs, parsed=[parses(c) for c in programs])


def complete_code(model_dir: str | Path, prompts: list[str], generation: GenerationParams,
                  batch_size: int = 8) -> CompletionEval:
    """Each prompt continued (the raw text, not stripped: indentation is code) and cut at the next top-level
    statement."""
    generator = CausalGenerator(model_dir)
    done = generator.complete(generator.prompt_ids(prompts, generation.max_prompt_tokens), generation,
                              batch_size=batch_size)
    return completion_eval(str(model_dir), prompts, [c.raw_text for c in done])


# ---- two models side by side ----

class PretrainComparison(BaseModel):
    """The starting model ('base': the champion, or the random init) and the trained one on the same held-out sets;
    change is relative ((trained - base) / base; lower perplexity is better)."""

    base_label: str
    base: dict[str, SetPerplexity]
    trained: dict[str, SetPerplexity]
    base_extra: dict[str, float] = {}
    trained_extra: dict[str, float] = {}  # e.g. body_parse_rate (higher is better)
    per_record: dict[str, PairedScores] = {}  # of the extra metrics, where each is a mean over records
    samples: list[dict] = []

    def with_extra(self, base: dict[str, float], trained: dict[str, float],
                   per_record: dict[str, PairedScores] | None = None) -> PretrainComparison:
        """The comparison with more metrics of both models, and their per-record values where there are."""
        return self.model_copy(update={"base_extra": {**self.base_extra, **base},
                                       "trained_extra": {**self.trained_extra, **trained},
                                       "per_record": {**self.per_record, **(per_record or {})}})

    def with_completions(self, base: CompletionEval, trained: CompletionEval) -> PretrainComparison:
        """The comparison with both models' code-completion metrics, per prompt too."""
        paired = {k: PairedScores.means(v, trained.per_record()[k]) for k, v in base.per_record().items()}
        return self.with_extra(base.metrics(), trained.metrics(), paired)

    def metrics(self, which: str) -> dict[str, float]:
        sets, extra = (self.base, self.base_extra) if which == "base" else (self.trained, self.trained_extra)
        return {**perplexity_metrics(sets), **extra}

    def rows(self) -> list[dict]:
        rows = []
        for name, base in self.base.items():
            trained = self.trained[name]
            rows.append({"set": name, "documents": base.documents, "tokens": base.tokens,
                         self.base_label: round(base.perplexity, 3), "challenger": round(trained.perplexity, 3),
                         "change": f"{(trained.perplexity - base.perplexity) / base.perplexity:+.2%}"})
        for key, value in self.trained_extra.items():
            rows.append({"set": key, "documents": None, "tokens": None, self.base_label: self.base_extra.get(key),
                         "challenger": round(value, 4), "change": None})
        return rows

    def markdown(self) -> str:
        lines = [f"| held-out set | documents | tokens | {self.base_label} | challenger | change |",
                 "|---|---|---|---|---|---|"]
        for r in self.rows():
            lines.append(f"| {r['set']} | {r['documents'] or ''} | {r['tokens'] or ''} | {r[self.base_label]} | "
                         f"{r['challenger']} | {r['change'] or ''} |")
        for i, s in enumerate(self.samples, start=1):
            lines += ["", f"### Sample {i}", "```", s["prompt"], "```",
                      f"- **{self.base_label}:** `{_one_line(s['base'])}`",
                      f"- **challenger:** `{_one_line(s['challenger'])}`"]
        return "\n".join(lines)

    def evidence(self) -> ReleaseEvidence:
        return ReleaseEvidence(base_metrics=self.metrics("base"), finetuned_metrics=self.metrics("trained"),
                               samples=[{"prompt": s["prompt"], "base": s["base"], "finetuned": s["challenger"]}
                                        for s in self.samples],
                               report_markdown=self.markdown(), num_records=self.trained[IN_DOMAIN].documents,
                               per_record={**paired_perplexities(self.base, self.trained), **self.per_record})

    def plot_png(self, path: str | Path) -> Path:
        """Grouped bars: perplexity per held-out set, base vs trained (log scale when they differ a lot)."""
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        names = list(self.base)
        fig = Figure(figsize=(1.8 + 1.4 * len(names), 3.6), layout="constrained")
        FigureCanvasAgg(fig)
        ax = fig.subplots()
        width = 0.38
        for offset, (label, sets) in ((-width / 2, (self.base_label, self.base)),
                                      (width / 2, ("challenger", self.trained))):
            values = [sets[n].perplexity for n in names]
            bars = ax.bar([i + offset for i in range(len(names))], values, width, label=label)
            ax.bar_label(bars, fmt="%.1f", fontsize=7)
        values = [s.perplexity for s in (*self.base.values(), *self.trained.values())]
        if max(values) / max(min(values), 1e-9) > 20:
            ax.set_yscale("log")
        ax.set_xticks(range(len(names)), names)
        ax.set_ylabel("perplexity (lower is better)")
        ax.set_title("Held-out perplexity per set")
        ax.margins(y=0.15)
        ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.1), ncol=2, frameon=False)
        path = Path(path)
        fig.savefig(path, dpi=100)
        return path


def compare_held_out(base_model: str, trained_model: str, sets: dict[str, list[str]], block_size: int,
                     params: PerplexityEvaluationParams, base_label: str) -> PretrainComparison:
    """Both models' perplexity on the same held-out sets, and both continuing the first in-domain documents."""
    prompts = continuation_prompts(sets[IN_DOMAIN][: params.num_samples_shown], trained_model,
                                   params.sample_prompt_tokens)
    continued = [CausalGenerator(m).generate(prompts, batch_size=params.batch_size, params=params.generation)
                 if prompts else [] for m in (base_model, trained_model)]
    return PretrainComparison(
        base_label=base_label,
        base=held_out_perplexity(base_model, sets, block_size, params.batch_size),
        trained=held_out_perplexity(trained_model, sets, block_size, params.batch_size),
        samples=[{"prompt": p, "base": b, "challenger": c} for p, b, c in zip(prompts, *continued)],
    )


def _one_line(text: str, limit: int = 300) -> str:
    return " ".join(text[:limit].split()).replace("`", "'")
