"""Endpoint load: requests/s, tokens/s and latency with 1, 4 and 16 concurrent clients, batching on vs off.

The same requests (validation prompts, greedy, `max_new_tokens` 32, `details` on for the token count) go to the
endpoint server (`python -m llm_finetune.serving.server`) on 127.0.0.1, started twice on the same model: batching
off (`--max-batch-size 1`: one prompt per generate, the server as it was) and on (the defaults). Each client keeps
one HTTP connection and sends requests one after another until the fixed request list is used up; nothing loops
without a bound. Printed per case: requests/s, generated tokens/s (from each answer's details), p50/p95 latency,
errors, and the server's RSS before and after its load. Models: the tiny Llama of recipes/dolly_llama2_tiny.yaml
(text-generation) and, unless --skip-t5, the tiny T5 of the DialogSum recipe (text2text-generation).

Target (issue 7): at 16 clients, batching on serves >= 3x the requests/s of batching off, with p95 no worse.
Speeds on a shared machine vary from run to run: compare the ratios within one run.

    source scripts/env.sh
    python -m benchmarks.endpoint_load [--requests 96] [--clients 1 4 16] [--skip-t5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

from benchmarks.machine import cpu_model

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
DATA = RECIPES.parent.parent / "shared" / "data"
PARAMETERS = {"max_new_tokens": 32, "details": True}
REQUEST_TIMEOUT_S = 120


def llama_case(work: Path, limit: int) -> tuple[str, list[str]]:
    """The tiny Llama and validation prompts (instruction and context, cut to 48 words)."""
    from llm_finetune.data.instructions import instruction_dataset
    from llm_finetune.data.shapes import load_data
    from llm_finetune.models.tiny_causal import build_tiny_causal_for_instructions
    from llm_finetune.recipes import load_recipe
    from llm_finetune.recipes.instruction import InstructionRecipe

    recipe = load_recipe(RECIPES / "dolly_llama2_tiny.yaml", InstructionRecipe, overrides=[
        f"work_dir={work}", f"data.train_uri={DATA / 'dolly' / 'train.jsonl'}",
        f"data.validation_uri={DATA / 'dolly' / 'validation.jsonl'}"])
    validated = load_data(recipe.data, work)
    base = build_tiny_causal_for_instructions(recipe.model.tiny, recipe.data, validated, work / "models")
    examples = instruction_dataset(validated, "validation", recipe.data)
    prompts = [" ".join(e["prompt"][-1]["content"].split()[:48]) for e in examples]
    return str(base), (prompts * (limit // len(prompts) + 1))[:limit]


def t5_case(work: Path, limit: int) -> tuple[str, list[str]]:
    """The tiny T5 (untrained; its speed is what counts) and validation dialogues."""
    from llm_finetune.data.shapes import load_data
    from llm_finetune.data.summarization import summarization_records
    from llm_finetune.models.tiny_t5 import build_tiny_t5_for_summarization
    from llm_finetune.recipes import load_recipe

    dialogsum = DATA / "dialogsum"
    recipe = load_recipe(RECIPES / "dialogsum_flan_t5_tiny.yaml", overrides=[f"work_dir={work}", f"data.train_uri={dialogsum / 'train.jsonl'}",
                                               f"data.validation_uri={dialogsum / 'validation.jsonl'}"])
    validated = load_data(recipe.data, work)
    base = build_tiny_t5_for_summarization(recipe.model.tiny, recipe.data, validated, work / "models")
    dialogues = [r["dialogue"] for r in summarization_records(validated, "validation", recipe.data, limit)]
    return str(base), (dialogues * (limit // len(dialogues) + 1))[:limit]


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def load(port: int, inputs: list[str], clients: int) -> dict:
    """Send every input once, from `clients` threads with a connection each; figures over the whole run."""
    latencies, tokens, errors, lock = [], [], [], threading.Lock()
    todo = iter(range(len(inputs)))

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
        try:
            while True:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                body = json.dumps({"inputs": inputs[i], "parameters": PARAMETERS})
                start = time.perf_counter()
                try:
                    conn.request("POST", "/invocations", body=body, headers={"Content-Type": "application/json"})
                    response = conn.getresponse()
                    answer = json.loads(response.read())
                except (OSError, http.client.HTTPException, ValueError) as e:
                    conn.close()
                    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
                    with lock:
                        errors.append(repr(e))
                    continue
                elapsed = time.perf_counter() - start
                with lock:
                    if response.status == 200:
                        latencies.append(elapsed)
                        tokens.append(answer[0]["details"]["generated_tokens"])
                    else:
                        errors.append(f"{response.status}: {answer}")
        finally:
            conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=REQUEST_TIMEOUT_S * len(inputs))
    wall = time.perf_counter() - start
    return {"requests_s": len(latencies) / wall, "tokens_s": sum(tokens) / wall,
            "p50_ms": 1000 * float(np.percentile(latencies, 50)) if latencies else float("nan"),
            "p95_ms": 1000 * float(np.percentile(latencies, 95)) if latencies else float("nan"),
            "errors": len(errors), "first_error": errors[0] if errors else ""}


def run_model(label: str, model_dir: str, inputs: list[str], client_counts: list[int], work: Path) -> dict:
    from llm_finetune.serving.endpoint import start_local_endpoint, stop_local_endpoint

    results = {}
    for batching, args in (("off", ("--max-batch-size", "1")), ("on", ())):
        handle = start_local_endpoint(model_dir, "127.0.0.1", 0, work / f"{label}-{batching}.log", server_args=args)
        try:
            port = int(handle.url.rsplit(":", 1)[1])
            load(port, inputs[:4], 1)  # warm-up
            before = rss_mb(handle.pid)
            for clients in client_counts:
                r = results[(batching, clients)] = load(port, inputs, clients)
                print(f"{label:<16} {batching:>8} {clients:>7} {r['requests_s']:>9.1f} {r['tokens_s']:>9.0f} "
                      f"{r['p50_ms']:>8.0f} {r['p95_ms']:>8.0f} {r['errors']:>6}", flush=True)
                if r["errors"]:
                    print(f"    first error: {r['first_error'][:200]}")
            print(f"{'':<16} {batching:>8} server RSS {before:.0f} MB before, {rss_mb(handle.pid):.0f} MB after")
        finally:
            stop_local_endpoint(handle)
    most = max(client_counts)
    on, off = results[("on", most)], results[("off", most)]
    ratio = on["requests_s"] / off["requests_s"]
    met = ratio >= 3 and on["p95_ms"] <= off["p95_ms"]
    print(f"{label}: {most} clients, batching on vs off: {ratio:.2f}x requests/s, p95 {on['p95_ms']:.0f} vs "
          f"{off['p95_ms']:.0f} ms -> target (>= 3x, p95 no worse) {'met' if met else 'NOT met'}\n")
    return results


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--requests", type=int, default=96, help="requests per case (the same list each time)")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--skip-t5", action="store_true", help="only the tiny Llama")
    args = parser.parse_args(argv)
    print(f"CPU: {cpu_model()}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; {args.requests} requests per case, "
          f"parameters {PARAMETERS}")
    header = f"{'model':<16} {'batching':>8} {'clients':>7} {'req/s':>9} {'tok/s':>9} {'p50 ms':>8} {'p95 ms':>8} {'errors':>6}"
    with tempfile.TemporaryDirectory(prefix="llmft-endpoint-load-") as tmp:
        work = Path(tmp)
        cases = [("tiny Llama", llama_case)] + ([] if args.skip_t5 else [("tiny T5", t5_case)])
        for label, build in cases:
            model_dir, inputs = build(work, args.requests)
            print(header)
            print("-" * len(header))
            run_model(label, model_dir, inputs, args.clients, work)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
