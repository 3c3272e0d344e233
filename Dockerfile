# GPU worker image: TensorFlow with CUDA, cnntune installed. One container = one worker = one GPU.
#   docker build -t cnntune .
#   docker run --gpus '"device=0"' -v $PWD:/work cnntune search space=improved --trials 50 \
#       --storage postgresql://user@db/cnntune --study c25
FROM tensorflow/tensorflow:2.18.0-gpu

WORKDIR /opt/cnntune
COPY pyproject.toml README.md ./
COPY tuner ./tuner
COPY search_spaces ./search_spaces
RUN pip install --no-cache-dir ".[postgres]" "tensorboard>=2.16"

WORKDIR /work
ENTRYPOINT ["cnntune"]
CMD ["--help"]
