# syntax=docker/dockerfile:1
# Multi-stage build of the ncp-pca-issuer image: a static-enough release binary on a small, non-root
# runtime image. CI builds the same release binary with `cargo build --release --locked --bin
# ncp-pca-issuer` (no Docker engine is available there).

FROM docker.io/library/rust:1.95-bookworm AS build
WORKDIR /src
# aws-lc-rs builds its C core with cmake.
RUN apt-get update && apt-get install -y --no-install-recommends cmake && rm -rf /var/lib/apt/lists/*
COPY Cargo.toml Cargo.lock ./
COPY src ./src
COPY crds ./crds
RUN cargo build --release --locked --bin ncp-pca-issuer \
 && cp target/release/ncp-pca-issuer /ncp-pca-issuer

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /ncp-pca-issuer /usr/local/bin/ncp-pca-issuer
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ncp-pca-issuer"]
CMD ["controller"]
