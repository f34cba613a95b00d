# Relais: FHIR R4B case-management server
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    RELAIS_DATABASE_URL=sqlite+aiosqlite:////data/relais.db \
    RELAIS_EXPORT_DIR=/data/exports

RUN useradd --create-home --uid 10001 relais \
    && mkdir -p /data \
    && chown relais:relais /data

WORKDIR /app
COPY pyproject.toml README.md alembic.ini ./
COPY app ./app
COPY alembic ./alembic
RUN pip install --no-cache-dir .

USER 10001
VOLUME ["/data"]
EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/healthz')"]
CMD ["relais", "serve", "--host", "0.0.0.0", "--port", "8000"]
