//! The REST API: Kafka Connect's paths, methods, status codes and JSON shapes, with Sluice's
//! additions in added fields and added paths (docs/rest-api.md lists every difference).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, RawQuery, Request, State};
use axum::http::{HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sluice_connectors::registry::{SinkConfig, SinkKind, SourceConfig};
use sluice_state::{ConnectorRecord, TargetState};
use tracing::info;
use utoipa::{OpenApi, ToSchema};

use crate::App;
use crate::auth::{Caller, required_role};
use crate::config;
use crate::error::{ApiError, ApiResult, ErrorBody};
use crate::hosted::{Ended, Hosted, RunningView, View, load_job};

/// Request bodies larger than this are refused (413).
pub const MAX_BODY: usize = 1 << 20;

pub fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/", get(server_info))
        .route("/health", get(health))
        .route("/openapi.json", get(openapi))
        .route("/metrics", get(metrics))
        .route("/connectors", get(list_connectors).post(create_connector))
        .route(
            "/connectors/{c}",
            get(get_connector).delete(delete_connector),
        )
        .route(
            "/connectors/{c}/config",
            get(get_config).put(put_config).patch(patch_config),
        )
        .route("/connectors/{c}/status", get(get_status))
        .route("/connectors/{c}/pause", put(pause))
        .route("/connectors/{c}/resume", put(resume))
        .route("/connectors/{c}/stop", put(stop))
        .route("/connectors/{c}/restart", post(restart))
        .route("/connectors/{c}/tasks", get(get_tasks))
        .route("/connectors/{c}/tasks-config", get(get_tasks_config))
        .route("/connectors/{c}/tasks/{t}/status", get(get_task_status))
        .route("/connectors/{c}/tasks/{t}/restart", post(restart_task))
        .route(
            "/connectors/{c}/offsets",
            get(get_offsets).patch(patch_offsets).delete(reset_offsets),
        )
        .route("/connectors/{c}/topics", get(get_topics))
        .route("/connectors/{c}/topics/reset", put(reset_topics))
        .route("/connectors/{c}/runs", get(get_runs))
        .route("/connector-plugins", get(list_plugins))
        .route("/connector-plugins/{p}/config", get(plugin_config))
        .route("/connector-plugins/{p}/config/validate", put(validate))
        .route("/admin/loggers", get(list_loggers))
        .route("/admin/loggers/{name}", get(get_logger).put(set_logger))
        .route("/audit", get(get_audit))
        .fallback(not_found)
        .layer(axum::middleware::from_fn_with_state(app.clone(), gate))
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY))
        .with_state(app)
}

/// Authentication, authorization and the request log, in front of every route.
async fn gate(State(app): State<Arc<App>>, mut req: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let mut actor = String::from("-");
    let response = match required_role(&method, &path) {
        None => next.run(req).await,
        Some(needed) => match app.auth.caller(&*app.shared.store, req.headers()).await {
            Err(e) => {
                let mut r = e.into_response();
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Basic realm=\"sluice\", Bearer"),
                );
                r
            }
            Ok(c) if c.role < needed => {
                actor = c.actor();
                ApiError::new(
                    StatusCode::FORBIDDEN,
                    format!(
                        "token `{}` has the role {}, and {method} {path} needs {}",
                        c.name,
                        c.role.as_str(),
                        needed.as_str()
                    ),
                )
                .into_response()
            }
            Ok(c) => {
                actor = c.actor();
                req.extensions_mut().insert(c);
                next.run(req).await
            }
        },
    };
    info!(
        target: "sluice_server::http",
        method = %method,
        path = %path,
        status = response.status().as_u16(),
        ms = started.elapsed().as_millis() as u64,
        actor = %actor,
        "Request answered."
    );
    response
}

async fn not_found(method: Method, uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!(
            "{method} {} is not an endpoint of this server; GET /openapi.json lists them",
            uri.path()
        ),
    )
}

/// Parses a JSON body, saying which field is wrong and what is accepted.
fn parse_body<T: DeserializeOwned>(body: Result<Bytes, BytesRejection>) -> ApiResult<T> {
    let bytes = body.map_err(|e| ApiError::new(e.status(), e.body_text()))?;
    if bytes.is_empty() {
        return Err(ApiError::bad_request("the request needs a JSON body"));
    }
    let de = &mut serde_json::Deserializer::from_slice(&bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::bad_request(format!("the body is not valid JSON: {inner}"))
        } else if path == "." {
            ApiError::bad_request(format!("the body has the wrong shape: {inner}"))
        } else {
            ApiError::bad_request(format!("field `{path}`: {inner}"))
        }
    })
}

fn job(app: &App, name: &str) -> ApiResult<Arc<Hosted>> {
    app.jobs.get(name).ok_or_else(|| ApiError::not_found(name))
}

/// The stop deadline a request asks for (`?timeout=30s`, Sluice's addition).
fn deadline(query: &Option<String>) -> ApiResult<Duration> {
    /// A longer deadline is taken as this one (a stop that needs a day should abort).
    const LONGEST: Duration = Duration::from_secs(24 * 3600);
    match query_values(query, "timeout").first() {
        None => Ok(sluice_engine::STOP_DEADLINE),
        Some(t) => humantime::parse_duration(t)
            .map(|d| d.min(LONGEST))
            .map_err(|e| {
                ApiError::bad_request(format!(
                    "query parameter `timeout`: {e}; write a duration such as 30s or 2m"
                ))
            }),
    }
}

/// Every value of `key` in a raw query (`expand=status&expand=info`).
fn query_values(query: &Option<String>, key: &str) -> Vec<String> {
    let Some(q) = query else { return Vec::new() };
    q.split('&')
        .filter_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == key).then(|| percent_decode(v))
        })
        .collect()
}

/// A boolean query parameter as Kafka Connect reads one (Java's `Boolean.valueOf`): `true` in
/// any case is true, anything else false.
fn query_flag(query: &Option<String>, key: &str) -> ApiResult<bool> {
    Ok(query_values(query, key)
        .first()
        .is_some_and(|v| v.eq_ignore_ascii_case("true")))
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match u8::from_str_radix(&s[i + 1..i + 3], 16) {
                Ok(v) => {
                    out.push(v);
                    i += 2;
                }
                Err(_) => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

// ---- shapes ----

/// Kafka Connect's ServerInfo.
#[derive(Serialize, ToSchema)]
pub struct ServerInfo {
    pub version: String,
    pub commit: String,
    pub kafka_cluster_id: String,
    /// Sluice's addition: this worker's advertised `host:port`.
    pub worker_id: String,
}

#[derive(Serialize, ToSchema)]
pub struct ConnectorTaskId {
    pub connector: String,
    pub task: i32,
}

/// Kafka Connect's ConnectorInfo.
#[derive(Serialize, ToSchema)]
pub struct ConnectorInfo {
    pub name: String,
    /// The config as Kafka Connect's flat string map, secrets masked.
    pub config: BTreeMap<String, String>,
    pub tasks: Vec<ConnectorTaskId>,
    /// Always `source`: a Sluice job reads and writes.
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Serialize, ToSchema)]
pub struct ConnectorState {
    pub state: String,
    pub worker_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

#[derive(Serialize, ToSchema)]
pub struct TaskState {
    pub id: i32,
    pub state: String,
    pub worker_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<String>,
}

/// Sluice's added status fields.
#[derive(Serialize, ToSchema)]
pub struct SluiceStatus {
    /// Sluice's own state: RUNNING, PAUSED, STOPPING, FINISHED, STOPPED, ABORTED, FAILED,
    /// INTERRUPTED, or UNASSIGNED before the first run.
    pub state: String,
    /// What the job was asked to be in: RUNNING, PAUSED, STOPPED.
    pub target_state: String,
    /// The run in progress, with live figures.
    pub run: Option<RunningView>,
    /// How the last run ended (the stop receipt: rows per table, splits committed).
    pub last_run: Option<Ended>,
    /// The next run starts from scratch (offsets reset).
    pub reset_pending: bool,
}

/// Kafka Connect's ConnectorStateInfo, with Sluice's `sluice` field.
#[derive(Serialize, ToSchema)]
pub struct ConnectorStateInfo {
    pub name: String,
    pub connector: ConnectorState,
    pub tasks: Vec<TaskState>,
    #[serde(rename = "type")]
    pub kind: String,
    pub sluice: SluiceStatus,
}

#[derive(Serialize, ToSchema)]
pub struct TaskInfo {
    pub id: ConnectorTaskId,
    pub config: BTreeMap<String, String>,
}

/// Kafka Connect's CreateConnectorRequest.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConnectorRequest {
    pub name: String,
    /// Nested (the job file as JSON) or Kafka Connect's flat dotted string keys.
    #[schema(value_type = Object)]
    pub config: Value,
    #[serde(default)]
    pub initial_state: Option<InitialState>,
}

#[derive(Deserialize, ToSchema, Clone, Copy)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InitialState {
    Running,
    Paused,
    Stopped,
}

#[derive(Serialize, Deserialize, ToSchema)]
pub struct ConnectorOffset {
    #[schema(value_type = Object)]
    pub partition: Value,
    #[schema(value_type = Object)]
    pub offset: Value,
}

#[derive(Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConnectorOffsets {
    pub offsets: Vec<ConnectorOffset>,
}

#[derive(Serialize, ToSchema)]
pub struct Message {
    pub message: String,
}

#[derive(Serialize, ToSchema)]
pub struct PluginInfo {
    pub class: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub version: String,
}

#[derive(Serialize, ToSchema)]
pub struct ConfigKeyInfo {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub required: bool,
    pub default_value: Option<String>,
    pub importance: String,
    pub documentation: String,
    pub group: Option<String>,
    pub order: i32,
    pub width: String,
    pub display_name: String,
    pub dependents: Vec<String>,
}

#[derive(Serialize, ToSchema)]
pub struct ConfigValueInfo {
    pub name: String,
    pub value: Option<String>,
    pub recommended_values: Vec<String>,
    pub errors: Vec<String>,
    pub visible: bool,
}

#[derive(Serialize, ToSchema)]
pub struct ConfigInfo {
    pub definition: ConfigKeyInfo,
    pub value: ConfigValueInfo,
}

/// Kafka Connect's ConfigInfos.
#[derive(Serialize, ToSchema)]
pub struct ConfigInfos {
    pub name: String,
    pub error_count: i32,
    pub groups: Vec<String>,
    pub configs: Vec<ConfigInfo>,
}

#[derive(Serialize, ToSchema)]
pub struct Health {
    pub status: String,
    pub message: String,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LoggerLevelRequest {
    pub level: String,
}

// ---- server ----

#[utoipa::path(get, path = "/", tag = "server", responses((status = 200, body = ServerInfo)))]
async fn server_info(State(app): State<Arc<App>>) -> Json<ServerInfo> {
    Json(ServerInfo {
        version: env!("CARGO_PKG_VERSION").to_string(),
        commit: option_env!("SLUICE_COMMIT")
            .unwrap_or("unknown")
            .to_string(),
        kafka_cluster_id: "sluice".to_string(),
        worker_id: app.worker_id.clone(),
    })
}

#[utoipa::path(get, path = "/health", tag = "server",
    responses((status = 200, body = Health), (status = 503, body = Health)))]
async fn health(State(app): State<Arc<App>>) -> Response {
    if app.healthy() {
        Json(Health {
            status: "healthy".into(),
            message: "Worker has completed startup and is ready to handle requests.".into(),
        })
        .into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unhealthy".into(),
                message: "The state store does not answer; jobs cannot record their progress."
                    .into(),
            }),
        )
            .into_response()
    }
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

#[utoipa::path(get, path = "/metrics", tag = "server",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain")))]
async fn metrics(State(app): State<Arc<App>>) -> Response {
    let text = app.metrics.as_ref().map(|h| h.render()).unwrap_or_default();
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

// ---- connectors ----

fn info_of(v: &View) -> ConnectorInfo {
    let tasks = if v.target == TargetState::Stopped {
        Vec::new()
    } else {
        vec![ConnectorTaskId {
            connector: v.name.clone(),
            task: 0,
        }]
    };
    ConnectorInfo {
        name: v.name.clone(),
        config: config::flatten(&v.config),
        tasks,
        kind: "source".into(),
    }
}

fn status_of(app: &App, v: &View) -> ConnectorStateInfo {
    let trace = v.error.clone().filter(|_| v.connect_state == "FAILED");
    let tasks = if v.target == TargetState::Stopped {
        Vec::new()
    } else {
        vec![TaskState {
            id: 0,
            state: v.connect_state.to_string(),
            worker_id: app.worker_id.clone(),
            trace: trace.clone(),
        }]
    };
    ConnectorStateInfo {
        name: v.name.clone(),
        connector: ConnectorState {
            state: v.connect_state.to_string(),
            worker_id: app.worker_id.clone(),
            trace,
        },
        tasks,
        kind: "source".into(),
        sluice: SluiceStatus {
            state: v.state.clone(),
            target_state: v.target.as_str().to_string(),
            run: v.running.clone(),
            last_run: v.last.clone(),
            reset_pending: v.reset_pending,
        },
    }
}

#[utoipa::path(get, path = "/connectors", tag = "connectors",
    params(("expand" = Option<Vec<String>>, Query, description = "status and/or info")),
    responses((status = 200, description = "names, or a map of name to {status, info}", body = serde_json::Value), (status = 400, body = ErrorBody)))]
async fn list_connectors(
    State(app): State<Arc<App>>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let expand = query_values(&q, "expand");
    for e in &expand {
        if e != "status" && e != "info" {
            return Err(ApiError::bad_request(format!(
                "query parameter `expand` takes status or info, not {e:?}"
            )));
        }
    }
    let jobs = app.jobs.all();
    if expand.is_empty() {
        let names: Vec<String> = jobs.iter().map(|j| j.name.clone()).collect();
        return Ok(Json(names).into_response());
    }
    let mut out = serde_json::Map::new();
    for j in jobs {
        let v = j.view();
        let mut entry = serde_json::Map::new();
        if expand.iter().any(|e| e == "status") {
            entry.insert("status".into(), json!(status_of(&app, &v)));
        }
        if expand.iter().any(|e| e == "info") {
            entry.insert("info".into(), json!(info_of(&v)));
        }
        out.insert(v.name, Value::Object(entry));
    }
    Ok(Json(Value::Object(out)).into_response())
}

fn check_name(name: &str) -> ApiResult<()> {
    if name.trim().is_empty() {
        return Err(ApiError::bad_request(
            "the connector name must not be empty",
        ));
    }
    if name.len() > 200 || name.chars().any(|c| c.is_control() || c == '/') {
        return Err(ApiError::bad_request(
            "the connector name must be at most 200 characters, without `/` or control \
             characters",
        ));
    }
    Ok(())
}

/// Refuses a config change that would alter what an unfinished copy writes (409): resuming
/// it would mix two configurations in the target, as `sluice run` refuses. After an offsets
/// reset the next run starts over, so any change is taken.
async fn check_change(app: &App, j: &Hosted, new: &Value) -> ApiResult<()> {
    // An offsets reset not yet taken by a run: the next run starts over, so anything goes.
    if j.view().reset_pending && !j.is_running() {
        return Ok(());
    }
    let Some(g) = app.shared.store.generation(&j.name).await? else {
        return Ok(());
    };
    if g.finished {
        return Ok(());
    }
    let Some(planned) = g.manifest.as_ref().and_then(|m| m.get("config")) else {
        return Ok(());
    };
    // Compared as the run will compare it: references resolved.
    let Ok((_, resolved)) = load_job(&j.name, new) else {
        return Ok(());
    };
    let diffs = sluice_job::manifest::config_differences(
        planned,
        &sluice_job::manifest::job_config(&resolved),
        12,
    );
    if diffs.is_empty() {
        return Ok(());
    }
    let name = &j.name;
    Err(ApiError::conflict(format!(
        "job {name} has an unfinished copy (generation {}), and this config differs from the \
         one it started with in what it writes, so resuming it would mix two configurations \
         in the target: {}. Undo the change, or copy from scratch with the new config: PUT \
         /connectors/{name}/stop, DELETE /connectors/{name}/offsets, then send the config \
         again (with write = \"append\", empty the target tables first)",
        g.id,
        diffs.join("; ")
    )))
}

/// Checks a posted config the way a job file is checked (no connections made).
fn checked(name: &str, config: &Value) -> ApiResult<()> {
    load_job(name, config)
        .map(|_| ())
        .map_err(ApiError::bad_request)
}

#[utoipa::path(post, path = "/connectors", tag = "connectors", request_body = CreateConnectorRequest,
    responses((status = 201, body = ConnectorInfo), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn create_connector(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let req: CreateConnectorRequest = parse_body(body)?;
    check_name(&req.name)?;
    let doc = config::from_request(&req.name, &req.config)?;
    checked(&req.name, &doc)?;
    let target = match req.initial_state.unwrap_or(InitialState::Running) {
        InitialState::Running => TargetState::Running,
        InitialState::Paused => TargetState::Paused,
        InitialState::Stopped => TargetState::Stopped,
    };
    let created = app.create(&req.name, doc, target, &caller.actor()).await?;
    let Some(job) = created else {
        return Err(ApiError::conflict(format!(
            "Connector {} already exists",
            req.name
        )));
    };
    let v = job.view();
    let location = format!("/connectors/{}", url_segment(&req.name));
    Ok((
        StatusCode::CREATED,
        [(header::LOCATION, location)],
        Json(info_of(&v)),
    )
        .into_response())
}

fn url_segment(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[utoipa::path(get, path = "/connectors/{connector}", tag = "connectors",
    params(("connector" = String, Path)),
    responses((status = 200, body = ConnectorInfo), (status = 404, body = ErrorBody)))]
async fn get_connector(
    State(app): State<Arc<App>>,
    Path(c): Path<String>,
) -> ApiResult<Json<ConnectorInfo>> {
    Ok(Json(info_of(&job(&app, &c)?.view())))
}

#[utoipa::path(delete, path = "/connectors/{connector}", tag = "connectors",
    params(("connector" = String, Path), ("timeout" = Option<String>, Query, description = "stop deadline, e.g. 30s"),
        ("drop_slot" = Option<bool>, Query, description = "change capture: also drop the job's replication slot and publication")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn delete_connector(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(c): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<StatusCode> {
    let j = job(&app, &c)?;
    let limit = deadline(&q)?;
    let drop_slot = query_flag(&q, "drop_slot")?;
    let config = j.config();
    j.delete(&app.shared, &caller.actor(), limit).await?;
    app.jobs.remove(&c);
    if drop_slot {
        let (file, _) = crate::hosted::load_job(&c, &config).map_err(ApiError::bad_request)?;
        sluice_job::release_upstream(&file, app.shared.store.clone(), &caller.actor())
            .await
            .map_err(|e| {
                ApiError::from(e).prefixed(&format!(
                    "connector {c} was deleted, but dropping its replication slot failed"
                ))
            })?;
    }
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/connectors/{connector}/config", tag = "connectors",
    params(("connector" = String, Path)),
    responses((status = 200, body = BTreeMap<String, String>), (status = 404, body = ErrorBody)))]
async fn get_config(
    State(app): State<Arc<App>>,
    Path(c): Path<String>,
) -> ApiResult<Json<BTreeMap<String, String>>> {
    Ok(Json(config::flatten(&job(&app, &c)?.config())))
}

#[utoipa::path(put, path = "/connectors/{connector}/config", tag = "connectors",
    params(("connector" = String, Path)), request_body = Object,
    responses((status = 201, body = ConnectorInfo), (status = 200, body = ConnectorInfo), (status = 400, body = ErrorBody)))]
async fn put_config(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(c): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    check_name(&c)?;
    let posted: Value = parse_body(body)?;
    let doc = config::from_request(&c, &posted)?;
    match app.jobs.get(&c) {
        Some(j) => {
            let old = j.config();
            let doc = config::unmask(doc, &old);
            checked(&c, &doc)?;
            check_change(&app, &j, &doc).await?;
            let changed = config::changed_keys(&old, &doc);
            j.update_config(&app.shared, &caller.actor(), doc, changed)
                .await?;
            Ok((StatusCode::OK, Json(info_of(&j.view()))).into_response())
        }
        None => {
            checked(&c, &doc)?;
            match app
                .create(&c, doc, TargetState::Running, &caller.actor())
                .await?
            {
                Some(j) => Ok((StatusCode::CREATED, Json(info_of(&j.view()))).into_response()),
                None => Err(ApiError::conflict(format!(
                    "Connector {c} was created at the same time by another request"
                ))),
            }
        }
    }
}

#[utoipa::path(patch, path = "/connectors/{connector}/config", tag = "connectors",
    params(("connector" = String, Path)), request_body = Object,
    responses((status = 200, body = ConnectorInfo), (status = 404, body = ErrorBody), (status = 400, body = ErrorBody)))]
async fn patch_config(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(c): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<ConnectorInfo>> {
    let j = job(&app, &c)?;
    let patch: Value = parse_body(body)?;
    let old = j.config();
    let doc = config::merge_patch(&c, &old, &patch)?;
    let doc = config::unmask(doc, &old);
    checked(&c, &doc)?;
    check_change(&app, &j, &doc).await?;
    let changed = config::changed_keys(&old, &doc);
    j.update_config(&app.shared, &caller.actor(), doc, changed)
        .await?;
    Ok(Json(info_of(&j.view())))
}

#[utoipa::path(get, path = "/connectors/{connector}/status", tag = "connectors",
    params(("connector" = String, Path)),
    responses((status = 200, body = ConnectorStateInfo), (status = 404, body = ErrorBody)))]
async fn get_status(
    State(app): State<Arc<App>>,
    Path(c): Path<String>,
) -> ApiResult<Json<ConnectorStateInfo>> {
    Ok(Json(status_of(&app, &job(&app, &c)?.view())))
}

#[utoipa::path(put, path = "/connectors/{connector}/pause", tag = "connectors",
    params(("connector" = String, Path)),
    responses((status = 202), (status = 404, body = ErrorBody)))]
async fn pause(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(c): Path<String>,
) -> ApiResult<StatusCode> {
    job(&app, &c)?.pause(&app.shared, &caller.actor()).await?;
    Ok(StatusCode::ACCEPTED)
}

#[utoipa::path(put, path = "/connectors/{connector}/resume", tag = "connectors",
    params(("connector" = String, Path)),
    responses((status = 202), (status = 404, body = ErrorBody)))]
async fn resume(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(c): Path<String>,
) -> ApiResult<StatusCode> {
    job(&app, &c)?.resume(&app.shared, &caller.actor()).await?;
    Ok(StatusCode::ACCEPTED)
}

#[utoipa::path(put, path = "/connectors/{connector}/stop", tag = "connectors",
    params(("connector" = String, Path), ("timeout" = Option<String>, Query, description = "abort if the stop has not finished after this long, e.g. 30s")),
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn stop(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(c): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<StatusCode> {
    let j = job(&app, &c)?;
    let limit = deadline(&q)?;
    j.stop(&app.shared, &caller.actor(), limit).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/connectors/{connector}/restart", tag = "connectors",
    params(("connector" = String, Path), ("includeTasks" = Option<bool>, Query), ("onlyFailed" = Option<bool>, Query), ("timeout" = Option<String>, Query, description = "stop deadline of the run being restarted, e.g. 30s")),
    responses((status = 204), (status = 202, body = ConnectorStateInfo), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn restart(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(c): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Response> {
    let j = job(&app, &c)?;
    let include_tasks = query_flag(&q, "includeTasks")?;
    let only_failed = query_flag(&q, "onlyFailed")?;
    let limit = deadline(&q)?;
    j.restart(&app.shared, &caller.actor(), only_failed, limit);
    if !include_tasks && !only_failed {
        return Ok(StatusCode::NO_CONTENT.into_response());
    }
    Ok((StatusCode::ACCEPTED, Json(status_of(&app, &j.view()))).into_response())
}

#[utoipa::path(get, path = "/connectors/{connector}/tasks", tag = "tasks",
    params(("connector" = String, Path)),
    responses((status = 200, body = Vec<TaskInfo>), (status = 404, body = ErrorBody)))]
async fn get_tasks(
    State(app): State<Arc<App>>,
    Path(c): Path<String>,
) -> ApiResult<Json<Vec<TaskInfo>>> {
    let v = job(&app, &c)?.view();
    let info = info_of(&v);
    Ok(Json(
        info.tasks
            .into_iter()
            .map(|id| TaskInfo {
                id,
                config: info.config.clone(),
            })
            .collect(),
    ))
}

#[utoipa::path(get, path = "/connectors/{connector}/tasks-config", tag = "tasks",
    params(("connector" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
async fn get_tasks_config(
    State(app): State<Arc<App>>,
    Path(c): Path<String>,
) -> ApiResult<Json<Value>> {
    let v = job(&app, &c)?.view();
    let info = info_of(&v);
    let mut out = serde_json::Map::new();
    for t in info.tasks {
        out.insert(format!("{}-{}", t.connector, t.task), json!(info.config));
    }
    Ok(Json(Value::Object(out)))
}

fn task_of(app: &App, c: &str, t: &str) -> ApiResult<(Arc<Hosted>, View)> {
    let j = job(app, c)?;
    let v = j.view();
    if t != "0" || v.target == TargetState::Stopped {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("Task {c}-{t} not found (a Sluice job has one task, 0, unless it is stopped)"),
        ));
    }
    Ok((j, v))
}

#[utoipa::path(get, path = "/connectors/{connector}/tasks/{task}/status", tag = "tasks",
    params(("connector" = String, Path), ("task" = i32, Path)),
    responses((status = 200, body = TaskState), (status = 404, body = ErrorBody)))]
async fn get_task_status(
    State(app): State<Arc<App>>,
    Path((c, t)): Path<(String, String)>,
) -> ApiResult<Json<TaskState>> {
    let (_, v) = task_of(&app, &c, &t)?;
    let s = status_of(&app, &v);
    s.tasks
        .into_iter()
        .next()
        .map(Json)
        .ok_or_else(|| ApiError::not_found(&c))
}

#[utoipa::path(post, path = "/connectors/{connector}/tasks/{task}/restart", tag = "tasks",
    params(("connector" = String, Path), ("task" = i32, Path)),
    responses((status = 204), (status = 404, body = ErrorBody)))]
async fn restart_task(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path((c, t)): Path<(String, String)>,
) -> ApiResult<StatusCode> {
    let (j, _) = task_of(&app, &c, &t)?;
    j.restart(
        &app.shared,
        &caller.actor(),
        false,
        sluice_engine::STOP_DEADLINE,
    );
    Ok(StatusCode::NO_CONTENT)
}

// ---- offsets ----

/// The job's committed positions as Kafka Connect's offsets: a partition per split.
async fn offsets_of(app: &App, name: &str) -> ApiResult<Vec<ConnectorOffset>> {
    let store = &app.shared.store;
    let Some(generation) = store.generation(name).await? else {
        return Ok(Vec::new());
    };
    let positions = store.positions(name, &generation.id).await?;
    Ok(positions
        .into_iter()
        .map(|p| {
            let mut offset = serde_json::to_value(&p.position).unwrap_or(Value::Null);
            if let Value::Object(m) = &mut offset {
                m.remove("split");
                m.insert("rows".into(), json!(p.rows));
                m.insert("updated_at".into(), json!(p.updated_at));
            }
            ConnectorOffset {
                partition: json!({"table": p.table, "split": p.split, "generation": generation.id}),
                offset,
            }
        })
        .collect())
}

#[utoipa::path(get, path = "/connectors/{connector}/offsets", tag = "offsets",
    params(("connector" = String, Path)),
    responses((status = 200, body = ConnectorOffsets), (status = 404, body = ErrorBody)))]
async fn get_offsets(
    State(app): State<Arc<App>>,
    Path(c): Path<String>,
) -> ApiResult<Json<ConnectorOffsets>> {
    job(&app, &c)?;
    Ok(Json(ConnectorOffsets {
        offsets: offsets_of(&app, &c).await?,
    }))
}

/// Offsets may change only while the job is stopped and nothing runs (as Kafka Connect).
fn require_stopped(j: &Hosted) -> ApiResult<()> {
    if j.target() != TargetState::Stopped || j.is_running() {
        return Err(ApiError::bad_request(format!(
            "Connectors must be in the STOPPED state before their offsets can be modified. \
             This can be done for the specified connector by issuing a 'PUT' request to the \
             '/connectors/{}/stop' endpoint",
            j.name
        )));
    }
    Ok(())
}

#[utoipa::path(delete, path = "/connectors/{connector}/offsets", tag = "offsets",
    params(("connector" = String, Path)),
    responses((status = 200, body = Message), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn reset_offsets(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(c): Path<String>,
) -> ApiResult<Json<Message>> {
    let j = job(&app, &c)?;
    // A stop answered a moment ago may still be rolling back: wait for it (bounded).
    if j.target() == TargetState::Stopped {
        j.wait_idle(sluice_engine::STOP_DEADLINE + sluice_engine::ABORT_DEADLINE)
            .await;
    }
    require_stopped(&j)?;
    j.reset_offsets(&app.shared, &caller.actor()).await?;
    Ok(Json(Message {
        message: "The offsets for this connector have been reset successfully".into(),
    }))
}

/// What a PATCH of offsets does (or, with `dry_run`, would do) to each split it names.
#[derive(Serialize, ToSchema)]
pub struct OffsetEffect {
    #[schema(value_type = Object)]
    pub partition: Value,
    /// `redo` (read again from its start), `skip` (marked complete), `set` (continues after
    /// the given position), `unchanged`, or `refused` (it would write rows twice).
    pub effect: String,
    /// Rows the split had committed before the edit.
    pub rows: u64,
    /// What it means for the next run, or why it is refused.
    pub detail: String,
}

/// The edit one entry of a PATCH asks for: `offset: null` reads the split again, `{"done":
/// true}` skips the rest of it, `{"value": …}` sets its position (the form GET answers).
fn position_edit(o: &ConnectorOffset) -> ApiResult<sluice_job::PositionEdit> {
    use sluice_job::PositionChange;
    let split = o
        .partition
        .get("split")
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "offsets[].partition must name a split, as GET /offsets answers:                  {{\"split\": \"public.orders#0\"}}; got {}",
                o.partition
            ))
        })?;
    let change = match &o.offset {
        Value::Null => PositionChange::Redo,
        Value::Object(m) => {
            if let Some(k) = m
                .keys()
                .find(|k| !["value", "done", "rows", "updated_at"].contains(&k.as_str()))
            {
                return Err(ApiError::bad_request(format!(
                    "offsets[].offset: unknown field {k:?} of split {split} (accepted: value,                      done; rows and updated_at are ignored)"
                )));
            }
            match (m.get("done"), m.get("value")) {
                (Some(Value::Bool(true)), _) => PositionChange::Skip,
                (Some(Value::Bool(false)) | None, Some(v)) => PositionChange::Set(v.clone()),
                (Some(Value::Bool(false)) | None, None) => {
                    return Err(ApiError::bad_request(format!(
                        "offsets[].offset of split {split} has no \"value\": give the position                          to continue after, {{\"done\": true}} to skip the split, or null to                          read it again"
                    )));
                }
                (Some(other), _) => {
                    return Err(ApiError::bad_request(format!(
                        "offsets[].offset.done of split {split} must be a boolean, got {other}"
                    )));
                }
            }
        }
        other => {
            return Err(ApiError::bad_request(format!(
                "offsets[].offset of split {split} must be null or an object, got {other}"
            )));
        }
    };
    Ok(sluice_job::PositionEdit {
        split: split.to_string(),
        change,
    })
}

#[utoipa::path(patch, path = "/connectors/{connector}/offsets", tag = "offsets",
    params(("connector" = String, Path), ("dry_run" = Option<bool>, Query, description = "show what the change would redo or skip, change nothing")),
    request_body = ConnectorOffsets,
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn patch_offsets(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(c): Path<String>,
    RawQuery(q): RawQuery,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Value>> {
    let j = job(&app, &c)?;
    let req: ConnectorOffsets = parse_body(body)?;
    let dry_run = query_flag(&q, "dry_run")?;
    let edits = req
        .offsets
        .iter()
        .map(position_edit)
        .collect::<ApiResult<Vec<_>>>()?;
    if edits.is_empty() {
        return Err(ApiError::bad_request(
            "offsets is empty: name the splits to edit, as GET /offsets lists them",
        ));
    }
    // A stop answered a moment ago may still be rolling back: wait for it (bounded).
    if j.target() == TargetState::Stopped {
        j.wait_idle(sluice_engine::STOP_DEADLINE + sluice_engine::ABORT_DEADLINE)
            .await;
    }
    // The positions are read under the job's locks, for a dry run too.
    require_stopped(&j)?;
    let effects = j
        .edit_offsets(&app.shared, &edits, !dry_run, &caller.actor())
        .await?;
    let effects: Vec<OffsetEffect> = effects
        .into_iter()
        .map(|e| OffsetEffect {
            partition: json!({"table": e.table, "split": e.split}),
            effect: e.effect.to_string(),
            rows: e.rows,
            detail: e.detail,
        })
        .collect();
    if dry_run {
        return Ok(Json(json!({"dry_run": true, "effects": effects})));
    }
    Ok(Json(json!({
        "message": "The offsets for this connector have been altered successfully",
        "effects": effects,
    })))
}

#[utoipa::path(get, path = "/connectors/{connector}/topics", tag = "connectors",
    params(("connector" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
async fn get_topics(State(app): State<Arc<App>>, Path(c): Path<String>) -> ApiResult<Json<Value>> {
    job(&app, &c)?;
    Ok(Json(json!({ c: {"topics": []} })))
}

#[utoipa::path(put, path = "/connectors/{connector}/topics/reset", tag = "connectors",
    params(("connector" = String, Path)),
    responses((status = 200), (status = 404, body = ErrorBody)))]
async fn reset_topics(State(app): State<Arc<App>>, Path(c): Path<String>) -> ApiResult<StatusCode> {
    job(&app, &c)?;
    Ok(StatusCode::OK)
}

#[utoipa::path(get, path = "/connectors/{connector}/runs", tag = "sluice",
    params(("connector" = String, Path), ("limit" = Option<usize>, Query)),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn get_runs(
    State(app): State<Arc<App>>,
    Path(c): Path<String>,
    RawQuery(q): RawQuery,
) -> ApiResult<Json<Value>> {
    job(&app, &c)?;
    let limit = limit_of(&q)?;
    let runs = app.shared.store.runs(&c, limit).await?;
    let runs: Vec<Value> = runs
        .into_iter()
        .map(|mut r| {
            r.error = r.error.map(|e| sluice_core::config::redact(&e));
            json!(r)
        })
        .collect();
    Ok(Json(json!({ "runs": runs })))
}

fn limit_of(q: &Option<String>) -> ApiResult<usize> {
    match query_values(q, "limit").first() {
        None => Ok(50),
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=10_000).contains(n))
            .ok_or_else(|| ApiError::bad_request("query parameter `limit` takes 1 to 10000")),
    }
}

#[utoipa::path(get, path = "/audit", tag = "sluice",
    params(("connector" = Option<String>, Query), ("limit" = Option<usize>, Query)),
    responses((status = 200, body = Object), (status = 400, body = ErrorBody)))]
async fn get_audit(State(app): State<Arc<App>>, RawQuery(q): RawQuery) -> ApiResult<Json<Value>> {
    let limit = limit_of(&q)?;
    let connector = query_values(&q, "connector").into_iter().next();
    let entries = app.shared.store.audit(connector.as_deref(), limit).await?;
    Ok(Json(json!({ "entries": entries })))
}

// ---- plugins ----

/// The sections a plugin (a connector type) configures: `source`, `sink` or both.
fn plugin_sections(p: &str) -> Vec<&'static str> {
    let mut out = Vec::new();
    if SourceConfig::TYPES.contains(&p) {
        out.push("source");
    }
    if SinkKind::TYPES.contains(&p) {
        out.push("sink");
    }
    out
}

#[utoipa::path(get, path = "/connector-plugins", tag = "plugins",
    params(("connectorsOnly" = Option<bool>, Query, description = "accepted; Sluice has no other plugin kinds")),
    responses((status = 200, body = Vec<PluginInfo>)))]
async fn list_plugins() -> Json<Vec<PluginInfo>> {
    let version = env!("CARGO_PKG_VERSION");
    let mut out: Vec<PluginInfo> = SourceConfig::TYPES
        .iter()
        .map(|t| PluginInfo {
            class: t.to_string(),
            kind: "source".into(),
            version: version.into(),
        })
        .collect();
    out.extend(SinkKind::TYPES.iter().map(|t| PluginInfo {
        class: t.to_string(),
        kind: "sink".into(),
        version: version.into(),
    }));
    Json(out)
}

/// A connector type's option names, as its config type accepts them.
fn plugin_options(p: &str, kind: &str) -> Vec<String> {
    // The config types refuse unknown keys and list the accepted ones in the message.
    let probe = json!({"type": p, "\u{1}probe": true});
    let msg = match kind {
        "source" => serde_json::from_value::<SourceConfig>(probe).err(),
        _ => serde_json::from_value::<SinkConfig>(probe).err(),
    }
    .map(|e| e.to_string())
    .unwrap_or_default();
    let mut names: Vec<String> = msg
        .split_once("expected one of ")
        .or_else(|| msg.split_once("expected "))
        .map(|(_, list)| {
            list.split(',')
                .filter_map(|w| {
                    let w = w.trim();
                    let a = w.find('`')?;
                    let b = w[a + 1..].find('`')?;
                    Some(w[a + 1..a + 1 + b].to_string())
                })
                .collect()
        })
        .unwrap_or_default();
    names.insert(0, "type".into());
    names.dedup();
    names
}

#[utoipa::path(get, path = "/connector-plugins/{plugin}/config", tag = "plugins",
    params(("plugin" = String, Path)),
    responses((status = 200, body = Vec<ConfigKeyInfo>), (status = 404, body = ErrorBody)))]
async fn plugin_config(Path(p): Path<String>) -> ApiResult<Json<Vec<ConfigKeyInfo>>> {
    let sections = plugin_sections(&p);
    if sections.is_empty() {
        return Err(unknown_plugin(&p));
    }
    let mut keys = Vec::new();
    for section in sections {
        let mut names = plugin_options(&p, section);
        if section == "sink" {
            // Options every sink takes, read before the connector's own.
            for common in ["write", "create_tables", "table_map"] {
                if !names.iter().any(|n| n == common) {
                    names.push(common.to_string());
                }
            }
        }
        keys.extend(names.into_iter().map(|n| format!("{section}.{n}")));
    }
    Ok(Json(
        keys.iter()
            .enumerate()
            .map(|(i, k)| key_info(k, i as i32, k.ends_with(".type")))
            .collect(),
    ))
}

fn key_info(name: &str, order: i32, required: bool) -> ConfigKeyInfo {
    ConfigKeyInfo {
        name: name.to_string(),
        kind: "STRING".into(),
        required,
        default_value: None,
        importance: if required { "HIGH" } else { "MEDIUM" }.into(),
        documentation: "see docs/connectors/ for this connector's options".into(),
        group: name.split('.').next().map(str::to_string),
        order,
        width: "NONE".into(),
        display_name: name.to_string(),
        dependents: Vec::new(),
    }
}

fn unknown_plugin(p: &str) -> ApiError {
    let mut all: Vec<&str> = SourceConfig::TYPES
        .iter()
        .chain(SinkKind::TYPES)
        .copied()
        .collect();
    all.sort_unstable();
    all.dedup();
    ApiError::new(
        StatusCode::NOT_FOUND,
        format!("Unknown plugin {p}; the plugins are {}", all.join(", ")),
    )
}

#[utoipa::path(put, path = "/connector-plugins/{plugin}/config/validate", tag = "plugins",
    params(("plugin" = String, Path)), request_body = Object,
    responses((status = 200, body = ConfigInfos), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn validate(
    Path(p): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<ConfigInfos>> {
    if plugin_sections(&p).is_empty() {
        return Err(unknown_plugin(&p));
    }
    let posted: Value = parse_body(body)?;
    let name = posted
        .get("name")
        .or_else(|| posted.pointer("/job/name"))
        .and_then(Value::as_str)
        .unwrap_or("validate")
        .to_string();
    let doc = config::from_request(&name, &posted)?;
    let flat = config::flatten(&doc);
    // Every error is attached to the key it concerns when it names one, else to `name`.
    let mut errors: BTreeMap<String, Vec<String>> = BTreeMap::new();
    match load_job(&name, &doc) {
        Err(msg) => errors
            .entry(key_of_message(&msg, &flat))
            .or_default()
            .push(msg),
        Ok((job, _)) => match sluice_job::build_spec(&job) {
            Err(e) => errors
                .entry(error_key(&e, &flat))
                .or_default()
                .push(error_text(&e)),
            Ok(spec) => {
                let checked = sluice_job::check(&spec).await;
                sluice_engine::close(&spec).await;
                if let Err(e) = checked {
                    errors
                        .entry(error_key(&e, &flat))
                        .or_default()
                        .push(error_text(&e));
                }
            }
        },
    }
    let mut keys: Vec<String> = flat.keys().cloned().collect();
    for k in errors.keys() {
        if !keys.contains(k) {
            keys.push(k.clone());
        }
    }
    let mut groups: Vec<String> = keys
        .iter()
        .filter_map(|k| k.split('.').next().map(str::to_string))
        .collect();
    groups.sort();
    groups.dedup();
    let configs: Vec<ConfigInfo> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| ConfigInfo {
            definition: key_info(k, i as i32, k.ends_with(".type")),
            value: ConfigValueInfo {
                name: k.clone(),
                value: flat.get(k).cloned(),
                recommended_values: Vec::new(),
                errors: errors.get(k).cloned().unwrap_or_default(),
                visible: true,
            },
        })
        .collect();
    let error_count = errors.values().map(|v| v.len() as i32).sum();
    Ok(Json(ConfigInfos {
        name: p,
        error_count,
        groups,
        configs,
    }))
}

fn error_text(e: &sluice_core::Error) -> String {
    let mut m = e.to_string();
    if let Some(h) = e.hint() {
        m.push_str(&format!(" ({h})"));
    }
    sluice_core::config::redact(&m)
}

fn error_key(e: &sluice_core::Error, flat: &BTreeMap<String, String>) -> String {
    e.key()
        .map(|k| k.replace('[', ".").replace(']', ""))
        .filter(|k| flat.contains_key(k))
        .unwrap_or_else(|| "name".into())
}

/// The key a load error names (`` `sink.url`: … ``), if it is one of the config's.
fn key_of_message(msg: &str, flat: &BTreeMap<String, String>) -> String {
    msg.split('`')
        .skip(1)
        .step_by(2)
        .map(|k| k.replace('[', ".").replace(']', ""))
        .find(|k| flat.contains_key(k))
        .unwrap_or_else(|| "name".into())
}

// ---- loggers ----

#[utoipa::path(get, path = "/admin/loggers", tag = "admin",
    responses((status = 200, body = Object)))]
async fn list_loggers(State(app): State<Arc<App>>) -> Json<Value> {
    let levels = app.logs.levels();
    Json(Value::Object(
        levels
            .into_iter()
            .map(|(k, v)| (k, json!({"level": v.to_uppercase(), "last_modified": null})))
            .collect(),
    ))
}

#[utoipa::path(get, path = "/admin/loggers/{name}", tag = "admin",
    params(("name" = String, Path)),
    responses((status = 200, body = Object), (status = 404, body = ErrorBody)))]
async fn get_logger(
    State(app): State<Arc<App>>,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let levels = app.logs.levels();
    let level = levels
        .get(&name)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("Logger {name} not found")))?;
    Ok(Json(
        json!({"level": level.to_uppercase(), "last_modified": null}),
    ))
}

#[utoipa::path(put, path = "/admin/loggers/{name}", tag = "admin",
    params(("name" = String, Path), ("scope" = Option<String>, Query)),
    request_body = LoggerLevelRequest,
    responses((status = 200, body = Vec<String>), (status = 400, body = ErrorBody)))]
async fn set_logger(
    State(app): State<Arc<App>>,
    Extension(caller): Extension<Caller>,
    Path(name): Path<String>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Json<Vec<String>>> {
    let req: LoggerLevelRequest = parse_body(body)?;
    let level = req.level.to_ascii_lowercase();
    if !["error", "warn", "info", "debug", "trace", "off"].contains(&level.as_str()) {
        return Err(ApiError::bad_request(format!(
            "field `level`: {:?} is not a level; accepted: ERROR, WARN, INFO, DEBUG, TRACE, OFF",
            req.level
        )));
    }
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "_:".contains(c))
    {
        return Err(ApiError::bad_request(
            "a logger is `root` or a module path such as sluice_engine or sluice_server::http",
        ));
    }
    app.logs.set(&name, &level).map_err(ApiError::bad_request)?;
    let entry = sluice_state::AuditEntry::new(
        "",
        caller.actor(),
        "api.logger",
        format!("{name} = {level}"),
    );
    let _ = app.shared.store.record_audit(&entry).await;
    Ok(Json(vec![name]))
}

// ---- the OpenAPI document ----

#[derive(OpenApi)]
#[openapi(
    info(title = "Sluice REST API", description = "Kafka Connect's REST API for Sluice jobs, with Sluice's additions (docs/rest-api.md)."),
    paths(
        server_info, health, metrics, list_connectors, create_connector, get_connector,
        delete_connector, get_config, put_config, patch_config, get_status, pause, resume, stop,
        restart, get_tasks, get_tasks_config, get_task_status, restart_task, get_offsets,
        reset_offsets, patch_offsets, get_topics, reset_topics, get_runs, get_audit, list_plugins,
        plugin_config, validate, list_loggers, get_logger, set_logger
    ),
    modifiers(&Security),
    security(("bearer" = []), ("basic" = [])),
)]
pub struct ApiDoc;

struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
        let c = doc.components.get_or_insert_with(Default::default);
        c.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        c.add_security_scheme(
            "basic",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Basic)),
        );
    }
}

impl App {
    /// Creates a hosted job (persisted first); `None` if the name is taken.
    pub async fn create(
        &self,
        name: &str,
        doc: Value,
        target: TargetState,
        actor: &str,
    ) -> ApiResult<Option<Arc<Hosted>>> {
        if !self
            .shared
            .store
            .create_connector(name, &doc, target)
            .await?
        {
            return Ok(None);
        }
        let rec = self
            .shared
            .store
            .connector(name)
            .await?
            .ok_or_else(|| ApiError::internal("the job vanished right after it was created"))?;
        let job = Hosted::new(rec);
        let entry = sluice_state::AuditEntry::new(
            name,
            actor,
            "api.create",
            format!("target state {}", target.as_str()),
        );
        let _ = self.shared.store.record_audit(&entry).await;
        self.jobs.insert(job.clone());
        job.start_if_wanted(&self.shared, actor, false).await;
        Ok(Some(job))
    }

    /// Loads the store's jobs at boot, and starts those that should run.
    pub async fn boot(&self, records: Vec<ConnectorRecord>) {
        for rec in records {
            let job = Hosted::new(rec);
            job.load_history(&self.shared).await;
            self.jobs.insert(job.clone());
            job.start_if_wanted(&self.shared, "server", false).await;
        }
    }
}
