# syntax=docker/dockerfile:1
# One image for the operator, the gateway and the CLI: `llm-optimizer <command>`.
# Build: `make image` (docker build). Slim, non-root (uid 65532), no build tools at run time.

FROM python:3.11-slim-bookworm AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY optimizer_operator ./optimizer_operator
RUN python -m venv /opt/llmopt \
 && /opt/llmopt/bin/pip install --upgrade pip \
 && /opt/llmopt/bin/pip install .

FROM python:3.11-slim-bookworm
LABEL org.opencontainers.image.title="llm-optimizer" \
      org.opencontainers.image.description="Kubernetes operator and gateway that keep LLM apps on their best configuration" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/llmopt/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp
COPY --from=build /opt/llmopt /opt/llmopt
USER 65532:65532
EXPOSE 8000 8080 9090
ENTRYPOINT ["llm-optimizer"]
CMD ["operator"]
