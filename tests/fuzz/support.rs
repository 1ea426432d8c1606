//! The fuzz targets' runner, shared by `*/tests/fuzz_*.rs` (included with
//! `#[path]`): proptest on stable Rust, a short run by default (`cargo
//! test`, the CI run) and a time-boxed long one with `VGPU_FUZZ_SECS=N`
//! (`tests/fuzz/run.sh`). A failing case is shrunk and printed; keep it as
//! a fixed-input regression test next to the target.

#![allow(dead_code)]

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// A single case running longer than this is a hang: the process aborts
/// (a parser that loops would otherwise hold the run forever).
const CASE_LIMIT: Duration = Duration::from_secs(60);

/// Runs `test` on values of `strategy`: `cases` of them, or with
/// `VGPU_FUZZ_SECS` set, batches of them until that many seconds have
/// passed. `test` says whether the input was accepted (parsed); prints
/// `fuzz NAME: N executions (M accepted) in S s` to stderr.
pub fn fuzz<S>(
    name: &str,
    cases: u32,
    strategy: S,
    test: impl Fn(S::Value) -> Result<bool, TestCaseError>,
) where
    S: Strategy,
    S::Value: Debug,
{
    let secs: Option<u64> = std::env::var("VGPU_FUZZ_SECS")
        .ok()
        .map(|s| s.parse().expect("VGPU_FUZZ_SECS: a number of seconds"));
    let start = Instant::now();
    // Milliseconds since `start` at which the running case began; u64::MAX
    // between cases.
    let began = Arc::new(AtomicU64::new(u64::MAX));
    let watch = Arc::clone(&began);
    let target = name.to_string();
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_secs(1));
            let at = watch.load(Ordering::Relaxed);
            if at != u64::MAX
                && start.elapsed().as_millis() as u64 - at > CASE_LIMIT.as_millis() as u64
            {
                eprintln!("fuzz {target}: one case ran over {CASE_LIMIT:?}: a hang");
                std::process::abort();
            }
        }
    });
    let executions = std::cell::Cell::new(0u64);
    let accepted = std::cell::Cell::new(0u64);
    loop {
        let batch = if secs.is_some() { 2000 } else { cases };
        let mut config = Config::with_cases(batch);
        config.failure_persistence = None;
        config.max_shrink_iters = 4096;
        let mut runner = TestRunner::new(config);
        let result = runner.run(&strategy, |value| {
            began.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
            let r = test(value);
            began.store(u64::MAX, Ordering::Relaxed);
            executions.set(executions.get() + 1);
            let ok = r?;
            accepted.set(accepted.get() + u64::from(ok));
            Ok(())
        });
        if let Err(e) = result {
            panic!("fuzz {name}: {e}");
        }
        if secs.is_none_or(|s| start.elapsed() >= Duration::from_secs(s)) {
            break;
        }
    }
    let executions = executions.get();
    let elapsed = start.elapsed().as_secs_f64();
    eprintln!(
        "fuzz {name}: {executions} executions ({} accepted) in {elapsed:.1} s ({:.0}/s)",
        accepted.get(),
        executions as f64 / elapsed
    );
}

/// Mutations of a seed input: the mutated bytes. Each is a list of edits
/// applied in order, so proptest can shrink to the few that matter.
#[derive(Debug, Clone)]
pub enum Edit {
    /// Flip bits of the byte at (position modulo length).
    Flip(usize, u8),
    /// Set the byte at the position.
    Set(usize, u8),
    /// Cut the input at the position.
    Truncate(usize),
    /// Insert bytes at the position.
    Insert(usize, Vec<u8>),
    /// Remove up to n bytes at the position.
    Remove(usize, usize),
    /// Copy a slice (position, length) to another position.
    Splice(usize, usize, usize),
}

/// A strategy for up to `max` edits.
pub fn edits(max: usize) -> impl Strategy<Value = Vec<Edit>> {
    use proptest::prelude::*;
    let edit = prop_oneof![
        4 => (any::<usize>(), 1..=255u8).prop_map(|(p, m)| Edit::Flip(p, m)),
        2 => (any::<usize>(), any::<u8>()).prop_map(|(p, b)| Edit::Set(p, b)),
        1 => any::<usize>().prop_map(Edit::Truncate),
        2 => (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16))
            .prop_map(|(p, b)| Edit::Insert(p, b)),
        1 => (any::<usize>(), 1..64usize).prop_map(|(p, n)| Edit::Remove(p, n)),
        1 => (any::<usize>(), 1..256usize, any::<usize>())
            .prop_map(|(f, n, t)| Edit::Splice(f, n, t)),
    ];
    proptest::collection::vec(edit, 0..=max)
}

/// `seed` with `edits` applied (positions taken modulo the length).
pub fn apply(seed: &[u8], edits: &[Edit]) -> Vec<u8> {
    let mut b = seed.to_vec();
    for e in edits {
        let at = |p: usize, len: usize| if len == 0 { 0 } else { p % len };
        match e {
            Edit::Flip(p, m) if !b.is_empty() => {
                let i = at(*p, b.len());
                b[i] ^= m;
            }
            Edit::Set(p, v) if !b.is_empty() => {
                let i = at(*p, b.len());
                b[i] = *v;
            }
            Edit::Truncate(p) => {
                let i = at(*p, b.len() + 1);
                b.truncate(i);
            }
            Edit::Insert(p, bytes) => {
                let i = at(*p, b.len() + 1);
                b.splice(i..i, bytes.iter().copied());
            }
            Edit::Remove(p, n) if !b.is_empty() => {
                let i = at(*p, b.len());
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
            Edit::Splice(f, n, t) if !b.is_empty() => {
                let i = at(*f, b.len());
                let piece = b[i..(i + n).min(b.len())].to_vec();
                let j = at(*t, b.len() + 1);
                b.splice(j..j, piece);
            }
            _ => {}
        }
    }
    b
}

/// Text mutations: edits on the text's lines (drop, repeat, swap, insert
/// a line from a pool of TOML-ish fragments), then byte edits, lossily back
/// to text.
pub fn mutate_text(
    seed: &str,
    line_edits: &[(u8, usize, usize)],
    pool: &[&str],
    bytes: &[Edit],
) -> String {
    let mut lines: Vec<String> = seed.lines().map(str::to_string).collect();
    for &(op, a, b) in line_edits {
        if lines.is_empty() {
            lines.push(String::new());
        }
        let n = lines.len();
        match op % 5 {
            0 => {
                lines.remove(a % n);
            }
            1 => {
                let l = lines[a % n].clone();
                lines.insert(b % (n + 1), l);
            }
            2 => lines.swap(a % n, b % n),
            3 => lines.insert(a % (n + 1), pool[b % pool.len()].to_string()),
            _ => {
                // Replace a value: keep the key, use a pool fragment's value.
                let l = &lines[a % n];
                if let Some((k, _)) = l.split_once('=') {
                    let frag = pool[b % pool.len()];
                    let v = frag.split_once('=').map_or(frag, |(_, v)| v);
                    lines[a % n] = format!("{k}={v}");
                }
            }
        }
    }
    let text = lines.join("\n");
    String::from_utf8_lossy(&apply(text.as_bytes(), bytes)).into_owned()
}

/// TOML fragments for [`mutate_text`]: values of every type, odd keys and
/// headers, and values that are edge cases for the parsers.
pub const TOML_POOL: &[&str] = &[
    "x = 1",
    "x = -1",
    "x = 0",
    "x = 4294967296",
    "x = 9223372036854775807",
    "x = -9223372036854775808",
    "x = 1e400",
    "x = nan",
    "x = inf",
    "x = true",
    "x = \"\"",
    "x = \"a\\u0000b\"",
    "x = \"../../etc/passwd\"",
    "x = \"/abs\"",
    "x = \"\u{202e}rtl\"",
    "x = []",
    "x = [1, \"a\"]",
    "x = {}",
    "x = { a = 1 }",
    "x = 1979-05-27T07:32:00Z",
    "[x]",
    "[[x]]",
    "[a.b.c]",
    "[[step]]",
    "[[gpu]]",
    "[[entry]]",
    "\"quoted key\" = 1",
    "mode = \"0777\"",
    "mode = \"4755\"",
    "sha256 = \"0000000000000000000000000000000000000000000000000000000000000000\"",
    "size = 18446744073709551615",
    "type = \"symlink\"",
    "type = \"dir\"",
    "path = \"\"",
    "path = \"a//b\"",
    "schema = 2",
    "schema = 99",
    "kind = \"reboot\"",
    "status = \"begun\"",
    "",
    "#",
];
