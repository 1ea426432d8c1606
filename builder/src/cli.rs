//! The command line of `vgpu-bake`: its clap definitions, in the library so
//! the man page and the shell completions are generated from them.
//!
//! Exit codes: 0 success, 1 a user error (bad profile, failed verification,
//! ...), 2 a usage error (clap's, and the contradictory flags the commands
//! check themselves). Results go to stdout, progress and diagnostics to
//! stderr; `-q`/`-v` and the colour rule are in [`crate::term`].

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::resolve::DriverOverrides;

/// Bakes a vGPU provisioning profile and verified NVIDIA driver files into a
/// reproducible overlay bundle for Proxmox VE hosts.
///
/// Exit codes: 0 success, 1 a user error (bad profile, failed
/// verification, ...), 2 a usage error.
#[derive(Debug, Parser)]
#[command(version, help_expected = true, max_term_width = 100)]
pub struct Cli {
    /// Print only errors and warnings (and the JSON document with --json).
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Print more on stderr: the bundle writer's phase timings, cache hits
    /// and misses, how each payload file was vouched for.
    #[arg(short, long, global = true)]
    pub verbose: bool,
    #[command(subcommand)]
    pub command: Cmd,
}

impl Cli {
    /// `-q` / `-v`.
    pub fn verbosity(&self) -> crate::term::Verbosity {
        use crate::term::Verbosity;
        match (self.quiet, self.verbose) {
            (true, _) => Verbosity::Quiet,
            (_, true) => Verbosity::Verbose,
            _ => Verbosity::Normal,
        }
    }
}

/// Options shared by the commands that read a profile.
#[derive(Debug, clap::Args)]
pub struct DbArgs {
    /// Use this gpu_info.db (upstream format) instead of the built-in one.
    #[arg(long, value_name = "FILE")]
    pub gpu_db: Option<PathBuf>,
}

/// Where drivers come from.
#[derive(Debug, clap::Args)]
pub struct SourceArgs {
    /// Driver cache directory [default: ~/.cache/vgpu-bake/drivers].
    #[arg(long, value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Use this driver file (downloaded by you) instead of downloading.
    #[arg(long, value_name = "FILE")]
    pub driver_file: Option<PathBuf>,
    /// Expected SHA-256 of the driver (needed when the registry has no md5).
    #[arg(long, value_name = "HEX")]
    sha256: Option<String>,
    /// Expected MD5 of the driver (for releases the registry has none for).
    #[arg(long, value_name = "HEX")]
    md5: Option<String>,
    /// Download from this URL instead of the registry's.
    #[arg(long, value_name = "URL")]
    pub url: Option<String>,
}

/// Where the first-boot hook finds its bundles, and the keys it trusts
/// (`vgpu-bake hook` and `vgpu-bake fleet`). Tried in the order paths,
/// labels, URLs.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct HookSourceArgs {
    /// A directory on the installed host holding the bundle (or the
    /// fleet directory's contents). Repeatable.
    #[arg(long, value_name = "DIR")]
    pub from_path: Vec<String>,
    /// A filesystem label (1-16 of [A-Za-z0-9._-]), e.g. the USB stick
    /// `vgpu-bake usb --label` made: found as /dev/disk/by-label/LABEL and
    /// mounted read-only. Repeatable.
    #[arg(long, value_name = "LABEL")]
    pub from_label: Vec<String>,
    /// A base URL (http:// or https://) the bundle's file name is appended
    /// to, e.g. a static web server serving the fleet directory. Repeatable.
    #[arg(long, value_name = "URL")]
    pub from_url: Vec<String>,
    /// SHA-256 fingerprint of the https server's certificate
    /// (`openssl x509 -noout -fingerprint -sha256 -in CERT.pem`); applies to
    /// every https --from-url.
    #[arg(long, value_name = "FP")]
    pub cert_fingerprint: Option<String>,
    /// A minisign public key (.pub): the bundle must be signed by one of
    /// these, and the hook installs them in /etc/vgpu-firstboot/trusted-keys/.
    /// Repeatable.
    #[arg(long, value_name = "KEY.pub")]
    pub trusted_key: Vec<PathBuf>,
    /// The vgpu-hook template [default: ../hook/vgpu-hook from this
    /// vgpu-bake, vgpu-hook next to it, or ../release/vgpu-hook from it].
    #[arg(long, value_name = "FILE")]
    pub hook_template: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Check profiles: schema, releases, GPUs, licensing.
    Validate {
        /// Profile files.
        #[arg(required = true)]
        profiles: Vec<PathBuf>,
        /// Print one JSON document on stdout (docs/JSON.md), also on failure.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Check profiles against facts captured on target hosts (`vgpu-firstboot
    /// facts --json > FILE` on each) with the agent's host gate: the Debian
    /// release of the Proxmox VE major, a Proxmox VE host, every `[[gpu]]`
    /// present (by id, and by address when given), each card's class
    /// against the mode, vGPU possible. Prints every reason per (profile,
    /// facts) pair; exit code 1 if any pair fails.
    Check {
        /// Profile files.
        #[arg(required = true)]
        profiles: Vec<PathBuf>,
        /// Facts files (`vgpu-firstboot facts --json` output), one or more.
        #[arg(long = "facts", value_name = "FACTS.json", required = true, num_args = 1..)]
        facts: Vec<PathBuf>,
        /// Print one JSON document (docs/JSON.md) instead of the text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Print the resolved plan: every choice concrete, steps in order.
    Plan {
        /// Profile file.
        profile: PathBuf,
        /// Print JSON instead of TOML.
        #[arg(long)]
        json: bool,
        /// Driver cache to read the verified driver's sha256 from.
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Download (or import) the profile's driver into the cache and verify it.
    Fetch {
        /// Profile file.
        profile: PathBuf,
        /// Print one JSON document on stdout (docs/JSON.md), also on failure.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Bake each profile into OUT/<name>.cpio.zst (+ .sha256).
    ///
    /// With several profiles, all are loaded first (any error: each failing
    /// profile is reported and nothing is baked; two profiles making the
    /// same bundle name are refused), each distinct driver is prepared
    /// once, and every bundle is then written on its own: a bundle that
    /// fails does not stop the others, the bundles written stay, and the
    /// exit code is 1 naming the profiles that failed. Stdout lists each
    /// bundle written (name, size, sha256, path).
    Bake {
        /// Profile files.
        #[arg(required = true)]
        profiles: Vec<PathBuf>,
        /// Output directory.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Print one JSON document on stdout (docs/JSON.md), also on failure.
        #[arg(long)]
        json: bool,
        /// Agent binary to bake [default: the release vgpu-firstboot built
        /// next to this vgpu-bake].
        #[arg(long, value_name = "FILE")]
        agent: Option<PathBuf>,
        /// Sign the manifest with this minisign secret key (`keygen`, or
        /// `minisign -G -W`; an encrypted key reads its password from
        /// VGPU_BAKE_KEY_PASSWORD): the bundle then carries
        /// var/lib/vgpu-firstboot/manifest.toml.minisig.
        #[arg(long, value_name = "KEY")]
        sign_key: Option<PathBuf>,
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List a bundle's entries and verify every file against its manifest,
    /// and report its signature.
    Inspect {
        /// Bundle file (.cpio.zst).
        bundle: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        /// Require a signature by this minisign public key (repeatable: any
        /// one of them); an unsigned or wrongly signed bundle is refused.
        #[arg(long, value_name = "KEY.pub")]
        trusted_key: Vec<PathBuf>,
    },
    /// Lay a bundle onto a root directory (e.g. a mounted new host).
    Install {
        /// Bundle file (.cpio.zst).
        bundle: PathBuf,
        /// Target root directory.
        #[arg(long, value_name = "DIR")]
        root: PathBuf,
        /// Print one JSON document on stdout (docs/JSON.md), also on failure.
        #[arg(long)]
        json: bool,
        /// Require a signature by this minisign public key (repeatable: any
        /// one of them); an unsigned or wrongly signed bundle writes nothing.
        #[arg(long, value_name = "KEY.pub")]
        trusted_key: Vec<PathBuf>,
    },
    /// Make the first-boot hook for the Proxmox automated installer
    /// (`proxmox-auto-install-assistant prepare-iso --on-first-boot HOOK`):
    /// one executable of at most 1 MiB that, at the installed host's first
    /// boot, finds its bundle (paths, then labels, then URLs), verifies its
    /// sha256 (and signature, with --trusted-key) before writing anything,
    /// lays it as `install` does, installs the trusted keys and starts
    /// vgpu-firstboot.service.
    Hook {
        /// The bundle (.cpio.zst) every host takes; checked now.
        #[arg(
            long,
            value_name = "FILE",
            required_unless_present = "index",
            conflicts_with = "index"
        )]
        bundle: Option<PathBuf>,
        /// A fleet index (`vgpu-bake fleet`'s DIR/index.toml): each host
        /// takes its bundle by MAC, serial or UUID; every bundle is checked
        /// now, relative to the index's directory.
        #[arg(long, value_name = "FILE")]
        index: Option<PathBuf>,
        #[command(flatten)]
        hook: HookSourceArgs,
        /// The hook to write (mode 0755).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Print one JSON document (docs/JSON.md) instead of the text.
        #[arg(long)]
        json: bool,
    },
    /// Make an unencrypted minisign key pair for signing bundles:
    /// PREFIX.key (secret, mode 0600) and PREFIX.pub.
    Keygen {
        /// Path prefix of the two files, e.g. keys/fleet.
        prefix: PathBuf,
        /// Replace existing key files.
        #[arg(long)]
        force: bool,
        /// Print one JSON document (docs/JSON.md) instead of the text.
        #[arg(long)]
        json: bool,
    },
    // --- rollout: fleet, answer, usb ---
    /// Bake a fleet: each distinct profile of INVENTORY.toml once into
    /// DIR/bundles/<sha256>.cpio.zst (+ .sha256), DIR/index.toml (which host
    /// takes which bundle) and DIR/first-boot-hook (the installer's
    /// first-boot executable, carrying the index). Any static web server can
    /// serve DIR.
    Fleet {
        /// Inventory file: `default = "PROFILE"` and [[host]] entries with
        /// mac, serial or uuid and a profile (paths relative to it).
        inventory: PathBuf,
        /// The fleet directory (made atomically; an earlier fleet directory
        /// there is replaced).
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        #[command(flatten)]
        hook: HookSourceArgs,
        /// Sign every bundle's manifest with this minisign secret key.
        #[arg(long, value_name = "KEY")]
        sign_key: Option<PathBuf>,
        /// Driver cache directory [default: ~/.cache/vgpu-bake/drivers].
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
        /// Agent binary to bake [default: the release vgpu-firstboot built
        /// next to this vgpu-bake].
        #[arg(long, value_name = "FILE")]
        agent: Option<PathBuf>,
        /// Print one JSON document (docs/JSON.md) instead of the text.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Print what the Proxmox automated installer's answer file needs for
    /// this profile: the [first-boot] section and the kernel arguments for
    /// the installer's boot line (which spare the agent its reboot).
    Answer {
        /// Profile file.
        profile: PathBuf,
        /// The hook is fetched from this URL (`source = "from-url"`) instead
        /// of being on the ISO (`prepare-iso --on-first-boot`).
        #[arg(long, value_name = "URL")]
        hook_url: Option<String>,
        /// SHA-256 fingerprint of the --hook-url server's certificate.
        #[arg(long, value_name = "FP", requires = "hook_url")]
        cert_fingerprint: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Write an ext4 filesystem image (no partition table; made with
    /// `mkfs.ext4 -d`, no loop device) holding a bundle (and its .sha256) or
    /// a fleet directory, labelled for `--from-label`. Write it to a stick
    /// with `dd`.
    Usb {
        /// A bundle (.cpio.zst) or a fleet directory (with index.toml).
        input: PathBuf,
        /// The image file.
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
        /// Filesystem label: 1-16 of [A-Za-z0-9._-].
        #[arg(long, value_name = "LABEL")]
        label: String,
        /// Replace an existing --out.
        #[arg(long)]
        force: bool,
        /// Print one JSON document (docs/JSON.md) instead of the text.
        #[arg(long)]
        json: bool,
    },
    // --- end rollout ---
    /// List the guest (VM) drivers of the bash installer's catalog: release,
    /// OS, version, file name, URL (or "no link published"), remarks. With
    /// --fetch, download one (--release and --os) into the driver cache as
    /// `fetch` does (cache, resume, retries); the catalog has no checksums,
    /// so it is recorded with the sha256 it had, printed.
    GuestDrivers {
        /// Only this vGPU release, e.g. 18.4.
        #[arg(long, value_name = "R")]
        release: Option<String>,
        /// Only this guest OS: linux or windows.
        #[arg(long, value_name = "OS")]
        os: Option<String>,
        /// Print JSON (with --fetch: the file fetched, docs/JSON.md).
        #[arg(long)]
        json: bool,
        /// Download the driver of --release for --os into the cache.
        #[arg(long)]
        fetch: bool,
        /// Driver cache directory [default: ~/.cache/vgpu-bake/drivers].
        #[arg(long, value_name = "DIR", requires = "fetch")]
        cache: Option<PathBuf>,
        /// Expected SHA-256 of the driver (printed by an earlier --fetch).
        #[arg(long, value_name = "HEX", requires = "fetch")]
        sha256: Option<String>,
    },
    /// Query the GPU compatibility database (with NVIDIA-sourced corrections).
    Gpus {
        /// PCI ids such as 10de:1eb8; none: a summary of the database.
        ids: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Check this build machine: the tools the commands run (GNU patch for
    /// unlock bakes, e2fsprogs for `usb`), the driver cache and its frame
    /// cache (sidecars, sizes, leftover partial and temporary files), and,
    /// for the profiles given, the free space their bakes need. One line
    /// per finding: ok, warn or fail, with what to do. Exit code 1 if any
    /// check fails (a warning does not).
    Doctor {
        /// Profiles whose bakes to check for (tools they need, free space).
        profiles: Vec<PathBuf>,
        /// Driver cache directory [default: ~/.cache/vgpu-bake/drivers].
        #[arg(long, value_name = "DIR")]
        cache: Option<PathBuf>,
        /// Where the bundles will be written (for the free space check).
        #[arg(long, value_name = "DIR", default_value = ".")]
        out: PathBuf,
        /// Hash every cached driver again and compare it with its sidecar,
        /// and check every frame cache entry's CRC (reads everything).
        #[arg(long)]
        deep: bool,
        /// Print one JSON document (`schema`, `failed`, `findings`).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
}

impl SourceArgs {
    /// The driver choices, and the cache directory.
    pub fn split(self) -> (DriverOverrides, Option<PathBuf>) {
        let overrides = DriverOverrides {
            driver_file: self.driver_file,
            url: self.url,
            md5: self.md5,
            sha256: self.sha256,
        };
        (overrides, self.cache)
    }
}

impl HookSourceArgs {
    /// The flags as `vgpu-bake hook` reads them.
    pub fn flags(&self) -> crate::rollout::make::SourceFlags {
        crate::rollout::make::SourceFlags {
            paths: self.from_path.clone(),
            labels: self.from_label.clone(),
            urls: self.from_url.clone(),
            cert_fingerprint: self.cert_fingerprint.clone(),
        }
    }
}
