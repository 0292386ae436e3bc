import pytest
from botocore.exceptions import ClientError, EndpointConnectionError, NoCredentialsError

from llm_finetune.aws import is_permanent


def client_error(status: int, code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
                       "CreatePipeline")


@pytest.mark.parametrize(("error", "permanent"), [
    (NoCredentialsError(), True),
    (client_error(400, "ValidationException"), True),
    (client_error(404, "ResourceNotFound"), True),
    (client_error(400, "ThrottlingException"), False),
    (client_error(429, "TooManyRequests"), False),
    (client_error(503, "ServiceUnavailable"), False),
    (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), False),
    (RuntimeError("not AWS"), False),
])
def test_only_what_a_retry_may_fix_is_retried(error, permanent):
    assert is_permanent(error) is permanent
