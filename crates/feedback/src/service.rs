//! The gRPC face of the feedback service. Store work runs on the blocking pool.

use crate::aggregate::aggregate;
use crate::FeedbackStore;
use polymeter_model::ProjectId;
use polymeter_proto::v1::{self as pb, feedback_service_server};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct FeedbackServer {
    store: Arc<FeedbackStore>,
}

impl FeedbackServer {
    pub fn new(store: Arc<FeedbackStore>) -> Self {
        Self { store }
    }

    pub fn into_service(self) -> feedback_service_server::FeedbackServiceServer<Self> {
        feedback_service_server::FeedbackServiceServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }
}

fn store_status(e: polymeter_store::StoreError) -> Status {
    match e {
        polymeter_store::StoreError::Corrupt { .. } => Status::internal(e.to_string()),
        other => Status::unavailable(other.to_string()),
    }
}

fn check(i: usize, w: &pb::FeedbackWrite) -> Result<(), Status> {
    let bad = |m: String| Err(Status::invalid_argument(format!("feedback[{i}]: {m}")));
    if w.tenant.is_empty() || w.feedback_id.is_empty() || w.feedback_type.is_empty() {
        return bad("tenant, feedback_id and feedback_type must not be empty".into());
    }
    ProjectId::check(&w.project_id)
        .map_err(|e| Status::invalid_argument(format!("feedback[{i}]: {e}")))?;
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
        let store = self.store.clone();
        tokio::task::spawn_blocking(move || store.append(batch))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(store_status)?;
        Ok(Response::new(pb::AppendFeedbackResponse { accepted }))
    }

    async fn aggregate_feedback(
        &self,
        request: Request<pb::AggregateFeedbackRequest>,
    ) -> Result<Response<pb::AggregateFeedbackResponse>, Status> {
        let query = request.into_inner();
        let store = self.store.clone();
        let answer = tokio::task::spawn_blocking(move || aggregate(&store.read(), &query))
            .await
            .map_err(|e| Status::internal(e.to_string()))?
            .map_err(|e| Status::invalid_argument(e.0))?;
        Ok(Response::new(answer))
    }
}

/// Serves the feedback service on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    store: Arc<FeedbackStore>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    polymeter_proto::serve(
        listener,
        tonic::service::Routes::new(FeedbackServer::new(store).into_service()),
        shutdown,
    )
    .await
}
