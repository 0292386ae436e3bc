"""A recipe's AWS identity and bucket from the Prefect blocks its `aws` section names (prefect-aws `AwsCredentials`,
`S3Bucket`), resolved once when a flow starts: `@aws_from_recipe` under `@flow`. The core gets a plain boto3 session
(llm_finetune.aws.using_session) and never a block; the recipe only ever holds block names, so no key reaches MLflow
params, logs or artifacts."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from prefect.blocks.core import Block
from prefect.exceptions import ObjectNotFound
from prefect.settings import PREFECT_API_URL

from llm_finetune.aws import AwsSession, using_session
from llm_finetune.errors import RecipeError
from llm_finetune.recipes import RecipeBase
from llm_finetune.registry.mlflow_registry import check_arn_tracking

P = ParamSpec("P")
T = TypeVar("T")
R = TypeVar("R", bound=RecipeBase)
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
    if bucket is not None and recipe.sagemaker is not None:
        given = recipe.sagemaker.bucket
        if given is not None and given != bucket.bucket_name:
            raise RecipeError(f"sagemaker.bucket ({given!r}) is not the bucket of aws.s3_bucket_block "
                              f"{spec.s3_bucket_block!r} ({bucket.bucket_name!r}): remove sagemaker.bucket")
        prefix = "/".join(p.strip("/") for p in (bucket.bucket_folder, recipe.sagemaker.prefix) if p.strip("/"))
        sagemaker = recipe.sagemaker.model_copy(update={"bucket": bucket.bucket_name, "prefix": prefix})
        recipe = recipe.model_copy(update={"sagemaker": sagemaker})
    return recipe, session


def aws_from_recipe(flow_fn: Callable[P, T]) -> Callable[P, T]:
    """Under `@flow`: the flow's `recipe` parameter gets its named AWS blocks resolved before the first stage, and
    every AWS client inside the run (tasks, nested flows, rollback hooks) uses that session. A SageMaker managed
    MLflow ARN as tracking URI is checked there too (plugin, AWS credentials), not first at registration."""
    # Evaluated now, in the flow's module: Prefect resolves a flow's string annotations in the globals of the
    # function it wraps, which would be this module's.
    signature = inspect.signature(flow_fn, eval_str=True)

    @functools.wraps(flow_fn)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        bound = signature.bind(*args, **kwargs)
        bound.arguments["recipe"], session = resolve_aws(bound.arguments["recipe"])
        check_arn_tracking(bound.arguments["recipe"].tracking_uri())  # an ARN's plugin and credentials, up front
        with using_session(session):
            return flow_fn(*bound.args, **bound.kwargs)

    run.__signature__ = signature  # type: ignore[attr-defined]
    return run
