//! Fuzzing the newc reader (proptest, stable Rust): arbitrary bytes, and
//! mutations of a valid archive (flipped bytes, cuts, header fields set to
//! huge or odd values, bad names). The reader must return entries or an
//! error: never panic, never loop, never allocate more than a name's worth
//! (a counting allocator checks each case). `cargo test` runs a short pass;
//! `VGPU_FUZZ_SECS=600` (or `tests/fuzz/run.sh`) a long one.

#[path = "../../tests/fuzz/support.rs"]
mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::io::{self, Cursor, Read};

use proptest::prelude::*;
use support::{apply, edits, fuzz};
use vgpu_bake::newc::{HEADER_LEN, MAX_NAME, NewcReader, NewcWriter};

/// Counts this thread's live heap bytes and their peak, so a case can
/// check what the reader allocated (other test threads do not disturb it).
struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    let _ = LIVE.try_with(|l| {
        let now = l.get() + delta;
        l.set(now);
        let _ = PEAK.try_with(|p| p.set(p.get().max(now)));
    });
}

// SAFETY: every call is forwarded to the system allocator unchanged; the
// counting only touches const-initialised thread-locals (no allocation).
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count(layout.size() as isize);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        // SAFETY: the caller's contract, passed on.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count(new_size as isize - layout.size() as isize);
        // SAFETY: the caller's contract, passed on.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// The most a read of any input may allocate beyond its starting point:
/// names (at most 4096 bytes each, one alive at a time), error messages and
/// the copy's buffer, with room to spare; far below any header's claimed
/// size (up to 4 GiB).
const ALLOC_LIMIT: isize = 256 << 10;

/// A valid archive with every entry type, an empty file, a long name and a
/// body that is not a multiple of 4.
fn sample() -> Vec<u8> {
    let mut w = NewcWriter::new(Vec::new(), 1_700_000_000).unwrap();
    w.append_dir("etc", 0o755).unwrap();
    w.append_file("etc/a.conf", 0o644, b"hello\n").unwrap();
    w.append_file("etc/empty", 0o600, b"").unwrap();
    w.append_symlink("etc/link", "../usr/bin/tool").unwrap();
    w.append_dir("usr", 0o755).unwrap();
    w.append_dir("usr/bin", 0o755).unwrap();
    let long = format!("usr/bin/{}", "n".repeat(200));
    w.append_file(&long, 0o755, &[7u8; 1027]).unwrap();
    w.append_file("usr/bin/tool", 0o755, b"#!/bin/sh\n")
        .unwrap();
    w.finish().unwrap()
}

/// Reads every entry and its body; checks the bounds. Returns whether the
/// whole archive read without an error.
fn read_all(bytes: &[u8]) -> Result<bool, TestCaseError> {
    let before = LIVE.with(Cell::get);
    PEAK.with(|p| p.set(before));
    let mut reader = NewcReader::new(Cursor::new(bytes));
    let mut entries = 0usize;
    let ok = loop {
        match reader.next_entry() {
            Ok(None) => break true,
            Ok(Some(mut entry)) => {
                prop_assert!(entry.header.name.len() < MAX_NAME as usize);
                let copied = io::copy(&mut entry, &mut io::sink());
                entries += 1;
                // Every entry takes a header's bytes: the loop ends.
                prop_assert!(entries <= bytes.len() / HEADER_LEN + 1, "{entries} entries");
                if copied.is_err() {
                    break false;
                }
            }
            Err(e) => {
                // An error says where.
                let text = e.to_string();
                prop_assert!(!text.is_empty());
                break false;
            }
        }
    };
    prop_assert!(reader.offset() <= bytes.len() as u64);
    let grew = PEAK.with(Cell::get) - before;
    prop_assert!(grew <= ALLOC_LIMIT, "the read allocated {grew} bytes");
    Ok(ok)
}

/// Header field `field` (0..13) of the entry whose header starts at
/// `start`, set to `value` as 8 hex digits (or 8 raw bytes when `raw`).
fn set_field(bytes: &mut [u8], start: usize, field: usize, value: &[u8; 8]) {
    let at = start + 6 + 8 * field;
    if at + 8 <= bytes.len() {
        bytes[at..at + 8].copy_from_slice(value);
    }
}

/// Offsets of the headers in a valid archive.
fn header_offsets(bytes: &[u8]) -> Vec<usize> {
    let mut out = Vec::new();
    let mut r = NewcReader::new(Cursor::new(bytes));
    loop {
        let at = r.offset() as usize;
        // The next header starts after the padding to 4.
        let start = at.next_multiple_of(4);
        match r.next_entry().unwrap() {
            Some(mut e) => {
                out.push(start);
                io::copy(&mut e, &mut io::sink()).unwrap();
            }
            None => {
                out.push(start);
                return out;
            }
        }
    }
}

fn hex_value() -> impl Strategy<Value = [u8; 8]> {
    prop_oneof![
        Just(*b"FFFFFFFF"),
        Just(*b"00000000"),
        Just(*b"7FFFFFFF"),
        Just(*b"00001001"), // one past MAX_NAME
        Just(*b"00001000"),
        Just(*b"80000000"),
        Just(*b"0000000g"),
        Just(*b"-0000001"),
        Just(*b"+0000001"),
        Just(*b"        "),
        any::<u32>().prop_map(|v| {
            let mut b = [0u8; 8];
            b.copy_from_slice(format!("{v:08X}").as_bytes());
            b
        }),
        any::<[u8; 8]>(),
    ]
}

#[test]
fn the_allocator_counts() {
    let before = LIVE.with(Cell::get);
    let v = vec![1u8; 1 << 20];
    assert!(LIVE.with(Cell::get) - before >= 1 << 20);
    drop(v);
    assert_eq!(LIVE.with(Cell::get), before);
}

#[test]
fn the_sample_reads_back() {
    assert!(read_all(&sample()).unwrap());
    assert_eq!(header_offsets(&sample()).len(), 9);
}

#[test]
fn fuzz_newc_arbitrary_bytes() {
    let strategy = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..2048),
        // Past the magic, so the fields are what is fuzzed.
        proptest::collection::vec(any::<u8>(), 0..1024)
            .prop_map(|b| [b"070701".as_slice(), &b].concat()),
        // Hex digits only: headers that parse, with random sizes.
        proptest::collection::vec(
            proptest::sample::select(b"0123456789ABCDEF\0".as_slice()),
            0..1024
        )
        .prop_map(|b| [b"070701".as_slice(), &b].concat()),
    ];
    fuzz("newc-bytes", 10000, strategy, |bytes| read_all(&bytes));
}

#[test]
fn fuzz_newc_mutations() {
    let seed = sample();
    fuzz("newc-mutations", 10000, edits(8), |e| {
        read_all(&apply(&seed, &e))
    });
}

#[test]
fn fuzz_newc_header_fields() {
    let seed = sample();
    let starts = header_offsets(&seed);
    let strategy = proptest::collection::vec((0..starts.len(), 0..13usize, hex_value()), 1..4);
    fuzz(
        "newc-fields",
        10000,
        (strategy, edits(2)),
        |(sets, more)| {
            let mut bytes = seed.clone();
            for (entry, field, value) in &sets {
                set_field(&mut bytes, starts[*entry], *field, value);
            }
            read_all(&apply(&bytes, &more))
        },
    );
}

#[test]
fn fuzz_newc_names() {
    let seed = sample();
    let starts = header_offsets(&seed);
    // A name (bytes after the header) replaced by arbitrary bytes, the name
    // size set to match, or not.
    let names = prop_oneof![
        proptest::collection::vec(any::<u8>(), 0..64),
        "[a-z./\\x01\\x7f\u{e9}\u{202e}]{0,40}".prop_map(|n| format!("{n}\0").into_bytes()),
        Just(b"..\0".to_vec()),
        Just(b"/etc/passwd\0".to_vec()),
        Just(b"TRAILER!!!\0".to_vec()),
        Just(b"\0".to_vec()),
        Just(b"a\0b\0".to_vec()),
    ];
    let strategy = (0..starts.len(), names, any::<bool>());
    fuzz("newc-names", 10000, strategy, |(entry, name, fix_size)| {
        let start = starts[entry];
        let mut bytes = seed[..start + HEADER_LEN].to_vec();
        let mut rest = seed[start + HEADER_LEN..].to_vec();
        let old = u32::from_str_radix(
            std::str::from_utf8(&seed[start + 94..start + 102]).unwrap(),
            16,
        )
        .unwrap() as usize;
        // The old name and its padding out, the new one and its padding in.
        let padded = |n: usize| (HEADER_LEN + n).next_multiple_of(4) - HEADER_LEN;
        rest.drain(..padded(old).min(rest.len()));
        if fix_size {
            let size = format!("{:08X}", name.len());
            bytes[start + 94..start + 102].copy_from_slice(size.as_bytes());
        }
        bytes.extend_from_slice(&name);
        bytes.resize(start + HEADER_LEN + padded(name.len()), 0);
        bytes.extend_from_slice(&rest);
        read_all(&bytes)
    });
}

/// The reader over a source that fails: the error comes back, no panic.
#[test]
fn an_inner_read_error_is_returned() {
    #[derive(Debug)]
    struct Failing(usize);
    impl Read for Failing {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::other("disk gone"));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(b'0');
            self.0 -= n;
            Ok(n)
        }
    }
    let mut r = NewcReader::new(Failing(50));
    let Err(e) = r.next_entry() else {
        panic!("50 bytes of zeros then an error read as an entry")
    };
    assert!(
        e.to_string().contains("070701") || e.to_string().contains("disk gone"),
        "{e}"
    );
}
