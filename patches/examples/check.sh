#!/bin/sh
# patches.check for the sample app: the new version must be on disk and the app must run and say so.
# XCARE_EXAMPLE_FAIL_CHECK=1 makes it fail (tests of rollback); XCARE_EXAMPLE_CHECK_SLEEP=S sleeps first.
set -eu
if [ -n "${XCARE_EXAMPLE_CHECK_SLEEP:-}" ]; then sleep "$XCARE_EXAMPLE_CHECK_SLEEP"; fi
if [ "${XCARE_EXAMPLE_FAIL_CHECK:-}" = 1 ]; then
  echo "check failing on purpose (XCARE_EXAMPLE_FAIL_CHECK=1)" >&2
  exit 1
fi
test "$(cat "$XCARE_VERSION_FILE")" = "$XCARE_PATCH_VERSION"
out=$(sh "$XCARE_SOFTWARE_DIR/bin/hello.sh")
test "$out" = "sample-app $XCARE_PATCH_VERSION"
echo "check ok: $out"
