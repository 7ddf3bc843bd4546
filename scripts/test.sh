#!/usr/bin/env bash
# The README's test command: set up, then run every test (Swift Testing and XCTest).
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/setup.sh
swift build --build-tests
swift test --skip-build "$@"
