# syntax=docker/dockerfile:1
# Multi-stage, multi-arch build of the ncp-pca-issuer image: the release binary on a small, non-root
# runtime image.
#
#   docker buildx build --platform linux/amd64,linux/arm64 \
#     --build-arg VERSION=0.1.0 --build-arg REVISION=$(git rev-parse HEAD) -t <registry>/ncp-pca-issuer:0.1.0 .
#
# The build stage runs on the build machine's platform ($BUILDPLATFORM) and cross-compiles for each
# $TARGETARCH through CARGO_BUILD_TARGET, so the build command is exactly the one CI (scripts/test)
# runs: `cargo build --release --locked --bin ncp-pca-issuer` (tests/operator_processes/chart.rs
# checks that they agree).
#
# Why distroless/cc (glibc) and not distroless/static: a static binary needs the musl targets
# (x86_64/aarch64-unknown-linux-musl), which are not installed where this image is developed and
# tested, and cannot be fetched there (static.rust-lang.org is unreachable), so a static build could
# be neither built nor tested. A static glibc build (crt-static) would link, but glibc's resolver
# loads NSS modules at run time, so name resolution (the NCP endpoint, the API server) in an image
# without libc is not dependable. aws-lc-rs itself builds with the C compiler and cmake of either.

FROM --platform=$BUILDPLATFORM docker.io/library/rust:1.95-bookworm AS build
ARG TARGETARCH
WORKDIR /src
# aws-lc-rs builds its C core with cmake. For another architecture than the build machine's: that
# architecture's C toolchain and Rust target, and the variables that point cargo and cc at them
# (written to /rust-env, read by the build step).
RUN --mount=type=cache,target=/var/cache/apt,sharing=locked \
    --mount=type=cache,target=/var/lib/apt,sharing=locked \
    set -eu; \
    case "$TARGETARCH" in \
      amd64) arch=x86_64; gcc_pkg=gcc-x86-64-linux-gnu; libc_pkg=libc6-dev-amd64-cross ;; \
      arm64) arch=aarch64; gcc_pkg=gcc-aarch64-linux-gnu; libc_pkg=libc6-dev-arm64-cross ;; \
      *) echo "unsupported TARGETARCH $TARGETARCH" >&2; exit 1 ;; \
    esac; \
    triple="$arch-unknown-linux-gnu"; \
    echo "export CARGO_BUILD_TARGET=$triple" > /rust-env; \
    cross=""; \
    if [ "$(uname -m)" != "$arch" ]; then \
      cross="$gcc_pkg $libc_pkg"; \
      upper=$(echo "$triple" | tr 'a-z-' 'A-Z_'); \
      { echo "export CARGO_TARGET_${upper}_LINKER=$arch-linux-gnu-gcc"; \
        echo "export CC_$(echo "$triple" | tr - _)=$arch-linux-gnu-gcc"; \
        echo "export CXX_$(echo "$triple" | tr - _)=$arch-linux-gnu-g++"; \
        echo "export AR_$(echo "$triple" | tr - _)=$arch-linux-gnu-ar"; } >> /rust-env; \
    fi; \
    apt-get update; \
    apt-get install -y --no-install-recommends cmake $cross $(for p in $cross; do case $p in gcc-*) echo "g++-${p#gcc-}";; esac; done); \
    rustup target add "$triple"
# Dependencies first: this layer (the crates.io downloads) is rebuilt only when Cargo.lock changes.
COPY Cargo.toml Cargo.lock ./
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    mkdir -p src && echo 'fn main() {}' > src/main.rs && touch src/lib.rs \
 && cargo fetch --locked \
 && rm -rf src
COPY src ./src
COPY crds ./crds
# The registry and the target directory are cache mounts (per architecture): a rebuild after a
# source change recompiles our crate, not the dependencies.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target,id=ncp-pca-issuer-target-${TARGETARCH} \
    . /rust-env \
 && cargo build --release --locked --bin ncp-pca-issuer \
 && cp "target/$CARGO_BUILD_TARGET/release/ncp-pca-issuer" /ncp-pca-issuer

FROM gcr.io/distroless/cc-debian12:nonroot
ARG VERSION=0.1.0
ARG REVISION=unknown
LABEL org.opencontainers.image.title="ncp-pca-issuer" \
      org.opencontainers.image.description="cert-manager external issuer for NAVER Cloud Platform Private CA" \
      org.opencontainers.image.source="https://github.com/ncp-pca-issuer/ncp-pca-issuer" \
      org.opencontainers.image.url="https://github.com/ncp-pca-issuer/ncp-pca-issuer" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /ncp-pca-issuer /usr/local/bin/ncp-pca-issuer
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/ncp-pca-issuer"]
CMD ["controller"]
