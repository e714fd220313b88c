#!/usr/bin/env bash
# Sets up what is missing on a Debian machine for mcim-hil, idempotently:
# Debian packages, the vpcd reader slots, pcscd, and the virtual environment (.venv).
# Uses sudo when not root. Quiet when everything is already there.
set -euo pipefail
cd "$(dirname "$0")/.."

PKGS=(swtpm swtpm-tools pcscd vsmartcard-vpcd libtss2-dev libpcsclite-dev pkg-config
      tpm2-tools pcsc-tools python3-venv python3-dev gcc swig tshark chromium ser2net)

say() { printf 'setup: %s\n' "$*" >&2; }
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@";
  elif sudo -n true 2>/dev/null; then sudo "$@";
  else say "need root for: $*  (run as root, or give sudo without a password)"; return 1; fi
}

# 1. Debian packages
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "installing Debian packages: ${missing[*]}"
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# 2. Extra vpcd readers (16 virtual slots), so several emulated benches can run side by side.
# libifdvpcd keeps one static slot array per loaded library: each extra reader gets its own copy.
conf=/etc/reader.conf.d/mcim-hil-vpcd
restart_pcscd=0
lib=/usr/lib/pcsc/drivers/serial/libifdvpcd.so
for x in A B C D E F G; do
  if ! cmp -s "$lib" "${lib%.so}-mcim$x.so"; then
    as_root install -m 0644 "$(readlink -f "$lib")" "${lib%.so}-mcim$x.so"
    restart_pcscd=1
  fi
done
if ! cmp -s scripts/mcim-hil-vpcd.conf "$conf"; then
  say "installing $conf (extra vpcd reader slots)"
  as_root install -m 0644 scripts/mcim-hil-vpcd.conf "$conf"
  restart_pcscd=1
fi

# 2b. vpcd listens on fixed ports (35963-35978, one per slot). Keep them out of the kernel's
# ephemeral range, or a client socket (swtpm's, a test's) takes one and pcscd's vpcd cannot bind
# it: that reader's two slots are then missing until pcscd restarts.
vpcd_ports=35963-35978
if [ -w /proc/sys/net/ipv4/ip_local_reserved_ports ] || [ "$(id -u)" -ne 0 ]; then
  reserved=$(cat /proc/sys/net/ipv4/ip_local_reserved_ports 2>/dev/null || true)
  case ",$reserved," in
    *",$vpcd_ports,"*) ;;
    *) say "reserving the vpcd ports $vpcd_ports (net.ipv4.ip_local_reserved_ports)"
       as_root sysctl -q -w "net.ipv4.ip_local_reserved_ports=${reserved:+$reserved,}$vpcd_ports" || \
         say "could not reserve $vpcd_ports: a vpcd reader may go missing when a client port lands there" ;;
  esac
fi

# 3. pcscd (one system daemon; it reads reader.conf.d at start)
if [ "$restart_pcscd" -eq 1 ] && pgrep -x pcscd >/dev/null; then
  say "restarting pcscd to load the new readers"
  as_root pkill -x pcscd || true
  for _ in $(seq 50); do pgrep -x pcscd >/dev/null || break; sleep 0.1; done
fi
if ! pgrep -x pcscd >/dev/null; then
  say "starting pcscd"
  if command -v systemctl >/dev/null && [ -d /run/systemd/system ]; then
    as_root systemctl start pcscd.socket pcscd.service || as_root pcscd
  else
    as_root pcscd
  fi
fi

# 4. The virtual environment with the project installed (editable, so the checkout is what runs)
py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  "$py" -m venv .venv
fi
stamp=.venv/.mcim-hil-installed
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  say "installing mcim-hil and its Python dependencies into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e .
  touch "$stamp"
fi

# 5. labgrid (labgrid places as benches, harness/lab/): client API, coordinator, exporter. Its
# pyserial fork is left out: it replaces pyserial's `serial` module (labgrid issue 1245), and the
# harness needs only pyserial's rfc2217 (with ?ign_set_control against ser2net 4).
LABGRID_VERSION=26.0.1
lg_stamp=.venv/.labgrid-installed
if [ ! -f "$lg_stamp" ] || [ scripts/labgrid-requirements.txt -nt "$lg_stamp" ] || \
   ! .venv/bin/python -c "import importlib.metadata as m, sys; sys.exit(m.version('labgrid') != '$LABGRID_VERSION')" 2>/dev/null; then
  say "installing labgrid $LABGRID_VERSION (without its pyserial fork)"
  .venv/bin/python -m pip install -q --no-deps "labgrid==$LABGRID_VERSION"
  .venv/bin/python -m pip install -q -r scripts/labgrid-requirements.txt
  touch "$lg_stamp"
fi
if .venv/bin/python -m pip show -q pyserial-labgrid >/dev/null 2>&1; then
  # installed by hand with its dependencies: put pyserial's own `serial` module back
  say "replacing pyserial-labgrid by pyserial (labgrid issue 1245)"
  .venv/bin/python -m pip uninstall -q -y pyserial-labgrid
  .venv/bin/python -m pip install -q --force-reinstall --no-deps "pyserial>=3.5"
fi
