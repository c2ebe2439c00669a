#!/usr/bin/env bash
# Install the real servers the test suite starts: Debian's rabbitmq-server, postgresql (initdb'd per test
# run into a temp dir, never the system cluster), haproxy (in front of the cluster tests' nodes) and
# chromium (+ CJK font),
# promtool (prometheus), which checks the alert rules, and node + npm, which fetch the FHIR R4B examples
# package (scripts/fetch-fhir-examples.sh).
# Idempotent: does nothing when they are already there. Needs root (CI runs as root) or sudo.
set -euo pipefail
need=()
command -v rabbitmq-server >/dev/null 2>&1 || [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need+=(rabbitmq-server)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v haproxy >/dev/null 2>&1 || need+=(haproxy)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
# Chinese glyphs for the console screenshots the browser tests save (labels are zh/en).
dpkg -s fonts-wqy-zenhei >/dev/null 2>&1 || need+=(fonts-wqy-zenhei)
# promtool (Debian `prometheus`) checks deploy/prometheus/alerts.yml; the server itself is never started.
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
[ ${#need[@]} -eq 0 ] && exit 0
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
echo "installing system packages: ${need[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# policy-rc.d stops Debian's postinst from starting a system-wide broker: tests start their own.
if [ ! -e /usr/sbin/policy-rc.d ]; then
  printf '#!/bin/sh\nexit 101\n' | $SUDO tee /usr/sbin/policy-rc.d >/dev/null
  $SUDO chmod +x /usr/sbin/policy-rc.d
  trap '$SUDO rm -f /usr/sbin/policy-rc.d' EXIT
fi
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
