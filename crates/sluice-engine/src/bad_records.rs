//! Bad records: rows a transform rejects (a value that cannot be cast, a division by zero).
//!
//! With `[errors] max_errors = 0` (the default) the first bad record fails the job. Above zero,
//! a batch whose transforms fail with a data error is bisected down to the offending rows; the
//! other rows go on, and each bad row goes to the dead-letter file with its error, table, split
//! and the split's position, until the count passes `max_errors` (or the fraction of rows read
//! passes `max_error_ratio`), which fails the job.
//!
//! A dead-letter line is one JSON object: `job`, `table`, `split`, `position`, `row_in_batch`,
//! `error`, `row` (column → value, every value exact in its text form, see [`value_json`]) and
//! `types` (column → logical type, e.g. `timestamptz`), so the row can be read back as it was.
//!
//! Limits: only transform errors are isolated this way. A row the source cannot decode (a CSV
//! line with the wrong number of fields) or that the target rejects (a constraint violation)
//! still fails its split. The dead-letter file is appended to and fsynced per record; a split
//! redone after a crash may write its bad records again (at-least-once).

use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use arrow::array::{Array, ArrayRef, AsArray};
use arrow::datatypes::*;
use arrow::record_batch::RecordBatch;
use sluice_core::{BoundTransform, Error, ErrorKind, Position, Result};

/// How many bad records a job tolerates, and where they go.
#[derive(Debug, Default)]
pub struct BadRecordPolicy {
    /// Bad records tolerated before the job fails (0: the first one fails it).
    pub max_errors: u64,
    /// Fraction of rows read that may be bad, e.g. 0.01.
    pub max_ratio: Option<f64>,
    /// JSON Lines file receiving each bad record.
    pub dead_letter: Option<PathBuf>,
    /// Bad records seen so far in this run.
    count: AtomicU64,
    file: Mutex<Option<std::fs::File>>,
}

impl BadRecordPolicy {
    /// A policy tolerating `max_errors` (and `max_ratio`), writing to `dead_letter`.
    pub fn new(max_errors: u64, max_ratio: Option<f64>, dead_letter: Option<PathBuf>) -> Self {
        BadRecordPolicy {
            max_errors,
            max_ratio,
            dead_letter,
            ..Default::default()
        }
    }

    /// Whether any bad record is tolerated.
    pub fn tolerant(&self) -> bool {
        self.max_errors > 0 || self.max_ratio.is_some_and(|r| r > 0.0)
    }

    /// Bad records seen so far.
    pub fn count(&self) -> u64 {
        self.count.load(Ordering::Relaxed)
    }

    /// Records one bad row; fails when the threshold is passed.
    fn record(&self, rec: serde_json::Value, rows_read: u64) -> Result<()> {
        let n = self.count.fetch_add(1, Ordering::Relaxed) + 1;
        if let Some(path) = &self.dead_letter {
            let mut f = self.file.lock().unwrap_or_else(|e| e.into_inner());
            if f.is_none() {
                *f = Some(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .map_err(|e| {
                            Error::from_io(
                                e,
                                format!("cannot open dead-letter file {}", path.display()),
                            )
                        })?,
                );
            }
            if let Some(file) = f.as_mut() {
                let mut line = rec.to_string();
                line.push('\n');
                file.write_all(line.as_bytes())
                    .and_then(|_| file.sync_data())
                    .map_err(|e| Error::from_io(e, format!("writing {}", path.display())))?;
            }
        }
        let over_count = n > self.max_errors && self.max_ratio.is_none();
        let over_ratio = self
            .max_ratio
            .is_some_and(|r| n > self.max_errors && (n as f64) > r * (rows_read.max(1) as f64));
        if over_count || over_ratio {
            return Err(Error::data(format!(
                "too many bad records: {n} (max_errors = {}{})",
                self.max_errors,
                self.max_ratio.map(|r| format!(", max_error_ratio = {r}")).unwrap_or_default()
            ))
            .with_hint("fix the data or the transforms, or raise max_errors in [errors]; the bad records are in the dead-letter file"));
        }
        Ok(())
    }
}

/// Applies `transforms` in order.
pub(crate) fn apply_all(
    transforms: &[Box<dyn BoundTransform>],
    mut data: RecordBatch,
) -> Result<RecordBatch> {
    for t in transforms {
        data = t.apply(data)?;
    }
    Ok(data)
}

/// Where a bad record came from, for the dead-letter file.
pub(crate) struct Origin<'a> {
    pub job: &'a str,
    pub table: &'a str,
    pub split: &'a str,
    pub position: &'a Position,
    pub rows_read: u64,
}

/// Applies `transforms`; with a tolerant policy, data errors are narrowed to single rows by
/// bisection, recorded, and the good rows returned.
pub(crate) fn apply_tolerant(
    transforms: &[Box<dyn BoundTransform>],
    data: RecordBatch,
    policy: &BadRecordPolicy,
    origin: &Origin<'_>,
) -> Result<RecordBatch> {
    match apply_all(transforms, data.clone()) {
        Ok(d) => Ok(d),
        Err(e) if e.kind() == ErrorKind::Data && policy.tolerant() => {
            let mut good = Vec::new();
            bisect(transforms, &data, 0, policy, origin, &mut good)?;
            let schema = match transforms.last() {
                Some(t) => t.output().arrow.clone(),
                None => data.schema(),
            };
            Ok(arrow::compute::concat_batches(&schema, &good)?)
        }
        Err(e) => Err(e),
    }
}

fn bisect(
    transforms: &[Box<dyn BoundTransform>],
    data: &RecordBatch,
    offset: usize,
    policy: &BadRecordPolicy,
    origin: &Origin<'_>,
    good: &mut Vec<RecordBatch>,
) -> Result<()> {
    match apply_all(transforms, data.clone()) {
        Ok(d) => {
            good.push(d);
            Ok(())
        }
        Err(e) if e.kind() != ErrorKind::Data => Err(e),
        Err(e) if data.num_rows() <= 1 => {
            let (row, types) = row_json(data);
            policy.record(
                serde_json::json!({
                    "job": origin.job,
                    "table": origin.table,
                    "split": origin.split,
                    "position": origin.position,
                    "row_in_batch": offset,
                    "error": sluice_core::config::redact(&e.to_string()),
                    "row": row,
                    "types": types,
                }),
                origin.rows_read,
            )
        }
        Err(_) => {
            let half = data.num_rows() / 2;
            bisect(
                transforms,
                &data.slice(0, half),
                offset,
                policy,
                origin,
                good,
            )?;
            bisect(
                transforms,
                &data.slice(half, data.num_rows() - half),
                offset + half,
                policy,
                origin,
                good,
            )
        }
    }
}

/// One row as JSON objects: `row` maps each column to its value (see [`value_json`]), `types`
/// each column to its logical type (`timestamptz`, `decimal(12,2)` …), so a reader knows how
/// to take a value back.
fn row_json(batch: &RecordBatch) -> (serde_json::Value, serde_json::Value) {
    let mut row = serde_json::Map::new();
    let mut types = serde_json::Map::new();
    for (i, f) in batch.schema().fields().iter().enumerate() {
        row.insert(f.name().clone(), value_json(f, batch.column(i).as_ref(), 0));
        let ty = sluice_core::LogicalType::of_field(f)
            .map(|t| t.to_string())
            .unwrap_or_else(|_| f.data_type().to_string());
        types.insert(f.name().clone(), serde_json::Value::String(ty));
    }
    (
        serde_json::Value::Object(row),
        serde_json::Value::Object(types),
    )
}

/// The value at `row` of `col` (whose field is `field`) in the dead-letter file: `null` for
/// NULL; a JSON array for a list (elements likewise), an object for a struct; for every other
/// type a string holding the exact text form, the same for all values of the type's range
/// (no value becomes null, nothing is rounded):
///
/// | type | form |
/// | --- | --- |
/// | bool, integers | `true`, `-42` |
/// | floats | shortest text that reads back the same: `0.1`, `1e300`, `-0.0`, `NaN`, `Infinity`, `-Infinity` |
/// | decimals | exact, with the type's scale: `-12.50`; unconstrained decimals as the source wrote them |
/// | text, json, enum | the text as is |
/// | binary | lowercase hex: `00ff10` |
/// | uuid | `a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11` |
/// | date | `2024-02-29`, years beyond 9999 as `+294247`, before 1 as `-0001` (ISO 8601, 0 = 1 BC) |
/// | time | `23:59:59.123456` (`24:00:00` kept) |
/// | timestamp | `2024-02-29T23:59:59.123456` |
/// | timestamptz | the UTC instant: `2024-02-29T23:59:59.123456+00:00` |
/// | interval | ISO 8601 with a sign per part: `P1M2DT3H4M5.000006S`, `P-1M-2DT-0.5S`, `PT0S` |
///
/// Fractions of seconds have 3, 6 or 9 digits as needed. PostgreSQL's `±infinity` arrive as
/// the extreme values of their type and are written as those dates.
fn value_json(field: &Field, col: &dyn Array, row: usize) -> serde_json::Value {
    use serde_json::Value;
    if col.is_null(row) {
        return Value::Null;
    }
    let text = |s: String| Value::String(s);
    match col.data_type() {
        DataType::Null => Value::Null,
        DataType::Boolean => text(col.as_boolean().value(row).to_string()),
        DataType::Int8 => text(col.as_primitive::<Int8Type>().value(row).to_string()),
        DataType::Int16 => text(col.as_primitive::<Int16Type>().value(row).to_string()),
        DataType::Int32 => text(col.as_primitive::<Int32Type>().value(row).to_string()),
        DataType::Int64 => text(col.as_primitive::<Int64Type>().value(row).to_string()),
        DataType::UInt8 => text(col.as_primitive::<UInt8Type>().value(row).to_string()),
        DataType::UInt16 => text(col.as_primitive::<UInt16Type>().value(row).to_string()),
        DataType::UInt32 => text(col.as_primitive::<UInt32Type>().value(row).to_string()),
        DataType::UInt64 => text(col.as_primitive::<UInt64Type>().value(row).to_string()),
        DataType::Float16 => {
            // Every f16 is an f32 exactly, and the f32's shortest text reads back the same.
            let v = col.as_primitive::<Float16Type>().value(row).to_f32();
            text(float_text(v as f64, |_| format!("{v:?}")))
        }
        DataType::Float32 => {
            let v = col.as_primitive::<Float32Type>().value(row);
            text(float_text(v as f64, |_| format!("{v:?}")))
        }
        DataType::Float64 => {
            let v = col.as_primitive::<Float64Type>().value(row);
            text(float_text(v, |_| format!("{v:?}")))
        }
        DataType::Decimal32(_, s) => text(decimal_text(
            col.as_primitive::<Decimal32Type>().value(row).to_string(),
            *s,
        )),
        DataType::Decimal64(_, s) => text(decimal_text(
            col.as_primitive::<Decimal64Type>().value(row).to_string(),
            *s,
        )),
        DataType::Decimal128(_, s) => text(decimal_text(
            col.as_primitive::<Decimal128Type>().value(row).to_string(),
            *s,
        )),
        DataType::Decimal256(_, s) => text(decimal_text(
            col.as_primitive::<Decimal256Type>().value(row).to_string(),
            *s,
        )),
        DataType::Utf8 => text(col.as_string::<i32>().value(row).to_string()),
        DataType::LargeUtf8 => text(col.as_string::<i64>().value(row).to_string()),
        DataType::Utf8View => text(col.as_string_view().value(row).to_string()),
        DataType::Binary => text(hex(col.as_binary::<i32>().value(row))),
        DataType::LargeBinary => text(hex(col.as_binary::<i64>().value(row))),
        DataType::BinaryView => text(hex(col.as_binary_view().value(row))),
        DataType::FixedSizeBinary(16)
            if field
                .metadata()
                .get(sluice_core::types::TYPE_KEY)
                .is_some_and(|t| t == "uuid") =>
        {
            text(uuid_text(col.as_fixed_size_binary().value(row)))
        }
        DataType::FixedSizeBinary(_) => text(hex(col.as_fixed_size_binary().value(row))),
        DataType::Date32 => text(date_text(col.as_primitive::<Date32Type>().value(row) as i64)),
        DataType::Date64 => {
            let ms = col.as_primitive::<Date64Type>().value(row);
            if ms % 86_400_000 == 0 {
                text(date_text(ms / 86_400_000))
            } else {
                text(datetime_text(ms as i128 * 1_000_000, None))
            }
        }
        DataType::Time32(u) => {
            let v = match u {
                TimeUnit::Second => col.as_primitive::<Time32SecondType>().value(row) as i128,
                _ => col.as_primitive::<Time32MillisecondType>().value(row) as i128,
            };
            text(time_text(v * unit_nanos(*u)))
        }
        DataType::Time64(u) => {
            let v = match u {
                TimeUnit::Nanosecond => col.as_primitive::<Time64NanosecondType>().value(row),
                _ => col.as_primitive::<Time64MicrosecondType>().value(row),
            };
            text(time_text(v as i128 * unit_nanos(*u)))
        }
        DataType::Timestamp(u, tz) => {
            let v = match u {
                TimeUnit::Second => col.as_primitive::<TimestampSecondType>().value(row),
                TimeUnit::Millisecond => col.as_primitive::<TimestampMillisecondType>().value(row),
                TimeUnit::Microsecond => col.as_primitive::<TimestampMicrosecondType>().value(row),
                TimeUnit::Nanosecond => col.as_primitive::<TimestampNanosecondType>().value(row),
            };
            // An instant is written in UTC, whatever zone the column names.
            text(datetime_text(
                v as i128 * unit_nanos(*u),
                tz.as_ref().map(|_| "+00:00"),
            ))
        }
        DataType::Duration(u) => {
            let v = match u {
                TimeUnit::Second => col.as_primitive::<DurationSecondType>().value(row),
                TimeUnit::Millisecond => col.as_primitive::<DurationMillisecondType>().value(row),
                TimeUnit::Microsecond => col.as_primitive::<DurationMicrosecondType>().value(row),
                TimeUnit::Nanosecond => col.as_primitive::<DurationNanosecondType>().value(row),
            };
            text(interval_text(0, 0, v as i128 * unit_nanos(*u)))
        }
        DataType::Interval(IntervalUnit::MonthDayNano) => {
            let v = col.as_primitive::<IntervalMonthDayNanoType>().value(row);
            text(interval_text(v.months, v.days, v.nanoseconds as i128))
        }
        DataType::Interval(IntervalUnit::DayTime) => {
            let v = col.as_primitive::<IntervalDayTimeType>().value(row);
            text(interval_text(0, v.days, v.milliseconds as i128 * 1_000_000))
        }
        DataType::Interval(IntervalUnit::YearMonth) => text(interval_text(
            col.as_primitive::<IntervalYearMonthType>().value(row),
            0,
            0,
        )),
        DataType::List(f) => list_json(f, &col.as_list::<i32>().value(row)),
        DataType::LargeList(f) => list_json(f, &col.as_list::<i64>().value(row)),
        DataType::FixedSizeList(f, _) => list_json(f, &col.as_fixed_size_list().value(row)),
        DataType::Struct(fields) => {
            let st = col.as_struct();
            let mut obj = serde_json::Map::new();
            for (i, f) in fields.iter().enumerate() {
                obj.insert(f.name().clone(), value_json(f, st.column(i).as_ref(), row));
            }
            Value::Object(obj)
        }
        DataType::Dictionary(_, values) => match arrow::compute::cast(&col.slice(row, 1), values) {
            Ok(a) => value_json(&Field::new(field.name(), (**values).clone(), true), &a, 0),
            Err(_) => display_json(col, row),
        },
        _ => display_json(col, row),
    }
}

fn list_json(item: &Field, values: &ArrayRef) -> serde_json::Value {
    serde_json::Value::Array(
        (0..values.len())
            .map(|i| value_json(item, values.as_ref(), i))
            .collect(),
    )
}

/// Types Sluice never produces (maps, unions …): Arrow's rendering.
fn display_json(col: &dyn Array, row: usize) -> serde_json::Value {
    arrow::util::display::array_value_to_string(col, row)
        .map(serde_json::Value::String)
        .unwrap_or(serde_json::Value::Null)
}

fn float_text(v: f64, shortest: impl Fn(f64) -> String) -> String {
    if v.is_nan() {
        "NaN".into()
    } else if v.is_infinite() {
        if v > 0.0 { "Infinity" } else { "-Infinity" }.into()
    } else {
        shortest(v)
    }
}

/// The integer `digits` (with its sign) divided by 10^scale, exactly.
fn decimal_text(digits: String, scale: i8) -> String {
    let (sign, d) = match digits.strip_prefix('-') {
        Some(d) => ("-", d),
        None => ("", digits.as_str()),
    };
    if scale <= 0 {
        let zeros = if d == "0" { 0 } else { (-scale) as usize };
        return format!("{sign}{d}{}", "0".repeat(zeros));
    }
    let scale = scale as usize;
    let d = format!("{d:0>width$}", width = scale + 1);
    let (int, frac) = d.split_at(d.len() - scale);
    format!("{sign}{int}.{frac}")
}

fn hex(b: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(b.len() * 2);
    for x in b {
        let _ = write!(s, "{x:02x}");
    }
    s
}

fn uuid_text(b: &[u8]) -> String {
    let h = hex(b);
    if h.len() != 32 {
        return h;
    }
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn unit_nanos(u: TimeUnit) -> i128 {
    match u {
        TimeUnit::Second => 1_000_000_000,
        TimeUnit::Millisecond => 1_000_000,
        TimeUnit::Microsecond => 1_000,
        TimeUnit::Nanosecond => 1,
    }
}

/// `(year, month, day)` of a day count from 1970-01-01, proleptic Gregorian, for any `i64`
/// (H. Hinnant's `civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z as i128 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    ((y + i128::from(m <= 2)) as i64, m, d)
}

fn date_text(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    let year = if (0..=9999).contains(&y) {
        format!("{y:04}")
    } else if y < 0 {
        format!("-{:04}", -y)
    } else {
        format!("+{y}")
    };
    format!("{year}-{m:02}-{d:02}")
}

/// `.123`, `.123456`, `.123456789` or nothing, for nanoseconds within a second.
fn fraction(nanos: i128) -> String {
    if nanos == 0 {
        String::new()
    } else if nanos % 1_000_000 == 0 {
        format!(".{:03}", nanos / 1_000_000)
    } else if nanos % 1_000 == 0 {
        format!(".{:06}", nanos / 1_000)
    } else {
        format!(".{nanos:09}")
    }
}

/// A time of day (hours may pass 24, e.g. PostgreSQL's `24:00:00`; negative with a sign).
fn time_text(nanos: i128) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let n = nanos.abs();
    let secs = n / 1_000_000_000;
    format!(
        "{sign}{:02}:{:02}:{:02}{}",
        secs / 3600,
        secs / 60 % 60,
        secs % 60,
        fraction(n % 1_000_000_000)
    )
}

fn datetime_text(nanos: i128, offset: Option<&str>) -> String {
    const DAY: i128 = 86_400_000_000_000;
    let days = nanos.div_euclid(DAY) as i64;
    let in_day = nanos.rem_euclid(DAY);
    format!(
        "{}T{}{}",
        date_text(days),
        time_text(in_day),
        offset.unwrap_or("")
    )
}

/// ISO 8601 duration with a sign on each part: `P1M2DT3H4M5.5S`, `P-1MT-0.000001S`, `PT0S`.
fn interval_text(months: i32, days: i32, nanos: i128) -> String {
    let mut s = String::from("P");
    if months != 0 {
        s.push_str(&format!("{months}M"));
    }
    if days != 0 {
        s.push_str(&format!("{days}D"));
    }
    if nanos != 0 || (months == 0 && days == 0) {
        s.push('T');
        let sign = if nanos < 0 { "-" } else { "" };
        let n = nanos.abs();
        let secs = n / 1_000_000_000;
        let (h, m, sec) = (secs / 3600, secs / 60 % 60, secs % 60);
        if h != 0 {
            s.push_str(&format!("{sign}{h}H"));
        }
        if m != 0 {
            s.push_str(&format!("{sign}{m}M"));
        }
        let frac = n % 1_000_000_000;
        if sec != 0 || frac != 0 || (h == 0 && m == 0) {
            s.push_str(&format!("{sign}{sec}{}S", fraction(frac)));
        }
    }
    s
}

#[cfg(test)]
mod tests {
    //! Every logical type, with the edge values of its range, goes through the dead-letter
    //! writer and is read back from the file into the same Arrow value.

    use std::sync::Arc;

    use arrow::array::*;
    use arrow::buffer::{NullBuffer, OffsetBuffer};
    use arrow::datatypes::{i256, *};
    use serde_json::Value;
    use sluice_core::{LogicalType, TableId, TableSchema};

    use super::*;

    /// Rejects every row, so each one is set aside.
    struct RejectAll(TableSchema);

    impl BoundTransform for RejectAll {
        fn output(&self) -> &TableSchema {
            &self.0
        }
        fn apply(&self, _batch: RecordBatch) -> Result<RecordBatch> {
            Err(Error::data("rejected"))
        }
    }

    fn lt(s: &str) -> LogicalType {
        s.parse().unwrap()
    }

    /// One column per logical type, five rows: edge values, ordinary ones, NULLs.
    fn every_type() -> RecordBatch {
        const US_MAX: i64 = i64::MAX;
        let mut fields = Vec::new();
        let mut cols: Vec<ArrayRef> = Vec::new();
        let mut add = |t: &str, col: ArrayRef| {
            let f = lt(t).field(&format!("c_{}", fields.len()), true);
            assert_eq!(f.data_type(), col.data_type(), "{t}");
            fields.push(f);
            cols.push(col);
        };
        add(
            "bool",
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
                Some(false),
            ])),
        );
        add(
            "int8",
            Arc::new(Int8Array::from(vec![
                Some(i8::MIN),
                Some(i8::MAX),
                None,
                Some(0),
                Some(-1),
            ])),
        );
        add(
            "int16",
            Arc::new(Int16Array::from(vec![
                Some(i16::MIN),
                Some(i16::MAX),
                None,
                Some(0),
                Some(7),
            ])),
        );
        add(
            "int32",
            Arc::new(Int32Array::from(vec![
                Some(i32::MIN),
                Some(i32::MAX),
                None,
                Some(0),
                Some(7),
            ])),
        );
        add(
            "int64",
            Arc::new(Int64Array::from(vec![
                Some(i64::MIN),
                Some(i64::MAX),
                None,
                Some(0),
                Some(7),
            ])),
        );
        add(
            "uint8",
            Arc::new(UInt8Array::from(vec![
                Some(0),
                Some(u8::MAX),
                None,
                Some(1),
                Some(2),
            ])),
        );
        add(
            "uint16",
            Arc::new(UInt16Array::from(vec![
                Some(0),
                Some(u16::MAX),
                None,
                Some(1),
                Some(2),
            ])),
        );
        add(
            "uint32",
            Arc::new(UInt32Array::from(vec![
                Some(0),
                Some(u32::MAX),
                None,
                Some(1),
                Some(2),
            ])),
        );
        add(
            "uint64",
            Arc::new(UInt64Array::from(vec![
                Some(0),
                Some(u64::MAX),
                None,
                Some(1),
                Some(2),
            ])),
        );
        add(
            "float32",
            Arc::new(Float32Array::from(vec![
                Some(f32::NAN),
                Some(f32::INFINITY),
                None,
                Some(-0.0),
                Some(0.1),
            ])),
        );
        add(
            "float64",
            Arc::new(Float64Array::from(vec![
                Some(f64::NEG_INFINITY),
                Some(f64::MAX),
                None,
                Some(-0.0),
                Some(f64::MIN_POSITIVE / 3.0),
            ])),
        );
        add(
            "decimal(12,2)",
            Arc::new(
                Decimal128Array::from(vec![
                    Some(-999_999_999_999),
                    Some(5),
                    None,
                    Some(0),
                    Some(-50),
                ])
                .with_precision_and_scale(12, 2)
                .unwrap(),
            ),
        );
        add(
            "decimal(38,0)",
            Arc::new(
                Decimal128Array::from(vec![
                    Some(-(10i128.pow(38) - 1)),
                    Some(10i128.pow(38) - 1),
                    None,
                    Some(0),
                    Some(1),
                ])
                .with_precision_and_scale(38, 0)
                .unwrap(),
            ),
        );
        add("decimal(76,30)", Arc::new(Decimal256Array::from(vec![Some(i256::from_string("-9999999999999999999999999999999999999999999999999999999999999999999999999999").unwrap()), Some(i256::from_i128(1)), None, Some(i256::ZERO), Some(i256::from_i128(-123))]).with_precision_and_scale(76, 30).unwrap()));
        add(
            "decimal(5,-2)",
            Arc::new(
                Decimal128Array::from(vec![Some(99_999), Some(-1), None, Some(0), Some(12)])
                    .with_precision_and_scale(5, -2)
                    .unwrap(),
            ),
        );
        add(
            "decimal",
            Arc::new(StringArray::from(vec![
                Some("NaN"),
                Some("-1.500"),
                None,
                Some("1e-3"),
                Some("123456789012345678901234567890.123456789"),
            ])),
        );
        add(
            "text",
            Arc::new(StringArray::from(vec![
                Some(""),
                Some("a\u{1F600}\u{1}\t\n\"'\\ z"),
                None,
                Some("null"),
                Some(" "),
            ])),
        );
        add(
            "binary",
            Arc::new(BinaryArray::from(vec![
                Some(&b""[..]),
                Some(&[0u8, 255, 16][..]),
                None,
                Some(&b"\\x"[..]),
                Some(&[7u8][..]),
            ])),
        );
        add(
            "date",
            Arc::new(Date32Array::from(vec![
                Some(i32::MIN),
                Some(i32::MAX),
                None,
                Some(-2_440_588),
                Some(19_782),
            ])),
        );
        add(
            "time",
            Arc::new(Time64MicrosecondArray::from(vec![
                Some(0),
                Some(86_400_000_000),
                None,
                Some(86_399_999_999),
                Some(1_000),
            ])),
        );
        add(
            "time(9)",
            Arc::new(Time64NanosecondArray::from(vec![
                Some(0),
                Some(86_399_999_999_999),
                None,
                Some(1),
                Some(5_000_000),
            ])),
        );
        add(
            "timestamp",
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(i64::MIN),
                Some(US_MAX),
                None,
                Some(-1),
                Some(1_709_251_199_123_456),
            ])),
        );
        add(
            "timestamp(9)",
            Arc::new(TimestampNanosecondArray::from(vec![
                Some(i64::MIN),
                Some(i64::MAX),
                None,
                Some(-1),
                Some(0),
            ])),
        );
        add(
            "timestamptz",
            Arc::new(
                TimestampMicrosecondArray::from(vec![
                    Some(i64::MIN),
                    Some(US_MAX),
                    None,
                    Some(-210_866_803_200_000_001),
                    Some(1_717_236_000_500_000),
                ])
                .with_timezone("UTC"),
            ),
        );
        add(
            "timestamptz(9)",
            Arc::new(
                TimestampNanosecondArray::from(vec![
                    Some(i64::MIN),
                    Some(i64::MAX),
                    None,
                    Some(1),
                    Some(-999_999_999),
                ])
                .with_timezone("UTC"),
            ),
        );
        add(
            "interval",
            Arc::new(IntervalMonthDayNanoArray::from(vec![
                Some(IntervalMonthDayNano::new(i32::MIN, i32::MIN, i64::MIN)),
                Some(IntervalMonthDayNano::new(i32::MAX, i32::MAX, i64::MAX)),
                None,
                Some(IntervalMonthDayNano::new(0, 0, 0)),
                Some(IntervalMonthDayNano::new(1, -2, -500_000_000)),
            ])),
        );
        add(
            "uuid",
            Arc::new(
                FixedSizeBinaryArray::try_from_sparse_iter_with_size(
                    vec![
                        Some([0u8; 16]),
                        Some([0xffu8; 16]),
                        None,
                        Some(*b"\xa0\xee\xbc\x99\x9c\x0b\x4e\xf8\xbb\x6d\x6b\xb9\xbd\x38\x0a\x11"),
                        Some([1u8; 16]),
                    ]
                    .into_iter(),
                    16,
                )
                .unwrap(),
            ),
        );
        add(
            "json",
            Arc::new(StringArray::from(vec![
                Some("{ \"a\" :  [1, 2.50] }"),
                Some("null"),
                None,
                Some("\"x\""),
                Some("[]"),
            ])),
        );
        add(
            "enum('a','b''c')",
            Arc::new(StringArray::from(vec![
                Some("a"),
                Some("b'c"),
                None,
                Some("a"),
                Some("a"),
            ])),
        );
        let mut ints = ListBuilder::new(Int32Builder::new());
        for v in [
            vec![Some(1), None, Some(-3)],
            vec![],
            vec![],
            vec![None],
            vec![Some(i32::MAX)],
        ] {
            ints.values().extend(v);
            ints.append(true);
        }
        let ints = ints.finish();
        let nulls = NullBuffer::from(vec![true, true, false, true, true]);
        let ints = ListArray::new(
            Arc::new(lt("int32").field("item", true)),
            ints.offsets().clone(),
            ints.values().clone(),
            Some(nulls),
        );
        add("array<int32>", Arc::new(ints));
        let mut texts = ListBuilder::new(StringBuilder::new());
        for v in [
            vec![Some("a"), None, Some("b\"c"), Some("")],
            vec![],
            vec![Some(",")],
            vec![None],
            vec![Some("null")],
        ] {
            texts.values().extend(v);
            texts.append(true);
        }
        add("array<text>", Arc::new(texts.finish()));
        let mut ts = ListBuilder::new(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            .with_field(Arc::new(lt("timestamptz").field("item", true)));
        for v in [
            vec![Some(0), None],
            vec![Some(US_MAX)],
            vec![],
            vec![],
            vec![Some(-1)],
        ] {
            ts.values().extend(v);
            ts.append(true);
        }
        add("array<timestamptz>", Arc::new(ts.finish()));
        let schema = Arc::new(Schema::new(fields));
        RecordBatch::try_new(schema, cols).unwrap()
    }

    // ---- reading a dead-letter value back (what a consumer of the file would do) ----

    fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y.rem_euclid(400);
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    fn parse_date(s: &str) -> i64 {
        let (neg, s) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s.trim_start_matches('+')),
        };
        let p: Vec<i64> = s.split('-').map(|x| x.parse().unwrap()).collect();
        days_from_civil(if neg { -p[0] } else { p[0] }, p[1], p[2])
    }

    /// `[-]H:MM:SS[.f]` → nanoseconds.
    fn parse_time(s: &str) -> i128 {
        let (neg, s) = match s.strip_prefix('-') {
            Some(r) => (true, r),
            None => (false, s),
        };
        let p: Vec<&str> = s.split(':').collect();
        let n = (p[0].parse::<i128>().unwrap() * 3600 + p[1].parse::<i128>().unwrap() * 60)
            * 1_000_000_000
            + parse_seconds(p[2]);
        if neg { -n } else { n }
    }

    /// `S[.f]` → nanoseconds.
    fn parse_seconds(s: &str) -> i128 {
        let (int, frac) = s.split_once('.').unwrap_or((s, ""));
        let frac = format!("{frac:0<9}");
        int.parse::<i128>().unwrap() * 1_000_000_000 + frac.parse::<i128>().unwrap()
    }

    fn parse_datetime(s: &str) -> i128 {
        let s = s.strip_suffix("+00:00").unwrap_or(s);
        let (d, t) = s.split_once('T').unwrap();
        parse_date(d) as i128 * 86_400_000_000_000 + parse_time(t)
    }

    fn parse_interval(s: &str) -> IntervalMonthDayNano {
        let s = s.strip_prefix('P').unwrap();
        let (date, time) = s.split_once('T').unwrap_or((s, ""));
        let (mut months, mut days, mut nanos) = (0i32, 0i32, 0i128);
        let mut num = String::new();
        for c in date.chars() {
            match c {
                'M' => months = std::mem::take(&mut num).parse().unwrap(),
                'D' => days = std::mem::take(&mut num).parse().unwrap(),
                _ => num.push(c),
            }
        }
        for c in time.chars() {
            let n = || {
                let t = num.clone();
                match t.strip_prefix('-') {
                    Some(r) => -parse_seconds(r),
                    None => parse_seconds(&t),
                }
            };
            match c {
                'H' => nanos += n() * 3600,
                'M' => nanos += n() * 60,
                'S' => nanos += n(),
                _ => {
                    num.push(c);
                    continue;
                }
            }
            num.clear();
        }
        IntervalMonthDayNano::new(months, days, nanos as i64)
    }

    fn unhex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    fn parse_float(s: &str) -> f64 {
        match s {
            "NaN" => f64::NAN,
            "Infinity" => f64::INFINITY,
            "-Infinity" => f64::NEG_INFINITY,
            _ => s.parse().unwrap(),
        }
    }

    /// Decimal text with exactly the scale's digits → the unscaled integer's text.
    fn unscaled(s: &str, scale: i8) -> String {
        if scale <= 0 {
            let zeros = (-scale) as usize;
            return if s == "0" {
                s.into()
            } else {
                s[..s.len() - zeros].into()
            };
        }
        let (int, frac) = s.split_once('.').unwrap();
        assert_eq!(frac.len(), scale as usize, "{s}");
        let digits = format!("{int}{frac}");
        let neg = digits.starts_with('-');
        let t = digits.trim_start_matches('-').trim_start_matches('0');
        let t = if t.is_empty() { "0" } else { t };
        if neg { format!("-{t}") } else { t.to_string() }
    }

    /// A one-row array of `field`'s type from its dead-letter value.
    fn decode(field: &Field, v: &Value) -> ArrayRef {
        if v.is_null() {
            return new_null_array(field.data_type(), 1);
        }
        if let DataType::List(item) = field.data_type() {
            let elems: Vec<ArrayRef> = v
                .as_array()
                .unwrap()
                .iter()
                .map(|e| decode(item, e))
                .collect();
            let refs: Vec<&dyn Array> = elems.iter().map(|a| a.as_ref()).collect();
            let values = if refs.is_empty() {
                new_empty_array(item.data_type())
            } else {
                arrow::compute::concat(&refs).unwrap()
            };
            let offsets = OffsetBuffer::from_lengths([values.len()]);
            return Arc::new(ListArray::new(item.clone(), offsets, values, None));
        }
        let s = v.as_str().unwrap();
        match field.data_type() {
            DataType::Boolean => Arc::new(BooleanArray::from(vec![s.parse::<bool>().unwrap()])),
            DataType::Int8 => Arc::new(Int8Array::from(vec![s.parse::<i8>().unwrap()])),
            DataType::Int16 => Arc::new(Int16Array::from(vec![s.parse::<i16>().unwrap()])),
            DataType::Int32 => Arc::new(Int32Array::from(vec![s.parse::<i32>().unwrap()])),
            DataType::Int64 => Arc::new(Int64Array::from(vec![s.parse::<i64>().unwrap()])),
            DataType::UInt8 => Arc::new(UInt8Array::from(vec![s.parse::<u8>().unwrap()])),
            DataType::UInt16 => Arc::new(UInt16Array::from(vec![s.parse::<u16>().unwrap()])),
            DataType::UInt32 => Arc::new(UInt32Array::from(vec![s.parse::<u32>().unwrap()])),
            DataType::UInt64 => Arc::new(UInt64Array::from(vec![s.parse::<u64>().unwrap()])),
            DataType::Float32 => Arc::new(Float32Array::from(vec![parse_float(s) as f32])),
            DataType::Float64 => Arc::new(Float64Array::from(vec![parse_float(s)])),
            DataType::Decimal128(p, sc) => Arc::new(
                Decimal128Array::from(vec![unscaled(s, *sc).parse::<i128>().unwrap()])
                    .with_precision_and_scale(*p, *sc)
                    .unwrap(),
            ),
            DataType::Decimal256(p, sc) => Arc::new(
                Decimal256Array::from(vec![i256::from_string(&unscaled(s, *sc)).unwrap()])
                    .with_precision_and_scale(*p, *sc)
                    .unwrap(),
            ),
            DataType::Utf8 => Arc::new(StringArray::from(vec![s])),
            DataType::Binary => Arc::new(BinaryArray::from(vec![unhex(s).as_slice()])),
            DataType::FixedSizeBinary(16) => Arc::new(
                FixedSizeBinaryArray::try_from_iter(std::iter::once(unhex(&s.replace('-', ""))))
                    .unwrap(),
            ),
            DataType::Date32 => Arc::new(Date32Array::from(vec![parse_date(s) as i32])),
            DataType::Time64(TimeUnit::Microsecond) => {
                Arc::new(Time64MicrosecondArray::from(vec![
                    (parse_time(s) / 1000) as i64,
                ]))
            }
            DataType::Time64(TimeUnit::Nanosecond) => {
                Arc::new(Time64NanosecondArray::from(vec![parse_time(s) as i64]))
            }
            DataType::Timestamp(u, tz) => {
                assert_eq!(tz.is_some(), s.ends_with("+00:00"), "{s}");
                let n = parse_datetime(s);
                match u {
                    TimeUnit::Microsecond => Arc::new(
                        TimestampMicrosecondArray::from(vec![(n / 1000) as i64])
                            .with_timezone_opt(tz.clone()),
                    ),
                    _ => Arc::new(
                        TimestampNanosecondArray::from(vec![n as i64])
                            .with_timezone_opt(tz.clone()),
                    ),
                }
            }
            DataType::Interval(IntervalUnit::MonthDayNano) => {
                Arc::new(IntervalMonthDayNanoArray::from(vec![parse_interval(s)]))
            }
            other => panic!("no decoder for {other}"),
        }
    }

    #[test]
    fn every_logical_type_round_trips_through_the_dead_letter_file() {
        let batch = every_type();
        let path = std::env::temp_dir().join(format!(
            "sluice-dead-letter-{}-{:?}.jsonl",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_file(&path);
        let policy = BadRecordPolicy::new(u64::MAX, None, Some(path.clone()));
        let schema = TableSchema::new(TableId::new(["t"]), batch.schema());
        let transforms: Vec<Box<dyn BoundTransform>> = vec![Box::new(RejectAll(schema))];
        let position = Position::new("t#0", serde_json::json!({"rows": 5}));
        let origin = Origin {
            job: "j",
            table: "t",
            split: "t#0",
            position: &position,
            rows_read: 5,
        };
        let kept = apply_tolerant(&transforms, batch.clone(), &policy, &origin).unwrap();
        assert_eq!(kept.num_rows(), 0);
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), batch.num_rows());
        for (r, line) in lines.iter().enumerate() {
            assert_eq!(line["row_in_batch"], r, "{line}");
            for (c, f) in batch.schema().fields().iter().enumerate() {
                let v = &line["row"][f.name()];
                let ty = LogicalType::of_field(f).unwrap().to_string();
                assert_eq!(line["types"][f.name()], ty.as_str());
                let back = decode(f, v);
                assert_eq!(
                    back.to_data(),
                    batch.column(c).slice(r, 1).to_data(),
                    "row {r}, column {} ({ty}): {v}",
                    f.name()
                );
            }
        }
        // The forms a reader sees.
        let row = |r: usize, c: usize| lines[r]["row"][format!("c_{c}")].clone();
        assert_eq!(row(0, 4), "-9223372036854775808");
        assert_eq!(row(3, 10), "-0.0");
        assert_eq!(row(0, 11), "-9999999999.99");
        assert_eq!(row(4, 11), "-0.50");
        assert_eq!(row(0, 14), "9999900");
        assert_eq!(row(3, 18), "-4713-11-24");
        assert_eq!(row(1, 19), "24:00:00");
        assert_eq!(row(4, 21), "2024-02-29T23:59:59.123456");
        assert_eq!(row(4, 23), "2024-06-01T10:00:00.500+00:00");
        assert_eq!(row(3, 23), "-4713-11-23T23:59:59.999999+00:00");
        assert_eq!(row(4, 25), "P1M-2DT-0.500S");
        assert_eq!(row(3, 25), "PT0S");
        assert_eq!(row(3, 26), "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11");
        assert_eq!(row(1, 17), "00ff10");
        assert_eq!(row(0, 29), serde_json::json!(["1", null, "-3"]));
        assert_eq!(row(2, 29), Value::Null);
    }
}
