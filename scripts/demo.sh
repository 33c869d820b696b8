#!/usr/bin/env bash
# tapcred's main job end to end on a machine with no AWS account and no YubiKey:
#   1. build tapcred (both programs: tapcred and tapcred-full) and the strict STS double,
#   2. start the double on 127.0.0.1 with the design's IAM user, MFA device and role,
#   3. point the design example (fixtures/aws/design) profiles at it (AWS_ENDPOINT_URL_STS) with a demo seed,
#   4. run `tapcred credential-process --profile mfa` (the AWS SDKs' view) and an `exec`.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

need_build_deps() { ! pkg-config --exists libpcsclite 2>/dev/null; }
if need_build_deps; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends pkg-config libpcsclite-dev libudev-dev
  else
    echo "tapcred demo: install the build dependencies first: sudo apt install pkg-config libpcsclite-dev" >&2
    exit 1
  fi
fi

cargo build -q --locked -p tapcred -p tapcred-testkit --bins
# Where cargo put them: CARGO_TARGET_DIR / build.target-dir when set, else ./target.
target_dir=$(cargo metadata -q --locked --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
bin=${target_dir:-$root/target}/debug
# tapcred is two programs: the launcher runs tapcred-full from the same folder.
for b in tapcred tapcred-full tapcred-sts-double; do
  [ -x "$bin/$b" ] || { echo "tapcred demo: $bin/$b is missing after cargo build" >&2; exit 1; }
done
echo "# binaries: $bin"

work=$(mktemp -d)
double_pid=
cleanup() { [ -n "$double_pid" ] && kill "$double_pid" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT

# shellcheck source=lib/sts-double.sh
. scripts/lib/sts-double.sh
start_sts_double "$bin/tapcred-sts-double" fixtures/sts-double/design.json "$work/double.log" || exit 1

export HOME=$work
export AWS_CONFIG_FILE=$root/fixtures/aws/design/config
export AWS_SHARED_CREDENTIALS_FILE=$root/fixtures/aws/design/credentials
export AWS_ENDPOINT_URL_STS=$url
export XDG_CACHE_HOME=$work/cache
# The demo MFA device's seed (the same one the double registered for the serial).
TAPCRED_TOTP_SECRET=$(cat fixtures/sts-double/design.seed)
export TAPCRED_TOTP_SECRET

echo "# STS double: $url"
echo "# tapcred credential-process --profile mfa"
"$bin/tapcred" credential-process --profile mfa
echo
echo "# tapcred exec --profile mfa -- sh -c 'echo \$AWS_ACCESS_KEY_ID expires \$AWS_CREDENTIAL_EXPIRATION'"
"$bin/tapcred" exec --profile mfa -- sh -c 'echo "$AWS_ACCESS_KEY_ID expires $AWS_CREDENTIAL_EXPIRATION"'
echo
echo "# a second role with the same source and MFA device: no new code (cached MFA session)"
"$bin/tapcred" credential-process --profile mfa-b | sed 's/"SecretAccessKey":"[^"]*"/"SecretAccessKey":"…"/; s/"SessionToken":"[^"]*"/"SessionToken":"…"/'
echo
echo "# tapcred sessions"
"$bin/tapcred" sessions
