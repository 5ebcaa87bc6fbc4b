#!/usr/bin/env bash
# make run: one local peer with its own kubo, both on loopback.
# State lives in $PINRING_RUN_DIR (default ./.pinring-run). Ctrl-C stops both.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
state=${PINRING_RUN_DIR:-$root/.pinring-run}
ipfs=$root/bin/ipfs
peer=$root/bin/cluster-peer
export IPFS_PATH=$state/kubo
export PINRING_PATH=$state/peer
mkdir -p "$state"

if [ ! -f "$IPFS_PATH/config" ]; then
  echo "initialising kubo repo in $IPFS_PATH (loopback only, no bootstrap, no DHT)"
  "$ipfs" init --profile=test --empty-repo >/dev/null
  "$ipfs" config Addresses.API /ip4/127.0.0.1/tcp/0
  "$ipfs" config Addresses.Gateway ""
  "$ipfs" config --json Addresses.Swarm '["/ip4/127.0.0.1/tcp/0"]'
  "$ipfs" config --json Bootstrap '[]'
  "$ipfs" config Routing.Type none
  "$ipfs" config --json Discovery.MDNS.Enabled false
  "$ipfs" config --json AutoConf.Enabled false 2>/dev/null || true
fi

kubo_pid=""
peer_pid=""
stop() {
  trap - INT TERM EXIT
  [ -n "$peer_pid" ] && kill -TERM "$peer_pid" 2>/dev/null && wait "$peer_pid" 2>/dev/null || true
  [ -n "$kubo_pid" ] && kill -TERM "$kubo_pid" 2>/dev/null && wait "$kubo_pid" 2>/dev/null || true
  echo "stopped"
}
trap stop INT TERM EXIT

rm -f "$IPFS_PATH/api"
"$ipfs" daemon --offline=false >"$state/kubo.log" 2>&1 &
kubo_pid=$!
for _ in $(seq 1 300); do
  [ -s "$IPFS_PATH/api" ] && break
  kill -0 "$kubo_pid" 2>/dev/null || { echo "kubo failed to start; see $state/kubo.log"; tail -5 "$state/kubo.log"; exit 1; }
  sleep 0.1
done
[ -s "$IPFS_PATH/api" ] || { echo "kubo did not write its API address"; exit 1; }
export PINRING_IPFS_API=$(cat "$IPFS_PATH/api")
echo "kubo RPC API: $PINRING_IPFS_API (pid $kubo_pid)"

export PINRING_P2P_LISTEN=${PINRING_P2P_LISTEN:-/ip4/127.0.0.1/tcp/0}
if [ ! -f "$PINRING_PATH/service.json" ]; then
  "$peer" init
fi

"$peer" daemon &
peer_pid=$!
api=${PINRING_API_LISTEN:-}
for _ in $(seq 1 300); do
  if "$root/bin/cluster-ctl" ${api:+--host "$api"} -t 2s id >/dev/null 2>&1; then break; fi
  kill -0 "$peer_pid" 2>/dev/null || { echo "cluster-peer failed to start"; exit 1; }
  sleep 0.1
done
host=$("$root/bin/cluster-ctl" ${api:+--host "$api"} --json id | sed -n 's/.*"id": "\(12D3[^"]*\)".*/\1/p' | head -1)
cat <<MSG

Pinring is running.
  REST API : ${api:-/ip4/127.0.0.1/tcp/9094} (http://127.0.0.1:9094 unless PINRING_API_LISTEN says otherwise)
  dashboard: http://127.0.0.1:9094/ui/ (same host:port as the REST API)
  peer ID  : $host
  state    : $state
Try, in another terminal:
  bin/cluster-ctl ${api:+--host $api }pin add --wait \$(IPFS_PATH=$IPFS_PATH bin/ipfs add -q --pin=false README.md)
  bin/cluster-ctl ${api:+--host $api }status
Ctrl-C stops the peer and kubo.
MSG
wait "$peer_pid"
