#!/bin/sh
# patches.install for the sample app (Mender update-module style; run by xcare-agent with sh -c in
# $XCARE_STAGING). Backs the software dir up once (idempotent: a re-run after a crash keeps the
# first, good backup), then replaces the tree with the artifact and writes the new version.
# Exit codes the agent understands: 75 = transient failure (the daemon may retry), 76 = installed, reboot
# needed (the agent reboots, resumes on the new boot and commits only once the check passes there).
# Test switches: XCARE_EXAMPLE_FAIL_INSTALL=1 fails after extracting; XCARE_EXAMPLE_PAUSE_FILE=F
# writes this shell's pid to F and sleeps XCARE_EXAMPLE_PAUSE_S (default 30) s mid-install (crash tests
# kill the agent there); XCARE_EXAMPLE_TEMPFAIL_ONCE=F exits 75 once (creates F); XCARE_EXAMPLE_REBOOT=1
# exits 76 after installing.
set -eu
: "${XCARE_ARTIFACT:?}" "${XCARE_STAGING:?}" "${XCARE_SOFTWARE_DIR:?}" "${XCARE_VERSION_FILE:?}" "${XCARE_PATCH_VERSION:?}"
backup="$XCARE_STAGING/backup"
if [ -n "${XCARE_EXAMPLE_TEMPFAIL_ONCE:-}" ] && [ ! -e "$XCARE_EXAMPLE_TEMPFAIL_ONCE" ]; then
  touch "$XCARE_EXAMPLE_TEMPFAIL_ONCE"
  echo "mirror busy, try again later (XCARE_EXAMPLE_TEMPFAIL_ONCE)" >&2
  exit 75
fi
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
  sleep "${XCARE_EXAMPLE_PAUSE_S:-30}"
fi
if [ "${XCARE_EXAMPLE_FAIL_INSTALL:-}" = 1 ]; then
  echo "install failing on purpose (XCARE_EXAMPLE_FAIL_INSTALL=1)" >&2
  exit 1
fi
printf '%s\n' "$XCARE_PATCH_VERSION" > "$XCARE_VERSION_FILE.tmp"
mv "$XCARE_VERSION_FILE.tmp" "$XCARE_VERSION_FILE"
echo "installed $XCARE_PATCH_VERSION"
if [ "${XCARE_EXAMPLE_REBOOT:-}" = 1 ]; then
  echo "reboot needed to take effect"
  exit 76
fi
