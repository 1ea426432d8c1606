//! The crash tests' fault hook.

/// Test hook: `VGPU_FIRSTBOOT_FAULT=<step-id>:begun` aborts the process
/// right after the step is recorded as begun, `<step-id>:applied` right
/// after its effects and before it is recorded as done: a power cut at a
/// step boundary, for the crash tests. Steps with a long command in them
/// add points of their own (`install-driver:installer-ran`), and
/// `finish:recorded` falls between the state saying done and the seal.
pub fn fault(step: &str, point: &str) {
    if let Ok(spec) = std::env::var("VGPU_FIRSTBOOT_FAULT")
        && spec.split(',').any(|s| s == format!("{step}:{point}"))
    {
        errln!("vgpu-firstboot: fault injected at {step}:{point}");
        std::process::abort();
    }
}
