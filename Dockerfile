# dtpush: the receiver as a small container. Configure it through DTPUSH_* variables.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY receiver ./receiver
COPY handlers ./handlers
RUN pip wheel --no-cache-dir --wheel-dir /wheels .

FROM python:3.11-slim
RUN useradd --system --create-home --home-dir /var/lib/dtpush --uid 10001 dtpush
COPY --from=build /wheels /wheels
RUN pip install --no-cache-dir /wheels/*.whl && rm -rf /wheels
USER 10001:10001
WORKDIR /var/lib/dtpush
ENV DTPUSH_SERVER_HOST=0.0.0.0 \
    DTPUSH_SERVER_PORT=8080 \
    PYTHONUNBUFFERED=1
EXPOSE 8080
VOLUME ["/var/lib/dtpush"]
HEALTHCHECK --interval=15s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request,sys; sys.exit(urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2).status != 200)"]
STOPSIGNAL SIGTERM
ENTRYPOINT ["dtpush"]
CMD ["serve"]
