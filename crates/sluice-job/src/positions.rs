//! Operator edits of a stopped job's committed positions (the REST API's `PATCH
//! /connectors/{c}/offsets`): skip a split, read one again, or set its position.
//!
//! A split's position is committed in the target with its rows, so an edit is written there
//! too, in one transaction with the other edits of the request, while the job's locks are
//! held; the state store's copy follows. An edit that would make the next run write rows a
//! second time — reading again a split that committed rows, into a database table in
//! `append` or `overwrite` mode — is refused: only `upsert` (rows replaced by key) and file
//! sinks (a split's file is replaced by name) take it.

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;
use serde_json::Value;
use sluice_connectors::job::JobFile;
use sluice_core::{CheckpointEdit, Error, Position, Result, TableId, WriteMode};
use sluice_engine::JobSpec;
use sluice_state::{SplitRecord, StateStore};

use crate::manifest::Manifest;
use crate::runner::{Found, audit, committed, context, find_generation};
use crate::wire::build_spec;

/// What an operator asks of one split.
#[derive(Debug, Clone, PartialEq)]
pub enum PositionChange {
    /// Forget its position: the next run reads it from its start.
    Redo,
    /// Mark it complete: the next run does not read the rest of it.
    Skip,
    /// Continue after this source-specific position value.
    Set(Value),
}

/// One edit: a split (by its id) and what to do with it.
#[derive(Debug, Clone, PartialEq)]
pub struct PositionEdit {
    pub split: String,
    pub change: PositionChange,
}

/// What an edit does (or would do, in a dry run) to one split.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EditEffect {
    pub split: String,
    /// The target table.
    pub table: String,
    /// `redo`, `skip`, `set`, `unchanged` or `refused`.
    pub effect: &'static str,
    /// Rows the split had committed before the edit.
    pub rows: u64,
    /// What it means for the next run, or why it is refused.
    pub detail: String,
}

/// Applies `edits` to job `job`'s unfinished copy (`apply = false`: only says what they would
/// do). Refuses, changing nothing, an unknown split or an edit that would double rows. Takes
/// the job's locks (in the state store and the target), so it fails while the job runs.
pub async fn edit_positions(
    job: &JobFile,
    store: Arc<dyn StateStore>,
    edits: &[PositionEdit],
    apply: bool,
    actor: &str,
) -> Result<Vec<EditEffect>> {
    let spec = build_spec(job)?;
    let res = edit(&spec, job, &store, edits, apply, actor).await;
    sluice_engine::close(&spec).await;
    res
}

async fn edit(
    spec: &JobSpec,
    job: &JobFile,
    store: &Arc<dyn StateStore>,
    edits: &[PositionEdit],
    apply: bool,
    actor: &str,
) -> Result<Vec<EditEffect>> {
    let name = spec.name.clone();
    // Both locks, for a dry run too: nothing moves while the positions are read.
    let _store_lock = store.lock_job(&name).await?;
    // The target's locks come first, as in a run (a MySQL sink learns from them where its
    // records are): for the tables the source has now, and below for the copy's own.
    let planned = sluice_engine::describe_tables(spec, &sluice_engine::Progress::new()).await?;
    let mut targets: Vec<TableId> = planned.iter().map(|t| t.plan.target.clone()).collect();
    let _sink_lock = spec.sink.lock(&name, &targets).await?;
    let (id, manifest) = match find_generation(spec, store, &name, false).await? {
        Found::Unfinished {
            id,
            manifest: Some(m),
        } => (id, m),
        Found::Unfinished { id, manifest: None } => {
            return Err(Error::config(format!(
                "job {name:?}'s unfinished copy (generation {id}) was started by an older \
                 Sluice that did not record its splits; its positions cannot be edited"
            ))
            .with_hint("reset the offsets to copy everything again"));
        }
        Found::Finished { id } => {
            return Err(Error::config(format!(
                "job {name:?}'s copy finished (generation {id}): no position is left to edit"
            ))
            .with_hint("a restart, or a reset of the offsets, copies everything again"));
        }
        Found::Nothing => {
            return Err(Error::config(format!(
                "job {name:?} has no copy in progress: no position to edit"
            )));
        }
    };
    let manifest: Manifest = serde_json::from_value(manifest)
        .map_err(|e| Error::internal(format!("unreadable manifest of generation {id}: {e}")))?;
    let tables: HashMap<&str, &str> = manifest
        .tables
        .iter()
        .flat_map(|t| t.splits.iter().map(|s| (s.id.as_str(), t.target.as_str())))
        .collect();
    spec.sink.begin(&context(&name, &id))?;
    let mut more = Vec::new();
    for t in &manifest.tables {
        let id = TableId::parse(&t.target)?;
        if !targets.contains(&id) {
            targets.push(id.clone());
            more.push(id);
        }
    }
    // Tables of the copy the source no longer has (a run would refuse to resume then, but
    // their positions may still be edited).
    let _more_lock = if more.is_empty() {
        None
    } else {
        spec.sink.lock(&format!("{name}.edit"), &more).await?
    };
    let committed = committed(spec, store, &name, &id).await?;
    let rewrite_ok = !spec.sink.keeps_checkpoints() || job.sink.write_mode() == WriteMode::Upsert;

    let mut effects = Vec::new();
    let mut changes = Vec::new();
    for e in edits {
        let Some(target) = tables.get(e.split.as_str()) else {
            let mut known: Vec<&str> = tables.keys().copied().collect();
            known.sort();
            known.truncate(5);
            return Err(Error::config(format!(
                "job {name:?} has no split {:?} in its copy (generation {id}); its splits are \
                 named like {}",
                e.split,
                known.join(", ")
            )));
        };
        let now = committed.get(&e.split);
        let rows = now.map_or(0, |c| c.rows);
        let table = now.map_or_else(|| target.to_string(), |c| c.table.clone());
        let new = match &e.change {
            PositionChange::Redo => None,
            PositionChange::Skip => Some(Position {
                done: true,
                ..Position::new(
                    &e.split,
                    now.map_or(Value::Null, |c| c.position.value.clone()),
                )
            }),
            PositionChange::Set(v) => Some(Position::new(&e.split, v.clone())),
        };
        let (effect, detail) = if now.map(|c| &c.position) == new.as_ref() {
            ("unchanged", "the split already stands there".to_string())
        } else if e.change != PositionChange::Skip && rows > 0 && !rewrite_ok {
            (
                "refused",
                format!(
                    "the split committed {rows} rows to {target}; reading it again would write \
                     them a second time with write = \"{}\" (only upsert, or a file sink, takes \
                     a rewind); reset the offsets to copy everything again instead",
                    job.sink.write_mode().as_str()
                ),
            )
        } else {
            match &e.change {
                PositionChange::Redo => (
                    "redo",
                    format!("the next run reads the split from its start ({rows} rows committed)"),
                ),
                PositionChange::Skip => (
                    "skip",
                    "the next run does not read the rest of the split: its rows not yet copied \
                     stay missing from the target (verify reports them)"
                        .to_string(),
                ),
                PositionChange::Set(_) => (
                    "set",
                    "the next run continues the split after the given position".to_string(),
                ),
            }
        };
        if effect != "unchanged" && effect != "refused" {
            changes.push(CheckpointEdit {
                split: e.split.clone(),
                target: TableId::parse(target)?,
                table: table.clone(),
                position: new,
                rows,
            });
        }
        effects.push(EditEffect {
            split: e.split.clone(),
            table,
            effect,
            rows,
            detail,
        });
    }
    if !apply {
        return Ok(effects);
    }
    if let Some(r) = effects.iter().find(|e| e.effect == "refused") {
        return Err(Error::config(format!(
            "split {} of job {name:?}: {}",
            r.split, r.detail
        )));
    }
    if changes.is_empty() {
        return Ok(effects);
    }
    // Invariant: the target (the truth for sinks that keep checkpoints) changes first, all
    // edits in one transaction; the state store follows.
    spec.sink.set_checkpoints(&changes).await?;
    for c in &changes {
        match &c.position {
            None => store.forget_position(&name, &id, &c.split).await?,
            Some(p) => {
                let rec = SplitRecord {
                    split: c.split.clone(),
                    table: c.table.clone(),
                    position: p.clone(),
                    rows: c.rows,
                    updated_at: String::new(),
                };
                store.save_position(&name, &id, &rec).await?
            }
        }
    }
    let detail = effects
        .iter()
        .filter(|e| e.effect != "unchanged")
        .map(|e| format!("{}: {}", e.split, e.effect))
        .collect::<Vec<_>>()
        .join(", ");
    audit(&**store, &name, actor, "offsets.edit", detail).await;
    Ok(effects)
}

/// Releases what the job's source holds upstream between runs (a replication slot and its
/// publication), for a job being retired: takes the job's lock in the store (so it fails
/// while the job runs here), and the source refuses while anything streams from it.
pub async fn release_upstream(
    job: &JobFile,
    store: Arc<dyn StateStore>,
    actor: &str,
) -> Result<Option<String>> {
    let spec = build_spec(job)?;
    let name = spec.name.clone();
    let res = async {
        let _lock = store.lock_job(&name).await?;
        spec.source.release().await
    }
    .await;
    sluice_engine::close(&spec).await;
    if let Ok(Some(what)) = &res {
        audit(&*store, &name, actor, "source.release", what.clone()).await;
    }
    res
}
