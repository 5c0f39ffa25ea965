//! Wires config, inputs, router and outputs together; owns reload and shutdown.
//!
//! Shutdown order: stop accepting → each connection finishes the frame it is on and
//! its pending acks go out → buffers commit, queue and try one last flush → return,
//! all under `shutdown_timeout`.
//!
//! Reload: the new config is checked in full (TLS files load, new ports bind) before
//! anything changes; then outputs are reconciled (unchanged ones keep their buffers),
//! a new routing snapshot is swapped in, listeners get new contexts (new TLS material
//! and secrets for new connections), moved or removed listeners stop accepting, and
//! retired outputs drain. Open connections are never dropped.

use crate::config::{Config, ForwardConfig, HttpConfig, SourceConfig, TlsConfig};
use crate::input::forward::conn::ConnContext;
use crate::input::forward::frame::FrameLimits;
use crate::input::forward::ratelimit::LogLimiter;
use crate::input::forward::{listener, udp};
use crate::input::http::HttpContext;
use crate::input::mqtt::MqttSources;
use crate::metrics::{InputMetrics, RouterMetrics};
use crate::pipeline::{Outputs, Router};
use crate::telemetry::{InputInfo, Telemetry};
use anyhow::Context;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpSocket, UdpSocket};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// A listening input, as bound.
#[derive(Debug, Clone)]
pub struct BoundSource {
    /// The address actually bound (the real port when the config said 0).
    pub addr: SocketAddr,
    /// Whether it speaks TLS.
    pub tls: bool,
    /// Its counters (kept across reloads while the listener stays).
    pub metrics: Arc<InputMetrics>,
}

/// One listener at run time: its socket task, and the context new connections take.
#[derive(Debug)]
struct SourceRuntime {
    /// The address as configured (reload matches listeners on it).
    configured: SocketAddr,
    bound: BoundSource,
    contexts: Contexts,
    stop_accepting: CancellationToken,
}

/// Where a listener takes the context for each new connection, by kind.
#[derive(Debug)]
enum Contexts {
    Forward(watch::Sender<Arc<ConnContext>>),
    Http(watch::Sender<Arc<HttpContext>>),
}

impl Contexts {
    fn label(&self) -> String {
        match self {
            Contexts::Forward(tx) => tx.borrow().label.clone(),
            Contexts::Http(tx) => tx.borrow().label.clone(),
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            Contexts::Forward(_) => "forward",
            Contexts::Http(_) => "http",
        }
    }
}

/// A started daemon; dropping it does not stop it, call [`Running::shutdown`].
#[derive(Debug)]
pub struct Running {
    sources: Vec<SourceRuntime>,
    /// MQTT sources: clients, not listeners, so they have no [`BoundSource`].
    mqtt: MqttSources,
    outputs: Outputs,
    router: watch::Sender<Arc<Router>>,
    router_metrics: Arc<RouterMetrics>,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    config: Config,
    telemetry: Arc<Telemetry>,
    /// Where the HTTP API listens, when enabled.
    api_addr: Option<SocketAddr>,
    /// The API's shared state: a reload swaps the store it reads and its token.
    api_state: Option<crate::api::ApiState>,
}

/// Binds every input and starts serving. Errors name the listener that failed.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    start_with(config, None).await
}

/// [`start`], offering `POST /api/reload` through `api_reload`.
pub async fn start_with(
    config: Config,
    api_reload: Option<crate::api::ReloadHook>,
) -> anyhow::Result<Running> {
    let outputs = Outputs::open(&config).await?;
    let router_metrics = Arc::new(RouterMetrics::default());
    let router = Arc::new(Router::new(&config, &outputs, router_metrics.clone())?);
    log_routes(&router);
    let (router_tx, _) = watch::channel(router);
    let mut running = Running {
        sources: Vec::new(),
        mqtt: MqttSources::default(),
        outputs,
        router: router_tx,
        router_metrics,
        shutdown: CancellationToken::new(),
        tracker: TaskTracker::new(),
        config: config.clone(),
        telemetry: Arc::new(Telemetry::default()),
        api_addr: None,
        api_state: None,
    };
    for (i, source) in config.sources.iter().enumerate() {
        let n = i + 1;
        let rt = match source {
            SourceConfig::Forward(fwd) => {
                let ctx_parts = prepare_source(n, fwd.listen, fwd.tls.as_ref(), &config)?;
                let tcp = bind_tcp(fwd.listen)
                    .with_context(|| format!("source #{n}: cannot listen on {}", fwd.listen))?;
                running.launch(n, fwd, tcp, ctx_parts, None).await?
            }
            SourceConfig::Http(http) => {
                let ctx_parts = prepare_source(n, http.listen, http.tls.as_ref(), &config)?;
                let tcp = bind_tcp(http.listen)
                    .with_context(|| format!("source #{n}: cannot listen on {}", http.listen))?;
                running.launch_http(n, http, tcp, ctx_parts, None)?
            }
            SourceConfig::Mqtt(m) => {
                let prepared = crate::input::mqtt::prepare(n, m)?;
                let router = running.router.subscribe();
                let (shutdown, tracker) = (&running.shutdown, &running.tracker);
                running.mqtt.start(prepared, router, shutdown, tracker);
                continue;
            }
        };
        running.sources.push(rt);
    }
    running.refresh_telemetry();
    if config.api.enabled {
        running.api_addr = Some(running.start_api(api_reload).await?);
    }
    Ok(running)
}

fn log_routes(router: &Router) {
    for line in router.describe() {
        tracing::info!("route {line}");
    }
}

/// What a listener's context is built from, checked before anything starts or changes.
struct PreparedSource {
    tls: Option<tokio_rustls::TlsAcceptor>,
}

/// Loads TLS material (files or generated certificates) for one listening source.
fn prepare_source(
    n: usize,
    listen: SocketAddr,
    tls: Option<&TlsConfig>,
    config: &Config,
) -> anyhow::Result<PreparedSource> {
    let tls = match tls {
        Some(t) => Some(tokio_rustls::TlsAcceptor::from(
            crate::tls::server_config(t, &config.server.certs_dir)
                .with_context(|| format!("source #{n} ({listen}): TLS setup failed"))?,
        )),
        None => None,
    };
    Ok(PreparedSource { tls })
}

impl Running {
    fn context(
        &self,
        addr: SocketAddr,
        fwd: &ForwardConfig,
        prepared: PreparedSource,
        metrics: Arc<InputMetrics>,
    ) -> Arc<ConnContext> {
        let kind = if prepared.tls.is_some() {
            "tls"
        } else {
            "plain"
        };
        Arc::new(ConnContext {
            label: format!("forward {addr} ({kind})"),
            config: fwd.clone(),
            limits: FrameLimits {
                max_frame_bytes: fwd.max_message_size,
                max_decompressed_bytes: fwd.max_decompressed_size,
                max_depth: fwd.max_depth,
            },
            tls: prepared.tls,
            router: self.router.subscribe(),
            metrics,
            log_limiter: LogLimiter::default(),
            hostnames: Default::default(),
        })
    }

    /// Starts a listener's accept loop (and its UDP heartbeat) on a bound socket.
    async fn launch(
        &self,
        n: usize,
        fwd: &ForwardConfig,
        tcp: TcpListener,
        prepared: PreparedSource,
        metrics: Option<Arc<InputMetrics>>,
    ) -> anyhow::Result<SourceRuntime> {
        let addr = tcp.local_addr()?;
        let tls = prepared.tls.is_some();
        let metrics = metrics.unwrap_or_default();
        let ctx = self.context(addr, fwd, prepared, metrics.clone());
        let (contexts, rx) = watch::channel(ctx);
        let stop_accepting = self.shutdown.child_token();
        if fwd.udp_heartbeat {
            let sock = UdpSocket::bind(addr)
                .await
                .with_context(|| format!("source #{n}: cannot bind UDP heartbeat on {addr}"))?;
            self.tracker.spawn(udp::serve(sock, stop_accepting.clone()));
        }
        self.tracker.spawn(listener::serve(
            tcp,
            rx,
            stop_accepting.clone(),
            self.shutdown.clone(),
            self.tracker.clone(),
        ));
        let kind = if tls { "tls" } else { "plain" };
        let auth = if fwd.security.is_some() {
            ", shared key required"
        } else {
            ""
        };
        tracing::info!("source #{n} (forward, {kind}{auth}) listening on {addr}");
        Ok(SourceRuntime {
            configured: fwd.listen,
            bound: BoundSource { addr, tls, metrics },
            contexts: Contexts::Forward(contexts),
            stop_accepting,
        })
    }

    fn http_context(
        &self,
        addr: SocketAddr,
        http: &HttpConfig,
        prepared: PreparedSource,
        metrics: Arc<InputMetrics>,
    ) -> Arc<HttpContext> {
        Arc::new(HttpContext::new(
            addr,
            http.clone(),
            prepared.tls,
            self.router.subscribe(),
            metrics,
        ))
    }

    /// Starts an HTTP listener's accept loop on a bound socket.
    fn launch_http(
        &self,
        n: usize,
        http: &HttpConfig,
        tcp: TcpListener,
        prepared: PreparedSource,
        metrics: Option<Arc<InputMetrics>>,
    ) -> anyhow::Result<SourceRuntime> {
        let addr = tcp.local_addr()?;
        let tls = prepared.tls.is_some();
        let metrics = metrics.unwrap_or_default();
        let ctx = self.http_context(addr, http, prepared, metrics.clone());
        let (contexts, rx) = watch::channel(ctx);
        let stop_accepting = self.shutdown.child_token();
        self.tracker.spawn(crate::input::http::server::serve(
            tcp,
            rx,
            stop_accepting.clone(),
            self.shutdown.clone(),
            self.tracker.clone(),
        ));
        let kind = if tls { "tls" } else { "plain" };
        let auth = if http.write_keys.is_empty() {
            tracing::warn!(
                "source #{n} (http on {addr}) has no write_keys: the postback path accepts any key or none; set write_keys = [\"...\"] to require one"
            );
            ""
        } else {
            ", write key required"
        };
        tracing::info!("source #{n} (http, {kind}{auth}) listening on {addr}");
        Ok(SourceRuntime {
            configured: http.listen,
            bound: BoundSource { addr, tls, metrics },
            contexts: Contexts::Http(contexts),
            stop_accepting,
        })
    }

    /// What the API reads: the store the first store output writes (SQLite or
    /// PostgreSQL), else the default store directory.
    fn store_view(&self) -> anyhow::Result<crate::api::StoreView> {
        use crate::output::store::StoreBackend;
        let backend = self
            .outputs
            .handles()
            .find_map(|h| h.output.get().as_store().map(|s| s.backend().clone()));
        // The default store the API already reads is kept (with its counters).
        let default_store = || {
            let dir = crate::store::store_dir(&self.config.server.data_dir);
            match self.api_state.as_ref().map(|a| a.view().store) {
                Some(store) if store.dir() == dir => Ok(store),
                _ => crate::store::Store::open(dir),
            }
        };
        Ok(match backend {
            Some(StoreBackend::Sqlite(store)) => crate::api::StoreView {
                store,
                postgres: None,
            },
            Some(StoreBackend::Postgres(pg)) => crate::api::StoreView {
                store: default_store()?,
                postgres: Some(pg),
            },
            None => crate::api::StoreView {
                store: default_store()?,
                postgres: None,
            },
        })
    }

    /// Starts the HTTP API on [`Running::store_view`], with status and metrics read
    /// from this daemon.
    async fn start_api(
        &mut self,
        reload: Option<crate::api::ReloadHook>,
    ) -> anyhow::Result<SocketAddr> {
        let view = self.store_view()?;
        let api = &self.config.api;
        let tls = match &api.tls {
            Some(t) => Some(tokio_rustls::TlsAcceptor::from(
                crate::tls::server_config(t, &self.config.server.certs_dir)
                    .context("[api]: TLS setup failed")?,
            )),
            None => None,
        };
        let tls_enabled = tls.is_some();
        let scheme = if tls_enabled { "HTTPS" } else { "HTTP" };
        let listener = TcpListener::bind(api.listen)
            .await
            .with_context(|| format!("[api]: cannot listen on {}", api.listen))?;
        let addr = listener.local_addr()?;
        let (status, metrics) = (self.telemetry.clone(), self.telemetry.clone());
        let mut state = crate::api::ApiState::new(
            view,
            Arc::new(move || status.status()),
            Arc::new(move || metrics.prometheus()),
        );
        *state.token.write().unwrap_or_else(|e| e.into_inner()) = api.token.clone();
        state.reload = reload;
        self.api_state = Some(state.clone());
        let shutdown = self.shutdown.clone();
        let limits = crate::api::server::ServeLimits::default();
        self.tracker.spawn(crate::api::serve_with(
            listener, state, tls, limits, shutdown,
        ));
        tracing::info!("HTTP API listening on {addr} ({scheme})");
        // Where `tidepool query` finds this daemon's API, ephemeral ports included.
        let url_file = self
            .config
            .server
            .data_dir
            .join(crate::api::client::URL_FILE);
        let url = crate::api::client::local_url(addr, tls_enabled);
        if let Err(e) = std::fs::write(&url_file, format!("{url}\n")) {
            tracing::warn!("cannot write {}: {e}", url_file.display());
        }
        Ok(addr)
    }

    fn refresh_telemetry(&self) {
        let inputs = self
            .sources
            .iter()
            .map(|s| InputInfo {
                label: s.contexts.label(),
                addr: s.bound.addr,
                tls: s.bound.tls,
                metrics: s.bound.metrics.clone(),
            })
            .collect();
        let outputs = self.outputs.handles().cloned().collect();
        self.telemetry
            .update(inputs, outputs, self.router_metrics.clone());
        self.telemetry.update_mqtt(self.mqtt.infos());
    }

    /// Where the HTTP API listens, when enabled.
    pub fn api_addr(&self) -> Option<SocketAddr> {
        self.api_addr
    }

    /// Status and metrics, as the API serves them.
    pub fn telemetry(&self) -> &Telemetry {
        &self.telemetry
    }

    /// Inputs in config order, as bound.
    pub fn sources(&self) -> Vec<BoundSource> {
        self.sources.iter().map(|s| s.bound.clone()).collect()
    }

    /// The running MQTT sources, in config order.
    pub fn mqtt_sources(&self) -> &MqttSources {
        &self.mqtt
    }

    /// The current routing snapshot.
    pub fn router(&self) -> Arc<Router> {
        self.router.borrow().clone()
    }

    /// The outputs and their buffers.
    pub fn outputs(&self) -> &Outputs {
        &self.outputs
    }

    /// The config in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Applies a new config without dropping a connection or a buffered event; on any
    /// error before the switch the running config stays in force untouched.
    pub async fn reload(&mut self, config: Config) -> anyhow::Result<()> {
        // 1. Everything that can fail, before anything changes.
        let mut prepared = Vec::new();
        let mut fresh = Vec::new();
        let mut mqtt = Vec::new();
        for (i, source) in config.sources.iter().enumerate() {
            let n = i + 1;
            let (listen, tls) = match source {
                SourceConfig::Forward(fwd) => (fwd.listen, fwd.tls.as_ref()),
                SourceConfig::Http(http) => (http.listen, http.tls.as_ref()),
                SourceConfig::Mqtt(m) => {
                    mqtt.push(crate::input::mqtt::prepare(n, m)?);
                    // Placeholders keep the listener vectors in step with the sources.
                    prepared.push(PreparedSource { tls: None });
                    fresh.push(None);
                    continue;
                }
            };
            prepared.push(prepare_source(n, listen, tls, &config)?);
            let kept = self.sources.iter().find(|s| s.configured == listen);
            if let Some(old) = kept {
                anyhow::ensure!(
                    old.contexts.kind() == source.kind(),
                    "source #{n}: {listen} changes from {} to {}: a listener cannot change its type on reload (use another port, or restart)",
                    old.contexts.kind(),
                    source.kind()
                );
            }
            fresh.push(if kept.is_some() {
                None
            } else {
                Some(
                    bind_tcp(listen)
                        .with_context(|| format!("source #{n}: cannot listen on {listen}"))?,
                )
            });
        }
        check_routes(&config)?;
        // 2. Outputs: keep the unchanged, open the new, drain the changed.
        let timeout = config.server.shutdown_timeout;
        let retired = self.outputs.reconcile(&config).await?;
        let router = Arc::new(Router::new(
            &config,
            &self.outputs,
            self.router_metrics.clone(),
        )?);
        self.router.send_replace(router.clone());
        log_routes(&router);
        // 3. Listeners: same address → new context; new address → start; gone → stop.
        let mut sources = Vec::new();
        let mut old = std::mem::take(&mut self.sources);
        for (i, ((source, prep), tcp)) in config.sources.iter().zip(prepared).zip(fresh).enumerate()
        {
            let n = i + 1;
            match source {
                SourceConfig::Forward(fwd) => {
                    if let Some(pos) = old.iter().position(|s| s.configured == fwd.listen) {
                        let mut rt = old.swap_remove(pos);
                        let ctx = self.context(rt.bound.addr, fwd, prep, rt.bound.metrics.clone());
                        rt.bound.tls = ctx.tls.is_some();
                        if let Contexts::Forward(tx) = &rt.contexts {
                            tx.send_replace(ctx);
                        }
                        sources.push(rt);
                    } else if let Some(tcp) = tcp {
                        sources.push(self.launch(n, fwd, tcp, prep, None).await?);
                    }
                }
                SourceConfig::Http(http) => {
                    if let Some(pos) = old.iter().position(|s| s.configured == http.listen) {
                        let mut rt = old.swap_remove(pos);
                        let ctx =
                            self.http_context(rt.bound.addr, http, prep, rt.bound.metrics.clone());
                        rt.bound.tls = ctx.tls.is_some();
                        if let Contexts::Http(tx) = &rt.contexts {
                            tx.send_replace(ctx);
                        }
                        sources.push(rt);
                    } else if let Some(tcp) = tcp {
                        sources.push(self.launch_http(n, http, tcp, prep, None)?);
                    }
                }
                SourceConfig::Mqtt(_) => {}
            }
        }
        for gone in old {
            tracing::info!(
                "listener {} removed: it stops accepting; open connections continue",
                gone.bound.addr
            );
            gone.stop_accepting.cancel();
        }
        self.sources = sources;
        let router = &self.router;
        self.mqtt
            .reconcile(
                mqtt,
                || router.subscribe(),
                &self.shutdown,
                &self.tracker,
                timeout,
            )
            .await;
        let (old_api, new_api) = (&self.config.api, &config.api);
        if (old_api.enabled, old_api.listen, &old_api.tls)
            != (new_api.enabled, new_api.listen, &new_api.tls)
        {
            tracing::warn!(
                "[api] enabled, listen or tls changed: they apply at the next start (the API keeps serving as it is)"
            );
        }
        if let Some(state) = &self.api_state
            && old_api.token != new_api.token
        {
            *state.token.write().unwrap_or_else(|e| e.into_inner()) = new_api.token.clone();
            tracing::info!("[api] token changed: applied to the next request");
        }
        self.config = config;
        if let Some(state) = &self.api_state {
            match self.store_view() {
                Ok(view) => *state.stores.write().unwrap_or_else(|e| e.into_inner()) = view,
                Err(e) => tracing::warn!(
                    "the API keeps reading the store it read before the reload: {e:#}"
                ),
            }
        }
        self.refresh_telemetry();
        // 4. Retired outputs drain once nothing routes to them.
        for h in retired {
            tracing::info!(output = %h.name, "output removed: draining its buffer");
            h.drain(timeout).await;
        }
        tracing::info!("config reloaded");
        Ok(())
    }

    /// Stops accepting, lets connections finish their current frame and pending acks,
    /// then stops the buffers (commit, queue, one last flush), all within
    /// `shutdown_timeout`; whatever is not flushed stays on disk.
    pub async fn shutdown(self) {
        let started = std::time::Instant::now();
        let timeout = self.config.server.shutdown_timeout;
        self.shutdown.cancel();
        self.tracker.close();
        if tokio::time::timeout(timeout, self.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!("shutdown_timeout ({timeout:?}) reached with connections still open");
        }
        let left = timeout.saturating_sub(started.elapsed());
        self.outputs.shutdown(left).await;
    }
}

/// A match naming an unknown output is caught by the config checker already; this is
/// the last guard before the switch.
fn check_routes(config: &Config) -> anyhow::Result<()> {
    for m in &config.matches {
        for name in &m.outputs {
            anyhow::ensure!(
                config.outputs.contains_key(name),
                "[[match]] #{} names unknown output '{name}'",
                m.index
            );
        }
    }
    Ok(())
}

/// A listener with a deep accept backlog, so bursts of device connections are queued
/// by the kernel rather than refused.
fn bind_tcp(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(4096)
}

/// A request to apply a config (from SIGHUP or `POST /api/reload`); the outcome goes
/// to `reply` when someone waits for it.
#[derive(Debug)]
pub struct ReloadRequest {
    /// The config as read and checked, or its problems.
    pub config: Result<Config, String>,
    /// Where to say what happened.
    pub reply: Option<tokio::sync::oneshot::Sender<Result<(), String>>>,
}

/// Runs until `stop` resolves, reloading on every request from `reloads`; a refused
/// reload is logged and leaves the running config in force. `load` re-reads the
/// config for `POST /api/reload`.
pub async fn run(
    config: Config,
    stop: impl std::future::Future<Output = ()>,
    mut reloads: tokio::sync::mpsc::Receiver<ReloadRequest>,
    api_reload: Option<crate::api::ReloadHook>,
) -> anyhow::Result<()> {
    let mut running = start_with(config, api_reload).await?;
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = &mut stop => break,
            Some(req) = reloads.recv() => {
                let outcome = match req.config {
                    Ok(config) => running.reload(config).await.map_err(|e| format!("{e:#}")),
                    Err(problems) => Err(problems),
                };
                if let Err(e) = &outcome {
                    tracing::error!("reload refused, the running config stays:\n{e}");
                }
                if let Some(reply) = req.reply {
                    let _ = reply.send(outcome);
                }
            }
        }
    }
    tracing::info!("shutting down");
    running.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
