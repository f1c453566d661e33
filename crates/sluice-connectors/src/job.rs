//! The job file: `[job]`, `[source]`, `[[transform]]`, `[sink]`, `[errors]`.
//!
//! [`JobFile::load`] reads and checks a TOML file; [`JobFile::from_doc`] takes an already
//! parsed document (the REST API's JSON goes through the same path). Every error is a
//! [`ConfigError`] that names file, line and column, says what is wrong and what is accepted.

use std::path::Path;

use serde::Deserialize;
use sluice_core::config::{ConfigDoc, ConfigError, HumanDuration};

use crate::registry::{SinkConfig, SourceConfig};
use crate::transforms::TransformConfig;

/// A whole job file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobFile {
    /// `[job]`: name, mode, parallelism, timeouts.
    pub job: JobSection,
    /// `[source]`: where rows come from.
    pub source: SourceConfig,
    /// `[[transform]]`: zero or more, applied in order.
    #[serde(default)]
    pub transform: Vec<TransformConfig>,
    /// `[sink]`: where rows go.
    pub sink: SinkConfig,
    /// `[errors]`: bad-record policy.
    #[serde(default)]
    pub errors: ErrorsSection,
}

/// `batch` (read everything once, then finish) or `streaming` (run until stopped).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobMode {
    #[default]
    Batch,
    Streaming,
}

/// `[job]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSection {
    /// Names the job's state across runs, e.g. `"lineitem-copy"`.
    pub name: String,
    /// `batch` (default) or `streaming`.
    #[serde(default)]
    pub mode: JobMode,
    /// Concurrent readers and writers (default: number of cores).
    #[serde(default)]
    pub parallelism: Option<usize>,
    /// Stop gracefully once the job has run this long, e.g. `"2h"`.
    #[serde(default)]
    pub timeout: Option<HumanDuration>,
    /// Streaming: how often positions are committed, e.g. `"10s"`. Accepted in batch mode,
    /// where a checkpoint is a finished chunk.
    #[serde(default)]
    pub checkpoint_interval: Option<HumanDuration>,
    /// Streaming: a checkpoint taking longer than this fails, e.g. `"60s"`.
    #[serde(default)]
    pub checkpoint_timeout: Option<HumanDuration>,
    /// Run `sluice verify` after a finished batch run: `true` (differences fail the run,
    /// exit 4) or `"repair"` (differences are repaired, then verified again: the target ends
    /// equal to the source as it is at the end, even if the copy was resumed across changes
    /// of the source). Any source and sink `sluice verify` compares.
    #[serde(default)]
    pub verify: VerifyAfter,
}

/// `[job] verify`: `false` (default), `true` or `"repair"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum VerifyAfter {
    #[default]
    Off,
    /// Compare; differences fail the run.
    Compare,
    /// Compare, repair the differences, compare again.
    Repair,
}

impl VerifyAfter {
    /// Whether a verify runs after a finished copy.
    pub fn enabled(self) -> bool {
        self != VerifyAfter::Off
    }
}

impl<'de> Deserialize<'de> for VerifyAfter {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Flag(bool),
            Word(String),
        }
        match Raw::deserialize(d)? {
            Raw::Flag(false) => Ok(VerifyAfter::Off),
            Raw::Flag(true) => Ok(VerifyAfter::Compare),
            Raw::Word(w) if w == "repair" => Ok(VerifyAfter::Repair),
            Raw::Word(w) => Err(serde::de::Error::custom(format!(
                "`verify` is true, false or \"repair\", not {w:?}"
            ))),
        }
    }
}

/// `[errors]`: how many bad records are tolerated, and where they go.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ErrorsSection {
    /// Bad records tolerated before the job fails (default 0: the first one fails it).
    #[serde(default)]
    pub max_errors: u64,
    /// Fraction of the rows read that may be bad, e.g. `0.001`.
    #[serde(default)]
    pub max_error_ratio: Option<f64>,
    /// Where bad records go: `{ type = "jsonl", path = "bad.jsonl" }`. Each line holds the
    /// row, the error, the table, the split and its position.
    #[serde(default)]
    pub dead_letter: Option<DeadLetterConfig>,
}

/// `[errors] dead_letter`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeadLetterConfig {
    /// Only `jsonl` so far.
    #[serde(rename = "type")]
    pub kind: DeadLetterKind,
    /// The file bad records are appended to, e.g. `"bad.jsonl"`.
    pub path: std::path::PathBuf,
}

/// Dead-letter formats.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeadLetterKind {
    Jsonl,
}

/// A build error of `section`, at the option it names when the file has it.
fn located(doc: &ConfigDoc, section: &str, e: &sluice_core::Error) -> ConfigError {
    let path = e
        .key()
        .map(|k| sluice_core::error::key_within(section, k))
        .filter(|p| doc.has(p))
        .unwrap_or_else(|| section.to_string());
    doc.error_at(&path, e.message().to_string(), e.hint().map(str::to_string))
}

impl JobFile {
    /// Reads, parses and checks the job file at `path`.
    pub fn load(path: &Path) -> Result<(JobFile, ConfigDoc), ConfigError> {
        let name = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError {
            file: name.clone(),
            location: None,
            message: format!("cannot read the job file: {e}"),
            hint: Some("check the path; run `sluice run --help` for an example job file".into()),
            snippet: None,
        })?;
        let doc = ConfigDoc::parse_toml(&name, &text)?;
        let job = Self::from_doc(&doc)?;
        Ok((job, doc))
    }

    /// Deserializes and checks a parsed document.
    pub fn from_doc(doc: &ConfigDoc) -> Result<JobFile, ConfigError> {
        let mut job: JobFile = doc.deserialize()?;
        // Change capture never ends: its job streams unless the file says otherwise.
        if job.source.is_cdc() && doc.value.pointer("/job/mode").is_none() {
            job.job.mode = JobMode::Streaming;
        }
        job.check(doc)?;
        Ok(job)
    }

    /// Checks that need the whole file (values valid on their own but not together).
    fn check(&self, doc: &ConfigDoc) -> Result<(), ConfigError> {
        if self.job.name.trim().is_empty() {
            return Err(doc.error_at(
                "job.name",
                "`name` must not be empty",
                Some("name the job, e.g. name = \"orders-copy\"; it keys the job's state".into()),
            ));
        }
        match self.job.mode {
            JobMode::Streaming if !self.source.can_stream() => {
                return Err(doc.error_at(
                    "job.mode",
                    format!("source type `{}` cannot stream", self.source.type_name()),
                    Some(
                        "use mode = \"batch\"; streaming needs a change-capture, queue or \
                         generate source"
                            .into(),
                    ),
                ));
            }
            JobMode::Streaming if self.sink.write_mode() == sluice_core::WriteMode::Overwrite => {
                return Err(doc.error_at(
                    "sink.write",
                    "write = \"overwrite\" replaces a table's content when the copy ends, and \
                     a stream does not end",
                    Some("use write = \"append\" or \"upsert\" for a streaming job".into()),
                ));
            }
            JobMode::Batch if !self.source.is_bounded() => {
                return Err(doc.error_at(
                    "source",
                    format!(
                        "this `{}` source never ends, and a batch job must",
                        self.source.type_name()
                    ),
                    Some(
                        "give it an end (e.g. rows = 1000000), or set mode = \"streaming\" in \
                         [job] to run until stopped"
                            .into(),
                    ),
                ));
            }
            _ => {}
        }

        if self.job.parallelism == Some(0) {
            return Err(doc.error_at(
                "job.parallelism",
                "`parallelism` must be at least 1",
                Some("leave it out to use the number of cores".into()),
            ));
        }
        if let Some(r) = self.errors.max_error_ratio
            && !(0.0..=1.0).contains(&r)
        {
            return Err(doc.error_at(
                "errors.max_error_ratio",
                format!("max_error_ratio must be between 0 and 1, not {r}"),
                Some("e.g. max_error_ratio = 0.001 tolerates one bad row in a thousand".into()),
            ));
        }
        // Expressions are parsed here too, so a syntax error points into the job file.
        for (i, t) in self.transform.iter().enumerate() {
            if let Some((key, src)) = t.expression()
                && let Err((bytes, msg)) = crate::transforms::check_expression(src)
            {
                let kind = if key == "where" { "filter" } else { "add" };
                return Err(doc.error_in_string(
                    &format!("transform[{i}].{key}"),
                    bytes,
                    format!("{kind} transform: `{key}`: {msg}"),
                    Some(crate::transforms::SYNTAX_HINT.to_string()),
                ));
            }
        }
        // Building checks every connector's and transform's options without I/O; an error is
        // located at the option it names, or at its section.
        if let Err(e) = self.source.build_for(&self.sink, &self.job.name) {
            return Err(located(doc, "source", &e));
        }
        if let Err(e) = self.sink.build() {
            return Err(located(doc, "sink", &e));
        }
        for (i, t) in self.transform.iter().enumerate() {
            if let Err(e) = t.build() {
                return Err(located(doc, &format!("transform[{i}]"), &e));
            }
        }
        if let Err((k, e)) = self.sink.check_table_map_entries() {
            return Err(doc.error_at(
                &format!("sink.table_map.{k}"),
                e.message().to_string(),
                e.hint().map(str::to_string),
            ));
        }
        Ok(())
    }
}
