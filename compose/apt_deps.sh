#!/usr/bin/env bash
# Debian packages the real-Airflow tests run as local servers (testkit/local_servers.py): PostgreSQL for
# Airflow 2.x (which refuses SQLite with LocalExecutor) and Redis as the Celery broker. Installs only what
# is missing, non-interactively, with one `apt-get update`; a no-op (about 0.1 s) once both are there.
set -euo pipefail

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v redis-server >/dev/null || missing+=(redis-server)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
  echo "apt_deps.sh: missing ${missing[*]}; install them as root: apt-get install -y ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
# The packages would start system services on the default ports; the tests start their own instances.
policy=/usr/sbin/policy-rc.d
created_policy=
if [ ! -e $policy ]; then printf '#!/bin/sh\nexit 101\n' > $policy; chmod +x $policy; created_policy=1; fi
trap '[ -n "$created_policy" ] && rm -f $policy' EXIT
apt-get update -q
apt-get install -y -q --no-install-recommends "${missing[@]}"
