# A Pinring peer image. Kubo runs in its own container (ipfs/kubo); point
# the peer at it with PINRING_IPFS_API. See docs/deploy.md.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -o /out/ ./cmd/...

FROM debian:bookworm-slim
RUN useradd --system --home /data --create-home pinring
COPY --from=build /out/cluster-peer /out/cluster-ctl /out/cluster-follow /usr/local/bin/
USER pinring
ENV PINRING_PATH=/data \
    PINRING_API_LISTEN=/ip4/127.0.0.1/tcp/9094 \
    PINRING_P2P_LISTEN=/ip4/0.0.0.0/tcp/9096
VOLUME /data
EXPOSE 9096
# First start: the entry point initialises the peer (founding a cluster,
# or from PINRING_TICKET) when /data has no configuration.
ENTRYPOINT ["/bin/sh", "-c", "[ -f /data/service.json ] || cluster-peer init ${PINRING_TICKET:+--ticket \"$PINRING_TICKET\"}; exec cluster-peer daemon"]
