# mt-dnn on a CUDA base with a CUDA build of PyTorch.
#
#   docker build -t mt-dnn .
#   docker run --gpus all -v $PWD/data:/workspace/mt-dnn/data mt-dnn bash scripts/run_rte.sh
#
# Build arguments:
#   CUDA_VERSION   12.6.3   CUDA of the base image and of the torch wheel (cu126). PyTorch's 12.6 wheels are
#                           the ones that still carry Volta kernels (sm_70, V100); its 12.8 wheels dropped Volta
#                           from release 2.11 on and its 13.x wheels start at Turing (sm_75).
#   TORCH_VERSION  2.13.0   any version in requirements.txt's range that has a wheel for that CUDA
#   TORCH_INDEX_URL         default https://download.pytorch.org/whl/cu<major><minor> from CUDA_VERSION
#   BASE_IMAGE              default nvidia/cuda:${CUDA_VERSION}-base-ubuntu24.04 (any Debian/Ubuntu with python3)
#   USER_UID       1000     uid of the non-root user, to match the owner of the mounted data folder
ARG CUDA_VERSION=12.6.3
ARG BASE_IMAGE=nvidia/cuda:${CUDA_VERSION}-base-ubuntu24.04
FROM ${BASE_IMAGE}

ARG CUDA_VERSION
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=
ARG USER_UID=1000

# TOKENIZERS_PARALLELISM is no secret (DL3064 matches "TOKEN").
# hadolint ignore=DL3064
ENV DEBIAN_FRONTEND=noninteractive \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    TOKENIZERS_PARALLELISM=false \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# python3-venv brings ensurepip; curl serves download.sh. The torch wheel carries its own CUDA libraries,
# so the small -base image (driver hooks only) is enough. The distribution's versions are wanted, unpinned.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates curl \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /opt/venv

RUN index="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cu$(echo "${CUDA_VERSION}" | cut -d. -f1,2 | tr -d .)}" \
    && echo "torch ${TORCH_VERSION} from ${index}" \
    && pip install --index-url "${index}" "torch==${TORCH_VERSION}"

WORKDIR /workspace/mt-dnn
# Requirements first, so that a code change does not reinstall them; torch is already in range.
COPY requirements.txt ./
RUN pip install -r requirements.txt

# A non-root user owns the checkout and the Hugging Face cache (the base may hold a user with this uid).
RUN existing="$(getent passwd "${USER_UID}" | cut -d: -f1)" \
    && if [ -n "${existing}" ]; then userdel "${existing}"; fi \
    && useradd --create-home --uid "${USER_UID}" --shell /bin/bash mtdnn
COPY --chown=mtdnn:mtdnn . .
USER ${USER_UID}
ENV HF_HOME=/home/mtdnn/.cache/huggingface

CMD ["bash"]
