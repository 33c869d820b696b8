#!/usr/bin/env bash
# tapcred's library unit tests for Windows, run under Wine (issue 8): the Windows bodies of
# src/platform/ (the ACL analysis on SDDL through Wine's advapi32, the owner-only DACL, the
# per-OS locations) run as Windows code, not only type-checked.
#
# usage: scripts/wine-unit.sh [FILTER...]     (default filter: platform::)
# Needs: wine64, gcc-mingw-w64-x86-64, the x86_64-pc-windows-gnu Rust target.
set -euo pipefail
cd "$(dirname "$0")/.."
filters=("${@:-platform::}")
wine=${WINE:-/usr/lib/wine/wine64}
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=${CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER:-x86_64-w64-mingw32-gcc}

exe=$(cargo test --target x86_64-pc-windows-gnu --lib --no-run --locked --message-format json |
  python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["lib"]:
        print(m["executable"])')
[ -f "$exe" ] || { echo "wine-unit: no test executable was built" >&2; exit 1; }

work=$(mktemp -d)
trap 'WINEPREFIX=$work/prefix /usr/lib/wine/wineserver -k 2>/dev/null || true; rm -rf "$work"' EXIT
mkdir -p "$work/bin"
# Wine 8 lacks bcryptprimitives.dll (ProcessPrng): the same stand-in as scripts/wine-check.sh.
x86_64-w64-mingw32-gcc -O2 -shared -o "$work/bin/bcryptprimitives.dll" \
  scripts/wine/bcryptprimitives.c scripts/wine/bcryptprimitives.def -ladvapi32
export WINEPREFIX=$work/prefix WINEDEBUG=-all WINEDLLOVERRIDES="mscoree,mshtml=" WINEPATH="Z:${work//\//\\}\\bin"
out=$("$wine" "$exe" "${filters[@]}" </dev/null 2>&1 | tr -d '\r') || { echo "$out" >&2; echo "wine-unit: FAIL" >&2; exit 1; }
echo "$out" | grep -E '^test |^test result'
grep -Eq '^test result: ok\. [1-9][0-9]* passed; 0 failed' <<<"$out" || { echo "wine-unit: no test passed" >&2; exit 1; }
