//! Usage errors the commands find themselves, after clap has parsed the
//! command line (contradictory or malformed flags): exit code 2, as clap's.

use vgpu_bake::guest::GuestError;
use vgpu_bake::rollout::answer::AnswerError;
use vgpu_bake::rollout::make::MakeError;
use vgpu_bake::rollout::usb::UsbError;

/// A command line the command cannot act on; says which flags to change.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The exit code for `e`: 2 for a usage error anywhere in its chain, else 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    let usage = e.chain().any(|c| {
        c.is::<UsageError>()
            || c.is::<AnswerError>()
            || matches!(c.downcast_ref::<MakeError>(), Some(MakeError::Flags(_)))
            || matches!(
                c.downcast_ref::<GuestError>(),
                Some(GuestError::NotOne { .. })
            )
            || matches!(c.downcast_ref::<UsbError>(), Some(UsbError::Label(_)))
    });
    if usage { 2 } else { 1 }
}
