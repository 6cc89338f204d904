//! Binding the listeners and running the service until a shutdown signal.

use std::future::{Future, IntoFuture};
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use sqlx::PgPool;
use tokio::net::TcpListener;

use crate::config::ServeConfig;
use crate::http::{self, AppState, IngestLimits};
use crate::metrics::Metrics;
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
}

impl Server {
    /// Binds the configured addresses (port 0 picks a free port) and builds the routers.
    pub async fn bind(config: &ServeConfig, pool: PgPool) -> std::io::Result<Self> {
        let state = AppState {
            pool,
            verifier: Arc::new(Verifier::new(
                &config.signing_secrets,
                config.signature_tolerance_secs,
            )),
            ingest: Arc::new(IngestLimits {
                max_body_bytes: config.max_body_bytes,
                body_read_timeout: config.body_read_timeout,
                persist_timeout: config.persist_timeout,
            }),
            metrics: Arc::new(Metrics::new()),
            wake: Arc::new(tokio::sync::Notify::new()),
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
            metrics_addr = ?self.metrics_addr(),
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
        );
        let workers = processor.spawn(self.state.wake.clone(), stop_rx.clone());
        let metrics_task = self.metrics.map(|(listener, router)| {
            tokio::spawn(
                axum::serve(listener, router)
                    .with_graceful_shutdown(stopped(stop_rx.clone()))
                    .into_future(),
            )
        });
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        axum::serve(self.listener, self.router)
            .with_graceful_shutdown(stopped(stop_rx))
            .await?;
        if let Some(task) = metrics_task {
            task.await.map_err(std::io::Error::other)??;
        }
        for task in workers {
            task.await.map_err(std::io::Error::other)?;
        }
        tracing::info!("terra-sink stopped");
        Ok(())
    }
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
