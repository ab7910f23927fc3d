//! A host in a Rust program: start it, ask its epoch, stop it.

use ractor::{Actor, ActorRef};
use tokio::sync::mpsc;

use super::{HostAgent, HostArgs, HostMsg};

/// A slot host running in this process (the embedding API).
#[derive(Debug)]
pub struct HostHandle {
    agent: ActorRef<HostMsg>,
    ended: tokio::task::JoinHandle<()>,
    refusals: mpsc::UnboundedReceiver<String>,
}

impl HostHandle {
    /// Starts a host: it dials the scheduler, joins, and starts its slots once welcomed
    /// (and joins again, with backoff, whenever it loses the scheduler).
    pub async fn start(mut args: HostArgs) -> Result<HostHandle, String> {
        let (tx, refusals) = mpsc::unbounded_channel();
        args.refusals = Some(tx);
        let (agent, ended) = Actor::spawn(None, HostAgent, args)
            .await
            .map_err(|e| format!("the host could not start: {e}"))?;
        Ok(HostHandle {
            agent,
            ended,
            refusals,
        })
    }

    /// The epoch it joined with, if it is joined now.
    pub async fn epoch(&self) -> Option<u64> {
        ractor::call!(self.agent, HostMsg::Epoch).ok().flatten()
    }

    /// Waits until the host ends on its own: `Err` with the scheduler's refusal or the
    /// host's failure.
    pub async fn ended(&mut self) -> Result<(), String> {
        let ended = (&mut self.ended).await;
        if let Ok(reason) = self.refusals.try_recv() {
            return Err(format!("the scheduler refused this host: {reason}"));
        }
        match ended {
            Ok(()) => Err("the host stopped".into()),
            Err(e) => Err(format!("the host failed: {e}")),
        }
    }

    /// Stops every slot (their process groups are gone when this returns) and leaves.
    pub async fn shutdown(self) {
        let _ = ractor::call!(self.agent, HostMsg::Shutdown);
        let _ = self.ended.await;
    }
}

/// Runs a host until it is refused, fails, or `stop` resolves; every slot's processes are
/// gone when it returns. `Err` carries the scheduler's refusal (or why the host stopped).
pub async fn run_host(
    args: HostArgs,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), String> {
    let mut host = HostHandle::start(args).await?;
    tokio::select! {
        ended = host.ended() => return ended,
        () = stop => {}
    }
    host.shutdown().await;
    Ok(())
}
