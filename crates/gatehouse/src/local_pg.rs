//! A private PostgreSQL for `gatehouse up` when no `DATABASE_URL` is given: the machine's own
//! server binaries run a cluster in Gatehouse's data folder, listening only on a Unix socket, so a
//! newcomer sets nothing up first.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::{Context, Result, bail};
use tokio::process::Command;

/// A running private cluster. Dropping it does not stop the server; call [`LocalPostgres::stop`].
#[derive(Debug)]
pub(crate) struct LocalPostgres {
    bin: PathBuf,
    data: PathBuf,
    socket_dir: PathBuf,
    run_as: Option<String>,
}

const PORT: u16 = 5432;
const ROLE: &str = "gatehouse";
const DATABASE: &str = "gatehouse";
/// Unix socket paths are limited to 107 bytes; the socket file name takes 16 of them.
const MAX_SOCKET_DIR: usize = 90;

impl LocalPostgres {
    /// Initialises the cluster under `folder/postgres` if it is new, and starts it unless it is
    /// already running.
    pub(crate) async fn start(folder: &Path) -> Result<Self> {
        let bin = find_server_binaries()?;
        std::fs::create_dir_all(folder)
            .with_context(|| format!("creating {}", folder.display()))?;
        let folder = folder
            .canonicalize()
            .with_context(|| format!("resolving {}", folder.display()))?;
        let data = folder.join("postgres");
        let socket_dir = socket_dir_for(&folder)?;
        // PostgreSQL refuses to run as root; when we are root, the binaries run as the
        // `postgres` system user that Debian's packages create.
        let run_as = is_root().then(|| "postgres".to_string());
        let pg = Self {
            bin,
            data,
            socket_dir,
            run_as,
        };
        if !pg.data.join("PG_VERSION").exists() {
            pg.init().await?;
        }
        if !pg.is_running().await {
            pg.launch().await?;
        }
        pg.ensure_database().await?;
        Ok(pg)
    }

    /// The URL sqlx connects with: the role and database over the Unix socket.
    pub(crate) fn database_url(&self) -> String {
        format!(
            "postgres://{ROLE}@localhost/{DATABASE}?host={}&port={PORT}",
            self.socket_dir.display()
        )
    }

    pub(crate) async fn stop(&self) -> Result<()> {
        self.run(
            "pg_ctl",
            &["-D", path(&self.data), "-m", "fast", "-w", "stop"],
        )
        .await
        .map(drop)
    }

    async fn init(&self) -> Result<()> {
        std::fs::create_dir_all(&self.data)?;
        self.hand_over(&self.data)?;
        self.run(
            "initdb",
            &[
                "-D",
                path(&self.data),
                "-U",
                ROLE,
                "--auth=trust",
                "--encoding=UTF8",
                "--no-locale",
                "--no-instructions",
            ],
        )
        .await
        .context("initialising the private PostgreSQL cluster")?;
        Ok(())
    }

    async fn is_running(&self) -> bool {
        self.run("pg_ctl", &["-D", path(&self.data), "status"])
            .await
            .is_ok()
    }

    async fn launch(&self) -> Result<()> {
        std::fs::create_dir_all(&self.socket_dir)?;
        self.hand_over(&self.socket_dir)?;
        let options = format!(
            "-c listen_addresses='' -c unix_socket_directories='{}' -p {PORT}",
            self.socket_dir.display()
        );
        let log = self.data.join("server.log");
        self.run(
            "pg_ctl",
            &[
                "-D",
                path(&self.data),
                "-o",
                &options,
                "-l",
                path(&log),
                "-w",
                "-t",
                "60",
                "start",
            ],
        )
        .await
        .with_context(|| {
            format!(
                "starting the private PostgreSQL (its log: {})",
                log.display()
            )
        })?;
        Ok(())
    }

    async fn ensure_database(&self) -> Result<()> {
        let exists = self
            .run(
                "psql",
                &[
                    "-h",
                    path(&self.socket_dir),
                    "-p",
                    &PORT.to_string(),
                    "-U",
                    ROLE,
                    "-d",
                    "postgres",
                    "-tAc",
                    &format!("select 1 from pg_database where datname = '{DATABASE}'"),
                ],
            )
            .await?;
        if exists.trim() != "1" {
            self.run(
                "createdb",
                &[
                    "-h",
                    path(&self.socket_dir),
                    "-p",
                    &PORT.to_string(),
                    "-U",
                    ROLE,
                    DATABASE,
                ],
            )
            .await?;
        }
        Ok(())
    }

    /// Gives a folder to the user the server runs as.
    fn hand_over(&self, dir: &Path) -> Result<()> {
        if let Some(user) = &self.run_as {
            let status = std::process::Command::new("chown")
                .args(["-R", &format!("{user}:"), path(dir)])
                .status()?;
            if !status.success() {
                bail!("could not give {} to the `{user}` user", dir.display());
            }
        }
        Ok(())
    }

    /// Runs one of the server's programs; on failure the error carries what it printed.
    async fn run(&self, program: &str, args: &[&str]) -> Result<String> {
        let exe = self.bin.join(program);
        let mut cmd = match &self.run_as {
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
            .await
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

fn path(p: &Path) -> &str {
    p.to_str().unwrap_or_default()
}

fn is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// The socket lives beside the data when the path is short enough, otherwise in a folder under
/// /tmp named after the data folder.
fn socket_dir_for(folder: &Path) -> Result<PathBuf> {
    let beside = folder.join("run");
    if path(&beside).len() <= MAX_SOCKET_DIR {
        return Ok(beside);
    }
    let digest = folder
        .to_string_lossy()
        .bytes()
        .fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x100000001b3)
        });
    Ok(PathBuf::from(format!("/tmp/gatehouse-{digest:016x}")))
}

/// `initdb`, `pg_ctl` and `postgres` from PATH, or from the newest `/usr/lib/postgresql/*/bin`.
fn find_server_binaries() -> Result<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres", "psql", "createdb"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            if has_all(&dir) {
                return Ok(dir);
            }
        }
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
    match versions.pop() {
        Some((_, bin)) => Ok(bin),
        None => bail!(
            "no DATABASE_URL is set and no PostgreSQL server binaries were found (initdb, pg_ctl, postgres on PATH or under /usr/lib/postgresql/*/bin).\n\
             Install them (Debian/Ubuntu: `apt-get install postgresql`; macOS: `brew install postgresql`), or point DATABASE_URL at a PostgreSQL you run."
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_private_cluster_starts_serves_and_stops() {
        let folder =
            std::env::temp_dir().join(format!("gatehouse-local-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&folder);
        let pg = LocalPostgres::start(&folder).await.expect("starts");
        let url = pg.database_url();
        assert!(
            url.starts_with("postgres://gatehouse@localhost/gatehouse?host="),
            "{url}"
        );
        let answer = pg
            .run(
                "psql",
                &[
                    "-h",
                    path(&pg.socket_dir),
                    "-U",
                    ROLE,
                    "-d",
                    DATABASE,
                    "-tAc",
                    "select 40 + 2",
                ],
            )
            .await
            .expect("psql over the socket");
        assert_eq!(answer.trim(), "42");
        // Starting again finds it running and reuses it.
        let again = LocalPostgres::start(&folder).await.expect("restarts");
        again.stop().await.expect("stops");
        assert!(!pg.is_running().await);
        let _ = std::fs::remove_dir_all(&folder);
    }
}
