#!/usr/bin/env bash
# Install bubblewrap (bwrap), which isolates the model programs the lab executes (rewards/README.md,
# "Sandbox"), where this machine lets us: as root with apt-get (CI, containers). Never fails the caller:
# without bwrap the lab still runs, with the in-process guard and seccomp filter only, and says so.
set -u
if command -v bwrap >/dev/null 2>&1; then
  exit 0
fi
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  if { apt-get install -y -qq bubblewrap || { apt-get update -qq && apt-get install -y -qq bubblewrap; }; } \
      >/dev/null 2>&1; then
    echo "installed bubblewrap ($(bwrap --version)) for the code sandbox"
    exit 0
  fi
fi
echo "note: bubblewrap (bwrap) is not installed and could not be installed here: model programs will run" \
     "without OS isolation; install it with your package manager (Debian/Ubuntu: apt-get install bubblewrap)"
exit 0
