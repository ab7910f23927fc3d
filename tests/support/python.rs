//! The official MCP Python SDK as a test client: `tests/py/mcp_driver.py` runs in the
//! pinned SDK's environment (`scripts/install-mcp-python.sh`) and performs one MCP
//! operation per JSON line the test writes, answering each with one JSON line.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::{within, workspace_root};

/// The SDK version the tests pin.
pub const MCP_PYTHON_VERSION: &str = "1.30.0";

/// The python of the pinned SDK's environment, if it is installed. With `CI=true` a
/// missing SDK is a failure, never a skip.
pub fn mcp_python() -> Option<PathBuf> {
    let path = std::env::var_os("CLAUDE_POOL_MCP_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            workspace_root()
                .join(".cache")
                .join(format!("mcp-python-{MCP_PYTHON_VERSION}"))
                .join("bin/python")
        });
    crate::installed_or_skip(path, "the MCP Python SDK", "scripts/install-mcp-python.sh")
}

/// One MCP session of the Python SDK.
#[derive(Debug)]
pub struct PyClient {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
    /// What `initialize` answered.
    pub initialize: Value,
}

/// How long one operation may take.
const OP_LIMIT: Duration = Duration::from_secs(90);

impl PyClient {
    /// A session over Streamable HTTP with the server at `url`, sending `token` as its bearer.
    pub async fn http(python: &PathBuf, url: &str, token: Option<&str>) -> PyClient {
        let env: Vec<(String, String)> = token
            .map(|t| ("CLAUDE_POOL_TOKEN".to_owned(), t.to_owned()))
            .into_iter()
            .collect();
        Self::start(python, &["--url", url], &env).await
    }

    /// A session over stdio: the SDK starts `server` with `args` (and `env`) itself.
    pub async fn stdio(
        python: &PathBuf,
        server: &std::path::Path,
        args: &[String],
        env: &[(String, String)],
    ) -> PyClient {
        let mut argv = vec!["--".to_owned(), server.display().to_string()];
        argv.extend(args.iter().cloned());
        let argv: Vec<&str> = argv.iter().map(String::as_str).collect();
        Self::start(python, &argv, env).await
    }

    async fn start(python: &PathBuf, args: &[&str], env: &[(String, String)]) -> PyClient {
        let script = workspace_root().join("tests/py/mcp_driver.py");
        let mut cmd = Command::new(python);
        cmd.arg(script)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start the MCP Python SDK driver");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let mut client = PyClient {
            child,
            stdin,
            lines,
            initialize: Value::Null,
        };
        let first = client.next_line("the Python client's initialize").await;
        client.initialize = first["initialize"].clone();
        client
    }

    async fn next_line(&mut self, what: &str) -> Value {
        let line = within(OP_LIMIT, what, self.lines.next_line())
            .await
            .expect("read the Python client's answer")
            .unwrap_or_else(|| panic!("the Python client exited before {what}"));
        serde_json::from_str(&line).unwrap_or_else(|e| panic!("{what}: {e}: {line}"))
    }

    /// Performs one operation (see the driver's documentation) and returns its answer.
    pub async fn op(&mut self, op: Value) -> Value {
        let mut line = op.to_string();
        line.push('\n');
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to the Python client");
        self.next_line(&format!("the Python client's answer to {op}"))
            .await
    }

    /// Ends the session and waits for the client to exit.
    pub async fn quit(mut self) {
        let _ = self.stdin.write_all(b"{\"op\":\"quit\"}\n").await;
        let status = within(OP_LIMIT, "the Python client's exit", self.child.wait())
            .await
            .expect("wait for the Python client");
        assert!(status.success(), "the Python client failed: {status}");
    }
}
