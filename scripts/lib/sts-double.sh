# Sourced by scripts that need the local STS/IAM double (demo.sh, try.sh, wine-check.sh).
# start_sts_double BIN CONFIG LOG: start `BIN --config CONFIG` on 127.0.0.1 (an ephemeral port),
# logging to LOG; sets double_pid and url (the endpoint it printed). Returns 1, with the log
# on stderr, when it does not come up within 5 s.
start_sts_double() {
  local bin=$1 config=$2 log=$3
  "$bin" --config "$config" >"$log" 2>&1 &
  double_pid=$!
  url=
  for _ in $(seq 1 100); do
    url=$(sed -n 's/^listening on \(http:[^ ]*\).*/\1/p' "$log" | head -n1)
    [ -n "$url" ] && return 0
    sleep 0.05
  done
  echo "the STS double ($bin) did not start:" >&2
  cat "$log" >&2
  return 1
}
