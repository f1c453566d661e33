//! `sluice server` and `sluice token`: wiring only; the server lives in `sluice-server`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use sluice_core::Error;
use sluice_server::auth;
use tracing::{info, warn};

use crate::cli::{TokenCommand, TokenRole};
use crate::commands::report;
use crate::{exit, logging, verify_cmd};

pub struct Args {
    pub listen: SocketAddr,
    pub jobs: Option<PathBuf>,
    pub tls: Option<(PathBuf, PathBuf)>,
    pub insecure: bool,
    pub advertised_address: Option<String>,
}

/// How long a shutdown lets running jobs stop before aborting them.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);

pub async fn run(state: &str, args: Args) -> u8 {
    // Refused before anything is opened, so the message is the first thing seen.
    if let Err(e) = sluice_server::check_listen(&args.listen, args.tls.is_some(), args.insecure) {
        return report(&e);
    }
    let metrics = match metrics_exporter_prometheus::PrometheusBuilder::new().install_recorder() {
        Ok(h) => Some(h),
        Err(e) => {
            warn!(error = %e, "Metrics are not available: the recorder could not be installed.");
            None
        }
    };
    let store = match sluice_state::open(state).await {
        Ok(s) => s,
        Err(e) => return report(&e),
    };
    let verifier: sluice_server::hosted::VerifierFactory = Arc::new(|job| {
        let job = job.clone();
        Box::new(move || Box::pin(async move { verify_cmd::after_run(&job).await }))
    });
    let opts = sluice_server::ServerOptions {
        listen: args.listen,
        advertised: args.advertised_address,
        store,
        jobs_dir: args.jobs,
        tls: args.tls,
        insecure: args.insecure,
        verifier: Some(verifier),
        logs: Arc::new(logging::LiveLevels::default()),
        metrics,
        shutdown_deadline: SHUTDOWN_DEADLINE,
    };
    match sluice_server::serve(opts, shutdown_signal()).await {
        Ok(()) => {
            info!("Server stopped.");
            exit::OK
        }
        Err(e) => report(&e),
    }
}

/// The first SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut int), Ok(mut term)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        warn!("Cannot install signal handlers; the server stops only when killed.");
        std::future::pending::<()>().await;
        return;
    };
    let name = tokio::select! {
        _ = int.recv() => "SIGINT",
        _ = term.recv() => "SIGTERM",
    };
    warn!(
        signal = name,
        "Shutting down: jobs stop at their last checkpoint and resume when the server starts again."
    );
}

pub async fn token(state: &str, command: TokenCommand) -> u8 {
    let store = match sluice_state::open(state).await {
        Ok(s) => s,
        Err(e) => return report(&e),
    };
    match command {
        TokenCommand::Create { role, name } => {
            let role = match role {
                TokenRole::Viewer => auth::Role::Viewer,
                TokenRole::Operator => auth::Role::Operator,
                TokenRole::Admin => auth::Role::Admin,
            };
            let name = match name {
                Some(n) => n,
                None => {
                    let taken = store.tokens().await.map(|t| t.len()).unwrap_or(0);
                    format!("{}-{}", role.as_str(), taken + 1)
                }
            };
            let (token, hash) = match auth::new_token() {
                Ok(t) => t,
                Err(e) => return report(&Error::internal(e)),
            };
            if let Err(e) = store.create_token(&name, role.as_str(), &hash).await {
                return report(&e);
            }
            let entry = sluice_state::AuditEntry::new(
                "",
                format!(
                    "cli:{}@{}",
                    std::env::var("USER").unwrap_or_else(|_| "unknown".into()),
                    sluice_state::host_name()
                ),
                "token.create",
                format!("{name} ({})", role.as_str()),
            );
            let _ = store.record_audit(&entry).await;
            eprintln!(
                "created token `{name}` with role {}; it is shown once, store it now:",
                role.as_str()
            );
            outln!("{token}");
            exit::OK
        }
        TokenCommand::List => match store.tokens().await {
            Ok(tokens) => {
                outln!("{:<30} {:<10} created", "name", "role");
                for t in tokens {
                    outln!("{:<30} {:<10} {}", t.name, t.role, t.created_at);
                }
                exit::OK
            }
            Err(e) => report(&e),
        },
        TokenCommand::Revoke { name } => match store.revoke_token(&name).await {
            Ok(true) => {
                eprintln!("revoked token `{name}` (a running server refuses it within 5 s)");
                exit::OK
            }
            Ok(false) => report(
                &Error::config(format!("there is no token named `{name}`"))
                    .with_hint("`sluice token list` shows them"),
            ),
            Err(e) => report(&e),
        },
    }
}
