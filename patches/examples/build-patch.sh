#!/bin/sh
# Build the sample patch artifact: the sample-app tree at VERSION, as a .tar.gz made with tar.
#   patches/examples/build-patch.sh OUT_DIR [VERSION]       (VERSION defaults to 1.1.0)
# Writes OUT_DIR/tree-VERSION/ (the tree as it will look once installed: feed it to
# `xcarectl patch digest` for --integrity) and OUT_DIR/sample-app-VERSION.tar.gz (the artifact).
set -eu
out=${1:?usage: build-patch.sh OUT_DIR [VERSION]}
version=${2:-1.1.0}
here=$(cd "$(dirname "$0")" && pwd)
tree="$out/tree-$version"
rm -rf "$tree"
mkdir -p "$tree"
cp -R "$here/sample-app/." "$tree/"
printf '%s\n' "$version" > "$tree/VERSION"
printf 'changes in %s: a friendlier greeting\n' "$version" > "$tree/CHANGES"
# Fixed owner, order and mtime so the same inputs give the same bytes (and the same sha256).
tar -czf "$out/sample-app-$version.tar.gz" -C "$tree" --owner=0 --group=0 --numeric-owner --sort=name --mtime='2026-01-01 00:00:00Z' .
echo "$out/sample-app-$version.tar.gz"
