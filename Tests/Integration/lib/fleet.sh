# fleet.sh — pieces the fleet suite and the fleet benchmark share: certificates made with
# openssl, a PostgreSQL cluster of the test's own (initdb + pg_ctl as the postgres user),
# and smartotpd replicas. Everything lives under $FLEET (a private directory) and is
# stopped by PID; the caller's EXIT trap calls fleet_stop.
#   FLEET=DIR; source fleet.sh

PGBIN=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -1)
FLEET_PIDS=()

# fleet_suite TOOL…: a fleet suite's start (after testlib.sh): the tools it needs and
# PostgreSQL, or a failed check that names what is missing; FLEET under the suite's WORK
# (traversable: the postgres user reaches its data folder below it), the programs.
fleet_suite() {
    local t
    for t in "$@"; do
        command -v "$t" >/dev/null || { echo "not ok 1 - $t is missing (./install.sh --deps-dev)"; exit 1; }
    done
    [ -n "$PGBIN" ] || { echo "not ok 1 - PostgreSQL is missing (./install.sh --deps-dev)"; exit 1; }
    FLEET="$WORK/fleet"
    mkdir -p "$FLEET"; chmod 711 "$WORK" "$FLEET"
    SMARTOTPD="$BIN/smartotpd"
    CLIENT="$BIN/smartotp-fleet"
}

# fleet_sweep: what an earlier run of this suite left when it was killed outright (SIGKILL
# gives no EXIT trap): its namespaces and its /etc/pam.d services, named ${P}'s letters and
# that run's PID. Only a PID no process has any more is swept.
fleet_sweep() {
    local fam=${P%%[0-9]*} name
    # stale NAME: NAME is another run's (its letters and PID) and that PID is gone.
    stale() { [[ $1 =~ ^${fam}([0-9]+) ]] && [ "$fam${BASH_REMATCH[1]}" != "$P" ] && ! kill -0 "${BASH_REMATCH[1]}" 2>/dev/null; }
    while read -r name _; do
        stale "$name" && ip netns del "$name" 2>/dev/null && echo "# swept namespace $name (a killed run's)"
    done < <(ip netns list 2>/dev/null)
    for name in /etc/pam.d/"$fam"[0-9]*-*; do
        [ -e "$name" ] && stale "${name##*/}" && rm -f "$name" && echo "# swept $name (a killed run's)"
    done
    return 0
}

# fleet_net NODE…: a bridge in namespace ${P}hub and a namespace a node (${P}NODE), each
# with ${ADDR[NODE]}/24 on its eth0, joined on the bridge: nothing leaves them. P and ADDR
# are the caller's; the caller's teardown deletes the namespaces.
fleet_net() {
    fleet_sweep
    ip netns add "${P}hub" && ip -n "${P}hub" link add br0 type bridge && ip -n "${P}hub" link set br0 up || return 1
    local n
    for n in "$@"; do
        ip netns add "$P$n" &&
        ip -n "${P}hub" link add "v$n" type veth peer name eth0 netns "$P$n" &&
        ip -n "${P}hub" link set "v$n" master br0 up &&
        ip -n "$P$n" addr add "${ADDR[$n]}/24" dev eth0 &&
        ip -n "$P$n" link set eth0 up &&
        ip -n "$P$n" link set lo up || return 1
    done
}
in_ns() { local n=$1; shift; ip netns exec "$P$n" "$@"; }

# fleet_ca NAME SUBJECT: a CA in $FLEET/pki/NAME.{pem,key}
fleet_ca() {
    mkdir -p "$FLEET/pki"
    openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 \
        -keyout "$FLEET/pki/$1.key" -out "$FLEET/pki/$1.pem" -subj "/CN=$2" 2>/dev/null
}

# fleet_cert CA NAME USAGE [SAN]: NAME.{pem,key} signed by CA; USAGE serverAuth|clientAuth
fleet_cert() {
    local ca=$1 name=$2 usage=$3 san=${4:-}
    local ext="$FLEET/pki/$name.ext"
    printf 'basicConstraints=CA:FALSE\nextendedKeyUsage=%s\n' "$usage" >"$ext"
    [ -n "$san" ] && printf 'subjectAltName=%s\n' "$san" >>"$ext"
    openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$FLEET/pki/$name.key" \
        -out "$FLEET/pki/$name.csr" -subj "/CN=$name" 2>/dev/null
    openssl x509 -req -in "$FLEET/pki/$name.csr" -CA "$FLEET/pki/$ca.pem" -CAkey "$FLEET/pki/$ca.key" \
        -CAcreateserial -days 30 -extfile "$ext" -out "$FLEET/pki/$name.pem" 2>/dev/null
}

# fleet_identity NAME CA: a tls_dir for a host or admin: ca.pem (the servers' CA), cert, key
fleet_identity() {
    local dir="$FLEET/tls/$1"
    mkdir -p "$dir"
    cp "$FLEET/pki/server-ca.pem" "$dir/ca.pem"
    cp "$FLEET/pki/$1.pem" "$dir/cert.pem"
    cp "$FLEET/pki/$1.key" "$dir/key.pem"
    chmod 700 "$dir"; chmod 600 "$dir"/*
    echo "$dir"
}

# fleet_pg_start ADDRESS PORT [NETNS]: a cluster listening on ADDRESS:PORT, database
# smartotp, role smartotpd (trust: the cluster is the test's own, on a private address).
# With $FLEET/pki/db.{pem,key} it serves TLS with that certificate and lets the replicas
# in over TLS only (hostssl), as docs/fleet.md sets it up.
fleet_pg_start() {
    local addr=$1 port=$2 ns=${3:-}
    local run=(); [ -n "$ns" ] && run=(ip netns exec "$ns")
    mkdir -p "$FLEET/pg"; chown postgres: "$FLEET/pg"; chmod 700 "$FLEET/pg"
    if [ ! -f "$FLEET/pg/data/PG_VERSION" ]; then
        runuser -u postgres -- "$PGBIN/initdb" -D "$FLEET/pg/data" -A trust -U postgres >"$FLEET/pg/initdb.log" 2>&1 || return 1
        # The replicas connect from their own namespaces on the test's private subnet.
        local kind=host; [ -f "$FLEET/pki/db.pem" ] && kind=hostssl
        echo "$kind smartotp smartotpd samenet trust" >>"$FLEET/pg/data/pg_hba.conf"
        # A standby of the test's own streams from it (66-fleet-stays-up).
        echo "host replication postgres samenet trust" >>"$FLEET/pg/data/pg_hba.conf"
    fi
    local ssl=""
    if [ -f "$FLEET/pki/db.pem" ]; then
        install -o postgres -m 600 "$FLEET/pki/db.pem" "$FLEET/pg/server.crt"
        install -o postgres -m 600 "$FLEET/pki/db.key" "$FLEET/pg/server.key"
        ssl="-c ssl=on -c ssl_cert_file=$FLEET/pg/server.crt -c ssl_key_file=$FLEET/pg/server.key"
    fi
    "${run[@]}" runuser -u postgres -- "$PGBIN/pg_ctl" -D "$FLEET/pg/data" -l "$FLEET/pg/log" -w -t 30 \
        -o "-c listen_addresses=$addr -p $port -k $FLEET/pg -c fsync=on -c max_connections=200 $ssl ${FLEET_PG_OPTS:-}" start >/dev/null || return 1
    FLEET_PG_PID=$(head -1 "$FLEET/pg/data/postmaster.pid")
    runuser -u postgres -- "$PGBIN/psql" -h "$FLEET/pg" -p "$port" -U postgres -qc "SELECT 1 FROM pg_roles WHERE rolname='smartotpd'" -tA | grep -q 1 || {
        runuser -u postgres -- "$PGBIN/psql" -h "$FLEET/pg" -p "$port" -U postgres -qc "CREATE ROLE smartotpd LOGIN" &&
        runuser -u postgres -- "$PGBIN/psql" -h "$FLEET/pg" -p "$port" -U postgres -qc "CREATE DATABASE smartotp OWNER smartotpd"
    }
}

fleet_pg_stop() {
    if [ -f "$FLEET/pg/data/postmaster.pid" ]; then
        runuser -u postgres -- "$PGBIN/pg_ctl" -D "$FLEET/pg/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
    return 0
}

# fleet_config NAME LISTEN DBURL [EXTRA]: $FLEET/NAME.conf for smartotpd (the fleet's
# seal and audit keys made once, shared by every replica)
fleet_config() {
    local k
    for k in seal audit; do
        [ -f "$FLEET/$k.key" ] || "$SMARTOTPD" keygen "$FLEET/$k.key" >/dev/null || return 1
    done
    cat >"$FLEET/$1.conf" <<CONF
listen = $2
database = $3
tls_cert = $FLEET/pki/$1.pem
tls_key = $FLEET/pki/$1.key
client_ca = $FLEET/pki/hosts-ca.pem
admin_ca = $FLEET/pki/admin-ca.pem
seal_key = $FLEET/seal.key
audit_key = $FLEET/audit.key
revoked = $FLEET/revoked
policy = deny=3 unlock_time=600
# The suites and the benchmark cause failed verdicts (and requests) on purpose, by the
# thousand: no budgets unless a test sets them (65-fleet does, for its own section).
host_failure_budget = off
host_user_failure_budget = off
host_request_budget = off
# The suites' databases are in network namespaces of their own, most without TLS (65-fleet
# checks verify-full, and that without this line a plain TCP database is refused).
database_tls = insecure
${4:-}
CONF
}

# fleet_server_start NAME [NETNS]: smartotpd with $FLEET/NAME.conf; PID in FLEET_SERVER_PID[NAME]
declare -A FLEET_SERVER_PID
fleet_server_start() {
    local name=$1 ns=${2:-}
    local run=(); [ -n "$ns" ] && run=(ip netns exec "$ns")
    # FLEET_NOFILE: the descriptor limit the unit gives it (LimitNOFILE=).
    [ -n "${FLEET_NOFILE:-}" ] && run+=(prlimit --nofile="$FLEET_NOFILE:$FLEET_NOFILE" --)
    "${run[@]}" "$SMARTOTPD" --config "$FLEET/$name.conf" >>"$FLEET/$name.log" 2>&1 &
    FLEET_SERVER_PID[$name]=$!
    FLEET_PIDS+=($!)
}

# fleet_wait_ready NAME URL IDENTITY: until /v1/health answers 200 (10 s)
fleet_wait_ready() {
    local i
    for i in $(seq 1 100); do
        curl -sf --cacert "$3/ca.pem" --cert "$3/cert.pem" --key "$3/key.pem" "$2/v1/health" >/dev/null 2>&1 && return 0
        sleep 0.1
    done
    echo "# $1 did not become ready:"; tail -5 "$FLEET/$1.log" | sed 's/^/#   /'
    return 1
}

# fleet_kill PID: TERM, up to 10 s to finish, then KILL
fleet_kill() {
    local i
    kill "$1" 2>/dev/null || return 0
    for i in $(seq 1 100); do kill -0 "$1" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$1" 2>/dev/null || true
    wait "$1" 2>/dev/null || true
    return 0
}

fleet_stop() {
    local p
    for p in "${FLEET_PIDS[@]}"; do fleet_kill "$p"; done
    fleet_pg_stop
    return 0
}
