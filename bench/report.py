#!/usr/bin/env python3
"""bench/run.sh's table: medians from hyperfine's JSON, ratios against the
targets of issue 14, and the BENCHMARKS.md text (printed, and written to
the summary file run.sh names).

usage: report.py RAW_DIR REPO COMMAND NOTE SUMMARY.md
"""

import json
import os
import platform
import subprocess
import sys

raw, repo, command, note, summary = sys.argv[1:6]


def medians(name):
    with open(os.path.join(raw, name + ".json")) as f:
        return {r["command"]: r["median"] for r in json.load(f)["results"]}


def sh(*args):
    try:
        return subprocess.run(args, capture_output=True, text=True, cwd=repo).stdout.strip()
    except OSError:
        return "?"


def cpu_rows(name):
    with open(os.path.join(raw, name + ".json")) as f:
        return [
            f"| {r['command']} | {r['median']:.3f} | {r['user']:.3f} | {r['system']:.3f} "
            f"| {(r['user'] + r['system']) / r['mean']:.2f} |"
            for r in json.load(f)["results"]
        ]


ctx = json.load(open(os.path.join(raw, "context.json")))
m = {}
for name in ("bake", "fleet", "install", "status"):
    m.update(medians(name))


def secs(v):
    return f"{v:.3f} s" if v >= 0.1 else f"{v * 1000:.1f} ms"


def row(measure, value, relation="", target="", met=""):
    return [measure, value, relation, target, met]


def ratio(a, b, label, le=None, ge=None):
    r = m[a] / m[b]
    if le is not None:
        return [f"{label} = {r:.2f}x", f"<= {le}x", "yes" if r <= le else "no"]
    if ge is not None:
        return [f"{label} = {r:.2f}x", f">= {ge}x", "yes" if r >= ge else "no"]
    return [f"{label} = {r:.2f}x", "", ""]


main = f"{ctx['main_mib']} MiB"
fleet = f"{ctx['fleet_mib']} MiB"
budget = 1048576
rows = [
    row(f"`vgpu-bake bake`, cold ({main}; empty cache, `--driver-file`)", secs(m["bake cold"]),
        *ratio("bake cold", "zstd floor", "cold / floor", le=1.25)),
    row("the admin's pipeline (`md5sum`, `sha256sum`, `cpio -o -H newc | zstd -T0 -3`)",
        secs(m["shell pipeline"]), *ratio("shell pipeline", "bake cold", "pipeline / cold", ge=1.5)),
    row("`zstd -T0 -3 -c F > file` (the floor)", secs(m["zstd floor"]), "", "", ""),
    row("the floor, then `sync file` (its bytes on the disk, as the bake's fsync puts the bundle's)",
        secs(m["zstd floor fsync"]), *ratio("bake cold", "zstd floor fsync", "cold / floor+fsync")),
    row("`vgpu-bake bake`, driver already in the cache (`fetch` before), no bundle",
        secs(m["bake driver-cached"]), *ratio("bake driver-cached", "zstd floor", "cached / floor")),
    row("`vgpu-bake bake`, warm re-bake (same cache, nothing changed)", secs(m["bake warm"]),
        *ratio("bake warm", "bake cold", "warm / cold", le=0.25)),
    row(f"fleet: {ctx['fleet_n']} profiles, 3 drivers of {fleet}, cold", secs(m["fleet cold"]),
        *ratio("fleet cold", "fleet one cold", "fleet / one bake", le=4)),
    row(f"one fleet profile ({fleet} driver), cold", secs(m["fleet one cold"]), "", "", ""),
    row(f"`vgpu-bake install` of the {main} bundle into an empty root", secs(m["install"]),
        *ratio("install", "install pipeline", "install / pipeline", le=1.0)),
    row("`zstd -dc B | cpio -idm`", secs(m["install pipeline"]), "", "", ""),
    row("agent release binary (`target/release/vgpu-firstboot`)", f"{ctx['agent_size']} bytes",
        f"size / budget = {ctx['agent_size'] / budget:.4f}", "<= 1048576 bytes",
        "yes" if ctx["agent_size"] <= budget else "no"),
    row("`vgpu-firstboot status` on a done host", secs(m["status"]), "", "", ""),
    row("`vgpu-firstboot run`, phase 1 (demo plan): max RSS", f"{ctx['rss1_kib']} KiB", "", "", ""),
    row("`vgpu-firstboot run`, phase 2 (demo plan): max RSS", f"{ctx['rss2_kib']} KiB", "", "", ""),
    row("once done: the unit's `.wants` link gone, the done marker there", ctx["unit_gone"],
        "systemd starts nothing", "yes", ctx["unit_gone"]),
]

head = ["measure", "median", "relation", "target", "met"]
table = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
# A `|` inside a cell would end it, even in code: escaped.
table += ["| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in rows]
table = "\n".join(table)
print(table)
cpu_table = "\n".join(
    ["| hyperfine name | median wall s | mean user s | mean system s | CPUs busy (user+system / mean wall) |",
     "|---|---|---|---|---|"]
    + [line for name in ("bake", "fleet", "install", "status") for line in cpu_rows(name)]
)

cpu = "?"
with open("/proc/cpuinfo") as f:
    for line in f:
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
versions = "; ".join(
    (sh(*c).splitlines() or ["?"])[0].strip("* ")
    for c in (["hyperfine", "--version"], ["zstd", "--version"], ["cpio", "--version"])
)
fleet_cache = "\n".join(
    f"  - `{line.rsplit(' ', 1)[0]}`: {line.rsplit(' ', 1)[1]} bytes"
    for line in open(os.path.join(raw, "fleet-cache.txt")).read().split("\n")
    if line.strip()
)

text = f"""# Benchmarks

Issue 14's measures, side by side in one run of `{command}` (hyperfine,
{ctx['runs']} runs each after {ctx['warmup']} warm-up, medians; `status`: more runs).
Raw results: hyperfine's JSON under the out dir's `raw/` (default
`target/bench/raw/`). Regenerate this file with `bash bench/run.sh --write-md`.

{note}

## Machine

- date: {ctx['date']}
- CPU: {cpu}, nproc {os.cpu_count()}
- kernel: {platform.release()}
- load average at the end of the run: {ctx['loadavg']} (the benchmark's own work counts in it; say in the note what else ran)
- code: commit {ctx['commit']}
- tools: {versions}

## Results

{table}

Figures that miss their target are kept as measured. Sizes: the bundle
{ctx['bundle_bytes']} bytes, the pipeline's archive {ctx['pipeline_bytes']}, `zstd -3` of the
driver alone {ctx['floor_bytes']}; the driver-like file's sha256 `{ctx['main_sha256']}`.

## Where the time goes

CPU time as hyperfine measured it (the process and its children). On
{os.cpu_count()} cores, a command that keeps every core busy would show {os.cpu_count()}.00.

{cpu_table}

## What was measured

- **Inputs.** The driver-like file: a makeself-like shell header (as NVIDIA's
  `.run` files start; a native bake checks that the driver is a regular file
  with the profile's sha256 pin and reads nothing else of it), then
  pseudo-random bytes (`openssl enc -aes-128-ctr` of zeros, from a fixed
  seed) up to 400/512 of the size, then this machine's
  `/usr/lib/x86_64-linux-gnu/*.so*` concatenated in name order, cut to
  exactly {main} in all. Its profile (`proxmox = 9`, native, release
  `20.1`, which the registry has no md5 for) pins it by sha256. The
  fleet: {ctx['fleet_n']} profiles, each pinning one of 3 such files of {fleet}
  (releases 20.1, 20.0, 19.5: three cache entries).
- **Cold bake**: the cache directory removed before each run (`--prepare`),
  the driver imported with `--driver-file` (hashed and copied into the cache)
  and baked. **Driver cached**: the cache removed, then the driver imported
  with `vgpu-bake fetch` in `--prepare`, so only the bake is timed.
  **Warm**: the same cache and profile as the run before, nothing changed.
- **Shell pipeline**: `md5sum F; sha256sum F; (cd staged && find . | cpio -o
  -H newc | zstd -T0 -3 > out)`, the staged tree holding the driver (a hard
  link) and the agent binary. **Floor**: `zstd -T0 -3 -c F` written to a
  file, as the bake writes its bundle; **floor + fsync** the same followed
  by `sync FILE` (coreutils: an fsync of that file), since the bake fsyncs
  its bundle (and a cold bake its imported driver) before renaming it.
- **Fleet**, bakes as {ctx['fleet_form']}. Cold: an empty cache into which
  only the 3 drivers were imported (`fetch`, in `--prepare`), no bundles.
  Compared with one profile of the fleet baked the same way. It wrote
  {ctx['fleet_bundles']} bundles; the cache then held:
{fleet_cache}
- **Install**: the cold bake's bundle into a fresh empty directory, against
  `zstd -dc B | cpio -idm` there.
- **Agent**: `tests/hosts/pve8-grub` copied, the demo bundle laid on it with
  `vgpu-bake install`, and in it what the agent's commands need once it has
  chrooted, as `firstboot/tests/agent/harness.rs` lays it (dash as
  `/bin/sh`, GNU `sha256sum`, a static busybox, stand-ins that log their
  calls and succeed). `vgpu-firstboot --root R run` runs phase 1 under
  `/usr/bin/time -v` (max RSS: the largest of the agent and the commands it
  waited for); the reboot is simulated (a new boot id, the trial entry's
  kernel line on `/proc/cmdline`, nouveau gone); phase 2 runs the same way
  and ends done. `status` is timed on that done host.
"""
with open(summary, "w") as f:
    f.write(text)
