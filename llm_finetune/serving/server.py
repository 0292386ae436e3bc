"""SageMaker-protocol inference server: GET /ping, POST /invocations.

Request (as Hugging Face's SageMaker containers): {"inputs": "dialogue" | ["d1", ...], "parameters": {...}}
Response: [{"summary_text": "..."}, ...]

    python -m llm_finetune.serving.server --model-dir DIR [--host 127.0.0.1] [--port 8080]

With --port 0 the OS picks a free port; the server prints 'LISTENING <port>' on stdout once it is ready.
"""

from __future__ import annotations

import argparse
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from llm_finetune.generation import GenerationParams

ALLOWED_PARAMETERS = {"max_new_tokens": int, "num_beams": int, "no_repeat_ngram_size": int, "repetition_penalty": float}


class InvocationError(ValueError):
    pass


def parse_invocation(body: bytes) -> tuple[list[str], dict, bool]:
    """(dialogues, generation parameters, whether a single string was sent)."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InvocationError(f"body is not valid JSON: {e}") from None
    if not isinstance(payload, dict) or "inputs" not in payload:
        raise InvocationError("body must be a JSON object with an 'inputs' field")
    inputs = payload["inputs"]
    single = isinstance(inputs, str)
    dialogues = [inputs] if single else inputs
    if not isinstance(dialogues, list) or not dialogues or not all(isinstance(d, str) and d.strip() for d in dialogues):
        raise InvocationError("'inputs' must be a non-empty string or a non-empty list of non-empty strings")
    params = payload.get("parameters") or {}
    if not isinstance(params, dict):
        raise InvocationError("'parameters' must be an object")
    unknown = set(params) - set(ALLOWED_PARAMETERS)
    if unknown:
        raise InvocationError(f"unsupported parameters: {sorted(unknown)}; allowed: {sorted(ALLOWED_PARAMETERS)}")
    try:
        params = {k: ALLOWED_PARAMETERS[k](v) for k, v in params.items()}
    except (TypeError, ValueError) as e:
        raise InvocationError(f"bad parameter value: {e}") from None
    return dialogues, params, single


def make_handler(summarizer, lock: threading.Lock):
    class Handler(BaseHTTPRequestHandler):
        def _send(self, status: int, payload) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/ping":
                self._send(200, {"status": "healthy"})
            else:
                self._send(404, {"error": f"no route {self.path}"})

        def do_POST(self):
            if self.path != "/invocations":
                self._send(404, {"error": f"no route {self.path}"})
                return
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            try:
                dialogues, params, _ = parse_invocation(body)
            except InvocationError as e:
                self._send(400, {"error": str(e)})
                return
            with lock:  # one generate at a time: torch already uses every core
                summaries = summarizer.summarize(dialogues, GenerationParams(**params))
            self._send(200, [{"summary_text": s} for s in summaries])

        def log_message(self, format, *args):  # keep stdout for the LISTENING line
            pass

    return Handler


def serve(model_dir: str, host: str = "127.0.0.1", port: int = 8080) -> None:
    from llm_finetune.summarizer import Summarizer

    summarizer = Summarizer(model_dir)
    server = ThreadingHTTPServer((host, port), make_handler(summarizer, threading.Lock()))
    print(f"LISTENING {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    finally:
        server.server_close()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="SageMaker-protocol summarization server")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    args = parser.parse_args(argv)
    serve(args.model_dir, args.host, args.port)


if __name__ == "__main__":
    main()
