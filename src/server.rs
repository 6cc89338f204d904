//! Binding the listeners and running the service until a shutdown signal.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::config::ServeConfig;
use crate::http::{self, AppState, IngestLimits};
use crate::ledger::{self, GroupCommit, GroupCommitConfig, GroupCommitHooks, RetentionConfig};
use crate::metrics::Metrics;
use crate::reconcile::{self, ScheduledReconcile};
use crate::signature::Verifier;
use crate::worker::{Processor, WorkerConfig};

/// A service whose listeners are bound and which is ready to run.
#[derive(Debug)]
pub struct Server {
    listener: TcpListener,
    router: Router,
    metrics: Option<(TcpListener, Router)>,
    webhook_path: String,
    state: AppState,
    worker: WorkerConfig,
    retention: RetentionConfig,
    reconcile: Option<ScheduledReconcile>,
    connections: ConnectionLimits,
    /// Signalled by the ledger writer when it stored new deliveries.
    wake: Arc<tokio::sync::Notify>,
}

/// What one HTTP connection may cost before its request is handed to the router.
#[derive(Debug, Clone, Copy)]
struct ConnectionLimits {
    header_read_timeout: Duration,
    max_header_bytes: usize,
}

impl Server {
    /// Binds the configured addresses (port 0 picks a free port) and builds the routers.
    pub async fn bind(config: &ServeConfig, pool: PgPool) -> std::io::Result<Self> {
        let metrics = Arc::new(Metrics::new());
        let wake = Arc::new(tokio::sync::Notify::new());
        let ledger = GroupCommit::start(
            pool.clone(),
            GroupCommitConfig {
                deadline: config.persist_timeout,
                ..config.group_commit.clone()
            },
            GroupCommitHooks {
                stored: wake.clone(),
                group_written: {
                    let metrics = metrics.clone();
                    Arc::new(move |n| metrics.observe_ledger_commit(n))
                },
            },
        );
        let state = AppState {
            pool,
            verifier: Arc::new(Verifier::new(
                &config.signing_secrets,
                config.signature_tolerance_secs,
            )),
            ingest: Arc::new(IngestLimits {
                max_body_bytes: config.max_body_bytes,
                body_budget: Arc::new(tokio::sync::Semaphore::new(
                    config.max_inflight_body_bytes.div_ceil(1024),
                )),
                body_read_timeout: config.body_read_timeout,
            }),
            metrics,
            ledger,
            processing_pool: Arc::default(),
        };
        let listener = TcpListener::bind(config.bind).await?;
        let metrics = match config.metrics_bind {
            Some(addr) => Some((
                TcpListener::bind(addr).await?,
                http::metrics_router().with_state(state.clone()),
            )),
            None => None,
        };
        let router = http::router(state.clone(), &config.webhook_path, metrics.is_none());
        Ok(Self {
            listener,
            router,
            metrics,
            webhook_path: config.webhook_path.clone(),
            state,
            worker: config.worker.clone(),
            retention: config.retention.clone(),
            reconcile: config.reconcile.clone(),
            connections: ConnectionLimits {
                header_read_timeout: config.header_read_timeout,
                max_header_bytes: config.max_header_bytes,
            },
            wake,
        })
    }

    /// The address the main listener is bound to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address the metrics listener is bound to, when separate.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().and_then(|(l, _)| l.local_addr().ok())
    }

    /// Serves and processes until `shutdown` completes; then stops accepting, lets in-flight
    /// requests finish, and lets each worker finish the delivery it holds.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let addr = self.listener.local_addr()?;
        let host = if addr.ip().is_unspecified() {
            format!("localhost:{}", addr.port())
        } else {
            addr.to_string()
        };
        tracing::info!(
            webhook_url = %format!("http://{host}{}", self.webhook_path),
            metrics_addr = self.metrics_addr().map(tracing::field::display),
            "terra-sink listening"
        );
        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|stop| *stop).await;
        };
        let processor = Processor::new(
            self.state.pool.clone(),
            self.worker.clone(),
            self.state.metrics.clone(),
        )
        .yielding_to(self.state.ledger.load());
        let workers = processor.spawn(self.wake.clone(), stop_rx.clone())?;
        if let Some(pool) = workers.pool() {
            let _ = self.state.processing_pool.set(pool.clone());
        }
        let upkeep = tokio::spawn(ledger::maintain(
            self.state.pool.clone(),
            self.retention,
            stop_rx.clone(),
            self.state.ledger.load(),
        ));
        let reconcile = self.reconcile.map(|scheduled| {
            tokio::spawn(reconcile::on_schedule(
                self.state.pool.clone(),
                scheduled,
                stop_rx.clone(),
            ))
        });
        let metrics_task = self.metrics.map(|(listener, router)| {
            tokio::spawn(serve_http(
                listener,
                router,
                self.connections,
                stopped(stop_rx.clone()),
            ))
        });
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        serve_http(
            self.listener,
            self.router,
            self.connections,
            stopped(stop_rx),
        )
        .await?;
        if let Some(task) = metrics_task {
            task.await.map_err(std::io::Error::other)??;
        }
        workers.join().await.map_err(std::io::Error::other)?;
        upkeep.await.map_err(std::io::Error::other)?;
        if let Some(task) = reconcile {
            task.await.map_err(std::io::Error::other)?;
        }
        tracing::info!("terra-sink stopped");
        Ok(())
    }
}

/// Serves `router` on `listener` until `stop`, then lets open connections finish their requests.
///
/// Like `axum::serve`, plus a header read timeout (which needs hyper's timer, not set by
/// axum): without it a client trickling its headers holds a connection, and a shutdown, forever;
/// and a cap on the request head, which hyper answers with `431` itself. HTTP/1 only, as the
/// crate is built (hyper's `max_header_size` is an HTTP/1 setting).
async fn serve_http(
    listener: TcpListener,
    router: Router,
    limits: ConnectionLimits,
    stop: impl Future<Output = ()> + Send,
) -> std::io::Result<()> {
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        // Checked on the parsed head as well as on the read buffer, so a head that arrives in
        // one read is capped too (the read buffer limit alone, `max_buf_size`, is not exact).
        .max_header_size(limits.max_header_bytes);
    let graceful = GracefulShutdown::new();
    let mut stop = std::pin::pin!(stop);
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(err) => {
                    // Running out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %err, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut stop => break,
        };
        let service = TowerToHyperService::new(router.clone());
        let conn = graceful.watch(builder.serve_connection(TokioIo::new(stream), service));
        tokio::spawn(async move {
            if let Err(err) = conn.await {
                tracing::debug!(error = %err, "connection ended with an error");
            }
        });
    }
    drop(listener);
    graceful.shutdown().await;
    Ok(())
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut sig) => {
                sig.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received; finishing in-flight requests");
}
