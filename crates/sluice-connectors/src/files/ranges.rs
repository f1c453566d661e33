//! Byte ranges of large uncompressed CSV and JSON Lines files: planning and reading.
//!
//! A file larger than `split_bytes` becomes several splits, each a byte range that starts and
//! ends at record boundaries, so a stop or a crash loses at most the ranges in flight
//! (`docs/adr/0006-file-byte-ranges.md`). The boundaries come from one scan of the file at
//! planning time: in JSON Lines a newline always ends a record; CSV is scanned with csv-core
//! configured exactly as arrow-csv's reader is, so a newline inside a quoted field is never
//! taken for a boundary. The scan also counts the records before each range, so messages keep
//! counting rows from the file start.
//!
//! A split's detail ([`FileSpan`]) holds everything its reader needs: the path, the range, the
//! header to read first, the rows before it, and the file's size and modification time at
//! planning. The reader relies on it alone and never re-derives ranges; if the file's size or
//! modification time differ from the detail, the ranges no longer match the file's records and
//! the read fails instead of delivering torn rows.

use std::cell::Cell;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Seek, SeekFrom};
use std::path::Path;
use std::rc::Rc;

use serde::{Deserialize, Serialize};
use sluice_core::{Error, Result, Split};

use super::source::{Input, READ_BUFFER, read_error};

/// Default size from which a file is cut into ranges, and the target size of a range.
pub(crate) const DEFAULT_SPLIT_BYTES: u64 = 64 << 20;

/// What one split of a CSV or JSON Lines file reads: the split's `detail`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct FileSpan {
    /// The file.
    pub path: String,
    /// Its size in bytes at planning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    /// Its modification time at planning, in nanoseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtime_ns: Option<u64>,
    /// The part of the file this split reads; `None`: all of it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<ByteRange>,
}

/// A part of a file that starts and ends at record boundaries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct ByteRange {
    /// First byte of the range.
    pub start: u64,
    /// One past its last byte.
    pub end: u64,
    /// Length of the CSV header at the file start, read before the range (0: no header).
    pub header_bytes: u64,
    /// Records of the file before `start`: CSV data rows (the header not counted), JSON Lines
    /// lines. Messages add it so that row and line numbers count from the file start.
    pub first_row: u64,
}

/// A file's size and modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub size: u64,
    pub mtime_ns: Option<u64>,
}

/// The size and modification time of `path` now.
pub(crate) fn stamp(path: &Path) -> Result<Stamp> {
    let m = std::fs::metadata(path).map_err(|e| Error::from_io(e, path.display()))?;
    let mtime_ns = m
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    Ok(Stamp {
        size: m.len(),
        mtime_ns,
    })
}

impl FileSpan {
    /// The span of a whole file.
    pub(crate) fn whole(path: &Path, stamp: Stamp) -> FileSpan {
        FileSpan {
            path: path.to_string_lossy().into_owned(),
            size: Some(stamp.size),
            mtime_ns: stamp.mtime_ns,
            range: None,
        }
    }

    /// The span of `range` of a file.
    pub(crate) fn part(path: &Path, stamp: Stamp, range: ByteRange) -> FileSpan {
        FileSpan {
            range: Some(range),
            ..FileSpan::whole(path, stamp)
        }
    }

    /// The span a split's detail describes.
    pub(crate) fn of(split: &Split) -> Result<FileSpan> {
        serde_json::from_value(split.detail.clone()).map_err(|e| {
            Error::internal(format!(
                "split {} has no readable file in its detail {}: {e}",
                split.id, split.detail
            ))
            .with_hint("run the job with --from-scratch to plan it again")
        })
    }

    /// Fails if the file is not the one planned: a range is only meaningful in the file it was
    /// cut from. A whole file is read as it is now.
    pub(crate) fn check_unchanged(&self) -> Result<()> {
        if self.range.is_none() {
            return Ok(());
        }
        let path = Path::new(&self.path);
        let now = match stamp(path) {
            Ok(s) => s,
            Err(e) => {
                return Err(Error::io(format!(
                    "file {} changed since the job was planned: {e}",
                    self.path
                ))
                .with_hint(FROM_SCRATCH_HINT));
            }
        };
        let size_changed = self.size.is_some_and(|s| s != now.size);
        let mtime_changed = self.mtime_ns.is_some() && self.mtime_ns != now.mtime_ns;
        if size_changed || mtime_changed {
            let mut what = Vec::new();
            if let Some(s) = self.size.filter(|_| size_changed) {
                what.push(format!("size {s} → {} bytes", now.size));
            }
            if mtime_changed {
                what.push("modification time".to_string());
            }
            return Err(Error::io(format!(
                "file {} changed since the job was planned ({}); its planned byte ranges no \
                 longer match its records",
                self.path,
                what.join(", ")
            ))
            .with_hint(FROM_SCRATCH_HINT));
        }
        Ok(())
    }
}

const FROM_SCRATCH_HINT: &str = "run with --from-scratch to copy the files as they are now (in append mode, clear the \
     target first); keep input files unchanged until a job has finished";

/// Cuts a file into ranges from the record ends a scan reports.
struct Cutter {
    split_bytes: u64,
    size: u64,
    header_bytes: u64,
    start: u64,
    rows: u64,
    first_row: u64,
    out: Vec<ByteRange>,
}

impl Cutter {
    fn new(split_bytes: u64, size: u64) -> Cutter {
        Cutter {
            split_bytes,
            size,
            header_bytes: 0,
            start: 0,
            rows: 0,
            first_row: 0,
            out: Vec::new(),
        }
    }

    /// A record ended just before byte `at`.
    fn record_end(&mut self, at: u64) {
        self.rows += 1;
        if at - self.start >= self.split_bytes && at < self.size {
            self.out.push(ByteRange {
                start: self.start,
                end: at,
                header_bytes: self.header_bytes,
                first_row: self.first_row,
            });
            self.start = at;
            self.first_row = self.rows;
        }
    }

    fn finish(mut self) -> Vec<ByteRange> {
        self.out.push(ByteRange {
            start: self.start,
            end: self.size,
            header_bytes: self.header_bytes,
            first_row: self.first_row,
        });
        self.out
    }
}

/// Ranges of an uncompressed JSON Lines file of `size` bytes: each ends after a newline.
pub(crate) fn plan_jsonl(path: &Path, size: u64, split_bytes: u64) -> Result<Vec<ByteRange>> {
    let file = File::open(path)
        .map_err(|e| Error::from_io(e, format!("cannot open {}", path.display())))?;
    let mut r = BufReader::with_capacity(READ_BUFFER, file);
    let mut cut = Cutter::new(split_bytes, size);
    let mut offset = 0u64;
    loop {
        let buf = r.fill_buf().map_err(|e| read_error(e, path))?;
        if buf.is_empty() {
            break;
        }
        for (i, b) in buf.iter().enumerate() {
            if *b == b'\n' {
                cut.record_end(offset + i as u64 + 1);
            }
        }
        let n = buf.len();
        r.consume(n);
        offset += n as u64;
    }
    Ok(cut.finish())
}

/// Ranges of an uncompressed CSV file of `size` bytes, found by `parser` (configured as the
/// reader's). With `header`, the first record is the header: it belongs to the file and is
/// read before every range.
pub(crate) fn plan_csv(
    path: &Path,
    size: u64,
    split_bytes: u64,
    mut parser: csv_core::Reader,
    header: bool,
) -> Result<Vec<ByteRange>> {
    use csv_core::ReadRecordResult as R;
    let file = File::open(path)
        .map_err(|e| Error::from_io(e, format!("cannot open {}", path.display())))?;
    let mut r = BufReader::with_capacity(READ_BUFFER, file);
    let mut cut = Cutter::new(split_bytes, size);
    let mut in_header = header;
    // Field contents are not needed: the buffers are overwritten again and again.
    let mut out = vec![0u8; 64 << 10];
    let mut ends = vec![0usize; 1024];
    let mut offset = 0u64;
    loop {
        let buf = r.fill_buf().map_err(|e| read_error(e, path))?;
        let eof = buf.is_empty();
        let mut i = 0;
        loop {
            // csv-core takes empty input for the end of the file: only pass it at the end.
            if i == buf.len() && !eof {
                break;
            }
            let (res, nin, _, _) = parser.read_record(&buf[i..], &mut out, &mut ends);
            i += nin;
            match res {
                R::Record => {
                    // A record ended by CR LF is cut after the LF when it is at hand (the
                    // reader skips a leading LF anyway: csv-core ignores empty lines).
                    if i > 0 && buf[i - 1] == b'\r' && buf.get(i) == Some(&b'\n') {
                        i += 1;
                    }
                    let at = offset + i as u64;
                    if in_header {
                        in_header = false;
                        cut.header_bytes = at;
                        cut.start = at;
                    } else {
                        cut.record_end(at);
                    }
                }
                R::OutputFull | R::OutputEndsFull => {}
                R::InputEmpty | R::End => break,
            }
        }
        let n = buf.len();
        r.consume(n);
        offset += n as u64;
        if eof {
            break;
        }
    }
    Ok(cut.finish())
}

/// Reads `[0, header_bytes)` then `[start, end)` of a file, counting the range's bytes.
struct RangeReader {
    file: File,
    /// (start, end, counted) parts still to read; the first is being read.
    parts: Vec<(u64, u64, bool)>,
    /// Bytes of the current part already read.
    done: u64,
    count: Rc<Cell<u64>>,
    path: String,
}

impl Read for RangeReader {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        loop {
            let Some(&(start, end, counted)) = self.parts.first() else {
                return Ok(0);
            };
            let left = end - start - self.done;
            if left == 0 {
                self.parts.remove(0);
                self.done = 0;
                continue;
            }
            if self.done == 0 {
                self.file.seek(SeekFrom::Start(start))?;
            }
            let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            let n = self.file.read(&mut buf[..want])?;
            if n == 0 {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!(
                        "{} ends at byte {}, before the planned range ends at {end}",
                        self.path,
                        start + self.done
                    ),
                ));
            }
            self.done += n as u64;
            if counted {
                self.count.set(self.count.get() + n as u64);
            }
            return Ok(n);
        }
    }
}

/// Opens `range` of the uncompressed file `path`: its header, then the range.
pub(crate) fn open_range(path: &Path, range: &ByteRange) -> Result<Input> {
    let file = File::open(path)
        .map_err(|e| Error::from_io(e, format!("cannot open {}", path.display())))?;
    let count = Rc::new(Cell::new(0));
    let mut parts = Vec::with_capacity(2);
    if range.header_bytes > 0 {
        parts.push((0, range.header_bytes, false));
    }
    parts.push((range.start, range.end, true));
    let reader = RangeReader {
        file,
        parts,
        done: 0,
        count: count.clone(),
        path: path.display().to_string(),
    };
    Ok(Input::new(
        Box::new(BufReader::with_capacity(READ_BUFFER, reader)),
        count,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn csv_parser() -> csv_core::Reader {
        csv_core::ReaderBuilder::new().build()
    }

    fn pieces(text: &[u8], ranges: &[ByteRange]) -> Vec<String> {
        ranges
            .iter()
            .map(|r| String::from_utf8_lossy(&text[r.start as usize..r.end as usize]).into_owned())
            .collect()
    }

    #[test]
    fn csv_ranges_never_cut_inside_quotes_and_cover_the_data() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("q.csv");
        let text = b"id,note\n1,\"a\nb\"\n2,x\n3,\"c\r\n\"\"d\"\"\n\"\n4,y\r\n5,z";
        std::fs::write(&p, text).unwrap();
        let size = text.len() as u64;
        let r = plan_csv(&p, size, 1, csv_parser(), true).unwrap();
        assert_eq!(
            pieces(text, &r),
            [
                "1,\"a\nb\"\n",
                "2,x\n",
                "3,\"c\r\n\"\"d\"\"\n\"\n",
                "4,y\r\n",
                "5,z"
            ]
        );
        assert!(r.iter().all(|r| r.header_bytes == 8));
        let rows: Vec<u64> = r.iter().map(|r| r.first_row).collect();
        assert_eq!(rows, [0, 1, 2, 3, 4]);
        // Larger ranges: cut at the first record end past the size.
        let r = plan_csv(&p, size, 12, csv_parser(), true).unwrap();
        assert_eq!(r.len(), 3, "{:?}", pieces(text, &r));
        assert_eq!(r[0].start, 8);
        assert_eq!(r.last().unwrap().end, size);
        for w in r.windows(2) {
            assert_eq!(w[0].end, w[1].start);
        }
        // Without a header, the first record is data.
        let r = plan_csv(&p, size, 1, csv_parser(), false).unwrap();
        assert_eq!(r[0].start, 0);
        assert_eq!(r[0].header_bytes, 0);
        assert_eq!(r[1].first_row, 1);
    }

    #[test]
    fn a_quote_inside_an_unquoted_field_opens_nothing() {
        // csv-core (and so the reader) treats a quote after the field start as a character.
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("q.csv");
        let text = b"a,b\n1,x\"y\n2,z\n";
        std::fs::write(&p, text).unwrap();
        let r = plan_csv(&p, text.len() as u64, 1, csv_parser(), true).unwrap();
        assert_eq!(pieces(text, &r), ["1,x\"y\n", "2,z\n"]);
    }

    #[test]
    fn jsonl_ranges_end_after_newlines() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("x.jsonl");
        let text = b"{\"a\":1}\n\n{\"a\":2}\n{\"a\":3}";
        std::fs::write(&p, text).unwrap();
        let r = plan_jsonl(&p, text.len() as u64, 5).unwrap();
        assert_eq!(
            pieces(text, &r),
            ["{\"a\":1}\n", "\n{\"a\":2}\n", "{\"a\":3}"]
        );
        let lines: Vec<u64> = r.iter().map(|r| r.first_row).collect();
        assert_eq!(lines, [0, 1, 3]);
        let one = plan_jsonl(&p, text.len() as u64, 1 << 20).unwrap();
        assert_eq!(one.len(), 1);
    }

    #[test]
    fn a_range_reads_the_header_then_its_bytes() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("h.csv");
        std::fs::write(&p, "id\n1\n2\n3\n").unwrap();
        let range = ByteRange {
            start: 5,
            end: 9,
            header_bytes: 3,
            first_row: 1,
        };
        let mut input = open_range(&p, &range).unwrap();
        let mut s = String::new();
        input.reader.read_to_string(&mut s).unwrap();
        assert_eq!(s, "id\n2\n3\n");
        assert_eq!(input.take_bytes(), 4);
        let past = ByteRange { end: 20, ..range };
        let mut input = open_range(&p, &past).unwrap();
        let e = input.reader.read_to_string(&mut s).unwrap_err();
        assert!(
            e.to_string().contains("before the planned range ends"),
            "{e}"
        );
    }

    #[test]
    fn a_changed_file_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("c.csv");
        std::fs::write(&p, "id\n1\n2\n").unwrap();
        let range = ByteRange {
            start: 3,
            end: 5,
            header_bytes: 3,
            first_row: 0,
        };
        let span = FileSpan::part(&p, stamp(&p).unwrap(), range);
        span.check_unchanged().unwrap();
        let back: FileSpan = serde_json::from_value(serde_json::to_value(&span).unwrap()).unwrap();
        assert_eq!(back, span);
        std::fs::write(&p, "id\n1\n2\n3\n").unwrap();
        let e = span.check_unchanged().unwrap_err();
        assert!(
            e.to_string().contains("changed since the job was planned"),
            "{e}"
        );
        assert!(e.hint().unwrap().contains("--from-scratch"));
        // A whole file is read as it is.
        FileSpan::whole(
            &p,
            Stamp {
                size: 1,
                mtime_ns: None,
            },
        )
        .check_unchanged()
        .unwrap();
    }
}
