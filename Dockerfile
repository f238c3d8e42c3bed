# token-authority: a non-root service on a read-only root filesystem, keys in the /data volume.
#
#   podman build --format docker -t token-authority .
#   podman run -d -p 50051:50051 -p 8080:8080 -v ta-data:/data token-authority
#
# Both base images are build arguments, so a company can take them from its own registry:
#   --build-arg BUILD_IMAGE=registry.example/rust:1.89-slim-bookworm
#   --build-arg RUNTIME_IMAGE=registry.example/distroless/cc-debian12
# The runtime image needs only glibc and libgcc_s (ring links its C and assembly statically);
# it needs no shell, since the health check is the binary itself.
ARG BUILD_IMAGE=docker.io/library/rust:1.89-slim-bookworm
ARG RUNTIME_IMAGE=gcr.io/distroless/cc-debian12

FROM ${BUILD_IMAGE} AS build
WORKDIR /src
COPY . .
# /out holds what the runtime stage takes: the binary, and an empty data directory (the runtime
# image has no shell to make one).
RUN cargo build --release --locked --bin token-authority \
    && mkdir -p /out/data \
    && cp target/release/token-authority /out/token-authority

FROM ${RUNTIME_IMAGE}
COPY --from=build /out/token-authority /usr/local/bin/token-authority
# The same file the Kubernetes base mounts as its ConfigMap.
COPY deploy/kubernetes/token-authority.toml /etc/token-authority/config.toml
ENV TOKEN_AUTHORITY_CONFIG=/etc/token-authority/config.toml \
    TOKEN_AUTHORITY_DATA_DIR=/data \
    TOKEN_AUTHORITY_LOG_FORMAT=json
# A fixed uid and gid, so a volume or a Kubernetes securityContext can be prepared for them.
# The directory is made here so a new named volume starts out owned by that uid.
COPY --from=build --chown=10001:10001 /out/data /data
USER 10001:10001
VOLUME ["/data"]
# gRPC (Issue, Verify, LoginUrl, Jwks, health, reflection) and HTTP (JWKS, discovery, metrics).
EXPOSE 50051 8080
# SIGTERM sets health to NOT_SERVING and drains for server.drain_timeout (5 s in the baked-in
# configuration), inside podman's and Docker's default 10 s stop timeout.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=4s --start-period=5s --retries=3 \
    CMD ["/usr/local/bin/token-authority", "healthcheck", "--addr", "127.0.0.1:50051", "--timeout", "3s"]
ENTRYPOINT ["/usr/local/bin/token-authority"]
CMD ["serve"]
