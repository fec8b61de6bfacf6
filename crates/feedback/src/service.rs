//! The gRPC face of the feedback service: writes are checked and appended,
//! queries checked into a [`FeedbackQuery`] and put to the store.

use crate::error::FeedbackError;
use crate::query::FeedbackQuery;
use crate::store::FeedbackStore;
use polymeter_model::ProjectId;
use polymeter_proto::v1::{self as pb, feedback_service_server};
use polymeter_proto::MESSAGE_LIMIT;
use polymeter_retention::{Policies, ProjectData, ProjectDataServer};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct FeedbackServer {
    store: Arc<dyn FeedbackStore>,
    retention: Arc<Policies>,
}

impl FeedbackServer {
    pub fn new(store: Arc<dyn FeedbackStore>, retention: Arc<Policies>) -> Self {
        Self { store, retention }
    }

    pub fn into_service(self) -> feedback_service_server::FeedbackServiceServer<Self> {
        feedback_service_server::FeedbackServiceServer::new(self)
            .max_decoding_message_size(MESSAGE_LIMIT)
            .max_encoding_message_size(MESSAGE_LIMIT)
    }
}

fn check(i: usize, w: &pb::FeedbackWrite) -> Result<(), FeedbackError> {
    let bad = |m: String| {
        Err(FeedbackError::InvalidArgument(format!(
            "feedback[{i}]: {m}"
        )))
    };
    if w.tenant.is_empty() || w.feedback_id.is_empty() || w.feedback_type.is_empty() {
        return bad("tenant, feedback_id and feedback_type must not be empty".into());
    }
    ProjectId::check(&w.project_id)
        .map_err(|e| FeedbackError::InvalidArgument(format!("feedback[{i}]: {e}")))?;
    if let Some((name, v)) = w
        .scorer_ratings
        .iter()
        .find(|(_, v)| !(0.0..=1.0).contains(*v))
    {
        return bad(format!(
            "scorer_ratings.{name} must be within 0..=1, got {v}"
        ));
    }
    Ok(())
}

#[tonic::async_trait]
impl feedback_service_server::FeedbackService for FeedbackServer {
    async fn append_feedback(
        &self,
        request: Request<pb::AppendFeedbackRequest>,
    ) -> Result<Response<pb::AppendFeedbackResponse>, Status> {
        let batch = request.into_inner().feedback;
        for (i, w) in batch.iter().enumerate() {
            check(i, w)?;
        }
        let accepted = batch.len() as u64;
        self.store.append(batch).await?;
        Ok(Response::new(pb::AppendFeedbackResponse { accepted }))
    }

    async fn aggregate_feedback(
        &self,
        request: Request<pb::AggregateFeedbackRequest>,
    ) -> Result<Response<pb::AggregateFeedbackResponse>, Status> {
        let mut query = FeedbackQuery::try_from(request.into_inner())?;
        // Feedback past its project's retention, not yet deleted, is left
        // out (buckets are aligned to the epoch, so they do not move).
        let q = &mut query.request;
        if let Some(cutoff_us) = self.retention.cutoff(&q.tenant, &q.project_id) {
            q.after_ms = q
                .after_ms
                .max(cutoff_us.div_euclid(1000) + i64::from(cutoff_us.rem_euclid(1000) != 0));
        }
        let answer = self.store.aggregate(query).await?;
        Ok(Response::new(answer))
    }
}

/// Serves the feedback service on `listener` until `shutdown` resolves: its
/// queries, and its projects' retention and deletion (enforced here, once a
/// minute, while it serves).
pub async fn serve(
    listener: TcpListener,
    store: Arc<dyn FeedbackStore>,
    retention: Arc<Policies>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let data: Arc<dyn ProjectData> = store.clone();
    let enforcing = polymeter_retention::enforce(
        retention.clone(),
        data.clone(),
        polymeter_retention::ENFORCE_EVERY,
    );
    let routes =
        tonic::service::Routes::new(FeedbackServer::new(store, retention.clone()).into_service())
            .add_service(ProjectDataServer::new(retention, data).into_service());
    let served = polymeter_proto::serve(listener, routes, shutdown).await;
    enforcing.abort();
    served
}
