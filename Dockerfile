# phr-server as a container: built in a Rust image, run from a distroless image with no shell, as a non-root
# user. Build from the repository root:
#   docker build -t phr-server .
#   docker compose up          # with compose.yaml: PostgreSQL (TLS on), an S3-compatible store, phr-server
# Settings come from the environment (PHR_*; `phr-server serve --help` lists them); `connrun pki init pki`
# writes the certificates, keys and a phr-server.env that compose.yaml mounts.

FROM rust:1-bookworm AS build
WORKDIR /src
# Dependencies first, so an edit of the sources does not rebuild them.
COPY Cargo.toml Cargo.lock ./
COPY crates crates
COPY server server
COPY src src
COPY templates templates
COPY run-templates run-templates
COPY tests tests
RUN cargo build --release --locked -p phr-server --bin phr-server \
    && cp target/release/phr-server /phr-server

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /phr-server /usr/local/bin/phr-server
# distroless' nonroot user (65532); no shell, no package manager at run time.
USER 65532:65532
WORKDIR /var/lib/phr
ENV PHR_LISTEN=0.0.0.0:8443 PHR_OPS_LISTEN=0.0.0.0:9464 \
    PHR_IMAGE_STORE_DIR=/var/lib/phr/images PHR_EXPORT_FS_BASE=/var/lib/phr/exports
EXPOSE 8443 9464
ENTRYPOINT ["/usr/local/bin/phr-server"]
CMD ["serve"]
