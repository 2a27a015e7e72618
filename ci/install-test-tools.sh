#!/bin/sh
# Tools two tests need that pip cannot install: chromium (the HTML report rendered in
# a real browser) and shellcheck (the deploy hook). `make install` and .ci/run call
# this: as root on Debian/Ubuntu, whatever is missing is installed from the
# distribution's packages, so CI runs those tests instead of skipping them. Anywhere
# else it only says what is missing and the tests skip, naming the package.
set -u

missing=""
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    missing="chromium"
fi
if ! command -v shellcheck >/dev/null 2>&1; then
    missing="${missing:+$missing }shellcheck"
fi
[ -z "$missing" ] && exit 0

if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "note: not installed: $missing (as root on Debian: apt-get install -y $missing);" \
        "the tests that need them will skip." >&2
    exit 0
fi

echo "installing test tools from the distribution's packages: $missing" >&2
export DEBIAN_FRONTEND=noninteractive
# Word splitting of $missing is wanted: one argument per package.
# shellcheck disable=SC2086
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends $missing; } >/dev/null; then
    echo "note: could not install $missing; the tests that need them will skip." >&2
fi
exit 0
