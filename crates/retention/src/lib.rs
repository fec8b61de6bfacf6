//! Per-project retention and deletion, kept and enforced the same way by
//! every service that owns records (stats: calls; feedback: feedback):
//!
//! * [`Policies`]: each project's retention period (none: kept forever), in
//!   `retention.json` beside the embedded store, or in a ClickHouse table
//!   every replica reads;
//! * [`ProjectData`]: what a store does to expire a project's old records
//!   and to delete all of them;
//! * [`ProjectDataServer`]: the `ProjectDataService` gRPC face;
//! * [`enforce`]: the loop that expires every project past its retention,
//!   at start and then once a minute.
//!
//! Between two rounds of [`enforce`], queries leave out what has expired by
//! asking [`Policies::cutoffs`], so an answer never includes a record older
//! than its project's retention, whichever store holds it.

mod policies;

pub use policies::{Policies, RetentionTable};

use polymeter_error::Error;
use polymeter_proto::v1::{self as pb, project_data_service_server};
use std::sync::Arc;
use std::time::Duration;
use tonic::{Request, Response, Status};

/// The shortest retention a project may have.
pub const MIN_RETENTION: Duration = Duration::from_secs(3600);
/// The longest: past it, "keep forever" says what is meant.
pub const MAX_RETENTION: Duration = Duration::from_secs(100 * 366 * 86_400);
/// How often [`enforce`] runs.
pub const ENFORCE_EVERY: Duration = Duration::from_secs(60);

/// Why records are expired.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The routine round: a store may leave expired records in files it is
    /// about to replace anyway (an embedded store's current log).
    Routine,
    /// Someone set the period: no file holds an expired record afterwards.
    Asked,
}

/// What a store does with a project's records.
#[tonic::async_trait]
pub trait ProjectData: Send + Sync + 'static {
    /// Deletes the project's records from before `cutoff_us` (calls by when
    /// they started, feedback by when it was created).
    async fn expire(
        &self,
        tenant: &str,
        project: &str,
        cutoff_us: i64,
        why: Expiry,
    ) -> Result<(), Error>;
    /// Deletes every record of the project stored so far.
    async fn delete(&self, tenant: &str, project: &str) -> Result<(), Error>;
}

/// What [`ProjectData`] does for an embedded store, on the blocking pool
/// (it fsyncs and deletes files): expire before a cutoff, or with `None`
/// delete the whole project.
pub async fn on_durable<T: polymeter_store::Table>(
    durable: &Arc<polymeter_store::Durable<T>>,
    tenant: &str,
    project: &str,
    expire: Option<(i64, Expiry)>,
) -> Result<(), Error> {
    let (durable, tenant, project) = (durable.clone(), tenant.to_owned(), project.to_owned());
    let work = move || {
        match expire {
            Some((cutoff, why)) => durable.expire(&tenant, &project, cutoff, why == Expiry::Asked),
            None => durable.delete_scope(&tenant, &project),
        }
        .map_err(Error::from)
    };
    polymeter_store::blocking(work, Error::internal).await
}

/// Now, in microseconds since 1970.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// The cutoff of a retention period at `now_us`.
pub fn cutoff_us(now_us: i64, retention_seconds: u64) -> i64 {
    now_us.saturating_sub((retention_seconds as i64).saturating_mul(1_000_000))
}

/// Checks a retention period, naming the field.
pub fn check_retention(seconds: u64) -> Result<Duration, Error> {
    let d = Duration::from_secs(seconds);
    if d < MIN_RETENTION || d > MAX_RETENTION {
        return Err(Error::invalid(format!(
            "retention_seconds: {seconds} is outside {}..={} (one hour to a hundred years); \
             to keep a project's data forever, remove its retention",
            MIN_RETENTION.as_secs(),
            MAX_RETENTION.as_secs()
        )));
    }
    Ok(d)
}

fn scope(tenant: &str, project: &str) -> Result<(), Error> {
    if tenant.is_empty() {
        return Err(Error::invalid("tenant must not be empty"));
    }
    polymeter_model::ProjectId::parse(project)
        .map(|_| ())
        .map_err(|e| Error::invalid(e.to_string()))
}

/// Expires every project with a retention period, once.
pub async fn expire_all(policies: &Policies, data: &dyn ProjectData) {
    let now = now_us();
    for (tenant, project, seconds) in policies.all() {
        let cutoff = cutoff_us(now, seconds);
        match data
            .expire(&tenant, &project, cutoff, Expiry::Routine)
            .await
        {
            Ok(()) => metrics::counter!("polymeter_retention_runs_total").increment(1),
            Err(e) => tracing::warn!(%tenant, %project, error = %e, "cannot expire old records"),
        }
    }
}

/// Expires every project past its retention now and then every `every`,
/// until the policies are dropped.
pub fn enforce(
    policies: Arc<Policies>,
    data: Arc<dyn ProjectData>,
    every: Duration,
) -> tokio::task::JoinHandle<()> {
    let policies = Arc::downgrade(&policies);
    tokio::spawn(async move {
        loop {
            let Some(p) = policies.upgrade() else { return };
            expire_all(&p, &*data).await;
            drop(p);
            tokio::time::sleep(every).await;
        }
    })
}

/// The `ProjectDataService` of one service's store.
#[derive(Clone)]
pub struct ProjectDataServer {
    policies: Arc<Policies>,
    data: Arc<dyn ProjectData>,
}

impl ProjectDataServer {
    pub fn new(policies: Arc<Policies>, data: Arc<dyn ProjectData>) -> Self {
        Self { policies, data }
    }

    pub fn into_service(self) -> project_data_service_server::ProjectDataServiceServer<Self> {
        project_data_service_server::ProjectDataServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl project_data_service_server::ProjectDataService for ProjectDataServer {
    async fn set_retention(
        &self,
        request: Request<pb::SetRetentionRequest>,
    ) -> Result<Response<pb::SetRetentionResponse>, Status> {
        let r = request.into_inner();
        scope(&r.tenant, &r.project_id)?;
        let retention = r.retention_seconds.map(check_retention).transpose()?;
        self.policies
            .set(&r.tenant, &r.project_id, retention)
            .await?;
        // A shorter period takes effect at once, not at the next round.
        if let Some(d) = retention {
            let cutoff = cutoff_us(now_us(), d.as_secs());
            self.data
                .expire(&r.tenant, &r.project_id, cutoff, Expiry::Asked)
                .await?;
        }
        Ok(Response::new(pb::SetRetentionResponse {}))
    }

    async fn get_retention(
        &self,
        request: Request<pb::GetRetentionRequest>,
    ) -> Result<Response<pb::GetRetentionResponse>, Status> {
        let r = request.into_inner();
        scope(&r.tenant, &r.project_id)?;
        Ok(Response::new(pb::GetRetentionResponse {
            retention_seconds: self.policies.get(&r.tenant, &r.project_id),
        }))
    }

    async fn delete_project_data(
        &self,
        request: Request<pb::DeleteProjectDataRequest>,
    ) -> Result<Response<pb::DeleteProjectDataResponse>, Status> {
        let r = request.into_inner();
        scope(&r.tenant, &r.project_id)?;
        self.data.delete(&r.tenant, &r.project_id).await?;
        tracing::info!(tenant = %r.tenant, project = %r.project_id, "deleted a project's data");
        Ok(Response::new(pb::DeleteProjectDataResponse {}))
    }
}
