//! The transition table: which [`Event`] is legal in which [`Status`], and
//! what it does. Pure: no I/O, the time is passed in.

use super::{
    BOOT_IDS_CAP, EVENT_LOG_CAP, Event, Failure, LogEntry, RetryTarget, State, StateError, Status,
    StepRecord, StepState,
};

impl Status {
    /// Short description for messages, e.g. "failed at step x".
    pub fn describe(&self) -> String {
        match self {
            Status::NotStarted => "not started".into(),
            Status::InProgress => "in progress".into(),
            Status::NeedsOperator { .. } => "waiting for an operator".into(),
            Status::Failed { step, .. } => format!("failed at step {step}"),
            Status::Done => "done".into(),
        }
    }
}

impl Event {
    /// Short description for messages, e.g. "begin step x".
    pub fn describe(&self) -> String {
        match self {
            Event::Begin(id) => format!("begin step {id}"),
            Event::Complete(id) => format!("complete step {id}"),
            Event::Fail(id, _) => format!("fail step {id}"),
            Event::NeedOperator(_) => "stop for an operator".into(),
            Event::RebootRequested => "request a reboot".into(),
            Event::Booted(id) => format!("record boot {id}"),
            Event::Retry(RetryTarget::Step(id)) => format!("retry step {id}"),
            Event::Retry(RetryTarget::AllFailed) => "retry".into(),
            Event::Finish => "finish".into(),
        }
    }
}

impl State {
    /// The record of step `id`.
    pub fn step(&self, id: &str) -> Option<&StepRecord> {
        self.steps.iter().find(|s| s.id == id)
    }

    /// The step currently begun, if any.
    pub fn begun_step(&self) -> Option<&StepRecord> {
        self.steps
            .iter()
            .find(|s| matches!(s.status, StepState::Begun { .. }))
    }

    /// The boot the agent runs in: the last one recorded.
    pub fn current_boot(&self) -> Option<&str> {
        self.boot_ids.last().map(String::as_str)
    }

    /// The state after `event` at time `now`, or why `event` is illegal now.
    /// `self` is unchanged either way; [`super::StateStore::apply`] persists
    /// the result before the caller acts on it.
    ///
    /// The rules, by event:
    /// - `Booted`: always legal; sent at every start-up of the agent. Any
    ///   step still `Begun` was interrupted (power cut, reboot, killed agent;
    ///   the lock rules out a concurrent agent) and is reset to `Pending` so
    ///   it runs again. A reboot the agent requested is noted as done when
    ///   the boot id changed.
    /// - `Begin`: when not started or in progress, for a pending step, when
    ///   no other step is begun.
    /// - `Complete`, `Fail`: in progress, for the step begun in this boot.
    /// - `NeedOperator`: when not started or in progress; a begun step goes
    ///   back to pending, to run after the operator acted.
    /// - `RebootRequested`: in progress, while reboots < cap.
    /// - `Retry`: when failed or waiting for an operator; failed steps go
    ///   back to pending and the reboot count restarts (a person looked).
    /// - `Finish`: in progress, when every step is done; clears `last_error`.
    pub fn next(&self, event: &Event, now: u64) -> Result<State, StateError> {
        use Event as E;
        use Status as S;
        let mut s = self.clone();
        match (&self.status, event) {
            (_, E::Booted(boot)) => s.booted(boot, now),
            (S::NotStarted | S::InProgress, E::Begin(id)) => s.begin(id, event, now)?,
            (S::InProgress, E::Complete(id)) => s.complete(id, event, now)?,
            (S::InProgress, E::Fail(id, failure)) => s.fail(id, failure, event, now)?,
            (S::NotStarted | S::InProgress, E::NeedOperator(action)) => {
                s.need_operator(action, now)
            }
            (S::InProgress, E::RebootRequested) => s.reboot_requested(event, now)?,
            (S::Failed { .. } | S::NeedsOperator { .. }, E::Retry(target)) => {
                s.retry(target, event, now)?
            }
            (S::InProgress, E::Finish) => s.finish(event, now)?,
            (status, _) => {
                let why = match status {
                    S::Done => "the plan is already complete".to_string(),
                    S::Failed { step, .. } => format!(
                        "step {step} failed; fix the cause, then run `vgpu-firstboot retry`"
                    ),
                    S::NeedsOperator { action } => {
                        format!("first: {action}; the agent resumes by itself at the next boot")
                    }
                    S::NotStarted if !matches!(event, E::Retry(_)) => {
                        "no step has begun yet".to_string()
                    }
                    S::NotStarted | S::InProgress => "no step has failed".to_string(),
                };
                return Err(self.illegal(event, why));
            }
        }
        Ok(s)
    }

    fn illegal(&self, event: &Event, why: impl Into<String>) -> StateError {
        StateError::Illegal {
            event: event.describe(),
            status: self.status.describe(),
            why: why.into(),
        }
    }

    fn log(&mut self, at: u64, what: impl Into<String>) {
        self.events.push(LogEntry {
            at,
            what: what.into(),
        });
        let excess = self.events.len().saturating_sub(EVENT_LOG_CAP);
        self.events.drain(..excess);
    }

    fn index(&self, id: &str, event: &Event) -> Result<usize, StateError> {
        self.steps
            .iter()
            .position(|s| s.id == id)
            .ok_or_else(|| self.illegal(event, format!("the plan has no step {id:?}")))
    }

    fn booted(&mut self, boot: &str, now: u64) {
        let previous = self.current_boot().map(str::to_string);
        if previous.as_deref() == Some(boot) {
            self.log(now, format!("agent started again in boot {boot}"));
        } else {
            self.boot_ids.push(boot.to_string());
            let excess = self.boot_ids.len().saturating_sub(BOOT_IDS_CAP);
            self.boot_ids.drain(..excess);
            self.log(now, format!("agent started in boot {boot}"));
        }
        let rebooted_from = match &self.pending_reboot {
            Some(from) if from != boot => Some(from.clone()),
            _ => None,
        };
        if let Some(from) = &rebooted_from {
            self.pending_reboot = None;
            self.log(now, format!("the reboot requested in boot {from} happened"));
        }
        let mut notes = Vec::new();
        for step in &mut self.steps {
            if let StepState::Begun {
                attempt, boot_id, ..
            } = &step.status
            {
                let why = if rebooted_from.as_deref() == Some(boot_id.as_str()) {
                    "it requested the reboot and now checks its effect"
                } else if boot_id != boot {
                    "interrupted by a reboot or power loss"
                } else {
                    "the agent stopped while it ran"
                };
                notes.push(format!(
                    "step {} (attempt {attempt}, begun in boot {boot_id}) runs again: {why}",
                    step.id
                ));
                step.status = StepState::Pending;
            }
        }
        for note in notes {
            self.log(now, note);
        }
    }

    fn begin(&mut self, id: &str, event: &Event, now: u64) -> Result<(), StateError> {
        let Some(boot) = self.current_boot().map(str::to_string) else {
            return Err(self.illegal(event, "no boot recorded; send Booted at start-up first"));
        };
        let i = self.index(id, event)?;
        if let Some(other) = self.begun_step() {
            let why = format!(
                "step {} is still begun in this boot; complete or fail it first",
                other.id
            );
            return Err(self.illegal(event, why));
        }
        match &self.steps[i].status {
            StepState::Pending => {}
            StepState::Done { .. } => return Err(self.illegal(event, "it is already done")),
            StepState::Failed { .. } => {
                return Err(self.illegal(event, "it failed; run `vgpu-firstboot retry` first"));
            }
            StepState::Begun { .. } => return Err(self.illegal(event, "it is already begun")),
        }
        let step = &mut self.steps[i];
        step.attempts += 1;
        let attempt = step.attempts;
        step.status = StepState::Begun {
            attempt,
            boot_id: boot,
            at: now,
        };
        self.status = Status::InProgress;
        self.log(now, format!("begin step {id} (attempt {attempt})"));
        Ok(())
    }

    /// Index of step `id`, which must be begun in the current boot.
    fn begun_here(&self, id: &str, event: &Event) -> Result<usize, StateError> {
        let i = self.index(id, event)?;
        match &self.steps[i].status {
            StepState::Begun { boot_id, .. } if Some(boot_id.as_str()) == self.current_boot() => {
                Ok(i)
            }
            StepState::Begun { boot_id, .. } => Err(self.illegal(
                event,
                format!("it was begun in boot {boot_id}, not in this one; send Booted at start-up"),
            )),
            other => Err(self.illegal(event, format!("it was not begun (it is {})", other.name()))),
        }
    }

    fn complete(&mut self, id: &str, event: &Event, now: u64) -> Result<(), StateError> {
        let i = self.begun_here(id, event)?;
        let boot_id = self.current_boot().unwrap_or_default().to_string();
        self.steps[i].status = StepState::Done { boot_id, at: now };
        self.log(now, format!("step {id} done"));
        Ok(())
    }

    fn fail(&mut self, id: &str, f: &Failure, event: &Event, now: u64) -> Result<(), StateError> {
        let i = self.begun_here(id, event)?;
        let attempt = self.steps[i].attempts;
        self.steps[i].status = StepState::Failed {
            attempt,
            reason: f.reason.clone(),
            exit_code: f.exit_code,
            stderr_tail: f.stderr_tail.clone(),
        };
        self.status = Status::Failed {
            step: id.to_string(),
            reason: f.reason.clone(),
        };
        self.last_error = Some(format!("step {id}: {}", f.reason));
        self.log(
            now,
            format!("step {id} failed (attempt {attempt}): {}", f.reason),
        );
        Ok(())
    }

    fn need_operator(&mut self, action: &str, now: u64) {
        let mut notes = Vec::new();
        for step in &mut self.steps {
            if matches!(step.status, StepState::Begun { .. }) {
                step.status = StepState::Pending;
                notes.push(format!(
                    "step {} runs again after the operator acted",
                    step.id
                ));
            }
        }
        for note in notes {
            self.log(now, note);
        }
        self.status = Status::NeedsOperator {
            action: action.to_string(),
        };
        self.log(now, format!("waiting for an operator: {action}"));
    }

    fn reboot_requested(&mut self, event: &Event, now: u64) -> Result<(), StateError> {
        if self.reboots >= self.reboot_cap {
            return Err(StateError::RebootCap {
                reboots: self.reboots,
                cap: self.reboot_cap,
            });
        }
        let Some(boot) = self.current_boot().map(str::to_string) else {
            return Err(self.illegal(event, "no boot recorded; send Booted at start-up first"));
        };
        self.reboots += 1;
        self.pending_reboot = Some(boot);
        let what = format!(
            "reboot {} of at most {} requested",
            self.reboots, self.reboot_cap
        );
        self.log(now, what);
        Ok(())
    }

    fn retry(&mut self, target: &RetryTarget, event: &Event, now: u64) -> Result<(), StateError> {
        let reset: Vec<usize> = match target {
            RetryTarget::Step(id) => {
                let i = self.index(id, event)?;
                if !matches!(self.steps[i].status, StepState::Failed { .. }) {
                    let why = format!("step {id} has not failed");
                    return Err(self.illegal(event, why));
                }
                vec![i]
            }
            RetryTarget::AllFailed => (0..self.steps.len())
                .filter(|&i| matches!(self.steps[i].status, StepState::Failed { .. }))
                .collect(),
        };
        for &i in &reset {
            self.steps[i].status = StepState::Pending;
            let what = format!("step {} will run again", self.steps[i].id);
            self.log(now, what);
        }
        if self.reboots > 0 {
            let what = format!("reboot count reset (was {})", self.reboots);
            self.log(now, what);
            self.reboots = 0;
        }
        let still_failed = self.steps.iter().find_map(|s| match &s.status {
            StepState::Failed { reason, .. } => Some((s.id.clone(), reason.clone())),
            _ => None,
        });
        self.status = match still_failed {
            Some((step, reason)) => Status::Failed { step, reason },
            None if self
                .steps
                .iter()
                .all(|s| s.attempts == 0 && s.status == StepState::Pending) =>
            {
                Status::NotStarted
            }
            None => Status::InProgress,
        };
        self.log(now, "retry requested by the operator");
        Ok(())
    }

    fn finish(&mut self, event: &Event, now: u64) -> Result<(), StateError> {
        if self.steps.is_empty() {
            return Err(self.illegal(event, "the state has no steps (not bound to a plan)"));
        }
        if let Some(open) = self
            .steps
            .iter()
            .find(|s| !matches!(s.status, StepState::Done { .. }))
        {
            let why = format!("step {} is {}", open.id, open.status.name());
            return Err(self.illegal(event, why));
        }
        self.status = Status::Done;
        self.pending_reboot = None;
        // The failure is history now (the event log keeps it): a done plan
        // has no current error.
        self.last_error = None;
        self.log(now, "every step is done");
        Ok(())
    }
}
