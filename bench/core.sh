#!/usr/bin/env bash
# Issue 2's measurements, on 127.0.0.1 only:
#   1. CONNECT relay throughput: a 1 GiB download from nginx, direct vs modgate vs squid;
#   2. HTTP forwarding: small keep-alive GETs with wrk (50 connections), direct vs modgate vs squid;
#   3. idle tunnels: RSS per idle CONNECT tunnel in modgate.
# Contenders are interleaved (A B C A B C ...) over ROUNDS rounds; medians are reported.
# Needs: nginx, squid, wrk, curl (apt-get install nginx-light squid wrk curl).
set -euo pipefail
cd "$(dirname "$0")/.."
ROUNDS=${ROUNDS:-5}
SECS=${SECS:-10}
# 10,000 idle tunnels need 20,002 descriptors in the proxy; this workplace's
# hard limit is 20,000, so the default stays just under it.
TUNNELS=${TUNNELS:-9900}
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; [ -f "$work/nginx.pid" ] && kill "$(cat "$work/nginx.pid")" 2>/dev/null; rm -rf "$work"' EXIT

cargo build --release --quiet
MODGATE=target/release/modgate
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# --- origin: nginx with a 1 GiB file and a small one
NGINX_PORT=$(port)
head -c 1073741824 /dev/zero > "$work/1g"
printf 'hello from nginx\n' > "$work/small"
cat > "$work/nginx.conf" <<CONF
worker_processes 1;
pid $work/nginx.pid;
error_log $work/nginx-error.log;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  keepalive_requests 1000000;
  client_body_temp_path $work; proxy_temp_path $work; fastcgi_temp_path $work; uwsgi_temp_path $work; scgi_temp_path $work;
  server { listen 127.0.0.1:$NGINX_PORT; root $work; }
}
CONF
nginx -c "$work/nginx.conf"

# --- modgate: allow loopback (the default refuses it), logs on as in production
MG_PORT=$(port)
cat > "$work/modgate.toml" <<CONF
listen = "127.0.0.1:$MG_PORT"
[[rule]]
name = "bench"
action = "direct"
CONF
$MODGATE serve --config "$work/modgate.toml" 2>"$work/modgate.log" &
MG_PID=$!

# --- squid: its best reasonable config for a forward proxy benchmark
SQ_PORT=$(port)
cat > "$work/squid.conf" <<CONF
http_port 127.0.0.1:$SQ_PORT
http_access allow all
acl CONNECT method CONNECT
cache deny all
cache_mem 0 MB
access_log none
cache_log $work/squid-cache.log
pid_filename $work/squid.pid
coredump_dir $work
shutdown_lifetime 0 seconds
workers 1
CONF
squid -N -f "$work/squid.conf" &
for _ in $(seq 50); do
  if curl -s -o /dev/null -x "http://127.0.0.1:$SQ_PORT" "http://127.0.0.1:$NGINX_PORT/small" && grep -q listening "$work/modgate.log"; then break; fi
  sleep 0.2
done

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
tunnel_speed() { curl -s -o /dev/null -w '%{speed_download}' "$@" "http://127.0.0.1:$NGINX_PORT/1g"; }
cat > "$work/abs.lua" <<LUA
wrk.path = "http://127.0.0.1:$NGINX_PORT/small"
LUA
wrk_rps() { wrk -t1 -c50 -d"${SECS}s" --latency "$@" | awk '/Requests\/sec/ {print $2}'; }

declare -A T H
for r in $(seq "$ROUNDS"); do
  T[direct]+="$(tunnel_speed) "
  T[modgate]+="$(tunnel_speed -p -x "http://127.0.0.1:$MG_PORT") "
  T[squid]+="$(tunnel_speed -p -x "http://127.0.0.1:$SQ_PORT") "
  H[direct]+="$(wrk_rps "http://127.0.0.1:$NGINX_PORT/small") "
  H[modgate]+="$(wrk_rps -s "$work/abs.lua" "http://127.0.0.1:$MG_PORT/") "
  H[squid]+="$(wrk_rps -s "$work/abs.lua" "http://127.0.0.1:$SQ_PORT/") "
done
for k in direct modgate squid; do
  t=$(echo ${T[$k]} | tr ' ' '\n' | median); h=$(echo ${H[$k]} | tr ' ' '\n' | median)
  printf '%-8s tunnel_MBps=%8.0f  http_rps=%8.0f\n' "$k" "$(echo "$t/1048576" | bc -l)" "$h"
  eval "t_$k=$t; h_$k=$h"
done
printf 'ratio tunnel modgate/direct=%.2f modgate/squid=%.2f; http modgate/squid=%.2f\n' \
  "$(echo "$t_modgate/$t_direct" | bc -l)" "$(echo "$t_modgate/$t_squid" | bc -l)" "$(echo "$h_modgate/$h_squid" | bc -l)"

python3 bench/idle_tunnels.py "$MG_PORT" "$MG_PID" "$TUNNELS"
