//! Starting, loading and stopping the two servers. Every wait has a deadline; a
//! [`Server`] kills its process when dropped, so an error anywhere stops both.

use anyhow::{bail, Context, Result};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a server may take to become ready.
pub const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Attempts to start a server on a fresh port (another process may grab the port between
/// our probe and the server's bind).
const START_ATTEMPTS_MAX: usize = 3;
/// Lines of a server's log shown when it fails.
const LOG_TAIL_LINES: usize = 20;

/// A running server process.
pub struct Server {
    pub name: &'static str,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
    child: Child,
    log: PathBuf,
    pid_file: PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.pid_file);
    }
}

impl Server {
    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        log_tail(&self.log)
    }
}

fn log_tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(LOG_TAIL_LINES)..].join("\n")
}

/// A port nobody listens on right now.
fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0").context("binding a probe socket")?;
    Ok(l.local_addr()?.port())
}

/// Starts `make(port)` and waits until `ready_path` answers 200, retrying on a new port
/// when the process exits early (a port race). Writes `<name>.pid` into `work` so the
/// wrapper script can kill the process if this harness itself is killed.
fn start(
    name: &'static str,
    work: &Path,
    ready_path: &str,
    agent: &ureq::Agent,
    make: impl Fn(u16) -> Command,
) -> Result<Server> {
    let mut last_err = None;
    for _ in 0..START_ATTEMPTS_MAX {
        let port = free_port()?;
        let log = work.join(format!("{name}.log"));
        let log_file = std::fs::File::create(&log)?;
        let mut cmd = make(port);
        cmd.stdin(Stdio::null())
            .stdout(log_file.try_clone()?)
            .stderr(log_file);
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        let pid_file = work.join(format!("{name}.pid"));
        std::fs::write(&pid_file, format!("{}\n", child.id()))?;
        let mut server = Server {
            name,
            base_url: format!("http://127.0.0.1:{port}"),
            child,
            log,
            pid_file,
        };
        match wait_ready(&mut server, ready_path, agent) {
            Ok(()) => return Ok(server),
            Err(e) => last_err = Some(e),
        }
    }
    Err(last_err.expect("at least one attempt"))
}

fn wait_ready(server: &mut Server, path: &str, agent: &ureq::Agent) -> Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let url = format!("{}{path}", server.base_url);
    loop {
        if let Some(status) = server.child.try_wait()? {
            bail!(
                "{} exited ({status}) before it was ready; its log:\n{}",
                server.name,
                server.log_tail()
            );
        }
        if let Ok(r) = agent.get(&url).call() {
            if r.status() == 200 {
                return Ok(());
            }
        }
        if Instant::now() > deadline {
            bail!(
                "{} not ready at {url} within {READY_TIMEOUT:?}; its log:\n{}",
                server.name,
                server.log_tail()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Writes the OpenMetrics file into blocks with promtool, then starts Prometheus on them.
pub fn start_prometheus(
    prometheus: &Path,
    promtool: &Path,
    work: &Path,
    openmetrics: &str,
    agent: &ureq::Agent,
) -> Result<Server> {
    let om = work.join("data.om");
    std::fs::write(&om, openmetrics)?;
    let tsdb = work.join("prometheus-data");
    // A reused --work-dir must not add a second copy of the blocks.
    if tsdb.exists() {
        std::fs::remove_dir_all(&tsdb)?;
    }
    std::fs::create_dir_all(&tsdb)?;
    let out = Command::new(promtool)
        .args(["tsdb", "create-blocks-from", "openmetrics"])
        .arg(&om)
        .arg(&tsdb)
        .output()
        .with_context(|| format!("running {}", promtool.display()))?;
    if !out.status.success() {
        bail!(
            "promtool backfill failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    // No scrape jobs: the TSDB holds exactly the backfilled data.
    let config = work.join("prometheus.yml");
    // The default evaluation_interval (1m) is also the default subquery step.
    std::fs::write(&config, "scrape_configs: []\n")?;
    start("prometheus", work, "/-/ready", agent, |port| {
        let mut c = Command::new(prometheus);
        c.arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", tsdb.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            // Retention counts back from the newest block; keep everything we loaded.
            .arg("--storage.tsdb.retention.time=3650d")
            .arg("--query.lookback-delta=5m")
            .arg("--log.level=warn");
        c
    })
}

/// Starts Assay on an empty data dir under `work`.
pub fn start_assay(assay: &Path, work: &Path, agent: &ureq::Agent) -> Result<Server> {
    let data = work.join("assay-data");
    start("assay", work, "/healthz", agent, |port| {
        let _ = std::fs::remove_dir_all(&data);
        let mut c = Command::new(assay);
        c.arg("serve")
            .arg("--data-dir")
            .arg(&data)
            .arg("--listen")
            .arg(format!("127.0.0.1:{port}"));
        c
    })
}

/// Posts each text-format chunk to Assay's import endpoint.
pub fn load_assay(server: &Server, agent: &ureq::Agent, chunks: &[String]) -> Result<()> {
    let url = format!("{}/v1/import/prometheus", server.base_url);
    for (i, chunk) in chunks.iter().enumerate() {
        let r = agent
            .post(&url)
            .set("Content-Type", "text/plain; version=0.0.4")
            .send_string(chunk);
        match r {
            Ok(_) => {}
            Err(ureq::Error::Status(code, resp)) => bail!(
                "assay import of chunk {i} rejected with {code}: {}",
                resp.into_string().unwrap_or_default()
            ),
            Err(e) => bail!(
                "assay import of chunk {i} failed: {e}; its log:\n{}",
                server.log_tail()
            ),
        }
    }
    Ok(())
}
