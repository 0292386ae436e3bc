"""Endpoint load: requests/s, tokens/s and latency at several client counts, for two comparisons.

`--compare peer` (issue 22, the default): our endpoint server (`python -m llm_finetune.serving.server`), with the
continuous scheduler (its own decode forward, and transformers' forward: `--decode-forward transformers`) and with
dynamic batches, against `transformers serve --continuous-batching`
(benchmarks/transformers_serve.py) on the same model folder, at 1, 16 and 64 clients. Every server gets the same
greedy requests: validation prompts of the tiny Llama of recipes/dolly_llama2_tiny.yaml, each with max_new_tokens
drawn from {8, 16, 32, 64} (fixed seed); repetition penalty 1.0 (transformers serve drops it under continuous
batching). Target: ours >= 1.5x the peer's requests/s at 16 and 64 clients, with p95 no worse.

`--compare batching` (issue 7): batching off (`--max-batch-size 1`) vs on (dynamic batches), and the continuous
scheduler, max_new_tokens 32 and default parameters, at 1, 4 and 16 clients; the tiny Llama and, unless --skip-t5,
the tiny T5 of the DialogSum recipe. Target: at 16 clients batching on >= 3x off, p95 no worse.

Each client keeps one HTTP connection and sends requests one after another until the fixed request list is used up;
nothing loops without a bound. Printed per case: requests/s, generated tokens/s (from each answer), p50/p95
latency, errors, and the server's RSS before and after its load. Speeds on a shared machine vary from run to run:
compare the ratios within one run.

    source scripts/env.sh
    python -m benchmarks.endpoint_load [--compare peer|batching] [--requests 96] [--clients 1 16 64] [--skip-t5]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import re
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.machine import cpu_model
from llm_finetune.serving.endpoint import EndpointHandle, start_local_endpoint, stop_local_endpoint

RECIPES = Path(__file__).resolve().parent.parent / "recipes"
DATA = RECIPES.parent.parent / "shared" / "data"
NEW_TOKENS = (8, 16, 32, 64)
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


@dataclass(frozen=True)
class Target:
    """How to ask one server: its route, request i's body, and the generated token count in an answer."""

    path: str
    body: Callable[[int], dict]
    tokens: Callable[[object], int]


def invocations(inputs: list[str], max_new: list[int], extra: dict) -> Target:
    """Our endpoint's /invocations, `details` on for the token count."""
    return Target("/invocations", lambda i: {"inputs": inputs[i], "parameters": {
        "max_new_tokens": max_new[i], "details": True, **extra}},
        lambda answer: answer[0]["details"]["generated_tokens"])


def completions(inputs: list[str], max_new: list[int], model_dir: str) -> Target:
    """OpenAI /v1/completions (transformers serve), greedy."""
    return Target("/v1/completions", lambda i: {"model": model_dir, "prompt": inputs[i], "max_tokens": max_new[i],
                                                "temperature": 0},
                  lambda answer: answer["usage"]["completion_tokens"])


def load(port: int, target: Target, count: int, clients: int) -> dict:
    """Send requests 0..count-1 once, from `clients` threads with a connection each; figures over the whole run."""
    latencies, tokens, errors, lock = [], [], [], threading.Lock()
    todo = iter(range(count))

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT_S)
        try:
            while True:
                with lock:
                    i = next(todo, None)
                if i is None:
                    return
                start = time.perf_counter()
                try:
                    conn.request("POST", target.path, body=json.dumps(target.body(i)),
                                 headers={"Content-Type": "application/json"})
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
                        tokens.append(target.tokens(answer))
                    else:
                        errors.append(f"{response.status}: {answer}")
        finally:
            conn.close()

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=REQUEST_TIMEOUT_S * count)
    wall = time.perf_counter() - start
    return {"requests_s": len(latencies) / wall, "tokens_s": sum(tokens) / wall,
            "p50_ms": 1000 * float(np.percentile(latencies, 50)) if latencies else float("nan"),
            "p95_ms": 1000 * float(np.percentile(latencies, 95)) if latencies else float("nan"),
            "errors": len(errors), "first_error": errors[0] if errors else ""}


HEADER = (f"{'model':<12} {'server':<26} {'clients':>7} {'req/s':>9} {'tok/s':>9} {'p50 ms':>8} {'p95 ms':>8} "
          f"{'errors':>6}")


def run_server(label: str, server: str, handle: EndpointHandle, target: Target, count: int,
               client_counts: list[int]) -> dict:
    """Warm up, then load the running server at each client count; prints a row per count. Stops the server."""
    results = {}
    try:
        port = int(handle.url.rsplit(":", 1)[1])
        load(port, target, 4, 1)  # warm-up
        before = rss_mb(handle.pid)
        for clients in client_counts:
            r = results[clients] = load(port, target, count, clients)
            print(f"{label:<12} {server:<26} {clients:>7} {r['requests_s']:>9.1f} {r['tokens_s']:>9.0f} "
                  f"{r['p50_ms']:>8.0f} {r['p95_ms']:>8.0f} {r['errors']:>6}", flush=True)
            if r["errors"]:
                print(f"    first error: {r['first_error'][:200]}")
        print(f"{'':<12} {server:<26} server RSS {before:.0f} MB before, {rss_mb(handle.pid):.0f} MB after")
    finally:
        stop_local_endpoint(handle)
    return results


def ours(model_dir: str, name: str, work: Path, args: tuple[str, ...]) -> EndpointHandle:
    return start_local_endpoint(model_dir, "127.0.0.1", 0, work / f"{name}.log", server_args=args)


def verdict(what: str, clients: int, mine: dict, theirs: dict, target: float) -> None:
    ratio = mine["requests_s"] / theirs["requests_s"]
    met = ratio >= target and mine["p95_ms"] <= theirs["p95_ms"]
    print(f"{what}, {clients} clients: {ratio:.2f}x requests/s, p95 {mine['p95_ms']:.0f} vs {theirs['p95_ms']:.0f} ms "
          f"-> target (>= {target:g}x, p95 no worse) {'met' if met else 'NOT met'}")


def compare_batching(label: str, model_dir: str, inputs: list[str], client_counts: list[int], work: Path) -> None:
    """Issue 7: dynamic batches off vs on (max_new_tokens 32 for every request), and the continuous scheduler."""
    target = invocations(inputs, [32] * len(inputs), {})
    servers = {"batching off": ("--max-batch-size", "1", "--scheduler", "batches"),
               "batching on": ("--scheduler", "batches"), "continuous": ("--scheduler", "continuous")}
    results = {name: run_server(label, name, ours(model_dir, f"{label}-{name}", work, args), target, len(inputs),
                                client_counts) for name, args in servers.items()}
    most = max(client_counts)
    verdict(f"{label}: batching on vs off", most, results["batching on"][most], results["batching off"][most], 3)
    print()


def compare_peer(model_dir: str, inputs: list[str], client_counts: list[int], work: Path, seed: int) -> None:
    """Issue 22: our endpoint (continuous, and dynamic batches) vs `transformers serve --continuous-batching`, plain
    greedy (repetition penalty 1.0: transformers serve drops that processor under continuous batching), max new
    tokens drawn per request from NEW_TOKENS."""
    from benchmarks.transformers_serve import start_transformers_serve

    rng = random.Random(seed)
    max_new = [rng.choice(NEW_TOKENS) for _ in inputs]
    greedy = {"repetition_penalty": 1.0}
    results = {}
    for name, args in (("ours: continuous", ("--scheduler", "continuous")),
                       ("ours: continuous (hf fwd)", ("--scheduler", "continuous", "--decode-forward",
                                                      "transformers")),
                       ("ours: batches", ("--scheduler", "batches"))):
        handle = ours(model_dir, re.sub(r"\W+", "-", name).strip("-"), work, args)
        results[name] = run_server("tiny Llama", name, handle, invocations(inputs, max_new, greedy), len(inputs),
                                   client_counts)
    peer = start_transformers_serve(model_dir, work / "transformers-serve.log")
    results["peer"] = run_server("tiny Llama", "transformers serve --cb", peer, completions(inputs, max_new, model_dir),
                                 len(inputs), client_counts)
    for clients in client_counts:
        verdict("ours (continuous) vs transformers serve", clients, results["ours: continuous"][clients],
                results["peer"][clients], 1.5)
    for clients in client_counts:
        mine, theirs = results["ours: continuous"][clients], results["ours: continuous (hf fwd)"][clients]
        print(f"own decode forward vs transformers' forward, {clients} clients: "
              f"{mine['requests_s'] / theirs['requests_s']:.2f}x requests/s, p95 {mine['p95_ms']:.0f} vs "
              f"{theirs['p95_ms']:.0f} ms")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", choices=["peer", "batching"], default="peer",
                        help="peer: vs transformers serve (issue 22); batching: batching off vs on (issue 7)")
    parser.add_argument("--requests", type=int, default=96, help="requests per case (the same list each time)")
    parser.add_argument("--clients", type=int, nargs="+", help="default: 1 16 64 (peer), 1 4 16 (batching)")
    parser.add_argument("--seed", type=int, default=0, help="draws each request's max_new_tokens (peer)")
    parser.add_argument("--threads", type=int, default=1,
                        help="OMP_NUM_THREADS of every server (the same for ours and the peer); on a busy 2-core "
                             "machine one torch thread ran the tiny Llama's decode steps 10x faster than two")
    parser.add_argument("--skip-t5", action="store_true", help="batching: only the tiny Llama")
    args = parser.parse_args(argv)
    os.environ["OMP_NUM_THREADS"] = str(args.threads)  # the servers inherit it
    clients = args.clients or ([1, 16, 64] if args.compare == "peer" else [1, 4, 16])
    print(f"CPU: {cpu_model()}; {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}; {args.requests} requests per case; "
          + (f"greedy, max_new_tokens drawn from {NEW_TOKENS} (seed {args.seed})" if args.compare == "peer"
             else "max_new_tokens 32, default parameters"))
    with tempfile.TemporaryDirectory(prefix="llmft-endpoint-load-") as tmp:
        work = Path(tmp)
        with_t5 = not args.skip_t5 and args.compare == "batching"
        cases = [("tiny Llama", llama_case)] + ([("tiny T5", t5_case)] if with_t5 else [])
        for label, build in cases:
            model_dir, inputs = build(work, args.requests)
            print(HEADER)
            print("-" * len(HEADER))
            if args.compare == "peer":
                compare_peer(model_dir, inputs, clients, work, args.seed)
            else:
                compare_batching(label, model_dir, inputs, clients, work)
    print(f"load average at the end {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
