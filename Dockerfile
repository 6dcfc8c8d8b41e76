# pgdog container image: a Debian 12 build stage and a slim runtime stage.
#
#   docker build -t pgdog .
#   docker run --rm -p 6432:6432 -p 9930:9930 \
#       -v $PWD/pgdog.toml:/etc/pgdog/pgdog.toml:ro -v $PWD/users.toml:/etc/pgdog/users.toml:ro pgdog
#
# The build steps are the project's own: the packages of `scripts/install-deps --build-only`
# and the CMake build of ARCHITECTURE.md. integration/operator/compose_test.py fails when the
# package list below and the script's list differ, or when the runtime stage misses a package
# that provides a shared library the pgdog binary links.

# ---------------------------------------------------------------- build
FROM debian:12 AS build

ARG DEBIAN_FRONTEND=noninteractive
# Same list as `scripts/install-deps --build-only --print`.
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends \
        cmake ninja-build g++ pkg-config \
        libboost1.81-dev libssl-dev libpq-dev libtoml11-dev prometheus-cpp-dev \
        libgtest-dev libgmock-dev libspdlog-dev libfmt-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY CMakeLists.txt ./
COPY pgdog ./pgdog
COPY integration ./integration
RUN cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo && cmake --build build \
 && build/pgdog/pgdog --version

# ---------------------------------------------------------------- runtime
FROM debian:12-slim AS runtime

ARG DEBIAN_FRONTEND=noninteractive
# The shared libraries build/pgdog/pgdog links (ldd; libprometheus-cpp-core1.0 in case the linker
# keeps it), and CA certificates for tls_verify.
RUN apt-get update -q \
 && apt-get install -y -q --no-install-recommends \
        libstdc++6 libgcc-s1 libssl3 libspdlog1.10 libfmt9 libprometheus-cpp-core1.0 \
        ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system pgdog \
 && useradd --system --gid pgdog --home-dir /nonexistent --no-create-home \
        --shell /usr/sbin/nologin pgdog \
 && mkdir -p /etc/pgdog

COPY --from=build /src/build/pgdog/pgdog /usr/local/bin/pgdog

USER pgdog:pgdog
WORKDIR /etc/pgdog
# 6432: PostgreSQL clients and the admin console; 9930: GET /metrics (openmetrics_port).
EXPOSE 6432 9930
# SIGTERM drains: pgdog stops accepting and lets transactions finish up to shutdown_timeout;
# give `docker stop` / stop_grace_period more time than that.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/pgdog"]
CMD ["--config", "/etc/pgdog/pgdog.toml", "--users", "/etc/pgdog/users.toml"]
