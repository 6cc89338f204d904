//! Running the real `terra-sink` binary in tests: a clean environment, an empty working
//! directory (no developer's `.env`), and the URL of the test's own database.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, ChildStderr, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;

use sqlx::PgPool;

/// A signing secret the service accepts.
pub const SECRET: &str = "whsec_test_only_not_real";

/// A new empty directory under the target's test scratch space.
pub fn scratch_dir(name: &str) -> PathBuf {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "{name}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The binary with nothing of the caller's environment but PATH, run in `dir`.
pub fn terra_sink(dir: &std::path::Path) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_terra-sink"));
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("NO_PROXY", "127.0.0.1,localhost")
        .current_dir(dir);
    cmd
}

/// The URL of the test's own database (a fresh one per #[sqlx::test]).
pub fn database_url(pool: &PgPool) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let (url, query) = base.split_once('?').unwrap_or((&base, ""));
    let (server, _) = url.rsplit_once('/').unwrap();
    let db = pool.connect_options().get_database().unwrap().to_owned();
    if query.is_empty() {
        format!("{server}/{db}")
    } else {
        format!("{server}/{db}?{query}")
    }
}

/// The test server's URL with another database name (which need not exist).
pub fn server_url_with_database(db: &str) -> String {
    let base = std::env::var("DATABASE_URL").expect("DATABASE_URL");
    let url = base.split_once('?').map_or(base.as_str(), |(u, _)| u);
    let (server, _) = url.rsplit_once('/').unwrap();
    format!("{server}/{db}")
}

/// A loopback address nothing listens on.
pub fn refused_addr() -> std::net::SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// A free loopback port (the listener is closed again at once).
pub fn free_port() -> u16 {
    refused_addr().port()
}

/// (success, stdout, stderr) of a finished command.
pub fn output(cmd: &mut Command) -> (bool, String, String) {
    let out = cmd.output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A running `serve` whose stderr is read line by line; killed when dropped.
pub struct Running {
    pub child: Child,
    lines: BufReader<ChildStderr>,
    /// Every stderr line read so far.
    pub seen: Vec<String>,
}

impl Running {
    /// Starts `cmd` with stderr piped.
    pub fn start(cmd: &mut Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stderr.take().unwrap());
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Reads stderr until a line contains `needle` (panics, with what was read, if the
    /// process ends first).
    pub fn wait_for(&mut self, needle: &str) -> String {
        loop {
            let mut line = String::new();
            let n = self.lines.read_line(&mut line).unwrap();
            assert!(n > 0, "ended before {needle:?}: {:#?}", self.seen);
            self.seen.push(line.clone());
            if line.contains(needle) {
                return line;
            }
        }
    }

    /// Sends SIGTERM and waits for the exit; returns the rest of stderr.
    pub fn terminate(mut self) -> String {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let mut rest = String::new();
        let _ = std::io::Read::read_to_string(&mut self.lines, &mut rest);
        let _ = self.child.wait();
        rest
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every request a [`recorder`] received: headers and body.
pub type Recorded = Arc<Mutex<Vec<(HeaderMap, Bytes)>>>;

/// A stand-in HTTP server on loopback that keeps every POST to `path` and answers `answer`;
/// returns its base URL (`http://127.0.0.1:<port>`).
pub async fn recorder(path: &str, answer: &'static str) -> (String, Recorded) {
    let recorded: Recorded = Arc::default();
    let keep = recorded.clone();
    let router = axum::Router::new().route(
        path,
        axum::routing::post(move |headers: HeaderMap, body: Bytes| {
            let keep = keep.clone();
            async move {
                keep.lock().unwrap().push((headers, body));
                answer
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });
    (url, recorded)
}
