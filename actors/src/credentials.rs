//! Who may drive the pool over HTTP, and at which recursion depth.
//!
//! The HTTP front-end has one main token (the user's: from `--http-token-file`, the
//! environment, or the token file the server writes). Every Claude process the pool starts
//! gets, in `CLAUDE_POOL_TOKEN`, a *depth token* instead: a random token only this server
//! holds, one per depth, that says how deep the process runs. A nested Claude whose
//! `.mcp.json` sends `Authorization: Bearer ${CLAUDE_POOL_TOKEN}` is then served at the depth
//! its token says, so `--max-depth` holds over HTTP without trusting an `x-mcp-depth` header.
//! The main token never reaches a child: [`Credentials::child_env`] strips it, under whatever
//! variable name it came, along with [`SERVER_TOKEN_ENV`].
//!
//! The table lives in memory: the tokens die with the server, as do the children holding them.

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::Read;
use std::sync::{Arc, Mutex};

/// The variable a child finds its depth token in (and a user exports the main token in, for
/// the `.mcp.json` header `Authorization: Bearer ${CLAUDE_POOL_TOKEN}`).
pub const CHILD_TOKEN_ENV: &str = "CLAUDE_POOL_TOKEN";

/// The variable the server may read its main token from; never passed on to a child.
pub const SERVER_TOKEN_ENV: &str = "CLAUDE_POOL_HTTP_TOKEN";

/// `n` random bytes from the kernel (`/dev/urandom`), hex-encoded.
pub fn random_hex(n: usize) -> std::io::Result<String> {
    let mut bytes = vec![0u8; n];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// Equal without revealing where they differ.
pub fn same(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i).copied().unwrap_or(0));
    }
    diff == 0
}

/// The main token and the depth tokens minted from it. Shared (`Arc`) by the HTTP front-end,
/// which checks presented tokens, and the pool's process spawner, which mints them.
pub struct Credentials {
    /// The main token: whoever holds it acts at the server's own depth.
    main: Arc<[u8]>,
    /// The server's own depth (what the main token means).
    own_depth: u32,
    /// The depth tokens minted so far, by depth. Minted on first use (a child at that depth),
    /// so a large `--max-depth` costs nothing.
    minted: Mutex<HashMap<u32, Arc<str>>>,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Secrets: say only how many there are.
        let minted = self.minted.lock().map(|m| m.len()).unwrap_or(0);
        f.debug_struct("Credentials")
            .field("own_depth", &self.own_depth)
            .field("depth_tokens", &minted)
            .finish_non_exhaustive()
    }
}

impl Credentials {
    /// Credentials whose main token is `main`, for a server at depth `own_depth`.
    pub fn new(main: &str, own_depth: u32) -> Credentials {
        Credentials {
            main: Arc::from(main.trim().as_bytes()),
            own_depth,
            minted: Mutex::new(HashMap::new()),
        }
    }

    /// The main token's bytes.
    pub fn main(&self) -> &[u8] {
        &self.main
    }

    /// The depth token of a process running at `depth`, minted on first use. `None` only if
    /// the kernel gave no random bytes (the child then gets no token and cannot call back).
    pub fn mint(&self, depth: u32) -> Option<Arc<str>> {
        let mut minted = self.minted.lock().ok()?;
        if let Some(t) = minted.get(&depth) {
            return Some(t.clone());
        }
        let token: Arc<str> = match random_hex(32) {
            Ok(hex) => Arc::from(format!("cpd{depth}.{hex}")),
            Err(e) => {
                tracing::error!("cannot mint a depth token (no random bytes): {e}");
                return None;
            }
        };
        minted.insert(depth, token.clone());
        Some(token)
    }

    /// The depth a presented token stands for: the server's own for the main token, the
    /// minted depth for a depth token, `None` for anything else. Every candidate is compared
    /// in full, in constant time per candidate.
    pub fn depth_of(&self, presented: &[u8]) -> Option<u32> {
        let mut found = same(presented, &self.main).then_some(self.own_depth);
        if let Ok(minted) = self.minted.lock() {
            for (depth, token) in minted.iter() {
                if same(presented, token.as_bytes()) {
                    found = Some(*depth);
                }
            }
        }
        found
    }

    /// Makes a child's environment safe: removes [`SERVER_TOKEN_ENV`], any variable holding
    /// the main token, and any inherited [`CHILD_TOKEN_ENV`]; then sets [`CHILD_TOKEN_ENV`] to
    /// the depth token of `depth`.
    pub fn child_env(&self, env: &mut Vec<(OsString, OsString)>, depth: u32) {
        env.retain(|(k, v)| {
            k != SERVER_TOKEN_ENV
                && k != CHILD_TOKEN_ENV
                && !same(v.as_encoded_bytes().trim_ascii(), &self.main)
        });
        if let Some(token) = self.mint(depth) {
            env.push((CHILD_TOKEN_ENV.into(), token.as_ref().into()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_token_stands_for_its_own_depth_and_nothing_else_passes() {
        let c = Credentials::new("main-secret", 0);
        let one = c.mint(1).expect("a token");
        let two = c.mint(2).expect("a token");
        assert_ne!(one, two);
        assert_eq!(
            c.mint(1).as_deref(),
            Some(one.as_ref()),
            "minted once per depth"
        );
        assert_eq!(c.depth_of(b"main-secret"), Some(0));
        assert_eq!(c.depth_of(one.as_bytes()), Some(1));
        assert_eq!(c.depth_of(two.as_bytes()), Some(2));
        assert_eq!(c.depth_of(b"main-secre"), None);
        assert_eq!(c.depth_of(b""), None);
        assert_eq!(c.depth_of(&one.as_bytes()[1..]), None);
    }

    #[test]
    fn a_child_env_loses_every_copy_of_the_main_token_and_gets_its_depth_token() {
        let c = Credentials::new("main-secret", 0);
        let mut env: Vec<(OsString, OsString)> = vec![
            ("PATH".into(), "/bin".into()),
            (SERVER_TOKEN_ENV.into(), "main-secret".into()),
            ("MY_COPY".into(), "main-secret\n".into()),
            (CHILD_TOKEN_ENV.into(), "main-secret".into()),
        ];
        c.child_env(&mut env, 3);
        let want = c.mint(3).expect("a token");
        assert_eq!(
            env,
            vec![
                ("PATH".into(), "/bin".into()),
                (CHILD_TOKEN_ENV.into(), want.as_ref().into()),
            ]
        );
    }
}
