//! Postgres stops under the ingester: it retries without acknowledging, and every event arrives
//! once Postgres is back. Runs a private Postgres (never the shared one) from the machine's server
//! binaries, as the `postgres` user.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sqlx::postgres::PgPoolOptions;

use crate::{ingester, journal, ok_outcome, record, store, streams};

struct PrivatePostgres {
    dir: PathBuf,
    port: u16,
}

fn bin(name: &str) -> PathBuf {
    let root = Path::new("/usr/lib/postgresql");
    let mut versions: Vec<_> = std::fs::read_dir(root)
        .expect("PostgreSQL server binaries")
        .filter_map(|e| e.ok())
        .map(|e| e.path())
        .collect();
    versions.sort();
    versions.last().unwrap().join("bin").join(name)
}

fn as_postgres(args: &[&str]) -> std::process::Output {
    let out = Command::new("runuser")
        .arg("-u")
        .arg("postgres")
        .arg("--")
        .args(args)
        .output()
        .expect("runuser");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl PrivatePostgres {
    fn start() -> Self {
        let dir =
            std::env::temp_dir().join(format!("gh-audit-pg-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Command::new("chown")
            .arg("postgres:postgres")
            .arg(&dir)
            .status()
            .unwrap();
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let data = dir.join("data");
        as_postgres(&[
            bin("initdb").to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-A",
            "trust",
            "-U",
            "postgres",
            "--no-sync",
        ]);
        let pg = PrivatePostgres { dir, port };
        pg.ctl("start");
        pg
    }

    fn ctl(&self, what: &str) {
        let data = self.dir.join("data");
        let log = self.dir.join("log");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off",
            self.port,
            self.dir.display()
        );
        as_postgres(&[
            bin("pg_ctl").to_str().unwrap(),
            "-D",
            data.to_str().unwrap(),
            "-l",
            log.to_str().unwrap(),
            "-o",
            &opts,
            "-m",
            "fast",
            "-w",
            what,
        ]);
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = Command::new("runuser")
            .args(["-u", "postgres", "--"])
            .arg(bin("pg_ctl"))
            .args(["-D", data.to_str().unwrap(), "-m", "immediate", "stop"])
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_means_retry_without_ack_then_everything_arrives() {
    let pg = tokio::task::spawn_blocking(PrivatePostgres::start)
        .await
        .unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .acquire_timeout(Duration::from_secs(2))
        .connect(&pg.url())
        .await
        .unwrap();
    store::MIGRATOR.run(&pool).await.unwrap();
    let store = store(pool);
    let org = crate::org(&store).await;
    let streams = streams();
    let journal = journal(&streams).await;
    crate::answered_calls(&journal, org, "r", 40).await;

    let mut ingester = ingester(&store, &streams, "a").await;
    tokio::task::block_in_place(|| pg.ctl("stop"));
    for _ in 0..3 {
        assert!(ingester.step().await.is_err(), "Postgres is down");
    }
    // Nothing was acknowledged: all 80 entries are still in the stream.
    assert_eq!(crate::stream_len(&streams, org).await, 80);

    tokio::task::block_in_place(|| pg.ctl("start"));
    // More arrive meanwhile.
    for i in 40..50 {
        let t = journal
            .write_ahead(record(org, &format!("r{i}")))
            .await
            .unwrap();
        journal.record_outcome(t, ok_outcome()).await.unwrap();
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if ingester.step().await.is_ok() && crate::stored(&store, org).await.len() >= 50 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "events did not arrive"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    ingester.step().await.unwrap();
    let events = crate::stored(&store, org).await;
    assert_eq!(events.len(), 50);
    let mut ids: Vec<_> = events.iter().map(|e| e.event.audit_event_id).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 50);
    let mut tx = store.begin(org).await.unwrap();
    let report = store::audit::verify_audit_chain(&mut tx).await.unwrap();
    assert_eq!((report.problem, report.checked), (None, 50));
}
