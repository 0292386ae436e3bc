"""Where padding-free packing loses time on CPU: one training step (forward + backward) of the ~27M Llama of
recipes/dolly_llama2_27m.yaml on the same number of tokens, laid out three ways, in one run:

a) 4 rows x 512 tokens, causal attention (the padded layout, as if every token were real);
b) 1 row x 2048 tokens holding 4 x 512-token records, packed position_ids (TRL's padding-free collator): with SDPA
   the model builds a 2048 x 2048 block-diagonal mask and attends over all of it;
c) 1 row x 2048 tokens with plain causal attention (the cost of a 2048-token row without the mask);
d) 4 rows x 512 tokens, each holding 4 x 128-token records with restarting position_ids and no attention mask
   (this project's row-wise packing on CPU): the model builds one 512 x 512 block-diagonal mask per row.

Milliseconds per step and tokens/s; a/b shows what the flattened packed layout costs per token against rows.

    source scripts/env.sh
    python -m benchmarks.packed_attention [--steps 5]
"""

from __future__ import annotations

import argparse
import time

from benchmarks.machine import cpu_model


def main() -> None:
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=8000, hidden_size=512, num_hidden_layers=6, num_attention_heads=8,
                         num_key_value_heads=8, intermediate_size=1376, max_position_embeddings=2048,
                         attn_implementation="sdpa")
    model = LlamaForCausalLM(config)
    model.config.use_cache = False
    rows = torch.randint(0, 8000, (4, 512))
    flat = rows.reshape(1, 2048)
    layouts = {
        "a) 4 x 512 rows, causal": {"input_ids": rows},
        "b) 1 x 2048 packed (position_ids)": {"input_ids": flat, "position_ids": torch.arange(512).repeat(4)[None]},
        "c) 1 x 2048, causal": {"input_ids": flat},
        "d) 4 x 512 rows packed (position_ids)": {"input_ids": rows,
                                                 "position_ids": torch.arange(128).repeat(4)[None].expand(4, -1)},
    }
    print(f"CPU: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads; ~27M Llama, "
          f"2048 tokens a step, {args.steps} steps after 1 warm-up\n")
    print(f"{'layout':<36} {'ms/step':>9} {'tokens/s':>9} {'vs a':>6}")
    base = None
    for name, batch in layouts.items():
        times = []
        for step in range(args.steps + 1):
            start = time.perf_counter()
            model(**batch, labels=batch["input_ids"]).loss.backward()
            model.zero_grad(set_to_none=True)
            if step:
                times.append(time.perf_counter() - start)
        seconds = sorted(times)[len(times) // 2]
        base = base or seconds
        print(f"{name:<36} {1000 * seconds:>9.0f} {2048 / seconds:>9.0f} {base / seconds:>5.2f}x")


if __name__ == "__main__":
    main()
