#!/usr/bin/env bash
# Brings up the database servers the integration tests talk to, on a fresh Debian machine or
# on a development machine where they already run. Idempotent; safe to run twice.
#
#   PostgreSQL 15  127.0.0.1:5432  user postgres, trust auth   (SLUICE_TEST_POSTGRES_URL)
#   MariaDB        127.0.0.1:3306  root, no password            (SLUICE_TEST_MYSQL_URL)
#   PostgreSQL 15  127.0.0.1:55432 a private instance with wal_level = logical, for change
#                                  capture (SLUICE_TEST_PG_CDC_URL); data in /var/tmp
#   MariaDB        127.0.0.1:53306 a private instance with the binary log on (ROW format, full
#                                  row images and metadata), for change capture
#                                  (SLUICE_TEST_MYSQL_CDC_URL); data in /var/tmp
#
# Tests create a uniquely named database each and drop it afterwards.
set -euo pipefail
export TMPDIR=${TMPDIR:-/var/tmp}

need=()
command -v pg_ctlcluster >/dev/null 2>&1 || need+=(postgresql-15 postgresql-client-15)
command -v mariadbd >/dev/null 2>&1 || [ -x /usr/sbin/mariadbd ] || need+=(mariadb-server mariadb-client)
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  apt-get update -q
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${need[@]}"
fi

# ---- PostgreSQL on 127.0.0.1:5432, trust for loopback ----
PGVER=$(ls /etc/postgresql | sort -V | tail -1)
HBA=/etc/postgresql/$PGVER/main/pg_hba.conf
if ! grep -q '^host all all 127.0.0.1/32 trust' "$HBA"; then
  sed -i '1i host all all 127.0.0.1/32 trust' "$HBA"
  pg_ctlcluster --skip-systemctl-redirect "$PGVER" main reload 2>/dev/null || true
fi
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$PGVER" main start
fi
for _ in $(seq 60); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.5; done
pg_isready -h 127.0.0.1 -p 5432 || { echo "error: PostgreSQL did not start" >&2; exit 1; }

# ---- MariaDB on 127.0.0.1:3306, root without password, LOAD DATA LOCAL allowed ----
if ! mariadb-admin -h127.0.0.1 -uroot ping >/dev/null 2>&1; then
  install -d -o mysql -g mysql /run/mysqld
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
fi
for _ in $(seq 60); do mariadb-admin -h127.0.0.1 -uroot ping >/dev/null 2>&1 && break; sleep 0.5; done
mariadb-admin -h127.0.0.1 -uroot ping >/dev/null || { echo "error: MariaDB did not start" >&2; exit 1; }
if ! mariadb -h127.0.0.1 -uroot -e 'select 1' >/dev/null 2>&1; then
  # A fresh Debian install lets root in only through the unix socket: allow TCP without password.
  mariadb -uroot <<'SQL'
ALTER USER 'root'@'localhost' IDENTIFIED VIA unix_socket OR mysql_native_password USING PASSWORD('');
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
SQL
fi
mariadb -h127.0.0.1 -uroot -e "SET GLOBAL local_infile = 1"

# ---- a private PostgreSQL for change capture: wal_level = logical on 127.0.0.1:55432 ----
# (the shared one keeps wal_level = replica). Its own data directory, owned by postgres.
PGBIN=/usr/lib/postgresql/$PGVER/bin
CDC_DATA=/var/tmp/sluice-pg-cdc
if ! pg_isready -q -h 127.0.0.1 -p 55432; then
  if [ ! -f "$CDC_DATA/PG_VERSION" ]; then
    rm -rf "$CDC_DATA"
    install -d -o postgres -g postgres "$CDC_DATA"
    runuser -u postgres -- "$PGBIN/initdb" -D "$CDC_DATA" -U postgres --auth=trust -E UTF8 >/dev/null
  fi
  runuser -u postgres -- "$PGBIN/pg_ctl" -D "$CDC_DATA" -l "$CDC_DATA/server.log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=55432 -c unix_socket_directories=$CDC_DATA \
        -c wal_level=logical -c max_replication_slots=64 -c max_wal_senders=64 \
        -c logical_decoding_work_mem=64kB -c fsync=off -c shared_buffers=64MB" start >/dev/null
fi
pg_isready -h 127.0.0.1 -p 55432 >/dev/null || { echo "error: the CDC PostgreSQL did not start (see $CDC_DATA/server.log)" >&2; exit 1; }

# ---- a private MariaDB for change capture: binary log on, on 127.0.0.1:53306 ----
# (the shared one has no binary log). Its own data directory, owned by mysql.
MY_CDC_DATA=/var/tmp/sluice-mariadb-cdc
if ! mariadb-admin -h127.0.0.1 -P53306 -uroot ping >/dev/null 2>&1; then
  if [ ! -d "$MY_CDC_DATA/mysql" ]; then
    rm -rf "$MY_CDC_DATA"
    install -d -o mysql -g mysql "$MY_CDC_DATA"
    mariadb-install-db --no-defaults --user=mysql --datadir="$MY_CDC_DATA" \
      --auth-root-authentication-method=normal --skip-test-db >/dev/null
  fi
  # --pidfile: another mariadbd (the shared one) runs the same executable.
  start-stop-daemon --start --background --chuid mysql --pidfile "$MY_CDC_DATA/daemon.pid" \
    --make-pidfile --exec /usr/sbin/mariadbd -- \
    --no-defaults --datadir="$MY_CDC_DATA" --socket="$MY_CDC_DATA/mysqld.sock" \
    --pid-file="$MY_CDC_DATA/mysqld.pid" --log-error="$MY_CDC_DATA/server.log" \
    --bind-address=127.0.0.1 --port=53306 --skip-name-resolve \
    --server-id=1 --log-bin="$MY_CDC_DATA/binlog" --binlog-format=ROW \
    --binlog-row-image=FULL --binlog-row-metadata=FULL --innodb-flush-log-at-trx-commit=2 \
    --sync-binlog=0 --innodb-buffer-pool-size=64M --local-infile=1 --max-connections=300
  for _ in $(seq 60); do
    mariadb --no-defaults -S "$MY_CDC_DATA/mysqld.sock" -uroot -e 'select 1' >/dev/null 2>&1 && break
    sleep 0.5
  done
  mariadb --no-defaults -S "$MY_CDC_DATA/mysqld.sock" -uroot <<'SQL'
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
SQL
fi
mariadb-admin -h127.0.0.1 -P53306 -uroot ping >/dev/null || { echo "error: the CDC MariaDB did not start (see $MY_CDC_DATA/server.log)" >&2; exit 1; }

echo "services up: $(psql -X -At -h 127.0.0.1 -U postgres -d postgres -c 'show server_version'), MariaDB $(mariadb -h127.0.0.1 -uroot -N -e 'select version()')"
