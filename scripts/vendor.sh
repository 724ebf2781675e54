#!/usr/bin/env bash
# Re-creates vendor/<crate> from the crates.io source of Pingora and the patches in
# vendor/patches/<crate>/NNNN-*.patch (applied in order, no fuzz). See vendor/README.md.
#
#   bash scripts/vendor.sh           rewrite vendor/<crate> (README.md and patches/ stay)
#   bash scripts/vendor.sh --check   rebuild in a temp dir and compare with vendor/;
#                                    exit 1 with a diff summary if they differ
#   bash scripts/vendor.sh --edit vendor/patches/<crate>/NNNN-name.patch
#                                    a git work tree to change that patch in, and the
#                                    command that writes it back
#
# The .crate files come from cargo's cache ($CARGO_HOME/registry/cache); when one is
# missing, cargo downloads it (`cargo fetch` in a scratch project). Each .crate is checked
# against the SHA-256 below (the checksum crates.io publishes, as in a Cargo.lock).
# vendor/<crate> is the .crate's content minus EXCLUDE, plus the patches.
#
# Upgrading Pingora: set VERSION and the SHA256 values (from the scratch project's
# Cargo.lock, printed when they do not match), run the script, fix what does not apply.
set -euo pipefail
export LC_ALL=C

VERSION=0.9.1
CRATES=(pingora-core pingora-http pingora-proxy pingora-timeout)
declare -A SHA256=(
    [pingora-core]=a535f47f65fdcb003f9e1df04cd18e614c128dfe9388acce3f211ae38ac14d68
    [pingora-http]=3f38e9e519d53fab09eb320f7be2cd27ef9e66f755eba3bd84cc68852108d841
    [pingora-proxy]=8e3d5670490740405ecc8c6f75c3fcbce4d24f7adaffb355ca44550e7918e358
    [pingora-timeout]=d58d029af71f7694815494c681f1bb93aa06d83b6fa6a6b42e7154ee0e8e43e4
)
# Packaging metadata in the .crate (or left by cargo's extraction), not kept in vendor/.
EXCLUDE=(.cargo_vcs_info.json .cargo-ok)
# What else vendor/ may hold besides the crates.
VENDOR_EXTRA=(README.md patches)

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
vendor=$root/vendor
cargo_home=${CARGO_HOME:-$HOME/.cargo}

die() {
    echo "vendor.sh: $*" >&2
    exit 2
}

mode=write
case "${1:-}" in
    "") ;;
    --check) mode=check ;;
    --edit)
        mode=edit
        [ -f "${2:-}" ] || die "--edit needs an existing vendor/patches/<crate>/NNNN-*.patch"
        edit_patch=$(cd "$(dirname "$2")" && pwd)/$(basename "$2")
        edit_crate=$(basename "$(dirname "$edit_patch")")
        [ "$(dirname "$(dirname "$edit_patch")")" = "$vendor/patches" ] && [ -n "${SHA256[$edit_crate]:-}" ] ||
            die "$2: not a patch of vendor/patches/<crate>/"
        ;;
    -h | --help)
        sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'
        exit 0
        ;;
    *)
        echo "usage: bash scripts/vendor.sh [--check | --edit PATCH]" >&2
        exit 2
        ;;
esac

tmp=$(mktemp -d "${TMPDIR:-/tmp}/tollgate-vendor.XXXXXX")
keep_tmp=0
cleanup() { if [ "$keep_tmp" = 0 ]; then rm -rf "$tmp"; fi; }
trap cleanup EXIT

# The cached .crate of $1 whose SHA-256 matches, if any.
cached_crate() {
    local f
    for f in "$cargo_home"/registry/cache/*/"$1-$VERSION.crate"; do
        [ -f "$f" ] || continue
        if [ "$(sha256sum "$f" | cut -d' ' -f1)" = "${SHA256[$1]}" ]; then
            echo "$f"
            return 0
        fi
    done
    return 1
}

# Has cargo download the crates: a scratch project depending on them, resolved next to
# tollgate's own Cargo.lock so that their dependencies come from the cache too.
fetch_crates() {
    local p=$tmp/fetch c
    mkdir -p "$p"
    {
        printf '[package]\nname = "tollgate-vendor-fetch"\nversion = "0.0.0"\n'
        printf 'edition = "2021"\npublish = false\n\n[lib]\npath = "lib.rs"\n\n[dependencies]\n'
        for c in "${CRATES[@]}"; do
            printf '%s = { version = "=%s", default-features = false }\n' "$c" "$VERSION"
        done
    } >"$p/Cargo.toml"
    : >"$p/lib.rs"
    if [ -f "$root/Cargo.lock" ]; then cp "$root/Cargo.lock" "$p/Cargo.lock"; fi
    echo "vendor.sh: fetching Pingora $VERSION from crates.io (cargo fetch)" >&2
    (cd "$p" && cargo fetch --quiet) || die "cargo fetch failed"
    for c in "${CRATES[@]}"; do
        if ! cached_crate "$c" >/dev/null; then
            echo "vendor.sh: $c $VERSION: no cached .crate with SHA-256 ${SHA256[$c]}" >&2
            grep -A3 "^name = \"$c\"$" "$p/Cargo.lock" | grep -E '^(version|checksum)' >&2 || true
            die "$c: cargo's checksum is above; after a VERSION bump, put it in SHA256"
        fi
    done
}

# Unpacks $1's .crate into $2/$1 (minus EXCLUDE).
unpack_crate() {
    local c=$1 out=$2 crate f
    crate=$(cached_crate "$c") || die "$c: not in cargo's cache"
    rm -rf "$tmp/unpack"
    mkdir -p "$tmp/unpack" "$out"
    tar -xzf "$crate" -C "$tmp/unpack"
    [ -d "$tmp/unpack/$c-$VERSION" ] || die "$crate: no $c-$VERSION/ inside"
    mv "$tmp/unpack/$c-$VERSION" "$out/$c"
    for f in "${EXCLUDE[@]}"; do rm -f "$out/$c/$f"; done
}

# Unpacks $1 into $2/$1 and applies its patches; see work_tree when one does not apply.
build_crate() {
    local c=$1 out=$2 p
    unpack_crate "$c" "$out"
    for p in "$vendor/patches/$c"/*.patch; do
        [ -f "$p" ] || continue
        apply_patch "$out/$c" "$p" && continue
        work_tree "$c" "$p" reject
        exit 2
    done
}

# A git work tree, kept, to refresh patch $2 of crate $1 in: $1 with the patches before
# $2 applied and committed, and $2 applied as far as it goes (*.rej files when $3 is
# "reject"); prints how to write the patch back from it.
work_tree() {
    local c=$1 p=$2 why=$3 w=$tmp/work q rel
    keep_tmp=1
    unpack_crate "$c" "$w"
    for q in "$vendor/patches/$c"/*.patch; do
        [ "$q" = "$p" ] && break
        apply_patch "$w/$c" "$q" || die "${q#"$root"/} does not apply to $c $VERSION"
    done
    git -C "$w/$c" init -q
    git -C "$w/$c" add -A
    git -C "$w/$c" -c user.name=vendor.sh -c user.email=vendor.sh@localhost \
        -c commit.gpgsign=false commit -qm "$c $VERSION + the patches before ${p##*/}"
    rel=${p#"$root"/}
    if [ "$why" = reject ]; then
        apply_patch "$w/$c" "$p" 2>/dev/null || true
        cat >&2 <<EOF2

vendor.sh: $c: $rel does not apply to $c $VERSION (above).
To refresh it: apply what is in the *.rej files by hand in
  $w/$c
(a git work tree: $c $VERSION with the patches before this one committed, this one
applied as far as it goes), delete the *.rej and *.orig files, then, from the
repository's root:
EOF2
    else
        apply_patch "$w/$c" "$p" || die "$rel does not apply to $c $VERSION"
        cat >&2 <<EOF2
vendor.sh: edit $rel in
  $w/$c
(a git work tree: $c $VERSION with the patches before this one committed, this one
applied; \`git -C ... diff\` shows it), then, from the repository's root:
EOF2
    fi
    cat >&2 <<EOF2
  git -C $w/$c add -N . && { sed '/^diff --git/,\$d' $rel; git -C $w/$c diff --no-color \\
    --no-ext-diff --src-prefix=a/ --dst-prefix=b/; } >$rel.new && mv $rel.new $rel
and run scripts/vendor.sh again (a later patch of $c may then need the same).
EOF2
}

# Applies patch $2 in directory $1, strictly (no fuzz): GNU patch, else git apply. Quiet
# unless it fails.
apply_patch() {
    local log=$tmp/apply.log
    if command -v patch >/dev/null; then
        (cd "$1" && patch -p1 -F0 -N --batch --no-backup-if-mismatch <"$2") >"$log" 2>&1
    else
        # Outside any repository, whatever TMPDIR is.
        (cd "$1" && GIT_CEILING_DIRECTORIES=$(dirname "$1") git apply -p1 --reject "$2") >"$log" 2>&1
    fi || {
        cat "$log" >&2
        return 1
    }
}

need=0
for c in "${CRATES[@]}"; do cached_crate "$c" >/dev/null || need=1; done
if [ "$need" = 1 ]; then fetch_crates; fi

if [ "$mode" = edit ]; then
    work_tree "$edit_crate" "$edit_patch" edit
    exit 0
fi

out=$tmp/expected
mkdir -p "$out"
for c in "${CRATES[@]}"; do build_crate "$c" "$out"; done

if [ "$mode" = write ]; then
    for c in "${CRATES[@]}"; do
        rm -rf "${vendor:?}/$c"
        cp -R "$out/$c" "$vendor/$c"
    done
    echo "vendor.sh: vendor/{$(
        IFS=,
        echo "${CRATES[*]}"
    )} = Pingora $VERSION from crates.io + vendor/patches"
    exit 0
fi

# --check
status=0
report=$tmp/report
: >"$report"
for c in "${CRATES[@]}"; do
    if [ ! -d "$vendor/$c" ]; then
        echo "missing: vendor/$c" >>"$report"
        status=1
        continue
    fi
    if ! diff -rq "$out/$c" "$vendor/$c" >"$tmp/q" 2>&1; then
        status=1
        sed -e "s#$out/#expected/#g" -e "s#$vendor/#vendor/#g" "$tmp/q" >>"$report"
        # Content changes only (missing and extra files are listed above); no timestamps.
        (cd "$tmp" && diff -ru "expected/$c" "$vendor/$c" || true) |
            grep -v '^Only in ' |
            sed -E -e "s#$vendor/#vendor/#g" -e 's/^((---|\+\+\+) [^\t]*)\t.*/\1/' \
                >>"$tmp/diff" || true
    fi
    # diff -r ignores modes: compare the executable bits too.
    if ! diff <(cd "$out/$c" && find . -type f -perm -u+x | sort) \
        <(cd "$vendor/$c" && find . -type f -perm -u+x | sort) >/dev/null; then
        echo "executable bits differ under vendor/$c" >>"$report"
        status=1
    fi
done
# Nothing else in vendor/ (a crate vendored by hand, a stray file).
known=" ${CRATES[*]} ${VENDOR_EXTRA[*]} "
for e in "$vendor"/* "$vendor"/.[!.]*; do
    [ -e "$e" ] || continue
    case "$known" in
        *" ${e##*/} "*) ;;
        *)
            echo "unexpected: vendor/${e##*/} (not made by scripts/vendor.sh)" >>"$report"
            status=1
            ;;
    esac
done

if [ "$status" = 0 ]; then
    echo "vendor.sh --check: vendor/ = Pingora $VERSION from crates.io + vendor/patches"
    exit 0
fi
{
    echo "vendor.sh --check: vendor/ differs from Pingora $VERSION + vendor/patches:"
    sed 's/^/  /' "$report"
    if [ -s "$tmp/diff" ]; then
        lines=$(wc -l <"$tmp/diff")
        echo
        echo "diff (expected = crates.io + patches; vendor = committed):"
        head -n 200 "$tmp/diff"
        if [ "$lines" -gt 200 ]; then echo "... (first 200 of $lines lines)"; fi
    fi
    echo
    echo "Fix: put the change into a patch in vendor/patches/<crate>/ (see vendor/README.md),"
    echo "then run 'bash scripts/vendor.sh' to rewrite vendor/ from crates.io + patches."
} >&2
exit 1
