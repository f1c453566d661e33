//! The job runner the CLI shares with the server and the scheduler (as they arrive): it
//! loads and wires a job, takes its locks, chooses or starts its *generation*, runs it with the
//! engine, and persists every state change before anyone can observe it.
//!
//! ```text
//!  describe tables ─► lock (state dir, target) ─► generation: resume the one the target holds,
//!        │                                          or start one (plan → manifest → persist)
//!        ▼
//!  run the planned splits (sluice-engine) ──► record the run's end ─► finish the generation
//! ```
//!
//! A generation is one logical copy, from a from-scratch start to the run that finishes. Its
//! [`manifest`] — the configuration it depends on and every split with its bounds — is written
//! when it starts, in the state store and in the target (`_sluice_jobs`), so that:
//!
//! * a resume reads exactly the splits planned then, however the source's size or statistics
//!   moved since (a split's identity is its persisted bounds, not an index recomputed);
//! * a resume whose job file changed what is written (a transform, `write`, `table_map`, the
//!   tables) is refused, naming the differences, instead of mixing two configurations;
//! * a run from another state directory, or after the state directory was lost, resumes the
//!   generation the target holds instead of copying everything again;
//! * a finished `append` copy is not silently appended again.
//!
//! The binary keeps only argument parsing, display and exit codes.

pub mod manifest;
mod positions;
mod runner;
mod wire;

pub use positions::{EditEffect, PositionChange, PositionEdit, edit_positions, release_upstream};
pub use runner::{
    JobHandle, JobReport, RunRequest, StartOptions, Verifier, audit, job_state, run_job,
};
pub use wire::{build_spec, check};
