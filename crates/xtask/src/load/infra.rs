//! The harness's private infrastructure: a PostgreSQL cluster and a Redis of its own on free
//! loopback ports (so the machine's shared servers are never touched), and the child processes it
//! starts, each with its log in the run folder.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// A free TCP port on loopback (free when asked; the caller binds it soon after).
pub(crate) fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Waits until something accepts connections on `port`.
pub(crate) async fn wait_for_port(port: u16, what: &str, limit: Duration) -> anyhow::Result<()> {
    let started = Instant::now();
    while tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .is_err()
    {
        if started.elapsed() > limit {
            bail!("{what} did not start listening on port {port} within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    Ok(())
}

/// A child process of the harness, killed when dropped. Its standard output and error go to
/// `<run folder>/<name>.log` (appended, so a restarted service keeps one log).
#[derive(Debug)]
pub(crate) struct Service {
    pub(crate) name: String,
    child: Child,
}

impl Service {
    pub(crate) fn spawn(name: &str, mut cmd: Command, dir: &Path) -> anyhow::Result<Service> {
        let log = File::options()
            .create(true)
            .append(true)
            .open(dir.join(format!("{name}.log")))
            .with_context(|| format!("opening the log of {name}"))?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        Ok(Service {
            name: name.to_owned(),
            child,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (`STOP`, `CONT`, …) with kill(1).
    pub(crate) fn signal(&self, signal: &str) -> anyhow::Result<()> {
        let status = Command::new("kill")
            .args(["-s", signal, &self.pid().to_string()])
            .status()
            .context("running kill")?;
        if !status.success() {
            bail!("kill -s {signal} {} ({}) failed", self.pid(), self.name);
        }
        Ok(())
    }

    /// SIGKILL, and reaps the process.
    pub(crate) fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Resident set size from /proc, in MiB.
    pub(crate) fn rss_mib(&self) -> anyhow::Result<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .with_context(|| format!("reading /proc of {}", self.name))?;
        let kib: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .context("no VmRSS in /proc/<pid>/status")?;
        Ok(kib / 1024.0)
    }

    /// Whether the process has exited (it should not have).
    pub(crate) fn exited(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// A PostgreSQL cluster of the harness's own, from the machine's server binaries, listening on
/// 127.0.0.1 only (no Unix socket). Stopped (immediately) when dropped.
#[derive(Debug)]
pub(crate) struct PrivatePostgres {
    bin: PathBuf,
    data: PathBuf,
    /// The server's log; pg_ctl must always be given one, or the server would hold pg_ctl's
    /// output open and the harness would wait for it forever.
    log: PathBuf,
    pub(crate) port: u16,
    /// PostgreSQL refuses to run as root; then its programs run as the `postgres` system user.
    run_as: Option<&'static str>,
}

impl PrivatePostgres {
    pub(crate) fn start(dir: &Path) -> anyhow::Result<PrivatePostgres> {
        let bin = server_binaries()?;
        let home = dir.join("postgres");
        std::fs::create_dir_all(&home)?;
        let run_as = is_root().then_some("postgres");
        if let Some(user) = run_as {
            let ok = Command::new("chown")
                .args(["-R", &format!("{user}:")])
                .arg(&home)
                .status()?
                .success();
            if !ok {
                bail!("could not give {} to the `{user}` user", home.display());
            }
        }
        let pg = PrivatePostgres {
            bin,
            data: home.join("data"),
            log: home.join("server.log"),
            port: free_port()?,
            run_as,
        };
        pg.run(
            "initdb",
            &[
                "-D",
                path(&pg.data),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
            ],
        )
        .context("initialising the private PostgreSQL cluster")?;
        pg.launch()?;
        Ok(pg)
    }

    pub(crate) fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    fn launch(&self) -> anyhow::Result<()> {
        let options = format!(
            "-c listen_addresses=127.0.0.1 -p {} -c unix_socket_directories= -c max_connections=200",
            self.port
        );
        self.run(
            "pg_ctl",
            &[
                "-D",
                path(&self.data),
                "-o",
                &options,
                "-l",
                path(&self.log),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .with_context(|| {
            format!(
                "starting the private PostgreSQL (log: {})",
                self.log.display()
            )
        })
        .map(drop)
    }

    /// A fast shutdown (every connection is cut) and a start on the same port: `pg_ctl restart
    /// -m fast`, done in two steps because `restart` takes no log file and the new server would
    /// write to (and hold open) the harness's pipe.
    pub(crate) fn restart(&self) -> anyhow::Result<()> {
        self.run(
            "pg_ctl",
            &["-D", path(&self.data), "-m", "fast", "-w", "stop"],
        )?;
        self.launch()
    }

    fn run(&self, program: &str, args: &[&str]) -> anyhow::Result<String> {
        let exe = self.bin.join(program);
        let mut cmd = match self.run_as {
            Some(user) => {
                let mut c = Command::new("runuser");
                c.args(["-u", user, "--"]).arg(&exe);
                c
            }
            None => Command::new(&exe),
        };
        let out = cmd
            .args(args)
            .stdin(Stdio::null())
            .output()
            .with_context(|| format!("running {}", exe.display()))?;
        if !out.status.success() {
            bail!(
                "{program} failed ({}): {}{}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim(),
                String::from_utf8_lossy(&out.stdout).trim()
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let _ = self.run(
            "pg_ctl",
            &["-D", path(&self.data), "-m", "immediate", "stop"],
        );
    }
}

/// A Redis of the harness's own with append-only persistence (`appendfsync everysec`, the
/// operations guide's setting), which can be killed and restarted from its AOF.
#[derive(Debug)]
pub(crate) struct PrivateRedis {
    pub(crate) port: u16,
    dir: PathBuf,
    run: PathBuf,
    service: Option<Service>,
}

impl PrivateRedis {
    pub(crate) async fn start(run: &Path) -> anyhow::Result<PrivateRedis> {
        let dir = run.join("redis");
        std::fs::create_dir_all(&dir)?;
        let mut redis = PrivateRedis {
            port: free_port()?,
            dir,
            run: run.to_owned(),
            service: None,
        };
        redis.launch().await?;
        Ok(redis)
    }

    pub(crate) fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    async fn launch(&mut self) -> anyhow::Result<()> {
        let mut cmd = Command::new("redis-server");
        cmd.args(["--bind", "127.0.0.1", "--port", &self.port.to_string()])
            .arg("--dir")
            .arg(&self.dir)
            .args([
                "--appendonly",
                "yes",
                "--appendfsync",
                "everysec",
                "--save",
                "",
                "--maxmemory-policy",
                "noeviction",
                "--daemonize",
                "no",
            ]);
        self.service = Some(Service::spawn("redis", cmd, &self.run).context(
            "starting redis-server (is it installed? Debian: apt-get install redis-server)",
        )?);
        let started = Instant::now();
        while !ping(self.port).await {
            if started.elapsed() > Duration::from_secs(30) {
                bail!("the private Redis did not answer PING within 30 s");
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Ok(())
    }

    /// SIGKILL, `down` without Redis, then a new server on the same port and folder, which
    /// reloads the append-only file before it answers.
    pub(crate) async fn crash_and_restart(&mut self, down: Duration) -> anyhow::Result<()> {
        if let Some(mut s) = self.service.take() {
            s.kill9();
        }
        tokio::time::sleep(down).await;
        self.launch().await
    }
}

/// Whether a Redis on `port` answers PING with PONG (not LOADING).
async fn ping(port: u16) -> bool {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
        s.write_all(b"*1\r\n$4\r\nPING\r\n").await?;
        let mut buf = [0_u8; 64];
        let n = s.read(&mut buf).await?;
        Ok::<_, std::io::Error>(buf[..n].starts_with(b"+PONG"))
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), attempt).await,
        Ok(Ok(true))
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `initdb` and `pg_ctl` from PATH, or from the newest `/usr/lib/postgresql/*/bin`.
fn server_binaries() -> anyhow::Result<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(paths) = std::env::var_os("PATH")
        && let Some(dir) = std::env::split_paths(&paths).find(|d| has_all(d))
    {
        return Ok(dir);
    }
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version = e.file_name().to_str()?.parse::<u32>().ok()?;
            let bin = e.path().join("bin");
            has_all(&bin).then_some((version, bin))
        })
        .collect();
    versions.sort();
    versions.pop().map(|(_, bin)| bin).context(
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres on PATH or under /usr/lib/postgresql/*/bin); \
         Debian: apt-get install postgresql",
    )
}
