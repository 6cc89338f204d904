//! The signals that stop `terra-sink backfill`, and the exit status each calls for.

/// Ctrl-C (SIGINT) and SIGTERM, listened to from the moment this is created, so a signal that
/// arrives while the run is starting is not missed.
#[derive(Debug)]
struct StopSignals {
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
}

/// Exit status after SIGINT, as shells report it (128 + 2).
const EXIT_SIGINT: u8 = 130;
/// Exit status after SIGTERM (128 + 15).
#[cfg(unix)]
const EXIT_SIGTERM: u8 = 143;

impl StopSignals {
    /// Starts listening (must be called inside the Tokio runtime).
    fn listen() -> std::io::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            Ok(Self {
                interrupt: signal(SignalKind::interrupt())?,
                terminate: signal(SignalKind::terminate())?,
            })
        }
        #[cfg(not(unix))]
        Ok(Self {})
    }

    /// Waits for the next signal; returns the exit status it calls for.
    async fn next(&mut self) -> u8 {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.interrupt.recv() => EXIT_SIGINT,
                _ = self.terminate.recv() => EXIT_SIGTERM,
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_err() {
                std::future::pending::<()>().await;
            }
            EXIT_SIGINT
        }
    }
}

/// Which signal stopped the run, if any (see [`stop_on_signals`]).
#[derive(Debug, Clone, Default)]
pub struct Signalled(std::sync::Arc<std::sync::atomic::AtomicU8>);

impl Signalled {
    /// The exit status the first signal calls for; `None` when no signal came.
    pub fn exit_status(&self) -> Option<u8> {
        match self.0.load(std::sync::atomic::Ordering::SeqCst) {
            0 => None,
            status => Some(status),
        }
    }
}

/// Listens for Ctrl-C and SIGTERM: the first sets `stop` (the run stops after the requests in
/// flight, keeping finished windows), a second ends the process at once with its status.
pub fn stop_on_signals(stop: tokio::sync::watch::Sender<bool>) -> std::io::Result<Signalled> {
    let mut signals = StopSignals::listen()?;
    let signalled = Signalled::default();
    let first = signalled.clone();
    tokio::spawn(async move {
        let status = signals.next().await;
        first.0.store(status, std::sync::atomic::Ordering::SeqCst);
        eprintln!(
            "stopping after the requests in flight (again to quit at once); finished windows are kept"
        );
        let _ = stop.send(true);
        // A retry can wait minutes (Retry-After, backoff): a second signal must still end it.
        std::process::exit(i32::from(signals.next().await));
    });
    Ok(signalled)
}
