//! The journey in a real browser: Chromium driven by playwright-core (tests/peers), against the
//! app and the simulator started here on port 0. Screenshots land in target/screenshots/admin.

use std::path::PathBuf;

use genieacs_sim::SimConfig;
use sqlx::PgPool;

use crate::support::{spawn_app, spawn_sim};

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn sign_up_register_and_mint_in_chromium(pool: PgPool) {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let peers = root.join("tests/peers");
    assert!(
        peers.join("node_modules/playwright-core").is_dir(),
        "tests/peers/node_modules is missing: run `scripts/test` (it runs `npm ci` in tests/peers), \
         or `cd tests/peers && npm ci`"
    );
    assert!(
        std::path::Path::new("/usr/bin/chromium").exists(),
        "Chromium is missing: run `scripts/test` (it installs Debian's chromium), or `apt-get install -y chromium`"
    );
    let sim = spawn_sim(SimConfig::default()).await;
    let app = spawn_app(pool).await;
    let shots = root.join("target/screenshots/admin");
    std::fs::create_dir_all(&shots).unwrap();
    let out = tokio::process::Command::new("node")
        .arg(peers.join("admin-journey.mjs"))
        .arg(&app.url)
        .arg(&sim.url)
        .arg(&shots)
        .current_dir(&peers)
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(std::time::Duration::from_secs(120), out)
        .await
        .expect("the browser journey finishes within 2 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "journey failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("journey ok"), "{stdout}\n{stderr}");
    for page in [
        "1-signup",
        "2-servers-empty",
        "3-register-tested",
        "4-server",
        "5-grant-token",
        "6-audit",
        "7-policy",
        "7b-policy-errors",
        "8-admin-events",
    ] {
        assert!(shots.join(format!("{page}.png")).is_file(), "{page}.png");
    }
    // What the browser minted is a working grant.
    let token = stdout
        .lines()
        .find_map(|l| l.strip_prefix("token "))
        .expect("the script prints the token it saw");
    assert!(
        app.store
            .grant_by_token(token.trim())
            .await
            .unwrap()
            .is_some()
    );
}
