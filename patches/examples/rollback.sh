#!/bin/sh
# patches.rollback for the sample app: put the backup made by install.sh back. Idempotent: the agent
# re-runs it after a crash. Without a complete backup the install never touched the tree: nothing to do.
set -eu
: "${XCARE_STAGING:?}" "${XCARE_SOFTWARE_DIR:?}" "${XCARE_VERSION_FILE:?}"
backup="$XCARE_STAGING/backup"
if [ ! -e "$backup/.complete" ]; then
  echo "no backup: nothing to roll back"
  exit 0
fi
find "$XCARE_SOFTWARE_DIR" -mindepth 1 -delete
cp -pR "$backup/tree/." "$XCARE_SOFTWARE_DIR/"
if [ -f "$backup/version" ]; then
  cp -p "$backup/version" "$XCARE_VERSION_FILE.tmp"
  mv "$XCARE_VERSION_FILE.tmp" "$XCARE_VERSION_FILE"
fi
echo "rolled back to $(cat "$XCARE_VERSION_FILE")"
