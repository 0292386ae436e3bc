"""The LM head of TRL's SFT loss on a CPU: only the labelled positions, projected as one plain matmul.

TRL 1.16's fused LM head (`add_fused_lm_head`) scores tokens with `ChunkedLogProbFunction`: vocabulary tiles folded
into online-logsumexp statistics, recomputed in the backward pass so the `[N, V]` logits never exist at once. That
saves memory where the logits are large (long GPU batches, 100k+ vocabularies); on a CPU without Triton the tiles are
folded by Python-driven torch ops and the projection runs twice, which made a training step 1.35x the time of the
same step with plain logits and `cross_entropy` (tiny Llama, packed rows, LoRA; benchmarks/sft_throughput.py).

`use_labelled_logits_on_cpu()` installs both halves, idempotently:
- TRL projects every position on devices without Triton (a varying number of positions recompiles XLA graphs, which
  an eager CPU does not have); here only the labelled ones are (the responses, under completion-only loss).
- `PlainOrChunkedLogProbs` takes the place of TRL's function: on a CPU, while the labelled positions' fp32 logits
  fit in `PLAIN_LOGITS_BUDGET_BYTES`, log-probabilities come from plain logits (one softmax for the forward, the
  logging statistics and the backward); elsewhere it is TRL's own function, unchanged. The outputs are the same
  fields; the logging-only ones (entropy, top-1) carry no gradient, which SFT never asks for.

Both hook private names of `trl.trainer.utils` that TRL reads at every call (`_use_triton`,
`_ChunkedLogProbFunction`); tests/llm_finetune/training/test_causal_lm.py fails if either moves.
"""

from __future__ import annotations

import functools

PLAIN_LOGITS_BUDGET_BYTES = 512 * 2**20  # fp32 logits of the labelled positions; above it TRL's chunked function


def fits_plain(hidden, weight) -> bool:
    """Whether plain logits serve this call: a CPU tensor whose labelled positions' fp32 logits fit the budget."""
    return hidden.device.type == "cpu" and hidden.shape[0] * weight.shape[0] * 4 <= PLAIN_LOGITS_BUDGET_BYTES


def plain_log_probs(hidden, weight, bias, targets, temperature: float, final_logit_softcapping: float | None = None,
                    logit_scale: float = 1.0, outputs: tuple[str, ...] = ("log_probs",)):
    """`ChunkedLogProbFunction`'s outputs from `[N, V]` logits: (log_probs, entropy, log_sum_sq_probs, mean_logits,
    is_top1), the fields not in `outputs` None. The logits are transformed as TRL's kernel does (scale, softcap,
    temperature) in fp32; log_probs carries the gradient (`TargetLogProbs`)."""
    import torch
    import torch.nn.functional as F

    z = F.linear(hidden, weight, bias).float() * logit_scale  # the matmul in the autocast dtype, as TRL's tiles
    if final_logit_softcapping is not None:
        z = final_logit_softcapping * torch.tanh(z / final_logit_softcapping)
    if temperature != 1.0:
        z = z / temperature
    log_probs, entropy, log_sum_sq_probs, is_top1 = target_log_probs_function().apply(
        z, targets, "entropy" in outputs, "log_sum_sq_probs" in outputs, "is_top1" in outputs)
    mean_logits = z.detach().mean(-1) if "mean_logits" in outputs else None
    return (log_probs, entropy if "entropy" in outputs else None,
            log_sum_sq_probs if "log_sum_sq_probs" in outputs else None, mean_logits,
            is_top1 if "is_top1" in outputs else None)


@functools.cache
def target_log_probs_function():
    """`TargetLogProbs.apply(z, targets, entropy, log_sum_sq_probs, is_top1)` -> (log p(target), entropy,
    log sum p^2, top-1 flags), the statistics empty where not asked. One softmax serves the forward, the statistics
    and the backward: it is kept for `d log p_t / dz = onehot(t) - p`, where autograd over `log_softmax` and `gather`
    would save log p, exponentiate it again and scatter a zero `[N, V]` tensor."""
    import torch

    class TargetLogProbs(torch.autograd.Function):
        @staticmethod
        def forward(ctx, z, targets, entropy: bool, log_sum_sq_probs: bool, is_top1: bool):
            log_p = z.log_softmax(-1)
            chosen = log_p.gather(-1, targets[:, None]).squeeze(-1)
            p = log_p.exp()
            none = z.new_empty(0)
            stats = (-torch.linalg.vecdot(p, log_p) if entropy else none,
                     (2 * log_p).logsumexp(-1) if log_sum_sq_probs else none,
                     z.argmax(-1) == targets if is_top1 else none.bool())  # the first maximum, as TRL counts
            ctx.save_for_backward(p, targets)
            ctx.mark_non_differentiable(*stats)
            return (chosen, *stats)

        @staticmethod
        def backward(ctx, grad, *_):
            p, targets = ctx.saved_tensors
            grad_z = p * -grad[:, None]  # not in place: a second backward (retain_graph) reads p again
            grad_z.scatter_add_(-1, targets[:, None], grad[:, None])
            return grad_z, None, None, None, None

    return TargetLogProbs


class PlainOrChunkedLogProbs:
    """A drop-in for TRL's `ChunkedLogProbFunction` (its `.apply` arguments and outputs): plain logits where they fit
    on a CPU, else TRL's function."""

    def __init__(self, chunked):
        self.chunked = chunked

    def apply(self, hidden, weight, bias, targets, temperature, chunk_size, final_logit_softcapping=None,
              logit_scale=1.0, outputs=("log_probs",)):
        if not fits_plain(hidden, weight):
            return self.chunked.apply(hidden, weight, bias, targets, temperature, chunk_size, final_logit_softcapping,
                                      logit_scale, outputs)
        return plain_log_probs(hidden, weight, bias, targets, temperature, final_logit_softcapping, logit_scale,
                               outputs)


def use_labelled_logits_on_cpu() -> None:
    """Score only the labelled positions on a CPU, with plain logits where they fit (module docstring)."""
    import trl.trainer.utils as trl_utils

    scores_all_on_cpu = trl_utils._use_triton
    if not getattr(scores_all_on_cpu, "compact_on_cpu", False):
        def compact(device) -> bool:
            return device.type == "cpu" or scores_all_on_cpu(device)

        compact.compact_on_cpu = True
        trl_utils._use_triton = compact
    if not isinstance(trl_utils._ChunkedLogProbFunction, PlainOrChunkedLogProbs):
        trl_utils._ChunkedLogProbFunction = PlainOrChunkedLogProbs(trl_utils._ChunkedLogProbFunction)
