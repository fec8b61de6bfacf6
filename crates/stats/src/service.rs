//! The gRPC face of the stats service. Store work runs on the blocking pool so
//! a long scan or an fsync never stalls the async runtime.

use crate::aggregate::{aggregate, AggregateResult};
use crate::error::StatsError;
use crate::query::CallQuery;
use crate::store::CallStore;
use polymeter_model::CallRecord;
use polymeter_proto::v1::{self as pb, stats_service_server};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct StatsServer {
    store: Arc<dyn CallStore>,
}

impl StatsServer {
    pub fn new(store: Arc<dyn CallStore>) -> Self {
        Self { store }
    }

    pub fn into_service(self) -> stats_service_server::StatsServiceServer<Self> {
        stats_service_server::StatsServiceServer::new(self)
            .max_decoding_message_size(64 << 20)
            .max_encoding_message_size(64 << 20)
    }
}

async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StatsError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| Status::internal(format!("stats worker failed: {e}")))?
        .map_err(Status::from)
}

#[tonic::async_trait]
impl stats_service_server::StatsService for StatsServer {
    async fn append_calls(
        &self,
        request: Request<pb::AppendCallsRequest>,
    ) -> Result<Response<pb::AppendCallsResponse>, Status> {
        let batch = request
            .into_inner()
            .calls
            .into_iter()
            .enumerate()
            .map(|(i, w)| {
                CallRecord::try_from(w)
                    .map_err(|e| Status::invalid_argument(format!("calls[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let accepted = batch.len() as u64;
        let store = self.store.clone();
        blocking(move || Ok(store.upsert(batch)?)).await?;
        Ok(Response::new(pb::AppendCallsResponse { accepted }))
    }

    async fn aggregate_calls(
        &self,
        request: Request<pb::AggregateCallsRequest>,
    ) -> Result<Response<pb::AggregateCallsResponse>, Status> {
        let query = CallQuery::try_from(request.into_inner())?;
        let store = self.store.clone();
        let result = blocking(move || {
            let mut result = None;
            store.read(&mut |columns| result = Some(aggregate(&query, columns)))?;
            result.expect("read lends the columns once")
        })
        .await?;
        Ok(Response::new(to_proto(result)))
    }
}

fn to_proto(result: AggregateResult) -> pb::AggregateCallsResponse {
    pb::AggregateCallsResponse {
        bucket_width_seconds: result.bucket_width_seconds.unwrap_or(0),
        total_rows: result.total_rows as u64,
        rows: result
            .rows
            .into_iter()
            .map(|r| pb::AggregateRow {
                bucket_start_us: r.bucket_start_us,
                bucket_utc_offset_seconds: r.bucket_utc_offset_seconds,
                group: r
                    .group
                    .into_iter()
                    .map(|value| pb::GroupValue { value })
                    .collect(),
                row_count: r.row_count,
                values: r
                    .values
                    .into_iter()
                    .map(|value| pb::MeasureValue { value })
                    .collect(),
            })
            .collect(),
    }
}

/// Serves the stats service on `listener` until `shutdown` resolves.
pub async fn serve(
    listener: TcpListener,
    store: Arc<dyn CallStore>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    polymeter_proto::serve(
        listener,
        tonic::service::Routes::new(StatsServer::new(store).into_service()),
        shutdown,
    )
    .await
}
