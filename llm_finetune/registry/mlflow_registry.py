"""Log runs, register versions, record approvals, and gate deployment on them."""

from __future__ import annotations

import json
import os
import tempfile
import warnings
from collections.abc import Callable
from contextlib import nullcontext
from importlib.metadata import version as pkg_version
from pathlib import Path
from urllib.parse import urlparse

from pydantic import BaseModel

from llm_finetune.approval import ApprovalDecision, GainInterval
from llm_finetune.errors import ApprovalRequiredError, RegistryLookupError, TrackingUriError
from llm_finetune.fingerprint import build_once, locked
from llm_finetune.generation import GenerationParams
from llm_finetune.kinds import input_example, served_kind
from llm_finetune.recipes.base import MODEL_URI, check_tracking_uri

APPROVAL_STATUS = "approval_status"  # pending | approved | rejected
RELEASE_STATUS, RELEASE_REASON = "release_status", "release_reason"  # set when a release commits or rolls back
RELEASED, ROLLED_BACK = "released", "rolled_back"
TRAINING_FINGERPRINT = "training_fingerprint"  # one registered version per trained model
DUPLICATE_OF = "duplicate_of"  # on a run whose version was dropped for an older one of the same trained model
PYFUNC_ENTRY = Path(__file__).with_name("pyfunc_entry.py")  # MLflow models from code: nothing pickled
_RUNTIME_PACKAGES = ("torch", "transformers", "tokenizers", "sentencepiece", "pandas")


class RegisteredModelVersion(BaseModel):
    name: str
    version: str
    run_id: str
    model_uri: str
    reused: bool = False
    model_package_arn: str | None = None  # its SageMaker mirror, when the recipe sets registry.sagemaker


def registry_lock(tracking_uri: str):
    """Serialises registry writes of processes sharing a SQLite store (a lock file beside it).

    A tracking server (http(s)://, or a SageMaker managed MLflow ARN) has no lock: there `log_and_register` reconciles
    after registering (the oldest version of a trained model wins).
    """
    if tracking_uri.startswith("sqlite:///"):
        return locked(Path(urlparse(tracking_uri).path))
    return nullcontext()


def find_version(tracking_uri: str, name: str, training_fingerprint: str) -> RegisteredModelVersion | None:
    """The version already registered for this trained model, if any (the oldest one)."""
    found = _client(tracking_uri).search_model_versions(f"name = '{name}' and tags.{TRAINING_FINGERPRINT} = '{training_fingerprint}'")
    if not found:
        return None
    mv = min(found, key=lambda v: int(v.version))
    return RegisteredModelVersion(name=name, version=str(mv.version), run_id=mv.run_id, model_uri=mv.source,
                                  reused=True)


def _client(tracking_uri: str):
    """The client every registry call goes through (and the process's tracking URI, which mlflow.start_run, the
    sagemaker-mlflow plugin's signer and its header provider read)."""
    import mlflow

    check_arn_tracking(tracking_uri)
    _as_the_run()
    _set_process_tracking_uri(tracking_uri)
    return mlflow.MlflowClient(tracking_uri=tracking_uri)


def _set_process_tracking_uri(tracking_uri: str) -> None:
    """mlflow.set_tracking_uri without its side effect on $MLFLOW_TRACKING_URI (which it also sets, for subprocesses):
    the variable is where a recipe's default tracking URI comes from, so one flow's registry would become the
    default of every later recipe loaded in the process (a served SageMaker ARN taking over a local run)."""
    import mlflow

    before = os.environ.get("MLFLOW_TRACKING_URI")
    mlflow.set_tracking_uri(tracking_uri)
    if before is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = before


_READY_ARNS: set[tuple[str, str | None]] = set()  # (ARN, where the run's identity was named; None: default chain)
TRACKING_URI_SETTING = "the recipe's tracking_uri or $MLFLOW_TRACKING_URI"  # where a flow's tracking URI comes from


def check_arn_tracking(tracking_uri: str) -> None:
    """A SageMaker managed MLflow ARN: the plugin is installed and there are AWS credentials to sign requests with
    (SigV4): the run's (llm_finetune.aws.using_session), else boto3's default chain; else one line naming the
    setting. Checked once per ARN and identity in a process; other URIs pass unchanged. Every registry call checks it;
    flows also do when they start (tasks.aws), before any stage."""
    if not tracking_uri.startswith("arn:"):
        return
    from llm_finetune.aws import current_credentials, current_session  # lazy: boto3, for ARNs only

    aws = current_session()
    if (tracking_uri, aws and aws.source) in _READY_ARNS:
        return
    problem = f"MLflow tracking URI from {TRACKING_URI_SETTING}: "
    try:
        check_tracking_uri(tracking_uri)
    except ValueError as e:
        raise TrackingUriError(problem + str(e)) from None
    if current_credentials() is None:
        if aws is not None:
            raise TrackingUriError(
                f"{problem}{tracking_uri}: {aws.source} gives no AWS credentials to sign its requests with: give the "
                f"block keys, a profile or a role the server's IAM policy allows, with access to its S3 artifact store")
        raise TrackingUriError(
            f"{problem}{tracking_uri}: no AWS credentials to sign its requests with: set AWS_ACCESS_KEY_ID and "
            f"AWS_SECRET_ACCESS_KEY (or AWS_PROFILE, or run with an instance or task role) of an identity the "
            f"server's IAM policy allows, with access to its S3 artifact store")
    _READY_ARNS.add((tracking_uri, aws and aws.source))


class _ArnOnlyHeaders:
    """The sagemaker-mlflow plugin's request header provider, asked only while the tracking URI is an ARN. The
    plugin's own in_context() is always True and it parses any tracking URI as an ARN: on an http:// server every
    MLflow call logged 'Encountered unexpected error during resolving request headers: list index out of range'."""

    def __init__(self, plugin):
        self.plugin = plugin

    def in_context(self) -> bool:
        import mlflow

        return mlflow.get_tracking_uri().startswith("arn:")  # the URI the plugin's request_headers() reads

    def request_headers(self) -> dict[str, str]:
        return self.plugin.request_headers()


class _RunIdentitySigner:
    """The sagemaker-mlflow plugin's request auth provider (the SigV4 signer of an ARN's requests), signing with the
    run's AWS identity where one is active (llm_finetune.aws.using_session: a recipe's aws.credentials_block), else
    as the plugin does, with boto3's default chain. MLflow asks it once per request, in the thread making the
    request: a flow's tasks carry the run's session there (a context variable)."""

    def __init__(self, plugin):
        self.plugin = plugin

    def get_name(self) -> str:
        return self.plugin.get_name()

    def get_auth(self):
        from llm_finetune.aws import boto_session, current_session  # lazy: boto3, for ARNs only

        if current_session() is None:
            return self.plugin.get_auth()
        # lazy: the plugin is optional (only ARNs need it); its own hook for a caller's boto3 Session
        from sagemaker_mlflow import use_session

        with use_session(boto_session()):  # a Session of its own: the run's is shared by threads
            return self.plugin.get_auth()


def _s3_artifacts_as_the_run(repository: type) -> Callable[..., object]:
    """MLflow's S3 artifact repository (the sagemaker-mlflow plugin's, where installed) built with the run's AWS
    credentials where a run's session is active, else as MLflow builds it (boto3's default chain). MLflow builds
    one per run, in the thread that first touches the run's artifacts, and keeps it for the process."""

    def build(artifact_uri: str, tracking_uri: str | None = None, registry_uri: str | None = None):
        from llm_finetune.aws import current_credentials, current_session  # lazy: boto3, for s3:// artifacts only

        keys = {}
        if current_session() is not None and (credentials := current_credentials()) is not None:
            frozen = credentials.get_frozen_credentials()
            keys = {"access_key_id": frozen.access_key, "secret_access_key": frozen.secret_key,
                    "session_token": frozen.token}
        return repository(artifact_uri, tracking_uri=tracking_uri, registry_uri=registry_uri, **keys)

    build.wraps = repository  # type: ignore[attr-defined]  # marks it wrapped
    return build


def _as_the_run() -> None:
    """MLflow calls made under a run's AWS session act as that identity: the sagemaker-mlflow plugin's signer and
    the S3 artifact store; the plugin's header provider answers for ARNs only. Wraps them in MLflow's registries
    (mlflow has no public call for this); idempotent."""
    from mlflow.store.artifact.artifact_repository_registry import _artifact_repository_registry as artifacts
    from mlflow.tracking.request_auth.registry import _request_auth_provider_registry as auth
    from mlflow.tracking.request_header.registry import _request_header_provider_registry as headers

    for registry, wrapper in ((headers, _ArnOnlyHeaders), (auth, _RunIdentitySigner)):
        registry._registry[:] = [wrapper(p) if type(p).__module__.startswith("sagemaker_mlflow.") else p
                                 for p in registry._registry]
    if not hasattr(artifacts._registry["s3"], "wraps"):
        artifacts._registry["s3"] = _s3_artifacts_as_the_run(artifacts._registry["s3"])


def ensure_experiment(tracking_uri: str, experiment: str) -> str:
    """Experiment id; for a SQLite store, artifacts go in an 'mlartifacts' folder beside the database. Two runs
    starting at once on a tracking server may both find no experiment: the one whose creation is refused as a
    duplicate takes the other's."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    found = client.get_experiment_by_name(experiment)
    if found:
        return found.experiment_id
    artifact_location = None
    if tracking_uri.startswith("sqlite:///"):
        db_path = Path(urlparse(tracking_uri).path)
        artifact_location = (db_path.parent / "mlartifacts").resolve().as_uri()
    try:
        return client.create_experiment(experiment, artifact_location=artifact_location)
    except MlflowException as e:
        if e.error_code != "RESOURCE_ALREADY_EXISTS" or not (found := client.get_experiment_by_name(experiment)):
            raise
        return found.experiment_id


def _loss_curve_png(loss_curve: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    ax.plot([p["step"] for p in loss_curve], [p["loss"] for p in loss_curve], marker=".")
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def log_and_register(
    tracking_uri: str,
    experiment: str,
    model_name: str,
    model_dir: str,
    params: dict[str, object],
    metrics: dict[str, float],
    loss_curve: list[dict],
    tags: dict[str, str],
    samples: list[dict],
    training_fingerprint: str,
    *,
    generation: GenerationParams | None = None,
) -> RegisteredModelVersion:
    """One MLflow run with params, metrics, loss curve and the model; then a registered version tagged 'pending'.

    A model whose training fingerprint is already registered is not logged again: its version is returned. Processes
    registering it at the same moment all end with one version, the oldest (`_keep_oldest`).
    `generation` becomes the model's default predict params (those it was evaluated with).
    """
    with registry_lock(tracking_uri):
        existing = find_version(tracking_uri, model_name, training_fingerprint)
        if existing:
            return existing
        mine = _log_and_register(tracking_uri, experiment, model_name, model_dir, params, metrics, loss_curve,
                                 {**tags, TRAINING_FINGERPRINT: training_fingerprint}, samples, generation)
        return _keep_oldest(tracking_uri, mine, training_fingerprint)


def _keep_oldest(tracking_uri: str, mine: RegisteredModelVersion, training_fingerprint: str) -> RegisteredModelVersion:
    """Create-then-reconcile, for stores without a lock (a tracking server): of the versions registered for one
    trained model, the oldest is the one for everybody; a process whose version is younger deletes it (pending, the
    same model) and returns the oldest, reused.

    A version number is given out only once every lower one is stored with its tags, so the oldest is seen by every
    process that registered after it, and its own process never deletes it. The younger version's run stays, tagged
    `duplicate_of`: its params and metrics are a true record of the attempt, and deleting a run on a server would only
    mark it deleted.
    """
    oldest = find_version(tracking_uri, mine.name, training_fingerprint)
    if oldest is None or oldest.version == mine.version:
        return mine
    client = _client(tracking_uri)
    client.delete_model_version(mine.name, mine.version)
    client.set_tag(mine.run_id, DUPLICATE_OF, oldest.version)
    return oldest


def _log_and_register(tracking_uri, experiment, model_name, model_dir, params, metrics, loss_curve, tags,
                      samples, generation) -> RegisteredModelVersion:
    import mlflow
    from mlflow.models import infer_signature

    client = _client(tracking_uri)
    experiment_id = ensure_experiment(tracking_uri, experiment)
    with mlflow.start_run(experiment_id=experiment_id, tags=tags) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics(metrics)
        for point in loss_curve:
            mlflow.log_metric("train_loss", point["loss"], step=int(point["step"]))
        with tempfile.TemporaryDirectory() as tmp:
            if loss_curve:
                _loss_curve_png(loss_curve, Path(tmp) / "loss_curve.png")
                mlflow.log_artifact(str(Path(tmp) / "loss_curve.png"))
            (Path(tmp) / "samples.json").write_text(json.dumps(samples, indent=2))
            mlflow.log_artifact(str(Path(tmp) / "samples.json"))
        kind = served_kind(model_dir)
        example = input_example(kind, samples)  # the served input is text (chat samples hold message lists)
        # MLflow infers each param's type from its default: leave out settings whose default is unset (None, []).
        defaults = {k: v for k, v in (generation or GenerationParams()).model_dump().items() if v not in (None, [])}
        signature = infer_signature(example, ["text"], params=defaults)
        tags = {**tags, "served_kind": kind}
        with warnings.catch_warnings():  # advice to add an input example: the signature is given explicitly
            warnings.filterwarnings("ignore", message=r"(?s).*input example", category=UserWarning)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=str(PYFUNC_ENTRY),
                artifacts={"model_dir": model_dir},
                signature=signature,
                pip_requirements=[f"{p}=={pkg_version(p)}" for p in _RUNTIME_PACKAGES],
            )
        mv = mlflow.register_model(info.model_uri, model_name, tags={**tags, APPROVAL_STATUS: "pending"})
    for key, value in metrics.items():
        client.set_model_version_tag(model_name, mv.version, f"metric.{key}", f"{value:.4f}")
    return RegisteredModelVersion(name=model_name, version=str(mv.version), run_id=run.info.run_id, model_uri=info.model_uri)


def log_report(tracking_uri: str, experiment: str, run_name: str, metrics: dict[str, float], files: list[Path],
               tags: dict[str, str]) -> str:
    """A run holding a report (a comparison of models, no model of its own): metrics, files, tags; its id."""
    import mlflow

    _client(tracking_uri)
    with mlflow.start_run(experiment_id=ensure_experiment(tracking_uri, experiment), run_name=run_name,
                          tags=tags) as run:
        mlflow.log_metrics(metrics)
        for f in files:
            mlflow.log_artifact(str(f))
    return run.info.run_id


def record_approval(tracking_uri: str, name: str, version: str, decision: ApprovalDecision,
                    alias: str, *, previous_alias: str | None = None) -> ApprovalDecision:
    """Write the decision on the version; an approval also moves `alias` to it (and `previous_alias`, if given, to
    the version `alias` left). Nothing is deleted or overwritten: when a decision is already recorded (by an earlier
    or a concurrent run), that one is kept and returned."""
    with registry_lock(tracking_uri):
        recorded = recorded_decision(tracking_uri, name, version)
        if recorded is not None:
            return recorded
        _write_decision(tracking_uri, name, version, decision)
        if decision.approved:
            promote(tracking_uri, name, version, alias, previous_alias=previous_alias)
    return decision


def promote(tracking_uri: str, name: str, version: str, alias: str, *, previous_alias: str | None = None) -> None:
    """Move `alias` to the version, and `previous_alias` (if given) to the version `alias` left."""
    client = _client(tracking_uri)
    former = alias_version(tracking_uri, name, alias)
    if previous_alias and former is not None and former != version:
        client.set_registered_model_alias(name, previous_alias, former)
    client.set_registered_model_alias(name, alias, version)


def restore_aliases(tracking_uri: str, name: str, version: str, alias: str, before: dict[str, str | None]) -> None:
    """Undo a promotion of `version` to `alias`: each alias back to the version `before` names (removed where None).
    Nothing moves when `alias` no longer marks `version` (another release has promoted since)."""
    with registry_lock(tracking_uri):
        if alias_version(tracking_uri, name, alias) != version:
            return
        client = _client(tracking_uri)
        for alias, target in before.items():
            if target is not None:
                client.set_registered_model_alias(name, alias, target)
            elif alias_version(tracking_uri, name, alias) is not None:
                client.delete_registered_model_alias(name, alias)


def record_release(tracking_uri: str, name: str, version: str, status: str, reason: str) -> None:
    """The release's outcome on the version: `release_status` (released | rolled_back) and `release_reason`."""
    client = _client(tracking_uri)
    client.set_model_version_tag(name, version, RELEASE_REASON, reason)
    client.set_model_version_tag(name, version, RELEASE_STATUS, status)


def release_status(tracking_uri: str, name: str, version: str) -> str | None:
    return _client(tracking_uri).get_model_version(name, version).tags.get(RELEASE_STATUS)


def record_gain_intervals(tracking_uri: str, version: RegisteredModelVersion, intervals: list[GainInterval]) -> None:
    """The gate's measured intervals on the version's run (metrics `<metric>_<gain|relative_change>[_ci_low|_ci_high]`)
    and on the version (tag `gain_intervals`, one line each)."""
    client = _client(tracking_uri)
    for g in intervals:
        key = f"{g.metric}_{g.measure.replace(' ', '_')}"
        for suffix, value in (("", g.estimate), ("_ci_low", g.low), ("_ci_high", g.high)):
            client.log_metric(version.run_id, key + suffix, value)
    if intervals:
        client.set_model_version_tag(version.name, version.version, "gain_intervals",
                                     "; ".join(g.text() for g in intervals))


def alias_version(tracking_uri: str, name: str, alias: str) -> str | None:
    """The version an alias points to; None when the model or the alias does not exist."""
    from mlflow.exceptions import MlflowException

    try:
        return str(_client(tracking_uri).get_model_version_by_alias(name, alias).version)
    except MlflowException:
        return None


def rollback_alias(tracking_uri: str, name: str, alias: str, previous_alias: str, reason: str) -> tuple[str, str]:
    """Move `alias` back to the version `previous_alias` marks and drop `previous_alias` (one rollback per
    promotion); the demoted version is tagged with the reason. Returns (demoted version, restored version)."""
    with registry_lock(tracking_uri):
        restored = alias_version(tracking_uri, name, previous_alias)
        if restored is None:
            raise RegistryLookupError(f"model '{name}' has no '{previous_alias}' alias: nothing to roll back to (an "
                                      f"approval that replaces a champion sets it; one rollback per approval)")
        demoted = alias_version(tracking_uri, name, alias)
        client = _client(tracking_uri)
        client.set_registered_model_alias(name, alias, restored)
        client.delete_registered_model_alias(name, previous_alias)
        if demoted is not None:
            client.set_model_version_tag(name, demoted, "rolled_back_reason", reason)
    return demoted or "", restored


def model_tags(tracking_uri: str, name: str) -> dict[str, str] | None:
    """The tags of the registered model (not of a version); None when no such model is registered."""
    from mlflow.exceptions import MlflowException

    try:
        return dict(_client(tracking_uri).get_registered_model(name).tags)
    except MlflowException:
        return None


def set_model_tag(tracking_uri: str, name: str, key: str, value: str) -> None:
    _client(tracking_uri).set_registered_model_tag(name, key, value)


def _write_decision(tracking_uri: str, name: str, version: str, decision: ApprovalDecision) -> None:
    client = _client(tracking_uri)
    status = "approved" if decision.approved else "rejected"
    # The status last: a concurrent run reads the decision (without the lock) once it sees a status, so every other
    # tag must already be there (seen: decided_at missing under load).
    for key, value in {
        "approval_reviewer": decision.reviewer,
        "approval_reason": decision.reason,
        "approval_automatic": str(decision.automatic).lower(),
        "approval_decided_at": decision.decided_at.isoformat(),
        APPROVAL_STATUS: status,
    }.items():
        client.set_model_version_tag(name, version, key, value)


def set_version_tag(tracking_uri: str, name: str, version: str, key: str, value: str) -> None:
    _client(tracking_uri).set_model_version_tag(name, version, key, value)


def approval_status(tracking_uri: str, name: str, version: str) -> str:
    return _client(tracking_uri).get_model_version(name, version).tags.get(APPROVAL_STATUS, "pending")


def recorded_decision(tracking_uri: str, name: str, version: str) -> ApprovalDecision | None:
    """The approval decision stored on a version, or None while it is pending."""
    tags = _client(tracking_uri).get_model_version(name, version).tags
    if tags.get(APPROVAL_STATUS, "pending") == "pending":
        return None
    return ApprovalDecision(
        approved=tags[APPROVAL_STATUS] == "approved",
        reviewer=tags.get("approval_reviewer", ""),
        reason=tags.get("approval_reason", ""),
        automatic=tags.get("approval_automatic") == "true",
        decided_at=tags.get("approval_decided_at"),
    )


def require_approved(tracking_uri: str, name: str, version: str) -> None:
    status = approval_status(tracking_uri, name, version)
    if status != "approved":
        raise ApprovalRequiredError(f"model '{name}' version {version} is '{status}', not 'approved': refusing to deploy")


def download_approved_model(tracking_uri: str, name: str, version: str, dst: str | Path) -> Path:
    """The Hugging Face model directory of an approved version, fetched once from the registry's artifact store."""
    require_approved(tracking_uri, name, version)
    return download_model_version(tracking_uri, name, version, dst)


def download_model_version(tracking_uri: str, name: str, version: str, dst: str | Path) -> Path:
    """The Hugging Face model directory of any version (to read or evaluate it; deploying needs the approval)."""
    import mlflow

    _client(tracking_uri)
    with build_once(dst) as needed:
        if needed:
            mlflow.artifacts.download_artifacts(artifact_uri=f"models:/{name}/{version}", dst_path=str(dst))
    configs = sorted((Path(dst) / "artifacts").rglob("config.json"))
    if not configs:
        raise FileNotFoundError(f"no Hugging Face model directory in the artifacts of '{name}' version {version}")
    return configs[0].parent


def resolve_version(tracking_uri: str, name: str, version: str | None = None,
                    alias: str | None = None) -> RegisteredModelVersion:
    """The registered version by number or alias; a missing model, version or alias is a RegistryLookupError (a
    RecipeError) naming it and what to do."""
    from mlflow.exceptions import MlflowException

    client = _client(tracking_uri)
    try:
        mv = client.get_model_version_by_alias(name, alias) if alias else client.get_model_version(name, version)
    except MlflowException:
        wanted = f"version with alias '{alias}'" if alias else f"version {version}"
        raise RegistryLookupError(
            f"registered model '{name}' has no {wanted} in {tracking_uri}: run (and approve) the flow that "
            f"registers '{name}' first, or point the recipe at another model or endpoint") from None
    return RegisteredModelVersion(name=name, version=str(mv.version), run_id=mv.run_id or "", model_uri=mv.source)


def log_run(tracking_uri: str, experiment: str, run_name: str, params: dict[str, object],
            metrics: dict[str, float], files: list[Path], tags: dict[str, str] | None = None,
            folders: dict[str, Path] | None = None) -> str:
    """One MLflow run with params, metrics and files as artifacts (no model), plus whole folders under the artifact
    paths `folders` names; its run id."""
    import mlflow

    _client(tracking_uri)
    with mlflow.start_run(experiment_id=ensure_experiment(tracking_uri, experiment), run_name=run_name,
                          tags=tags) as run:
        mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
        mlflow.log_metrics(metrics)
        for path in files:
            mlflow.log_artifact(str(path))
        for artifact_path, folder in (folders or {}).items():
            mlflow.log_artifacts(str(folder), artifact_path=artifact_path)
    return run.info.run_id


def resolve_model_uri(tracking_uri: str, uri: str) -> tuple[str, str]:
    """(name, version) of 'models:/name/3' or 'models:/name@alias'; ValueError saying which part is wrong."""
    match = MODEL_URI.fullmatch(uri)
    if not match:
        raise ValueError(f"{uri!r}: expected models:/NAME/VERSION or models:/NAME@ALIAS")
    try:
        mv = resolve_version(tracking_uri, match["name"], match["version"], match["alias"])
    except RegistryLookupError as e:
        raise RegistryLookupError(f"{uri!r} is not in the registry at {tracking_uri}: {e}") from None
    return mv.name, mv.version


def download_registered_model(tracking_uri: str, uri: str, cache_root: str | Path) -> Path:
    """The model directory of 'models:/name/3' or 'models:/name@alias' (approved versions only), fetched once
    into cache_root/<name>-v<version>/model, the folder the deploy task uses."""
    name, version = resolve_model_uri(tracking_uri, uri)
    return download_approved_model(tracking_uri, name, version, Path(cache_root) / f"{name}-v{version}" / "model")
