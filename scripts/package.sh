#!/usr/bin/env bash
# Release archives for Linux and Windows and a Debian package, into dist/:
#   tapcred-VERSION-x86_64-linux.tar.gz    tapcred + tapcred-full, man pages, completions,
#                                          udev rule, README
#   tapcred-VERSION-x86_64-windows.zip     tapcred.exe + tapcred-full.exe, PowerShell
#                                          completion, README
#   tapcred_VERSION_amd64.deb              /usr/bin/tapcred + /usr/bin/tapcred-full, man
#                                          pages, bash/zsh/fish completions, the udev rule
# tapcred is two programs that ship side by side in one folder (src/cli/launcher.rs): the
# small `tapcred` launcher answers a warm credential-process and runs `tapcred-full` (the
# whole program) from its own folder for everything else. Every package holds both.
#
# usage: scripts/package.sh [linux] [windows] [deb]      (default: all three)
# env:   TAPCRED_PACKAGE_PROFILE=release (default) or debug — CI packages the debug builds it
#        already has, to check the layout without a second, slow release build;
#        DIST=dir (default dist/).
# Needs: cargo; for windows the x86_64-pc-windows-gnu target and x86_64-w64-mingw32-gcc;
#        for deb dpkg-deb (Debian/Ubuntu); python3 for the zip.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
profile=${TAPCRED_PACKAGE_PROFILE:-release}
dist=${DIST:-$root/dist}
what=("$@")
[ ${#what[@]} -gt 0 ] || what=(linux windows deb)

version=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
target_dir=$(cargo metadata -q --locked --format-version 1 --no-deps |
  sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')
target_dir=${target_dir:-$root/target}
profile_dir=$profile
[ "$profile" = dev ] && profile_dir=debug
[ "$profile" = debug ] && profile=dev
mkdir -p "$dist"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Shipped binaries carry no symbols (release builds are stripped already; this also keeps a
# debug build's package small when CI checks the layout).
strip_copy() { if command -v "$1" >/dev/null 2>&1; then "$1" "$2"; fi; }

# The .deb's Depends, from what the shipped binaries load (readelf, no dpkg-shlibdeps: that
# needs a Debian source tree): each DT_NEEDED library maps to its package below, an unknown
# one stops the build (add it here), and libc6's version is the newest glibc symbol version
# any of them needs (GLIBC_ABI_DT_RELR, from build.rs's packed relocations, means 2.36).
# The launcher loads only libc and libgcc_s; tapcred-full adds libpcsclite and libudev.
deb_depends() {
  local f needed lib glibc="2.17" v pkgs=()
  for f in "$@"; do
    needed=$(readelf -d "$f" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
    [ -n "$needed" ] || { echo "package: readelf found no libraries in $f" >&2; return 1; }
    for lib in $needed; do
      case $lib in
        libc.so.6 | libm.so.6 | libdl.so.2 | libpthread.so.0 | librt.so.1 | ld-linux-*) v=libc6 ;;
        libgcc_s.so.1) v=libgcc-s1 ;;
        libpcsclite.so.1) v=libpcsclite1 ;;
        libudev.so.1) v=libudev1 ;;
        *) echo "package: $f needs $lib: add its Debian package to deb_depends in $0" >&2; return 1 ;;
      esac
      [ "$v" = libc6 ] || [[ " ${pkgs[*]} " == *" $v "* ]] || pkgs+=("$v")
    done
    for v in $(readelf -V "$f" | grep -o 'GLIBC_[0-9A-Z_.]*' | sort -u); do
      case $v in
        GLIBC_ABI_DT_RELR) v=2.36 ;;
        GLIBC_[0-9]*) v=${v#GLIBC_} ;;
        *) continue ;;
      esac
      glibc=$(printf '%s\n%s\n' "$glibc" "$v" | sort -V | tail -n1)
    done
  done
  local out="libc6 (>= $glibc)"
  for v in "${pkgs[@]}"; do out+=", $v"; done
  echo "$out"
}

want() { local w; for w in "${what[@]}"; do [ "$w" = "$1" ] && return 0; done; return 1; }

# The two programs, in the order they are installed.
programs=(tapcred tapcred-full)
bin_args=(); for p in "${programs[@]}"; do bin_args+=(--bin "$p"); done

linux_bin=$target_dir/$profile_dir/tapcred
if want linux || want deb; then
  # One cargo run for both: they share every compiled crate; each has its own link.
  cargo build -q --locked --profile "$profile" "${bin_args[@]}"
  for p in "${programs[@]}"; do
    [ -x "$target_dir/$profile_dir/$p" ] || { echo "package: $target_dir/$profile_dir/$p was not built" >&2; exit 1; }
  done
  # Generated from the binary itself (through the launcher, as users run it), so they always
  # match it.
  mkdir -p "$work/gen/man" "$work/gen/completions"
  "$linux_bin" man --dir "$work/gen/man" >/dev/null
  for sh in bash zsh fish; do
    "$linux_bin" completions "$sh" >"$work/gen/completions/tapcred.$sh"
  done
fi

if want linux; then
  name=tapcred-$version-x86_64-linux
  d=$work/$name
  mkdir -p "$d/man" "$d/completions" "$d/udev"
  for p in "${programs[@]}"; do
    install -m 0755 "$target_dir/$profile_dir/$p" "$d/$p"
    strip_copy strip "$d/$p"
  done
  cp "$work"/gen/man/*.1 "$d/man/"
  cp "$work"/gen/completions/* "$d/completions/"
  cp udev/*.rules "$d/udev/"
  cp README.md "$d/"
  tar -C "$work" -czf "$dist/$name.tar.gz" "$name"
  echo "package: $dist/$name.tar.gz"
fi

if want windows; then
  export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=${CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER:-x86_64-w64-mingw32-gcc}
  cargo build -q --locked --profile "$profile" --target x86_64-pc-windows-gnu "${bin_args[@]}"
  name=tapcred-$version-x86_64-windows
  d=$work/$name
  mkdir -p "$d"
  # Side by side at the top of the folder: tapcred.exe starts tapcred-full.exe from its own
  # folder.
  for p in "${programs[@]}"; do
    exe=$target_dir/x86_64-pc-windows-gnu/$profile_dir/$p.exe
    [ -f "$exe" ] || { echo "package: $exe was not built" >&2; exit 1; }
    cp "$exe" "$d/$p.exe"
    strip_copy x86_64-w64-mingw32-strip "$d/$p.exe"
  done
  cp README.md "$d/"
  # The completion script is the same text on every OS; generate it with a Linux build of
  # this tree (this profile's, else the debug one CI's tests built).
  comp_bin=$linux_bin
  [ -x "$comp_bin" ] || comp_bin=$target_dir/debug/tapcred
  if [ -x "$comp_bin" ]; then
    "$comp_bin" completions powershell >"$d/tapcred.ps1"
  fi
  python3 - "$work" "$name" "$dist/$name.zip" <<'PY'
import os, sys, zipfile
base, name, out = sys.argv[1:]
with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
    for dirpath, _, files in os.walk(os.path.join(base, name)):
        for f in sorted(files):
            p = os.path.join(dirpath, f)
            z.write(p, os.path.relpath(p, base))
PY
  echo "package: $dist/$name.zip"
fi

if want deb; then
  arch=$(dpkg --print-architecture 2>/dev/null || echo amd64)
  d=$work/deb
  for p in "${programs[@]}"; do
    install -Dm0755 "$target_dir/$profile_dir/$p" "$d/usr/bin/$p"
    strip_copy strip "$d/usr/bin/$p"
  done
  mkdir -p "$d/usr/share/man/man1"
  for m in "$work"/gen/man/*.1; do gzip -9n <"$m" >"$d/usr/share/man/man1/$(basename "$m").gz"; done
  install -Dm0644 "$work/gen/completions/tapcred.bash" "$d/usr/share/bash-completion/completions/tapcred"
  install -Dm0644 "$work/gen/completions/tapcred.zsh" "$d/usr/share/zsh/vendor-completions/_tapcred"
  install -Dm0644 "$work/gen/completions/tapcred.fish" "$d/usr/share/fish/vendor_completions.d/tapcred.fish"
  for r in udev/*.rules; do install -Dm0644 "$r" "$d/usr/lib/udev/rules.d/$(basename "$r")"; done
  install -Dm0644 README.md "$d/usr/share/doc/tapcred/README.md"
  size=$(du -sk "$d" | cut -f1)
  depends=$(deb_depends "${programs[@]/#/$d/usr/bin/}")
  mkdir -p "$d/DEBIAN"
  cat >"$d/DEBIAN/control" <<EOF
Package: tapcred
Version: $version
Architecture: $arch
Maintainer: tapcred developers <tapcred@localhost>
Installed-Size: $size
Depends: $depends
Recommends: pcscd
Section: utils
Priority: optional
Description: AWS mfa_serial profiles with a tap on a YubiKey
 tapcred serves AWS profiles that need MFA (credential_process, exec, export and
 a loopback credentials endpoint) with codes from a YubiKey's OATH applet, a
 software TOTP seed or a typed code, caching the STS sessions so one tap serves
 many calls.
EOF
  cat >"$d/DEBIAN/postinst" <<'EOF'
#!/bin/sh
set -e
# Let the new udev rule apply to a YubiKey already plugged in.
if [ "$1" = configure ] && command -v udevadm >/dev/null 2>&1; then
  udevadm control --reload-rules 2>/dev/null || true
  udevadm trigger --subsystem-match=hidraw 2>/dev/null || true
fi
EOF
  chmod 0755 "$d/DEBIAN/postinst"
  out=$dist/tapcred_${version}_$arch.deb
  dpkg-deb --root-owner-group -Zxz --build "$d" "$out" >/dev/null
  echo "package: $out (Depends: $depends)"
fi
