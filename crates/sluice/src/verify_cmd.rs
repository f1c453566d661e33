//! `sluice verify`: wires the job's source and sink into `sluice-verify` and prints the report.

use sluice_connectors::job::JobFile;
use sluice_core::Error;
use sluice_core::config::redact;
use sluice_verify::{Report, Session};

use crate::{exit, exit_code_for};

/// Options of `sluice verify`.
pub struct VerifyArgs {
    pub json: bool,
    pub repair: bool,
    pub dry_run: bool,
    pub max_diffs: usize,
}

fn report_error(e: &Error) -> u8 {
    eprintln!("error: {}", redact(e.message()));
    if let Some(h) = e.hint() {
        eprintln!("  = help: {}", redact(h));
    }
    exit_code_for(e.kind())
}

/// The job `sluice verify --source URL --target URL --table T…` stands for: the same
/// source and sink a job file would name, checked by the same loader (so a bad URL or an
/// unknown scheme gets the same message). `T` may be `source_name=target_name`.
pub fn adhoc_job(source: &str, target: &str, tables: &[String]) -> Result<JobFile, u8> {
    let kind = |url: &str| -> Result<&'static str, u8> {
        let scheme = url.split_once(':').map_or("", |(s, _)| s);
        match scheme.to_ascii_lowercase().as_str() {
            "postgres" | "postgresql" => Ok("postgres"),
            "mysql" | "mariadb" => Ok("mysql"),
            "sqlite" => Ok("sqlite"),
            _ => {
                eprintln!(
                    "error: cannot tell the database of {:?} from its scheme\n  = help: \
                     write postgres://…, mysql://… or sqlite:///path/file.db",
                    redact(url)
                );
                Err(exit::USAGE)
            }
        }
    };
    // mariadb://… is read as mysql://… (the scheme only, in any case).
    let url = |u: &str| match u.split_once(':') {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("mariadb") => format!("mysql:{rest}"),
        _ => u.to_string(),
    };
    // JSON strings are valid TOML basic strings.
    let q = |v: &str| serde_json::to_string(v).unwrap_or_default();
    let mut names = Vec::new();
    let mut map = Vec::new();
    for t in tables {
        match t.split_once('=') {
            Some((from, to)) => {
                names.push(q(from.trim()));
                map.push(format!("{} = {}", q(from.trim()), q(to.trim())));
            }
            None => names.push(q(t.trim())),
        }
    }
    let text = format!(
        "[job]\nname = \"verify\"\n\n[source]\ntype = \"{}\"\nurl = {}\ntables = [{}]\n\n\
         [sink]\ntype = \"{}\"\nurl = {}\ntable_map = {{ {} }}\n",
        kind(source)?,
        q(&url(source)),
        names.join(", "),
        kind(target)?,
        q(&url(target)),
        map.join(", ")
    );
    let doc = sluice_core::config::ConfigDoc::parse_toml("<command line>", &text)
        .and_then(|doc| JobFile::from_doc(&doc));
    doc.map_err(|e| {
        eprintln!("error: {}", redact(&e.render()));
        exit::USAGE
    })
}

/// Runs verify; returns the exit status (0 identical, 4 differences, 1 error, 2 config).
pub async fn run(job: &JobFile, args: &VerifyArgs) -> u8 {
    if args.dry_run && !args.repair {
        return report_error(
            &Error::config("--dry-run only applies to --repair")
                .with_hint("run `sluice verify JOB --repair --dry-run` to see the statements"),
        );
    }
    let mut session = match Session::open(&job.source, &job.sink).await {
        Ok(s) => s,
        Err(e) => return report_error(&e),
    };
    let result = run_session(&mut session, args).await;
    session.close().await;
    match result {
        Ok(code) => code,
        Err(e) => report_error(&e),
    }
}

/// `[job] verify = true`: verifies after a finished run and prints the report. Returns
/// whether source and target are identical.
pub async fn after_run(job: &JobFile) -> sluice_core::Result<bool> {
    let mut session = Session::open(&job.source, &job.sink).await?;
    let result = verify_after(&mut session, job.job.verify).await;
    session.close().await;
    result
}

/// `[job] verify`: compare; with `"repair"`, repair what differs and compare again.
async fn verify_after(
    session: &mut Session,
    mode: sluice_connectors::job::VerifyAfter,
) -> sluice_core::Result<bool> {
    let report = session.verify().await?;
    outln!("\nverify:");
    print_report(&report, 20);
    if report.identical || mode != sluice_connectors::job::VerifyAfter::Repair {
        return Ok(report.identical);
    }
    session.repair(&report, false).await?;
    let again = session.verify().await?;
    outln!("\nverify after the repair:");
    print_report(&again, 20);
    Ok(again.identical)
}

async fn run_session(session: &mut Session, args: &VerifyArgs) -> sluice_core::Result<u8> {
    let mut report = session.verify().await?;
    let mut json = serde_json::Map::new();
    let mut after = None;
    if args.repair && !report.identical {
        let done = session.repair(&report, args.dry_run).await?;
        if args.dry_run {
            if !args.json {
                print_report(&report, args.max_diffs);
                outln!("\n-- --dry-run: statements --repair would run");
                for (table, stmts) in &done {
                    outln!("-- {table}: one transaction\nBEGIN;");
                    for s in stmts {
                        outln!("{s};");
                    }
                    outln!("COMMIT;");
                }
            }
            let plan: serde_json::Map<String, serde_json::Value> = done
                .into_iter()
                .map(|(t, s)| (t, serde_json::json!(s)))
                .collect();
            json.insert("repair_statements".into(), plan.into());
        } else {
            let statements: usize = done.iter().map(|(_, s)| s.len()).sum();
            if !args.json {
                print_report(&report, args.max_diffs);
                outln!("\nrepaired: {statements} statements run; verifying again\n");
            }
            json.insert("repair_statements_run".into(), statements.into());
            after = Some(session.verify().await?);
        }
    } else if !args.json {
        print_report(&report, args.max_diffs);
    }
    if let Some(a) = &after
        && !args.json
    {
        print_report(a, args.max_diffs);
    }
    let final_identical = after.as_ref().map_or(report.identical, |a| a.identical);
    if args.json {
        report.truncate(args.max_diffs);
        let mut doc = match serde_json::to_value(&report) {
            Ok(serde_json::Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        doc.extend(json);
        if let Some(mut a) = after {
            a.truncate(args.max_diffs);
            doc.insert(
                "after_repair".into(),
                serde_json::to_value(&a).unwrap_or_default(),
            );
        }
        outln!(
            "{}",
            serde_json::to_string_pretty(&serde_json::Value::Object(doc)).unwrap_or_default()
        );
    }
    Ok(if final_identical {
        exit::OK
    } else {
        exit::DIFFERENCES
    })
}

/// "1 row", "3 rows".
fn rows(n: u64) -> String {
    if n == 1 {
        "1 row".into()
    } else {
        format!("{n} rows")
    }
}

fn print_report(report: &Report, max_diffs: usize) {
    let width = report
        .tables
        .iter()
        .map(|t| t.source.chars().count())
        .chain([5])
        .max()
        .unwrap_or(5);
    outln!(
        "{:<width$}  {:>11}  {:>11}  {:>7}  {:>7}  {:>7}  {:>7}",
        "table",
        "source rows",
        "target rows",
        "missing",
        "extra",
        "changed",
        "seconds"
    );
    for t in &report.tables {
        outln!(
            "{:<width$}  {:>11}  {:>11}  {:>7}  {:>7}  {:>7}  {:>7.2}",
            t.source,
            t.source_rows,
            t.target_rows,
            t.missing,
            t.extra,
            t.changed,
            t.seconds
        );
    }
    for t in &report.tables {
        if t.identical() {
            continue;
        }
        let arrow = if t.source == t.target {
            t.source.clone()
        } else {
            format!("{} -> {}", t.source, t.target)
        };
        outln!();
        match &t.key {
            None => outln!(
                "{arrow}: count or checksum differs (no single integer key, rows not located)"
            ),
            Some(key) => {
                if t.changed_during_check > 0 {
                    outln!(
                        "{arrow}: {} rows changed during the check",
                        t.changed_during_check
                    );
                }
                for d in t.diffs.iter().take(max_diffs) {
                    let mut notes = Vec::new();
                    if let Some(c) = d.copies {
                        notes.push(format!(
                            "{} with this key in the target, {} in the source",
                            rows(c.target),
                            c.source
                        ));
                    }
                    if !d.columns.is_empty() {
                        notes.push(d.columns.join(", "));
                    }
                    let cols = if notes.is_empty() {
                        String::new()
                    } else {
                        format!(" ({})", notes.join("; "))
                    };
                    outln!("{arrow}: {key} = {}: {}{cols}", d.key, d.kind.as_str());
                }
                let more = t.diffs.len().saturating_sub(max_diffs) + t.diffs_omitted;
                if more > 0 {
                    outln!("{arrow}: … and {more} more (raise --max-diffs to list them)");
                }
            }
        }
    }
    outln!(
        "\n{}",
        if report.identical {
            "identical"
        } else {
            "differences found"
        }
    );
}
