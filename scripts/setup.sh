#!/usr/bin/env bash
# Installs what Fledge needs on a Debian machine that already has Swift 6.
# Safe to run again: it installs only what is missing.
set -euo pipefail

need=()
have_pkg() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

have_pkg libcurl4-openssl-dev || need+=(libcurl4-openssl-dev)
have_pkg zlib1g-dev || need+=(zlib1g-dev)
command -v prometheus >/dev/null && command -v promtool >/dev/null || need+=(prometheus)
command -v openssl >/dev/null || need+=(openssl)
command -v curl >/dev/null || need+=(curl)
# kubectl checks the in-process API server; Debian's kubernetes-client conflicts
# with a kubectl installed otherwise, so it is only installed when none is found.
command -v kubectl >/dev/null || need+=(kubernetes-client)
# Headless Chromium renders `fledge report`'s HTML to a PNG in the report tests.
command -v chromium >/dev/null || need+=(chromium)

if [ ${#need[@]} -gt 0 ]; then
    echo "setup: installing ${need[*]}"
    SUDO=""
    [ "$(id -u)" -ne 0 ] && SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

command -v swift >/dev/null || { echo "setup: Swift 6 is not on PATH (see https://www.swift.org/install/linux/)" >&2; exit 1; }
echo "setup: ready (swift, libcurl, prometheus $(prometheus --version 2>&1 | head -1 | awk '{print $3}'), kubectl, chromium)"
