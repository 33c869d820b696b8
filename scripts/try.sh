#!/usr/bin/env bash
# A sandbox for trying tapcred with no AWS account and no YubiKey:
#   - builds tapcred (both programs) and the strict STS/IAM double,
#   - starts the double on 127.0.0.1 (IAM and STS on one endpoint),
#   - makes a scratch HOME with the example AWS files (copies: configure/enroll may edit them),
#   - sets the demo software seed, and leaves you in a shell (or prints the environment).
# Everything is removed when the shell exits (or, with --print-env, when you kill the double).
#
#   bash scripts/try.sh              # a shell in the sandbox; `exit` cleans up
#   bash scripts/try.sh --fresh      # the IAM user has no MFA device yet: try `tapcred enroll`
#   bash scripts/try.sh --print-env  # print `export …` lines instead (eval them; the double
#                                    # keeps running until you `kill $TAPCRED_TRY_DOUBLE_PID`)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

config=fixtures/sts-double/design.json
print_env=0
for a in "$@"; do
  case "$a" in
    --fresh) config=fixtures/sts-double/fresh-user.json ;;
    --print-env) print_env=1 ;;
    -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
    *) echo "try.sh: unknown argument '$a' (see --help)" >&2; exit 2 ;;
  esac
done

cargo build -q --locked -p tapcred -p tapcred-testkit --bins >&2
target_dir=$(cargo metadata -q --locked --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin=${target_dir:-$root/target}/debug

work=$(mktemp -d "${TMPDIR:-/tmp}/tapcred-try.XXXXXX")
mkdir -p "$work/home/.aws"
cp fixtures/aws/design/config fixtures/aws/design/credentials "$work/home/.aws/"
chmod 600 "$work/home/.aws/credentials"

# shellcheck source=lib/sts-double.sh
. scripts/lib/sts-double.sh
if ! start_sts_double "$bin/tapcred-sts-double" "$config" "$work/double.log"; then
  kill "$double_pid" 2>/dev/null; rm -rf "$work"; exit 1
fi

vars=(
  "HOME=$work/home"
  "XDG_CACHE_HOME=$work/home/.cache"
  "XDG_DATA_HOME=$work/home/.local/share"
  "AWS_ENDPOINT_URL=$url"
  "TAPCRED_TOTP_SECRET=$(cat fixtures/sts-double/design.seed)"
  "PATH=$bin:$PATH"
  "TAPCRED_TRY_DOUBLE_PID=$double_pid"
  "TAPCRED_TRY_DIR=$work"
)

if [ "$print_env" = 1 ]; then
  for v in "${vars[@]}"; do printf 'export %q\n' "$v"; done
  echo "# the double (pid $double_pid) serves $url; its log: $work/double.log" >&2
  exit 0
fi

cleanup() { kill "$double_pid" 2>/dev/null || true; rm -rf "$work"; }
trap cleanup EXIT
cat >&2 <<EOF
tapcred sandbox: HOME=$work/home, STS/IAM double at $url ($(basename "$config")).
The example profiles are in ~/.aws (try: tapcred credential-process --profile mfa,
tapcred doctor, tapcred exec --profile mfa -- env). Type 'exit' to remove everything.
EOF
env "${vars[@]}" "${SHELL:-/bin/bash}" -i || true
