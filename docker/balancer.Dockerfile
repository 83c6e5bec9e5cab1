# nginx in front of the cloud replicas: retries a request on the next replica when
# one is down, so stopping a replica loses nothing (see docker/nginx.conf).
#
#   docker build -f docker/balancer.Dockerfile -t devtune-balancer docker/
#
# Built from the same Debian base as the cloud image, so an air-gapped machine
# with one local base image (and a Debian mirror) can build both. Runs as the
# unprivileged www-data user on port 8080. The build context is docker/ alone;
# docker/.dockerignore keeps the wheelhouse out of it.

ARG BASE_IMAGE=python:3.11-slim
FROM ${BASE_IMAGE}

RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install --yes --no-install-recommends nginx-light \
 && apt-get clean \
 && rm -rf /var/lib/apt/lists/* \
 && rm -f /etc/nginx/sites-enabled/default

COPY nginx.conf /etc/nginx/nginx.conf

USER www-data
EXPOSE 8080
# Healthy when some replica behind it is ready. python3 is in the base image.
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
    CMD ["python3", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2)"]
# SIGQUIT is nginx's graceful stop: requests in flight are finished first.
STOPSIGNAL SIGQUIT
# -e: log to stderr from the first line, before nginx.conf is read.
CMD ["nginx", "-e", "stderr", "-g", "daemon off;"]
