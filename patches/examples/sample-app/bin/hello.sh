#!/bin/sh
# The "application" of the sample tree: prints its version. check.sh runs it after an install.
dir=$(dirname "$0")/..
echo "sample-app $(cat "$dir/VERSION")"
