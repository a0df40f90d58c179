#!/usr/bin/env bash
# Build the harness (native/harness.c, harness_ref.c, harness_gen.c; shared declarations in harness.h) with the
# plain-C core (csum.c, flowtab.c, fastpath.c, offload.c; no Python, not module.c or module_io.c)
# under AddressSanitizer + UndefinedBehaviorSanitizer (+ LeakSanitizer) and run it.  Exits non-zero on any
# sanitizer report, harness mismatch or leak.  Works from any directory; builds in a temporary directory.
#
#   bash native/sanitize.sh [seed [iterations]]       (defaults: 1, 200000)
#
# Environment:
#   CC=...                the compiler to use (default: gcc, else clang, whichever supports the sanitizers)
set -euo pipefail

cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"

seed="${1:-1}"
iterations="${2:-200000}"
harness=(harness.c harness_ref.c harness_gen.c harness_offload.c)
core=(csum.c flowtab.c fastpath.c offload.c)
flags=(-std=c11 -O1 -g -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer -Wall -Wextra)

tmp="$(mktemp -d "${TMPDIR:-/tmp}/pylvs-sanitize.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

# A compiler whose sanitizer build links and runs.
probe() {
    printf 'int main(void) { return 0; }\n' >"$tmp/probe.c"
    "$1" -fsanitize=address,undefined "$tmp/probe.c" -o "$tmp/probe" >/dev/null 2>&1 &&
        ASAN_OPTIONS=detect_leaks=0 "$tmp/probe" >/dev/null 2>&1
}
cc=""
for c in ${CC:-} gcc clang; do
    if command -v "$c" >/dev/null 2>&1 && probe "$c"; then
        cc="$c"
        break
    fi
done
if [[ -z "$cc" ]]; then
    echo "sanitize.sh: no C compiler with -fsanitize=address,undefined support (tried ${CC:-} gcc clang)" >&2
    exit 2
fi

# LeakSanitizer needs to stop the process's threads (ptrace-like); under some sandboxes it cannot.  Prove
# it reports a deliberate leak before relying on it; if it does not work, say so loudly and go on without.
cat >"$tmp/leak.c" <<'EOF'
#include <stdlib.h>
void *volatile sink;
int main(void) { sink = malloc(4242); sink = 0; return 0; }
EOF
lsan=1
"$cc" -g -O0 -fsanitize=address "$tmp/leak.c" -o "$tmp/leak"
if ASAN_OPTIONS=detect_leaks=1 "$tmp/leak" >"$tmp/leak.out" 2>&1; then
    lsan=0
elif ! grep -q "LeakSanitizer: detected memory leaks" "$tmp/leak.out" || ! grep -q "4242 byte" "$tmp/leak.out"; then
    lsan=0
fi
if [[ "$lsan" == 1 ]]; then
    echo "sanitize.sh: LeakSanitizer works here (a deliberate leak was reported)"
else
    echo "sanitize.sh: WARNING: LeakSanitizer does not work in this environment (ptrace restricted?); leaks are NOT checked:" >&2
    sed 's/^/    /' "$tmp/leak.out" | head -5 >&2
fi

echo "sanitize.sh: $cc ${flags[*]} ${harness[*]} ${core[*]}"
"$cc" "${flags[@]}" "${harness[@]}" "${core[@]}" -o "$tmp/harness"

export ASAN_OPTIONS="detect_leaks=$lsan:abort_on_error=1:check_initialization_order=1:strict_string_checks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
start=$SECONDS
set +e
"$tmp/harness" "$seed" "$iterations" >"$tmp/out" 2>&1
rc=$?
set -e
cat "$tmp/out"
if [[ $rc -ne 0 ]]; then
    echo "sanitize.sh: FAILED (exit status $rc) after $((SECONDS - start)) s: seed=$seed iterations=$iterations" >&2
    exit 1
fi
if ! grep -q '^harness ok: ' "$tmp/out"; then
    echo "sanitize.sh: FAILED: the harness exited 0 without its summary line" >&2
    exit 1
fi
echo "sanitize.sh: passed in $((SECONDS - start)) s (LeakSanitizer $([[ $lsan == 1 ]] && echo on || echo OFF))"
