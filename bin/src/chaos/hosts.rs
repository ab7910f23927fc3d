//! Slot hosts for the chaos harness (feature `cluster`): `--hosts N` more processes, each a
//! `claude-pool-server host` joined to the server under test, and the faults that hit a
//! whole host: SIGKILL (then a new host of the same name), SIGSTOP past the host deadline
//! (then SIGCONT), and — as root, with iproute2 — a cut link: each host then runs in a
//! network namespace of its own, over TLS, and its veth goes down past the deadline.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use claude_pool::protocol::SlotId;
use tokio::process::{Child, Command};

use crate::procs::running;

/// How often scheduler and hosts ping each other in a chaos run.
const HEARTBEAT: &str = "200ms";
/// How long a silent host (or scheduler) is waited for.
pub const DEADLINE: Duration = Duration::from_millis(1500);
/// How long a stop or a cut lasts: three deadlines, so a loaded scheduler still sees it.
const HELD: Duration = Duration::from_millis(4500);

/// A host's network namespace, joined to this one by a veth pair.
struct Netns {
    name: String,
    outside: String,
    here: String,
}

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .context("ip")?;
    if !out.status.success() {
        bail!("ip {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

impl Netns {
    fn new(run: u32, i: usize) -> anyhow::Result<Netns> {
        let net = (run as usize * 7 + i) % 250 + 1;
        let ns = Netns {
            name: format!("cpchaos-{run}-{i}"),
            outside: format!("cpc{}x{i}", run % 100_000),
            here: format!("10.232.{net}.1"),
        };
        let inside = format!("cpd{}x{i}", run % 100_000);
        let (here, there) = (format!("{}/30", ns.here), format!("10.232.{net}.2/30"));
        let _ = ip(&["netns", "del", &ns.name]);
        ip(&["netns", "add", &ns.name])?;
        ip(&[
            "link",
            "add",
            &ns.outside,
            "type",
            "veth",
            "peer",
            "name",
            &inside,
        ])?;
        ip(&["link", "set", &inside, "netns", &ns.name])?;
        ip(&["addr", "add", &here, "dev", &ns.outside])?;
        ip(&["link", "set", &ns.outside, "up"])?;
        ip(&["-n", &ns.name, "addr", "add", &there, "dev", &inside])?;
        ip(&["-n", &ns.name, "link", "set", &inside, "up"])?;
        ip(&["-n", &ns.name, "link", "set", "lo", "up"])?;
        Ok(ns)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.name]);
        let _ = ip(&["link", "del", &self.outside]);
    }
}

/// Whether this process may make network namespaces (root, with iproute2).
fn can_make_netns() -> bool {
    let root = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false);
    root && std::process::Command::new("ip").arg("-V").output().is_ok()
}

/// The hosts of a run.
pub struct Hosts {
    bin: PathBuf,
    claude_bin: PathBuf,
    env: Vec<(OsString, OsString)>,
    scratch: PathBuf,
    port: u16,
    cookie: PathBuf,
    certs: Option<PathBuf>,
    netns: Vec<Netns>,
    /// Slots each host offers.
    pub slots: usize,
    children: Mutex<Vec<Option<Child>>>,
}

impl Hosts {
    /// Plans `n` hosts of `slots` slots (namespaces and certificates made now, when root).
    pub fn new(
        n: usize,
        slots: usize,
        bin: PathBuf,
        claude_bin: PathBuf,
        env: Vec<(OsString, OsString)>,
        scratch: &Path,
    ) -> anyhow::Result<Hosts> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let cookie = scratch.join("cluster-cookie");
        {
            use std::io::Write;
            use std::os::unix::fs::OpenOptionsExt;
            let mut f = std::fs::OpenOptions::new()
                .create(true)
                .truncate(true)
                .write(true)
                .mode(0o600)
                .open(&cookie)?;
            write!(f, "chaos-{}-{port}", std::process::id())?;
        }
        let mut netns = Vec::new();
        let mut certs = None;
        if can_make_netns() {
            for i in 0..n {
                netns.push(Netns::new(std::process::id(), i)?);
            }
            let dir = scratch.join("certs");
            let addrs: Vec<&str> = netns.iter().map(|ns| ns.here.as_str()).collect();
            let mut args = vec![format!("scheduler={}", addrs.join(","))];
            args.extend((0..n).map(Self::name));
            let out = std::process::Command::new(&bin)
                .arg("cluster-certs")
                .arg(&dir)
                .args(&args)
                .output()?;
            if !out.status.success() {
                bail!("cluster-certs: {}", String::from_utf8_lossy(&out.stderr));
            }
            certs = Some(dir);
        } else {
            eprintln!(
                "claude-pool-chaos: hosts on loopback (no network namespaces without root and iproute2: no host-cut)"
            );
        }
        Ok(Hosts {
            bin,
            claude_bin,
            env,
            scratch: scratch.to_path_buf(),
            port,
            cookie,
            certs,
            netns,
            slots,
            children: Mutex::new((0..n).map(|_| None).collect()),
        })
    }

    /// Host `i`'s name.
    pub fn name(i: usize) -> String {
        format!("h{i}")
    }

    /// How many hosts.
    pub fn len(&self) -> usize {
        self.children.lock().map(|c| c.len()).unwrap_or(0)
    }

    /// Whether links can be cut (the hosts run in namespaces).
    pub fn can_cut(&self) -> bool {
        !self.netns.is_empty()
    }

    /// The host a slot belongs to.
    pub fn index_of(slot: &SlotId) -> Option<usize> {
        slot.0.split_once('/')?.0.strip_prefix('h')?.parse().ok()
    }

    /// The server's flags that take these hosts.
    pub fn server_args(&self) -> Vec<OsString> {
        let listen = if self.netns.is_empty() {
            format!("127.0.0.1:{}", self.port)
        } else {
            format!("0.0.0.0:{}", self.port)
        };
        let mut args: Vec<OsString> = vec![
            "--listen-hosts".into(),
            listen.into(),
            "--cluster-cookie-file".into(),
            self.cookie.clone().into(),
            "--host-heartbeat".into(),
            HEARTBEAT.into(),
            "--host-deadline".into(),
            humantime::format_duration(DEADLINE).to_string().into(),
        ];
        if let Some(dir) = &self.certs {
            args.extend(["--cluster-tls-dir".into(), dir.join("scheduler").into()]);
        }
        args
    }

    /// Starts host `i` (again, after a kill).
    pub fn start(&self, i: usize) -> anyhow::Result<()> {
        let name = Self::name(i);
        let join = match self.netns.get(i) {
            Some(ns) => format!("{}:{}", ns.here, self.port),
            None => format!("127.0.0.1:{}", self.port),
        };
        let mut cmd = match self.netns.get(i) {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", &ns.name]).arg(&self.bin);
                c
            }
            None => Command::new(&self.bin),
        };
        cmd.args(["host", "--join", &join, "--host-name", &name])
            .args(["--slots", &self.slots.to_string()])
            .arg("--claude-bin")
            .arg(&self.claude_bin)
            .arg("--cluster-cookie-file")
            .arg(&self.cookie)
            .args(["--host-heartbeat", HEARTBEAT, "--host-deadline"])
            .arg(humantime::format_duration(DEADLINE).to_string())
            .args(["--no-db", "--log-level", "info"]);
        if let Some(dir) = &self.certs {
            cmd.arg("--cluster-tls-dir").arg(dir.join(&name));
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.scratch.join(format!("{name}.log")))?;
        let child = cmd
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("cannot start host {name}"))?;
        if let Ok(mut c) = self.children.lock() {
            c[i] = Some(child);
        }
        Ok(())
    }

    fn pid(&self, i: usize) -> Option<u32> {
        self.children.lock().ok()?.get(i)?.as_ref()?.id()
    }

    fn signal(&self, i: usize, sig: i32) {
        if let Some(pid) = self.pid(i) {
            let _ = claude_pool::process::signal_process(pid, sig);
        }
    }

    /// SIGKILL of host `i`; once every slot process it had is gone, a new host of the same
    /// name.
    pub async fn kill(&self, i: usize, log: &Path) {
        self.signal(i, libc::SIGKILL);
        let prefix = format!("{}/", Self::name(i));
        let theirs: Vec<u32> = crate::procs::events(log)
            .iter()
            .filter(|e| e["event"] == "start")
            .filter(|e| e["slot"].as_str().is_some_and(|s| s.starts_with(&prefix)))
            .filter_map(|e| e["pid"].as_u64().and_then(|p| u32::try_from(p).ok()))
            .collect();
        let until = Instant::now() + Duration::from_secs(10);
        while theirs.iter().any(|p| running(*p)) && Instant::now() < until {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if let Ok(mut c) = self.children.lock()
            && let Some(mut old) = c[i].take()
        {
            let _ = old.start_kill();
            let _ = old.try_wait();
        }
        if let Err(e) = self.start(i) {
            eprintln!("claude-pool-chaos: {e:#}");
        }
    }

    /// SIGSTOP of host `i` well past the deadline, then SIGCONT.
    pub async fn stop(&self, i: usize) {
        self.signal(i, libc::SIGSTOP);
        tokio::time::sleep(HELD).await;
        self.signal(i, libc::SIGCONT);
    }

    /// Host `i`'s link down past the deadline, then up again.
    pub async fn cut(&self, i: usize) {
        let Some(ns) = self.netns.get(i) else {
            return;
        };
        let _ = ip(&["link", "set", &ns.outside, "down"]);
        tokio::time::sleep(HELD).await;
        let _ = ip(&["link", "set", &ns.outside, "up"]);
    }

    /// Stops every host (SIGTERM: each stops its slots first) and waits for them.
    pub async fn shutdown(&self) {
        let children: Vec<Child> = match self.children.lock() {
            Ok(mut c) => c.iter_mut().filter_map(Option::take).collect(),
            Err(_) => return,
        };
        for mut child in children {
            if let Some(pid) = child.id() {
                let _ = claude_pool::process::signal_process(pid, libc::SIGCONT);
                let _ = claude_pool::process::signal_process(pid, libc::SIGTERM);
            }
            if tokio::time::timeout(Duration::from_secs(20), child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
        }
    }
}
