//! Versioned schema migrations, applied by each service on start.
//!
//! A service lists its migrations in order; each is a version number, a name
//! and the statements it runs. `polymeter_migrations` records which versions
//! a service has applied. Every statement is idempotent (`IF NOT EXISTS`), so
//! the rule for two replicas starting together is simple: both may run a
//! migration, the second run changes nothing, and both record it (the record
//! table is a `ReplacingMergeTree`, so the duplicate collapses). A statement
//! that loses a creation race (`TABLE_ALREADY_EXISTS`) counts as applied.
//!
//! With a cluster (`?cluster=NAME` on the store URL) every table `t` becomes
//! `t_local`, a `Replicated*MergeTree` created `ON CLUSTER`, and `t` a
//! `Distributed` table over it, sharded by the key the migration names so
//! that every row about one record lands on one shard.

use crate::{Failure, StoreUrl};
use clickhouse::Client;

/// Where and how tables are created.
#[derive(Debug, Clone)]
pub struct Schema {
    pub database: String,
    pub cluster: Option<String>,
}

impl Schema {
    pub fn new(url: &StoreUrl) -> Self {
        Schema {
            database: url.database.clone(),
            cluster: url.cluster.clone(),
        }
    }

    fn on_cluster(&self) -> String {
        self.cluster
            .as_ref()
            .map(|c| format!(" ON CLUSTER `{c}`"))
            .unwrap_or_default()
    }

    /// A lightweight `DELETE` of the rows of table `name` matching
    /// `condition` (on a cluster, of its local tables on every node).
    pub fn delete_from(&self, name: &str, condition: &str) -> String {
        let db = &self.database;
        match &self.cluster {
            None => format!("DELETE FROM `{db}`.`{name}` WHERE {condition}"),
            Some(_) => format!(
                "DELETE FROM `{db}`.`{name}_local`{} WHERE {condition}",
                self.on_cluster()
            ),
        }
    }

    /// `CREATE TABLE` for `name` with `columns` (the SQL inside the
    /// parentheses), engine `engine` (e.g. `ReplacingMergeTree(version)`) and
    /// the clauses after it. On a cluster, the replicated local table plus a
    /// `Distributed` table sharded by `shard_key`.
    pub fn create_table(
        &self,
        name: &str,
        columns: &str,
        engine: &str,
        clauses: &str,
        shard_key: &str,
    ) -> Vec<String> {
        let db = &self.database;
        let Some(cluster) = &self.cluster else {
            return vec![format!(
                "CREATE TABLE IF NOT EXISTS `{db}`.`{name}` ({columns}) ENGINE = {engine} {clauses}"
            )];
        };
        let local = format!("{name}_local");
        let (family, args) = engine.split_once('(').unwrap_or((engine, ")"));
        let args = args.trim_end_matches(')');
        let path = format!("'/clickhouse/tables/{{shard}}/{db}/{local}', '{{replica}}'");
        let replicated = if args.trim().is_empty() {
            format!("Replicated{family}({path})")
        } else {
            format!("Replicated{family}({path}, {args})")
        };
        vec![
            format!(
                "CREATE TABLE IF NOT EXISTS `{db}`.`{local}`{} ({columns}) ENGINE = {replicated} {clauses}",
                self.on_cluster()
            ),
            format!(
                "CREATE TABLE IF NOT EXISTS `{db}`.`{name}`{} AS `{db}`.`{local}` \
                 ENGINE = Distributed(`{cluster}`, `{db}`, `{local}`, {shard_key})",
                self.on_cluster()
            ),
        ]
    }
}

/// One step of a service's schema.
pub struct Migration {
    pub version: u32,
    pub name: &'static str,
    pub statements: fn(&Schema) -> Vec<String>,
}

#[derive(clickhouse::Row, serde::Deserialize)]
struct Applied {
    version: u32,
}

/// Applies `service`'s migrations that the database has not recorded yet.
pub async fn migrate(
    client: &Client,
    url: &StoreUrl,
    service: &str,
    migrations: &[Migration],
) -> Result<(), Failure> {
    let schema = Schema::new(url);
    // The database may not exist yet, so these run without one selected.
    let bare = client.clone().with_database("default");
    run(
        &bare,
        &format!(
            "CREATE DATABASE IF NOT EXISTS `{}`{}",
            schema.database,
            schema.on_cluster()
        ),
    )
    .await?;
    for statement in schema.create_table(
        "polymeter_migrations",
        "service LowCardinality(String), version UInt32, name String, \
         applied_at DateTime64(3, 'UTC') DEFAULT now64(3)",
        "ReplacingMergeTree",
        "ORDER BY (service, version)",
        "cityHash64(service)",
    ) {
        run(&bare, &statement).await?;
    }
    let applied: Vec<u32> = client
        .query(
            "SELECT DISTINCT version FROM polymeter_migrations WHERE service = ? ORDER BY version",
        )
        .bind(service)
        .fetch_all::<Applied>()
        .await?
        .into_iter()
        .map(|a| a.version)
        .collect();
    for m in migrations {
        if applied.contains(&m.version) {
            continue;
        }
        tracing::info!(
            service,
            version = m.version,
            name = m.name,
            "applying migration"
        );
        for statement in (m.statements)(&schema) {
            run(client, &statement).await?;
        }
        crate::within(
            crate::QUERY_TIMEOUT,
            "recording a migration",
            client
                .query("INSERT INTO polymeter_migrations (service, version, name) VALUES (?, ?, ?)")
                .bind(service)
                .bind(m.version)
                .bind(m.name)
                .execute(),
        )
        .await?;
    }
    Ok(())
}

async fn run(client: &Client, statement: &str) -> Result<(), Failure> {
    let limit = crate::QUERY_TIMEOUT;
    let done = match tokio::time::timeout(limit, client.query(statement).execute()).await {
        Ok(done) => done,
        Err(_) => {
            return Err(Failure {
                kind: polymeter_error::ErrorKind::Unavailable,
                message: format!("a migration statement did not finish within {limit:?}"),
            })
        }
    };
    match done {
        // Another replica created it between our check and our statement.
        Err(clickhouse::error::Error::BadResponse(text)) if text.contains("Code: 57.") => Ok(()),
        other => Ok(other?),
    }
}
