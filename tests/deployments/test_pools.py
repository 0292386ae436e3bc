import asyncio

import pytest
from prefect.client.orchestration import get_client
from prefect.utilities.templating import apply_values

from deployments.pools import main


async def read_pool(name):
    async with get_client() as client:
        return await client.read_work_pool(name)


@pytest.mark.parametrize("kind", ["docker", "kubernetes"])
def test_pool_from_the_job_template_runs_the_image_with_the_team_registry(prefect_server, kind, capsys):
    main([kind, "--tracking-uri", "http://mlflow.team:5000", "--image", "registry.team/llmft:cpu"])
    assert capsys.readouterr().out.startswith(f"work pool llmft-{kind} ({kind}) created")
    main([kind, "--tracking-uri", "http://mlflow.team:5001"])  # again: the pool is updated, not duplicated
    assert capsys.readouterr().out.startswith(f"work pool llmft-{kind} ({kind}) updated")

    pool = asyncio.run(read_pool(f"llmft-{kind}"))
    assert pool.type == kind
    defaults = {k: v["default"] for k, v in pool.base_job_template["variables"]["properties"].items() if "default" in v}
    job = apply_values(pool.base_job_template["job_configuration"], defaults)  # what a flow run gets, by default
    env = {"LLMFT_PROJECT_DIR": "/opt/llmft", "MLFLOW_TRACKING_URI": "http://mlflow.team:5001"}
    assert job["env"] == env
    if kind == "docker":
        assert job["image"] == "llm-finetune-flows:cpu" and job["auto_remove"] is True
    else:
        container = job["job_manifest"]["spec"]["template"]["spec"]["containers"][0]
        assert container["image"] == "llm-finetune-flows:cpu" and container["env"] == env
        assert container["resources"]["limits"]["nvidia.com/gpu"] == 0
