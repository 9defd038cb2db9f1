# rtpipe serve in a container (not built on the project's machines: no Docker daemon there).
#   docker build -t rtpipe . && docker run --stop-timeout 60 -p 8000:8000 -v rtpipe:/data -e RTPIPE_TOKEN=... rtpipe
# It listens on 0.0.0.0 inside the container, so the API needs a token: RTPIPE_TOKEN, or one is
# generated and printed at start. `docker stop` sends SIGTERM: every stream's outputs are finalised.
FROM python:3.11-slim
RUN apt-get update && apt-get install -y --no-install-recommends ffmpeg && rm -rf /var/lib/apt/lists/*
WORKDIR /opt/rtpipe
COPY pyproject.toml constraints.txt README.md ./
COPY pipeline ./pipeline
RUN pip install --no-cache-dir -c constraints.txt ".[serve]" && pip install --no-cache-dir --no-deps "trackers==2.6.1"
RUN useradd --create-home rtpipe && mkdir /data && chown rtpipe /data
USER rtpipe
WORKDIR /data
EXPOSE 8000
STOPSIGNAL SIGTERM
CMD ["rtpipe", "serve", "--listen", "0.0.0.0:8000", "--state", "/data/streams.json", "--outputs", "/data/outputs", "--spool", "/data/spool"]
