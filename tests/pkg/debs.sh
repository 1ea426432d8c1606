#!/usr/bin/env bash
# tests/pkg/debs.sh: the Debian packages, end to end, as root.
#
# 1. packaging/build-debs.sh builds vgpu-bake and vgpu-firstboot .debs
#    (release binaries, the committed man pages, completions and unit);
#    twice, and the two builds must be byte-identical (reproducible).
# 2. lintian (Debian's) finds nothing at any level, overrides aside (each
#    override in packaging/debian/*.lintian-overrides says why).
# 3. Both are installed into a debootstrapped Debian 12 root (the VM tests'
#    cached tree, through an overlay so the cache stays clean) with
#    `apt install ./x.deb`, offline. There: `--version` of both; the demo
#    profile the package ships is baked with the packaged agent, the bundle
#    inspected, and its agent must be the packaged file byte for byte; a
#    copy of vgpu-bake in another folder with the agent next to it bakes
#    too; the unit passes `systemd-analyze verify`; man pages and
#    completions are where Debian's tools look; `apt remove` leaves none of
#    the packages' files.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/../.." && pwd)
WORK=${VGPU_PKG_WORK:-$REPO/target/pkg-test}
T0=$SECONDS
SERIALS=()
# The debootstrapped trees live outside $WORK (which this test removes), in
# the cache the VM tests share (.ci/run sets the same).
export VGPU_VM_BASES=${VGPU_VM_BASES:-/var/cache/vgpu-bake/vm-bases}
# shellcheck source=../vm/lib.sh
. "$REPO/tests/vm/lib.sh"

[ "$(id -u)" = 0 ] || fail "run as root: it mounts an overlay and chroots"
command -v debootstrap >/dev/null || apt-get install -y -qq --no-install-recommends debootstrap
command -v lintian >/dev/null || apt-get install -y -qq --no-install-recommends lintian
for tool in dpkg-shlibdeps objcopy zstd cpio; do
    command -v "$tool" >/dev/null \
        || apt-get install -y -qq --no-install-recommends dpkg-dev binutils zstd cpio
done

rm -rf "$WORK"
mkdir -p "$WORK"

say "building the packages (packaging/build-debs.sh)"
bash "$REPO/packaging/build-debs.sh" --out "$WORK/debs"
bash "$REPO/packaging/build-debs.sh" --no-build --out "$WORK/debs-again" >/dev/null
for deb in "$WORK"/debs/*.deb; do
    cmp "$deb" "$WORK/debs-again/$(basename "$deb")" \
        || fail "$(basename "$deb") differs between two builds of the same tree: not reproducible"
done
bake_deb=$(ls "$WORK"/debs/vgpu-bake_*.deb)
agent_deb=$(ls "$WORK"/debs/vgpu-firstboot_*.deb)

say "lintian"
# lintian says root is not recommended; it is what CI has.
if ! lintian --fail-on error,warning,info,pedantic -I -E --pedantic \
    "$bake_deb" "$agent_deb" >"$WORK/lintian.txt" 2>&1; then
    cat "$WORK/lintian.txt" >&2
    fail "lintian has findings (above): fix them, or override one in packaging/debian/*.lintian-overrides with the reason"
fi
grep -v 'root privileges' "$WORK/lintian.txt" || true

say "a Debian 12 root"
debootstrap_base
root=$WORK/root
mkdir -p "$root" "$WORK/upper" "$WORK/overlay-work"
mount -t overlay overlay -o "lowerdir=$BASE,upperdir=$WORK/upper,workdir=$WORK/overlay-work" "$root"
mounted=("$root")
cleanup() {
    local m
    for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
mount -t proc proc "$root/proc" && mounted+=("$root/proc")
mount --bind /dev "$root/dev" && mounted+=("$root/dev")
mount -t devpts devpts "$root/dev/pts" -o newinstance && mounted+=("$root/dev/pts")
in_root() { chroot "$root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LC_ALL=C.UTF-8 "$@"; }

say "apt install ./vgpu-bake.deb ./vgpu-firstboot.deb (offline)"
cp "$bake_deb" "$agent_deb" "$root/tmp/"
in_root sh -c "cd /tmp && apt install -y ./$(basename "$bake_deb") ./$(basename "$agent_deb")" \
    >"$WORK/apt-install.log" 2>&1 \
    || { cat "$WORK/apt-install.log" >&2; fail "apt install of the packages failed (log above)"; }

version=$(sed -n 's/^version = "\(.*\)"$/\1/p' "$REPO/Cargo.toml" | head -1)
got=$(in_root vgpu-bake --version)
[ "$got" = "vgpu-bake $version" ] || fail "vgpu-bake --version printed '$got', not 'vgpu-bake $version'"
got=$(in_root vgpu-firstboot --version)
[ "$got" = "vgpu-firstboot $version" ] || fail "vgpu-firstboot --version printed '$got'"
say "both report version $version"

say "bake the packaged demo profile with the packaged agent"
in_root vgpu-bake bake /usr/share/vgpu-bake/profiles/demo.toml --out /tmp/out --cache /tmp/cache \
    >"$WORK/bake.log" 2>&1 || { cat "$WORK/bake.log" >&2; fail "the bake in the root failed (log above)"; }
in_root vgpu-bake inspect /tmp/out/demo.cpio.zst >"$WORK/inspect.log" 2>&1 \
    || { cat "$WORK/inspect.log" >&2; fail "inspect of the baked demo failed"; }
(cd "$root/tmp/out" && sha256sum -c --quiet demo.cpio.zst.sha256) || fail "the bundle's .sha256 does not match"
mkdir -p "$WORK/bundle"
(cd "$WORK/bundle" && zstd -dc "$root/tmp/out/demo.cpio.zst" | cpio -idm --quiet usr/local/sbin/vgpu-firstboot)
cmp "$WORK/bundle/usr/local/sbin/vgpu-firstboot" "$root/usr/lib/vgpu-bake/vgpu-firstboot" \
    || fail "the bundle's agent is not /usr/lib/vgpu-bake/vgpu-firstboot"
say "the bundle carries /usr/lib/vgpu-bake/vgpu-firstboot"

say "a copy of vgpu-bake elsewhere finds the agent next to itself"
mkdir -p "$root/opt/tools"
cp "$root/usr/bin/vgpu-bake" "$root/usr/sbin/vgpu-firstboot" "$root/opt/tools/"
in_root /opt/tools/vgpu-bake bake /usr/share/vgpu-bake/profiles/demo.toml --out /tmp/out2 --cache /tmp/cache \
    >"$WORK/bake2.log" 2>&1 || { cat "$WORK/bake2.log" >&2; fail "the copied vgpu-bake could not bake"; }

say "the unit, man pages and completions in Debian's places"
in_root systemd-analyze verify --man=no /usr/lib/systemd/system/vgpu-firstboot.service \
    >"$WORK/verify.log" 2>&1 || { cat "$WORK/verify.log" >&2; fail "systemd-analyze verify failed on the packaged unit"; }
grep -qx 'ExecStart=/usr/sbin/vgpu-firstboot run' "$root/usr/lib/systemd/system/vgpu-firstboot.service" \
    || fail "the packaged unit does not start /usr/sbin/vgpu-firstboot"
[ ! -e "$root/etc/systemd/system/multi-user.target.wants/vgpu-firstboot.service" ] \
    || fail "installing the package enabled the unit; only a bundle's plan may"
for f in /usr/share/man/man1/vgpu-bake.1.gz /usr/share/man/man8/vgpu-firstboot.8.gz \
    /usr/share/bash-completion/completions/vgpu-bake /usr/share/bash-completion/completions/vgpu-firstboot \
    /usr/share/zsh/vendor-completions/_vgpu-bake /usr/share/fish/vendor_completions.d/vgpu-firstboot.fish; do
    [ -s "$root$f" ] || fail "$f is missing from the installed root"
done
zcat "$root/usr/share/man/man8/vgpu-firstboot.8.gz" | grep -q '^\.TH' || fail "vgpu-firstboot.8.gz is not a man page"

say "apt remove leaves none of the packages' files"
in_root dpkg -L vgpu-bake vgpu-firstboot | grep -E '^/usr/(bin|sbin|lib/vgpu-bake)/' >"$WORK/files" || true
in_root apt-get remove -y vgpu-bake vgpu-firstboot >"$WORK/apt-remove.log" 2>&1 \
    || { cat "$WORK/apt-remove.log" >&2; fail "apt remove failed"; }
while read -r f; do
    [ ! -e "$root$f" ] || fail "$f is still there after apt remove"
done <"$WORK/files"
[ -s "$WORK/files" ] || fail "dpkg -L listed no binaries"

cleanup
trap - EXIT
rm -rf "$WORK"
say "PASS: packages build reproducibly, lintian is clean, they install, bake and remove"
