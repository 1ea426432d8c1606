//! `vgpu-bake usb (BUNDLE | DIR) --out usb.img --label LABEL`: an ext4
//! filesystem image (no partition table) for a USB stick the hook finds by
//! its label (`--from-label`, `/dev/disk/by-label/LABEL`).
//!
//! - A BUNDLE is checked first (`inspect`: every entry, and the `.sha256`
//!   beside it when there is one); the image's root holds `NAME.cpio.zst`
//!   and `NAME.cpio.zst.sha256`.
//! - A DIR must hold a valid `index.toml` whose bundles are all present
//!   with their sha256 and size; the image holds the directory's contents
//!   (regular files and directories only).
//!
//! The image is made by `mkfs.ext4 -d STAGING` (e2fsprogs): no loop device,
//! no mount, no root needed. It is reproducible: the same input gives the
//! same bytes. The UUID and directory hash seed come from a hash of the
//! content and label, `E2FSPROGS_FAKE_TIME` fixes the superblock's times,
//! the staging copy's modes and mtimes are fixed, and `debugfs -w` then
//! sets every inode's owner to 0:0 and its other times to the same fixed
//! time (`mkfs -d` copies them from the staging files). No journal: the
//! stick is only read.

use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256 as Hasher};

use super::config::valid_label;

/// Why no image was written; nothing is left under `--out`.
#[derive(Debug, thiserror::Error)]
pub enum UsbError {
    /// The label breaks the rule.
    #[error(
        "--label {0:?} must be 1 to 16 letters, digits, `-`, `_` or `.` (an ext4 label holds 16 bytes, and the hook's --from-label has the same rule)"
    )]
    Label(String),
    /// `--out` exists.
    #[error("{} exists: pass --force to replace it, or choose another --out", .0.display())]
    Exists(PathBuf),
    /// The input bundle is not valid.
    #[error("{}: not a valid bundle: {cause}", path.display())]
    Bundle {
        /// The bundle.
        path: PathBuf,
        /// The cause.
        cause: Box<crate::inspect::InspectError>,
    },
    /// The fleet directory's index or a bundle it lists is not valid.
    #[error(transparent)]
    Index(Box<super::make::MakeError>),
    /// The fleet directory holds something `fleet` does not write.
    #[error("{}: {message}", dir.display())]
    Fleet {
        /// The directory.
        dir: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// A tool failed; its stderr is in the message.
    #[error(
        "`{command}` failed ({status}): {stderr}; check that e2fsprogs (mkfs.ext4, debugfs) is installed: apt-get install e2fsprogs"
    )]
    Tool {
        /// The command line.
        command: String,
        /// Its exit status.
        status: String,
        /// Its stderr.
        stderr: String,
    },
    /// A file system step failed.
    #[error("{what} {}: {cause}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        cause: std::io::Error,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> UsbError {
    let path = path.to_owned();
    move |cause| UsbError::Io { what, path, cause }
}

/// What `usb` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsbReport {
    /// The image.
    pub out: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Its label.
    pub label: String,
    /// What it holds: `bundle NAME` or `fleet directory (N bundles)`.
    pub holds: String,
}

/// A name the image may hold: letters, digits, `.`, `_`, `-`, `+` (what
/// `bake` and `fleet` write; also safe inside a debugfs command).
fn plain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 255
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-+".contains(&b))
}

/// One file or directory of the image, relative to its root.
struct Item {
    rel: String,
    dir: bool,
    exec: bool,
}

/// Writes the image: see the module doc. `mtime` is the time every file
/// gets (`SOURCE_DATE_EPOCH`; 0 becomes 1, since e2fsprogs ignores a fake
/// time of 0).
pub fn usb(
    input: &Path,
    out: &Path,
    label: &str,
    force: bool,
    mtime: u64,
) -> Result<UsbReport, UsbError> {
    if !valid_label(label) {
        return Err(UsbError::Label(label.to_owned()));
    }
    if !force && std::fs::symlink_metadata(out).is_ok() {
        return Err(UsbError::Exists(out.to_owned()));
    }
    let meta = std::fs::metadata(input).map_err(io(
        "cannot read the input (give a bundle NAME.cpio.zst or a fleet directory)",
        input,
    ))?;
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let staging = tempfile::Builder::new()
        .prefix(".vgpu-usb-")
        .tempdir_in(&parent)
        .map_err(io("cannot make a staging directory in", &parent))?;
    let root = staging.path().join("root");
    std::fs::create_dir(&root).map_err(io("cannot create", &root))?;
    let mut items = Vec::new();
    let holds = if meta.is_dir() {
        let n = check_fleet(input)?;
        copy_tree(input, &root, "", &mut items)?;
        format!("fleet directory {} ({n} bundles)", input.display())
    } else {
        let report =
            crate::inspect::inspect_trusted(input, &[]).map_err(|cause| UsbError::Bundle {
                path: input.to_owned(),
                cause: Box::new(cause),
            })?;
        let name = input
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| n.ends_with(".cpio.zst") && plain(n))
            .ok_or_else(|| UsbError::Fleet {
                dir: input.to_owned(),
                message:
                    "a bundle's file name must be NAME.cpio.zst with NAME of letters, digits, `.`, `_`, `-` or `+`, as `vgpu-bake bake` writes it; rename the copy"
                        .into(),
            })?
            .to_owned();
        let dest = root.join(&name);
        std::fs::copy(input, &dest).map_err(io("cannot copy the bundle to", &dest))?;
        let sum = root.join(format!("{name}.sha256"));
        std::fs::write(&sum, format!("{}  {name}\n", report.bundle_sha256))
            .map_err(io("cannot write", &sum))?;
        for rel in [name.clone(), format!("{name}.sha256")] {
            items.push(Item {
                rel,
                dir: false,
                exec: false,
            });
        }
        format!("bundle {name}")
    };
    items.sort_by(|a, b| a.rel.cmp(&b.rel));
    let time = mtime.max(1);
    let (content, ids) = fix_and_hash(&root, &items, label, time)?;

    let image = tempfile::Builder::new()
        .prefix(".vgpu-usb-img-")
        .tempfile_in(&parent)
        .map_err(io("cannot make a temporary image in", &parent))?;
    // Content in 4 KiB blocks, a block per directory, 1/16 for the
    // allocator and metadata, 4 MiB for the superblocks, group
    // descriptors, bitmaps and inode tables; whole MiB.
    let mib = 1024 * 1024;
    let size = (content + content / 16 + 4 * mib).div_ceil(mib) * mib;
    let inodes = (items.len() as u64 + 16).max(64);
    let img = image.path().to_owned();
    let mut mkfs = Command::new("mkfs.ext4");
    mkfs.args(["-q", "-F", "-b", "4096", "-m", "0", "-I", "256"])
        .args(["-N", &inodes.to_string()])
        .args(["-O", "^has_journal", "-L", label, "-U", &ids.0])
        .arg("-E")
        .arg(format!("hash_seed={},root_owner=0:0", ids.1))
        .arg("-d")
        .arg(&root)
        .arg(&img)
        .arg(format!("{}k", size / 1024));
    run(&mut mkfs, time)?;
    // Owners 0:0 and one time for every inode mkfs copied from staging.
    let mut cmds = String::new();
    for path in std::iter::once("/".to_owned()).chain(items.iter().map(|i| format!("/{}", i.rel))) {
        for field in ["uid", "gid"] {
            cmds.push_str(&format!("sif \"{path}\" {field} 0\n"));
        }
        for field in ["atime", "ctime", "mtime", "crtime"] {
            cmds.push_str(&format!("sif \"{path}\" {field} @{time}\n"));
        }
    }
    let cmd_file = staging.path().join("debugfs.cmds");
    std::fs::write(&cmd_file, cmds).map_err(io("cannot write", &cmd_file))?;
    let mut debugfs = Command::new("debugfs");
    debugfs.arg("-w").arg("-f").arg(&cmd_file).arg(&img);
    run(&mut debugfs, time)?;

    image
        .as_file()
        .sync_all()
        .map_err(io("cannot sync", &img))?;
    set_mode(&img, 0o644)?;
    image
        .persist(out)
        .map_err(|e| io("cannot move the image to", out)(e.error))?;
    vgpu_rootfs::atomic::sync_dir(&parent).map_err(|e| UsbError::Io {
        what: "cannot sync",
        path: parent.clone(),
        cause: std::io::Error::other(e.to_string()),
    })?;
    Ok(UsbReport {
        out: out.to_owned(),
        size,
        label: label.to_owned(),
        holds,
    })
}

fn set_mode(path: &Path, mode: u32) -> Result<(), UsbError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
        .map_err(io("cannot set the mode of", path))
}

/// Runs an e2fsprogs tool with the fake time; its stderr (and debugfs'
/// per-command errors, which it prints without failing) become the error.
fn run(cmd: &mut Command, time: u64) -> Result<(), UsbError> {
    cmd.env("E2FSPROGS_FAKE_TIME", time.to_string())
        .env_remove("MKE2FS_CONFIG")
        .env_remove("MKE2FS_SYNC")
        .env("LC_ALL", "C");
    let line = format!(
        "{} {}",
        cmd.get_program().to_string_lossy(),
        cmd.get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ")
    );
    let output = cmd.output().map_err(|e| UsbError::Tool {
        command: line.clone(),
        status: "not started".into(),
        stderr: e.to_string(),
    })?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    // debugfs prints its banner and echoes commands on stderr; a failed
    // command adds a line naming it, and still exits 0.
    let problems: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            !l.starts_with("debugfs ") && !l.starts_with("debugfs:") && !l.trim().is_empty()
        })
        .collect();
    if !output.status.success() || !problems.is_empty() {
        return Err(UsbError::Tool {
            command: line,
            status: output.status.to_string(),
            stderr: problems.join("; "),
        });
    }
    Ok(())
}

/// Checks a fleet directory as `vgpu-bake hook --index` does
/// (`make::fleet_index`): its index, and each bundle's presence, size,
/// sha256 and contents. Returns the number of bundles.
fn check_fleet(dir: &Path) -> Result<usize, UsbError> {
    let index_file = dir.join("index.toml");
    if !index_file.is_file() {
        return Err(UsbError::Fleet {
            dir: dir.to_owned(),
            message: "no index.toml: give a bundle file or a directory `vgpu-bake fleet` made"
                .into(),
        });
    }
    let index =
        super::make::fleet_index(&index_file, &[]).map_err(|e| UsbError::Index(Box::new(e)))?;
    Ok(index.bundles.len())
}

/// Copies `src` (a fleet directory) into `dest`: regular files and
/// directories only, names sorted.
fn copy_tree(src: &Path, dest: &Path, rel: &str, items: &mut Vec<Item>) -> Result<(), UsbError> {
    let mut names: Vec<_> = std::fs::read_dir(src)
        .map_err(io("cannot read", src))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(io("cannot read", src))?;
    names.sort();
    for name in names {
        let s = src.join(&name);
        let d = dest.join(&name);
        let name = name.to_str().filter(|n| plain(n)).ok_or_else(|| UsbError::Fleet {
            dir: s.clone(),
            message: "the name is not letters, digits, `.`, `_`, `-` or `+`: a fleet directory holds only the names `vgpu-bake fleet` writes".into(),
        })?;
        let r = if rel.is_empty() {
            name.to_owned()
        } else {
            format!("{rel}/{name}")
        };
        let meta = std::fs::symlink_metadata(&s).map_err(io("cannot read", &s))?;
        if meta.is_dir() {
            std::fs::create_dir(&d).map_err(io("cannot create", &d))?;
            items.push(Item {
                rel: r.clone(),
                dir: true,
                exec: false,
            });
            copy_tree(&s, &d, &r, items)?;
        } else if meta.is_file() {
            std::fs::copy(&s, &d).map_err(io("cannot copy", &s))?;
            use std::os::unix::fs::PermissionsExt;
            items.push(Item {
                rel: r,
                dir: false,
                exec: meta.permissions().mode() & 0o111 != 0,
            });
        } else {
            return Err(UsbError::Fleet {
                dir: s,
                message: "is neither a regular file nor a directory: a fleet directory holds only what `vgpu-bake fleet` writes".into(),
            });
        }
    }
    Ok(())
}

/// Fixes modes (0755 directories and executables, 0644 files) and mtimes
/// in the staging copy; returns the content size in 4 KiB blocks (bytes)
/// and the (UUID, hash seed) pair derived from the label and content.
fn fix_and_hash(
    root: &Path,
    items: &[Item],
    label: &str,
    time: u64,
) -> Result<(u64, (String, String)), UsbError> {
    let mut h = Hasher::new();
    h.update(b"vgpu-bake usb 1\0");
    h.update(label.as_bytes());
    h.update(b"\0");
    let mut content = 4096; // the root directory
    let ts = rustix::fs::Timespec {
        tv_sec: time as i64,
        tv_nsec: 0,
    };
    let times = rustix::fs::Timestamps {
        last_access: ts,
        last_modification: ts,
    };
    for item in items.iter().rev() {
        let path = root.join(&item.rel);
        let mode = if item.dir || item.exec { 0o755 } else { 0o644 };
        set_mode(&path, mode)?;
        h.update(item.rel.as_bytes());
        h.update(if item.dir { b"\0d\0" } else { b"\0f\0" });
        h.update([u8::from(item.exec)]);
        if item.dir {
            content += 4096;
        } else {
            let file = std::fs::File::open(&path).map_err(io("cannot read", &path))?;
            let d = crate::hash::digest_reader(file).map_err(io("cannot read", &path))?;
            h.update(d.sha256.as_bytes());
            content += d.size.div_ceil(4096) * 4096;
        }
    }
    for item in items.iter().map(|i| i.rel.as_str()).chain([""]) {
        let path = root.join(item);
        rustix::fs::utimensat(
            rustix::fs::CWD,
            &path,
            &times,
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        )
        .map_err(|e| io("cannot set the time of", &path)(e.into()))?;
    }
    let digest = h.finalize();
    Ok((content, (uuid_of(&digest[..16]), uuid_of(&digest[16..32]))))
}

/// A version-4-shaped UUID from 16 bytes.
fn uuid_of(bytes: &[u8]) -> String {
    let mut b = [0u8; 16];
    b.copy_from_slice(bytes);
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex = crate::hash::hex(&b);
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_plain() {
        assert!(plain("demo.cpio.zst.sha256"));
        assert!(plain("first-boot-hook"));
        assert!(!plain("a b.cpio.zst"));
        assert!(!plain("a\"b"));
        assert!(!plain(""));
    }

    #[test]
    fn uuids_are_well_formed() {
        let u = uuid_of(&[0xff; 16]);
        assert_eq!(u, "ffffffff-ffff-4fff-bfff-ffffffffffff");
    }
}
