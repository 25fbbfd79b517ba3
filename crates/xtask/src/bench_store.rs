//! `cargo xtask bench store`: the audit viewer's queries over millions of events.

use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use sqlx::{Connection as _, Executor as _, PgConnection, PgPool, Row as _};
use store::audit::{AuditCursor, AuditDecision, AuditFilter, audit_hourly_counts, audit_page};
use store::secret::{Keyring, SealingKey};
use store::{GrantId, OrgId, ServerId, Store};
use time::OffsetDateTime;
use uuid::Uuid;

/// Seeded events span this many days, ending now.
const DAYS: i64 = 30;
/// Organisations besides the big one the queries read; they get a fifth of the events.
const SMALL_ORGS: i64 = 9;
const SERVERS_PER_ORG: i64 = 5;
const GRANTS_PER_ORG: i64 = 50;
const PAGE: i64 = 50;
const BUDGET_P95_MS: f64 = 50.0;

#[derive(Debug)]
pub(crate) struct Options {
    events: i64,
    iterations: usize,
    reseed: bool,
    database: String,
}

impl Options {
    pub(crate) fn parse(args: &[&str]) -> anyhow::Result<Self> {
        let mut o = Options {
            events: 10_000_000,
            iterations: 100,
            reseed: false,
            database: "gatehouse_bench".into(),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let mut value = || {
                it.next()
                    .copied()
                    .with_context(|| format!("{arg} needs a value"))
            };
            match *arg {
                "--events" => o.events = value()?.replace('_', "").parse().context("--events")?,
                "--iterations" => o.iterations = value()?.parse().context("--iterations")?,
                "--database" => o.database = value()?.to_owned(),
                "--reseed" => o.reseed = true,
                other => bail!("unknown option {other}"),
            }
        }
        if !o
            .database
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        {
            bail!("--database must be lowercase letters, digits and _");
        }
        Ok(o)
    }
}

pub(crate) async fn run(o: Options) -> anyhow::Result<()> {
    let admin_url = std::env::var("DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into());
    let base = admin_url
        .rsplit_once('/')
        .map_or(admin_url.as_str(), |(b, _)| b);
    let url = format!("{base}/{}", o.database);

    let mut admin = PgConnection::connect(&admin_url)
        .await
        .context("connecting to DATABASE_URL")?;
    let exists: bool =
        sqlx::query_scalar("select exists (select 1 from pg_database where datname = $1)")
            .bind(&o.database)
            .fetch_one(&mut admin)
            .await?;
    let seeded = if exists && !o.reseed {
        let pool = PgPool::connect(&url).await?;
        let n: Option<i64> = sqlx::query_scalar("select events from bench_meta")
            .fetch_optional(&pool)
            .await
            .unwrap_or(None);
        pool.close().await;
        n == Some(o.events)
    } else {
        false
    };
    if !seeded {
        if exists {
            admin
                .execute(sqlx::AssertSqlSafe(format!(
                    "drop database {} with (force)",
                    o.database
                )))
                .await?;
        }
        admin
            .execute(sqlx::AssertSqlSafe(format!(
                "create database {}",
                o.database
            )))
            .await?;
    }
    admin.close().await?;

    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await?;
    let store = Store::new(pool.clone(), Keyring::new(SealingKey::generate(1)));
    if seeded {
        println!(
            "reusing {} with {} events (--reseed to start over)",
            o.database, o.events
        );
    } else {
        store.migrate().await?;
        seed(&pool, o.events).await?;
    }
    measure(&store, &pool, o.iterations).await
}

/// Seeds `events` events with one statement per million rows, indexes dropped while loading and
/// rebuilt from their own definitions (so they are exactly the migrations' indexes), then the
/// hourly rollups the ingester would have kept.
async fn seed(pool: &PgPool, events: i64) -> anyhow::Result<()> {
    let started = Instant::now();
    let mut conn = pool.acquire().await?;
    conn.execute("set maintenance_work_mem = '1GB'; set synchronous_commit = off; set max_parallel_maintenance_workers = 2").await?;
    conn.execute(sqlx::AssertSqlSafe(format!(
        "select gatehouse_audit_partition_ensure((now() at time zone 'UTC')::date - {DAYS}, {})",
        DAYS + 2
    )))
    .await?;
    conn.execute(sqlx::AssertSqlSafe(format!(
        r#"
        create table bench_meta (events bigint not null);
        insert into organisation (organisation_id, name)
            select ('00000000-0000-0000-0000-' || lpad(o::text, 12, '0'))::uuid, 'bench ' || o
            from generate_series(0, {SMALL_ORGS}) o;
        "#
    )))
    .await?;
    let indexes: Vec<(String, String)> =
        sqlx::query("select indexname, indexdef from pg_indexes where tablename = 'audit_event'")
            .fetch_all(&mut *conn)
            .await?
            .into_iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
    for (name, _) in &indexes {
        conn.execute(sqlx::AssertSqlSafe(format!("drop index {name}")))
            .await?;
    }

    let chunk = 1_000_000_i64;
    let mut from = 1;
    while from <= events {
        let to = (from + chunk - 1).min(events);
        // Every fifth event belongs to a small organisation, the rest to organisation 0. Times are
        // spread evenly over the last DAYS days; decisions, tools and messages follow a plausible mix.
        conn.execute(sqlx::AssertSqlSafe(format!(
            r#"
            insert into audit_event (
                audit_event_id, organisation_id, occurred_at, sequence, prev_hash, hash, server_id,
                access_grant_id, identity, session_id, method, tool_name, arguments, decision, rule,
                message, policy_version, upstream_status, is_error, latency_us, client_addr, user_agent)
            select gen_random_uuid(), x.org, x.at, g, sha256(int8send(g - 1)), sha256(int8send(g)),
                   ('00000000-0000-0000-0001-' || lpad((x.o * 100 + g % {SERVERS_PER_ORG})::text, 12, '0'))::uuid,
                   ('00000000-0000-0000-0002-' || lpad((x.o * 1000 + g % {GRANTS_PER_ORG})::text, 12, '0'))::uuid,
                   'agent-' || (g % {GRANTS_PER_ORG}), 's-' || (g % 5000), 'tools/call', x.tool,
                   jsonb_build_object('device_id', '00236A-' || (g % 100000)), x.decision,
                   case when x.decision <> 'allow' then '/tools/' || x.tool || '/deny_if/0' end,
                   case x.decision
                        when 'deny' then 'Passwords are changed by the provisioning team only (device 00236A-' || (g % 100000) || ').'
                        when 'rate_limited' then 'rate limit reads: 60/minute, retry after ' || (g % 60) || ' s'
                        when 'hidden' then 'Unknown tool: ' || x.tool
                        when 'approval_pending' then 'approval pending for ' || x.tool
                        when 'upstream_error' then 'upstream timed out after 30 s'
                   end,
                   3, 200, x.decision = 'upstream_error', 500 + g % 20000, '10.1.2.3'::inet, 'claude-code/1.0'
            from generate_series({from}::int8, {to}::int8) g
            cross join lateral (
                select case when g % 5 = 0 then 1 + (g / 5) % {SMALL_ORGS} else 0 end as o,
                       now() - make_interval(secs => ({events} - g)::float8 * {DAYS} * 86400 / {events}) as at,
                       (array['search_devices', 'get_parameter', 'set_parameter', 'reboot_device', 'retry_task',
                              'list_tasks', 'get_device', 'refresh_object', 'add_tag', 'remove_tag',
                              'download_firmware', 'factory_reset'])[1 + (g * 7) % 12] as tool,
                       (case when g % 100 < 85 then 'allow' when g % 100 < 92 then 'deny'
                             when g % 100 < 96 then 'rate_limited' when g % 100 < 97 then 'hidden'
                             when g % 100 < 98 then 'approval_pending' else 'upstream_error' end)::audit_decision as decision
            ) x0
            cross join lateral (
                select ('00000000-0000-0000-0000-' || lpad(x0.o::text, 12, '0'))::uuid as org, x0.*
            ) x
            "#
        )))
        .await
        .with_context(|| format!("seeding events {from}..={to}"))?;
        println!(
            "seeded {to} events ({:.0} s)",
            started.elapsed().as_secs_f64()
        );
        from = to + 1;
    }
    for (name, def) in &indexes {
        let t = Instant::now();
        // pg_indexes shows a partitioned index as `ON ONLY parent`, which would build no partition's index.
        conn.execute(sqlx::AssertSqlSafe(def.replacen(" ON ONLY ", " ON ", 1)))
            .await?;
        println!("rebuilt {name} ({:.0} s)", t.elapsed().as_secs_f64());
    }
    conn.execute(
        r#"
        insert into audit_hour_count (organisation_id, hour, server_id, decision, event_count)
        select organisation_id, date_trunc('hour', occurred_at, 'UTC'), server_id, decision, count(*)
        from audit_event group by 1, 2, 3, 4
        "#,
    )
    .await?;
    conn.execute(
        r#"
        insert into audit_hour_facet (organisation_id, hour, server_id, access_grant_id, identity,
                                      tool_name, decision, event_count)
        select organisation_id, date_trunc('hour', occurred_at, 'UTC'), server_id, access_grant_id,
               identity, coalesce(tool_name, ''), decision, count(*)
        from audit_event group by 1, 2, 3, 4, 5, 6, 7
        "#,
    )
    .await?;
    // One statement each: VACUUM refuses to run inside the implicit transaction of a multi-statement query.
    conn.execute("vacuum analyze audit_event").await?;
    conn.execute("vacuum analyze audit_hour_count").await?;
    conn.execute("vacuum analyze audit_hour_facet").await?;
    sqlx::query("insert into bench_meta values ($1)")
        .bind(events)
        .execute(&mut *conn)
        .await?;
    println!(
        "seeded and indexed {events} events in {:.0} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn org(o: i64) -> OrgId {
    OrgId::from_uuid(
        Uuid::parse_str(&format!("00000000-0000-0000-0000-{o:012}")).expect("a valid UUID"),
    )
}
fn server(o: i64, s: i64) -> ServerId {
    ServerId::from_uuid(
        Uuid::parse_str(&format!("00000000-0000-0000-0001-{:012}", o * 100 + s))
            .expect("a valid UUID"),
    )
}
fn grant(o: i64, g: i64) -> GrantId {
    GrantId::from_uuid(
        Uuid::parse_str(&format!("00000000-0000-0000-0002-{:012}", o * 1000 + g))
            .expect("a valid UUID"),
    )
}

#[derive(Clone, Copy)]
enum Query {
    Page(fn(usize) -> AuditFilter, Option<AuditCursor>),
    Hourly(fn(usize) -> AuditFilter, time::Duration),
}

async fn measure(store: &Store, pool: &PgPool, iterations: usize) -> anyhow::Result<()> {
    let big = org(0);
    let now = OffsetDateTime::now_utc();
    // A cursor halfway back in time: what a user reaches after scrolling far, or a shared link.
    let deep_at: OffsetDateTime = sqlx::query_scalar(
        "select occurred_at from audit_event where organisation_id = $1 and occurred_at < now() - interval '15 days' order by occurred_at desc limit 1",
    )
    .bind(big.as_uuid())
    .fetch_one(pool)
    .await?;
    let deep_id: Uuid = sqlx::query_scalar("select audit_event_id from audit_event where organisation_id = $1 and occurred_at = $2 limit 1")
        .bind(big.as_uuid())
        .bind(deep_at)
        .fetch_one(pool)
        .await?;
    let deep = AuditCursor {
        occurred_at: deep_at,
        audit_event_id: deep_id,
    };

    let queries: Vec<(&str, Query)> = vec![
        (
            "first page, no filter",
            Query::Page(|_| AuditFilter::default(), None),
        ),
        (
            "server",
            Query::Page(
                |i| AuditFilter {
                    server: Some(server(0, (i % 5) as i64)),
                    ..Default::default()
                },
                None,
            ),
        ),
        (
            "grant",
            Query::Page(
                |i| AuditFilter {
                    grant: Some(grant(0, (i % 50) as i64)),
                    ..Default::default()
                },
                None,
            ),
        ),
        (
            "identity",
            Query::Page(
                |i| AuditFilter {
                    identity: Some(format!("agent-{}", i % 50)),
                    ..Default::default()
                },
                None,
            ),
        ),
        (
            "tool",
            Query::Page(
                |i| AuditFilter {
                    tool: Some(["reboot_device", "factory_reset", "get_parameter"][i % 3].into()),
                    ..Default::default()
                },
                None,
            ),
        ),
        (
            "decision = deny",
            Query::Page(
                |_| AuditFilter {
                    decision: Some(AuditDecision::Deny),
                    ..Default::default()
                },
                None,
            ),
        ),
        (
            "decision = hidden (1 %)",
            Query::Page(
                |_| AuditFilter {
                    decision: Some(AuditDecision::Hidden),
                    ..Default::default()
                },
                None,
            ),
        ),
        (
            "time range (1 day, 10 days ago)",
            Query::Page(
                |_| {
                    let to = OffsetDateTime::now_utc() - time::Duration::days(10);
                    AuditFilter {
                        from: Some(to - time::Duration::days(1)),
                        to: Some(to),
                        ..Default::default()
                    }
                },
                None,
            ),
        ),
        (
            "server + deny + 7 days",
            Query::Page(
                |i| AuditFilter {
                    server: Some(server(0, (i % 5) as i64)),
                    decision: Some(AuditDecision::Deny),
                    from: Some(OffsetDateTime::now_utc() - time::Duration::days(7)),
                    ..Default::default()
                },
                None,
            ),
        ),
        (
            "grant + tool + upstream_error",
            Query::Page(
                |i| AuditFilter {
                    grant: Some(grant(0, (i % 50) as i64)),
                    tool: Some("factory_reset".into()),
                    decision: Some(AuditDecision::UpstreamError),
                    ..Default::default()
                },
                None,
            ),
        ),
        (
            "grant + tool + upstream_error, 7 days",
            Query::Page(
                |i| AuditFilter {
                    grant: Some(grant(0, (i % 50) as i64)),
                    tool: Some("factory_reset".into()),
                    decision: Some(AuditDecision::UpstreamError),
                    from: Some(OffsetDateTime::now_utc() - time::Duration::days(7)),
                    ..Default::default()
                },
                None,
            ),
        ),
        (
            "deep keyset page (15 days back)",
            Query::Page(|_| AuditFilter::default(), Some(deep)),
        ),
        (
            "deep keyset page + server",
            Query::Page(
                |i| AuditFilter {
                    server: Some(server(0, (i % 5) as i64)),
                    ..Default::default()
                },
                Some(deep),
            ),
        ),
        (
            "text: common ('provisioning')",
            Query::Page(
                |_| AuditFilter {
                    text: Some("provisioning".into()),
                    ..Default::default()
                },
                None,
            ),
        ),
        (
            "text: rare (one device)",
            Query::Page(
                |i| AuditFilter {
                    text: Some(format!("00236A-{}).", 86 + 100 * i)),
                    ..Default::default()
                },
                None,
            ),
        ),
        (
            "text: rare, 7 days",
            Query::Page(
                |i| AuditFilter {
                    text: Some(format!("00236A-{}).", 86 + 100 * i)),
                    from: Some(OffsetDateTime::now_utc() - time::Duration::days(7)),
                    ..Default::default()
                },
                None,
            ),
        ),
        (
            "text: no match",
            Query::Page(
                |_| AuditFilter {
                    text: Some("no such message anywhere".into()),
                    ..Default::default()
                },
                None,
            ),
        ),
        (
            "hourly counts, 24 h",
            Query::Hourly(|_| AuditFilter::default(), time::Duration::hours(24)),
        ),
        (
            "hourly counts, 30 days",
            Query::Hourly(|_| AuditFilter::default(), time::Duration::days(30)),
        ),
        (
            "hourly counts, 7 days, server + deny",
            Query::Hourly(
                |i| AuditFilter {
                    server: Some(server(0, (i % 5) as i64)),
                    decision: Some(AuditDecision::Deny),
                    ..Default::default()
                },
                time::Duration::days(7),
            ),
        ),
        (
            "hourly counts, 24 h, tool (raw scan)",
            Query::Hourly(
                |_| AuditFilter {
                    tool: Some("reboot_device".into()),
                    ..Default::default()
                },
                time::Duration::hours(24),
            ),
        ),
    ];

    println!(
        "\n{iterations} runs each (after 3 warm-up runs), organisation with 80 % of the events, pages of {PAGE}:"
    );
    println!(
        "{:<40} {:>9} {:>9} {:>9} {:>6}",
        "query", "p50 ms", "p95 ms", "max ms", "rows"
    );
    let mut over = 0;
    for (name, query) in queries {
        let mut times = Vec::with_capacity(iterations);
        let mut rows = 0;
        for i in 0..iterations + 3 {
            let t = Instant::now();
            let mut tx = store.begin(big).await?;
            rows = match query {
                Query::Page(filter, cursor) => audit_page(&mut tx, &filter(i), cursor, PAGE)
                    .await?
                    .events
                    .len(),
                Query::Hourly(filter, span) => {
                    audit_hourly_counts(&mut tx, now - span, now, &filter(i))
                        .await?
                        .len()
                }
            };
            tx.commit().await?;
            if i >= 3 {
                times.push(t.elapsed());
            }
        }
        times.sort();
        let pct = |p: f64| ms(times[((times.len() as f64 * p).ceil() as usize).saturating_sub(1)]);
        let (p50, p95, max) = (
            pct(0.50),
            pct(0.95),
            ms(*times.last().expect("at least one run")),
        );
        let flag = if p95 > BUDGET_P95_MS {
            over += 1;
            "  OVER BUDGET"
        } else {
            ""
        };
        println!("{name:<40} {p50:>9.2} {p95:>9.2} {max:>9.2} {rows:>6}{flag}");
    }
    println!("\nbudget: p95 <= {BUDGET_P95_MS} ms per query; {over} over budget");
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
