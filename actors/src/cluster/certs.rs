//! The pool's private CA and its nodes' certificates (`claude-pool-server cluster-certs`).
//!
//! `<dir>/ca.pem` and `<dir>/ca.key` are the CA (made on first use, kept after); each node
//! gets `<dir>/<name>/` with `ca.pem`, `node.pem` and `node.key`, the directory to copy to
//! that machine and pass as `--cluster-tls-dir`. A node's certificate serves both ends of a
//! link (server and client authentication) and names the node, `localhost`, `127.0.0.1` and
//! the addresses given. Keys and their directories are private to their owner.

use std::io::Write;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// The CA's common name.
const CA_NAME: &str = "claude-pool cluster CA";

fn ca_params() -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_NAME);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

fn write(path: &Path, text: &str, private: bool) -> Result<(), String> {
    let result = if private {
        crate::private::open_rw(path).and_then(|mut f| {
            f.set_len(0)?;
            f.write_all(text.as_bytes())
        })
    } else {
        std::fs::write(path, text)
    };
    result.map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// The CA of `dir`: read when it exists, made (and written) when not.
fn ca(dir: &Path) -> Result<(Issuer<'static, KeyPair>, String), String> {
    let (cert_path, key_path) = (dir.join("ca.pem"), dir.join("ca.key"));
    if key_path.exists() {
        let key_pem = std::fs::read_to_string(&key_path)
            .map_err(|e| format!("cannot read {}: {e}", key_path.display()))?;
        let cert_pem = std::fs::read_to_string(&cert_path)
            .map_err(|e| format!("cannot read {}: {e}", cert_path.display()))?;
        let key = KeyPair::from_pem(&key_pem)
            .map_err(|e| format!("{}: not a private key: {e}", key_path.display()))?;
        return Ok((Issuer::new(ca_params(), key), cert_pem));
    }
    let key = KeyPair::generate().map_err(|e| format!("cannot make the CA's key: {e}"))?;
    let params = ca_params();
    let cert = params
        .self_signed(&key)
        .map_err(|e| format!("cannot make the CA: {e}"))?;
    write(&key_path, &key.serialize_pem(), true)?;
    write(&cert_path, &cert.pem(), false)?;
    Ok((Issuer::new(params, key), cert.pem()))
}

/// Makes (or keeps) the CA in `dir` and a certificate for each node, named with its extra
/// addresses (IP addresses or DNS names); returns each node's directory.
pub fn make(dir: &Path, nodes: &[(String, Vec<String>)]) -> Result<Vec<PathBuf>, String> {
    crate::private::create_dir_all(dir)
        .map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    let (issuer, ca_pem) = ca(dir)?;
    let mut made = Vec::new();
    for (name, addresses) in nodes {
        if name.is_empty() || name.starts_with('.') || name.contains(['/', '@']) {
            return Err(format!("{name:?} is not a node name"));
        }
        let mut sans = vec![name.clone(), "localhost".into(), "127.0.0.1".into()];
        sans.extend(addresses.iter().cloned());
        sans.dedup();
        let mut params =
            CertificateParams::new(sans).map_err(|e| format!("node {name}: a bad address: {e}"))?;
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, name.as_str());
        params.distinguished_name = dn;
        params.is_ca = IsCa::NoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().map_err(|e| format!("node {name}: {e}"))?;
        let cert = params
            .signed_by(&key, &issuer)
            .map_err(|e| format!("node {name}: {e}"))?;
        let node_dir = dir.join(name);
        crate::private::create_dir_all(&node_dir)
            .map_err(|e| format!("cannot make {}: {e}", node_dir.display()))?;
        write(&node_dir.join("ca.pem"), &ca_pem, false)?;
        write(&node_dir.join("node.pem"), &cert.pem(), false)?;
        write(&node_dir.join("node.key"), &key.serialize_pem(), true)?;
        made.push(node_dir);
    }
    Ok(made)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_of_one_ca_trust_each_other_and_not_another_ca() {
        let base = std::env::temp_dir().join(format!("cp-certs-{}", std::process::id()));
        let ours = base.join("ours");
        let theirs = base.join("theirs");
        make(&ours, &[("a".into(), vec!["10.1.2.3".into()])]).expect("a");
        // The CA is kept: a node made later chains to the same one.
        make(&ours, &[("b".into(), vec![])]).expect("b");
        make(&theirs, &[("c".into(), vec![])]).expect("c");
        let read = |p: PathBuf| std::fs::read_to_string(p).expect("read");
        assert_eq!(read(ours.join("a/ca.pem")), read(ours.join("b/ca.pem")));
        assert_ne!(read(ours.join("a/ca.pem")), read(theirs.join("c/ca.pem")));
        use std::os::unix::fs::PermissionsExt;
        for key in ["ca.key", "a/node.key", "b/node.key"] {
            let mode = std::fs::metadata(ours.join(key))
                .expect("key")
                .permissions()
                .mode();
            assert_eq!(mode & 0o077, 0, "{key} is {mode:o}");
        }
        // b's certificate verifies against the CA a was given (a server config accepts it).
        let files = super::super::TlsFiles {
            ca: ours.join("a/ca.pem"),
            cert: ours.join("b/node.pem"),
            key: ours.join("b/node.key"),
        };
        super::super::tls_acceptor(&files).expect("a server config");
        super::super::tls_connector(&files).expect("a client config");
        let _ = std::fs::remove_dir_all(&base);
    }
}
