#!/usr/bin/env bash
# packaging/build-debs.sh [--out DIR] [--no-build]
#
# Builds the two Debian packages from this workspace with dpkg-deb (no
# debian/rules, no cargo-deb): vgpu-bake_VERSION_ARCH.deb and
# vgpu-firstboot_VERSION_ARCH.deb in DIR (default target/debian).
#
# - vgpu-bake: /usr/bin/vgpu-bake; the agent it bakes into bundles and the
#   first-boot hook template in /usr/lib/vgpu-bake/ (where vgpu-bake looks
#   first, see builder/src/companion.rs); man page (section 1); bash, zsh
#   and fish completions; the demo profile in /usr/share/vgpu-bake/profiles/.
# - vgpu-firstboot: /usr/sbin/vgpu-firstboot; its systemd unit (not
#   enabled: a bundle's plan is what makes it run); man page (section 8);
#   completions.
#
# The man pages, completions and the packaged unit are the generated,
# committed files under dist/ (`cargo run -p gen-docs` refreshes them; a
# test fails when they are stale). Reproducible: file times and the
# archive's are SOURCE_DATE_EPOCH (default: the last commit's time).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$repo/target/debian
build=1
while [ $# -gt 0 ]; do
    case $1 in
        --out) out=$(realpath -m "$2"); shift 2 ;;
        --no-build) build=0; shift ;;
        -h|--help) sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
        *) echo "build-debs.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
cd "$repo"

die() { echo "build-debs.sh: $*" >&2; exit 1; }
for tool in dpkg-deb dpkg-shlibdeps gzip objcopy; do
    command -v "$tool" >/dev/null || die "$tool not found: install dpkg-dev and binutils (apt-get install dpkg-dev binutils)"
done

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -1)
[ -n "$version" ] || die "no version in Cargo.toml's [workspace.package]"
changelog_version=$(sed -n '1s/^vgpu-bake (\([^)]*\)).*/\1/p' packaging/debian/changelog)
[ "$changelog_version" = "$version" ] \
    || die "packaging/debian/changelog's top entry is $changelog_version, Cargo.toml says $version: add a changelog entry for $version"
arch=$(dpkg --print-architecture)
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-$(git log -1 --format=%ct 2>/dev/null || echo 0)}

if [ "$build" = 1 ]; then
    cargo build --release --quiet -p vgpu-bake -p vgpu-firstboot
    cargo build --profile hook --quiet -p vgpu-hook
fi
for f in target/release/vgpu-bake target/release/vgpu-firstboot target/hook/vgpu-hook \
    dist/man/vgpu-bake.1 dist/man/vgpu-firstboot.8 dist/systemd/vgpu-firstboot.service \
    dist/completions/bash/vgpu-bake dist/completions/zsh/_vgpu-bake dist/completions/fish/vgpu-bake.fish \
    dist/completions/bash/vgpu-firstboot dist/completions/zsh/_vgpu-firstboot \
    dist/completions/fish/vgpu-firstboot.fish; do
    [ -f "$f" ] || die "$f is missing: build with cargo (or drop --no-build), or run \`cargo run -p gen-docs\` for dist/"
done

stage=$(mktemp -d "${TMPDIR:-/tmp}/vgpu-debs.XXXXXX")
trap 'rm -rf "$stage"' EXIT

# put SRC DEST MODE: a file into the package tree.
put() { install -D -m "$3" "$1" "$2"; }

# bin SRC DEST: an executable, without the .comment and .note sections cargo's
# strip leaves (lintian: binary-has-unneeded-section; dh_strip does the same).
bin() {
    put "$1" "$2" 0755
    objcopy --remove-section=.comment --remove-section=.note "$2"
}

# The files every package has: copyright, changelog (native package).
docs() {
    local root=$1 name=$2
    put packaging/debian/copyright "$root/usr/share/doc/$name/copyright" 0644
    gzip -9n <packaging/debian/changelog >"$stage/changelog.gz"
    put "$stage/changelog.gz" "$root/usr/share/doc/$name/changelog.gz" 0644
    put "packaging/debian/$name.lintian-overrides" "$root/usr/share/lintian/overrides/$name" 0644
}

# man SRC DEST: a man page, gzipped as Debian wants.
man() {
    gzip -9n <"$1" >"$stage/man.gz"
    put "$stage/man.gz" "$2" 0644
}

# completions ROOT NAME: the three shells' files.
completions() {
    put "dist/completions/bash/$2" "$1/usr/share/bash-completion/completions/$2" 0644
    put "dist/completions/zsh/_$2" "$1/usr/share/zsh/vendor-completions/_$2" 0644
    put "dist/completions/fish/$2.fish" "$1/usr/share/fish/vendor_completions.d/$2.fish" 0644
}

# control ROOT NAME SECTION DESCRIPTION-FILE BINARY...: DEBIAN/control
# (Depends from dpkg-shlibdeps on the binaries) and DEBIAN/md5sums.
control() {
    local root=$1 name=$2 section=$3 desc=$4
    shift 4
    mkdir -p "$stage/shlibs/debian" "$root/DEBIAN"
    printf 'Source: vgpu-bake\n\nPackage: %s\nArchitecture: any\n' "$name" >"$stage/shlibs/debian/control"
    local bins=() b
    for b in "$@"; do bins+=("-e$root/$b"); done
    local depends
    depends=$(cd "$stage/shlibs" && dpkg-shlibdeps -O "${bins[@]}" 2>"$stage/shlibdeps.err" \
        | sed -n 's/^shlibs:Depends=//p') \
        || die "dpkg-shlibdeps failed for $name: $(cat "$stage/shlibdeps.err")"
    [ -n "$depends" ] || die "dpkg-shlibdeps found no dependencies for $name: $(cat "$stage/shlibdeps.err")"
    local size
    size=$(du -sk --exclude=DEBIAN "$root" | cut -f1)
    {
        printf 'Package: %s\nVersion: %s\nArchitecture: %s\n' "$name" "$version" "$arch"
        printf 'Maintainer: The vgpu-bake developers <vgpu-bake@example.org>\n'
        printf 'Installed-Size: %s\nDepends: %s\n' "$size" "$depends"
        printf 'Section: %s\nPriority: optional\n' "$section"
        printf 'Homepage: https://github.com/vgpu-bake/vgpu-bake\n'
        cat "packaging/debian/$desc"
    } >"$root/DEBIAN/control"
    (cd "$root" && find . -path ./DEBIAN -prune -o -type f -printf '%P\n' | LC_ALL=C sort \
        | xargs -d '\n' md5sum) >"$root/DEBIAN/md5sums"
    chmod 0644 "$root/DEBIAN/control" "$root/DEBIAN/md5sums"
}

# build ROOT: the .deb, with every time clamped to SOURCE_DATE_EPOCH.
build() {
    local root=$1 name=$2
    find "$root" -exec touch -h -d "@$SOURCE_DATE_EPOCH" {} +
    mkdir -p "$out"
    local deb="$out/${name}_${version}_${arch}.deb"
    dpkg-deb --root-owner-group -Zxz --build "$root" "$deb" >/dev/null
    echo "$deb"
}

umask 022

# ------------------------------------------------------------ vgpu-bake
r=$stage/vgpu-bake
bin target/release/vgpu-bake "$r/usr/bin/vgpu-bake"
bin target/release/vgpu-firstboot "$r/usr/lib/vgpu-bake/vgpu-firstboot"
bin target/hook/vgpu-hook "$r/usr/lib/vgpu-bake/vgpu-hook"
man dist/man/vgpu-bake.1 "$r/usr/share/man/man1/vgpu-bake.1.gz"
for page in dist/man/vgpu-bake-*.1; do
    [ -e "$page" ] || continue
    man "$page" "$r/usr/share/man/man1/$(basename "$page").gz"
done
completions "$r" vgpu-bake
put profiles/demo.toml "$r/usr/share/vgpu-bake/profiles/demo.toml" 0644
put profiles/demo/hello_2.10-3_amd64.deb "$r/usr/share/vgpu-bake/profiles/demo/hello_2.10-3_amd64.deb" 0644
docs "$r" vgpu-bake
control "$r" vgpu-bake admin vgpu-bake.description usr/bin/vgpu-bake usr/lib/vgpu-bake/vgpu-firstboot
build "$r" vgpu-bake

# ------------------------------------------------------- vgpu-firstboot
r=$stage/vgpu-firstboot
bin target/release/vgpu-firstboot "$r/usr/sbin/vgpu-firstboot"
put dist/systemd/vgpu-firstboot.service "$r/usr/lib/systemd/system/vgpu-firstboot.service" 0644
man dist/man/vgpu-firstboot.8 "$r/usr/share/man/man8/vgpu-firstboot.8.gz"
completions "$r" vgpu-firstboot
docs "$r" vgpu-firstboot
control "$r" vgpu-firstboot admin vgpu-firstboot.description usr/sbin/vgpu-firstboot
build "$r" vgpu-firstboot
