//! `sluice stop|pause|resume|status --server URL`: the same commands, for a job hosted by a
//! `sluice server`, through its REST API (token from `SLUICE_TOKEN`).

use serde_json::Value;
use sluice_core::Error;

use crate::cli::OutputFormat;
use crate::exit;

/// Calls the server on a blocking thread (the client is synchronous); `Ok((status, body))`.
async fn call(method: &'static str, url: String) -> Result<(u16, Value), Error> {
    let token = std::env::var("SLUICE_TOKEN").ok().filter(|t| !t.is_empty());
    tokio::task::spawn_blocking(move || {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .build()
            .into();
        let auth = token.map(|t| format!("Bearer {t}"));
        let res = match method {
            "GET" => {
                let mut r = agent.get(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.call()
            }
            _ => {
                let mut r = agent.put(&url);
                if let Some(a) = &auth {
                    r = r.header("Authorization", a);
                }
                r.send_empty()
            }
        };
        let mut res = res.map_err(|e| {
            Error::new(
                sluice_core::ErrorKind::Connection,
                format!("cannot reach the server at {url}: {e}"),
            )
            .with_hint("check --server (or SLUICE_SERVER) and that `sluice server` runs there")
        })?;
        let status = res.status().as_u16();
        let text = res.body_mut().read_to_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok((status, body))
    })
    .await
    .map_err(|e| Error::internal(format!("the HTTP call failed: {e}")))?
}

/// An error answer as a Sluice error with what to do.
fn answer_error(status: u16, body: &Value, job: &str) -> Error {
    let msg = body
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("no message")
        .to_string();
    match status {
        401 => Error::new(
            sluice_core::ErrorKind::Auth,
            format!("the server refused the token: {msg}"),
        )
        .with_hint("export SLUICE_TOKEN=… (made by `sluice token create` on the server's state)"),
        403 => Error::new(
            sluice_core::ErrorKind::Auth,
            format!("the token's role is too weak: {msg}"),
        )
        .with_hint("pausing, resuming and stopping need an operator or admin token"),
        404 => Error::config(format!("the server hosts no job named {job}"))
            .with_hint("`sluice status --server URL` lists the jobs it hosts"),
        _ => Error::internal(format!("the server answered {status}: {msg}")),
    }
}

fn base(server: &str) -> String {
    server.trim_end_matches('/').to_string()
}

fn segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Stops (`stop`, `kill`), pauses or resumes `job` on `server`.
pub async fn command(
    server: &str,
    job: &str,
    what: &str,
    timeout: Option<std::time::Duration>,
) -> Result<(), Error> {
    let (path, query) = match what {
        "kill" => ("stop", "?timeout=0s".to_string()),
        "stop" => (
            "stop",
            timeout
                .map(|t| format!("?timeout={}ms", t.as_millis()))
                .unwrap_or_default(),
        ),
        other => (other, String::new()),
    };
    let url = format!("{}/connectors/{}/{path}{query}", base(server), segment(job));
    let (status, body) = call("PUT", url).await?;
    if !(200..300).contains(&status) {
        return Err(answer_error(status, &body, job));
    }
    let done = match what {
        "pause" => "paused (readers hold; positions kept)",
        "resume" => "resumed",
        _ => "stopping: in-flight splits roll back, committed ones stay",
    };
    outln!("{job}: {done}");
    Ok(())
}

/// Prints the jobs `server` hosts (or one), as `sluice status` does for a state directory.
pub async fn status(server: &str, job: Option<&str>, format: OutputFormat) -> u8 {
    let url = match job {
        Some(j) => format!("{}/connectors/{}/status", base(server), segment(j)),
        None => format!("{}/connectors?expand=status", base(server)),
    };
    let (status, body) = match call("GET", url).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            if let Some(h) = e.hint() {
                eprintln!("  = help: {h}");
            }
            return exit::FAILED;
        }
    };
    if status != 200 {
        let e = answer_error(status, &body, job.unwrap_or(""));
        eprintln!("error: {e}");
        if let Some(h) = e.hint() {
            eprintln!("  = help: {h}");
        }
        return crate::exit_code_for(e.kind());
    }
    if format == OutputFormat::Json {
        outln!(
            "{}",
            serde_json::to_string_pretty(&body).unwrap_or_default()
        );
        return exit::OK;
    }
    let statuses: Vec<&Value> = match job {
        Some(_) => vec![&body],
        None => body
            .as_object()
            .map(|m| m.values().filter_map(|v| v.get("status")).collect())
            .unwrap_or_default(),
    };
    if statuses.is_empty() {
        outln!("the server hosts no jobs");
        return exit::OK;
    }
    outln!(
        "{:<30} {:<12} {:<10} {:>14}  last",
        "job",
        "state",
        "target",
        "rows"
    );
    for s in statuses {
        let sl = &s["sluice"];
        let rows = sl["run"]["rows_written"]
            .as_u64()
            .map(|r| r + sl["run"]["rows_written_earlier"].as_u64().unwrap_or(0))
            .or_else(|| {
                sl["last_run"]["rows_written"]
                    .as_u64()
                    .map(|r| r + sl["last_run"]["rows_written_earlier"].as_u64().unwrap_or(0))
            })
            .unwrap_or(0);
        let last = sl["last_run"]["error"]
            .as_str()
            .map(|e| format!("error: {e}"))
            .or_else(|| sl["last_run"]["state"].as_str().map(str::to_string))
            .unwrap_or_default();
        outln!(
            "{:<30} {:<12} {:<10} {:>14}  {}",
            s["name"].as_str().unwrap_or(""),
            sl["state"].as_str().unwrap_or(""),
            sl["target_state"].as_str().unwrap_or(""),
            rows,
            last
        );
    }
    exit::OK
}
