# This project as a CPU image, for the docker and kubernetes work pools (deployments/work_pools/): each flow run starts
# a container of it, and the deployments' pull step enters LLMFT_PROJECT_DIR (/opt/llmft).
#   docker build -t llm-finetune-flows:cpu .
# GPU: build on the Hugging Face PyTorch training DLC and keep its CUDA torch (README, "Team setup"):
#   docker build --build-arg BASE=<HF PyTorch training DLC image> --build-arg TORCH=keep -t llm-finetune-flows:gpu .
ARG BASE=python:3.11-slim
FROM ${BASE}
ARG TORCH=cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 \
    HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false \
    PREFECT_SERVER_ANALYTICS_ENABLED=false MLFLOW_ENABLE_TELEMETRY=false DO_NOT_TRACK=1 \
    LLMFT_PROJECT_DIR=/opt/llmft
WORKDIR /opt/llmft
# Dependencies first (a layer that changes with constraints.txt only), exactly the pinned set, as scripts/setup.sh does.
COPY constraints.txt ./
RUN if [ "$TORCH" = keep ]; then grep -v '^torch==' constraints.txt > /tmp/constraints.txt; \
    else cp constraints.txt /tmp/constraints.txt; fi && \
    pip install --no-deps --extra-index-url https://download.pytorch.org/whl/cpu -r /tmp/constraints.txt
COPY . .
# TORCH=keep: the project pins torch 2.13, the DLC brings its own, so pip check would refuse it.
RUN pip install --no-deps -e . && if [ "$TORCH" != keep ]; then pip check; fi
