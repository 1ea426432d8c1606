//! `vgpu-firstboot upgrade`: the installed (newer) plan applied over the
//! earlier one ([`crate::agent::upgrade`]).

use std::path::Path;

use crate::agent::confine;
use crate::agent::upgrade::{self, UpgradeEnd};
use crate::runner::SystemRunner;

/// Exit codes as `run`'s (0 done or rebooting, 1 failed or refused, 2 an
/// operator must act); "nothing to upgrade" is 0.
pub fn upgrade(root: &Path) -> u8 {
    // Before anything else: commands must run inside a --root other than /.
    let root = match confine::enter(root) {
        Ok(root) => root,
        Err(e) => return super::fail(e),
    };
    match upgrade::upgrade(&root, &mut SystemRunner::default()) {
        Ok(UpgradeEnd::Nothing(why)) => {
            outln!("vgpu-firstboot: {why}");
            0
        }
        Ok(UpgradeEnd::Ran(end, archived)) => {
            if let Some(rel) = archived {
                outln!("vgpu-firstboot: the earlier state is archived at /{rel}");
            }
            super::run::ended(&root, "upgrade: ", &end)
        }
        Err(e) => super::fail(e),
    }
}
