# One image for every mlplane service. With no MLPLANE_* settings it runs the whole platform
# embedded (`docker run -p 8000:8000 mlplane`); docker-compose.yml and deploy/k8s/ run one
# service per container by setting MLPLANE_SERVICE and the store, bus and collector URLs.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /src
COPY pyproject.toml README.md ./
COPY libs libs
COPY services services
RUN pip install . && rm -rf /src

RUN groupadd --system --gid 10001 mlplane \
    && useradd --system --uid 10001 --gid 10001 --home-dir /var/lib/mlplane mlplane \
    && mkdir -p /var/lib/mlplane/artifacts \
    && chown -R mlplane:mlplane /var/lib/mlplane
USER 10001:10001
WORKDIR /var/lib/mlplane
ENV MLPLANE_HOME=/var/lib/mlplane

EXPOSE 8000
STOPSIGNAL SIGTERM
CMD ["mlplane", "up", "--host", "0.0.0.0"]
