#!/usr/bin/env bash
# Fetch the official FHIR R4B examples (npm package hl7.fhir.r4b.examples, CC0) that
# tests/engine/fhir/test_r4b_examples.py runs through the FHIR intake. Idempotent.
# Installs into $FHIR_EXAMPLES_CACHE (default: .cache/fhir-examples in the repo); needs node + npm
# (scripts/system-deps.sh installs them).
set -euo pipefail
VERSION=4.3.0
here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${FHIR_EXAMPLES_CACHE:-$here/.cache/fhir-examples}"
pkg="$cache/node_modules/hl7.fhir.r4b.examples"
if [ -f "$pkg/package.json" ]; then
  exit 0
fi
mkdir -p "$cache"
echo "fetching hl7.fhir.r4b.examples@$VERSION into $cache"
npm install --silent --no-audit --no-fund --prefix "$cache" "hl7.fhir.r4b.examples@$VERSION" >/dev/null
