//! The MCP front-end actor: serves a [`PoolServer`] over a transport.
//!
//! **Place in the tree.** Attached under the root supervisor. Never restarted: its
//! transport (the server's stdin and stdout) cannot be reopened. It stops when the
//! transport closes (stdin EOF) or when asked to; the binary then shuts the pool down.
//!
//! It owns no pool state: every tool call becomes messages to the pool's actors, and rmcp
//! runs each request in its own task, so a long `pool_run` never blocks a `pool_status`.

use ractor::{Actor, ActorProcessingErr, ActorRef};
use rmcp::ServiceExt;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub mod stdio;

use crate::mcp::PoolServer;
use crate::pool::Pool;

/// Behaviour of the front-end.
#[derive(Debug, Clone, Copy, Default)]
pub struct FrontendActor;

/// Which transport to serve.
#[derive(Debug)]
pub enum FrontendTransport {
    /// The process's stdin and stdout (nothing else may write to stdout).
    Stdio,
    /// An in-memory stream, for tests and embedding.
    Duplex(tokio::io::DuplexStream),
    /// Streamable HTTP at `/mcp` (and `/health`) on a bound listener, many clients at once.
    Http(crate::http::HttpOptions),
}

/// What the front-end starts with.
#[derive(Debug)]
pub struct FrontendArgs {
    /// The pool to serve.
    pub pool: Pool,
    /// Where to serve it.
    pub transport: FrontendTransport,
}

/// Messages of the front-end.
#[derive(Debug)]
pub enum FrontendMsg {
    /// The transport closed; carries the reason.
    TransportClosed(String),
}

/// The front-end's state: the serving task and its stop signal.
#[derive(Debug)]
pub struct FrontendState {
    stop: Option<oneshot::Sender<()>>,
    serving: Option<JoinHandle<()>>,
}

impl FrontendActor {
    /// Starts serving `pool` over `transport`, attached under the pool's root supervisor.
    pub async fn start(
        pool: Pool,
        transport: FrontendTransport,
    ) -> Result<(ActorRef<FrontendMsg>, JoinHandle<()>), ractor::SpawnErr> {
        let root = pool.root_cell();
        Actor::spawn_linked(None, FrontendActor, FrontendArgs { pool, transport }, root).await
    }
}

impl Actor for FrontendActor {
    type Msg = FrontendMsg;
    type State = FrontendState;
    type Arguments = FrontendArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<FrontendMsg>,
        args: FrontendArgs,
    ) -> Result<FrontendState, ActorProcessingErr> {
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let pool = args.pool;
        let serving = tokio::spawn(async move {
            let served = match args.transport {
                FrontendTransport::Stdio => {
                    let eof = tokio_util::sync::CancellationToken::new();
                    let server = PoolServer::new(pool).closing_with(eof.clone());
                    let (reader, writer) = rmcp::transport::stdio_pipes();
                    let (checked_in, checked_out) = stdio::checked(reader, writer, eof);
                    // rmcp's own limit (16 MiB) would drop a longer line without an answer
                    // that the check in front of it let through: the two limits are one.
                    let transport = rmcp::transport::async_rw::AsyncRwTransport::new_server(
                        checked_in,
                        checked_out,
                    )
                    .with_max_line_length(stdio::MAX_LINE + 1);
                    serve(server, transport, stop_rx).await
                }
                FrontendTransport::Duplex(stream) => {
                    serve(PoolServer::new(pool), stream, stop_rx).await
                }
                FrontendTransport::Http(options) => {
                    let token = tokio_util::sync::CancellationToken::new();
                    let stop_http = token.clone();
                    tokio::spawn(async move {
                        let _ = stop_rx.await;
                        stop_http.cancel();
                    });
                    crate::http::serve(pool, options, token).await
                }
            };
            let _ = myself.cast(FrontendMsg::TransportClosed(served));
        });
        Ok(FrontendState {
            stop: Some(stop_tx),
            serving: Some(serving),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<FrontendMsg>,
        msg: FrontendMsg,
        _state: &mut FrontendState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            FrontendMsg::TransportClosed(reason) => {
                tracing::info!(%reason, "MCP transport closed");
                myself.stop(Some(reason));
            }
        }
        Ok(())
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<FrontendMsg>,
        state: &mut FrontendState,
    ) -> Result<(), ActorProcessingErr> {
        if let Some(stop) = state.stop.take() {
            let _ = stop.send(());
        }
        if let Some(serving) = state.serving.take() {
            let _ = serving.await;
        }
        Ok(())
    }
}

async fn serve<T, E, A>(server: PoolServer, transport: T, mut stop: oneshot::Receiver<()>) -> String
where
    T: rmcp::transport::IntoTransport<rmcp::RoleServer, E, A> + Send + 'static,
    E: std::error::Error + Send + Sync + 'static,
{
    let running = tokio::select! {
        r = server.serve(transport) => r,
        _ = &mut stop => return "stopped before the client initialized".into(),
    };
    let running = match running {
        Ok(r) => r,
        Err(e) => return format!("MCP initialization failed: {e}"),
    };
    let ct = running.cancellation_token();
    let mut waiting = std::pin::pin!(running.waiting());
    tokio::select! {
        r = &mut waiting => match r {
            Ok(reason) => format!("{reason:?}"),
            Err(e) => format!("the MCP service ended: {e}"),
        },
        _ = stop => {
            ct.cancel();
            let _ = waiting.await;
            "stopped".into()
        }
    }
}
