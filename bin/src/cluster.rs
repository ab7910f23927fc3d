//! Slots on other machines (feature `cluster`): `--listen-hosts` on the server, and
//! `claude-pool-server host --join` for a slot host.

use crate::args::Args;

/// Whether these flags make a slot host.
#[cfg(feature = "cluster")]
pub fn joins(args: &Args) -> bool {
    args.join.is_some()
}

/// Whether these flags make a slot host (never, without the cluster feature).
#[cfg(not(feature = "cluster"))]
pub fn joins(_args: &Args) -> bool {
    false
}

/// `claude-pool-server cluster-certs DIR NODE[=ADDR,…]…`: the pool's private CA in DIR (made
/// once, kept after) and a certificate directory per node (DIR/NODE: ca.pem, node.pem,
/// node.key) for `--cluster-tls-dir`, naming the node, localhost, 127.0.0.1 and each ADDR.
pub fn certs(args: &[std::ffi::OsString]) -> std::process::ExitCode {
    let usage = "usage: claude-pool-server cluster-certs DIR NODE[=ADDR,...]...";
    let args: Vec<String> = args
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let Some((dir, specs)) = args.split_first().filter(|(_, s)| !s.is_empty()) else {
        eprintln!("{usage}");
        return std::process::ExitCode::from(2);
    };
    #[cfg(feature = "cluster")]
    {
        let nodes: Vec<(String, Vec<String>)> = specs
            .iter()
            .map(|spec| match spec.split_once('=') {
                Some((name, addrs)) => (
                    name.to_owned(),
                    addrs
                        .split(',')
                        .filter(|a| !a.is_empty())
                        .map(str::to_owned)
                        .collect(),
                ),
                None => (spec.clone(), Vec::new()),
            })
            .collect();
        match claude_pool::cluster::certs::make(std::path::Path::new(dir), &nodes) {
            Ok(made) => {
                for d in made {
                    println!("{}", d.display());
                }
                std::process::ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("claude-pool-server: {e}");
                std::process::ExitCode::FAILURE
            }
        }
    }
    #[cfg(not(feature = "cluster"))]
    {
        let _ = (dir, specs);
        eprintln!("claude-pool-server: cluster-certs needs a build with the cluster feature");
        std::process::ExitCode::from(2)
    }
}

#[cfg(feature = "cluster")]
pub use on::*;

#[cfg(feature = "cluster")]
mod on {
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;
    use std::time::Duration;

    use anyhow::{Context, bail};
    use claude_pool::PoolConfig;
    use claude_pool::cluster::host::{HostArgs, run_host as run};
    use claude_pool::cluster::{ClusterOptions, TlsFiles};

    use crate::args::Args;

    /// The cluster flags, taken before the rest go into the pool's configuration.
    #[derive(Debug, Clone)]
    pub struct ClusterArgs {
        pub listen_hosts: Option<std::net::SocketAddr>,
        pub join: Option<std::net::SocketAddr>,
        host_name: Option<String>,
        cookie_file: Option<PathBuf>,
        tls_dir: Option<PathBuf>,
        heartbeat: Duration,
        deadline: Duration,
        slots: usize,
        version: Option<String>,
    }

    impl ClusterArgs {
        pub fn of(args: &Args) -> Self {
            ClusterArgs {
                listen_hosts: args.listen_hosts,
                join: args.join,
                host_name: args.host_name.clone(),
                cookie_file: args.cluster_cookie_file.clone(),
                tls_dir: args.cluster_tls_dir.clone(),
                heartbeat: args.host_heartbeat,
                deadline: args.host_deadline,
                slots: usize::from(args.slots),
                version: args.cluster_version.clone(),
            }
        }
    }

    /// The link options, when hosts are taken or joined; the cookie file must be private.
    pub fn options(args: &ClusterArgs) -> anyhow::Result<Option<ClusterOptions>> {
        if args.listen_hosts.is_none() && args.join.is_none() {
            return Ok(None);
        }
        if args.listen_hosts.is_some() && args.join.is_some() {
            bail!(
                "--listen-hosts and --join exclude each other: a process is a scheduler or a host"
            );
        }
        let Some(file) = &args.cookie_file else {
            bail!("--listen-hosts and --join need --cluster-cookie-file");
        };
        let meta = std::fs::metadata(file)
            .with_context(|| format!("cannot read --cluster-cookie-file {}", file.display()))?;
        if meta.permissions().mode() & 0o077 != 0 {
            bail!(
                "--cluster-cookie-file {} is readable by others: make it private (chmod 600)",
                file.display()
            );
        }
        let cookie = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read --cluster-cookie-file {}", file.display()))?;
        let mut options = ClusterOptions::new(cookie.trim());
        options.heartbeat = args.heartbeat;
        options.deadline = args.deadline;
        options.tls = args.tls_dir.as_ref().map(TlsFiles::in_dir);
        let addr = args
            .listen_hosts
            .or(args.join)
            .unwrap_or_else(|| ([127, 0, 0, 1], 0).into());
        options.check(&addr).map_err(anyhow::Error::msg)?;
        Ok(Some(options))
    }

    /// Runs this process as a slot host until SIGTERM or SIGINT.
    pub async fn run_host(
        args: &ClusterArgs,
        options: ClusterOptions,
        config: PoolConfig,
    ) -> anyhow::Result<()> {
        let Some(join) = args.join else {
            bail!("a host needs --join");
        };
        let name = match &args.host_name {
            Some(n) => n.clone(),
            None => std::fs::read_to_string("/etc/hostname")
                .map(|h| h.trim().to_owned())
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "host".into()),
        };
        tracing::info!(host = %name, scheduler = %join, slots = args.slots, "starting a slot host");
        let host = HostArgs {
            name,
            join,
            slots: args.slots,
            options,
            config: std::sync::Arc::new(config),
            refusals: None,
            version: args
                .version
                .clone()
                .unwrap_or_else(|| claude_pool::cluster::frame::VERSION.to_owned()),
        };
        let stop = async {
            use tokio::signal::unix::{SignalKind, signal};
            let (Ok(mut term), Ok(mut int)) = (
                signal(SignalKind::terminate()),
                signal(SignalKind::interrupt()),
            ) else {
                return std::future::pending().await;
            };
            tokio::select! {
                _ = term.recv() => {},
                _ = int.recv() => {},
            }
        };
        run(host, stop).await.map_err(anyhow::Error::msg)?;
        tracing::info!("every slot stopped; bye");
        Ok(())
    }
}
