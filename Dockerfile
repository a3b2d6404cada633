# Castellan's container image: `docker build -t castellan:0.1.0 .`
# Two stages: the build stage compiles TypeScript with every dependency installed, then prunes
# the dev dependencies; the runtime stage gets only what `castellan` runs with, and runs it as
# an unprivileged user. Pin NODE_IMAGE to a digest in your own builds for reproducibility.
# Node 24 (an LTS line until April 2028; Node 20's ended in April 2026): the whole test suite passes
# on it (docs/performance.md, "On Node 24"). NODE_IMAGE=node:20-bookworm-slim still builds a
# working image.
ARG NODE_IMAGE=node:24-bookworm-slim

FROM ${NODE_IMAGE} AS build
WORKDIR /app
# Dependencies first, so source edits reuse the cached install layer. --ignore-scripts: the
# package's own `prepare` (a build) needs the sources, which are not copied yet; protobufjs'
# install script only prints a notice. The one that matters is pkcs11js' (PKCS#11 keys,
# docs/hsm.md): it compiles against the image's Node headers, so it is rebuilt on its own, with
# a compiler that stays in this stage.
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
RUN apt-get update \
 && apt-get install -y --no-install-recommends g++ make python3 \
 && rm -rf /var/lib/apt/lists/* \
 && npm rebuild pkcs11js \
 && node -e "require('pkcs11js')"
COPY tsconfig.json ./
COPY native/binding.gyp native/p256_verify.c ./native/
COPY scripts/build-native.mjs ./scripts/
COPY src ./src
COPY protos ./protos
COPY bin ./bin
# `npm run build` also compiles native/ (the P-256 CSR check) with the same compiler; the CA
# would run without it, slower, so the image insists on it.
RUN npm run build \
 && node -e "require('./native/build/Release/castellan_native.node')" \
 && npm prune --omit=dev --ignore-scripts --no-audit --no-fund

FROM ${NODE_IMAGE} AS runtime
ENV NODE_ENV=production
WORKDIR /app
# Everything comes from the build stage, owned by root and read-only to the process.
COPY --from=build /app/package.json ./package.json
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist/src ./dist/src
COPY --from=build /app/native/build/Release/castellan_native.node ./native/build/Release/
COPY --from=build /app/protos ./protos
COPY --from=build /app/bin ./bin
# 65532: the conventional "nonroot" uid; the Helm chart runs the pod as the same uid.
USER 65532:65532
# 15012: Istio's CSR gRPC API over TLS. 15014: /ready, /healthz, /metrics.
EXPOSE 15012 15014
# Node 24's V8 grows the young generation to 64 MB semi-spaces (Node 20's stop at 16): 270 MB of
# resident memory under load. At 8 MB, 174–179 MB at P-256 c=64 against 207–215 at 16, with the same
# throughput and p99 (docs/performance.md, "Under 25 ms"). V8 reads the limit only at start, hence
# the flag here.
ENTRYPOINT ["node", "--max-semi-space-size=8", "/app/bin/castellan.js"]
CMD ["serve", "--kube"]
