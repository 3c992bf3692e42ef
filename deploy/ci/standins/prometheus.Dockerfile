# Stand-in for prom/prometheus:v3.5.0 (Docker Hub is not reachable where CI runs):
# Debian bookworm's Prometheus (2.42), laid out like the official image: entrypoint
# /bin/prometheus, user nobody, data under /prometheus. Debian's build stores its data in
# /var/lib/prometheus/metrics2 when no --storage.tsdb.path is given (upstream: data/,
# under the working directory /prometheus): that path leads to /prometheus/data here.
# Built by deploy/ci/base-images.sh.
ARG DEBIAN=fer-ci/debian:bookworm
FROM ${DEBIAN}
RUN apt-get update \
    && apt-get install -y --no-install-recommends prometheus \
    && rm -rf /var/lib/apt/lists/* /var/lib/prometheus/metrics2 \
    && mkdir -p /prometheus/data && chown -R nobody:nogroup /prometheus \
    && ln -s /prometheus/data /var/lib/prometheus/metrics2
USER nobody
WORKDIR /prometheus
EXPOSE 9090
ENTRYPOINT ["/bin/prometheus"]
CMD ["--config.file=/etc/prometheus/prometheus.yml", "--storage.tsdb.path=/prometheus"]
