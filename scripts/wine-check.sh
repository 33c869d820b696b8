#!/usr/bin/env bash
# The Windows build of tapcred, run under Wine (Debian's wine64) against the loopback STS
# double with a software seed (issue 8). Both programs, side by side in one folder as the
# zip ships them: tapcred.exe (the launcher users run) and tapcred-full.exe (the whole
# program, which the launcher runs as its child for anything but a warm credential-process).
# Proves on Linux what a Windows user runs:
#   1. credential-process: valid credential_process JSON; the double accepted the MFA code;
#   2. a second call is served from the cache (%LOCALAPPDATA%\tapcred): the double saw no call;
#      the launcher answers it alone (tapcred-full.exe made unstartable), while any other
#      call then exits 7 with one line naming tapcred-full.exe, as does every call once
#      tapcred-full.exe is removed;
#   3. exec hands the variables to a Windows child (cmd /c set AWS_);
#   4. export --format powershell;
#   5. two bad inputs with their documented exit codes (unknown profile 3, usage 2);
#   6. private files: tapcred sets its owner-only ACL without error on what it creates
#      (Wine keeps no file ACLs: see step 6 for what this does and does not prove), and a
#      seed file whose ACL lets Everyone read it is refused (exit 3, naming the file and the
#      icacls fix); the same file made private is used.
#   7. `vault init --unlock fido2` says FIDO2 unlock is not available on Windows (exit 2).
# The AWS files sit in %USERPROFILE%\.aws, where the AWS CLI for Windows looks.
#
# usage: scripts/wine-check.sh [TAPCRED_EXE [STS_DOUBLE_BIN]]
#   defaults: target/x86_64-pc-windows-gnu/$WINE_PROFILE/tapcred.exe (WINE_PROFILE=release,
#   the build users get), with tapcred-full.exe from the same folder, and
#   target/debug/tapcred-sts-double (all built here when missing).
# Needs: wine64, gcc-mingw-w64-x86-64 (for the ProcessPrng shim), python3.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

target_dir=$(cargo metadata -q --locked --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
target_dir=${target_dir:-$root/target}
profile=${WINE_PROFILE:-release}
exe=${1:-$target_dir/x86_64-pc-windows-gnu/$profile/tapcred.exe}
full_exe=$(dirname "$exe")/tapcred-full.exe
double_bin=${2:-$target_dir/debug/tapcred-sts-double}
wine=${WINE:-/usr/lib/wine/wine64}

fail() { echo "wine-check: FAIL: $*" >&2; exit 1; }
ok() { echo "wine-check: ok: $*"; }

[ -x "$wine" ] || fail "$wine is missing (apt install wine64)"
if [ ! -f "$exe" ] || [ ! -f "$full_exe" ]; then
  export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=${CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER:-x86_64-w64-mingw32-gcc}
  # Both in one cargo run (shared crates, one link each).
  if [ "$profile" = debug ]; then
    cargo build -q --locked --target x86_64-pc-windows-gnu --bin tapcred --bin tapcred-full
  else
    cargo build -q --locked --target x86_64-pc-windows-gnu --profile "$profile" --bin tapcred --bin tapcred-full
  fi
fi
[ -x "$double_bin" ] || cargo build -q --locked -p tapcred-testkit --bin tapcred-sts-double
[ -f "$exe" ] || fail "$exe was not built"
[ -f "$full_exe" ] || fail "$full_exe is missing: tapcred.exe needs tapcred-full.exe beside it"

work=$(mktemp -d)
double_pid=
cleanup() {
  [ -n "$double_pid" ] && kill "$double_pid" 2>/dev/null
  WINEPREFIX=$work/prefix /usr/lib/wine/wineserver -k 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

# The README's Windows steps as a new user takes them: no %USERPROFILE%\.aws yet; `tapcred
# --version`; `tapcred configure` with the keys on stdin writes both AWS files.
# The .exe with the Wine-only ProcessPrng shim beside it (test scaffolding, see the .c file).
mkdir -p "$work/bin"
cp "$exe" "$work/bin/tapcred.exe"
cp "$full_exe" "$work/bin/tapcred-full.exe"
x86_64-w64-mingw32-gcc -O2 -shared -o "$work/bin/bcryptprimitives.dll" \
  scripts/wine/bcryptprimitives.c scripts/wine/bcryptprimitives.def -ladvapi32

export WINEPREFIX=$work/prefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml="
# Nothing of the Linux side may decide Windows paths: no XDG_CACHE_HOME, no AWS_* files.
unset XDG_CACHE_HOME AWS_CONFIG_FILE AWS_SHARED_CREDENTIALS_FILE AWS_PROFILE TAPCRED_PROFILE
t0=$SECONDS
profile_win=$("$wine" cmd /c 'echo %USERPROFILE%' 2>/dev/null | tr -d '\r')
echo "wine-check: prefix ready in $((SECONDS - t0)) s; USERPROFILE=$profile_win"
user_dir=$WINEPREFIX/drive_c/users/${profile_win##*\\}
[ -d "$user_dir" ] || fail "USERPROFILE $profile_win is not at $user_dir"
[ ! -e "$user_dir/.aws" ] || fail "the fresh prefix already has $user_dir/.aws"

ver=$("$wine" "$work/bin/tapcred.exe" --version </dev/null | tr -d '\r')
grep -q '^tapcred [0-9]' <<<"$ver" || fail "tapcred.exe --version printed: $ver"
ver_full=$("$wine" "$work/bin/tapcred-full.exe" --version </dev/null | tr -d '\r')
[ "$ver_full" = "$ver" ] || fail "tapcred.exe --version ($ver) and tapcred-full.exe --version ($ver_full) differ"
ok "tapcred.exe --version (handed to tapcred-full.exe): $ver"
# The design fixture's keys (the STS double knows them), on stdin as the README says.
key_id=$(sed -n 's/^aws_access_key_id = //p' fixtures/aws/design/credentials | head -n1)
secret=$(sed -n 's/^aws_secret_access_key = //p' fixtures/aws/design/credentials | head -n1)
printf '%s\n%s\n' "$key_id" "$secret" | "$wine" "$work/bin/tapcred.exe" configure --keys-from-stdin \
  --profile mfa --source-profile toolkit-user --region us-east-1 \
  --role-arn arn:aws:iam::111111111111:role/toolkit-role \
  --mfa-serial arn:aws:iam::111111111111:mfa/toolkit-user >"$work/out0" 2>"$work/err0" ||
  { cat "$work/out0" "$work/err0" >&2; fail "configure with keys on stdin exited $?"; }
grep -q '^\[profile mfa\]' "$user_dir/.aws/config" || fail "configure wrote no [profile mfa] to %USERPROFILE%\\.aws\\config"
grep -q "^aws_access_key_id = $key_id" "$user_dir/.aws/credentials" ||
  fail "configure wrote no [toolkit-user] keys to %USERPROFILE%\\.aws\\credentials"
if grep -q -- "$secret" "$work/out0" "$work/err0"; then fail "configure printed the secret access key"; fi
ok "configure (keys on stdin) wrote %USERPROFILE%\\.aws\\config and credentials"

# shellcheck source=lib/sts-double.sh
. scripts/lib/sts-double.sh
start_sts_double "$double_bin" fixtures/sts-double/design.json "$work/double.log" || fail "the STS double did not start"
export AWS_ENDPOINT_URL_STS=$url
TAPCRED_TOTP_SECRET=$(cat fixtures/sts-double/design.seed)
export TAPCRED_TOTP_SECRET

stats() { python3 -c 'import json,sys,urllib.request; s=json.load(urllib.request.urlopen(sys.argv[1]+"/_double/stats")); print(s["requests"], len(s["token_codes"]), len(s["errors"]))' "$url"; }
tap() { "$wine" "$work/bin/tapcred.exe" "$@" </dev/null; }

# 1. credential-process
out=$(tap credential-process --profile mfa 2>"$work/err1") || { cat "$work/err1" >&2; fail "credential-process exited $?"; }
printf '%s' "$out" | python3 -c '
import json, sys
d = json.load(sys.stdin)
assert d["Version"] == 1, d
assert d["AccessKeyId"].startswith("ASIA"), d["AccessKeyId"]
assert d["SecretAccessKey"] and d["SessionToken"] and d["Expiration"], "missing fields"
' || fail "credential-process printed no valid credential_process JSON: $out"
read -r req1 codes1 errs1 <<<"$(stats)"
[ "$codes1" -ge 1 ] && [ "$errs1" -eq 0 ] || fail "the double accepted no MFA code (requests $req1, codes $codes1, errors $errs1)"
ok "credential-process: JSON valid, the double accepted the MFA code ($req1 requests, $codes1 code)"
cache_dir=$user_dir/AppData/Local/tapcred
ls "$cache_dir"/*.json >/dev/null 2>&1 || fail "no session in %LOCALAPPDATA%\\tapcred ($cache_dir)"
ok "session cached under %LOCALAPPDATA%\\tapcred"

# 2. served from the cache
out2=$(tap credential-process --profile mfa 2>"$work/err2") || { cat "$work/err2" >&2; fail "second credential-process failed"; }
read -r req2 _ _ <<<"$(stats)"
[ "$req2" -eq "$req1" ] || fail "the second call reached STS ($req1 -> $req2 requests)"
[ "$(printf '%s' "$out2" | python3 -c 'import json,sys; print(json.load(sys.stdin)["AccessKeyId"])')" = \
  "$(printf '%s' "$out" | python3 -c 'import json,sys; print(json.load(sys.stdin)["AccessKeyId"])')" ] ||
  fail "the second call did not return the cached session"
ok "second call served from the cache (the double saw no new request)"

# 2b. The launcher alone. tapcred-full.exe made unstartable with its size and modification
# time kept (the warm index is keyed by both files; Wine under root ignores file modes, so
# its bytes are zeroed: not a Windows program any more): the warm call is still answered,
# by tapcred.exe alone; anything else exits 7 with one line naming tapcred-full.exe.
cp -p "$work/bin/tapcred-full.exe" "$work/tapcred-full.keep"
head -c "$(stat -c %s "$work/tapcred-full.keep")" /dev/zero >"$work/bin/tapcred-full.exe"
touch -r "$work/tapcred-full.keep" "$work/bin/tapcred-full.exe"
out2b=$(tap credential-process --profile mfa 2>"$work/err2b") ||
  { cat "$work/err2b" >&2; fail "with tapcred-full.exe unstartable, the warm call failed"; }
[ "$out2b" = "$out2" ] || fail "with tapcred-full.exe unstartable, the warm call printed other credentials"
[ ! -s "$work/err2b" ] || fail "the warm call by tapcred.exe alone wrote to stderr: $(cat "$work/err2b")"
read -r req2b _ _ <<<"$(stats)"
[ "$req2b" -eq "$req1" ] || fail "the warm call by tapcred.exe alone reached STS"
ok "warm credential-process answered by tapcred.exe alone (tapcred-full.exe unstartable)"
handed_over_fails() { # what: the args must exit 7 with one line naming tapcred-full.exe
  local what=$1 rc=0; shift
  tap "$@" >"$work/out7x" 2>"$work/err7x" || rc=$?
  tr -d '\r' <"$work/err7x" >"$work/err7y"
  [ "$rc" -eq 7 ] || fail "$what: exit $rc, expected 7: $(cat "$work/err7y")"
  [ ! -s "$work/out7x" ] || fail "$what: printed on stdout"
  [ "$(grep -c . "$work/err7y")" -eq 1 ] || fail "$what: not one line: $(cat "$work/err7y")"
  grep -q 'tapcred: error: cannot start .*tapcred-full\.exe.*reinstall both' "$work/err7y" ||
    fail "$what: the error does not name tapcred-full.exe and the fix: $(cat "$work/err7y")"
}
handed_over_fails "--version with tapcred-full.exe unstartable" --version
ok "--version with tapcred-full.exe unstartable: exit 7, $(cat "$work/err7y")"
rm "$work/bin/tapcred-full.exe"
handed_over_fails "credential-process with tapcred-full.exe removed" credential-process --profile mfa
ok "credential-process with tapcred-full.exe removed: exit 7 (no warm index without both programs)"
cp -p "$work/tapcred-full.keep" "$work/bin/tapcred-full.exe"

# 3. exec hands the variables to a Windows child
set +e
envs=$(tap exec --profile mfa -- cmd /c set AWS_ 2>"$work/err3" | tr -d '\r')
rc=$?
set -e
[ "$rc" -eq 0 ] || { cat "$work/err3" >&2; fail "exec exited $rc"; }
for v in AWS_ACCESS_KEY_ID=ASIA AWS_SECRET_ACCESS_KEY= AWS_SESSION_TOKEN= AWS_REGION=; do
  grep -q "^$v" <<<"$envs" || fail "the Windows child did not get $v: $envs"
done
if grep -q '^TAPCRED_TOTP_SECRET=' < <(tap exec --profile mfa -- cmd /c set TAPCRED 2>/dev/null | tr -d '\r'); then
  fail "the Windows child got TAPCRED_TOTP_SECRET"
fi
set +e
tap exec --profile mfa -- cmd /c exit 7 >/dev/null 2>&1
rc=$?
set -e
[ "$rc" -eq 7 ] || fail "exec did not exit with the child's code (7): $rc"
ok "exec: cmd.exe got the AWS_* variables (not the seed) and its exit code 7 came back"

# 4. export --format powershell
ps=$(tap export --profile mfa --format powershell 2>"$work/err4" | tr -d '\r') || { cat "$work/err4" >&2; fail "export failed"; }
grep -qi '^\$env:AWS_ACCESS_KEY_ID *= *["'"'"']ASIA' <<<"$ps" || fail "no PowerShell assignment of AWS_ACCESS_KEY_ID: $ps"
grep -qi '^\$env:AWS_SESSION_TOKEN *= *' <<<"$ps" || fail "no PowerShell assignment of AWS_SESSION_TOKEN: $ps"
ok "export --format powershell"

# 5. bad inputs, documented exit codes (docs/configuration.md "Exit codes")
set +e
tap credential-process --profile no-such-profile >"$work/out5" 2>"$work/err5"; rc=$?
set -e
[ "$rc" -eq 3 ] || fail "unknown profile: exit $rc, expected 3: $(cat "$work/err5")"
[ ! -s "$work/out5" ] || fail "unknown profile printed on stdout"
grep -q 'no-such-profile' "$work/err5" || fail "unknown profile: the error does not name it: $(cat "$work/err5")"
set +e
tap export --profile mfa --format yaml >/dev/null 2>"$work/err6"; rc=$?
set -e
[ "$rc" -eq 2 ] || fail "usage error: exit $rc, expected 2"
ok "bad inputs: unknown profile exit 3, usage error exit 2"

# 6. private files (src/platform/fs/windows.rs). tapcred set its owner-only DACL on
# %USERPROFILE%\.aws (configure created it), the cache directory and every file it wrote,
# on each new handle: SetSecurityInfo succeeded, or none of them would exist (a failure
# aborts the write). What the DACL grants is NOT provable here: Wine 8 keeps no security
# descriptor for files, it turns any DACL into Unix mode bits (0777 less the umask) and
# builds the ACL it reports from the mode. Owner reads back as this user (the cached second
# call above passed tapcred's owner check); the grant analysis is unit-tested on SDDL.
[ -d "$user_dir/.aws" ] && ls "$cache_dir"/*.json >/dev/null || fail "private files missing"
ok "owner-only ACL set without error on %USERPROFILE%\\.aws, the cache directory and sessions; owner read back as this user"

# The seed-file check: a seed file other users can read is refused; made private, it is used.
seed_win='~\.aws\tapcred-seed.txt'
printf '%s\n' "$TAPCRED_TOTP_SECRET" >"$user_dir/.aws/tapcred-seed.txt"
cat >>"$user_dir/.aws/config" <<EOF2

[profile seedfile]
source_profile = toolkit-user
role_arn = arn:aws:iam::111111111111:role/toolkit-role-b
mfa_serial = arn:aws:iam::111111111111:mfa/toolkit-user
tapcred_token = software
tapcred_totp_secret_file = $seed_win
EOF2
# Wine gives a file with no stored security descriptor one built from its Unix mode:
# 0644 becomes an ACL that lets Everyone read it.
chmod 0644 "$user_dir/.aws/tapcred-seed.txt"
set +e
(unset TAPCRED_TOTP_SECRET; tap code --profile seedfile >"$work/out_seed" 2>"$work/err_seed"); rc=$?
set -e
[ "$rc" -eq 3 ] || fail "a seed file Everyone can read: exit $rc, expected 3: $(cat "$work/err_seed")"
[ ! -s "$work/out_seed" ] || fail "a seed file Everyone can read: a code was printed"
grep -q 'tapcred-seed.txt.*readable by other users' "$work/err_seed" || fail "the refusal does not name the seed file: $(cat "$work/err_seed")"
grep -q 'icacls' "$work/err_seed" || fail "the refusal gives no Windows fix (icacls): $(cat "$work/err_seed")"
ok "seed file readable by others refused (exit 3): $(tr -d '\r' <"$work/err_seed" | head -n1)"
chmod 0600 "$user_dir/.aws/tapcred-seed.txt"
set +e
code=$( (unset TAPCRED_TOTP_SECRET; tap code --profile seedfile 2>"$work/err_seed2") | tr -d '\r'); rc=$?
set -e
[ "$rc" -eq 0 ] || fail "the private seed file was not used (exit $rc): $(cat "$work/err_seed2")"
python3 - "$code" "$(cat fixtures/sts-double/design.seed)" <<'PY' || fail "the code from the seed file is wrong: $code"
import base64, hashlib, hmac, struct, sys, time
code, seed = sys.argv[1], sys.argv[2].strip().upper()
key = base64.b32decode(seed + "=" * (-len(seed) % 8))
def totp(t):
    h = hmac.new(key, struct.pack(">Q", t // 30), hashlib.sha1).digest()
    o = h[-1] & 15
    return "%06d" % ((struct.unpack(">I", h[o:o + 4])[0] & 0x7fffffff) % 1000000)
now = int(time.time())
sys.exit(0 if code in {totp(now + d) for d in (-30, 0, 30)} else 1)
PY
ok "the same seed file made private is used: the code matches the seed"

# 7. FIDO2 vault unlock is not available on Windows in this version (raw FIDO HID needs
#    administrator rights there): a clear usage error, and no vault file is made.
set +e
TAPCRED_VAULT='C:\tapcred-fido-check\vault' tap vault init --unlock fido2 >"$work/out7" 2>"$work/err7"; rc=$?
set -e
[ "$rc" -eq 2 ] || fail "vault init --unlock fido2: exit $rc, expected 2: $(cat "$work/err7")"
[ ! -s "$work/out7" ] || fail "vault init --unlock fido2 printed on stdout"
grep -q 'not available on Windows' "$work/err7" || fail "vault init --unlock fido2: $(cat "$work/err7")"
[ ! -e "$WINEPREFIX/drive_c/tapcred-fido-check/vault" ] || fail "vault init --unlock fido2 wrote a vault"
ok "vault init --unlock fido2: not available on Windows (exit 2), nothing written"

echo "wine-check: all checks passed"
