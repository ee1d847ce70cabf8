# syntax=docker/dockerfile:1
#
# igmirror: Instagram DM webhooks -> SQLite (or a shared PostgreSQL) -> CRM MySQL mirror.
#   docker build -t igmirror .
#   docker run -p 8080:8080 -v igmirror-data:/data -e INSTAGRAM_APP_SECRET=... igmirror
# Every setting is an environment variable (see .env.example / CONTRACT.md).

# ---- build: cgo is needed for SQLite (mattn/go-sqlite3) ----
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=1 go build -trimpath -ldflags='-s -w' -o /out/igmirror ./app

# ---- runtime: same Debian release as the build stage, so glibc matches ----
FROM debian:bookworm-slim
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && groupadd --system --gid 10001 igmirror \
 && useradd --system --uid 10001 --gid igmirror --home-dir /data --no-create-home \
      --shell /usr/sbin/nologin igmirror \
 && install -d -o igmirror -g igmirror -m 0750 /data
COPY --from=build /out/igmirror /usr/local/bin/igmirror

# SQLite, the source of truth, lives on the /data volume.
# Two malloc arenas keep SQLite's memory flat (the binary sets the same by
# itself unless MALLOC_ARENA_MAX is given; see app/malloc_linux.go).
ENV SQLITE_PATH=/data/instagram_automation.db \
    MALLOC_ARENA_MAX=2 \
    HTTP_ADDR=:8080
# ADMIN_ADDR is deliberately left at its default, 127.0.0.1:8081: the admin
# listener answers only inside the container and is not published (no EXPOSE).
# To reach it from elsewhere set ADMIN_ADDR and ADMIN_TOKEN explicitly and
# publish the port on a private network only.
VOLUME ["/data"]
EXPOSE 8080

USER 10001:10001
WORKDIR /data
ENTRYPOINT ["/usr/local/bin/igmirror"]
