#!/usr/bin/env bash
# A sandbox for trying tapcred with no AWS account and no YubiKey:
#   - builds tapcred (both programs), the strict STS/IAM double and the virtual YubiKey,
#   - starts the double on 127.0.0.1 (IAM and STS on one endpoint),
#   - makes a scratch HOME with the example AWS files (copies: configure/enroll may edit them),
#   - on Linux as root, when no other pcscd runs: starts a private pcscd (its own network
#     namespace) with a virtual YubiKey: serial 5550123, an OATH account for the IAM user's
#     MFA device (touch required), OTP slot 2 programmed for challenge-response (the vault);
#     its button is pressed for you 0.5 s after it starts blinking. Otherwise (macOS, Windows,
#     not root, a pcscd already running) it says why and uses the demo software seed instead,
#   - leaves you in a shell (or prints the environment).
# Everything it started is stopped and removed when the shell exits (with --print-env: when
# you run "$TAPCRED_TRY_STOP"). A pcscd this script did not start is never stopped or touched.
#
#   bash scripts/try.sh              # a shell in the sandbox; `exit` cleans up
#   bash scripts/try.sh --fresh      # no MFA device and no profile yet: try `tapcred configure`
#                                    # then `tapcred enroll` (the virtual key's OATH is empty)
#   bash scripts/try.sh --no-key     # the software seed even where the virtual key could run
#   bash scripts/try.sh --print-env  # print `export …` lines instead (eval them; everything
#                                    # keeps running until you run "$TAPCRED_TRY_STOP")
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

config=fixtures/sts-double/design.json
fresh=0
print_env=0
want_key=1
for a in "$@"; do
  case "$a" in
    --fresh) config=fixtures/sts-double/fresh-user.json; fresh=1 ;;
    --no-key) want_key=0 ;;
    --print-env) print_env=1 ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "try.sh: unknown argument '$a' (see --help)" >&2; exit 2 ;;
  esac
done

cargo build -q --locked -p tapcred -p tapcred-testkit --bins >&2
target_dir=$(cargo metadata -q --locked --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin=${target_dir:-$root/target}/debug

work=$(mktemp -d "${TMPDIR:-/tmp}/tapcred-try.XXXXXX")
mkdir -p "$work/home/.aws"
cp fixtures/aws/design/credentials "$work/home/.aws/"
chmod 600 "$work/home/.aws/credentials"
# --fresh: only the user's keys; `tapcred configure` writes the profile.
[ "$fresh" = 1 ] || cp fixtures/aws/design/config "$work/home/.aws/"
seed=$(cat fixtures/sts-double/design.seed)
double_pid=
card_pid=

stop_all() {
  [ -n "$card_pid" ] && kill -TERM "$card_pid" 2>/dev/null
  [ -n "$double_pid" ] && kill -TERM "$double_pid" 2>/dev/null
  for p in $card_pid $double_pid; do
    for _ in $(seq 1 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.05; done
  done
  rm -rf "$work"
}

# shellcheck source=lib/sts-double.sh
. scripts/lib/sts-double.sh
if ! start_sts_double "$bin/tapcred-sts-double" "$config" "$work/double.log"; then
  stop_all; exit 1
fi

# Why the virtual YubiKey cannot run here (empty: it can). It needs its own pcscd on the
# standard socket, so any pcscd already there (running, or a socket systemd would activate)
# wins and is left exactly as it is.
key_blocker() {
  local pcsc_lock=/tmp/tapcred-pcsc-stack.lock
  [ "$want_key" = 1 ] || { echo "--no-key"; return; }
  [ "$(uname -s)" = Linux ] || { echo "not Linux ($(uname -s)): no private pcscd"; return; }
  [ "$(id -u)" = 0 ] || { echo "not root (a private pcscd needs root)"; return; }
  for t in pcscd unshare ip; do
    PATH=$PATH:/usr/sbin:/sbin command -v "$t" >/dev/null ||
      { echo "\`$t\` not found (apt-get install pcscd util-linux iproute2 vsmartcard-vpcd)"; return; }
  done
  [ -e /usr/lib/pcsc/drivers/serial/libifdvpcd.so ] ||
    { echo "the vpcd driver is missing (apt-get install vsmartcard-vpcd)"; return; }
  local running
  running=$(grep -lx pcscd /proc/[0-9]*/comm 2>/dev/null | head -n1 | cut -d/ -f3 || true)
  [ -z "$running" ] || { echo "a pcscd (pid $running) is already running: try.sh leaves it alone"; return; }
  [ ! -S /run/pcscd/pcscd.comm ] || [ -f /tmp/tapcred-pcsc-stack.pid ] ||
    { echo "/run/pcscd/pcscd.comm belongs to the system's pcscd (socket activation): left alone"; return; }
  # Between two test stacks (which hold this lock while their pcscd runs): wait for a gap.
  if command -v flock >/dev/null && ! flock -n "$pcsc_lock" true 2>/dev/null; then
    echo "try.sh: the test suite's pcscd stack is in use; waiting up to 120 s" >&2
    flock -w 120 "$pcsc_lock" true 2>/dev/null ||
      { echo "the test suite's pcscd stack stayed in use ($pcsc_lock)"; return; }
  fi
}

blocker=$(key_blocker)
key=0
if [ -z "$blocker" ]; then
  accounts=
  # The account named like the profile's mfa_serial, as README's `ykman oath accounts add`.
  [ "$fresh" = 1 ] || accounts="arn:aws:iam::111111111111:mfa/toolkit-user=$seed,touch"
  # Seeds go through the environment, never argv.
  TAPCRED_VYK_ACCOUNTS=$accounts "$bin/tapcred-vpcd-card" --with-pcscd --serial 5550123 \
    --otp-chalresp 2 --auto-press-ms 500 --ready-file "$work/card.ready" \
    --control "$work/card.sock" >"$work/card.log" 2>&1 &
  card_pid=$!
  for _ in $(seq 1 300); do
    [ -s "$work/card.ready" ] && break
    kill -0 "$card_pid" 2>/dev/null || break
    sleep 0.05
  done
  if [ -s "$work/card.ready" ]; then
    key=1
  else
    blocker="the virtual YubiKey did not start: $(tr '\n' ' ' <"$work/card.log")"
    kill -TERM "$card_pid" 2>/dev/null || true
    card_pid=
  fi
fi

vars=(
  "HOME=$work/home"
  "XDG_CACHE_HOME=$work/home/.cache"
  "XDG_DATA_HOME=$work/home/.local/share"
  "AWS_ENDPOINT_URL=$url"
  "AWS_REGION=us-east-1"
  "PATH=$bin:$PATH"
  "TAPCRED_TRY_DOUBLE_PID=$double_pid"
  "TAPCRED_TRY_DIR=$work"
  "TAPCRED_TRY_STOP=$work/stop"
)
if [ "$key" = 1 ]; then
  vars+=("TAPCRED_TRY_CARD_PID=$card_pid" "TAPCRED_TRY_KEY=virtual")
  what="the virtual YubiKey 5550123 (private pcscd; touches are pressed for you)"
else
  vars+=("TAPCRED_TOTP_SECRET=$seed" "TAPCRED_TRY_KEY=software")
  what="the demo software seed (TAPCRED_TOTP_SECRET), no YubiKey: $blocker"
fi
echo "try.sh: token: $what" >&2

# "$TAPCRED_TRY_STOP": stops what this script started (never another pcscd), removes $work.
cat >"$work/stop" <<EOF
#!/bin/sh
for p in $card_pid $double_pid; do kill -TERM "\$p" 2>/dev/null; done
for p in $card_pid $double_pid; do
  i=0; while kill -0 "\$p" 2>/dev/null && [ \$i -lt 100 ]; do i=\$((i + 1)); sleep 0.05; done
done
exec rm -rf '$work'
EOF
chmod 700 "$work/stop"

if [ "$print_env" = 1 ]; then
  for v in "${vars[@]}"; do printf 'export %q\n' "$v"; done
  echo "# the double (pid $double_pid) serves $url; its log: $work/double.log; stop all: $work/stop" >&2
  exit 0
fi

trap stop_all EXIT
trap 'exit 130' INT TERM HUP
if [ "$fresh" = 1 ]; then
  hint="~/.aws/credentials holds the IAM user's keys, nothing else (try: tapcred configure, then
tapcred enroll --profile mfa --touch, tapcred doctor --profile mfa)."
else
  hint="The example profiles are in ~/.aws (try: tapcred doctor --profile mfa, tapcred code --profile mfa,
tapcred exec --profile mfa -- env, tapcred vault init --unlock otp)."
fi
cat >&2 <<EOF
tapcred sandbox: HOME=$work/home, STS/IAM double at $url ($(basename "$config")).
$hint Type 'exit' to remove everything.
EOF
env "${vars[@]}" "${SHELL:-/bin/bash}" -i || true
