# syntax=docker/dockerfile:1
# tokengate: a static binary on distroless, running as a non-root user.
#   docker build -t tokengate:dev .
#   docker run --rm -v $PWD/envoy/tokengate.yaml:/etc/tokengate/tokengate.yaml:ro tokengate:dev

# Pinned to go.mod's Go release (never a floating tag).
FROM golang:1.26.8 AS build
WORKDIR /src
# Modules first, so editing the source does not download them again.
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
# CGO off: a static binary that needs no libc in the final image.
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" \
        -o /out/tokengate ./cmd/tokengate
# Mount points owned by the runtime user: a fresh named volume mounted on /etc/tokengate/keys
# takes this ownership, so `tokengate keygen --out /etc/tokengate/keys/...` can write there.
RUN mkdir -p /out/etc/tokengate/keys

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/tokengate /tokengate
COPY --from=build --chown=65532:65532 /out/etc/tokengate /etc/tokengate
# The distroless "nonroot" user; numeric so Kubernetes runAsNonRoot can check it.
USER 65532:65532
# 9001: ext_authz gRPC (+ grpc.health.v1, reflection) and 9002: /authz (authz_addr), for gateways
# only; 8080: token endpoint, JWKS, /healthz, /readyz; 9090: /metrics (metrics_addr). The shipped
# configurations use these ports; without authz_addr/metrics_addr, /authz and /metrics are on 8080.
EXPOSE 9001 9002 8080 9090
ENTRYPOINT ["/tokengate"]
CMD ["serve", "--config", "/etc/tokengate/tokengate.yaml"]
