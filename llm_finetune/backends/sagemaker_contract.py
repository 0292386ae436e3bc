"""The SageMaker service's part of a job, for a local stand-in: moto stores jobs and marks them Completed without
running anything, so this runs each job's container here under the SageMaker container contract. Used only when the
recipe says so (`sagemaker.stand_in: true`, with endpoint_url at the stand-in).

Training job, from its DescribeTrainingJob (what the service knows), per instance algo-1..N:
    /opt/ml is rooted in <work_root>/<job>/<host>/opt/ml
    code/               sourcedir.tar.gz from hyperparameter sagemaker_submit_directory, unpacked
    input/config/       hyperparameters.json, resourceconfig.json, inputdataconfig.json
    input/data/<channel>/  each channel's S3 prefix
    checkpoints/        CheckpointConfig.S3Uri restored before the start, synced back every second and at the end
    model/, output/data/   SM_MODEL_DIR, SM_OUTPUT_DATA_DIR
  then `python <sagemaker_program> --<hp> <value> ...` in code/ with SM_* variables (as the training toolkit sets
  them; SM_MASTER_ADDR/SM_MASTER_PORT point torchrun at this machine), this interpreter standing in for the image
  (its environment has the pinned requirements, so none are installed). On success algo-1's model/ is uploaded as
  model.tar.gz to ModelArtifacts.S3ModelArtifacts (<output path>/<job>/output/model.tar.gz, where the service puts
  it); on failure the job's FailureReason is the container's /opt/ml/output/failure.
Processing job, from DescribeProcessingJob: each input downloaded to its LocalPath, ContainerEntrypoint +
ContainerArguments run with /opt/ml mapped the same way, each output's LocalPath uploaded to its S3Uri at the end;
FailureReason from /opt/ml/output/message.

JumpStart fine-tune (a training job of JumpStart's image, with `sagemaker_program` transfer_learning.py from JumpStart's
script tarball and JumpStart's base weights as the `model` channel, both in JumpStart's own buckets): the real service
runs JumpStart's script on those weights and the `training` channel (train.jsonl + template.json). The stand-in can
reach neither, so the backend leaves a substitute beside the job (`write_substitute`: this project's own training
request for the same TrainJob) and the stand-in runs that instead, under the JumpStart job's name, output path,
checkpoints and instances: this project's trainer (its code, job hyperparameters and image contract), the recipe's
base model as `base_model` in place of the `model` channel, the checked dataset as `data`, and JumpStart's
`training`/`validation` channels mounted as sent (the same records, in JumpStart's format; our trainer reads `data`).
So the flow after the job (model.tar.gz, evaluation, release) runs for real; JumpStart's own script does not.

moto cannot be told a job's outcome, so the stand-in keeps it in S3 (<prefix>/stand-in/<kind>/<job>.json) and
`describe` overlays it on moto's answer: InProgress while the container runs, then Completed or Failed. A
StopTrainingJob that reached the stand-in (moto lacks it; the test fixture adds it) stops the container.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

from llm_finetune.backends import s3files
from llm_finetune.backends.local import die_with_parent
from llm_finetune.backends.sagemaker_api import PROCESSING, TRAINING, AwsClients, JobApi, S3Layout
from llm_finetune.training.job import PROGRESS_FILE
from llm_finetune.training.progress import read_progress

OPT_ML = "/opt/ml"
TICK_S = 1.0


def _decoded(value: str):
    """A hyperparameter as the training toolkit hands it on: JSON-decoded when it is JSON, else the string."""
    try:
        return json.loads(value)
    except (TypeError, ValueError):
        return value


def write_substitute(clients: AwsClients, layout: S3Layout, name: str, request: dict,
                     replaces: tuple[str, ...]) -> None:
    """Have the stand-in run `request` (a CreateTrainingJob request of ours) in place of training job `name`: its
    image, hyperparameters and channels, the job's channels named in `replaces` left out."""
    body = {"AlgorithmSpecification": request["AlgorithmSpecification"], "HyperParameters": request["HyperParameters"],
            "InputDataConfig": request["InputDataConfig"], "replaces": list(replaces)}
    bucket, key = s3files.split_s3_uri(layout.stand_in_substitute(name))
    clients.s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class StandIn:
    """Runs stand-in jobs in background threads; their output and progress arrive on `events`."""

    def __init__(self, clients: AwsClients, layout: S3Layout, work_root: str | Path, python: str = sys.executable):
        self.clients, self.layout, self.work_root, self.python = clients, layout, Path(work_root), python
        self.events: queue.Queue = queue.Queue()
        self._threads: dict[str, threading.Thread] = {}

    # -- what the service reports -------------------------------------------------------------------------------

    def describe(self, api: JobApi, name: str) -> dict:
        description = getattr(self.clients.sagemaker, api.describe)(**{api.name_param: name})
        if description[api.status] in ("Stopping", "Stopped"):
            return description  # a stop reached the service
        record = self._record(api, name)
        description[api.status] = record["status"] if record else "InProgress"
        description["SecondaryStatus"] = record["secondary"] if record else "Starting"
        if record and record.get("failure_reason"):
            description["FailureReason"] = record["failure_reason"]
        return description

    def _record(self, api: JobApi, name: str) -> dict | None:
        return self._read(self.layout.stand_in_status(api, name))

    def _read(self, uri: str) -> dict | None:
        from botocore.exceptions import ClientError

        bucket, key = s3files.split_s3_uri(uri)
        try:
            return json.loads(self.clients.s3.get_object(Bucket=bucket, Key=key)["Body"].read())
        except ClientError as e:
            if e.response.get("Error", {}).get("Code") in ("NoSuchKey", "NoSuchBucket", "404"):
                return None
            raise

    def _set(self, api: JobApi, name: str, status: str, secondary: str, failure_reason: str | None = None) -> None:
        bucket, key = s3files.split_s3_uri(self.layout.stand_in_status(api, name))
        body = {"status": status, "secondary": secondary, "failure_reason": failure_reason}
        self.clients.s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(body).encode())

    def _stop_requested(self, api: JobApi, name: str) -> bool:
        status = getattr(self.clients.sagemaker, api.describe)(**{api.name_param: name})[api.status]
        return status in ("Stopping", "Stopped")

    # -- running jobs ---------------------------------------------------------------------------------------------

    def start(self, api: JobApi, name: str) -> None:
        """Run the job's container unless it already ran (a finished record) or runs in this process. A record left
        InProgress by a process that died is run again, as the service would restart it (it resumes from its
        checkpoints)."""
        record = self._record(api, name)
        if (record and record["status"] in ("Completed", "Failed", "Stopped")) or name in self._threads:
            return
        run = self._run_training if api is TRAINING else self._run_processing
        thread = threading.Thread(target=self._guarded, args=(api, name, run), daemon=True, name=f"stand-in {name}")
        self._threads[name] = thread
        thread.start()

    def wait(self, name: str, timeout_s: float | None = None) -> None:
        if name in self._threads:
            self._threads[name].join(timeout_s)

    def _guarded(self, api: JobApi, name: str, run) -> None:
        try:
            status, secondary, reason = run(name)
        except Exception as e:  # the stand-in itself broke: the job fails with why, the waiter does not hang
            status, secondary, reason = "Failed", "Failed", f"stand-in error: {type(e).__name__}: {e}"
        self._set(api, name, status, secondary, reason)

    def _output(self, line: str) -> None:
        self.events.put(("output", line))

    def _root(self, name: str, host: str = "algo-1") -> Path:
        return self.work_root / name / host / "opt" / "ml"

    def _local(self, root: Path, container_path: str) -> Path:
        """A container path under /opt/ml, on this machine."""
        relative = Path(container_path).relative_to(OPT_ML)
        return root / relative

    def _supervise(self, api: JobApi, name: str, procs: list[subprocess.Popen], tick) -> bool:
        """Wait for the processes, calling tick() each second; stop them when the service was asked to. Returns
        whether they were stopped."""
        stopped = False
        while any(p.poll() is None for p in procs):
            time.sleep(TICK_S)
            tick()
            if not stopped and self._stop_requested(api, name):
                stopped = True
                self._output(f"stand-in: {name} stopped by the service; SIGTERM to the container")
                for p in procs:
                    if p.poll() is None:
                        os.killpg(p.pid, signal.SIGTERM)
        tick()
        return stopped

    def _start_process(self, cmd: list[str], *, cwd: Path, env: dict, label: str) -> tuple[subprocess.Popen,
                                                                                           threading.Thread]:
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True, preexec_fn=die_with_parent)

        def pump() -> None:
            for line in proc.stdout:
                self._output(f"{label}{line.rstrip()}")

        reader = threading.Thread(target=pump, daemon=True)
        reader.start()
        return proc, reader

    # -- training -------------------------------------------------------------------------------------------------

    def _run_training(self, name: str) -> tuple[str, str, str | None]:
        s3 = self.clients.s3
        d = self._substituted(name, self.clients.sagemaker.describe_training_job(TrainingJobName=name))
        self._set(TRAINING, name, "InProgress", "Downloading")
        hps = d.get("HyperParameters", {})
        decoded = {k: _decoded(v) for k, v in hps.items()}
        hosts = [f"algo-{i + 1}" for i in range(d["ResourceConfig"]["InstanceCount"])]
        shutil.rmtree(self.work_root / name, ignore_errors=True)
        tarball = s3files.download_file(s3, decoded["sagemaker_submit_directory"], self.work_root / name / "code.tgz")
        checkpoint = d.get("CheckpointConfig")
        master_port = _free_port()
        procs, readers, syncs = [], [], []
        for host in hosts:
            root = self._root(name, host)
            with tarfile.open(tarball) as tar:
                tar.extractall(root / "code", filter="data")
            channels = {}
            for channel in d.get("InputDataConfig", []):
                local = root / "input" / "data" / channel["ChannelName"]
                local.mkdir(parents=True, exist_ok=True)
                s3files.download_prefix(s3, channel["DataSource"]["S3DataSource"]["S3Uri"], local)
                channels[channel["ChannelName"]] = local
            config = root / "input" / "config"
            config.mkdir(parents=True, exist_ok=True)
            (config / "hyperparameters.json").write_text(json.dumps(hps))
            (config / "resourceconfig.json").write_text(json.dumps(
                {"current_host": host, "hosts": hosts, "network_interface_name": "eth0"}))
            (config / "inputdataconfig.json").write_text(json.dumps(
                {c: {"TrainingInputMode": "File", "S3DistributionType": "FullyReplicated", "RecordWrapperType": "None"}
                 for c in channels}))
            for folder in ("model", "output/data"):
                (root / folder).mkdir(parents=True, exist_ok=True)
            if checkpoint:
                local = self._local(root, checkpoint.get("LocalPath", f"{OPT_ML}/checkpoints"))
                local.mkdir(parents=True, exist_ok=True)
                restored = s3files.download_prefix(s3, checkpoint["S3Uri"], local)
                if restored and host == hosts[0]:
                    self._output(f"stand-in: restored {len(restored)} checkpoint files from {checkpoint['S3Uri']}")
                syncs.append(s3files.FolderSync(s3, local, checkpoint["S3Uri"]))
            env = {**os.environ, **self._training_env(root, host, hosts, decoded, channels, master_port),
                   "PYTHONPATH": str(root / "code"), "PYTHONUNBUFFERED": "1"}
            args = [a for k, v in decoded.items() for a in (f"--{k}", v if isinstance(v, str) else json.dumps(v))]
            cmd = [self.python, decoded["sagemaker_program"], *args]
            proc, reader = self._start_process(cmd, cwd=root / "code", env=env,
                                               label=f"[{host}] " if len(hosts) > 1 else "")
            procs.append(proc)
            readers.append(reader)
        self._set(TRAINING, name, "InProgress", "Training")
        progress_file = self._root(name) / "model" / PROGRESS_FILE
        last_progress = None

        def tick() -> None:
            nonlocal last_progress
            for sync in syncs:
                sync.sync()
            progress = read_progress(progress_file)
            if progress is not None and progress != last_progress:
                self.events.put(("progress", progress))
                last_progress = progress

        stopped = self._supervise(TRAINING, name, procs, tick)
        for reader in readers:
            reader.join()
        self._output(f"stand-in: container exited ({', '.join(str(p.returncode) for p in procs)})")
        if stopped:
            return "Stopped", "Stopped", None
        if failed := [(host, p.returncode) for host, p in zip(hosts, procs) if p.returncode != 0]:
            host, code = failed[0]
            failure = self._root(name, host) / "output" / "failure"
            reason = failure.read_text() if failure.exists() else f"exit code {code}"
            return "Failed", "Failed", f"AlgorithmError: {reason}"[:1024]
        self._upload_model(self._root(name), d)
        self._output(f"stand-in: uploaded {d['ModelArtifacts']['S3ModelArtifacts']}")
        shutil.rmtree(self.work_root / name, ignore_errors=True)
        return "Completed", "Completed", None

    def _substituted(self, name: str, description: dict) -> dict:
        """The job as the stand-in runs it: with its substitute's image, hyperparameters and channels when the
        backend left one (a JumpStart fine-tune, see the module docstring), else as described."""
        substitute = self._read(self.layout.stand_in_substitute(name))
        if substitute is None:
            return description
        kept = [c for c in description.get("InputDataConfig", []) if c["ChannelName"] not in substitute["replaces"]]
        self._output(f"stand-in: {name} runs this project's trainer in place of "
                     f"{description['AlgorithmSpecification']['TrainingImage']} (channels "
                     f"{', '.join(substitute['replaces'])} replaced)")
        return {**description, "AlgorithmSpecification": substitute["AlgorithmSpecification"],
                "HyperParameters": substitute["HyperParameters"],
                "InputDataConfig": kept + substitute["InputDataConfig"]}

    def _training_env(self, root: Path, host: str, hosts: list[str], hps: dict, channels: dict[str, Path],
                      master_port: int) -> dict[str, str]:
        gpus = 0
        try:
            import torch

            gpus = torch.cuda.device_count()
        except ImportError:
            pass
        env = {
            "SM_MODEL_DIR": str(root / "model"), "SM_OUTPUT_DIR": str(root / "output"),
            "SM_OUTPUT_DATA_DIR": str(root / "output" / "data"), "SM_INPUT_DIR": str(root / "input"),
            "SM_INPUT_CONFIG_DIR": str(root / "input" / "config"), "SM_CHANNELS": json.dumps(sorted(channels)),
            "SM_HPS": json.dumps(hps), "SM_HOSTS": json.dumps(hosts), "SM_CURRENT_HOST": host,
            "SM_NUM_GPUS": str(gpus), "SM_NUM_CPUS": str(os.cpu_count() or 1),
            "SM_MODULE_DIR": str(hps.get("sagemaker_submit_directory", "")),
            "SM_USER_ENTRY_POINT": str(hps.get("sagemaker_program", "")),
            "SM_MASTER_ADDR": "127.0.0.1", "SM_MASTER_PORT": str(master_port),
        }
        env.update({f"SM_CHANNEL_{c.upper()}": str(path) for c, path in channels.items()})
        env.update({f"SM_HP_{k.upper()}": v if isinstance(v, str) else json.dumps(v) for k, v in hps.items()})
        return env

    def _upload_model(self, root: Path, description: dict) -> None:
        """model/ as model.tar.gz where the service puts it; output/data/ beside it as output.tar.gz when not empty."""
        model_uri = description["ModelArtifacts"]["S3ModelArtifacts"]
        for folder, uri in ((root / "model", model_uri),
                            (root / "output" / "data", model_uri.rsplit("/", 1)[0] + "/output.tar.gz")):
            files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink())
            if not files and folder.name != "model":
                continue
            archive = root / f"{folder.name}.tar.gz"
            with tarfile.open(archive, "w:gz") as tar:
                for path in files:
                    tar.add(path, arcname=path.relative_to(folder).as_posix())
            s3files.upload_file(self.clients.s3, archive, uri)

    # -- processing -----------------------------------------------------------------------------------------------

    def _run_processing(self, name: str) -> tuple[str, str, str | None]:
        s3 = self.clients.s3
        d = self.clients.sagemaker.describe_processing_job(ProcessingJobName=name)
        self._set(PROCESSING, name, "InProgress", "Downloading")
        shutil.rmtree(self.work_root / name, ignore_errors=True)
        root = self._root(name)
        for item in d.get("ProcessingInputs", []):
            source = item["S3Input"]
            local = self._local(root, source["LocalPath"])
            local.mkdir(parents=True, exist_ok=True)
            if source["S3Uri"].endswith("/"):
                s3files.download_prefix(s3, source["S3Uri"], local)
            else:  # an object: S3Prefix matches it by its full key
                s3files.download_file(s3, source["S3Uri"], local / source["S3Uri"].rsplit("/", 1)[1])
        outputs = d.get("ProcessingOutputConfig", {}).get("Outputs", [])
        for item in outputs:
            self._local(root, item["S3Output"]["LocalPath"]).mkdir(parents=True, exist_ok=True)
        config = root / "config"
        config.mkdir(parents=True, exist_ok=True)
        (config / "processingjobconfig.json").write_text(json.dumps(d, default=str))
        (config / "resourceconfig.json").write_text(json.dumps({"current_host": "algo-1", "hosts": ["algo-1"]}))
        app = d["AppSpecification"]
        cmd = [arg.replace(OPT_ML, str(root)) for arg in
               [*app.get("ContainerEntrypoint", []), *app.get("ContainerArguments", [])]]
        # This interpreter stands in for the image's python3.
        env = {**os.environ, "PATH": f"{Path(self.python).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               "PYTHONUNBUFFERED": "1"}
        self._set(PROCESSING, name, "InProgress", "Processing")
        proc, reader = self._start_process(cmd, cwd=root, env=env, label="")
        stopped = self._supervise(PROCESSING, name, [proc], lambda: None)
        reader.join()
        if stopped:
            return "Stopped", "Stopped", None
        if proc.returncode != 0:
            message = root / "output" / "message"
            reason = message.read_text() if message.exists() else f"exit code {proc.returncode}"
            return "Failed", "Failed", f"AlgorithmError: {reason}"[:1024]
        for item in outputs:
            s3files.upload_folder(s3, self._local(root, item["S3Output"]["LocalPath"]), item["S3Output"]["S3Uri"])
        shutil.rmtree(self.work_root / name, ignore_errors=True)
        return "Completed", "Completed", None
