//! Command-line parsing, by hand: clap costs more of the 1 MiB budget than
//! the agent's whole parser needs.
//!
//! The grammar is one table, [`SPEC`] (the commands) and [`GLOBAL`] (the
//! options every command takes): [`parse`] accepts and refuses arguments by
//! it, [`USAGE`] (`--help`) is rendered from it, and `tools/gen-docs` makes
//! the man page and the shell completions from it, so none of them can
//! drift from the others.

use std::path::PathBuf;
use std::time::Duration;

/// One option (`--long`, `-s`), with its value if it takes one.
#[derive(Debug)]
pub struct Flag {
    /// The long name, without the dashes.
    pub long: &'static str,
    /// The short letter (`b'q'` for `-q`), 0 when none.
    pub short: u8,
    /// The value's name (`DIR`), empty for a switch.
    pub value: &'static str,
    /// What the value is, for the errors: `--root needs a directory`.
    pub what: &'static str,
    /// The value when the option is not given, empty when none.
    pub default: &'static str,
    /// The option (long name) this one goes with, empty when none.
    pub requires: &'static str,
    /// One line of help.
    pub help: &'static str,
}

/// A command's positional argument (always optional, at most one).
#[derive(Debug)]
pub struct Positional {
    /// Its name in the synopsis.
    pub name: &'static str,
    /// What it is, for the errors: "takes at most one step id".
    pub what: &'static str,
    /// One line of help.
    pub help: &'static str,
}

/// One command.
#[derive(Debug)]
pub struct CommandSpec {
    /// Its name.
    pub name: &'static str,
    /// What follows the name in the usage line (options, argument).
    pub synopsis: &'static str,
    /// What it does, in one line.
    pub summary: &'static str,
    /// More about it, wrapped for the terminal; empty when the summary says it all.
    pub help: &'static str,
    /// The options it takes besides [`GLOBAL`].
    pub flags: &'static [&'static Flag],
    /// Its positional argument, if it takes one.
    pub arg: Option<&'static Positional>,
}

/// `--root DIR`.
pub const ROOT: Flag = Flag {
    long: "root",
    short: 0,
    value: "DIR",
    what: "a directory",
    default: "/",
    requires: "",
    help: "the host's root; reads and writes stay under it",
};
/// `-q`, `--quiet`.
pub const QUIET: Flag = switch("quiet", b'q', "only warnings and errors");
/// `-v`, `--verbose` (repeatable).
pub const VERBOSE: Flag = switch("verbose", b'v', "more detail (repeatable)");
/// `-h`, `--help`.
pub const HELP: Flag = switch("help", b'h', "this text");
/// `-V`, `--version`.
pub const VERSION: Flag = switch("version", b'V', "the version");
/// `--json`.
pub const JSON: Flag = switch("json", 0, "print JSON");
/// `status --wait`.
pub const WAIT: Flag = switch("wait", 0, "poll until done, failed or needs an operator");
/// `status --timeout SECS`.
pub const TIMEOUT: Flag = Flag {
    long: "timeout",
    short: 0,
    value: "SECS",
    what: "a number of seconds",
    default: "600",
    requires: "wait",
    help: "wait at most SECS seconds",
};
/// `undo --dry-run`.
pub const DRY_RUN: Flag = switch("dry-run", 0, "print the actions, change nothing");

/// A switch: an option without a value.
const fn switch(long: &'static str, short: u8, help: &'static str) -> Flag {
    Flag {
        long,
        short,
        value: "",
        what: "",
        default: "",
        requires: "",
        help,
    }
}

/// The options every command takes, before or after it.
pub const GLOBAL: &[&Flag] = &[&ROOT, &QUIET, &VERBOSE, &HELP, &VERSION];
/// Every option: [`GLOBAL`]'s, then the commands'.
const FLAGS: &[&Flag] = &[
    &ROOT, &QUIET, &VERBOSE, &HELP, &VERSION, &JSON, &WAIT, &TIMEOUT, &DRY_RUN,
];

/// The commands, in the order `--help` lists them.
pub const SPEC: &[CommandSpec] = &[
    CommandSpec {
        name: "run",
        synopsis: "",
        summary: "run the plan's next phase",
        help: "\
a fresh run first passes the host gate (Debian release of the plan's
Proxmox VE major, a Proxmox VE host, every [[gpu]] present by id and
address, its class fits the mode, vGPU possible; a demo plan: the release
only), else it refuses with every reason, nothing changed (failed, or
needs-operator for the firmware's VT-x/IOMMU)",
        flags: &[],
        arg: None,
    },
    CommandSpec {
        name: "status",
        synopsis: "[--json] [--wait [--timeout SECS]]",
        summary: "progress (exit codes below)",
        help: "",
        flags: &[&JSON, &WAIT, &TIMEOUT],
        arg: None,
    },
    CommandSpec {
        name: "plan",
        synopsis: "[--json]",
        summary: "dry run: what `run` would check and change",
        help: "\
the host gate's verdict, the bundle check (signature, files, would `run`
refuse it), then each file, kernel argument, module, repository, package
and service the plan would change, and why",
        flags: &[&JSON],
        arg: None,
    },
    CommandSpec {
        name: "facts",
        synopsis: "[--json]",
        summary: "what the agent sees on this host",
        help: "",
        flags: &[&JSON],
        arg: None,
    },
    CommandSpec {
        name: "retry",
        synopsis: "[STEP]",
        summary: "a failed step runs again at `run`",
        help: "",
        flags: &[],
        arg: Some(&Positional {
            name: "STEP",
            what: "step id",
            help: "the step's id (default: each failed step)",
        }),
    },
    CommandSpec {
        name: "undo",
        synopsis: "[--dry-run] [--json]",
        summary: "revert the agent's changes from its journal, newest first",
        help: "\
files restored or removed, its packages purged, the driver's own
uninstaller, its units disabled, the kernel pin put back; then initramfs
and boot refreshed, and whether to reboot. Safe to repeat; `run` refuses
an undone plan",
        flags: &[&DRY_RUN, &JSON],
        arg: None,
    },
    CommandSpec {
        name: "licensing",
        synopsis: "[--json]",
        summary: "the licensing step's client token, guest scripts and DLS URL, and their use",
        help: "",
        flags: &[&JSON],
        arg: None,
    },
    CommandSpec {
        name: "upgrade",
        synopsis: "",
        summary: "apply a newer installed bundle over a finished plan (done or failed)",
        help: "\
the old state archived in /var/lib/vgpu-firstboot/history/, the new plan
run as `run` does (the old driver's uninstaller first; a reboot only if
needed, phase 2 from the unit); `nothing to upgrade` when it is the
state's plan",
        flags: &[],
        arg: None,
    },
];

/// The agent's version.
pub const PKG_VERSION: &str = env!("CARGO_PKG_VERSION");
/// The agent in one line (the man page's NAME).
pub const DESCRIPTION: &str = env!("CARGO_PKG_DESCRIPTION");

/// What the agent is: the first lines of `--help` (the man page's name line
/// is the crate's description).
pub const ABOUT: &str = "\
vgpu-firstboot: applies a baked vGPU plan on a Proxmox VE host in two boot
phases with a reboot between, each step recorded in a crash-safe state file
(/var/lib/vgpu-firstboot/state.toml). systemd starts `run` at boot.";

/// What `--root` other than `/` means.
pub const ROOT_NOTE: &str = "\
With --root DIR other than /, `run`, `retry`, `undo` and `upgrade` enter DIR
as arch-chroot does: a private mount namespace, this machine's /proc, /sys,
/dev and an empty /run mounted on DIR's (unless it holds files), then
chroot. Every command they run (apt-get, update-grub, the driver installer,
...) is DIR's own on this machine's kernel; systemctl cannot reach this
machine's systemd. Needs root (CAP_SYS_ADMIN, CAP_SYS_CHROOT), else they
refuse. The mounts vanish with the agent. `status`, `plan`, `facts` and
`licensing` run no command.";

/// The exit codes.
pub const EXIT_CODES: &str = "\
Exit codes of `status` (its JSON `status`): 0 done, 1 failed, 2
needs-operator, 3 in-progress or not-started, 4 no-bundle (no plan, no
state), 5 new-plan (the installed plan is not the state's, not run), 6
state-unreadable (the state file or plan; the reason says why); --wait
waits only while 3.
Others: 0 success, 1 failure (`run`: a failed step or a host the plan does
not fit; `plan`: no plan; `retry`: no such step; `undo`: a damaged journal,
the agent running or a failed action; `upgrade`: refused or a failed step;
nothing to upgrade is 0), 2 `run` or `upgrade` waits for an operator, 3
`facts` found a fatal obstacle to vGPU. Every command exits 2 on a usage
error too: then stderr says what was wrong, then the --help text. A closed
stdout or stderr loses the text, never changes the code.";

/// The usage text; also the `--help` output. Rendered from [`ABOUT`],
/// [`SPEC`], [`GLOBAL`], [`ROOT_NOTE`] and [`EXIT_CODES`] when the agent is
/// compiled: the agent carries the one string, and no table of help texts.
pub const USAGE: &str = match core::str::from_utf8(&USAGE_TEXT.buf) {
    Ok(s) => s,
    Err(_) => panic!("the usage text is not UTF-8"),
};
const USAGE_TEXT: Text<{ render::<0>().len }> = render();

/// Text built at compile time: `len` counts every byte pushed, `buf` keeps
/// the first `N` (so a first pass with `N` = 0 measures it).
struct Text<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Text<N> {
    /// Appends `s`, each line after the first indented by `indent`.
    const fn push_indented(&mut self, s: &str, indent: &str) {
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            self.byte(b[i]);
            if b[i] == b'\n' {
                self.push(indent);
            }
            i += 1;
        }
    }

    const fn push(&mut self, s: &str) {
        self.push_indented(s, "");
    }

    /// Spaces up to the help column (18 past `start`), at least two.
    const fn pad(&mut self, start: usize) {
        self.push("  ");
        while self.len < start + 18 {
            self.byte(b' ');
        }
    }

    const fn byte(&mut self, b: u8) {
        if self.len < N {
            self.buf[self.len] = b;
        }
        self.len += 1;
    }

    /// One option's line: `--timeout SECS  help (default 600)`.
    const fn flag(&mut self, flag: &Flag, indent: &str) {
        self.push(indent);
        let start = self.len;
        if flag.short != 0 {
            self.byte(b'-');
            self.byte(flag.short);
            self.push(", ");
        }
        self.push("--");
        self.push(flag.long);
        if !flag.value.is_empty() {
            self.push(" ");
            self.push(flag.value);
        }
        self.pad(start);
        self.push(flag.help);
        if !flag.default.is_empty() {
            self.push(" (default ");
            self.push(flag.default);
            self.push(")");
        }
        self.push("\n");
    }
}

/// Renders [`USAGE`].
const fn render<const N: usize>() -> Text<N> {
    let mut t = Text {
        buf: [0; N],
        len: 0,
    };
    t.push(ABOUT);
    t.push(
        "\n\nUsage: vgpu-firstboot [options] <command> [command options]\n\n\
         Commands:\n",
    );
    let mut i = 0;
    while i < SPEC.len() {
        let c = &SPEC[i];
        t.push("  ");
        t.push(c.name);
        if !c.synopsis.is_empty() {
            t.push(" ");
            t.push(c.synopsis);
        }
        t.push("\n    ");
        t.push(c.summary);
        t.push("\n");
        if !c.help.is_empty() {
            t.push("    ");
            t.push_indented(c.help, "    ");
            t.push("\n");
        }
        if let Some(arg) = c.arg {
            t.push("    ");
            let start = t.len;
            t.push(arg.name);
            t.pad(start);
            t.push(arg.help);
            t.push("\n");
        }
        let mut j = 0;
        while j < c.flags.len() {
            t.flag(c.flags[j], "    ");
            j += 1;
        }
        i += 1;
    }
    t.push("\nOptions (before or after the command):\n");
    let mut j = 0;
    while j < GLOBAL.len() {
        t.flag(GLOBAL[j], "  ");
        j += 1;
    }
    t.push("\n");
    t.push(ROOT_NOTE);
    t.push("\n\n");
    t.push(EXIT_CODES);
    t.push("\n");
    t
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cli {
    /// `--root`.
    pub root: PathBuf,
    /// `-q`, `--quiet`.
    pub quiet: bool,
    /// How many `-v`, `--verbose`.
    pub verbose: u8,
    /// The command.
    pub command: Command,
}

/// The commands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// `run`.
    Run,
    /// `status`.
    Status {
        /// `--json`.
        json: bool,
        /// `--wait` with its timeout.
        wait: Option<Duration>,
    },
    /// `plan`.
    Plan {
        /// `--json`.
        json: bool,
    },
    /// `facts`.
    Facts {
        /// `--json`.
        json: bool,
    },
    /// `retry [STEP]`.
    Retry {
        /// The step, or every failed step.
        step: Option<String>,
    },
    /// `undo [--dry-run] [--json]`.
    Undo {
        /// `--dry-run`: print the actions, change nothing.
        dry_run: bool,
        /// `--json`.
        json: bool,
    },
    /// `licensing [--json]`.
    Licensing {
        /// `--json`.
        json: bool,
    },
    /// `upgrade`.
    Upgrade,
    /// `--help`.
    Help,
    /// `--version`.
    Version,
}

/// What [`parse`] needs of an option: [`FLAGS`] without the help texts,
/// which the agent carries once, in [`USAGE`].
#[derive(Debug)]
struct Opt {
    long: &'static str,
    /// What its value is; empty for a switch.
    what: &'static str,
    short: u8,
    /// The index in [`FLAGS`] of the option it goes with, else `u8::MAX`.
    requires: u8,
}

const OPTS: [Opt; FLAGS.len()] = {
    let mut opts = [const {
        Opt {
            long: "",
            what: "",
            short: 0,
            requires: u8::MAX,
        }
    }; FLAGS.len()];
    let mut i = 0;
    while i < FLAGS.len() {
        let f = FLAGS[i];
        assert!(
            f.value.is_empty() == f.what.is_empty(),
            "a value needs its what"
        );
        opts[i] = Opt {
            long: f.long,
            what: f.what,
            short: f.short,
            requires: match f.requires.is_empty() {
                true => u8::MAX,
                false => flag_index(f.requires) as u8,
            },
        };
        i += 1;
    }
    opts
};

/// What [`parse`] needs of a command: its [`SPEC`] entry without the texts.
#[derive(Debug, Clone, Copy)]
struct Cmd {
    /// The options it takes: bit `i` is [`FLAGS`]`[i]`.
    flags: u16,
    /// What its positional argument is, empty when it takes none.
    arg: &'static str,
}

/// [`SPEC`]'s command `name` for [`parse`] (compile time: a name missing
/// from [`SPEC`] does not compile).
const fn cmd(name: &str) -> Cmd {
    let mut i = 0;
    while i < SPEC.len() {
        let c = &SPEC[i];
        if same(c.name, name) {
            let mut flags = 0;
            let mut j = 0;
            while j < c.flags.len() {
                flags |= 1 << flag_index(c.flags[j].long);
                j += 1;
            }
            let arg = match c.arg {
                Some(a) => a.what,
                None => "",
            };
            return Cmd { flags, arg };
        }
        i += 1;
    }
    panic!("a command of parse is missing from SPEC")
}

/// The index in [`FLAGS`] of the option named `long` (compile time).
const fn flag_index(long: &str) -> usize {
    let mut i = 0;
    while i < FLAGS.len() {
        if same(FLAGS[i].long, long) {
            return i;
        }
        i += 1;
    }
    panic!("an option of SPEC is missing from FLAGS")
}

/// `a == b`, at compile time.
const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Parses `args` (without the program name) by [`GLOBAL`] and [`SPEC`].
/// The error is one line for the user; print [`USAGE`] after it.
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Cli, String> {
    let mut cli = Cli {
        root: PathBuf::from(ROOT.default),
        quiet: false,
        verbose: 0,
        command: Command::Help,
    };
    let mut words = Vec::new();
    // The command's options (index in OPTS) with their values, in order.
    let mut given: Vec<(usize, String)> = Vec::new();
    let mut it = args.into_iter();
    while let Some(a) = it.next() {
        if !a.starts_with('-') {
            words.push(a);
            continue;
        }
        let (name, inline) = match a.split_once('=') {
            Some((n, v)) if n.starts_with("--") => (n, Some(v)),
            _ => (a.as_str(), None),
        };
        let i = OPTS
            .iter()
            .position(|o| {
                (name.strip_prefix("--") == Some(o.long)
                    || (o.short != 0 && name.as_bytes() == [b'-', o.short]))
                    && (inline.is_none() || !o.what.is_empty())
            })
            .ok_or_else(|| format!("unknown option {a}"))?;
        let o = &OPTS[i];
        let value = match inline {
            Some(v) => v.to_string(),
            None if o.what.is_empty() => String::new(),
            None => it
                .next()
                .ok_or_else(|| format!("--{} needs {}", o.long, o.what))?,
        };
        match o.long {
            "help" => return Ok(cli),
            "version" => {
                cli.command = Command::Version;
                return Ok(cli);
            }
            "root" => cli.root = PathBuf::from(value),
            "quiet" => cli.quiet = true,
            "verbose" => cli.verbose = cli.verbose.saturating_add(1),
            _ => given.push((i, value)),
        }
    }
    let mut words = words.into_iter();
    let name = words.next().ok_or("no command given")?;
    let rest: Vec<String> = words.collect();
    // The last value of option `i`.
    let value = |i: usize| {
        given
            .iter()
            .rev()
            .find(|(g, _)| *g == i)
            .map(|(_, v)| v.as_str())
    };
    let check = |cmd: Cmd| {
        match (cmd.arg, rest.len()) {
            ("", 1..) => return Err(format!("`{name}` takes no argument (got {:?})", rest[0])),
            (what, 2..) => return Err(format!("`{name}` takes at most one {what}")),
            _ => {}
        }
        for (i, _) in &given {
            let o = &OPTS[*i];
            if cmd.flags & (1 << i) == 0 {
                return Err(format!("`{name}` does not take --{}", o.long));
            }
            let r = o.requires as usize;
            if r != u8::MAX as usize && value(r).is_none() {
                return Err(format!("--{} goes with --{}", o.long, OPTS[r].long));
            }
        }
        Ok(())
    };
    let json = value(const { flag_index(JSON.long) }).is_some();
    let (spec, command) = match name.as_str() {
        "run" => (const { cmd("run") }, Command::Run),
        "status" => (
            const { cmd("status") },
            Command::Status { json, wait: None },
        ),
        "plan" => (const { cmd("plan") }, Command::Plan { json }),
        "facts" => (const { cmd("facts") }, Command::Facts { json }),
        "retry" => (
            const { cmd("retry") },
            Command::Retry {
                step: rest.first().cloned(),
            },
        ),
        "undo" => (
            const { cmd("undo") },
            Command::Undo {
                dry_run: value(const { flag_index(DRY_RUN.long) }).is_some(),
                json,
            },
        ),
        "licensing" => (const { cmd("licensing") }, Command::Licensing { json }),
        "upgrade" => (const { cmd("upgrade") }, Command::Upgrade),
        _ => return Err(format!("unknown command {name:?}")),
    };
    check(spec)?;
    cli.command = command;
    if let Command::Status { wait, .. } = &mut cli.command
        && value(const { flag_index(WAIT.long) }).is_some()
    {
        let v = value(const { flag_index(TIMEOUT.long) }).unwrap_or(TIMEOUT.default);
        let secs = v
            .parse()
            .map_err(|_| format!("--{} {v:?} is not {}", TIMEOUT.long, TIMEOUT.what))?;
        *wait = Some(Duration::from_secs(secs));
    }
    Ok(cli)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(args: &[&str]) -> Result<Cli, String> {
        parse(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn commands_and_options() {
        assert_eq!(p(&["run"]).unwrap().command, Command::Run);
        let c = p(&[
            "--root",
            "/mnt",
            "status",
            "--json",
            "--wait",
            "--timeout",
            "5",
        ])
        .unwrap();
        assert_eq!(c.root, PathBuf::from("/mnt"));
        assert_eq!(
            c.command,
            Command::Status {
                json: true,
                wait: Some(Duration::from_secs(5))
            }
        );
        assert_eq!(
            p(&["status", "--wait"]).unwrap().command,
            Command::Status {
                json: false,
                wait: Some(Duration::from_secs(600))
            }
        );
        assert_eq!(
            p(&["retry", "install-driver", "--root=/x"])
                .unwrap()
                .command,
            Command::Retry {
                step: Some("install-driver".into())
            }
        );
        assert_eq!(
            p(&["facts", "--json"]).unwrap().command,
            Command::Facts { json: true }
        );
        assert_eq!(p(&["--help"]).unwrap().command, Command::Help);
        assert_eq!(
            p(&["undo", "--dry-run"]).unwrap().command,
            Command::Undo {
                dry_run: true,
                json: false
            }
        );
        assert_eq!(
            p(&["undo"]).unwrap().command,
            Command::Undo {
                dry_run: false,
                json: false
            }
        );
        assert_eq!(
            p(&["run", "--dry-run"]).unwrap_err(),
            "`run` does not take --dry-run"
        );
        assert_eq!(
            p(&["--root", "/mnt", "upgrade"]).unwrap().command,
            Command::Upgrade
        );
        assert_eq!(
            p(&["upgrade", "x"]).unwrap_err(),
            "`upgrade` takes no argument (got \"x\")"
        );
    }

    #[test]
    fn plan_json_quiet_verbose() {
        assert_eq!(
            p(&["plan", "--json"]).unwrap().command,
            Command::Plan { json: true }
        );
        assert_eq!(p(&["plan"]).unwrap().command, Command::Plan { json: false });
        let c = p(&["-v", "status", "--verbose", "-q"]).unwrap();
        assert_eq!((c.quiet, c.verbose), (true, 2));
        let c = p(&["--quiet", "run"]).unwrap();
        assert_eq!((c.quiet, c.verbose, c.command), (true, 0, Command::Run));
        assert_eq!(p(&["-V", "run"]).unwrap().command, Command::Version);
        assert_eq!(p(&["run", "-h"]).unwrap().command, Command::Help);
        assert_eq!(
            p(&["--quiet=1", "run"]).unwrap_err(),
            "unknown option --quiet=1"
        );
        assert_eq!(p(&["-x", "run"]).unwrap_err(), "unknown option -x");
        assert_eq!(
            p(&["retry", "a", "b"]).unwrap_err(),
            "`retry` takes at most one step id"
        );
        assert_eq!(
            p(&["status", "--wait", "--timeout"]).unwrap_err(),
            "--timeout needs a number of seconds"
        );
        assert_eq!(
            p(&["status", "--wait", "--timeout=7"]).unwrap().command,
            Command::Status {
                json: false,
                wait: Some(Duration::from_secs(7))
            }
        );
    }

    /// Every command of SPEC parses with each of its options and its
    /// argument, and refuses the other commands' options.
    #[test]
    fn the_parser_follows_spec() {
        let all: Vec<&Flag> = SPEC.iter().flat_map(|c| c.flags.iter().copied()).collect();
        for c in SPEC {
            let mut args = vec![c.name.to_string()];
            for f in c.flags {
                args.push(format!("--{}", f.long));
                if !f.value.is_empty() {
                    args.push(f.default.to_string());
                }
            }
            if let Some(a) = c.arg {
                args.push(a.name.to_lowercase());
            }
            let got = parse(args.clone());
            assert!(got.is_ok(), "{args:?}: {got:?}");
            for other in all
                .iter()
                .filter(|o| !c.flags.iter().any(|f| f.long == o.long))
            {
                let mut args = vec![c.name.to_string(), format!("--{}", other.long)];
                if !other.value.is_empty() {
                    args.push("1".into());
                }
                assert_eq!(
                    parse(args).unwrap_err(),
                    format!("`{}` does not take --{}", c.name, other.long)
                );
            }
        }
        for f in GLOBAL {
            assert!(FLAGS.iter().any(|g| std::ptr::eq(*g, *f)), "{}", f.long);
        }
        assert_eq!(FLAGS.len(), {
            let mut longs: Vec<&str> = GLOBAL.iter().chain(&all).map(|f| f.long).collect();
            longs.sort();
            longs.dedup();
            longs.len()
        });
    }

    /// `--help` shows every command and option of the table, and names no
    /// option the parser does not know.
    #[test]
    fn usage_matches_spec() {
        for c in SPEC {
            let line = USAGE
                .lines()
                .find(|l| {
                    l.strip_prefix("  ")
                        .is_some_and(|r| r.split(' ').next() == Some(c.name))
                })
                .unwrap_or_else(|| panic!("USAGE has no line for `{}`", c.name));
            for f in c.flags {
                assert!(
                    line.contains(&format!("--{}", f.long)),
                    "{line}: no --{}",
                    f.long
                );
            }
            if let Some(a) = c.arg {
                assert!(line.contains(a.name), "{line}: no {}", a.name);
            }
            assert!(USAGE.contains(c.summary), "{}", c.summary);
        }
        for f in GLOBAL {
            assert!(
                USAGE.contains(&format!("--{}  ", f.long))
                    || USAGE.contains(&format!("--{} {}", f.long, f.value)),
                "{}",
                f.long
            );
        }
        let known: Vec<&str> = FLAGS.iter().map(|f| f.long).collect();
        let mut rest = USAGE;
        while let Some(i) = rest.find("--") {
            rest = &rest[i + 2..];
            let word: String = rest
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect();
            assert!(
                known.contains(&word.as_str()),
                "USAGE names --{word}, which SPEC lacks"
            );
        }
        assert!(USAGE.contains("exits 2 on a usage\nerror"), "{USAGE}");
    }

    #[test]
    fn usage_errors() {
        assert_eq!(p(&[]).unwrap_err(), "no command given");
        assert_eq!(p(&["frob"]).unwrap_err(), "unknown command \"frob\"");
        assert_eq!(
            p(&["run", "--json"]).unwrap_err(),
            "`run` does not take --json"
        );
        assert_eq!(
            p(&["status", "--timeout", "5"]).unwrap_err(),
            "--timeout goes with --wait"
        );
        assert_eq!(
            p(&["status", "--wait", "--timeout", "x"]).unwrap_err(),
            "--timeout \"x\" is not a number of seconds"
        );
        assert_eq!(p(&["--root"]).unwrap_err(), "--root needs a directory");
        assert_eq!(
            p(&["plan", "extra"]).unwrap_err(),
            "`plan` takes no argument (got \"extra\")"
        );
        assert_eq!(
            p(&["run", "--bogus"]).unwrap_err(),
            "unknown option --bogus"
        );
    }
}
