#!/usr/bin/env bash
# S3, GCS and Azure Blob protocol servers on 127.0.0.1, for tests and by hand.
#
#   scripts/emulators.sh start [s3|gcs|azure ...]   install if needed, start, create buckets
#   scripts/emulators.sh stop  [s3|gcs|azure ...]   stop exactly the processes started here
#   scripts/emulators.sh freeze|thaw NAME...        SIGSTOP / SIGCONT (a server that accepts
#                                                   connections and never answers)
#   scripts/emulators.sh env                        print the export lines a volume needs
#   scripts/emulators.sh s3-put KEY < DATA          overwrite an object in the S3 bucket (tests:
#                                                   simulate tampering; signed, as moto requires)
#
# s3: a moto server; gcs: a second moto server, spoken to through object_store's GCS
# client (its XML API is S3-compatible); azure: Azurite. Each is its own process, so a
# test can stop, freeze or restart one alone. Installs go to a cache dir kept between
# runs (CLOUDRAID_EMULATOR_DIR, default ~/.cache/cloudraid-emulators).
set -euo pipefail

root=${CLOUDRAID_EMULATOR_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/cloudraid-emulators}
run=$root/run
S3_PORT=${CLOUDRAID_S3_PORT:-19000}
GCS_PORT=${CLOUDRAID_GCS_PORT:-19001}
AZURE_PORT=${CLOUDRAID_AZURE_PORT:-19002}
BUCKET=cloudraid   # no '-': object_store escapes it in GCS paths and moto does not decode it
MOTO_VERSION=5.1.*
AZURITE_VERSION=3.35.0   # the newest that runs on Node 20
GCS_TOKEN=test/20260101/us-east-1/s3/aws4_request   # moto wants an AWS-shaped credential scope

die() { echo "emulators: $*" >&2; exit 1; }

port_of() { case $1 in s3) echo "$S3_PORT" ;; gcs) echo "$GCS_PORT" ;; azure) echo "$AZURE_PORT" ;; *) die "unknown emulator '$1' (use s3, gcs or azure)" ;; esac; }

install_moto() {
  [ -x "$root/venv/bin/moto_server" ] && return
  echo "emulators: installing moto into $root/venv" >&2
  python3 -m venv "$root/venv" >/dev/null || die "python3 -m venv failed (apt-get install python3-venv)"
  "$root/venv/bin/pip" install -q "moto[s3]==$MOTO_VERSION" flask flask-cors >/dev/null || die "pip install moto failed"
}

install_azurite() {
  [ -x "$root/node/node_modules/.bin/azurite-blob" ] && return
  command -v npm >/dev/null || die "npm is missing (apt-get install npm)"
  echo "emulators: installing Azurite $AZURITE_VERSION into $root/node" >&2
  mkdir -p "$root/node"
  npm install --silent --no-audit --no-fund --prefix "$root/node" "azurite@$AZURITE_VERSION" >/dev/null || die "npm install azurite failed"
}

alive() { [ -f "$run/$1.pid" ] && kill -0 "$(cat "$run/$1.pid")" 2>/dev/null; }

wait_port() {
  local name=$1 port=$2
  for _ in $(seq 100); do
    if curl -s -o /dev/null "http://127.0.0.1:$port/"; then return 0; fi
    alive "$name" || die "$name exited at start; see $run/$name.log"
    sleep 0.1
  done
  die "$name did not answer on port $port within 10 s; see $run/$name.log"
}

# Creates the Azure container with a SharedKey-signed request (the emulator's
# published development account).
azure_container() {
  "$root/venv/bin/python" - "$AZURE_PORT" "$BUCKET" <<'PY'
import base64, datetime, hashlib, hmac, sys, urllib.error, urllib.request
port, container = sys.argv[1], sys.argv[2]
account = "devstoreaccount1"
key = base64.b64decode("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==")
date = datetime.datetime.now(datetime.timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")
version = "2021-08-06"
to_sign = ("PUT\n" + "\n" * 11 + f"x-ms-date:{date}\nx-ms-version:{version}\n"
           + f"/{account}/{account}/{container}\nrestype:container")
sig = base64.b64encode(hmac.new(key, to_sign.encode(), hashlib.sha256).digest()).decode()
req = urllib.request.Request(f"http://127.0.0.1:{port}/{account}/{container}?restype=container", method="PUT",
                             headers={"x-ms-date": date, "x-ms-version": version,
                                      "Authorization": f"SharedKey {account}:{sig}", "Content-Length": "0"})
try:
    urllib.request.urlopen(req, timeout=10)
except urllib.error.HTTPError as e:
    if e.code != 409:  # 409: exists already
        sys.exit(f"creating container failed: {e.code} {e.read()[:200]!r}")
PY
}

start_one() {
  local name=$1 port
  port=$(port_of "$name")
  mkdir -p "$run"
  if alive "$name"; then return; fi
  case $name in
    s3|gcs)
      install_moto
      setsid "$root/venv/bin/moto_server" -H 127.0.0.1 -p "$port" >"$run/$name.log" 2>&1 </dev/null &
      echo $! >"$run/$name.pid"
      wait_port "$name" "$port"
      curl -s -o /dev/null -X PUT -H 'Content-Type: application/octet-stream' "http://127.0.0.1:$port/$BUCKET"
      ;;
    azure)
      install_moto   # its venv's python signs the container request
      install_azurite
      mkdir -p "$run/azurite-data"
      setsid "$root/node/node_modules/.bin/azurite-blob" --blobHost 127.0.0.1 --blobPort "$port" \
        --location "$run/azurite-data" --disableTelemetry --skipApiVersionCheck >"$run/$name.log" 2>&1 </dev/null &
      echo $! >"$run/$name.pid"
      wait_port "$name" "$port"
      azure_container
      ;;
  esac
  echo "emulators: $name on 127.0.0.1:$port (pid $(cat "$run/$name.pid"))" >&2
}

stop_one() {
  local name=$1 pid
  port_of "$name" >/dev/null
  [ -f "$run/$name.pid" ] || return 0
  pid=$(cat "$run/$name.pid")
  kill -CONT "$pid" 2>/dev/null || true
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$run/$name.pid"
}

cmd=${1:-}
shift || true
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(s3 gcs azure)
case $cmd in
  start) for n in "${names[@]}"; do start_one "$n"; done ;;
  stop) for n in "${names[@]}"; do stop_one "$n"; done ;;
  env)
    cat <<EOF
export AWS_ENDPOINT=http://127.0.0.1:$S3_PORT AWS_ALLOW_HTTP=true AWS_REGION=us-east-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
export GOOGLE_BASE_URL=http://127.0.0.1:$GCS_PORT GOOGLE_BEARER_TOKEN=$GCS_TOKEN
export AZURE_STORAGE_USE_EMULATOR=true AZURITE_BLOB_STORAGE_URL=http://127.0.0.1:$AZURE_PORT AZURE_ALLOW_HTTP=true
export CLOUDRAID_EMULATOR_BACKENDS="s3=s3://$BUCKET gcs=gs://$BUCKET azure=az://$BUCKET"
EOF
    ;;
  freeze|thaw)
    sig=STOP; [ "$cmd" = thaw ] && sig=CONT
    for n in "${names[@]}"; do
      port_of "$n" >/dev/null
      alive "$n" || die "$n is not running"
      kill -"$sig" "$(cat "$run/$n.pid")"
    done
    ;;
  s3-put)
    key=${names[0]:-}
    [ -n "$key" ] || die "usage: scripts/emulators.sh s3-put KEY < DATA"
    "$root/venv/bin/python" - "$S3_PORT" "$BUCKET" "$key" <<'PY'
import sys, boto3
port, bucket, key = sys.argv[1:4]
s3 = boto3.client("s3", endpoint_url=f"http://127.0.0.1:{port}", region_name="us-east-1",
                  aws_access_key_id="test", aws_secret_access_key="test")
s3.put_object(Bucket=bucket, Key=key, Body=sys.stdin.buffer.read())
PY
    ;;
  *) die "usage: scripts/emulators.sh start|stop [s3|gcs|azure ...] | env | s3-put KEY" ;;
esac
