//! A throwaway certificate authority and the certificates of a local
//! cluster (`raft-kv-server gen-certs DIR`, `run_cluster.sh --tls`, the
//! tests). For trying TLS out: a real deployment's certificates come from
//! its own CA.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};

/// A CA whose key lives only in memory.
pub struct Authority {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its private key, PEM-encoded.
pub struct Issued {
    /// The certificate.
    pub cert_pem: String,
    /// Its private key (PKCS#8).
    pub key_pem: String,
}

fn named(common_name: &str, hosts: &[String]) -> Result<CertificateParams, rcgen::Error> {
    let mut params = CertificateParams::new(hosts.to_vec())?;
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    params.distinguished_name = dn;
    Ok(params)
}

impl Authority {
    /// A new CA named `common_name`.
    pub fn new(common_name: &str) -> Result<Authority, rcgen::Error> {
        let mut params = named(common_name, &[])?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(Authority { issuer })
    }

    /// The CA certificate (what `--trusted-ca-file`, `--peer-trusted-ca-file`
    /// and the CLI's `--cacert` name).
    pub fn cert_pem(&self) -> String {
        self.issuer.pem()
    }

    /// A certificate for `hosts` (DNS names or IP addresses), valid for TLS
    /// servers and clients alike: a member shows the same one as server and,
    /// to other members, as client.
    pub fn issue(&self, common_name: &str, hosts: &[String]) -> Result<Issued, rcgen::Error> {
        let mut params = named(common_name, hosts)?;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &self.issuer)?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

impl Authority {
    /// Member `id`'s certificate, for `hosts` and [`LOCAL_HOSTS`].
    pub fn issue_node(&self, id: u64, hosts: &[String]) -> Result<Issued, rcgen::Error> {
        let mut all: Vec<String> = LOCAL_HOSTS.iter().map(|h| h.to_string()).collect();
        all.extend(hosts.iter().cloned());
        self.issue(&format!("raft-kv node {id}"), &all)
    }
}

/// The names every generated member certificate carries: a local cluster's.
pub const LOCAL_HOSTS: &[&str] = &["localhost", "127.0.0.1", "::1"];

/// Writes, into `dir`: `ca.pem`; `node-<id>.pem` and `node-<id>-key.pem`
/// for ids 1..=nodes (for `hosts` and [`LOCAL_HOSTS`]); `client.pem` and
/// `client-key.pem` (a client certificate for the CLI). Keys are written
/// readable by the owner only. Returns the files written.
pub fn write_dir(dir: &Path, nodes: u64, hosts: &[String]) -> Result<Vec<PathBuf>, String> {
    let ca = Authority::new("raft-kv throwaway CA")
        .map_err(|e| format!("cannot generate the CA: {e}"))?;
    write_dir_with(&ca, dir, nodes, hosts)
}

/// [`write_dir`] with a given CA (a test keeps it to issue more).
pub fn write_dir_with(
    ca: &Authority,
    dir: &Path,
    nodes: u64,
    hosts: &[String],
) -> Result<Vec<PathBuf>, String> {
    let fail = |e: rcgen::Error| format!("cannot generate a certificate: {e}");
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut written = Vec::new();
    let mut write = |name: String, text: &str, secret: bool| -> Result<(), String> {
        let path = dir.join(name);
        write_file(&path, text, secret)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        written.push(path);
        Ok(())
    };
    write("ca.pem".into(), &ca.cert_pem(), false)?;
    for id in 1..=nodes {
        let issued = ca.issue_node(id, hosts).map_err(fail)?;
        write(format!("node-{id}.pem"), &issued.cert_pem, false)?;
        write(format!("node-{id}-key.pem"), &issued.key_pem, true)?;
    }
    let client = ca.issue("raft-kv client", &[]).map_err(fail)?;
    write("client.pem".into(), &client.cert_pem, false)?;
    write("client-key.pem".into(), &client.key_pem, true)?;
    Ok(written)
}

/// Writes `text` to `path` through a temporary file and a rename, so a
/// node watching the file never reads half of it; `secret` files are
/// readable by their owner only.
pub fn write_file(path: &Path, text: &str, secret: bool) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension("tmp");
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    if secret {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    #[cfg(not(unix))]
    let _ = secret;
    let mut f = opts.open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}
