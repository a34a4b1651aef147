# chatsvc's production image.
#   docker build -t chatsvc .
#   docker run -p 8080:8080 -e CHATSVC_OKTA_ISSUER=https://example.okta.com/oauth2/default chatsvc
# To try it without Okta (anyone can sign in at any level: never on a network you share):
#   docker run -p 8080:8080 -e CHATSVC_ENV=development chatsvc
# deploy/compose.yaml shows the full topology (PostgreSQL, Redis, migrations, two replicas).

# --- build: wheels for the pinned dependencies, then chatsvc's own -------------------------
FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Dependencies first, in their own layer: a change to chatsvc's code reuses it.
COPY constraints.txt ./
RUN pip wheel --wheel-dir /wheels --requirement constraints.txt
COPY setup.cfg pyproject.toml README.md ./
COPY chatsvc ./chatsvc
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- run --------------------------------------------------------------------------------------
FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    CHATSVC_ENV=production \
    CHATSVC_HOST=0.0.0.0 \
    CHATSVC_PORT=8080 \
    CHATSVC_DATA_DIR=/var/lib/chatsvc \
    CHATSVC_CONFIG=/app/config/chatsvc.toml \
    CHATSVC_MIGRATIONS_DIR=/app/migrations \
    CHATSVC_DRAIN_SECONDS=5

RUN groupadd --system chatsvc && useradd --system --gid chatsvc --home /app chatsvc \
    && mkdir -p /var/lib/chatsvc && chown chatsvc:chatsvc /var/lib/chatsvc

COPY --from=build /wheels /wheels
COPY constraints.txt /tmp/constraints.txt
# Not editable: the image holds an installed package, its migrations and config.
RUN pip install --no-index --find-links /wheels --constraint /tmp/constraints.txt chatsvc \
    && rm -rf /wheels /tmp/constraints.txt

WORKDIR /app
COPY run.py ./
COPY migrations ./migrations
COPY config ./config

USER chatsvc
EXPOSE 8080
VOLUME ["/var/lib/chatsvc"]
HEALTHCHECK --interval=10s --timeout=3s CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/readyz', timeout=2)" || exit 1
ENTRYPOINT ["python", "run.py"]
CMD ["serve"]
