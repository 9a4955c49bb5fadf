#!/usr/bin/env bash
# The Debian packages the tests need, installed when missing: the full Fashion-MNIST (tests
# that read it skip without it) and Chromium (the docs-site and browser-export tests run it
# headless and fail without it). Run by `pnpm test` and by .ci/run. Without apt-get, or
# without root, it says what is missing and leaves the install to you.
set -euo pipefail
debs=()
[ -d /usr/share/datasets/fashion-mnist ] || debs+=(dataset-fashion-mnist)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || debs+=(chromium)
[ "${#debs[@]}" -eq 0 ] && exit 0
if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ]; then
  echo "system-deps: installing ${debs[*]} (apt-get)" >&2
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${debs[@]}" >/dev/null
else
  echo "system-deps: missing ${debs[*]}; install them with: sudo apt-get install -y ${debs[*]}" >&2
fi
