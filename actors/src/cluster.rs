//! Slots on other machines (crate feature `cluster`), on ractor's cluster layer.
//!
//! A **scheduler** (a pool built with [`crate::PoolBuilder::listen_for_hosts`], or
//! `claude-pool-server --listen-hosts`) runs a node server and a [`hosts`] actor. A **host**
//! (`claude-pool-server host --join`, or [`host::run_host`]) runs its own slot supervisor,
//! with local restarts exactly as in a one-machine pool, and offers its slots to the
//! scheduler. Between the two only [`frame::Frame`]s travel, through one remote-capable
//! [`Port`] actor on each side: the slot protocol of [`crate::wire`] as JSON.
//!
//! **Failure is decided here, not by the transport.** The scheduler pings every host each
//! heartbeat; a host it has not heard from within the deadline is lost: its running tasks end
//! `interrupted`, tasks not yet started go back to the queue, its slots read `lost`, and its
//! node session is closed. The host does the same the other way: a scheduler unheard for the
//! deadline (or a closed session) stops every local slot and its processes, then it joins
//! again, as a fresh host with a new epoch. A frame of an old epoch is never accepted.
//!
//! **Security.** The cookie authenticates both ends (ractor's challenge, never sent);
//! plaintext is refused unless the address is loopback; other addresses need TLS with client
//! certificates from the pool's own CA ([`TlsFiles`]).

pub mod certs;
pub mod frame;
pub mod host;
pub mod hosts;

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef};
use ractor_cluster::RactorClusterMessage;
use tokio::sync::mpsc;

/// The process group the port of the scheduler that takes hosts at `port` joins (by port:
/// one process may hold several pools, each at its own).
pub fn scheduler_group(port: u16) -> String {
    format!("claude-pool.scheduler.{port}")
}

/// The process group of a host's port.
pub fn host_group(host: &str) -> String {
    format!("claude-pool.host.{host}")
}

/// How the two ends of a link find and trust each other.
#[derive(Clone)]
pub struct ClusterOptions {
    /// The shared secret (ractor's cookie).
    pub cookie: String,
    /// How often each side pings.
    pub heartbeat: Duration,
    /// How long without a frame before the other side is given up.
    pub deadline: Duration,
    /// TLS with client certificates; required for an address that is not loopback.
    pub tls: Option<TlsFiles>,
}

impl std::fmt::Debug for ClusterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterOptions")
            .field("heartbeat", &self.heartbeat)
            .field("deadline", &self.deadline)
            .field("tls", &self.tls)
            .finish_non_exhaustive()
    }
}

impl ClusterOptions {
    /// Options with this cookie, a 1 s heartbeat and a 5 s deadline, no TLS.
    pub fn new(cookie: impl Into<String>) -> Self {
        ClusterOptions {
            cookie: cookie.into(),
            heartbeat: Duration::from_secs(1),
            deadline: Duration::from_secs(5),
            tls: None,
        }
    }

    /// Refuses what these options cannot guard: an empty cookie, a deadline not above the
    /// heartbeat, plaintext to an address that is not loopback.
    pub fn check(&self, addr: &SocketAddr) -> Result<(), String> {
        if self.cookie.trim().is_empty() {
            return Err("the cluster cookie is empty".into());
        }
        if self.deadline <= self.heartbeat {
            return Err(format!(
                "the host deadline ({}) must be longer than the heartbeat ({})",
                humantime::format_duration(self.deadline),
                humantime::format_duration(self.heartbeat)
            ));
        }
        if self.tls.is_none() && !addr.ip().is_loopback() {
            return Err(format!(
                "{addr} is not a loopback address: links between machines need TLS \
                 (--cluster-tls-dir with ca.pem, node.pem and node.key)"
            ));
        }
        Ok(())
    }
}

/// Certificates for mutual TLS, as PEM files: the pool's CA, and this node's certificate and
/// key (signed by that CA, valid for client and server use).
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The CA every node's certificate must chain to.
    pub ca: PathBuf,
    /// This node's certificate chain.
    pub cert: PathBuf,
    /// This node's private key.
    pub key: PathBuf,
}

impl TlsFiles {
    /// `ca.pem`, `node.pem` and `node.key` in `dir`.
    pub fn in_dir(dir: impl Into<PathBuf>) -> Self {
        let dir = dir.into();
        TlsFiles {
            ca: dir.join("ca.pem"),
            cert: dir.join("node.pem"),
            key: dir.join("node.key"),
        }
    }
}

/// The one remote-capable message: a frame's JSON (or a piece of it).
#[derive(RactorClusterMessage)]
pub enum PortMsg {
    /// A frame.
    Frame(String),
}

impl std::fmt::Debug for PortMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let PortMsg::Frame(text) = self;
        write!(f, "Frame({} bytes)", text.len())
    }
}

/// The actor the other side sends frames to; it hands them to its owner's channel.
#[derive(Debug, Clone, Copy, Default)]
pub struct Port;

impl Actor for Port {
    type Msg = PortMsg;
    type State = mpsc::UnboundedSender<String>;
    type Arguments = mpsc::UnboundedSender<String>;

    async fn pre_start(
        &self,
        _myself: ActorRef<PortMsg>,
        to: mpsc::UnboundedSender<String>,
    ) -> Result<Self::State, ActorProcessingErr> {
        Ok(to)
    }

    async fn handle(
        &self,
        myself: ActorRef<PortMsg>,
        msg: PortMsg,
        to: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        let PortMsg::Frame(text) = msg;
        if to.send(text).is_err() {
            myself.stop(None);
        }
        Ok(())
    }
}

/// Sends `frame` to `port` (in pieces when long); `false` when the link is gone.
pub fn send(port: &ActorRef<PortMsg>, frame: &frame::Frame, id: u64) -> bool {
    frame
        .encode(id)
        .into_iter()
        .all(|piece| port.cast(PortMsg::Frame(piece)).is_ok())
}

/// The crypto provider rustls uses here (several may be compiled in).
fn provider() -> Arc<tokio_rustls::rustls::crypto::CryptoProvider> {
    Arc::new(tokio_rustls::rustls::crypto::aws_lc_rs::default_provider())
}

fn read_tls(
    files: &TlsFiles,
) -> Result<
    (
        Arc<tokio_rustls::rustls::RootCertStore>,
        Vec<tokio_rustls::rustls::pki_types::CertificateDer<'static>>,
        tokio_rustls::rustls::pki_types::PrivateKeyDer<'static>,
    ),
    String,
> {
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let certs = |p: &PathBuf| -> Result<Vec<CertificateDer<'static>>, String> {
        CertificateDer::pem_file_iter(p)
            .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("cannot read certificates from {}: {e}", p.display()))
    };
    let mut roots = tokio_rustls::rustls::RootCertStore::empty();
    for c in certs(&files.ca)? {
        roots
            .add(c)
            .map_err(|e| format!("{}: not a CA certificate: {e}", files.ca.display()))?;
    }
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("cannot read the key {}: {e}", files.key.display()))?;
    Ok((Arc::new(roots), certs(&files.cert)?, key))
}

/// The TLS acceptor of a node server: client certificates from the CA are required.
fn tls_acceptor(files: &TlsFiles) -> Result<tokio_rustls::TlsAcceptor, String> {
    use tokio_rustls::rustls::ServerConfig;
    use tokio_rustls::rustls::server::WebPkiClientVerifier;
    let (roots, chain, key) = read_tls(files)?;
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| format!("TLS client verification: {e}"))?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| format!("TLS certificate {}: {e}", files.cert.display()))?;
    Ok(tokio_rustls::TlsAcceptor::from(Arc::new(config)))
}

/// The TLS connector of a joining host: it shows its certificate and checks the scheduler's.
fn tls_connector(files: &TlsFiles) -> Result<tokio_rustls::TlsConnector, String> {
    use tokio_rustls::rustls::ClientConfig;
    let (roots, chain, key) = read_tls(files)?;
    let config = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .map_err(|e| format!("TLS certificate {}: {e}", files.cert.display()))?;
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// TLS handshakes in progress at once, at most; more connections wait to be accepted.
const MAX_HANDSHAKES: usize = 32;

/// A node server named `name`, and with TLS the task that accepts its connections.
pub(crate) struct Node {
    pub(crate) server: ActorRef<ractor_cluster::NodeServerMessage>,
    accepting: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Node {
    fn drop(&mut self) {
        if let Some(task) = &self.accepting {
            task.abort();
        }
        self.server.stop(None);
    }
}

/// Starts a node server named `name` on `port` of `ip` (0: only dialling out).
///
/// With TLS, connections are accepted here, each handshake within `options.deadline` and
/// at most [`MAX_HANDSHAKES`] at once, before the node server sees them: its own listener
/// waits for each handshake in turn, so one silent connection would hold every other. The
/// node server itself then listens only on an unused loopback port.
async fn start_node(
    name: &str,
    ip: IpAddr,
    port: u16,
    options: &ClusterOptions,
) -> Result<Node, String> {
    let acceptor = match &options.tls {
        Some(files) => Some(tls_acceptor(files)?),
        None => None,
    };
    let (listen_ip, listen_port) = match acceptor {
        Some(_) => (IpAddr::from([127u8, 0, 0, 1]), 0),
        None => (ip, port),
    };
    let server = ractor_cluster::NodeServer::new(
        listen_port,
        options.cookie.clone(),
        name.to_owned(),
        listen_ip.to_string(),
        None,
        Some(ractor_cluster::node::NodeConnectionMode::Isolated),
    )
    .with_listen_addr(listen_ip);
    let (server, _) = Actor::spawn(None, server, ())
        .await
        .map_err(|e| format!("cannot listen on {listen_ip}:{listen_port}: {e}"))?;
    let accepting = match acceptor {
        Some(acceptor) if port != 0 => {
            let listener = match tokio::net::TcpListener::bind((ip, port)).await {
                Ok(l) => l,
                Err(e) => {
                    server.stop(None);
                    return Err(format!("cannot listen on {ip}:{port}: {e}"));
                }
            };
            Some(tokio::spawn(accept_tls(
                listener,
                acceptor,
                server.clone(),
                options.deadline,
            )))
        }
        _ => None,
    };
    Ok(Node { server, accepting })
}

/// Accepts TLS connections for `node`: each handshake within `limit`, a few at once.
async fn accept_tls(
    listener: tokio::net::TcpListener,
    acceptor: tokio_rustls::TlsAcceptor,
    node: ActorRef<ractor_cluster::NodeServerMessage>,
    limit: Duration,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else {
            return;
        };
        let (tcp, peer_addr) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "cannot accept a host's connection");
                continue;
            }
        };
        let Ok(local_addr) = tcp.local_addr() else {
            continue;
        };
        let acceptor = acceptor.clone();
        let node = node.clone();
        tokio::spawn(async move {
            let _permit = permit;
            match tokio::time::timeout(limit, acceptor.accept(tcp)).await {
                Ok(Ok(stream)) => {
                    let stream = ractor_cluster::NetworkStream::TlsServer {
                        peer_addr,
                        local_addr,
                        stream,
                    };
                    let _ = node.cast(ractor_cluster::NodeServerMessage::ConnectionOpened {
                        stream: Box::new(stream),
                        is_server: true,
                    });
                }
                Ok(Err(e)) => {
                    tracing::warn!(peer = %peer_addr, error = %e, "refused a connection: TLS")
                }
                Err(_) => {
                    tracing::warn!(peer = %peer_addr, "refused a connection: no TLS handshake in time")
                }
            }
        });
    }
}

/// Session changes of a node server, as messages to its owner.
struct Sessions<F: Fn(SessionChange) + Send + Sync + 'static>(F);

/// What happened to a node session.
#[derive(Debug, Clone)]
pub enum SessionChange {
    /// Both ends authenticated and synchronised: the peer's ports are visible.
    Ready {
        /// The peer's node name (`<name>@<address>`).
        peer: String,
        /// The session's id on this node.
        node_id: u64,
    },
    /// The session ended (or failed to authenticate).
    Down {
        /// The peer's node name, when it got that far.
        peer: Option<String>,
        /// The session's id on this node.
        node_id: u64,
    },
}

impl<F: Fn(SessionChange) + Send + Sync + 'static> ractor_cluster::NodeEventSubscription
    for Sessions<F>
{
    fn node_session_opened(&self, _: ractor_cluster::node::NodeServerSessionInformation) {}

    fn node_session_disconnected(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        (self.0)(SessionChange::Down {
            peer: ses.peer_name.map(|n| n.name),
            node_id: ses.node_id,
        });
    }

    fn node_session_authenticated(&self, _: ractor_cluster::node::NodeServerSessionInformation) {}

    fn node_session_ready(&self, ses: ractor_cluster::node::NodeServerSessionInformation) {
        (self.0)(SessionChange::Ready {
            peer: ses.peer_name.map(|n| n.name).unwrap_or_default(),
            node_id: ses.node_id,
        });
    }
}

/// Opens `owner`'s port in `group` (linked to `owner`) and routes to it what reaches this
/// node: each frame as `frame(text)`, each session change of `node` as `session(change)`.
async fn open_port<M: ractor::Message>(
    owner: &ActorRef<M>,
    node: &Node,
    group: String,
    frame: fn(String) -> M,
    session: fn(SessionChange) -> M,
) -> Result<ActorRef<PortMsg>, ActorProcessingErr> {
    let (tx, mut rx) = mpsc::unbounded_channel::<String>();
    let (port, _) = Actor::spawn_linked(None, Port, tx, owner.get_cell()).await?;
    ractor::pg::join(group, vec![port.get_cell()]);
    let me = owner.clone();
    tokio::spawn(async move {
        while let Some(text) = rx.recv().await {
            if me.cast(frame(text)).is_err() {
                break;
            }
        }
    });
    let me = owner.clone();
    subscribe(&node.server, move |change| {
        let _ = me.cast(session(change));
    });
    Ok(port)
}

/// Tells `f` of every session change of `node`.
fn subscribe(
    node: &ActorRef<ractor_cluster::NodeServerMessage>,
    f: impl Fn(SessionChange) + Send + Sync + 'static,
) {
    let _ = node.cast(ractor_cluster::NodeServerMessage::SubscribeToEvents {
        id: "claude-pool".into(),
        subscription: Box::new(Sessions(f)),
    });
}

/// Closes every session of `node` whose peer is named `peer` (fencing a lost host).
async fn close_sessions(node: &ActorRef<ractor_cluster::NodeServerMessage>, peer_prefix: &str) {
    let Ok(sessions) = ractor::call_t!(node, ractor_cluster::NodeServerMessage::GetSessions, 2_000)
    else {
        return;
    };
    for ses in sessions.into_values() {
        if ses
            .peer_name
            .as_ref()
            .is_some_and(|n| n.name.starts_with(peer_prefix))
        {
            ses.actor.stop(Some("fenced".into()));
        }
    }
}

/// The remote port in `group`, if the peer is connected.
fn remote_port(group: &str) -> Option<ActorRef<PortMsg>> {
    ractor::pg::get_members(&group.to_owned())
        .into_iter()
        .find(|c| !c.get_id().is_local())
        .map(ActorRef::from)
}
