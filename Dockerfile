# flowviz: a residual network seen as a continuous flow (Streamlit app).
#
#   docker build -t flowviz .                                   # CPU (default): small image, no CUDA wheels
#   docker build -t flowviz:cuda --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu128 .
#   docker run --rm -p 8501:8501 flowviz                        # then open http://localhost:8501
#   docker run --rm --gpus all -p 8501:8501 flowviz:cuda        # with an NVIDIA GPU (nvidia-container-toolkit)
#
# The run cache lives in /data (mount a volume to keep prebuilt scenarios across restarts):
#   docker run --rm -p 8501:8501 -v flowviz-cache:/data flowviz
#   docker run --rm -v flowviz-cache:/data flowviz python -m flowviz prebuild
#
# With the Ray executor (replicas that train on a Ray cluster; see the README's "On a Ray cluster"):
#   docker build -t flowviz:ray --build-arg EXTRAS=ray .
#   docker run --rm -p 8501:8501 -e FLOWVIZ_EXECUTOR=ray -e RAY_ADDRESS=head-node:6379 flowviz:ray
#
# With video for slides (the page's video buttons, `python -m flowviz video`): kaleido renders each frame in a
# headless Chromium, so this extra also installs Debian's chromium (/usr/bin/chromium, found by flowviz) and
# fonts-liberation (Liberation Sans: the figures' Arial, metric for metric):
#   docker build -t flowviz:video --build-arg EXTRAS=video .

FROM python:3.11-slim

# CPU wheels by default; pass the CUDA wheel index for a GPU image.
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu
# Optional extras: EXTRAS=ray installs requirements-ray.txt (the Ray executor); EXTRAS=video installs
# requirements-video.txt, Debian's chromium (kaleido's browser) and fonts-liberation.
ARG EXTRAS=

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    FLOWVIZ_CACHE_DIR=/data

RUN useradd --create-home --uid 10001 flowviz && mkdir -p /data && chown flowviz /data
WORKDIR /app

COPY requirements.txt requirements-ray.txt requirements-video.txt ./
RUN if [ "${EXTRAS}" = "video" ]; then apt-get update && apt-get install -y --no-install-recommends chromium fonts-liberation \
    && rm -rf /var/lib/apt/lists/*; fi
RUN pip install --no-deps --index-url "${TORCH_INDEX}" "$(grep -E '^torch==' requirements.txt)" \
 && pip install -r requirements.txt \
 && if [ "${EXTRAS}" = "ray" ]; then pip install -r requirements-ray.txt; fi \
 && if [ "${EXTRAS}" = "video" ]; then pip install -r requirements-video.txt; fi

COPY app.py pyproject.toml ./
COPY flowviz ./flowviz
COPY assets ./assets
COPY .streamlit ./.streamlit

USER flowviz
EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"
CMD ["streamlit", "run", "app.py", "--server.port=8501", "--server.address=0.0.0.0"]
