//! `sluice server`: many jobs in one process, driven through Kafka Connect's REST API.
//!
//! ```text
//!   HTTP ─► gate (token → role, request log) ─► api (Kafka Connect's routes)
//!                                                  │ persist first (state store)
//!                                                  ▼
//!                                   hosted jobs ─► JobHandle (the runner `sluice run` uses)
//! ```
//!
//! * [`api`]: routes, shapes, the OpenAPI document;
//! * [`hosted`]: each job's target state and run, the boot-time resume;
//! * [`auth`]: tokens (stored hashed) and roles;
//! * [`config`]: nested and flat configs, secrets masked on the way out.
//!
//! A job that fails disturbs no other; a run is a task of its own and the API never waits on a
//! run except to see a pause or stop persisted. Listening on a non-loopback address needs TLS
//! (`--tls-cert`, `--tls-key`) or an explicit `--insecure`.

pub mod api;
pub mod auth;
pub mod config;
pub mod error;
pub mod hosted;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use metrics_exporter_prometheus::PrometheusHandle;
use serde_json::Value;
use sluice_core::{Error, Result};
use sluice_state::{StateStore, TargetState};
use tracing::{info, warn};

use crate::auth::Authenticator;
use crate::hosted::{Jobs, Shared, VerifierFactory};

/// Changes log levels live (`/admin/loggers`); the binary owns the subscriber.
pub trait LogControl: Send + Sync {
    /// Logger → level (`root` is the default level).
    fn levels(&self) -> BTreeMap<String, String>;
    /// Sets `logger`'s level (`root` for the default).
    fn set(&self, logger: &str, level: &str) -> std::result::Result<(), String>;
}

/// A [`LogControl`] that changes nothing (tests, embedding).
pub struct FixedLogs;

impl LogControl for FixedLogs {
    fn levels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([("root".to_string(), "info".to_string())])
    }
    fn set(&self, _: &str, _: &str) -> std::result::Result<(), String> {
        Err("log levels cannot be changed in this process".into())
    }
}

/// How to run a server.
pub struct ServerOptions {
    pub listen: SocketAddr,
    /// `host:port` other workers and clients reach this one at (`worker_id`); defaults to
    /// `listen`.
    pub advertised: Option<String>,
    pub store: Arc<dyn StateStore>,
    /// A directory of job files to host (created or updated at start).
    pub jobs_dir: Option<PathBuf>,
    /// PEM certificate chain and private key: serve HTTPS.
    pub tls: Option<(PathBuf, PathBuf)>,
    /// Allow plain HTTP on a non-loopback address.
    pub insecure: bool,
    pub verifier: Option<VerifierFactory>,
    pub logs: Arc<dyn LogControl>,
    pub metrics: Option<PrometheusHandle>,
    /// How long a shutdown waits for running jobs to stop before aborting them.
    pub shutdown_deadline: Duration,
}

/// What every request handler shares.
pub struct App {
    pub shared: Arc<Shared>,
    pub jobs: Jobs,
    pub auth: Authenticator,
    pub worker_id: String,
    pub metrics: Option<PrometheusHandle>,
    pub logs: Arc<dyn LogControl>,
    healthy: AtomicBool,
}

impl App {
    pub fn healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }
}

/// How often the server records its heartbeat (and checks the state store answers).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// Refuses plain HTTP on a non-loopback address unless `insecure`.
pub fn check_listen(listen: &SocketAddr, tls: bool, insecure: bool) -> Result<()> {
    if !listen.ip().is_loopback() && !tls && !insecure {
        return Err(Error::config(format!(
            "refusing to serve plain HTTP on {listen}: tokens would cross the network in the clear"
        ))
        .with_hint(
            "give --tls-cert and --tls-key (PEM files), listen on 127.0.0.1, or pass --insecure \
             if a proxy in front terminates TLS",
        ));
    }
    Ok(())
}

/// Builds the app: loads the store's jobs (and `--jobs DIR`), starts those that should run.
pub async fn build(opts: &ServerOptions) -> Result<Arc<App>> {
    let worker_id = opts
        .advertised
        .clone()
        .unwrap_or_else(|| opts.listen.to_string());
    let app = Arc::new(App {
        shared: Arc::new(Shared {
            store: opts.store.clone(),
            verifier: opts.verifier.clone(),
            runs: tokio::runtime::Handle::current(),
        }),
        jobs: Jobs::default(),
        auth: Authenticator::default(),
        worker_id,
        metrics: opts.metrics.clone(),
        logs: opts.logs.clone(),
        healthy: AtomicBool::new(true),
    });
    if let Some(dir) = &opts.jobs_dir {
        load_jobs_dir(&app, dir).await?;
    }
    let records = opts.store.connectors().await?;
    info!(jobs = records.len(), store = %opts.store.describe(), "Loading hosted jobs.");
    app.boot(records).await;
    Ok(app)
}

/// Creates or updates a hosted job from every `*.toml` file of `dir` (the file wins over a
/// config changed through the API; the target state is kept).
async fn load_jobs_dir(app: &App, dir: &Path) -> Result<()> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| {
            Error::config(format!(
                "cannot read the jobs directory {}: {e}",
                dir.display()
            ))
            .with_hint("--jobs names a directory of job files (*.toml)")
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "toml"))
        .collect();
    files.sort();
    for path in files {
        // Located errors first, with the references resolved as a run would.
        let (job, _) =
            sluice_connectors::job::JobFile::load(&path).map_err(|e| Error::config(e.render()))?;
        // The store keeps the document unresolved: `${env:…}` references stay references.
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::config(format!("cannot read {}: {e}", path.display())))?;
        let doc: Value =
            toml::from_str(&text).map_err(|e| Error::config(format!("{}: {e}", path.display())))?;
        let name = job.job.name.clone();
        let actor = format!("jobs-dir:{}", path.display());
        let store = &app.shared.store;
        match store.connector(&name).await? {
            None => {
                store
                    .create_connector(&name, &doc, TargetState::Running)
                    .await?;
                let e = sluice_state::AuditEntry::new(
                    &name,
                    &actor,
                    "api.create",
                    "from the jobs directory",
                );
                let _ = store.record_audit(&e).await;
            }
            Some(rec) if rec.config != doc => {
                let changed = config::changed_keys(&rec.config, &doc);
                store.update_connector_config(&name, &doc).await?;
                let e = sluice_state::AuditEntry::new(
                    &name,
                    &actor,
                    "api.config",
                    format!("changed: {}", changed.join(", ")),
                );
                let _ = store.record_audit(&e).await;
            }
            Some(_) => {}
        }
    }
    Ok(())
}

/// Serves until `shutdown` resolves, then stops every running job (their target states are
/// kept: a restarted server resumes them).
pub async fn serve(
    opts: ServerOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<()> {
    check_listen(&opts.listen, opts.tls.is_some(), opts.insecure)?;
    let tls = match &opts.tls {
        Some((cert, key)) => Some(tls_config(cert, key).await?),
        None => None,
    };
    let listener = std::net::TcpListener::bind(opts.listen).map_err(|e| {
        Error::config(format!("cannot listen on {}: {e}", opts.listen))
            .with_hint("is another server on that port? choose another with --listen")
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|e| Error::internal(format!("listener: {e}")))?;
    let app = build(&opts).await?;
    let heartbeat = tokio::spawn(heartbeat(app.clone(), opts.listen.to_string()));
    let router = api::router(app.clone());
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown.await;
        h.graceful_shutdown(Some(Duration::from_secs(5)));
    });
    info!(
        listen = %opts.listen,
        tls = tls.is_some(),
        worker_id = %app.worker_id,
        "Server listening."
    );
    let service = router.into_make_service();
    // The API answers from a thread and runtime of its own: runs that keep every worker of the
    // main runtime busy must not queue a status request or a stop behind their batches.
    let (done_tx, done_rx) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("sluice-api".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    let _ = done_tx.send(Err(e));
                    return;
                }
            };
            let served = rt.block_on(async move {
                match tls {
                    Some(cfg) => {
                        axum_server::from_tcp_rustls(listener, cfg)
                            .handle(handle)
                            .serve(service)
                            .await
                    }
                    None => {
                        axum_server::from_tcp(listener)
                            .handle(handle)
                            .serve(service)
                            .await
                    }
                }
            });
            let _ = done_tx.send(served);
        })
        .map_err(|e| Error::internal(format!("cannot start the API thread: {e}")))?;
    let served = done_rx
        .await
        .unwrap_or_else(|_| Err(std::io::Error::other("the API thread ended without a word")));
    heartbeat.abort();
    info!("Stopping the hosted jobs.");
    let stops = app.jobs.all().into_iter().map(|j| {
        let d = opts.shutdown_deadline;
        async move { j.shutdown(d).await }
    });
    futures::future::join_all(stops).await;
    served.map_err(|e| Error::internal(format!("the HTTP server failed: {e}")))
}

async fn tls_config(cert: &Path, key: &Path) -> Result<axum_server::tls_rustls::RustlsConfig> {
    // ring, not aws-lc-rs: no C/cmake toolchain in the build (docs/adr/0010). Its provider
    // lacks post-quantum key exchange, which rustls now flags as deprecated.
    #[allow(deprecated)]
    let _ = rustls::crypto::ring::default_provider().install_default();
    axum_server::tls_rustls::RustlsConfig::from_pem_file(cert, key)
        .await
        .map_err(|e| {
            Error::config(format!(
                "cannot load the TLS certificate {} and key {}: {e}",
                cert.display(),
                key.display()
            ))
            .with_hint("both must be PEM files: the certificate chain and its private key")
        })
}

/// Records the worker's heartbeat; the health endpoint reports whether the store answers.
async fn heartbeat(app: Arc<App>, address: String) {
    loop {
        let ok = tokio::time::timeout(
            HEARTBEAT_EVERY,
            app.shared.store.heartbeat(&app.worker_id, &address),
        )
        .await;
        let healthy = matches!(ok, Ok(Ok(())));
        if !healthy && app.healthy() {
            warn!("The state store does not answer the heartbeat.");
        }
        app.healthy.store(healthy, Ordering::Relaxed);
        tokio::time::sleep(HEARTBEAT_EVERY).await;
    }
}
