#!/bin/sh
# Make sure Debian's chromium (driven by Playwright in tests/browser/) is present.
if [ -x /usr/bin/chromium ]; then exit 0; fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "installing Debian's chromium for the browser tests..."
  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver) >/tmp/flowviz-apt.log 2>&1 \
    || echo "WARNING: could not install chromium (see /tmp/flowviz-apt.log); the browser tests will be skipped LOUDLY"
else
  echo "WARNING: /usr/bin/chromium is missing and I cannot install it (need root and apt-get):"
  echo "         sudo apt-get install chromium chromium-driver   -- until then the browser tests are skipped"
fi
exit 0
