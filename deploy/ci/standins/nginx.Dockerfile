# Stand-in for nginx:1.27-alpine (Docker Hub is not reachable where CI runs): Debian
# bookworm's nginx (1.22), laid out like the official image: master as root, logs to the
# container's output, stopped gracefully by SIGQUIT. Built by deploy/ci/base-images.sh.
ARG DEBIAN=fer-ci/debian:bookworm
FROM ${DEBIAN}
RUN apt-get update \
    && apt-get install -y --no-install-recommends nginx \
    && rm -rf /var/lib/apt/lists/* \
    && ln -sf /dev/stdout /var/log/nginx/access.log \
    && ln -sf /dev/stderr /var/log/nginx/error.log
EXPOSE 80
STOPSIGNAL SIGQUIT
CMD ["nginx", "-g", "daemon off;"]
