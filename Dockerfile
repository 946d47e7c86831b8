# Wattbridge as a container: non-root, state on a volume, healthcheck on /healthz.
#   docker build -t wattbridge .
#   docker run -d --name wattbridge --env-file wattbridge.env -p 8080:8080 \
#       -v wattbridge-state:/var/lib/wattbridge wattbridge
# Mount your own /etc/wattbridge (config.toml, rules/, templates/) to replace the shipped ones.
# Give SIGTERM time to drain: `docker stop -t 30` (drain_timeout is 10s by default).

FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY bridge ./bridge
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    WATTBRIDGE_LISTEN=0.0.0.0:8080
RUN groupadd --system --gid 10001 wattbridge \
 && useradd --system --uid 10001 --gid wattbridge --home-dir /var/lib/wattbridge \
        --shell /usr/sbin/nologin wattbridge \
 && install -d -o wattbridge -g wattbridge -m 0750 /var/lib/wattbridge
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
COPY deploy/config.toml /etc/wattbridge/config.toml
COPY rules /etc/wattbridge/rules
COPY templates /etc/wattbridge/templates

USER wattbridge:wattbridge
WORKDIR /var/lib/wattbridge
VOLUME ["/var/lib/wattbridge"]
EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=4)"]
ENTRYPOINT ["wattbridge"]
CMD ["run", "-c", "/etc/wattbridge/config.toml"]
