# syntax=docker/dockerfile:1
# The reference social app (test/socialapp). Build from the repository root:
#
#   docker build -f docker/socialapp.Dockerfile -t shardproxy-socialapp .
#
# Pure Go (pgx), so no cgo; the runtime is Debian slim for a shell and CA
# certificates.

ARG GO_VERSION=1.26
ARG DEBIAN_RELEASE=bookworm

FROM golang:${GO_VERSION}-${DEBIAN_RELEASE} AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN --mount=type=cache,target=/go/pkg/mod go mod download
COPY . .
ENV CGO_ENABLED=0
RUN --mount=type=cache,target=/go/pkg/mod --mount=type=cache,target=/root/.cache/go-build \
    go build -trimpath -ldflags "-s -w" -o /out/socialapp ./test/socialapp/cmd/socialapp

FROM debian:${DEBIAN_RELEASE}-slim
RUN apt-get update && \
    apt-get install -y --no-install-recommends ca-certificates curl && \
    rm -rf /var/lib/apt/lists/* && \
    useradd --system --uid 10002 socialapp
COPY --from=build /out/socialapp /usr/local/bin/socialapp
USER socialapp
EXPOSE 8080
ENTRYPOINT ["socialapp"]
CMD ["serve", "--listen", "0.0.0.0:8080"]
