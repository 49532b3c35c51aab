# Make sure the Redis and PostgreSQL that the multi-instance tests use are up (sourced, not run).
# Starts them when they are installed but stopped; says plainly what is missing otherwise.
# STREAMCHAT_TEST_REDIS_URL / STREAMCHAT_TEST_POSTGRES_URL point the tests elsewhere; then this
# only checks that they answer.

port_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

wait_port() {
  local host="$1" port="$2" tries=100
  while ! port_open "$host" "$port"; do
    tries=$((tries - 1)); [ "$tries" -gt 0 ] || return 1; sleep 0.1
  done
}

ensure_redis() {
  if [ -n "${STREAMCHAT_TEST_REDIS_URL:-}${STREAMCHAT_BENCH_REDIS_URL:-}" ]; then return 0; fi
  port_open 127.0.0.1 6379 && return 0
  if ! command -v redis-server >/dev/null; then
    echo "The multi-instance tests need Redis on 127.0.0.1:6379 and it is not running or installed." >&2
    echo "Install it (Debian: apt-get install redis-server) or set STREAMCHAT_TEST_REDIS_URL." >&2
    return 1
  fi
  say "Starting Redis on 127.0.0.1:6379 (it was stopped)"
  mkdir -p /var/lib/redis /var/log/redis 2>/dev/null || true
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/streamchat-test.log
  wait_port 127.0.0.1 6379 || { echo "Redis did not start (see /var/log/redis/streamchat-test.log)" >&2; return 1; }
}

ensure_postgres() {
  if [ -n "${STREAMCHAT_TEST_POSTGRES_URL:-}${STREAMCHAT_BENCH_POSTGRES_URL:-}" ]; then return 0; fi
  port_open 127.0.0.1 5432 && return 0
  if ! command -v pg_ctlcluster >/dev/null || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    echo "The multi-instance tests need PostgreSQL on 127.0.0.1:5432 (trust auth, database test)" >&2
    echo "and it is not running or installed. Install it (Debian: apt-get install postgresql) or" >&2
    echo "set STREAMCHAT_TEST_POSTGRES_URL=postgresql://user@host:port/db." >&2
    return 1
  fi
  say "Starting PostgreSQL on 127.0.0.1:5432 (it was stopped)"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | sort -V | tail -n1)" main start
  wait_port 127.0.0.1 5432 || { echo "PostgreSQL did not start" >&2; return 1; }
}
