//! Path lookup confined to a root directory.
//!
//! The kernel would follow symlinks against the real `/`; we follow them
//! ourselves, one component at a time, against the root we were given. Only
//! relative targets are followed (sysfs uses `../../../devices/...`); an
//! absolute target or a `..` that climbs above the root is refused rather
//! than reinterpreted, so a tree can never make the agent read the build
//! machine's own `/etc`. Every path handed to the OS is built from
//! components already checked not to be symlinks, so the OS never follows a
//! link on our behalf.

use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::path::{Component, Path, PathBuf};

use super::FactsError;

/// Symlinks followed in one lookup before giving up, as Linux's `ELOOP`.
const MAX_SYMLINKS: u32 = 40;

/// A root directory all lookups stay under.
#[derive(Debug)]
pub(crate) struct RootDir {
    base: PathBuf,
}

/// Result of [`RootDir::lookup`].
#[derive(Debug)]
pub(crate) enum Lookup {
    /// The path exists: its location on disk (no symlink in it) and metadata.
    Found(PathBuf, Metadata),
    /// Some component does not exist.
    Missing,
    /// A symlink on the way leaves the root; the message says which.
    Refused(String),
}

/// Result of [`RootDir::link_target`].
#[derive(Debug)]
pub(crate) enum Link {
    /// Root-relative path the link points to (it need not exist).
    Target(String),
    /// The path is missing or not a symlink.
    Absent,
    /// The link leaves the root.
    Refused(String),
}

/// One step of a path still to walk.
#[derive(Debug)]
enum Part {
    Up,
    Name(OsString),
}

/// Outcome of a walk: the physical components below the root.
enum Walk {
    Found(Vec<OsString>, Option<Metadata>),
    Missing,
    Refused(String),
}

impl RootDir {
    pub(crate) fn new(base: &Path) -> Self {
        RootDir {
            base: base.to_path_buf(),
        }
    }

    fn on_disk(&self, stack: &[OsString]) -> PathBuf {
        let mut p = self.base.clone();
        p.extend(stack);
        p
    }

    /// Resolves `rel` (relative to the root), following relative symlinks,
    /// the last component included.
    pub(crate) fn lookup(&self, rel: &str) -> Result<Lookup, FactsError> {
        let Some(mut pending) = parts(Path::new(rel)) else {
            return Ok(Lookup::Refused(format!("{rel}: absolute path")));
        };
        pending.reverse();
        Ok(match self.walk(Vec::new(), pending, false)? {
            Walk::Found(stack, meta) => {
                let path = self.on_disk(&stack);
                let meta = match meta {
                    Some(m) => m,
                    // Empty path: the root itself.
                    None => fs::metadata(&path).map_err(|e| read_error(&path, e))?,
                };
                Lookup::Found(path, meta)
            }
            Walk::Missing => Lookup::Missing,
            Walk::Refused(why) => Lookup::Refused(why),
        })
    }

    /// Where the symlink `rel` points, as a root-relative path, without
    /// requiring the target to exist (sysfs `driver`/`iommu_group` links are
    /// read for their basename).
    pub(crate) fn link_target(&self, rel: &str) -> Result<Link, FactsError> {
        let path = Path::new(rel);
        let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
            return Ok(Link::Absent);
        };
        let Some(mut pending) = parts(parent) else {
            return Ok(Link::Refused(format!("{rel}: absolute path")));
        };
        pending.reverse();
        let stack = match self.walk(Vec::new(), pending, false)? {
            Walk::Found(stack, _) => stack,
            Walk::Missing => return Ok(Link::Absent),
            Walk::Refused(why) => return Ok(Link::Refused(why)),
        };
        let link = self.on_disk(&stack).join(name);
        match fs::symlink_metadata(&link) {
            Ok(m) if m.file_type().is_symlink() => {}
            Ok(_) => return Ok(Link::Absent),
            Err(e) if absent(&e) => return Ok(Link::Absent),
            Err(e) => return Err(read_error(&link, e)),
        }
        let target = fs::read_link(&link).map_err(|e| read_error(&link, e))?;
        let Some(mut pending) = parts(&target) else {
            return Ok(Link::Refused(refusal(&stack, name, &target, "absolute")));
        };
        pending.reverse();
        Ok(match self.walk(stack, pending, true)? {
            Walk::Found(stack, _) => Link::Target(join(&stack)),
            Walk::Missing => Link::Absent,
            Walk::Refused(why) => Link::Refused(why),
        })
    }

    /// Walks `pending` (a stack: next part last) from the physical
    /// directory `stack`. With `lenient`, a missing component ends the
    /// physical walk and the rest is applied lexically.
    fn walk(
        &self,
        mut stack: Vec<OsString>,
        mut pending: Vec<Part>,
        lenient: bool,
    ) -> Result<Walk, FactsError> {
        let mut links = 0;
        let mut meta = None;
        let mut physical = true;
        while let Some(part) = pending.pop() {
            let name = match part {
                Part::Up => {
                    if stack.pop().is_none() {
                        return Ok(Walk::Refused("a `..` climbs above the root".into()));
                    }
                    meta = None;
                    continue;
                }
                Part::Name(name) => name,
            };
            if !physical {
                stack.push(name);
                continue;
            }
            let candidate = self.on_disk(&stack).join(&name);
            match fs::symlink_metadata(&candidate) {
                Ok(m) if m.file_type().is_symlink() => {
                    let target =
                        fs::read_link(&candidate).map_err(|e| read_error(&candidate, e))?;
                    links += 1;
                    if links > MAX_SYMLINKS {
                        let why = "too many levels of symbolic links, the last";
                        return Ok(Walk::Refused(refusal(&stack, &name, &target, why)));
                    }
                    let Some(more) = parts(&target) else {
                        return Ok(Walk::Refused(refusal(&stack, &name, &target, "absolute")));
                    };
                    // The target's parts come before the rest of the path.
                    pending.extend(more.into_iter().rev());
                    meta = None;
                }
                Ok(m) => {
                    stack.push(name);
                    meta = Some(m);
                }
                Err(e) if absent(&e) => {
                    if !lenient {
                        return Ok(Walk::Missing);
                    }
                    physical = false;
                    stack.push(name);
                }
                Err(e) => return Err(read_error(&candidate, e)),
            }
        }
        Ok(Walk::Found(stack, meta))
    }
}

/// Splits a relative path into parts; `None` if it is absolute.
fn parts(path: &Path) -> Option<Vec<Part>> {
    let mut out = Vec::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(Part::Name(n.to_os_string())),
            Component::ParentDir => out.push(Part::Up),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

fn join(stack: &[OsString]) -> String {
    stack
        .iter()
        .map(|s| s.to_string_lossy())
        .collect::<Vec<_>>()
        .join("/")
}

fn refusal(stack: &[OsString], name: &std::ffi::OsStr, target: &Path, why: &str) -> String {
    let mut link = join(stack);
    if !link.is_empty() {
        link.push('/');
    }
    link.push_str(&name.to_string_lossy());
    format!("{link} -> {}: {why} symlink not followed", target.display())
}

/// The error kinds that mean "not there" rather than "cannot read".
pub(crate) fn absent(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::NotFound | io::ErrorKind::NotADirectory
    )
}

pub(crate) fn read_error(path: &Path, source: io::Error) -> FactsError {
    FactsError::Read {
        path: path.to_path_buf(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn tree() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        fs::create_dir_all(r.join("sys/devices/pci/0000:01:00.0")).unwrap();
        fs::create_dir_all(r.join("sys/bus/pci/devices")).unwrap();
        fs::create_dir_all(r.join("sys/bus/pci/drivers/nvidia")).unwrap();
        fs::write(r.join("sys/devices/pci/0000:01:00.0/vendor"), "0x10de\n").unwrap();
        let dev = r.join("sys/devices/pci/0000:01:00.0");
        symlink(
            "../../../devices/pci/0000:01:00.0",
            r.join("sys/bus/pci/devices/0000:01:00.0"),
        )
        .unwrap();
        symlink("../../../bus/pci/drivers/nvidia", dev.join("driver")).unwrap();
        symlink("../../../kernel/iommu_groups/7", dev.join("iommu_group")).unwrap();
        symlink("/etc", dev.join("abs")).unwrap();
        symlink("../../../../../../..", dev.join("up")).unwrap();
        symlink("loop2", dev.join("loop1")).unwrap();
        symlink("loop1", dev.join("loop2")).unwrap();
        dir
    }

    #[test]
    fn relative_links_are_followed_inside_the_root() {
        let dir = tree();
        let root = RootDir::new(dir.path());
        match root
            .lookup("sys/bus/pci/devices/0000:01:00.0/vendor")
            .unwrap()
        {
            Lookup::Found(p, m) => {
                assert_eq!(p, dir.path().join("sys/devices/pci/0000:01:00.0/vendor"));
                assert!(m.is_file());
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            root.lookup("sys/nothing").unwrap(),
            Lookup::Missing
        ));
        assert!(matches!(root.lookup("").unwrap(), Lookup::Found(..)));
    }

    #[test]
    fn link_targets_need_not_exist() {
        let dir = tree();
        let root = RootDir::new(dir.path());
        let dev = "sys/bus/pci/devices/0000:01:00.0";
        let target = |name: &str| root.link_target(&format!("{dev}/{name}")).unwrap();
        assert!(matches!(target("driver"), Link::Target(t) if t == "sys/bus/pci/drivers/nvidia"));
        assert!(
            matches!(target("iommu_group"), Link::Target(t) if t == "sys/kernel/iommu_groups/7")
        );
        assert!(matches!(target("vendor"), Link::Absent));
        assert!(matches!(target("missing"), Link::Absent));
    }

    #[test]
    fn escaping_links_are_refused() {
        let dir = tree();
        let root = RootDir::new(dir.path());
        let dev = "sys/devices/pci/0000:01:00.0";
        match root.link_target(&format!("{dev}/abs")).unwrap() {
            Link::Refused(why) => assert_eq!(
                why,
                format!("{dev}/abs -> /etc: absolute symlink not followed")
            ),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            root.link_target(&format!("{dev}/up")).unwrap(),
            Link::Refused(_)
        ));
        assert!(matches!(
            root.lookup(&format!("{dev}/abs/passwd")).unwrap(),
            Lookup::Refused(_)
        ));
        assert!(matches!(
            root.lookup(&format!("{dev}/up/etc")).unwrap(),
            Lookup::Refused(_)
        ));
        assert!(matches!(root.lookup("../etc").unwrap(), Lookup::Refused(_)));
        assert!(matches!(root.lookup("/etc").unwrap(), Lookup::Refused(_)));
        match root.lookup(&format!("{dev}/loop1")).unwrap() {
            Lookup::Refused(why) => assert_eq!(
                why,
                format!(
                    "{dev}/loop1 -> loop2: too many levels of symbolic links, the last symlink not followed"
                )
            ),
            other => panic!("{other:?}"),
        }
    }
}
