//! `dyno.v1.Usage`: billing collects the ledger's records ([`crate::meter`])
//! and acknowledges them.

use dyno_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::convert::usage_pb;
use crate::error::Error;

/// Most records one Collect returns.
const COLLECT_MAX: u32 = 10_000;

/// `dyno.v1.Usage`: billing collects the ledger's records ([`crate::meter`]).
pub struct UsageService {
    pub meter: crate::meter::Meter,
}

#[tonic::async_trait]
impl pb::usage_server::Usage for UsageService {
    async fn collect(
        &self,
        r: Request<pb::CollectRequest>,
    ) -> std::result::Result<Response<pb::CollectResponse>, Status> {
        let r = r.into_inner();
        let limit = match r.limit {
            0 => 1000,
            n if n > COLLECT_MAX => {
                return Err(Error::invalid("limit", format!("{n} is over the maximum of {COLLECT_MAX}")).into());
            }
            n => n,
        };
        let (records, more) = self.meter.collect(r.after_seq, limit, r.include_collected).await?;
        Ok(Response::new(pb::CollectResponse {
            records: records.into_iter().map(usage_pb).collect(),
            more,
        }))
    }

    async fn ack(&self, r: Request<pb::AckRequest>) -> std::result::Result<Response<pb::AckResponse>, Status> {
        let seq = r.into_inner().seq;
        let acked = self.meter.ack(seq).await?;
        tracing::info!(seq, acked, "usage acknowledged");
        Ok(Response::new(pb::AckResponse {}))
    }
}
