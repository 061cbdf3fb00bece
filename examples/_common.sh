# Shared by the example scripts: --quick parsing, the output folder, and a jvae that is on PATH.
# shellcheck shell=bash
set -euo pipefail
QUICK=0
for arg in "$@"; do
  case "$arg" in
    --quick) QUICK=1 ;;
    -h|--help) sed -n '2,/^$/p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "unknown argument $arg (use --quick or nothing)" >&2; exit 2 ;;
  esac
done
NAME=$(basename "$0" .sh)
OUT=${OUT:-examples/out/$NAME}
mkdir -p "$OUT"
JVAE=${JVAE:-jvae}
say() { printf '\n== %s\n' "$*" >&2; }
