//! Turning `path` (a file, a directory or a glob) into tables and their files.
//!
//! * A file is one table named by its stem, with format and compression extensions removed
//!   (`lineitem.csv.gz` → `lineitem`).
//! * A directory: each regular file in it is a table as above, and each subdirectory is one
//!   table named after the subdirectory, whose files are its splits. This mirrors what the
//!   file sinks write (`<dir>/<table>.csv`, `<dir>/<table>/part-00000.csv`).
//! * A glob: each matched file (or directory) as above.
//! * With `table = "name"`: every file found is a split of that one table.
//!
//! Names starting with `.` or `_` (hidden files, `_SUCCESS` markers) and names ending in
//! `.sluice-tmp` (a sink's unfinished output) are ignored. Files are sorted by path, so split
//! numbering is stable across runs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use sluice_core::{Error, Result};

use super::config::InputCompression;

/// Suffix of files a sink has not finished.
pub(crate) const TMP_SUFFIX: &str = ".sluice-tmp";

/// A table found on disk: its name and its files, sorted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FoundTable {
    pub name: String,
    pub files: Vec<PathBuf>,
}

const COMPRESSION_EXTS: [&str; 4] = ["gz", "gzip", "zst", "zstd"];
const FORMAT_EXTS: [&str; 9] = [
    "csv", "tsv", "txt", "jsonl", "ndjson", "json", "parquet", "pq", "parq",
];

/// Whether a directory entry named `name` is skipped.
pub(crate) fn is_ignored(name: &str) -> bool {
    name.starts_with('.') || name.starts_with('_') || name.ends_with(TMP_SUFFIX)
}

/// The table name of a file: its file name without compression and format extensions.
pub(crate) fn table_name_of(file_name: &str) -> String {
    let mut stem = file_name;
    if let Some((s, ext)) = stem.rsplit_once('.')
        && COMPRESSION_EXTS.contains(&ext.to_ascii_lowercase().as_str())
    {
        stem = s;
    }
    if let Some((s, ext)) = stem.rsplit_once('.')
        && FORMAT_EXTS.contains(&ext.to_ascii_lowercase().as_str())
    {
        stem = s;
    }
    if stem.is_empty() {
        file_name.to_string()
    } else {
        stem.to_string()
    }
}

/// The compression of `path` under `setting` (`auto` looks at the extension).
pub(crate) fn compression_of(path: &Path, setting: InputCompression) -> InputCompression {
    if setting != InputCompression::Auto {
        return setting;
    }
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .unwrap_or("")
        .to_ascii_lowercase();
    match ext.as_str() {
        "gz" | "gzip" => InputCompression::Gzip,
        "zst" | "zstd" => InputCompression::Zstd,
        _ => InputCompression::None,
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|e| Error::from_io(e, dir.display()))?;
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| Error::from_io(e, dir.display()))?;
        if !is_ignored(&entry.file_name().to_string_lossy()) {
            out.push(entry.path());
        }
    }
    out.sort();
    Ok(out)
}

/// Files directly inside `dir` (not recursing), sorted.
fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(read_dir_sorted(dir)?
        .into_iter()
        .filter(|p| p.is_file())
        .collect())
}

fn is_glob(path: &str) -> bool {
    path.contains(['*', '?', '['])
}

/// Expands `path` into tables. See the module docs.
pub(crate) fn discover(path: &str, table: Option<&str>) -> Result<Vec<FoundTable>> {
    // The job names a path that holds nothing to read: a config error (exit 2), like any
    // other wrong value in the job file.
    let not_found = |what: &str| {
        Error::config(format!("input path {path:?} {what}"))
            .with_hint(
                "check the path; a file, a directory or a glob such as \"data/*.csv\" is accepted",
            )
            .at("path")
    };
    // (table name, files) pairs in discovery order.
    let mut entries: Vec<(String, Vec<PathBuf>)> = Vec::new();
    let mut add_entry = |p: PathBuf| -> Result<()> {
        if p.is_dir() {
            let files = files_in(&p)?;
            if !files.is_empty() {
                entries.push((file_name(&p), files));
            }
        } else if p.is_file() {
            entries.push((table_name_of(&file_name(&p)), vec![p]));
        }
        Ok(())
    };
    if is_glob(path) {
        let paths = glob::glob(path).map_err(|e| {
            Error::config(format!("path {path:?} is not a valid glob: {e}"))
                .with_hint("use * for any characters, ? for one, [abc] for a set")
        })?;
        let mut matched: Vec<PathBuf> = Vec::new();
        for p in paths {
            let p = p.map_err(|e| Error::from_io(e.into(), path))?;
            if !is_ignored(&file_name(&p)) {
                matched.push(p);
            }
        }
        matched.sort();
        for p in matched {
            add_entry(p)?;
        }
        if entries.is_empty() {
            return Err(not_found("matches no files"));
        }
    } else {
        let p = Path::new(path);
        match std::fs::metadata(p) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(not_found("does not exist"));
            }
            Err(e) => return Err(Error::from_io(e, format!("input path {path:?}"))),
            Ok(m) if m.is_dir() => {
                for child in read_dir_sorted(p)? {
                    add_entry(child)?;
                }
                if entries.is_empty() {
                    return Err(not_found("is a directory with no data files"));
                }
            }
            Ok(_) => add_entry(p.to_path_buf())?,
        }
    }
    if let Some(t) = table {
        let mut files: Vec<PathBuf> = entries.into_iter().flat_map(|(_, f)| f).collect();
        files.sort();
        files.dedup();
        return Ok(vec![FoundTable {
            name: t.to_string(),
            files,
        }]);
    }
    let mut by_name: BTreeMap<String, Vec<PathBuf>> = BTreeMap::new();
    for (name, files) in entries {
        if let Some(prev) = by_name.get(&name) {
            return Err(Error::config(format!(
                "{} and {} would both be table {name:?}",
                prev[0].display(),
                files[0].display()
            ))
            .with_hint("move one of them away, or set table = \"...\" to read all as one table"));
        }
        by_name.insert(name, files);
    }
    Ok(by_name
        .into_iter()
        .map(|(name, files)| FoundTable { name, files })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_drop_format_and_compression_extensions() {
        assert_eq!(table_name_of("lineitem.csv.gz"), "lineitem");
        assert_eq!(table_name_of("lineitem.csv"), "lineitem");
        assert_eq!(table_name_of("events.jsonl.zst"), "events");
        assert_eq!(table_name_of("orders.parquet"), "orders");
        assert_eq!(table_name_of("part-00001.csv"), "part-00001");
        assert_eq!(table_name_of("a.b.csv"), "a.b");
        assert_eq!(table_name_of("noext"), "noext");
        assert_eq!(table_name_of("data.gz"), "data");
        assert_eq!(table_name_of("x.CSV.GZ"), "x");
    }

    #[test]
    fn hidden_and_temporary_files_are_ignored() {
        assert!(is_ignored(".orders.csv.sluice-tmp"));
        assert!(is_ignored(".DS_Store"));
        assert!(is_ignored("_SUCCESS"));
        assert!(is_ignored("orders.csv.sluice-tmp"));
        assert!(!is_ignored("orders.csv"));
    }

    #[test]
    fn compression_by_extension() {
        let auto = InputCompression::Auto;
        assert_eq!(
            compression_of(Path::new("a.csv.gz"), auto),
            InputCompression::Gzip
        );
        assert_eq!(
            compression_of(Path::new("a.csv.zst"), auto),
            InputCompression::Zstd
        );
        assert_eq!(
            compression_of(Path::new("a.csv"), auto),
            InputCompression::None
        );
        let g = InputCompression::Gzip;
        assert_eq!(
            compression_of(Path::new("a.csv"), g),
            InputCompression::Gzip
        );
    }

    #[test]
    fn directories_files_and_subdirectories() {
        let d = tempfile::tempdir().unwrap();
        std::fs::write(d.path().join("b.csv"), "x\n1\n").unwrap();
        std::fs::write(d.path().join("a.csv.gz"), "").unwrap();
        std::fs::write(d.path().join(".a.csv.sluice-tmp"), "").unwrap();
        std::fs::create_dir(d.path().join("c")).unwrap();
        std::fs::write(d.path().join("c/part-00001.csv"), "").unwrap();
        std::fs::write(d.path().join("c/part-00000.csv"), "").unwrap();
        let t = discover(d.path().to_str().unwrap(), None).unwrap();
        let names: Vec<_> = t.iter().map(|t| t.name.as_str()).collect();
        assert_eq!(names, ["a", "b", "c"]);
        assert_eq!(t[2].files.len(), 2);
        assert!(t[2].files[0].ends_with("part-00000.csv"));
        let one = discover(d.path().to_str().unwrap(), Some("all")).unwrap();
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].files.len(), 4);
        let g = format!("{}/*.csv", d.path().display());
        let t = discover(&g, None).unwrap();
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].name, "b");
    }

    #[test]
    fn missing_paths_are_config_errors() {
        // The job names a path with nothing to read: bad config (exit 2), not a disk problem.
        let e = discover("/nonexistent/sluice/x.csv", None).unwrap_err();
        assert_eq!(e.kind(), sluice_core::ErrorKind::Config);
        assert!(e.to_string().contains("/nonexistent/sluice/x.csv"));
        let e = discover("/nonexistent/sluice/*.csv", None).unwrap_err();
        assert_eq!(e.kind(), sluice_core::ErrorKind::Config);
        assert!(e.to_string().contains("matches no files"));
    }
}
