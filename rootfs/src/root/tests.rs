use super::*;
use std::fs;
use std::os::unix::fs::symlink;

/// A root with sysfs-style relative links and links that try to leave it,
/// next to an `outside` directory with a file in it.
struct Fixture {
    _dir: tempfile::TempDir,
    root: PathBuf,
    outside: PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    let outside = dir.path().join("outside");
    fs::create_dir_all(&outside).unwrap();
    fs::write(outside.join("secret"), "outside\n").unwrap();
    let dev = root.join("sys/devices/pci/0000:01:00.0");
    fs::create_dir_all(&dev).unwrap();
    fs::create_dir_all(root.join("sys/bus/pci/devices")).unwrap();
    fs::create_dir_all(root.join("etc")).unwrap();
    fs::write(dev.join("vendor"), "0x10de\n").unwrap();
    fs::write(root.join("etc/hostname"), "inside\n").unwrap();
    symlink(
        "../../../devices/pci/0000:01:00.0",
        root.join("sys/bus/pci/devices/0000:01:00.0"),
    )
    .unwrap();
    // Absolute and climbing links, both aimed at `outside`.
    symlink(&outside, root.join("etc/abs")).unwrap();
    symlink("../../outside", root.join("etc/up")).unwrap();
    symlink(outside.join("secret"), root.join("etc/secret")).unwrap();
    symlink("/etc/hostname", root.join("etc/name")).unwrap();
    symlink("loop2", root.join("etc/loop1")).unwrap();
    symlink("loop1", root.join("etc/loop2")).unwrap();
    Fixture {
        _dir: dir,
        root,
        outside,
    }
}

fn snapshot(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        let content = fs::read(&p).unwrap_or_default();
        out.push((p, content));
    }
    out.sort();
    out
}

#[test]
fn relative_links_resolve_inside_the_root() {
    let f = fixture();
    let root = Root::at(&f.root).unwrap();
    let rel = "sys/bus/pci/devices/0000:01:00.0/vendor";
    assert_eq!(
        root.read_to_string(rel).unwrap().as_deref(),
        Some("0x10de\n")
    );
    assert_eq!(
        root.read_to_string(&format!("/{rel}")).unwrap().as_deref(),
        Some("0x10de\n"),
        "a leading / is the root"
    );
    assert!(
        root.metadata("sys/bus/pci/devices/0000:01:00.0")
            .unwrap()
            .unwrap()
            .is_dir()
    );
    assert!(
        root.symlink_metadata("sys/bus/pci/devices/0000:01:00.0")
            .unwrap()
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(root.read("sys/nothing").unwrap(), None);
    assert_eq!(
        root.read("etc/hostname/below").unwrap(),
        None,
        "ENOTDIR is absent"
    );
    assert!(
        root.metadata("").unwrap().unwrap().is_dir(),
        "empty is the root"
    );
}

#[test]
fn absolute_links_and_dotdot_stay_in_the_root() {
    let f = fixture();
    let root = Root::at(&f.root).unwrap();
    // `/etc/hostname` means the root's etc/hostname, as in a chroot.
    assert_eq!(
        root.read_to_string("etc/name").unwrap().as_deref(),
        Some("inside\n")
    );
    // The outside file is never reached: its path does not exist in the root.
    assert_eq!(root.read("etc/secret").unwrap(), None);
    assert_eq!(root.read("etc/abs/secret").unwrap(), None);
    assert_eq!(root.read("etc/up/secret").unwrap(), None);
    assert_eq!(root.read("../outside/secret").unwrap(), None);
    assert_eq!(
        root.read_to_string("../../../etc/hostname")
            .unwrap()
            .as_deref(),
        Some("inside\n"),
        "`..` stops at the root"
    );
    let e = root.read("etc/loop1").unwrap_err();
    assert_eq!(e.source.raw_os_error(), Some(40), "ELOOP: {e}");
    assert_eq!(e.path, f.root.join("etc/loop1"));
    // Links are read as written.
    assert_eq!(root.read_link("etc/abs").unwrap(), Some(f.outside.clone()));
    assert_eq!(root.read_link("etc/hostname").unwrap(), None);
    assert_eq!(root.read_link("etc/missing").unwrap(), None);
}

#[test]
fn writes_through_escaping_links_stay_in_the_root() {
    let f = fixture();
    let before = snapshot(&f.outside);
    let root = Root::at(&f.root).unwrap();
    // Into a directory reached through an absolute link: lands under the
    // root at the link's target path.
    root.write_atomic("etc/abs/new.conf", b"x", 0o644)
        .unwrap_err();
    let inner = f.outside.strip_prefix("/").unwrap();
    fs::create_dir_all(f.root.join(inner)).unwrap();
    root.write_atomic("etc/abs/new.conf", b"x", 0o644).unwrap();
    assert_eq!(fs::read(f.root.join(inner).join("new.conf")).unwrap(), b"x");
    // Through a `..` link: clamped at the root, so `root/outside`; missing,
    // it is not made through the link.
    let e = root
        .write_atomic("etc/up/new.conf", b"y", 0o600)
        .unwrap_err();
    assert!(e.to_string().contains("remove the link"), "{e}");
    fs::create_dir(f.root.join("outside")).unwrap();
    root.write_atomic("etc/up/new.conf", b"y", 0o600).unwrap();
    assert_eq!(fs::read(f.root.join("outside/new.conf")).unwrap(), b"y");
    // Over a link to an outside file: the link is replaced.
    root.write_atomic("etc/secret", b"z", 0o644).unwrap();
    assert!(
        !fs::symlink_metadata(f.root.join("etc/secret"))
            .unwrap()
            .is_symlink()
    );
    // Renames, removals, modes, directories.
    root.rename("etc/name", "etc/up/renamed").unwrap();
    assert!(
        fs::symlink_metadata(f.root.join("outside/renamed"))
            .unwrap()
            .is_symlink()
    );
    assert!(root.remove_file("etc/abs").unwrap());
    assert!(!root.remove_file("etc/abs").unwrap());
    root.create_dir_all("etc/up/a/b", 0o755).unwrap();
    assert!(f.root.join("outside/a/b").is_dir());
    root.set_mode("etc/up/new.conf", 0o640).unwrap();
    let lock = root.open_or_create("etc/up/lock", 0o644).unwrap();
    drop(lock);
    assert!(f.root.join("outside/lock").is_file());
    assert_eq!(
        snapshot(&f.outside),
        before,
        "the outside directory changed"
    );
}

#[test]
fn remove_all_never_follows_links() {
    let f = fixture();
    let before = snapshot(&f.outside);
    let root = Root::at(&f.root).unwrap();
    fs::create_dir_all(f.root.join("payload/sub")).unwrap();
    fs::write(f.root.join("payload/sub/file"), "x").unwrap();
    symlink(&f.outside, f.root.join("payload/out")).unwrap();
    symlink(f.outside.join("secret"), f.root.join("payload/sub/secret")).unwrap();
    assert!(root.remove_all("payload").unwrap());
    assert!(!f.root.join("payload").exists());
    assert!(!root.remove_all("payload").unwrap());
    // A link to an outside directory is removed as a link.
    assert!(root.remove_all("etc/abs").unwrap());
    assert_eq!(snapshot(&f.outside), before);
    assert!(
        root.remove_file("etc").is_err(),
        "remove_file does not remove directories"
    );
}

#[test]
fn read_dir_lists_names() {
    let f = fixture();
    let root = Root::at(&f.root).unwrap();
    let mut names = root.read_dir("etc").unwrap().unwrap();
    names.sort();
    assert_eq!(
        names,
        ["abs", "hostname", "loop1", "loop2", "name", "secret", "up"]
    );
    assert_eq!(root.read_dir("nothing").unwrap(), None);
    assert_eq!(root.read_dir("etc/hostname").unwrap(), None);
    // Through an absolute link: the root's view, not the host's.
    assert_eq!(root.read_dir("etc/abs").unwrap(), None);
}

#[test]
fn plain_names_only_for_changes() {
    let f = fixture();
    let root = Root::at(&f.root).unwrap();
    for bad in ["", "/", "etc/..", "etc/."] {
        let e = root.write_atomic(bad, b"x", 0o644).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{bad:?}: {e}");
    }
    assert!(root.remove_file("..").is_err());
}

#[test]
fn atomic_write_replaces_sets_mode_and_leaves_no_temp() {
    let f = fixture();
    let root = Root::at(&f.root).unwrap();
    root.write_atomic("/a/b/c.conf", b"one", 0o644).unwrap();
    root.write_atomic("a/b/c.conf", b"two", 0o600).unwrap();
    let p = f.root.join("a/b/c.conf");
    assert_eq!(fs::read_to_string(&p).unwrap(), "two");
    assert_eq!(
        fs::metadata(&p).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    // A dropped writer leaves nothing.
    let mut w = root.atomic_file("a/b/d.conf", None).unwrap();
    std::io::Write::write_all(&mut w, b"partial").unwrap();
    assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 2);
    drop(w);
    assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
}

#[test]
fn errors_name_the_host_path() {
    let f = fixture();
    let root = Root::at(&f.root).unwrap();
    let e = root
        .write_atomic("etc/hostname/x", b"x", 0o644)
        .unwrap_err();
    assert!(
        e.to_string()
            .contains(&f.root.join("etc/hostname").display().to_string()),
        "{e}"
    );
    let e = Root::at(&f.root.join("nothing")).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "opening the root directory {}: No such file or directory (os error 2)",
            f.root.join("nothing").display()
        )
    );
}

/// Runs `f` on another thread; fails the test if it takes over 10 s (a read
/// that blocks on a FIFO would otherwise hang the test run).
fn within_10s<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(std::time::Duration::from_secs(10))
        .expect("the read blocked for 10 s")
}

#[test]
fn reads_refuse_fifos_and_devices_at_once() {
    let f = fixture();
    let fifo = f.root.join("etc/fifo");
    rustix::fs::mknodat(
        rustix::fs::CWD,
        &fifo,
        FileType::Fifo,
        Mode::from_raw_mode(0o644),
        0,
    )
    .unwrap();
    // /dev/zero, inside the root: never ends.
    fs::create_dir_all(f.root.join("dev")).unwrap();
    let zero = rustix::fs::mknodat(
        rustix::fs::CWD,
        f.root.join("dev/zero"),
        FileType::CharacterDevice,
        Mode::from_raw_mode(0o644),
        rustix::fs::makedev(1, 5),
    );
    symlink("/dev/zero", f.root.join("etc/zero")).unwrap();
    let base = f.root.clone();
    let results = within_10s(move || {
        let root = Root::at(&base).unwrap();
        ["etc/fifo", "etc/zero", "etc"].map(|rel| (rel, root.read(rel).map(|_| ())))
    });
    for (rel, r) in results {
        if rel == "etc/zero" && zero.is_err() {
            continue; // no CAP_MKNOD here: the FIFO case still ran
        }
        let e = r.expect_err(rel);
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{rel}: {e}");
        assert!(e.to_string().contains("not a regular file"), "{e}");
        assert!(
            e.to_string()
                .contains(&f.root.join(rel).display().to_string()),
            "{e}"
        );
    }
}

#[test]
fn reads_stop_at_the_limit() {
    let f = fixture();
    fs::write(f.root.join("etc/big"), vec![b'x'; 4097]).unwrap();
    let root = Root::at(&f.root).unwrap();
    let e = root.read_bounded("etc/big", 4096).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::FileTooLarge, "{e}");
    assert!(e.to_string().contains("larger than the 4096 bytes"), "{e}");
    assert_eq!(
        root.read_bounded("etc/big", 4097).unwrap().unwrap().len(),
        4097
    );
    assert_eq!(root.read_bounded("etc/missing", 1).unwrap(), None);
    // Exactly the limit is allowed.
    assert_eq!(
        root.read_bounded("etc/hostname", 7).unwrap().unwrap(),
        b"inside\n"
    );
}
