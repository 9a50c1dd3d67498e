//! `lanes.v1.Cni`: one RPC per verb, each a thin call into [`Workloads`].

use std::sync::Arc;

use tonic::{Request, Response, Status};

use crate::cni::Command;
use crate::workload::Workloads;
use lanes_proto::v1::{self as pb, cni_server::Cni};

pub struct CniService {
    pub workloads: Arc<Workloads>,
}

impl CniService {
    async fn call(&self, verb: Command, req: Request<pb::CniRequest>) -> Result<Response<pb::CniResponse>, Status> {
        let req = req.into_inner();
        let env = req.env.into_iter().collect();
        // On a task of its own: when the caller goes away (a runtime's timeout kills the
        // shim), tonic drops this future, but the call still finishes or rolls back.
        let workloads = self.workloads.clone();
        let reply = tokio::spawn(async move { workloads.handle(verb, &env, &req.stdin).await })
            .await
            .map_err(|e| Status::internal(format!("CNI {} task: {e}", verb.as_str())))?;
        Ok(Response::new(pb::CniResponse {
            output: reply.output,
            error: reply.error.map(|e| pb::CniError {
                code: e.code,
                msg: e.msg,
                details: e.details,
            }),
        }))
    }
}

#[tonic::async_trait]
impl Cni for CniService {
    async fn add(&self, req: Request<pb::CniRequest>) -> Result<Response<pb::CniResponse>, Status> {
        self.call(Command::Add, req).await
    }
    async fn del(&self, req: Request<pb::CniRequest>) -> Result<Response<pb::CniResponse>, Status> {
        self.call(Command::Del, req).await
    }
    async fn check(&self, req: Request<pb::CniRequest>) -> Result<Response<pb::CniResponse>, Status> {
        self.call(Command::Check, req).await
    }
    async fn status(&self, req: Request<pb::CniRequest>) -> Result<Response<pb::CniResponse>, Status> {
        self.call(Command::Status, req).await
    }
    async fn gc(&self, req: Request<pb::CniRequest>) -> Result<Response<pb::CniResponse>, Status> {
        self.call(Command::Gc, req).await
    }
}
