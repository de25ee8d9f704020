# Sluice container image: built in a Rust image, run from distroless (glibc, no shell), as the
# unprivileged `nonroot` user (uid 65532, matching deploy/ and the Helm chart).
#   docker build -t sluice .

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
RUN cargo build --release --locked -p sluice \
    && strip target/release/sluice \
    && cp target/release/sluice /sluice

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /sluice /usr/local/bin/sluice
USER 65532:65532
# web, websecure, traefik (ping/ready) as in deploy/configmap.yaml.
EXPOSE 8000 8443 9000
ENTRYPOINT ["/usr/local/bin/sluice"]
CMD ["--config=/etc/sluice/sluice.yaml"]
