//! The programs vgpu-bake runs (every `Command::new` outside tests):
//! `sh` and GNU `patch` for the unlock patch at bake time
//! (`bake/patch.rs`: the driver's own `--apply-patch`), `mkfs.ext4` and
//! `debugfs` for `vgpu-bake usb` (`rollout/usb.rs`). zstd, cpio and
//! minisign are built in: no program is needed for them.

use super::{Finding, Probes, Status};
use crate::bake::{PATCH_FIX, gnu_patch_version};

/// A program and who runs it.
struct Tool {
    program: &'static str,
    used_by: &'static str,
    package: &'static str,
    /// Needed by unlock bakes (so the profiles given decide); otherwise by
    /// a command no profile implies (`usb`).
    unlock: bool,
}

const TOOLS: &[Tool] = &[
    Tool {
        program: "sh",
        used_by: "`bake` of unlock profiles, to run the driver's --apply-patch",
        package: "dash",
        unlock: true,
    },
    Tool {
        program: "patch",
        used_by: "`bake` of unlock profiles, through the driver's --apply-patch",
        package: "patch",
        unlock: true,
    },
    Tool {
        program: "mkfs.ext4",
        used_by: "`usb`",
        package: "e2fsprogs",
        unlock: false,
    },
    Tool {
        program: "debugfs",
        used_by: "`usb`",
        package: "e2fsprogs",
        unlock: false,
    },
];

/// How much a missing or unfit tool matters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    /// A given profile needs it: `fail`.
    Yes,
    /// Unknown (no profiles given, or a command no profile implies): `warn`.
    Maybe,
    /// The profiles given do not need it: `ok` whatever its state.
    No,
}

impl Need {
    fn status(self) -> Status {
        match self {
            Self::Yes => Status::Fail,
            Self::Maybe => Status::Warn,
            Self::No => Status::Ok,
        }
    }
}

/// One finding per tool. `unlock`: whether a given profile bakes an unlock
/// patch (`None`: no profiles given).
pub(super) fn check(probes: &dyn Probes, unlock: Option<bool>) -> Vec<Finding> {
    TOOLS
        .iter()
        .map(|tool| {
            let need = match (tool.unlock, unlock) {
                (true, Some(true)) => Need::Yes,
                (true, Some(false)) => Need::No,
                _ => Need::Maybe,
            };
            check_one(probes, tool, need)
        })
        .collect()
}

fn check_one(probes: &dyn Probes, tool: &Tool, need: Need) -> Finding {
    let subject = format!("tool {}", tool.program);
    let Some(path) = probes.find(tool.program) else {
        let message = format!("not found on PATH; used by {}", tool.used_by);
        if need == Need::No {
            return Finding::ok(
                "tool",
                subject,
                format!("{message}, which these profiles do not need"),
            );
        }
        return Finding::bad(
            need.status(),
            "tool",
            subject,
            message,
            format!("install it (Debian: apt-get install {})", tool.package),
        );
    };
    if tool.program != "patch" {
        return Finding::ok(
            "tool",
            subject,
            format!("{} (used by {})", path.display(), tool.used_by),
        );
    }
    let first = match probes.version("patch") {
        Ok(line) => line,
        Err(e) => {
            return Finding::bad(need.status(), "tool", subject, e, PATCH_FIX);
        }
    };
    let (status, message) = match patch_verdict(&first) {
        Ok(()) => (Status::Ok, format!("{first} at {}", path.display())),
        Err(why) => (
            need.status(),
            format!("{} says \"{first}\": {why}", path.display()),
        ),
    };
    let mut f = Finding::ok(
        "tool",
        subject,
        format!("{message}; used by {}", tool.used_by),
    );
    if status != Status::Ok {
        f.status = status;
        f.fix = Some(PATCH_FIX.to_owned());
    }
    f
}

/// The bake's rule for `patch` (`bake/patch.rs`): GNU patch 2.8 and newer
/// stop on the vgpu_unlock patches ("patch line N contains NUL byte"), so
/// bakes refuse them; 2.7.6 is the version known to work (2.7 is the first
/// to apply git-style diffs). A `patch` that is not GNU's is not known to
/// work.
pub(super) fn patch_verdict(first_line: &str) -> Result<(), String> {
    match gnu_patch_version(first_line) {
        Some(v) if v >= [2, 8] => Err(
            "GNU patch 2.8 and newer fail on the vgpu_unlock patches (\"patch line N contains NUL byte\"), so unlock bakes refuse it".into(),
        ),
        Some(v) if v < [2, 7] => Err(format!(
            "GNU patch {}.{} is older than 2.7, which the unlock patches need",
            v[0], v[1]
        )),
        Some(_) => Ok(()),
        None => Err("not GNU patch; the driver's --apply-patch needs GNU patch 2.7.6".into()),
    }
}
