# chatsvc: docker build -t chatsvc . && docker run -p 8080:8080 -e CHATSVC_HOST=0.0.0.0 chatsvc
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    CHATSVC_DATA_DIR=/var/lib/chatsvc

RUN groupadd --system chatsvc && useradd --system --gid chatsvc --home /app chatsvc \
    && mkdir -p /var/lib/chatsvc && chown chatsvc:chatsvc /var/lib/chatsvc

WORKDIR /app
COPY setup.cfg pyproject.toml README.md run.py ./
COPY chatsvc ./chatsvc
COPY migrations ./migrations
COPY config ./config
# Editable: run.py, migrations/ and config/ are read from /app.
RUN pip install -e . uvloop

USER chatsvc
EXPOSE 8080
VOLUME ["/var/lib/chatsvc"]
HEALTHCHECK --interval=30s --timeout=3s CMD python -c "import urllib.request,sys; urllib.request.urlopen('http://127.0.0.1:8080/healthz', timeout=2)" || exit 1
CMD ["python", "run.py"]
