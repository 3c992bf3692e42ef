# Stand-in for the official python:3.11-slim (Docker Hub is not reachable where CI runs):
# Debian bookworm's Python 3.11 in a virtual environment at /usr/local, so that `python`,
# `pip` and the scripts pip installs are on the default PATH, as in the official image.
# Built by deploy/ci/base-images.sh.
ARG DEBIAN=fer-ci/debian:bookworm
FROM ${DEBIAN}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3 -m venv /usr/local
ENV PATH=/usr/local/bin:/usr/local/sbin:/usr/sbin:/usr/bin:/sbin:/bin LANG=C.UTF-8
CMD ["python3"]
