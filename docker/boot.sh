#!/bin/sh
# The `migrate` service: wait until the database answers, then apply the
# committed migrations once (`detector db upgrade`, to head) and exit 0.
# The api and the workers start only after this has exited successfully
# (depends_on: condition: service_completed_successfully).
#
# MIGRATE_WAIT_SECONDS (default 120): how long to wait for the database.
# A configuration error (e.g. the example secrets in production) stops at once.
set -u

wait_seconds=${MIGRATE_WAIT_SECONDS:-120}
deadline=$(( $(date +%s) + wait_seconds ))
attempt=1
while :; do
    python - <<'PY'
import sys
from pathlib import Path

from detector.config import ConfigError, load_config
from detector.db import make_engine

try:
    config = load_config()
except ConfigError as exc:
    print(f"migrate: {exc}", file=sys.stderr)
    sys.exit(2)
url = config["DATABASE_URL"]
Path(config["DATA_DIR"]).mkdir(parents=True, exist_ok=True)  # SQLite lives there
try:
    with make_engine(url).connect():
        pass
except Exception as exc:  # not up yet: refused, unknown host, starting up, ...
    print(f"migrate: database not reachable yet ({type(exc).__name__}: {exc})", file=sys.stderr)
    sys.exit(1)
PY
    status=$?
    [ "$status" -eq 0 ] && break
    [ "$status" -eq 1 ] || exit "$status"
    if [ "$(date +%s)" -ge "$deadline" ]; then
        echo "migrate: the database did not answer within ${wait_seconds} s; giving up" >&2
        exit 1
    fi
    attempt=$((attempt + 1))
    sleep 2
done

echo "migrate: database reachable (attempt $attempt); upgrading to head"
exec detector db upgrade --revision head
