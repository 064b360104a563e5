#!/usr/bin/env bash
# Install sleepyllama on one machine, in one command. Idempotent: run it again with the same
# arguments and nothing changes. Several --name's may be installed on one host.
set -euo pipefail

usage() {
    cat <<'EOF'
usage:
  sudo ./install.sh proxy  --listen HOST:PORT --backend HOST:PORT --mac MAC
                           [--name NAME] [--broadcast IP] [--kind KIND] [--api-key-file FILE]
                           [--wake-progress] [--prewake learned|off] [--web HOST:PORT]
                           [--mqtt HOST:PORT [--mqtt-user USER --mqtt-password-file FILE]
                            [--mqtt-ca-file FILE]]
                           [--steer-secret-file FILE]
  sudo ./install.sh server [--name NAME] [--idle-timeout DURATION] [--gpu MODE] [--proxy HOST:PORT]
                           [--action ACTION] [--steer-secret-file FILE] [--web HOST:PORT]
                           -- COMMAND [ARGS...]
  sudo ./install.sh server [--name NAME] [--idle-timeout DURATION] [--gpu MODE] [--action ACTION]
                           --command-file FILE
  sudo ./install.sh server [--name NAME] [--idle-timeout DURATION] [--action ACTION] ...
                           (installed already: the command its table has)
  sudo ./install.sh upgrade
  sudo ./install.sh --uninstall [--name NAME] [--purge]

proxy   on the always-on host (router, NAS, Pi): a socket-activated proxy on --listen that
        wakes --backend with magic packets for --mac and holds each client until it is ready.
        --kind: llama-server, ollama, llama-swap, vllm or none (default auto: any, learned
        from its answers). --api-key-file: a file holding the backend's API key (llama-server
        --api-key), copied to /etc/sleepyllama/NAME.key (root only) and handed to the proxy as
        a systemd credential: the model list is then kept and answered while the box sleeps,
        to clients that present the key. --wake-progress: a streamed chat that must wait for
        a wake shows the wake's progress in its thinking block, then the answer.
        --prewake learned: wake the box ahead of the times its use begins, as the proxy's
        ledger teaches (off by default: it spends energy; sleepyllama history shows what it
        would do); --prewake off turns it off again.
        --web HOST:PORT: also the page of every proxy on this host (sleepyllama-web: each
        box's state, a Wake button, /api/status, /metrics for Prometheus) on HOST:PORT. Off
        unless asked: it is one more port on the LAN, and a button that wakes the box.
        --mqtt HOST:PORT (with --web): the page also tells Home Assistant, through that MQTT
        broker, about each box (MQTT discovery: a device with its state and a Wake button);
        --mqtt-password-file: copied to /etc/sleepyllama/mqtt.password (root only) and handed
        to the page as a systemd credential. --mqtt-ca-file: TLS to the broker (its port is
        usually 8883), checked against that CA; copied to /etc/sleepyllama/mqtt-ca.pem.
        Without TLS the user, the password, the states and the presses travel in clear.
server  on the GPU box: runs COMMAND (llama-server ...) as sleepyllama-server@NAME, as the
        system user sleepyllama (its program and model files must be readable by that user:
        check names any that are not), suspends the box after --idle-timeout (default 1h)
        with nothing to do, restarts it after resume.
        --command-file: a file with the whole command line, one argument per line.
        --proxy HOST:PORT (the proxy's --listen, repeatable): tell it when the server is ready
        and right before the box suspends, so it never waits on a poll or a failed connect.
        A llama-server command gets --metrics if it lacks it: requests are counted from /metrics.
        --gpu: what tells that the GPUs are busy: pstate or utilization (nvidia-smi), amdgpu
        (sysfs), off (the servers and sleep inhibitors decide). Default: what this box has.
        --action: how the box sleeps: suspend (default), hibernate, suspend-then-hibernate, or
        poweroff (a magic packet boots it: the firmware's Wake-on-LAN from off must be on).
        A choice already in the config is kept unless --action.
        --web HOST:PORT: the box's own page (sleepyllama-web): what its idle check sees, its
        last days, and with --steer-secret-file Stay awake and Sleep now. Off unless asked.
--steer-secret-file FILE (both roles, the same file on each): a secret the two hosts share
        (make one: head -c 32 /dev/urandom | base64 > steer.secret), copied to
        /etc/sleepyllama/steer.secret (root only). On the GPU box it turns on
        sleepyllama-steer (UDP 3941): "stay awake" and "sleep now" from the always-on host,
        signed with it (sudo sleepyllama stay-awake 3h there; the page's buttons with --web).
upgrade the code of this checkout (a new clone or git pull) onto this host, as it is installed:
        each [proxy.NAME] and [server.NAME] of the config installed again with the arguments
        it was installed with. What runs the old code restarts (the proxies hand over what
        they hold); a model server only where its command or unit changed, or it says so.
--uninstall  removes the units, drop-ins, hook and /opt/sleepyllama it made; keeps the config
        and the idle state in /var/lib/sleepyllama unless --purge. A file of yours among them
        (your own drop-in, a key file in /etc/sleepyllama) stays, and is named. With --name
        NAME: only that proxy or server, its units and its table; the rest stays.

--name defaults to "llama". Examples:
  sudo ./install.sh proxy --listen 0.0.0.0:3939 --backend 192.168.1.50:8080 --mac ab:cd:ef:01:23:45
  sudo ./install.sh server --name llama -- /opt/llama.cpp/build/bin/llama-server \
      -m /models/qwen.gguf --host 0.0.0.0 --port 8080
EOF
}

fail() { echo "install.sh: $*" >&2; exit 1; }

HERE=$(cd "$(dirname "$0")" && pwd)
PREFIX=${SLEEPYLLAMA_PREFIX:-/opt/sleepyllama}
UNIT_DIR=/etc/systemd/system
HOOK=/usr/lib/systemd/system-sleep/sleepyllama
SYSUSERS=/etc/sysusers.d/sleepyllama.conf
CONFIG=/etc/sleepyllama/sleepyllama.toml
STATE=/var/lib/sleepyllama

role="" name=llama listen="" backend="" mac="" broadcast="" idle_timeout="" command_file="" gpu="" action=""
kind="" api_key_file="" wake_progress=0 prewake="" web="" mqtt="" mqtt_user="" mqtt_password_file="" mqtt_ca_file=""
steer_secret_file=""
notify=()
uninstall=0 purge=0 name_given=0 upgrade=0
command=()
while [ $# -gt 0 ]; do
    case "$1" in
        proxy|server) [ -z "$role" ] || fail "give one role, not '$role' and '$1'"; role=$1 ;;
        upgrade) upgrade=1 ;;
        --name) name=${2:?--name needs a value}; name_given=1; shift ;;
        --listen) listen=${2:?--listen needs HOST:PORT}; shift ;;
        --backend) backend=${2:?--backend needs HOST:PORT}; shift ;;
        --mac) mac=${2:?--mac needs a MAC address}; shift ;;
        --broadcast) broadcast=${2:?--broadcast needs an IP address}; shift ;;
        --kind) kind=${2:?--kind needs auto, llama-server, ollama, llama-swap, vllm or none}; shift ;;
        --api-key-file) api_key_file=${2:?--api-key-file needs a file}; shift ;;
        --wake-progress) wake_progress=1 ;;
        --prewake) prewake=${2:?--prewake needs learned or off}; shift ;;
        --web) web=${2:?--web needs HOST:PORT, as 0.0.0.0:3940}; shift ;;
        --mqtt) mqtt=${2:?--mqtt needs the broker as HOST:PORT, as 192.168.1.10:1883}; shift ;;
        --mqtt-user) mqtt_user=${2:?--mqtt-user needs a user name}; shift ;;
        --mqtt-password-file) mqtt_password_file=${2:?--mqtt-password-file needs a file}; shift ;;
        --mqtt-ca-file) mqtt_ca_file=${2:?--mqtt-ca-file needs the CA certificate, a PEM file}; shift ;;
        --steer-secret-file) steer_secret_file=${2:?--steer-secret-file needs a file}; shift ;;
        --proxy) notify+=("${2:?--proxy needs HOST:PORT of the proxy}"); shift ;;
        --idle-timeout) idle_timeout=${2:?--idle-timeout needs a duration}; shift ;;
        --command-file) command_file=${2:?--command-file needs a file}; shift ;;
        --gpu) gpu=${2:?--gpu needs pstate, utilization, amdgpu or off}; shift ;;
        --action) action=${2:?--action needs suspend, hibernate, suspend-then-hibernate or poweroff}; shift ;;
        --uninstall) uninstall=1 ;;
        --purge) purge=1 ;;
        -h|--help) usage; exit 0 ;;
        --) shift; command=("$@"); break ;;
        *)  if [ "$role" = server ]; then
                # the server's command without the -- before it
                fail "unknown argument '$1': the server's command goes after --, as in ./install.sh server [options] -- $*"
            fi
            fail "unknown argument '$1' (./install.sh --help)" ;;
    esac
    shift
done

# -- validate everything before changing anything --------------------------------------------
address_ok() { [[ $1 =~ ^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9.-]+):([0-9]{1,5})$ ]] && ((BASH_REMATCH[2] >= 1 && BASH_REMATCH[2] <= 65535)); }
[ "$(id -u)" = 0 ] || fail "needs root: sudo ./install.sh $role ..."
[[ $name =~ ^[A-Za-z0-9_.:-]+$ ]] || fail "--name '$name': letters, digits and _ . : - only"
[[ -z $prewake || $prewake =~ ^(learned|off)$ ]] || fail "--prewake '$prewake': learned or off"
if [ -n "$steer_secret_file" ]; then
    [ -r "$steer_secret_file" ] || fail "--steer-secret-file '$steer_secret_file' cannot be read"
    [ "$(tr -d '[:space:]' < "$steer_secret_file" | wc -c)" -ge 16 ] || fail "--steer-secret-file '$steer_secret_file': at least 16 characters (head -c 32 /dev/urandom | base64 > steer.secret)"
fi
if [ "$upgrade" = 1 ]; then
    [ -z "$role" ] && [ "$uninstall" = 0 ] || fail "upgrade takes no role and no other argument: it reads them from the installed config"
    [ -e "$CONFIG" ] && [ -x "$PREFIX/bin/python" ] || fail "nothing to upgrade: sleepyllama is not installed here (./install.sh --help)"
    # the new code reads the installed config (the installed environment has its dependencies)
    words=()
    while IFS= read -r -d '' word; do words+=("$word"); done \
        < <(PYTHONPATH="$HERE" "$PREFIX/bin/python" -m sleepyllama.upgrade --config "$CONFIG" --unit-dir "$UNIT_DIR")
    [ ${#words[@]} -gt 0 ] || fail "nothing to upgrade from $CONFIG (said above)"
    # which model servers run now, and as which process: those still the same process after
    # the runs (none of their own settings changed) run the old code, said once at the end
    hash_before=$(cat "$PREFIX/.source-hash" 2>/dev/null || true)
    declare -A server_pids=()
    while read -r unit _; do
        server_pids[$unit]=$(systemctl show --property=MainPID --value "$unit")
    done < <(systemctl list-units --plain --no-legend --state=active 'sleepyllama-server@*.service' 2>/dev/null)
    run=() status=0
    for word in "${words[@]}"; do
        if [ -n "$word" ]; then run+=("$word"); continue; fi
        echo "upgrading ${run[0]} ${run[2]}: install.sh as installed"
        SLEEPYLLAMA_UPGRADING=1 "$HERE/install.sh" "${run[@]}" || status=$?
        run=()
        echo
    done
    if [ "$(cat "$PREFIX/.source-hash" 2>/dev/null || true)" != "$hash_before" ]; then
        for unit in "${!server_pids[@]}"; do
            [ "$(systemctl show --property=MainPID --value "$unit")" = "${server_pids[$unit]}" ] || continue
            echo "$unit runs the old sleepyllama code until it next starts (the box's next sleep and resume start it anew); to take it now, with a model reload: sudo systemctl restart $unit"
        done
    fi
    exit "$status"
fi
if [ "$uninstall" = 1 ]; then
    [ -z "$role" ] || fail "--uninstall takes no role"
elif [ "$role" = proxy ]; then
    [ -n "$listen" ] || fail "proxy needs --listen HOST:PORT (where frontends connect)"
    address_ok "$listen" || fail "--listen '$listen' is not HOST:PORT (IPv6 as [::]:3939)"
    [ -n "$backend" ] || fail "proxy needs --backend HOST:PORT (where llama-server listens)"
    address_ok "$backend" || fail "--backend '$backend' is not HOST:PORT"
    [ -n "$mac" ] || fail "proxy needs --mac (the GPU box's network card)"
    # ab:cd:ef:01:23:45, AB-CD-EF-01-23-45, abcd.ef01.2345 or abcdef012345; written as the first
    hex=$(tr -d ':.-' <<< "$mac")
    [[ $hex =~ ^[0-9A-Fa-f]{12}$ ]] || fail "--mac '$mac' is not a MAC address like ab:cd:ef:01:23:45"
    mac=$(sed -E 's/(..)/\1:/g; s/:$//' <<< "${hex,,}")
    [ -z "$broadcast" ] || [[ $broadcast =~ ^[0-9]{1,3}(\.[0-9]{1,3}){3}$ ]] || fail "--broadcast '$broadcast' is not an IPv4 address"
    [ ${#command[@]} = 0 ] && [ -z "$command_file" ] || fail "proxy takes no command"
    [[ $kind =~ ^(|auto|llama-server|ollama|llama-swap|vllm|none)$ ]] || fail "--kind '$kind': auto, llama-server, ollama, llama-swap, vllm or none"
    [ -z "$web" ] || address_ok "$web" || fail "--web '$web' is not HOST:PORT (IPv6 as [::]:3940)"
    [ -z "$web" ] || [ "${web##*:}" != "${listen##*:}" ] || fail "--web '$web': the proxy listens on port ${listen##*:}; give the page a port of its own"
    [ -z "$mqtt" ] || [ -n "$web" ] || fail "--mqtt needs --web HOST:PORT: the page is what tells Home Assistant"
    [ -z "$mqtt" ] || address_ok "$mqtt" || fail "--mqtt '$mqtt' is not HOST:PORT (the broker, as 192.168.1.10:1883)"
    [ -z "$mqtt_user$mqtt_password_file$mqtt_ca_file" ] || [ -n "$mqtt" ] || fail "--mqtt-user, --mqtt-password-file and --mqtt-ca-file go with --mqtt HOST:PORT"
    [ -z "$mqtt_ca_file" ] || grep -q -- '-----BEGIN CERTIFICATE-----' "$mqtt_ca_file" 2>/dev/null || fail "--mqtt-ca-file '$mqtt_ca_file' is not a PEM certificate (-----BEGIN CERTIFICATE-----)"
    [[ $mqtt_user =~ ^[[:print:]]*$ ]] && [[ $mqtt_user != *\"* ]] || fail "--mqtt-user '$mqtt_user': printable characters, no quote"
    [ -z "$mqtt_password_file" ] || [ -s "$mqtt_password_file" ] || fail "--mqtt-password-file '$mqtt_password_file' cannot be read or is empty (one line: the password)"
    [ -z "$api_key_file" ] || [ -s "$api_key_file" ] || fail "--api-key-file '$api_key_file' cannot be read or is empty (one line: the key)"
    # a port something else holds makes the socket fail with a bare "Job failed": name the holder
    port=${listen##*:}
    holder=$(ss -Hltnp "sport = :$port" 2>/dev/null || true)
    if [ -n "$holder" ] && ! systemctl is-active --quiet "sleepyllama-proxy@$name.socket"; then
        who=$(grep -o 'users:(("[^"]*"' <<< "$holder" | head -1 | cut -d'"' -f2)
        fail "--listen $listen: port $port is already in use${who:+ by $who} (ss -ltnp 'sport = :$port'): choose another port"
    fi
elif [ "$role" = server ]; then
    if [ -n "$command_file" ]; then
        [ ${#command[@]} = 0 ] || fail "give --command-file or a command after --, not both"
        [ -r "$command_file" ] || fail "--command-file '$command_file' cannot be read"
        mapfile -t command < <(grep -v '^[[:space:]]*\(#\|$\)' "$command_file")
    fi
    [ -z "$web" ] || address_ok "$web" || fail "--web '$web' is not HOST:PORT (IPv6 as [::]:3940)"
    [ -z "$mqtt$mqtt_user$mqtt_password_file$mqtt_ca_file" ] || fail "--mqtt is for the always-on host: its page tells Home Assistant about every box"
    if [ ${#command[@]} = 0 ] && [ -x "$PREFIX/bin/python" ] && [ -e "$CONFIG" ]; then
        # installed already: a run that changes a setting alone (--action, --idle-timeout) keeps
        # the command its table has
        while IFS= read -r -d '' word; do command+=("$word"); done < <("$PREFIX/bin/python" -c '
import sys
from pathlib import Path
from sleepyllama import config
try:
    server = config.load(Path(sys.argv[1])).servers.get(sys.argv[2])
except config.ConfigError:
    server = None
sys.stdout.write("".join(word + "\0" for word in (server.command if server else ())))' "$CONFIG" "$name")
    fi
    [ ${#command[@]} -gt 0 ] || fail "server needs its command: ./install.sh server -- /path/to/llama-server -m model.gguf --port 8080"
    [ -x "${command[0]}" ] || command -v "${command[0]}" >/dev/null || fail "'${command[0]}' is not an executable file"
    [ -z "$idle_timeout" ] || [[ $idle_timeout =~ ^([0-9]+(\.[0-9]+)?(ms|s|m|h|d)?)+$ ]] || fail "--idle-timeout '$idle_timeout' is not a duration like 90, 15m or 1h"
    [[ $gpu =~ ^(|pstate|utilization|amdgpu|off)$ ]] || fail "--gpu '$gpu': pstate, utilization, amdgpu or off"
    [[ $action =~ ^(|suspend|hibernate|suspend-then-hibernate|poweroff)$ ]] || fail "--action '$action': suspend, hibernate, suspend-then-hibernate or poweroff"
    for proxy in "${notify[@]}"; do address_ok "$proxy" || fail "--proxy '$proxy' is not HOST:PORT"; done
else
    usage >&2; exit 64
fi

changed=0
note() { echo "  $*"; changed=1; }
code_changed=0
server_fingerprint() {  # what the model server runs as: its unit with drop-ins, and its table
    # (neither need exist yet: nothing, then)
    { systemctl cat "sleepyllama-server@$name.service" 2>/dev/null || true
      awk -v table="[server.$name]" '$0 == table {on = 1; next} /^\[/ {on = 0} on' "$CONFIG" 2>/dev/null || true
    } | sha256sum
}
server_before=$(server_fingerprint)
# put a file in place only when its content differs: a second run touches nothing
place() {  # place MODE SOURCE TARGET
    if ! cmp -s "$2" "$3"; then
        install -D -m "$1" "$2" "$3"
        note "wrote $3"
    fi
}
place_text() {  # place_text MODE TARGET <<< TEXT
    local tmp; tmp=$(mktemp); cat > "$tmp"; place "$1" "$tmp" "$2"; rm -f "$tmp"
}

# -- uninstall: only what install.sh (or sleepyllama) wrote; a user's own file stays, named ----
ours() {  # ours FILE: a unit install.sh copies, or a file whose first line says who wrote it
    [ -e "$HERE/units/$(basename "$1")" ] || head -n1 "$1" 2>/dev/null | grep -q '^# written by \(install.sh\|sleepyllama\)'
}
remove_ours() {  # remove_ours PATH...: ours removed; a directory goes once nothing of the user's is left
    local path file kept
    for path in "$@"; do
        if [ -d "$path" ]; then
            kept=()
            for file in "$path"/* "$path"/.[!.]*; do
                [ -e "$file" ] || continue
                if ours "$file"; then rm -f "$file"; note "removed $file"; else kept+=("$(basename "$file")"); fi
            done
            if [ ${#kept[@]} = 0 ]; then rmdir "$path"; else echo "  kept $path: ${kept[*]} (not written by install.sh)"; fi
        elif [ -e "$path" ] || [ -L "$path" ]; then
            if ours "$path"; then rm -f "$path"; note "removed $path"; else echo "  kept $path (not written by install.sh)"; fi
        fi
    done
}
# the key copies install.sh made (/etc/sleepyllama/NAME.key), as its drop-ins name them
our_keys() {  # our_keys [NAME]
    grep -hs '^LoadCredential=api-key:/etc/sleepyllama/' "$UNIT_DIR"/sleepyllama-proxy@${1:-*}.service.d/api-key.conf \
        | sed 's/^LoadCredential=api-key://' || true
}
if [ "$uninstall" = 1 ] && [ "$name_given" = 1 ]; then
    # one proxy or server: its units, its listen drop-in and its table; the rest stays
    for unit in "sleepyllama-proxy@$name.socket" "sleepyllama-proxy@$name.service" "sleepyllama-server@$name.service"; do
        # systemd 252's list-unit-files prints nothing for an instance: ask is-enabled and
        # is-active, so that one enabled but not running is disabled too (restart would start it)
        enabled=$(systemctl is-enabled "$unit" 2>/dev/null || true)
        if [ "$enabled" = enabled ] || systemctl is-active --quiet "$unit" || systemctl is-failed --quiet "$unit"; then
            systemctl disable --now --quiet "$unit" 2>/dev/null || true
            systemctl reset-failed "$unit" 2>/dev/null || true
            note "stopped and disabled $unit"
        fi
    done
    for key in $(our_keys "$name"); do
        if [ -e "$key" ]; then rm -f "$key"; note "removed $key"; fi
    done
    remove_ours "$UNIT_DIR/sleepyllama-proxy@$name.socket.d" "$UNIT_DIR/sleepyllama-proxy@$name.service.d" \
                "$UNIT_DIR/sleepyllama-server@$name.service.d"
    if [ -e "$CONFIG" ] && [ -x "$PREFIX/bin/python" ]; then
        for kind in proxy server; do
            result=$("$PREFIX/bin/python" -m sleepyllama.tables "$CONFIG" "$kind" "$name" --remove)
            [ "$result" = unchanged ] || note "removed [$kind.$name] from $CONFIG"
        done
    fi
    systemctl daemon-reload 2>/dev/null || true
    [ "$changed" = 1 ] || echo "no proxy or server named '$name' is installed: nothing to remove"
    exit 0
fi
if [ "$uninstall" = 1 ]; then
    # Home Assistant forgets the boxes the page announced (else it keeps them, retained, for
    # ever); the page's own stop says "offline" only
    if [ -x "$PREFIX/bin/sleepyllama-web" ] && [ -e "$CONFIG" ] && grep -q '^\[mqtt\]' "$CONFIG"; then
        "$PREFIX/bin/sleepyllama-web" --forget-home-assistant --config "$CONFIG" | sed 's/^/  /' \
            || echo "  Home Assistant keeps the boxes' devices: delete them there (Settings, Devices)"
    fi
    units=$(systemctl list-units --all --plain --no-legend 'sleepyllama-*' 2>/dev/null | cut -d' ' -f1)
    files=$(cd "$UNIT_DIR" && ls -d sleepyllama-* 2>/dev/null || true)
    for unit in $units; do systemctl stop "$unit" 2>/dev/null || true; done
    for file in $files; do
        case "$file" in *.d) ;; *) systemctl disable "$file" >/dev/null 2>&1 || true ;; esac
    done
    # enabled instances live as symlinks in .wants directories
    find "$UNIT_DIR" -lname "*sleepyllama-*" -delete 2>/dev/null || true
    keys=$(our_keys)
    for file in $files; do remove_ours "${UNIT_DIR:?}/$file"; done
    for path in "$HOOK" "$SYSUSERS" /usr/local/bin/sleepyllama /usr/local/bin/sleepyllama-idle "$PREFIX"; do
        if [ -e "$path" ] || [ -L "$path" ]; then rm -rf "$path"; note "removed $path"; fi
    done
    if [ "$purge" = 1 ]; then
        # the config and the key copies; a file of the user's in /etc/sleepyllama stays
        for path in "$CONFIG" $keys /etc/sleepyllama/mqtt.password /etc/sleepyllama/mqtt-ca.pem /etc/sleepyllama/steer.secret; do
            if [ -e "$path" ]; then rm -f "$path"; note "removed $path"; fi
        done
        if [ -d /etc/sleepyllama ]; then
            if rmdir /etc/sleepyllama 2>/dev/null; then note "removed /etc/sleepyllama"
            else echo "  kept /etc/sleepyllama: $(ls -A /etc/sleepyllama | tr '\n' ' ')(not written by install.sh)"; fi
        fi
        # the proxy's StateDirectory belongs to its DynamicUser: /var/lib/private, and a link
        for path in "$STATE" /var/lib/sleepyllama-proxy /var/lib/private/sleepyllama-proxy; do
            if [ -e "$path" ] || [ -L "$path" ]; then rm -rf "$path"; note "removed $path"; fi
        done
        # the servers' system user (sysusers.d made it; systemd-sysusers never removes one)
        if getent passwd sleepyllama >/dev/null; then
            if userdel sleepyllama 2>/dev/null; then note "removed the system user sleepyllama"
            else echo "  kept the system user sleepyllama: a process of it still runs (userdel sleepyllama once it is gone)"; fi
        fi
        if getent group sleepyllama >/dev/null && groupdel sleepyllama 2>/dev/null; then
            note "removed the group sleepyllama"
        fi
    else
        [ ! -e "$CONFIG" ] || echo "  kept $CONFIG (--purge removes it)"
        [ ! -e "$STATE" ] || echo "  kept $STATE, the idle clock and counters (--purge removes it)"
        for kept in /etc/sleepyllama/steer.secret /etc/sleepyllama/mqtt.password /etc/sleepyllama/mqtt-ca.pem $keys; do
            [ ! -e "$kept" ] || echo "  kept $kept (--purge removes it)"
        done
        [ ! -d /var/lib/private/sleepyllama-proxy ] || echo "  kept /var/lib/sleepyllama-proxy, the proxies' kept answers and ledgers (--purge removes it)"
        ! getent passwd sleepyllama >/dev/null || echo "  kept the system user sleepyllama, the model servers' (--purge removes it)"
    fi
    systemctl daemon-reload 2>/dev/null || true
    # a failed unit stays listed until its state is cleared; systemd forgets the rest by itself
    systemctl reset-failed 'sleepyllama-*' 2>/dev/null || true
    [ "$changed" = 1 ] || echo "sleepyllama is not installed: nothing to remove"
    exit 0
fi

echo "installing sleepyllama ($role $name)"

# -- systemd and Python old enough to run it, said before anything changes --------------------
# the units' sandbox (ProtectProc=, ProcSubset=) and the proxy's key (LoadCredential=) came in
# systemd 247; Ubuntu 22.04 has 249, Debian 12 252 (tests/test_units.py holds the units to 249)
# "systemd 252 (252.39-1~deb12u2)": the second word of the first line (no awk: it may be an
# /etc/alternatives link, which a fresh container lacks)
systemd_version=
read -r _ systemd_version _ < <(systemctl --version 2>/dev/null) || true
case "$systemd_version" in
    ''|*[!0-9]*) fail "cannot tell this machine's systemd version (systemctl --version): sleepyllama needs systemd 247 or later" ;;
esac
[ "$systemd_version" -ge 247 ] || fail "systemd $systemd_version is too old: sleepyllama's units need 247 or later (Ubuntu 22.04 and Debian 12 have it)"
# the Python the virtual environment is made from (below): the system's python3, else a newer
# one installed beside it (deadsnakes' python3.10 on Ubuntu 20.04, python3.11 on RHEL 8)
system_python=
for candidate in /usr/bin/python3 /usr/bin/python3.13 /usr/bin/python3.12 /usr/bin/python3.11 \
                 /usr/bin/python3.10; do
    if [ -x "$candidate" ] && "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        system_python=$candidate
        break
    fi
done
if [ -z "$system_python" ] && [ -x /usr/bin/python3 ]; then
    fail "$(/usr/bin/python3 --version 2>&1) is too old: sleepyllama needs Python 3.10 or later. Ubuntu 20.04: sudo add-apt-repository ppa:deadsnakes/ppa && sudo apt install python3.10-venv python3.10-dev; Debian 11: upgrade to Debian 12 (Python 3.11); RHEL, Rocky or Alma 8: sudo dnf install python3.11 python3.11-devel; then run install.sh again"
fi

# -- OS packages: only what is missing ---------------------------------------------------------
# pystemd is built from source against libsystemd: a compiler, its headers, pkg-config
missing=()
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
python3 -c 'import sysconfig, os, sys; sys.exit(not os.path.exists(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null || missing+=(python3-dev)
command -v gcc >/dev/null || missing+=(gcc)
command -v pkg-config >/dev/null || missing+=(pkg-config)
pkg-config --exists libsystemd 2>/dev/null || missing+=(libsystemd-dev)
if [ "$role" = server ]; then
    # ethtool: Wake-on-LAN is read and armed before each suspend; kmod: nvidia_uvm reloaded when
    # CUDA fails after a resume. Both live in sbin, off a user's PATH.
    PATH="$PATH:/usr/sbin:/sbin" command -v ethtool >/dev/null || missing+=(ethtool)
    PATH="$PATH:/usr/sbin:/sbin" command -v modprobe >/dev/null || missing+=(kmod)
fi
if [ ${#missing[@]} -gt 0 ]; then
    if command -v apt-get >/dev/null; then
        echo "  apt-get install ${missing[*]}"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
        changed=1
    else
        fail "install these first (names as on Debian; Fedora: python3-devel systemd-devel gcc pkgconf): ${missing[*]}"
    fi
fi

# -- the virtual environment: reinstalled only when the source changed -----------------------
source_hash=$(cd "$HERE" && find pyproject.toml sleepyllama -name "*.py" -o -name pyproject.toml | sort | xargs cat | sha256sum | cut -d' ' -f1)
if [ ! -x "$PREFIX/bin/python" ]; then
    # the system's python3, not one under /root or /home: the units' ProtectHome= hides those
    "${system_python:-/usr/bin/python3}" -m venv "$PREFIX" 2>/dev/null || python3 -m venv "$PREFIX"
    note "created $PREFIX"
fi
if [ "$(cat "$PREFIX/.source-hash" 2>/dev/null)" != "$source_hash" ]; then
    echo "  installing the package and its dependencies into $PREFIX (pystemd compiles: about a minute)"
    # from a copy: a build writes into its source tree, and this checkout may be read-only or
    # belong to a user who should not find root-owned build files in it
    source=$(mktemp -d)
    cp -r "$HERE/pyproject.toml" "$HERE/README.md" "$HERE/sleepyllama" "$source/"
    # --use-pep517: sdnotify ships only a setup.py sdist, which the pip of Ubuntu 22.04 and
    # Debian 12 would build the legacy way, printing a DEPRECATION notice on every install
    "$PREFIX/bin/pip" install -q --disable-pip-version-check --use-pep517 "$source"
    rm -rf "$source"
    echo "$source_hash" > "$PREFIX/.source-hash"
    note "installed sleepyllama into $PREFIX"
    code_changed=1
fi
# the commands README tells people to type: sleepyllama everywhere, sleepyllama-idle on the GPU box
programs=(sleepyllama)
[ "$role" != server ] || programs+=(sleepyllama-idle)
for program in "${programs[@]}"; do
    if [ "$(readlink "/usr/local/bin/$program" 2>/dev/null)" != "$PREFIX/bin/$program" ]; then
        ln -sfn "$PREFIX/bin/$program" "/usr/local/bin/$program"
        note "linked /usr/local/bin/$program"
    fi
done

# -- units and the sleep hook -------------------------------------------------------------------
for unit in "$HERE"/units/*; do
    place 644 "$unit" "$UNIT_DIR/$(basename "$unit")"
done
if [ "$role" = server ]; then
    place 755 "$HERE/bin/sleepyllama-sleep" "$HOOK"
    # the servers run as the system user sleepyllama (in the GPU devices' groups), not as root
    place 644 "$HERE/sysusers.d/sleepyllama.conf" "$SYSUSERS"
    if ! id sleepyllama >/dev/null 2>&1; then
        systemd-sysusers "$SYSUSERS"
        note "created the system user sleepyllama ($(id -nG sleepyllama | tr ' ' ','))"
    fi
fi

# -- the shared secret for the way back to the GPU box (sleepyllama/steer.py) ------------------
if [ -n "$steer_secret_file" ] && ! cmp -s "$steer_secret_file" /etc/sleepyllama/steer.secret 2>/dev/null; then
    install -D -m 600 -o root -g root "$steer_secret_file" /etc/sleepyllama/steer.secret
    note "wrote /etc/sleepyllama/steer.secret (the secret the two hosts share, root only)"
fi

# -- the config: only this table changes ------------------------------------------------------
if [ "$role" = proxy ]; then
    key_path=""
    if [ -n "$api_key_file" ]; then
        # a copy only root may read; the DynamicUser proxy gets it as a systemd credential
        key_path=/etc/sleepyllama/$name.key
        if ! cmp -s "$api_key_file" "$key_path" 2>/dev/null; then
            install -D -m 600 -o root -g root "$api_key_file" "$key_path"
            note "wrote $key_path (the backend's API key, root only)"
        fi
        place_text 644 "$UNIT_DIR/sleepyllama-proxy@$name.service.d/api-key.conf" <<EOF
# written by install.sh: the backend's API key, readable by this proxy alone (CREDENTIALS_DIRECTORY)
[Service]
LoadCredential=api-key:$key_path
EOF
    fi
    result=$("$PREFIX/bin/python" -m sleepyllama.tables "$CONFIG" proxy "$name" --backend "$backend" \
             --mac "$mac" ${broadcast:+--broadcast "$broadcast"} ${kind:+--kind "$kind"} \
             ${key_path:+--api-key-file "$key_path"} \
             ${mqtt:+--mqtt-broker "$mqtt"} ${mqtt_user:+--mqtt-username "$mqtt_user"} \
             ${mqtt_ca_file:+--mqtt-ca-file /etc/sleepyllama/mqtt-ca.pem} \
             ${prewake:+--prewake "$prewake"} \
             $([ "$wake_progress" = 1 ] && echo --wake-progress))
    place_text 644 "$UNIT_DIR/sleepyllama-proxy@$name.socket.d/listen.conf" <<EOF
# written by install.sh: where frontends connect, and the GPU box's hints (UDP, same port); the
# empty line drops the unit's defaults, of every Listen kind (one such line resets them all)
[Socket]
ListenStream=
ListenStream=$listen
ListenDatagram=$listen
EOF
    if [ -n "$mqtt_ca_file" ] && ! cmp -s "$mqtt_ca_file" /etc/sleepyllama/mqtt-ca.pem 2>/dev/null; then
        # a certificate, no secret: the page's DynamicUser reads it where it is
        install -D -m 644 -o root -g root "$mqtt_ca_file" /etc/sleepyllama/mqtt-ca.pem
        note "wrote /etc/sleepyllama/mqtt-ca.pem (the CA the MQTT broker's certificate is checked against)"
    fi
    if [ -n "$mqtt_password_file" ]; then
        # a copy only root may read; the page's DynamicUser gets it as a systemd credential
        if ! cmp -s "$mqtt_password_file" /etc/sleepyllama/mqtt.password 2>/dev/null; then
            install -D -m 600 -o root -g root "$mqtt_password_file" /etc/sleepyllama/mqtt.password
            note "wrote /etc/sleepyllama/mqtt.password (the MQTT broker's password, root only)"
        fi
        place_text 644 "$UNIT_DIR/sleepyllama-web.service.d/mqtt.conf" <<EOF
# written by install.sh: the MQTT broker's password, readable by the page alone (CREDENTIALS_DIRECTORY)
[Service]
LoadCredential=mqtt-password:/etc/sleepyllama/mqtt.password
EOF
    fi
else
    # /metrics counts every request, even one that came and went between two idle checks, and
    # reading it never wakes a sleeping model (as /slots would)
    if [[ $(basename "${command[0]}") == llama-server* ]] && ! printf '%s\n' "${command[@]}" | grep -qx -- --metrics; then
        command+=(--metrics)
        echo "  added --metrics to the llama-server command: the idle check counts requests from /metrics"
    fi
    # Ollama listens where OLLAMA_HOST says, 127.0.0.1 without it: out of the proxy's reach.
    # An OLLAMA_HOST of the user's own (their drop-in) is theirs to keep.
    ollama_host="$UNIT_DIR/sleepyllama-server@$name.service.d/ollama-host.conf"
    if [[ $(basename "${command[0]}") == ollama* ]] && { [ -e "$ollama_host" ] || \
            ! systemctl show -P Environment "sleepyllama-server@$name.service" 2>/dev/null | grep -q 'OLLAMA_HOST='; }; then
        place_text 644 "$ollama_host" <<EOF
# written by install.sh: Ollama listens where OLLAMA_HOST says (127.0.0.1 without it), and the
# proxy is on another host; your own Environment=OLLAMA_HOST=... (systemctl edit: override.conf) wins
[Service]
Environment=OLLAMA_HOST=0.0.0.0:11434
EOF
    fi
    if printf '%s\n' "${command[@]}" | grep -qx -- --api-key; then
        # the config is readable by everyone (sleepyllama status runs as any user)
        echo "  warning: --api-key puts the key in $CONFIG, which every user can read: give the server"
        echo "    --api-key-file FILE instead (sudo chown root:sleepyllama FILE; sudo chmod 640 FILE:"
        echo "    root and the servers' user read it); sleepyllama reads the key from either"
    fi
    # what tells that the GPUs are busy; a choice already in the config is kept unless --gpu
    if [ -n "$gpu" ]; then
        gpu_option=(--gpu "$gpu")
    else
        if command -v nvidia-smi >/dev/null; then
            gpu=pstate why="nvidia-smi found"
        elif compgen -G '/sys/class/drm/card*/device/gpu_busy_percent' >/dev/null; then
            gpu=amdgpu why="an AMD GPU (amdgpu) found"
        else
            gpu=off why="neither nvidia-smi nor an AMD GPU found: the servers and sleep inhibitors decide"
        fi
        gpu_option=(--gpu-if-unset "$gpu")
    fi
    result=$("$PREFIX/bin/python" -m sleepyllama.tables "$CONFIG" server "$name" \
             ${idle_timeout:+--idle-timeout "$idle_timeout"} ${action:+--action "$action"} "${gpu_option[@]}" \
             $(for proxy in "${notify[@]}"; do printf -- '--notify-proxy %s ' "$proxy"; done) \
             -- "${command[@]}")
    echo "  GPU signal: [idle] gpu = \"$("$PREFIX/bin/python" -c 'import pathlib, sys; from sleepyllama import config; print(config.load(pathlib.Path(sys.argv[1])).idle.gpu)' "$CONFIG")\"${why:+ ($why)}"
    if command -v nvidia-smi >/dev/null && ldconfig -p 2>/dev/null | grep -q 'libnvidia-api\.so\.1'; then
        # many GPUs stay in P0 with a model loaded: NVAPI can hold them in P8 between requests
        echo "  this box can hold idle GPUs in P8 (NVAPI found): $PREFIX/bin/pip install nvidia-pstate,"
        echo "    then pstate = \"auto\" in [server.$name] (README, GPU power while awake)"
    fi
fi
# the page, on either host: on the GPU box it shows the box itself (its idle check, its days)
if [ -n "$web" ] && [ -e /etc/sleepyllama/steer.secret ]; then
    place_text 644 "$UNIT_DIR/sleepyllama-web.service.d/steer.conf" <<EOF
# written by install.sh: the secret shared by the two hosts, for the page's Stay awake and Sleep now
[Service]
LoadCredential=steer-secret:/etc/sleepyllama/steer.secret
EOF
fi
if [ -n "$web" ]; then
    place_text 644 "$UNIT_DIR/sleepyllama-web.socket.d/listen.conf" <<EOF
# written by install.sh: where the page of this host listens (install.sh --web)
[Socket]
ListenStream=
ListenStream=$web
EOF
fi
[ "$result" = unchanged ] || note "wrote [$role.$name]${mqtt:+ and [mqtt] (broker $mqtt${mqtt_ca_file:+, TLS})} into $CONFIG"
chown root:root "$CONFIG" && chmod 644 "$CONFIG"

# -- systemd ---------------------------------------------------------------------------------
if [ "$changed" = 1 ]; then
    systemctl daemon-reload
fi
# what restarts a running program of ours: new code (each restarted the way that keeps what it
# holds), or its own settings
restarted=()
try_restart() {  # try_restart UNIT...: those running are restarted, and named
    local unit
    for unit in "$@"; do
        if systemctl is-active --quiet "$unit"; then
            systemctl restart --no-block "$unit"
            restarted+=("$unit")
        fi
    done
}
if [ "$role" = proxy ]; then
    wanted=("sleepyllama-proxy@$name.socket")
else
    wanted=("sleepyllama-server@$name.service" sleepyllama-servers.target sleepyllama-idle.timer
            sleepyllama-sleep.service)
    [ ! -e /etc/sleepyllama/steer.secret ] || wanted+=(sleepyllama-steer.socket)
fi
[ -z "$web" ] || wanted+=(sleepyllama-web.socket)
# with [mqtt] the page is what tells Home Assistant: it runs from boot, not from the first visit
publishes=0
if [ -n "$web" ] && "$PREFIX/bin/python" -c 'import sys; from pathlib import Path
from sleepyllama import config
sys.exit(0 if config.load(Path(sys.argv[1])).mqtt.broker else 1)' "$CONFIG" 2>/dev/null; then
    publishes=1
    wanted+=(sleepyllama-web.service)
fi
for unit in "${wanted[@]}"; do
    if [ "$(systemctl is-enabled "$unit" 2>/dev/null)" != enabled ]; then
        systemctl enable --quiet "$unit"
        note "enabled $unit"
    fi
done
if [ "$role" = proxy ]; then
    if [ "$changed" = 1 ]; then
        # a new address or config: the socket listens anew, the proxy reads the config anew
        systemctl restart "sleepyllama-proxy@$name.socket"
        try_restart "sleepyllama-proxy@$name.service"
    fi
    # started now, not at the first client: with the box awake it keeps the model list at once,
    # so the first page load while the box sleeps is already answered
    systemctl start --no-block "sleepyllama-proxy@$name.service"
else
    # --no-block: loading a model takes minutes; `systemctl status` shows when it is ready.
    # start is a no-op for a server already running or still loading
    # [schedule] awake: the wake timer (WakeSystem=yes) follows the config
    timer=$("$PREFIX/bin/python" -m sleepyllama.host.schedule install --config "$CONFIG")
    [ "$timer" = unchanged ] || note "$timer /etc/systemd/system/sleepyllama-wake.timer from [schedule] awake"
    systemctl reset-failed "sleepyllama-server@$name.service" 2>/dev/null || true
    if [ "$(server_fingerprint)" != "$server_before" ]; then
        # its command, its table or its unit changed: it must start anew (the model reloads)
        try_restart "sleepyllama-server@$name.service"
    elif [ "$code_changed" = 1 ] && [ -z "${SLEEPYLLAMA_UPGRADING:-}" ] \
            && systemctl is-active --quiet "sleepyllama-server@$name.service"; then
        echo "  sleepyllama-server@$name runs the old sleepyllama code until it next starts (the box's next sleep and resume start it anew); to take it now, with a model reload: sudo systemctl restart sleepyllama-server@$name"
    fi
    # the target, not only the server: it is what resume and `systemctl status` go by
    systemctl start --no-block sleepyllama-servers.target
    systemctl start sleepyllama-idle.timer
    if [ -e /etc/sleepyllama/steer.secret ]; then
        systemctl start sleepyllama-steer.socket
        [ "$changed" = 0 ] || try_restart sleepyllama-steer.service
    fi
fi
if [ "$code_changed" = 1 ]; then
    # every proxy of this host (a restart hands its held clients and streams to the next
    # process), the page, the steering: none may serve on with the old code
    mapfile -t running < <(systemctl list-units --plain --no-legend --state=active \
                           'sleepyllama-proxy@*.service' 'sleepyllama-web.service' \
                           'sleepyllama-steer.service' 2>/dev/null | cut -d' ' -f1)
    for unit in "${running[@]}"; do
        [[ " ${restarted[*]} " == *" $unit "* ]] || try_restart "$unit"
    done
fi

if [ -n "$web" ] && [ "$changed" = 1 ]; then
    # a new address or secret: the page's socket listens anew, the page reads them anew
    systemctl restart sleepyllama-web.socket
    [[ " ${restarted[*]} " == *" sleepyllama-web.service "* ]] || try_restart sleepyllama-web.service
fi
[ "$publishes" = 0 ] || systemctl start sleepyllama-web.service
[ ${#restarted[@]} = 0 ] || echo "  restarted ${restarted[*]}"

[ "$changed" = 1 ] || echo "  nothing changed: already installed as asked"

echo
if "$PREFIX/bin/sleepyllama" check; then checked=ok; else checked=failed; fi
echo
if [ "$role" = proxy ]; then
    cat <<EOF
Next:
  - point your frontend at http://$listen/v1 (this host's address in place of ${listen%:*})
  - on the GPU box, enable Wake-on-LAN in the BIOS/UEFI, then: sudo ethtool -s IFACE wol g
    (README, Troubleshooting, shows how to keep it on across reboots)
  - watch it: systemctl status sleepyllama-proxy@$name ; journalctl -u sleepyllama-proxy@$name -f
EOF
    [ -z "$web" ] || echo "  - the page: http://$web/ (this host's address in place of ${web%:*}); Prometheus: http://$web/metrics"
    [ -z "$mqtt" ] || echo "  - Home Assistant: the boxes appear as devices through the broker $mqtt once its MQTT integration has discovery on (its default); they are named \"GPU box NAME\""
else
    cat <<EOF
Next:
  - enable Wake-on-LAN in the BIOS/UEFI; the card's setting is turned on before each suspend
    (sleepyllama check says whether the card can wake the box)
  - the model is loading: systemctl status sleepyllama-server@$name (Status: "ready · 0 requests in flight")
  - idle decisions: journalctl -u sleepyllama-idle -f ; sleepyllama-idle --dry-run ; sleepyllama status
EOF
    [ -z "$web" ] || echo "  - the box's page: http://$web/ (this host's address in place of ${web%:*})"
fi
echo
if [ "$checked" = failed ]; then
    echo "Not ready as configured: fix the errors above, then: sudo sleepyllama restart"
    exit 1
elif [ "$role" = server ]; then
    timeout=$("$PREFIX/bin/python" -c 'import pathlib, sys; from sleepyllama import config; print(config.format_duration(config.load(pathlib.Path(sys.argv[1])).idle.timeout))' "$CONFIG")
    echo "This box can go to sleep as configured: it suspends after $timeout with nothing to do."
else
    echo "The proxy is ready: it wakes $backend when a client connects to $listen."
fi
