# Small model server images, all FROM python:3.11-slim.
#
#   docker build -t small-model-server:cpu .                                   # serving, CPU
#   docker build --build-arg ORT_FLAVOUR=gpu -t small-model-server:gpu .      # serving, GPU
#   docker build --target train -t small-model-server:train .                 # training (torch)
#
# Stages:
#   serve-deps  a virtualenv with the serving dependencies from pyproject.toml plus the ONNX
#               Runtime extra picked by ORT_FLAVOUR: `cpu` (onnxruntime) or `gpu`
#               (onnxruntime-gpu[cuda,cudnn]: the CUDA and cuDNN libraries come as nvidia-* wheels)
#   serve       (default) that virtualenv + app/ + models/: no torch, no compilers, no tests, no
#               datasets; non-root; HEALTHCHECK on /readyz; `python -m app` as PID 1 (uvicorn
#               finishes the requests in flight on SIGTERM, then drains the batchers)
#   train       the training package with the [train] extra (torch from PyPI, or from
#               TORCH_INDEX_URL, e.g. https://download.pytorch.org/whl/cpu for a CPU-only image)
#
# Settings are SMS_* environment variables (app/settings.py); models are read from
# SMS_MODELS_DIR=/app/models, which a read-only bind mount can replace without a rebuild.
# The `serve` stage is last on purpose: a plain `docker build .` builds it.

ARG PYTHON_IMAGE=python:3.11-slim

# -- serving dependencies -----------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS serve-deps
ARG ORT_FLAVOUR=cpu
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /build
COPY pyproject.toml ./
# The requirement list is read from pyproject.toml (single source of truth): the base
# dependencies plus the [cpu] or [gpu] extra.
RUN case "$ORT_FLAVOUR" in cpu|gpu) ;; \
      *) echo "ORT_FLAVOUR must be cpu or gpu, not '$ORT_FLAVOUR'" >&2; exit 1 ;; esac \
 && python -c "import sys, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies'][sys.argv[1]]))" "$ORT_FLAVOUR" > requirements.txt \
 && cat requirements.txt \
 && python -m venv /opt/venv
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    /opt/venv/bin/pip install -r requirements.txt \
 # nothing in the running image installs packages: drop pip and setuptools from the venv
 && /opt/venv/bin/pip uninstall -y pip setuptools \
 # headers, static libraries and the packages' own test suites are never used at run time
 && find /opt/venv \( -name '*.a' -o -name '*.h' -o -name '*.hpp' -o -name '*.cuh' \) -type f -delete \
 && find /opt/venv -depth -type d \( -name include -path '*/nvidia/*' \) -exec rm -rf {} + \
 && find /opt/venv -depth -type d -name tests -path '*/site-packages/numpy/*' -exec rm -rf {} + \
 && if [ "$ORT_FLAVOUR" = gpu ]; then \
      # the CUDA/cuDNN libraries live in site-packages/nvidia/*/lib: list them for ldconfig so
      # that ONNX Runtime's CUDA provider finds them without LD_LIBRARY_PATH
      ls -d /opt/venv/lib/python3*/site-packages/nvidia/*/lib > /opt/venv/nvidia-libs.conf; \
    else : > /opt/venv/nvidia-libs.conf; fi

# -- training image (optional: `docker compose --profile train ...`) ------------------------
FROM ${PYTHON_IMAGE} AS train
ARG TORCH_INDEX_URL=
ENV PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /workspace
COPY pyproject.toml ./
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['train']))" > /tmp/requirements.txt \
 && python -m venv /opt/venv
RUN --mount=type=cache,target=/root/.cache/pip,sharing=locked \
    /opt/venv/bin/pip install ${TORCH_INDEX_URL:+--extra-index-url "$TORCH_INDEX_URL"} -r /tmp/requirements.txt
RUN groupadd --gid 10001 trainer \
 && useradd --uid 10001 --gid trainer --home-dir /workspace --no-create-home --shell /usr/sbin/nologin trainer \
 && mkdir -p /workspace/models /workspace/runs /data \
 && chown trainer:trainer /workspace /workspace/models /workspace/runs
COPY app/ ./app/
COPY training/ ./training/
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    SMS_DATA_DIR=/data \
    HOME=/tmp \
    MPLCONFIGDIR=/tmp/matplotlib
USER trainer
# `docker compose --profile train run --rm train mnist` runs `python -m training mnist`:
# datasets from /data, the model written to /workspace/models/mnist, checkpoints to runs/.
ENTRYPOINT ["python", "-m", "training"]
CMD ["--help"]

# -- serving image (default target) ----------------------------------------------------------
FROM ${PYTHON_IMAGE} AS serve
ARG ORT_FLAVOUR=cpu
COPY --from=serve-deps /opt/venv /opt/venv
RUN groupadd --gid 10001 app \
 && useradd --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app \
 && cp /opt/venv/nvidia-libs.conf /etc/ld.so.conf.d/zz-nvidia-wheels.conf \
 && ldconfig
WORKDIR /app
# Root-owned and read-only for the service user: the code and models cannot be changed by it.
COPY app/ ./app/
COPY models/ ./models/
# HOME=/tmp: the one writable place under compose's read-only root (a tmpfs there), for the
# caches libraries keep in $HOME (ONNX Runtime, CUDA's kernel cache).
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp \
    SMS_MODELS_DIR=/app/models \
    SMS_HOST=0.0.0.0 \
    SMS_PORT=8000
LABEL org.opencontainers.image.title="small-model-server" \
      org.opencontainers.image.description="Small image, text and audio classifiers over HTTP (ONNX Runtime)" \
      org.opencontainers.image.licenses="Apache-2.0" \
      sms.ort-flavour="${ORT_FLAVOUR}"
USER app
EXPOSE 8000
STOPSIGNAL SIGTERM
# Healthy = ready: every model loaded and warmed up (urlopen raises on the 503 of /readyz).
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('SMS_PORT', '8000'), timeout=4)"]
# Exec form: python is PID 1 and gets SIGTERM itself; uvicorn stops accepting, lets the
# requests in flight finish (up to 30 s), then the lifespan shutdown drains the batchers.
ENTRYPOINT ["python", "-m", "app"]
