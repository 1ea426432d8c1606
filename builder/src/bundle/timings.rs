//! The writer's phases on stderr.

/// `VGPU_BAKE_TIMINGS=1` or `-v`: the writer's phases on stderr, to see where a
/// bake's time goes (the benchmark's breakdown; no effect otherwise).
pub(super) struct Timings(Option<std::time::Instant>);

impl Timings {
    pub(super) fn from_env() -> Self {
        let on = std::env::var_os("VGPU_BAKE_TIMINGS").is_some_and(|v| v == "1")
            || crate::term::verbose();
        Self(on.then(std::time::Instant::now))
    }

    pub(super) fn lap(&self, what: &str) {
        if let Some(start) = self.0 {
            errln!("timings: {:8.3} s  {what}", start.elapsed().as_secs_f64());
        }
    }
}
