# Sourced by the shell tests after `set -euo pipefail`: kiln (the binary: the test's first
# argument), here (the test's folder), root (the source tree), py (Debian's python3, which
# has torch and numpy) and work (a fresh directory, removed when the test exits).
kiln=${1:?usage: $(basename "$0") KILN_BINARY ...}
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
py=/usr/bin/python3
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
