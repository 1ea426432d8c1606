use std::io::{Cursor, Read};

use super::*;

/// A small archive: nested dirs, a 0755 file, an empty file, a symlink.
fn sample(mtime: u64) -> Vec<u8> {
    let mut w = NewcWriter::new(Vec::new(), mtime).unwrap();
    w.append_dir("etc", 0o755).unwrap();
    w.append_file("etc/a.conf", 0o644, b"hello\n").unwrap();
    w.append_file("etc/empty", 0o600, b"").unwrap();
    w.append_symlink("etc/link", "../usr/bin/tool").unwrap();
    w.append_dir("usr", 0o755).unwrap();
    w.append_dir("usr/bin", 0o700).unwrap();
    w.append_file("usr/bin/tool", 0o755, b"#!/bin/sh\n")
        .unwrap();
    assert_eq!(w.entries(), 7);
    w.finish().unwrap()
}

#[test]
fn header_bytes_for_a_known_entry() {
    let mut w = NewcWriter::new(Vec::new(), 0x5f5e100).unwrap();
    w.append_dir("etc", 0o755).unwrap();
    let out = w.finish().unwrap();
    let expected_dir = concat!(
        "070701", "00000001", // ino
        "000041ED", // mode 040755
        "00000000", // uid
        "00000000", // gid
        "00000002", // nlink
        "05F5E100", // mtime
        "00000000", // filesize
        "00000000", // devmajor
        "00000000", // devminor
        "00000000", // rdevmajor
        "00000000", // rdevminor
        "00000004", // namesize incl. NUL
        "00000000", // check
        "etc\0", "\0\0", // 110 + 4 = 114, padded to 116
    );
    assert_eq!(&out[..116], expected_dir.as_bytes());
    let trailer = &out[116..];
    let mut fields = String::from("070701");
    for v in [0u32, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 11, 0] {
        fields.push_str(&format!("{v:08X}"));
    }
    assert_eq!(&trailer[..110], fields.as_bytes());
    assert_eq!(&trailer[110..121], b"TRAILER!!!\0");
    // 116 + 110 + 11 = 237, padded to 240.
    assert_eq!(out.len(), 240);
    assert!(out[237..].iter().all(|&b| b == 0));
}

#[test]
fn every_entry_and_body_is_four_byte_aligned() {
    let bytes = sample(0);
    assert_eq!(bytes.len() % 4, 0);
    let mut r = NewcReader::new(Cursor::new(&bytes));
    let mut starts = Vec::new();
    loop {
        let before = r.offset();
        let Some(mut e) = r.next_entry().unwrap() else {
            break;
        };
        // The previous body's padding is skipped lazily, on this call.
        let start = before.next_multiple_of(4);
        starts.push(start);
        let name_end = start + HEADER_LEN as u64 + e.header.name.len() as u64 + 1;
        let mut body = Vec::new();
        e.read_to_end(&mut body).unwrap();
        let body_start = r.offset() - body.len() as u64;
        assert_eq!(body_start % 4, 0, "body start");
        assert!(body_start - name_end < 4);
    }
    assert_eq!(starts.len(), 7);
    for s in starts {
        assert_eq!(s % 4, 0, "entry at {s}");
        assert_eq!(&bytes[s as usize..s as usize + 6], MAGIC);
    }
}

#[test]
fn refuses_children_before_parents_and_unsorted_entries() {
    let mut w = NewcWriter::new(Vec::new(), 0).unwrap();
    let err = w.append_file("etc/a", 0o644, b"x").unwrap_err();
    assert!(
        matches!(&err, NewcError::MissingParent { parent, .. } if parent == "etc"),
        "{err}"
    );
    w.append_dir("etc", 0o755).unwrap();
    w.append_file("etc/b", 0o644, b"x").unwrap();
    let err = w.append_file("etc/a", 0o644, b"x").unwrap_err();
    assert!(matches!(err, NewcError::OutOfOrder { .. }), "{err}");
    let err = w.append_file("etc/b", 0o644, b"x").unwrap_err();
    assert!(
        matches!(err, NewcError::OutOfOrder { .. }),
        "duplicate: {err}"
    );
    // A file is not a directory: nothing may go under it.
    w.append_file("etc/c", 0o644, b"x").unwrap();
    let err = w.append_file("etc/c/d", 0o644, b"x").unwrap_err();
    assert!(matches!(err, NewcError::MissingParent { .. }), "{err}");
    // `etc-x` sorts after `etc/...` is false ('-' < '/'), so it must come
    // before: byte order, not "directories first".
    let err = w.append_dir("etc-x", 0o755).unwrap_err();
    assert!(matches!(err, NewcError::OutOfOrder { .. }), "{err}");
}

#[test]
fn refuses_unsafe_names() {
    for bad in [
        "", "/etc", "a//b", "./a", "a/..", "../a", "a/", "a\0b", TRAILER,
    ] {
        let mut w = NewcWriter::new(Vec::new(), 0).unwrap();
        let err = w.append_dir(bad, 0o755).unwrap_err();
        assert!(matches!(err, NewcError::BadName { .. }), "{bad:?}: {err}");
    }
}

#[test]
fn size_limits_and_changing_sources_are_errors() {
    let mut w = NewcWriter::new(Vec::new(), 0).unwrap();
    // A >4 GiB file is refused before a single byte is read.
    let err = w
        .append_file_from_reader("big", 0o644, 1 << 32, io::repeat(0), |_| {
            panic!("read a byte of a file that cannot fit")
        })
        .unwrap_err();
    assert!(
        matches!(err, NewcError::TooLarge { value, .. } if value == 1 << 32),
        "{err}"
    );
    assert!(err.to_string().contains("4 GiB"), "{err}");
    let err = w
        .append_file_from_reader("short", 0o644, 10, &b"12345"[..], |_| {})
        .unwrap_err();
    assert!(
        matches!(err, NewcError::SizeChanged { actual: 5, .. }),
        "{err}"
    );
    let mut w = NewcWriter::new(Vec::new(), 0).unwrap();
    let err = w
        .append_file_from_reader("long", 0o644, 3, &b"12345"[..], |_| {})
        .unwrap_err();
    assert!(matches!(err, NewcError::SizeChanged { .. }), "{err}");
    let err = NewcWriter::new(Vec::new(), 1 << 32).unwrap_err();
    assert!(matches!(err, NewcError::TooLarge { what: "mtime", .. }));
}

#[test]
fn chunks_reach_the_callback_once() {
    let mut w = NewcWriter::new(Vec::new(), 0).unwrap();
    let data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let mut seen = Vec::new();
    let n = w
        .append_file_from_reader("f", 0o644, data.len() as u64, &data[..], |c| {
            seen.extend_from_slice(c)
        })
        .unwrap();
    assert_eq!(n, data.len() as u64);
    assert_eq!(seen, data);
}

#[test]
fn round_trip_through_our_reader() {
    let bytes = sample(1234);
    let mut r = NewcReader::new(Cursor::new(&bytes));
    let mut got = Vec::new();
    while let Some(mut e) = r.next_entry().unwrap() {
        let mut body = Vec::new();
        // Read only the first entry's body partly: the reader must skip the rest.
        if e.header.name != "etc/a.conf" {
            e.read_to_end(&mut body).unwrap();
        } else {
            let mut two = [0u8; 2];
            e.read_exact(&mut two).unwrap();
            body.extend_from_slice(&two);
        }
        let h = &e.header;
        assert_eq!((h.uid, h.gid, h.mtime, h.check), (0, 0, 1234, 0));
        assert_eq!(
            (h.devmajor, h.devminor, h.rdevmajor, h.rdevminor),
            (0, 0, 0, 0)
        );
        got.push((h.ino, h.name.clone(), h.mode, h.nlink, body));
    }
    assert!(r.next_entry().unwrap().is_none(), "after the trailer");
    let expected: Vec<(u32, String, u32, u32, Vec<u8>)> = vec![
        (1, "etc".into(), 0o040755, 2, vec![]),
        (2, "etc/a.conf".into(), 0o100644, 1, b"he".to_vec()),
        (3, "etc/empty".into(), 0o100600, 1, vec![]),
        (
            4,
            "etc/link".into(),
            0o120777,
            1,
            b"../usr/bin/tool".to_vec(),
        ),
        (5, "usr".into(), 0o040755, 2, vec![]),
        (6, "usr/bin".into(), 0o040700, 2, vec![]),
        (
            7,
            "usr/bin/tool".into(),
            0o100755,
            1,
            b"#!/bin/sh\n".to_vec(),
        ),
    ];
    assert_eq!(got, expected);
    assert_eq!(r.offset(), bytes.len() as u64);
}

#[test]
fn cross_check_with_the_cpio_crate() {
    let bytes = sample(42);
    let mut inner = Cursor::new(bytes);
    let mut got = Vec::new();
    loop {
        let mut r = cpio::NewcReader::new(inner).unwrap();
        if r.entry().is_trailer() {
            break;
        }
        let e = r.entry();
        let meta = (e.name().to_owned(), e.ino(), e.mode(), e.nlink(), e.mtime());
        assert_eq!(
            (e.uid(), e.gid(), e.dev_major(), e.rdev_major()),
            (0, 0, 0, 0)
        );
        let mut body = Vec::new();
        r.read_to_end(&mut body).unwrap();
        got.push((meta, body));
        inner = r.finish().unwrap();
    }
    let names: Vec<&str> = got.iter().map(|((n, ..), _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "etc",
            "etc/a.conf",
            "etc/empty",
            "etc/link",
            "usr",
            "usr/bin",
            "usr/bin/tool"
        ]
    );
    assert_eq!(
        got[1],
        (
            ("etc/a.conf".into(), 2, 0o100644, 1, 42),
            b"hello\n".to_vec()
        )
    );
    assert_eq!(got[3].1, b"../usr/bin/tool");
    assert_eq!(got[3].0.2, 0o120777);
    assert_eq!(got[6].0.2, 0o100755);
}

#[test]
fn reader_reports_bad_magic_bad_fields_and_truncation() {
    let good = sample(0);
    let mut bad = good.clone();
    bad[..6].copy_from_slice(b"070707");
    let err = NewcReader::new(&bad[..]).next_entry().unwrap_err();
    assert!(
        matches!(err, NewcError::BadMagic { offset: 0, .. }),
        "{err}"
    );

    let mut bad = good.clone();
    bad[6..8].copy_from_slice(b"zz");
    let err = NewcReader::new(&bad[..]).next_entry().unwrap_err();
    assert!(matches!(err, NewcError::BadHeader { .. }), "{err}");

    for cut in [0, 50, 115, 130, good.len() - 20] {
        let mut r = NewcReader::new(&good[..cut]);
        let err = loop {
            match r.next_entry() {
                Ok(Some(mut e)) => {
                    if let Err(e) = io::copy(&mut e, &mut io::sink()) {
                        break NewcError::Io(e);
                    }
                }
                Ok(None) => panic!("a cut at {cut} read to the trailer"),
                Err(e) => break e,
            }
        };
        assert!(
            matches!(err, NewcError::Truncated { .. })
                || matches!(&err, NewcError::Io(e) if e.kind() == io::ErrorKind::UnexpectedEof),
            "cut at {cut}: {err}"
        );
    }
}

/// Names are checked as the reader reads them: not UTF-8, or with a
/// control character, `..`, or a leading `/`, is a bad header naming the
/// entry (escaped, so a name cannot write to the terminal).
#[test]
fn reader_refuses_bad_names_on_the_header() {
    let header = |name: &[u8]| {
        let mut h = Header {
            ino: 1,
            mode: S_IFREG | 0o644,
            uid: 0,
            gid: 0,
            nlink: 1,
            mtime: 0,
            filesize: 0,
            devmajor: 0,
            devminor: 0,
            rdevmajor: 0,
            rdevminor: 0,
            check: 0,
            name: "x".repeat(name.len()),
        }
        .encode();
        h[HEADER_LEN..HEADER_LEN + name.len()].copy_from_slice(name);
        h
    };
    for (name, want) in [
        (&b"a\xffb"[..], "is not UTF-8"),
        (b"a\nb", "\"a\\nb\": the name has a control character"),
        (b"a\x1b[2Jb", "control character"),
        (b"a/../b", "`..` component"),
        (b"/etc/x", "absolute"),
    ] {
        let bytes = header(name);
        let err = NewcReader::new(&bytes[..]).next_entry().unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, NewcError::BadHeader { .. }), "{msg}");
        assert!(msg.contains(want), "want {want:?} in {msg}");
        assert!(!msg.contains('\n') && !msg.contains('\x1b'), "{msg:?}");
    }
    let ok = header(b"etc/ok");
    assert!(NewcReader::new(&ok[..]).next_entry().unwrap().is_some());
}
