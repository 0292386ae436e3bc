"""A recipe's AWS identity and bucket from the Prefect blocks its `aws` section names (prefect-aws `AwsCredentials`,
`S3Bucket`), resolved once when a flow starts: `@aws_from_recipe` under `@flow`. The core gets a plain boto3 session
(llm_finetune.aws.using_session: AWS clients and the MLflow ARN signer) and never a block, and the bucket as recipe
fields; the recipe only ever holds block names, so no key reaches MLflow params, logs or artifacts."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import ParamSpec, TypeVar
from urllib.parse import urlparse

from prefect.blocks.core import Block
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL
from pydantic import BaseModel

from llm_finetune.aws import AwsSession, using_session
from llm_finetune.errors import RecipeError
from llm_finetune.recipes.base import MODEL_PACKAGES_FOLDER
from llm_finetune.registry.mlflow_registry import check_arn_tracking

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R", bound=BaseModel)  # a recipe with an `aws` section (AwsSection); `sagemaker`, `registry` if it has them
B = TypeVar("B", bound=Block)


def _load_block(block_type: type[B], field: str, name: str) -> B:
    try:
        return block_type.load(name)
    except ValueError as e:
        if not isinstance(e.__cause__, ObjectNotFound):
            raise
        server = PREFECT_API_URL.value() or "the temporary Prefect server"
        raise RecipeError(f"{field}: no {block_type.__name__} block named {name!r} on {server}; create it (Prefect "
                          f"UI: Blocks, or {block_type.__name__}(...).save({name!r})) or remove {field} to use the "
                          "default AWS credential chain") from None


def resolve_aws(recipe: R) -> tuple[R, AwsSession | None]:
    """The recipe with the S3Bucket block's bucket filled in, and the session its AWS clients use (None: the default
    chain). Raises RecipeError naming the field when a named block does not exist."""
    spec = recipe.aws
    if spec.credentials_block is None and spec.s3_bucket_block is None:
        return recipe, None
    # lazy: prefect_aws imports aiobotocore and its ECS worker (~3 s); recipes that name no block never pay for it
    from prefect_aws import AwsCredentials, S3Bucket

    bucket = _load_block(S3Bucket, "aws.s3_bucket_block", spec.s3_bucket_block) if spec.s3_bucket_block else None
    if spec.credentials_block is not None:
        field, name = "aws.credentials_block", spec.credentials_block
        credentials = _load_block(AwsCredentials, field, name)
    else:
        field, name = "aws.s3_bucket_block", spec.s3_bucket_block
        credentials = bucket.credentials
        if not isinstance(credentials, AwsCredentials):
            raise RecipeError(f"aws.s3_bucket_block: S3Bucket block {name!r} holds {type(credentials).__name__}, not "
                              "AwsCredentials; name an AwsCredentials block in aws.credentials_block")
    session = AwsSession(credentials.get_boto3_session(), source=f"{field} {name!r}",
                         endpoint_url=credentials.aws_client_parameters.endpoint_url)
    if bucket is not None:
        recipe = _in_bucket(recipe, bucket.bucket_name, bucket.bucket_folder)
    return recipe, session


def _in_bucket(recipe: R, bucket: str, folder: str) -> R:
    """The recipe's S3 places that the S3Bucket block gives, where the recipe has them: sagemaker.bucket (its folder
    before sagemaker.prefix) and registry.sagemaker.s3_prefix (default `s3://<bucket>/<folder>/model-packages`).
    Either one given for another bucket is refused, naming both fields."""
    block = f"aws.s3_bucket_block {recipe.aws.s3_bucket_block!r} ({bucket!r})"
    update = {}
    if (sagemaker := getattr(recipe, "sagemaker", None)) is not None:
        if sagemaker.bucket is not None and sagemaker.bucket != bucket:
            raise RecipeError(f"sagemaker.bucket ({sagemaker.bucket!r}) is not the bucket of {block}: remove "
                              "sagemaker.bucket")
        prefix = "/".join(p.strip("/") for p in (folder, sagemaker.prefix) if p.strip("/"))
        update["sagemaker"] = sagemaker.model_copy(update={"bucket": bucket, "prefix": prefix})
    registry = getattr(recipe, "registry", None)
    if (package := getattr(registry, "sagemaker", None)) is not None:
        if package.s3_prefix is None:
            key = "/".join(p.strip("/") for p in (folder, MODEL_PACKAGES_FOLDER) if p.strip("/"))
            package = package.model_copy(update={"s3_prefix": f"s3://{bucket}/{key}"})
        elif urlparse(package.s3_prefix).netloc != bucket:
            raise RecipeError(f"registry.sagemaker.s3_prefix ({package.s3_prefix!r}) is not in the bucket of {block}: "
                              "remove registry.sagemaker.s3_prefix")
        update["registry"] = registry.model_copy(update={"sagemaker": package})
    return recipe.model_copy(update=update) if update else recipe


def tracking_uris(recipe: BaseModel) -> list[str]:
    """The MLflow tracking URIs a run talks to: the recipe's, or (chat inference) its registered model's and its own."""
    return recipe.tracking_uris() if hasattr(recipe, "tracking_uris") else [recipe.tracking_uri()]


def aws_from_recipe(flow_fn: Callable[P, T]) -> Callable[P, T]:
    """Under `@flow`: the flow's `recipe` parameter gets its named AWS blocks resolved before the first stage, and
    every AWS client inside the run (tasks, nested flows, rollback hooks) uses that session, as does the signer of
    a SageMaker managed MLflow ARN's requests. Such an ARN as tracking URI is checked there too (plugin, AWS
    credentials), not first at registration."""
    # Evaluated now, in the flow's module: Prefect resolves a flow's string annotations in the globals of the
    # function it wraps, which would be this module's.
    signature = inspect.signature(flow_fn, eval_str=True)

    @functools.wraps(flow_fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        bound = signature.bind(*args, **kwargs)
        bound.arguments["recipe"], session = resolve_aws(bound.arguments["recipe"])
        with using_session(session):
            for uri in tracking_uris(bound.arguments["recipe"]):
                check_arn_tracking(uri)  # an ARN's plugin and signing credentials, up front
            return flow_fn(*bound.args, **bound.kwargs)

    run.__signature__ = signature  # type: ignore[attr-defined]
    return run
