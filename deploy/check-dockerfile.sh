#!/usr/bin/env bash
# Lints deploy/Dockerfile without Docker: runs its build step exactly as written (the `RUN cargo
# build ...` line) and checks the runtime stage: a non-root USER, the binary as ENTRYPOINT,
# nothing fetched at start.
set -euo pipefail
cd "$(dirname "$0")/.."
dockerfile=deploy/Dockerfile

build=$(sed -n 's/^RUN \(cargo build .*\)$/\1/p' "$dockerfile")
[ -n "$build" ] || { echo "no 'RUN cargo build' line in $dockerfile" >&2; exit 1; }
echo "==> $build"
eval "$build"
target/release/ubdcc --version

runtime=$(awk '/^FROM /{stage++} stage==2' "$dockerfile")
grep -q '^USER 10001$' <<<"$runtime" || { echo "the runtime stage must run as a non-root USER" >&2; exit 1; }
grep -q '^ENTRYPOINT \["/usr/local/bin/ubdcc"\]$' <<<"$runtime" || { echo "ENTRYPOINT must be the ubdcc binary" >&2; exit 1; }
if grep -Eq '^(CMD|ENTRYPOINT).*(pip|curl|wget|apt)' <<<"$runtime"; then
    echo "the image must not download anything at start" >&2
    exit 1
fi
echo "Dockerfile: build step ok, runtime stage ok"
