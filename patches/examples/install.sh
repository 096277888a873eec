#!/bin/sh
# patches.install for the sample app (Mender update-module style; run by xcare-agent with sh -c in
# $XCARE_STAGING). Backs the software dir up once (idempotent: a re-run after a crash keeps the
# first, good backup), then replaces the tree with the artifact and writes the new version.
# Test switches: XCARE_EXAMPLE_FAIL_INSTALL=1 fails after extracting; XCARE_EXAMPLE_PAUSE_FILE=F
# writes this shell's pid to F and sleeps 30 s mid-install (crash tests kill the agent there).
set -eu
: "${XCARE_ARTIFACT:?}" "${XCARE_STAGING:?}" "${XCARE_SOFTWARE_DIR:?}" "${XCARE_VERSION_FILE:?}" "${XCARE_PATCH_VERSION:?}"
backup="$XCARE_STAGING/backup"
if [ ! -e "$backup/.complete" ]; then
  rm -rf "$backup"
  mkdir -p "$backup/tree"
  cp -pR "$XCARE_SOFTWARE_DIR/." "$backup/tree/"
  if [ -f "$XCARE_VERSION_FILE" ]; then cp -p "$XCARE_VERSION_FILE" "$backup/version"; fi
  touch "$backup/.complete"
fi
find "$XCARE_SOFTWARE_DIR" -mindepth 1 -delete
tar -xzf "$XCARE_ARTIFACT" -C "$XCARE_SOFTWARE_DIR"
if [ -n "${XCARE_EXAMPLE_PAUSE_FILE:-}" ]; then
  echo $$ > "$XCARE_EXAMPLE_PAUSE_FILE"
  sleep 30
fi
if [ "${XCARE_EXAMPLE_FAIL_INSTALL:-}" = 1 ]; then
  echo "install failing on purpose (XCARE_EXAMPLE_FAIL_INSTALL=1)" >&2
  exit 1
fi
printf '%s\n' "$XCARE_PATCH_VERSION" > "$XCARE_VERSION_FILE.tmp"
mv "$XCARE_VERSION_FILE.tmp" "$XCARE_VERSION_FILE"
echo "installed $XCARE_PATCH_VERSION"
