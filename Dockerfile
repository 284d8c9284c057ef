FROM python:3.11-slim-bookworm

RUN apt-get update \
 && apt-get install -y --no-install-recommends unixodbc odbc-mariadb libpango-1.0-0 libpangoft2-1.0-0 \
    libharfbuzz-subset0 libharfbuzz-bin fontconfig fonts-dejavu-core fonts-noto-cjk poppler-utils \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /app
COPY pyproject.toml README.md ./
COPY hub ./hub
COPY connectors ./connectors
COPY mappings ./mappings
COPY certificates ./certificates
RUN pip install --no-cache-dir '.[all]'

RUN useradd --create-home hub && mkdir -p /app/var && chown hub /app/var
USER hub
ENV HUB_HTTP_HOST=0.0.0.0 HUB_HTTP_PORT=8080
EXPOSE 8080
HEALTHCHECK --interval=15s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1
ENTRYPOINT ["python", "-m", "hub"]
CMD ["run"]
