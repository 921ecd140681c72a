//! A benchmark (not a test) of the audit trail's append path: W concurrent writers append N rows each
//! through `AuditLog::append`, the path every PHR call without a data change takes, against a fresh
//! database; prints rows per second and the chain's verdict. `scripts/bench-audit-append.sh` runs it on
//! both backends; compare commits by running it on each.
//!
//! `cargo run -p phr-server --example audit_append_bench -- <database url> <writers> <rows per writer>
//! [facilities]`: writer `w` appends as facility `w mod facilities` (1 by default), so with more than one
//! facility the rows spread over that many chains, as a server's do when several clinics call it.
//! A `sqlite:` URL is used as given (use a fresh file); a `postgres://` URL names an administrative
//! database: a database of its own is created there and dropped afterwards.

use std::time::Instant;

use phr_server::audit::{Action, AuditEvent, AuditLog, Outcome};
use phr_server::{Clock, Db};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let (url, writers, rows, facilities) = match args.as_slice() {
        [_, url, writers, rows] => (url, writers.parse()?, rows.parse()?, 1),
        [_, url, writers, rows, facilities] => (url, writers.parse()?, rows.parse()?, facilities.parse()?),
        _ => anyhow::bail!("usage: audit_append_bench <database url> <writers> <rows per writer> [facilities]"),
    };
    let (writers, rows, facilities): (usize, usize, usize) = (writers, rows, facilities);
    anyhow::ensure!(facilities >= 1, "facilities must be at least 1");
    let (url, drop_after) = fresh_database(url).await?;
    let db = Db::connect(&url).await?;
    db.migrate().await?;
    let log = std::sync::Arc::new(AuditLog::new(db.clone(), Clock::System));

    let started = Instant::now();
    let tasks: Vec<_> = (0..writers)
        .map(|writer| {
            let log = log.clone();
            tokio::spawn(async move {
                for row in 0..rows {
                    log.append(event(writer, row, writer % facilities)).await?;
                }
                Ok::<_, phr_server::audit::AuditError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    let elapsed = started.elapsed();
    let total = writers * rows;
    let report = log.verify().await?;
    println!(
        "{} writers={writers} facilities={facilities} rows={total} seconds={:.3} rows_per_second={:.0} chain={}",
        db.backend(),
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        if report.first_broken.is_none() && report.rows_checked == total as u64 { "intact" } else { "BROKEN" },
    );
    db.close().await;
    if let Some((admin, name)) = drop_after {
        let pool = sqlx::PgPool::connect(&admin).await?;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP DATABASE \"{name}\" WITH (FORCE)"))).execute(&pool).await?;
    }
    Ok(())
}

/// A row like the text endpoints write, as facility number `facility`.
fn event(writer: usize, row: usize, facility: usize) -> AuditEvent {
    let mut payload = serde_json::Map::new();
    payload.insert("status".into(), "success".into());
    payload.insert("lines".into(), 3.into());
    AuditEvent {
        facility_id: Some(format!("F{:03}", facility + 1)),
        actor_id: Some(format!("F{:03}:bench", facility + 1)),
        actor_display_name: None,
        actor_role: Some("user".into()),
        action: Action::AllergyText,
        resource: Some("/openDolphin/resources/20/adm/phr/allergy/P0001".into()),
        patient_id: Some("P0001".into()),
        request_id: None,
        trace_id: Some(format!("bench-{writer}-{row}")),
        ip_address: Some("127.0.0.1".into()),
        user_agent: None,
        payload,
        run_id: None,
        outcome: Outcome::Success,
    }
}

/// The URL to benchmark against, and for PostgreSQL the `(admin url, name)` of the database to drop.
async fn fresh_database(url: &str) -> anyhow::Result<(String, Option<(String, String)>)> {
    if !url.starts_with("postgres") {
        return Ok((url.to_owned(), None));
    }
    let name = format!("phr_bench_{}", uuid::Uuid::new_v4().simple());
    let pool = sqlx::PgPool::connect(url).await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE \"{name}\""))).execute(&pool).await?;
    pool.close().await;
    let options: sqlx::postgres::PgConnectOptions = url.parse()?;
    let bench_url = sqlx::ConnectOptions::to_url_lossy(&options.database(&name)).to_string();
    Ok((bench_url, Some((url.to_owned(), name))))
}
