"""Inside a SageMaker container: run the same `python -m <entry> --job job.json` as the local backend, with the job's
folders mapped onto the container contract. The packed source dir's `llmft_sagemaker_entry.py` calls main():

    training job (the image's training toolkit runs it as `sagemaker_program`; its --hyperparameter args are ignored):
        python llmft_sagemaker_entry.py
    processing job (its ContainerEntrypoint, after unpacking the source dir):
        python3 llmft_sagemaker_entry.py processing --root /opt/ml/processing

What the job carries (`ContainerJob`, JSON): the entry module, the job, which of the job's fields are input folders
(by input name) and which field is its output folder. A training job gets it as hyperparameters `llmft_job_000`,
`llmft_job_001`, ... (the JSON zlib-compressed, base64, in pieces: SageMaker limits each value to 2,500 characters;
the plain job.json is also in model.tar.gz); a processing job as its input `job` (job.json).

Contract variables read, training:
    SM_HPS              the hyperparameters (JSON); the job as above
    SM_CHANNEL_<NAME>   the folder of each input channel: the job's input folders (base model, data)
    SM_MODEL_DIR        the job's output folder: the trainer writes model/, result.json, progress.json there; the
                        service uploads it as model.tar.gz. Its parent is the /opt/ml root, whose `checkpoints`
                        folder (CheckpointConfig.LocalPath) the service syncs with the checkpoint S3 URI; it is linked
                        in as <SM_MODEL_DIR>/checkpoints for the run, so training resumes from restored checkpoints
    SM_OUTPUT_DIR       the failure reason goes to <SM_OUTPUT_DIR>/failure (the job's FailureReason)
    SM_NUM_GPUS         processes per instance (1 when 0); SM_HOSTS, SM_CURRENT_HOST: instances and this one's rank
    SM_MASTER_ADDR, SM_MASTER_PORT  rendezvous of torchrun across instances (default: the first host, port 7777)
Processing: input <name> is <root>/input/<name>, the output folder <root>/output; the failure reason goes to
/opt/ml/output/message.

The image's own torch (a CUDA build) is kept; requirements.txt pins the other libraries to the versions this project
runs. The training toolkit installs it before the entry runs; the entry installs whatever is still missing or
differs (processing images have no toolkit), and nothing when all match.
"""

from __future__ import annotations

import base64
import json
import os
import signal
import subprocess
import sys
import zlib
from collections import deque
from importlib import metadata
from pathlib import Path

import llm_finetune
from llm_finetune.backends.local import entry_command
from llm_finetune.training.job import CHECKPOINTS_DIR, JOB_FILE

JOB_HP_PREFIX = "llmft_job_"
HP_MAX_CHARS = 2500  # SageMaker's limit on one hyperparameter value
FAILURE_MAX_CHARS = 1000  # FailureReason holds up to 1,024 characters
DEFAULT_MASTER_PORT = 7777


# ---------------------------------------------------------------------------------------------------------------
# The job in hyperparameters (both sides use these)


def container_job(entry_module: str, job: dict, inputs: dict[str, str], output: str) -> dict:
    """What crosses into the container: entry module, job, input folders (input name -> dotted field), output field."""
    return {"entry_module": entry_module, "job": job, "inputs": inputs, "output": output}


def encode_job_hyperparameters(payload: dict) -> dict[str, str]:
    """The payload as hyperparameters llmft_job_000, ... each a JSON string of at most HP_MAX_CHARS characters."""
    packed = base64.b64encode(zlib.compress(json.dumps(payload, sort_keys=True).encode(), 9)).decode()
    size = HP_MAX_CHARS - 2  # json.dumps adds the quotes; base64 needs no escaping
    pieces = [packed[i:i + size] for i in range(0, len(packed), size)] or [""]
    return {f"{JOB_HP_PREFIX}{i:03d}": json.dumps(piece) for i, piece in enumerate(pieces)}


def decode_job_hyperparameters(hps: dict) -> dict:
    """Inverse of encode_job_hyperparameters; values may be JSON-encoded (as sent) or decoded (SM_HPS)."""
    def text(value):
        if isinstance(value, str) and value.startswith('"'):
            return json.loads(value)
        return value

    pieces = [text(hps[k]) for k in sorted(k for k in hps if k.startswith(JOB_HP_PREFIX))]
    if not pieces:
        raise KeyError(f"no {JOB_HP_PREFIX}NNN hyperparameters: not a job launched by llm_finetune.backends.sagemaker")
    return json.loads(zlib.decompress(base64.b64decode("".join(pieces))))


def set_field(job: dict, dotted: str, value: str) -> None:
    node = job
    *parents, last = dotted.split(".")
    for key in parents:
        node = node[key]
    node[last] = value


def get_field(job: dict, dotted: str):
    node = job
    for key in dotted.split("."):
        node = node[key]
    return node


# ---------------------------------------------------------------------------------------------------------------
# Requirements


def missing_requirements(requirements: Path) -> list[str]:
    """Lines `name==version` of requirements.txt that the environment does not have at that version."""
    missing = []
    for line in requirements.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        name, _, version = line.partition("==")
        try:
            if metadata.version(name) == version:
                continue
        except metadata.PackageNotFoundError:
            pass
        missing.append(line)
    return missing


def ensure_requirements(code_dir: Path) -> None:
    requirements = code_dir / "requirements.txt"
    if requirements.exists() and (missing := missing_requirements(requirements)):
        print(f"installing {' '.join(missing)}", flush=True)
        subprocess.check_call([sys.executable, "-m", "pip", "install", "--no-cache-dir", *missing])


# ---------------------------------------------------------------------------------------------------------------
# Running the entry point


def run_and_report(cmd: list[str], failure_file: Path) -> int:
    """Run cmd with its output passed through; on failure write its last lines to failure_file (the FailureReason)."""
    tail: deque[str] = deque(maxlen=40)
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    # The service sends SIGTERM on StopTrainingJob and spot interruption: pass it on so the trainer stops.
    signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
    for line in proc.stdout:
        sys.stdout.write(line)
        sys.stdout.flush()
        tail.append(line.rstrip("\n"))
    code = proc.wait()
    if code != 0:
        text = "\n".join(tail)
        reason = f"exit code {code} of python {' '.join(cmd[1:])}; last lines:\n"
        failure_file.parent.mkdir(parents=True, exist_ok=True)
        failure_file.write_text(reason + text[-(FAILURE_MAX_CHARS - len(reason)):])
    return code


def launch_command(env: dict[str, str], entry_module: str, job_file: Path) -> list[str]:
    """The entry point for this instance: one process per GPU (one on CPU), torchrun when there are several in all."""
    hosts = json.loads(env.get("SM_HOSTS", '["algo-1"]'))
    current = env.get("SM_CURRENT_HOST", hosts[0])
    return entry_command(entry_module, job_file, nproc_per_node=max(int(env.get("SM_NUM_GPUS", "0")), 1),
                         nnodes=len(hosts), node_rank=hosts.index(current),
                         master_addr=env.get("SM_MASTER_ADDR", hosts[0]),
                         master_port=int(env.get("SM_MASTER_PORT", DEFAULT_MASTER_PORT)))


def train(env: dict[str, str] | None = None) -> int:
    """The training contract: the job from SM_HPS, its inputs from SM_CHANNEL_*, its output in SM_MODEL_DIR."""
    env = dict(os.environ if env is None else env)
    payload = decode_job_hyperparameters(json.loads(env["SM_HPS"]))
    job = payload["job"]
    for name, field in payload["inputs"].items():
        set_field(job, field, env[f"SM_CHANNEL_{name.upper()}"])
    model_dir = Path(env["SM_MODEL_DIR"])
    opt_ml = model_dir.parent
    set_field(job, payload["output"], str(model_dir))
    model_dir.mkdir(parents=True, exist_ok=True)
    (opt_ml / "checkpoints").mkdir(parents=True, exist_ok=True)
    link = model_dir / CHECKPOINTS_DIR
    if not link.is_symlink():
        link.symlink_to(opt_ml / "checkpoints", target_is_directory=True)
    job_file = model_dir / JOB_FILE
    job_file.write_text(json.dumps(job, indent=2))

    output_dir = Path(env.get("SM_OUTPUT_DIR", opt_ml / "output"))
    try:
        return run_and_report(launch_command(env, payload["entry_module"], job_file), output_dir / "failure")
    finally:
        link.unlink()  # the checkpoints are synced on their own; model.tar.gz holds the model only


def process(root: Path) -> int:
    """The processing contract: the job from <root>/input/job/job.json, inputs <root>/input/<name>, output
    <root>/output."""
    payload = json.loads((root / "input" / "job" / "job.json").read_text())
    job = payload["job"]
    for name, field in payload["inputs"].items():
        set_field(job, field, str(root / "input" / name))
    set_field(job, payload["output"], str(root / "output"))
    job_file = root / "llmft-job.json"
    job_file.write_text(json.dumps(job, indent=2))
    cmd = [sys.executable, "-m", payload["entry_module"], "--job", str(job_file)]
    return run_and_report(cmd, root.parent / "output" / "message")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    code_dir = Path(__file__).resolve().parents[2]  # the unpacked source dir
    ensure_requirements(code_dir)
    print(f"llm_finetune from {Path(llm_finetune.__file__).parent}", flush=True)
    if argv[:1] == ["processing"]:
        root = Path(argv[argv.index("--root") + 1]) if "--root" in argv else Path("/opt/ml/processing")
        return process(root)
    return train()
