# The cloud half of Device Tuning: the FastAPI service that hosts the task decoders.
#
# Only the [cloud] extra is installed (fastapi, uvicorn, onnxruntime, msgpack,
# pydantic, numpy): no torch, so `python -c "import torch"` fails in here.
#
#   docker build -f docker/cloud.Dockerfile --target cloud -t devtune-cloud .
#   docker run -p 127.0.0.1:8000:8000 -v "$PWD/bundles:/bundles:ro" \
#       -e DEVTUNE_CLOUD_API_KEYS='["a-long-random-key"]' devtune-cloud
#
# Stages (build from the repository root):
#   build          a venv in /opt/venv; dependencies first, the project last
#   cloud          the runtime: non-root, settings by env, serves every bundle found on
#                  the volume at /bundles (the model repository)
#   cloud-bundled  cloud plus one bundle baked in (--build-arg BUNDLE_DIR=bundles/default)
#
# Listening on 0.0.0.0, the server turns bearer-token auth on: give it keys with
# DEVTUNE_CLOUD_API_KEYS (a JSON list) or DEVTUNE_CLOUD_KEYS_FILE, or, on a private
# network only, DEVTUNE_CLOUD_AUTH=off. Without either it refuses to start.
#
# Build arguments:
#   BASE_IMAGE        any Debian-based image with python3 >= 3.11 and venv
#                     (python:3.11-slim, or a local debootstrap image, see docker/README.md)
#   PIP_INSTALL_ARGS  extra pip flags; air-gapped: "--no-index --find-links /wheelhouse"
#                     with docker/wheelhouse filled by `pip download` on the host
#   PIP_CERT          path inside the build of a CA bundle for pip (behind a TLS proxy:
#                     put it in docker/wheelhouse/, pass /wheelhouse/NAME); build stage only
#
# No "# syntax=" line on purpose: it makes BuildKit pull a frontend image, which an
# air-gapped builder cannot do. The file also builds with the legacy builder.

ARG BASE_IMAGE=python:3.11-slim

# ---------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS build

ARG PIP_INSTALL_ARGS=""
ARG PIP_CERT
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

RUN python3 -m venv /opt/venv

# Wheels for the air-gapped path (docker/wheelhouse is not in git; the wildcard
# lets the build go on without it), and the script that reads pyproject.toml,
# which lands beside them where pip ignores it. This stage is not shipped: neither
# the wheels nor a CA bundle reach the final image.
COPY docker/pyproject_requirements.py docker/wheelhouse* /wheelhouse/

# Dependencies in their own layer, keyed on pyproject.toml alone: code edits reuse it.
WORKDIR /src
COPY pyproject.toml /src/
RUN python3 /wheelhouse/pyproject_requirements.py pyproject.toml --extra cloud > /tmp/requirements.txt \
 && /opt/venv/bin/pip install ${PIP_INSTALL_ARGS} -r /tmp/requirements.txt

# The project itself; its dependencies are already there. Only the packages and
# what their metadata needs: bundles, tests and docs stay out of the layer.
COPY README.md /src/
COPY shared /src/shared
COPY device_client /src/device_client
COPY cloud_server /src/cloud_server
COPY models /src/models
COPY devtune /src/devtune
# pip and setuptools are not needed to serve; dropping them trims the image.
RUN /opt/venv/bin/pip install ${PIP_INSTALL_ARGS} --no-deps /src \
 && /opt/venv/bin/python -m pip uninstall --yes --quiet setuptools pip

# ---------------------------------------------------------------------------
FROM ${BASE_IMAGE} AS cloud

# A fixed numeric uid, so Kubernetes' runAsNonRoot can verify it without /etc/passwd.
RUN useradd --uid 10001 --user-group --home-dir /home/devtune --create-home \
        --shell /usr/sbin/nologin devtune \
 && mkdir -p /bundles \
 && chown 10001:10001 /bundles

COPY --from=build /opt/venv /opt/venv

# Every server setting is an env var DEVTUNE_CLOUD_<FIELD> (cloud_server.settings.CloudSettings).
# WORKERS=0: one server process per whole CPU the container gets (its CPU set, capped by
# `docker run --cpus`, i.e. the cgroup's cpu.max), each with its own batcher.
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    DEVTUNE_CLOUD_HOST=0.0.0.0 \
    DEVTUNE_CLOUD_PORT=8000 \
    DEVTUNE_CLOUD_REPOSITORY=/bundles \
    DEVTUNE_CLOUD_WORKERS=0

# The model repository: every folder below it that holds a manifest.json is served.
# Mount it read-only; every replica can share one.
VOLUME ["/bundles"]
USER 10001:10001
WORKDIR /home/devtune
EXPOSE 8000

# Ready means decoders loaded and warmed (GET /readyz answers 200); urllib raises
# on anything else, so the exit status is the verdict. No curl in the image.
HEALTHCHECK --interval=10s --timeout=3s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/readyz' % os.environ.get('DEVTUNE_CLOUD_PORT', '8000'), timeout=2)"]

CMD ["python", "-m", "cloud_server"]

# ---------------------------------------------------------------------------
FROM cloud AS cloud-bundled

# A path of the build context. Kept outside /bundles so that a volume mounted
# there cannot hide it; bundles on such a volume are served beside it.
ARG BUNDLE_DIR=bundles/default
COPY ${BUNDLE_DIR} /opt/devtune/bundle
ENV DEVTUNE_CLOUD_BUNDLE=/opt/devtune/bundle
