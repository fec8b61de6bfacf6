//! The gRPC face of the stats service: requests are checked into typed
//! questions and put to the store; answers and errors go back as `polymeter.v1`.

use crate::error::StatsError;
use crate::prices::{PriceOverrides, Pricing};
use crate::query::CallQuery;
use crate::store::{AggregateResult, CallStore};
use polymeter_model::CallRecord;
use polymeter_model::ProjectId;
use polymeter_pricing::{price_of, Price, PriceTable};
use polymeter_proto::v1::{self as pb, stats_service_server};
use polymeter_proto::MESSAGE_LIMIT;
use polymeter_retention::{Policies, ProjectData, ProjectDataServer};
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tonic::{Request, Response, Status};

#[derive(Clone)]
pub struct StatsServer {
    store: Arc<dyn CallStore>,
    prices: Arc<PriceOverrides>,
    retention: Arc<Policies>,
}

impl StatsServer {
    pub fn new(
        store: Arc<dyn CallStore>,
        prices: Arc<PriceOverrides>,
        retention: Arc<Policies>,
    ) -> Self {
        Self {
            store,
            prices,
            retention,
        }
    }

    pub fn into_service(self) -> stats_service_server::StatsServiceServer<Self> {
        stats_service_server::StatsServiceServer::new(self)
            .max_decoding_message_size(MESSAGE_LIMIT)
            .max_encoding_message_size(MESSAGE_LIMIT)
    }
}

/// Price-override writes fsync, so they run on the blocking pool.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StatsError> + Send + 'static,
) -> Result<T, Status> {
    Ok(polymeter_store::blocking(work, StatsError::Internal).await?)
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
                CallRecord::try_from(w).map_err(|e| StatsError::invalid(format!("calls[{i}]: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let accepted = batch.len() as u64;
        self.store.upsert(batch).await?;
        Ok(Response::new(pb::AppendCallsResponse { accepted }))
    }

    async fn aggregate_calls(
        &self,
        request: Request<pb::AggregateCallsRequest>,
    ) -> Result<Response<pb::AggregateCallsResponse>, Status> {
        let mut query = CallQuery::try_from(request.into_inner())?;
        query.expired_before = self
            .retention
            .cutoffs(query.tenant.as_str(), polymeter_retention::now_us())
            .into_iter()
            .filter_map(|(project, cutoff)| Some((ProjectId::parse(&project).ok()?, cutoff)))
            .collect();
        let pricing = Pricing::for_tenant(&self.prices, query.tenant.as_str());
        let result = self.store.aggregate(query, pricing).await?;
        Ok(Response::new(to_proto(result)))
    }

    async fn set_price_override(
        &self,
        request: Request<pb::SetPriceOverrideRequest>,
    ) -> Result<Response<pb::SetPriceOverrideResponse>, Status> {
        let r = request.into_inner();
        check_scope(&r.tenant, &r.project_id)?;
        let o = r
            .price
            .ok_or_else(|| StatsError::invalid("price is required"))?;
        if o.model.trim().is_empty() {
            return Err(StatsError::invalid("price.model must not be empty").into());
        }
        let price = from_proto(o.price.unwrap_or_default())?;
        let prices = self.prices.clone();
        blocking(move || prices.set(&r.tenant, &r.project_id, &o.model, price)).await?;
        Ok(Response::new(pb::SetPriceOverrideResponse {}))
    }

    async fn delete_price_override(
        &self,
        request: Request<pb::DeletePriceOverrideRequest>,
    ) -> Result<Response<pb::DeletePriceOverrideResponse>, Status> {
        let r = request.into_inner();
        check_scope(&r.tenant, &r.project_id)?;
        let prices = self.prices.clone();
        let deleted = blocking(move || prices.delete(&r.tenant, &r.project_id, &r.model)).await?;
        Ok(Response::new(pb::DeletePriceOverrideResponse { deleted }))
    }

    async fn list_price_overrides(
        &self,
        request: Request<pb::ListPriceOverridesRequest>,
    ) -> Result<Response<pb::ListPriceOverridesResponse>, Status> {
        let r = request.into_inner();
        check_scope(&r.tenant, &r.project_id)?;
        let mut prices: Vec<pb::PriceOverride> = self
            .prices
            .for_project(&r.tenant, &r.project_id)
            .unwrap_or_default()
            .into_iter()
            .map(|(model, price)| pb::PriceOverride {
                model,
                price: Some(to_proto_price(price)),
            })
            .collect();
        prices.sort_by(|a, b| a.model.cmp(&b.model));
        Ok(Response::new(pb::ListPriceOverridesResponse { prices }))
    }

    async fn lookup_price(
        &self,
        request: Request<pb::LookupPriceRequest>,
    ) -> Result<Response<pb::LookupPriceResponse>, Status> {
        let r = request.into_inner();
        check_scope(&r.tenant, &r.project_id)?;
        let overrides = self.prices.for_project(&r.tenant, &r.project_id);
        let table = PriceTable::builtin();
        let overridden = overrides
            .as_ref()
            .is_some_and(|o| o.contains_key(&polymeter_pricing::override_key(&r.model)));
        let price = price_of(table, overrides.as_ref(), &r.model);
        let source = match (price, overridden) {
            (None, _) => "none",
            (Some(_), true) => "override",
            (Some(_), false) => "table",
        };
        Ok(Response::new(pb::LookupPriceResponse {
            price: price.map(to_proto_price),
            source: source.to_owned(),
        }))
    }
}

fn check_scope(tenant: &str, project_id: &str) -> Result<(), StatsError> {
    if tenant.is_empty() {
        return Err(StatsError::invalid("tenant must not be empty"));
    }
    polymeter_model::ProjectId::check(project_id)
        .map_err(|e| StatsError::invalid(format!("project_id: {e}")))
}

fn from_proto(p: pb::Price) -> Result<Price, StatsError> {
    Price::new(p.input, p.output, p.cache_read, p.cache_write).map_err(StatsError::invalid)
}

fn to_proto_price(p: Price) -> pb::Price {
    pb::Price {
        input: p.input,
        output: p.output,
        cache_read: Some(p.cache_read),
        cache_write: Some(p.cache_write),
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

/// Serves the stats service on `listener` until `shutdown` resolves: its
/// queries, and its projects' retention and deletion (enforced here, once a
/// minute, while it serves).
pub async fn serve(
    listener: TcpListener,
    store: Arc<dyn CallStore>,
    prices: Arc<PriceOverrides>,
    retention: Arc<Policies>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), tonic::transport::Error> {
    let data: Arc<dyn ProjectData> = store.clone();
    let enforcing = polymeter_retention::enforce(
        retention.clone(),
        data.clone(),
        polymeter_retention::ENFORCE_EVERY,
    );
    let routes = tonic::service::Routes::new(
        StatsServer::new(store, prices, retention.clone()).into_service(),
    )
    .add_service(ProjectDataServer::new(retention, data).into_service());
    let served = polymeter_proto::serve(listener, routes, shutdown).await;
    enforcing.abort();
    served
}
