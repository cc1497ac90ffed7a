#!/usr/bin/env bash
# Builds the stack's Go binaries from their published modules (versions in compose/versions.env) and
# caches them outside the repo, keyed by version, so a second run is instant.
#
#   compose/build.sh [name ...]     build what is missing (default: collector prometheus alertmanager victorialogs jaeger)
#   compose/build.sh --path name    print the cached binary's path (built or not) and exit
#
# Names: collector prometheus victorialogs jaeger promtool (rule checks) statsd_exporter (benchmarks).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=versions.env
source "$ROOT/compose/versions.env"

CACHE=${AIRFLOW_OTEL_CACHE:-$HOME/.cache/airflow-otel}
BIN=$CACHE/bin
WORK=$CACHE/work
LOGS=$CACHE/logs
DEFAULT_NAMES=(collector prometheus alertmanager victorialogs jaeger)

export GOTOOLCHAIN=local          # fail fast instead of fetching another Go
export GOFLAGS='-trimpath -buildvcs=false'
export CGO_ENABLED=0
LDFLAGS='-s -w'

# The cached binary for a name; the Collector's key includes the manifest and our own processor's source,
# so editing either rebuilds.
bin_path() {
  case $1 in
    collector)
      local hash
      hash=$(cat "$ROOT/collector/builder.yaml" \
        "$ROOT"/collector/{exemplars,restamp}processor/{go.mod,go.sum,processor.go} | sha256sum | cut -c1-12)
      echo "$BIN/otelcol-airflow-$OTELCOL_VERSION-$hash" ;;
    prometheus) echo "$BIN/prometheus-$PROMETHEUS_VERSION" ;;
    promtool) echo "$BIN/promtool-$PROMETHEUS_VERSION" ;;
    alertmanager) echo "$BIN/alertmanager-$ALERTMANAGER_VERSION" ;;
    victorialogs) echo "$BIN/victoria-logs-$VICTORIALOGS_VERSION" ;;
    jaeger) echo "$BIN/jaeger-$JAEGER_VERSION" ;;
    statsd_exporter) echo "$BIN/statsd_exporter-$STATSD_EXPORTER_VERSION" ;;
    *) echo "build.sh: unknown binary '$1' (known: ${DEFAULT_NAMES[*]} promtool statsd_exporter)" >&2; return 2 ;;
  esac
}

# `go install module@version` into a scratch GOBIN, then move the binary to $2.
go_install() {
  local pkg=$1 out=$2 gobin
  gobin=$(mktemp -d "$WORK/gobin.XXXXXX")
  GOBIN=$gobin go install -ldflags "$LDFLAGS" "$pkg"
  mv "$gobin/$(basename "${pkg%@*}")" "$out"
  rm -rf "$gobin"
}

# Modules whose go.mod has replace/exclude directives refuse `go install`: build them from a small wrapper
# module that repeats upstream's directives (non-local ones) and requires the tool with `go get -tool`.
wrapper_build() {
  local module=$1 version=$2 pkg=$3 tags=$4 out=$5 dir gomod
  dir="$WORK/$(basename "$out")"
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  go mod init local/wrapper >/dev/null 2>&1
  gomod=$(go mod download -json "$module@$version" | jq -r .GoMod)
  go mod edit -go="$(go mod edit -json "$gomod" | jq -r .Go)"
  go mod edit -json "$gomod" | jq -r '
      ((.Replace // [])[] | select(.New.Version != null)
        | "-replace=\(.Old.Path)\(if .Old.Version then "@" + .Old.Version else "" end)=\(.New.Path)@\(.New.Version)"),
      ((.Exclude // [])[] | "-exclude=\(.Path)@\(.Version)")' | xargs -r go mod edit
  go get -tool "$pkg@$version"
  go build -tags "$tags" -ldflags "$LDFLAGS" -o "$out" "$pkg"
  cd "$ROOT"
}

build_collector() {
  local out=$1 builder="$CACHE/tools/builder-$OTELCOL_BUILDER_VERSION" dir
  if [[ ! -x $builder ]]; then
    mkdir -p "$CACHE/tools"
    go_install "go.opentelemetry.io/collector/cmd/builder@$OTELCOL_BUILDER_VERSION" "$builder"
  fi
  dir="$WORK/$(basename "$out")"
  rm -rf "$dir" && mkdir -p "$dir" && cd "$dir"
  # output_path in the manifest is relative: the sources and binary land in this scratch directory. The
  # paths of our own processors (./exemplarsprocessor, ./restampprocessor) are relative too: the builder
  # resolves them from here.
  ln -s "$ROOT/collector/exemplarsprocessor" exemplarsprocessor
  ln -s "$ROOT/collector/restampprocessor" restampprocessor
  "$builder" --config="$ROOT/collector/builder.yaml"
  mv _build/otelcol-airflow "$out"
  cd "$ROOT"
}

build_one() {
  local name=$1 out=$2
  case $name in
    collector) build_collector "$out" ;;
    prometheus)
      # netgo: pure-Go resolver; remove_all_sd: drop every cloud service discovery (static/file/http stay).
      wrapper_build "$PROMETHEUS_MODULE" "$PROMETHEUS_VERSION" "$PROMETHEUS_MODULE/cmd/prometheus" \
        netgo,remove_all_sd "$out" ;;
    promtool)
      wrapper_build "$PROMETHEUS_MODULE" "$PROMETHEUS_VERSION" "$PROMETHEUS_MODULE/cmd/promtool" \
        netgo,remove_all_sd "$out" ;;
    victorialogs) go_install "$VICTORIALOGS_MODULE@$VICTORIALOGS_VERSION" "$out" ;;
    alertmanager) go_install "$ALERTMANAGER_MODULE/cmd/alertmanager@$ALERTMANAGER_VERSION" "$out" ;;
    jaeger) wrapper_build "$JAEGER_MODULE" "$JAEGER_VERSION" "$JAEGER_MODULE/cmd/jaeger" "" "$out" ;;
    statsd_exporter) go_install "$STATSD_EXPORTER_MODULE@$STATSD_EXPORTER_VERSION" "$out" ;;
  esac
}

case ${1:-} in
  --path) bin_path "${2:?usage: build.sh --path NAME}"; exit ;;
  # Internal: one build in its own process, so `set -e` applies inside it (it is off in an `if` test).
  --build-one) build_one "$2" "$3"; exit ;;
esac

names=("$@")
[[ ${#names[@]} -gt 0 ]] || names=("${DEFAULT_NAMES[@]}")
for name in "${names[@]}"; do bin_path "$name" >/dev/null; done   # reject unknown names up front
command -v go >/dev/null || { echo "build.sh: 'go' is not on PATH" >&2; exit 1; }
mkdir -p "$BIN" "$WORK" "$LOGS"
# One build at a time (2 cores; and two builds of one binary would share its scratch directory).
exec 9>"$CACHE/build.lock"
if ! flock -n 9; then
  echo "==> waiting for another build.sh to finish"
  flock 9
fi

total_start=$SECONDS
for name in "${names[@]}"; do
  out=$(bin_path "$name")
  if [[ -x $out ]]; then
    echo "==> $name: cached $out"
    continue
  fi
  log="$LOGS/$name.log"
  echo "==> $name: building $(basename "$out") (log: $log)"
  start=$SECONDS
  # Build into a temporary name so an interrupted build never leaves a half-written cached binary.
  if ! "$0" --build-one "$name" "$out.tmp" 2>&1 | tee "$log" | sed -u 's/^/    /'; then
    echo "build.sh: FAILED to build $name after $((SECONDS - start)) s; full log: $log" >&2
    rm -f "$out.tmp"
    exit 1
  fi
  mv "$out.tmp" "$out"
  echo "==> $name: built in $((SECONDS - start)) s, $(du -h "$out" | cut -f1)"
done
echo "==> all done in $((SECONDS - total_start)) s; binaries in $BIN"
