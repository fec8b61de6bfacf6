//! The service traits of [`crate::api`] implemented by gRPC clients. Channels
//! connect lazily and reconnect by themselves (with backoff), so the gateway
//! starts before its peers and rides out their restarts (answering
//! "unavailable, retry" meanwhile); HTTP/2 keepalive notices a peer that
//! stopped answering. Every call carries the caller's trace context and a
//! deadline ([`Deadlines`]), sent as `grpc-timeout` and enforced here too, so
//! a stalled peer costs a caller at most that long; every failure comes back
//! as an [`Error`] whose kind the service chose.

use crate::api::{
    FeedbackApi, HealthApi, IngestApi, OtlpCredentials, ProjectsApi, Services, StatsApi,
};
use crate::error::Error;
use opentelemetry_proto::tonic::collector::trace::v1::{
    trace_service_client::TraceServiceClient, ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use polymeter_error::ErrorKind;
use polymeter_proto::v1::{
    self as pb, feedback_service_client::FeedbackServiceClient,
    ingest_service_client::IngestServiceClient,
    project_data_service_client::ProjectDataServiceClient,
    stats_service_client::StatsServiceClient,
};
use polymeter_proto::{CallError, MESSAGE_LIMIT};
use std::sync::Arc;
use std::time::Duration;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{
    health_check_response::ServingStatus, health_client::HealthClient, HealthCheckRequest,
};

/// A lazily connecting channel to `url` (`http://host:port`), with HTTP/2
/// keepalive so that a peer that stopped answering is noticed.
pub fn channel(url: &str) -> Result<Channel, tonic::transport::Error> {
    Ok(Endpoint::from_shared(url.to_owned())?
        .connect_timeout(Duration::from_secs(2))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(10))
        .keep_alive_timeout(Duration::from_secs(5))
        .keep_alive_while_idle(true)
        .connect_lazy())
}

/// How long the gateway waits for a service: queries and writes.
#[derive(Debug, Clone, Copy)]
pub struct Deadlines {
    pub query: Duration,
    pub write: Duration,
}

impl Default for Deadlines {
    fn default() -> Self {
        Deadlines {
            query: Duration::from_secs(30),
            write: Duration::from_secs(10),
        }
    }
}

/// How long one readiness check may take; the checks run together, so
/// `/readyz` answers within about this long whatever its peers do.
pub const HEALTH_DEADLINE: Duration = Duration::from_millis(500);

/// What a call is, for its deadline and for the message when it passes.
#[derive(Clone, Copy)]
enum Kind {
    Query,
    /// A write whose outcome is unknown if its deadline passes.
    Write,
}

/// [`polymeter_proto::call_within`], with the gateway's message when the
/// deadline passes.
async fn within<Q, T, F>(
    limit: Duration,
    kind: Kind,
    service: &'static str,
    request: Q,
    call: impl FnOnce(tonic::Request<Q>) -> F,
) -> Result<T, Error>
where
    F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
{
    match polymeter_proto::call_within(limit, request, call).await {
        Ok(answer) => Ok(answer),
        Err(CallError::Status(status)) => Err(status.into()),
        Err(CallError::Expired) => {
            crate::exposition::deadline_expired(service);
            let waited = format!("the {service} service did not answer within {limit:?}");
            let message = match kind {
                Kind::Query => format!("{waited}; retry later"),
                Kind::Write => {
                    format!("{waited}; the write may have been applied, and re-sending it is safe")
                }
            };
            Err(Error::new(ErrorKind::DeadlineExceeded, message))
        }
    }
}

/// The services behind `ingest`, `stats` and `feedback` channels.
pub fn services(
    ingest: Channel,
    stats: Channel,
    feedback: Channel,
    deadlines: Deadlines,
) -> Services {
    Services {
        stats: Arc::new(Stats(
            StatsServiceClient::new(stats.clone())
                .max_decoding_message_size(MESSAGE_LIMIT)
                .max_encoding_message_size(MESSAGE_LIMIT),
            deadlines,
        )),
        feedback: Arc::new(Feedback(
            FeedbackServiceClient::new(feedback.clone())
                .max_decoding_message_size(MESSAGE_LIMIT)
                .max_encoding_message_size(MESSAGE_LIMIT),
            deadlines,
        )),
        ingest: Arc::new(Ingest {
            ingest: IngestServiceClient::new(ingest.clone())
                .max_decoding_message_size(MESSAGE_LIMIT)
                .max_encoding_message_size(MESSAGE_LIMIT),
            traces: TraceServiceClient::new(ingest.clone())
                .max_decoding_message_size(MESSAGE_LIMIT)
                .max_encoding_message_size(MESSAGE_LIMIT),
            deadlines,
        }),
        projects: projects(stats.clone(), feedback.clone(), deadlines),
        health: Arc::new(Health(vec![
            ("ingest", ingest),
            ("stats", stats),
            ("feedback", feedback),
        ])),
    }
}

struct Stats(StatsServiceClient<Channel>, Deadlines);

#[tonic::async_trait]
impl StatsApi for Stats {
    async fn aggregate_calls(
        &self,
        request: pb::AggregateCallsRequest,
    ) -> Result<pb::AggregateCallsResponse, Error> {
        let mut client = self.0.clone();
        within(
            self.1.query,
            Kind::Query,
            "stats",
            request,
            |r| async move { client.aggregate_calls(r).await },
        )
        .await
    }

    async fn set_price_override(&self, request: pb::SetPriceOverrideRequest) -> Result<(), Error> {
        let mut client = self.0.clone();
        within(
            self.1.write,
            Kind::Write,
            "stats",
            request,
            |r| async move { client.set_price_override(r).await },
        )
        .await
        .map(|_| ())
    }

    async fn delete_price_override(
        &self,
        request: pb::DeletePriceOverrideRequest,
    ) -> Result<bool, Error> {
        let mut client = self.0.clone();
        within(
            self.1.write,
            Kind::Write,
            "stats",
            request,
            |r| async move { client.delete_price_override(r).await },
        )
        .await
        .map(|r| r.deleted)
    }

    async fn list_price_overrides(
        &self,
        request: pb::ListPriceOverridesRequest,
    ) -> Result<Vec<pb::PriceOverride>, Error> {
        let mut client = self.0.clone();
        within(
            self.1.query,
            Kind::Query,
            "stats",
            request,
            |r| async move { client.list_price_overrides(r).await },
        )
        .await
        .map(|r| r.prices)
    }

    async fn lookup_price(
        &self,
        request: pb::LookupPriceRequest,
    ) -> Result<pb::LookupPriceResponse, Error> {
        let mut client = self.0.clone();
        within(
            self.1.query,
            Kind::Query,
            "stats",
            request,
            |r| async move { client.lookup_price(r).await },
        )
        .await
    }
}

/// A project's data in the services that own it (for the gateway, and for
/// `polymeter retention`).
pub fn projects(stats: Channel, feedback: Channel, deadlines: Deadlines) -> Arc<dyn ProjectsApi> {
    Arc::new(Projects {
        owners: [
            ("stats", ProjectDataServiceClient::new(stats)),
            ("feedback", ProjectDataServiceClient::new(feedback)),
        ],
        deadlines,
    })
}

/// The services that own a project's data, asked in turn.
struct Projects {
    owners: [(&'static str, ProjectDataServiceClient<Channel>); 2],
    deadlines: Deadlines,
}

impl Projects {
    /// Sends `request` to every owner; the first failure is the answer (the
    /// operations are idempotent, so the caller re-sends the whole).
    async fn to_all<Q: Clone, T, F>(
        &self,
        request: Q,
        call: impl Fn(ProjectDataServiceClient<Channel>, tonic::Request<Q>) -> F,
    ) -> Result<(), Error>
    where
        F: std::future::Future<Output = Result<tonic::Response<T>, tonic::Status>>,
    {
        // Expiring or deleting may take a store a while: the query deadline.
        for (service, client) in &self.owners {
            let client = client.clone();
            within(
                self.deadlines.query,
                Kind::Write,
                service,
                request.clone(),
                |r| call(client, r),
            )
            .await?;
        }
        Ok(())
    }
}

#[tonic::async_trait]
impl ProjectsApi for Projects {
    async fn set_retention(&self, request: pb::SetRetentionRequest) -> Result<(), Error> {
        self.to_all(request, |mut c, r| async move { c.set_retention(r).await })
            .await
    }

    async fn get_retention(&self, request: pb::GetRetentionRequest) -> Result<Option<u64>, Error> {
        // Every owner holds the same period; the stats service answers.
        let (service, client) = &self.owners[0];
        let mut client = client.clone();
        within(
            self.deadlines.query,
            Kind::Query,
            service,
            request,
            |r| async move { client.get_retention(r).await },
        )
        .await
        .map(|r| r.retention_seconds)
    }

    async fn delete_project_data(
        &self,
        request: pb::DeleteProjectDataRequest,
    ) -> Result<(), Error> {
        self.to_all(
            request,
            |mut c, r| async move { c.delete_project_data(r).await },
        )
        .await
    }
}

struct Feedback(FeedbackServiceClient<Channel>, Deadlines);

#[tonic::async_trait]
impl FeedbackApi for Feedback {
    async fn aggregate_feedback(
        &self,
        request: pb::AggregateFeedbackRequest,
    ) -> Result<pb::AggregateFeedbackResponse, Error> {
        let mut client = self.0.clone();
        within(
            self.1.query,
            Kind::Query,
            "feedback",
            request,
            |r| async move { client.aggregate_feedback(r).await },
        )
        .await
    }
}

struct Ingest {
    ingest: IngestServiceClient<Channel>,
    /// Ingest's OTLP `TraceService`, which `/otel/v1/traces` forwards to.
    traces: TraceServiceClient<Channel>,
    deadlines: Deadlines,
}

#[tonic::async_trait]
impl IngestApi for Ingest {
    async fn ingest_weave_calls(
        &self,
        request: pb::IngestWeaveCallsRequest,
    ) -> Result<Vec<pb::CallRef>, Error> {
        let mut client = self.ingest.clone();
        within(
            self.deadlines.write,
            Kind::Write,
            "ingest",
            request,
            |r| async move { client.ingest_weave_calls(r).await },
        )
        .await
        .map(|r| r.results)
    }

    async fn ingest_weave_feedback(
        &self,
        request: pb::IngestWeaveFeedbackRequest,
    ) -> Result<Vec<pb::FeedbackWrite>, Error> {
        let mut client = self.ingest.clone();
        within(
            self.deadlines.write,
            Kind::Write,
            "ingest",
            request,
            |r| async move { client.ingest_weave_feedback(r).await },
        )
        .await
        .map(|r| r.created)
    }

    async fn export_traces(
        &self,
        request: ExportTraceServiceRequest,
        credentials: OtlpCredentials,
    ) -> Result<ExportTraceServiceResponse, Error> {
        let mut client = self.traces.clone();
        within(
            self.deadlines.write,
            Kind::Write,
            "ingest",
            request,
            |mut r| async move {
                for (name, value) in [
                    ("authorization", credentials.authorization),
                    ("project_id", credentials.project_id),
                ] {
                    if let Some(value) = value.and_then(|v| v.parse().ok()) {
                        r.metadata_mut().insert(name, value);
                    }
                }
                client.export(r).await
            },
        )
        .await
    }
}

struct Health(Vec<(&'static str, Channel)>);

#[tonic::async_trait]
impl HealthApi for Health {
    async fn readiness(&self) -> Vec<(&'static str, bool)> {
        // Every peer at once, each with its own deadline: a stalled peer is
        // "unavailable" after HEALTH_DEADLINE and delays nothing else.
        let mut checks = tokio::task::JoinSet::new();
        for (i, (name, channel)) in self.0.iter().enumerate() {
            let (name, channel) = (*name, channel.clone());
            checks.spawn(async move {
                let mut request = tonic::Request::new(HealthCheckRequest {
                    service: String::new(),
                });
                request.set_timeout(HEALTH_DEADLINE);
                let status = tokio::time::timeout(
                    HEALTH_DEADLINE,
                    HealthClient::new(channel).check(request),
                )
                .await;
                let serving =
                    matches!(&status, Ok(Ok(r)) if r.get_ref().status() == ServingStatus::Serving);
                (i, name, serving)
            });
        }
        let mut out: Vec<(usize, &'static str, bool)> = checks.join_all().await;
        out.sort_by_key(|(i, _, _)| *i);
        out.into_iter()
            .map(|(_, name, serving)| (name, serving))
            .collect()
    }
}
