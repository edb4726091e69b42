# syntax=docker/dockerfile:1
# The fedsts container image (README "Installing"):
#   docker build -t fedsts .
# Runs as the non-root user fedsts (uid 10001); /etc/fedsts is the configuration (mount it
# read-only), /var/lib/fedsts the state (session key, token-signing pairs, rollover).

FROM rust:1.95-slim-bookworm AS build
RUN apt-get update \
 && apt-get install -y --no-install-recommends libkrb5-dev libclang-dev clang pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN cargo build --release --locked --features kerberos \
 && strip target/release/fedsts

FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libgssapi-krb5-2 \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 fedsts \
 && useradd --system --uid 10001 --gid fedsts --home-dir /var/lib/fedsts --no-create-home \
        --shell /usr/sbin/nologin fedsts \
 && install -d -o root -g fedsts -m 0750 /etc/fedsts \
 && install -d -o fedsts -g fedsts -m 0700 /var/lib/fedsts
COPY --from=build /src/target/release/fedsts /usr/bin/fedsts
COPY --chown=root:fedsts --chmod=0640 packaging/fedsts.toml packaging/users.toml /etc/fedsts/
# A non-root process cannot bind 443 everywhere: the image listens on 8443 (publish -p 443:8443).
RUN sed -i 's/^listen = "0.0.0.0:443"/listen = "0.0.0.0:8443"/' /etc/fedsts/fedsts.toml
USER fedsts
VOLUME ["/etc/fedsts", "/var/lib/fedsts"]
EXPOSE 8443
# GET /healthz on health_listen (127.0.0.1:8081 in the example configuration), without curl.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8081 && printf 'GET /healthz HTTP/1.0\\r\\n\\r\\n' >&3 && head -n 1 <&3 | grep -q ' 200 '"]
ENTRYPOINT ["/usr/bin/fedsts"]
CMD ["serve", "--config", "/etc/fedsts/fedsts.toml"]
