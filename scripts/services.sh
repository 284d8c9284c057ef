#!/usr/bin/env bash
# Makes sure the local RabbitMQ, PostgreSQL and MariaDB that the tests use are running, starting
# any that is down. Exits non-zero if one cannot be reached: tests must not silently skip.
set -uo pipefail

up() { timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; }

start() {
  case "$1" in
    rabbitmq) rabbitmq-server -detached >/dev/null 2>&1 ;;
    postgresql) pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start ;;
    mariadb) start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql ;;
  esac
}

status=0
for entry in rabbitmq:5672 postgresql:5432 mariadb:3306; do
  name=${entry%%:*}; port=${entry##*:}
  if ! up "$port"; then
    echo "services: $name is down on port $port; starting it"
    start "$name" || true
    for _ in $(seq 1 60); do up "$port" && break; sleep 1; done
  fi
  if up "$port"; then
    [ "$name" = rabbitmq ] && timeout 60 rabbitmqctl -q await_startup >/dev/null 2>&1
    echo "services: $name is up on port $port"
  else
    echo "services: $name is NOT reachable on port $port" >&2; status=1
  fi
done
exit $status
