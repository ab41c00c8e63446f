//! `--web-config FILE`: TLS and basic auth for `--serve`, in the file format every
//! Prometheus exporter already reads (exporter-toolkit's `web-config.yml`), so that one
//! file, one certificate and one set of users serve node_exporter and gala-collect alike:
//!
//! ```yaml
//! tls_server_config:
//!   cert_file: server.crt     # relative paths are relative to this file's folder
//!   key_file: server.key
//!   min_version: TLS12        # optional: TLS12 (the default) or TLS13
//! basic_auth_users:
//!   prometheus: $2y$10$...    # bcrypt hashes (htpasswd -nBC 10 "" | tr -d ':\n')
//! ```
//!
//! Everything is checked before collection starts: the certificate and key are read and
//! matched, every hash is parsed. A key that exporter-toolkit knows but gala-collect does
//! not implement (client certificates, cipher suite lists, HTTP headers) is refused rather
//! than ignored, because ignoring a security setting would serve with less protection
//! than the file asks for. An empty file is valid, as it is for exporter-toolkit.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail, Context};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use yaml_rust2::yaml::{Hash, Yaml};

/// A checked web-config file, ready to serve with.
pub struct WebConfig {
    /// The TLS settings, when `tls_server_config` is given.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// User name → bcrypt hash; empty means no authentication.
    pub users: HashMap<String, String>,
}

impl std::fmt::Debug for WebConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        // Never the hashes.
        f.debug_struct("WebConfig")
            .field("tls", &self.tls.is_some())
            .field("users", &self.users.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// exporter-toolkit keys that gala-collect refuses, with what to do instead.
const UNSUPPORTED: &[(&str, &str)] = &[
    (
        "tls_server_config.client_ca_file",
        "client certificates are not supported",
    ),
    (
        "tls_server_config.client_allowed_sans",
        "client certificates are not supported",
    ),
    (
        "tls_server_config.cipher_suites",
        "rustls' safe default cipher suites are used",
    ),
    (
        "tls_server_config.curve_preferences",
        "rustls' safe default key exchange groups are used",
    ),
    (
        "http_server_config",
        "gala-collect speaks HTTP/1.1 and sets no extra headers",
    ),
];

impl WebConfig {
    /// Reads and checks `path`. Errors name the file and the key at fault.
    pub fn load(path: &Path) -> anyhow::Result<WebConfig> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read --web-config {}", path.display()))?;
        let dir = path.parent().unwrap_or(Path::new("."));
        parse(&text, dir).map_err(|e| anyhow!("{}: {e:#}", path.display()))
    }
}

/// Parses the text of a web-config file; relative file names are taken from `dir`.
fn parse(text: &str, dir: &Path) -> anyhow::Result<WebConfig> {
    let docs = yaml_rust2::YamlLoader::load_from_str(text).map_err(|e| anyhow!("{e}"))?;
    let empty = Hash::new();
    let top = match docs.as_slice() {
        [] => &empty,
        [Yaml::Null] => &empty,
        [Yaml::Hash(h)] => h,
        [_] => bail!("expected a mapping of tls_server_config and basic_auth_users"),
        _ => bail!("expected one YAML document, found {}", docs.len()),
    };
    let mut tls = None;
    let mut users = HashMap::new();
    for (key, value) in top {
        match key_str(key, "")? {
            "tls_server_config" => tls = Some(tls_config(value, dir)?),
            "basic_auth_users" => users = basic_auth_users(value)?,
            other => refuse(other)?,
        }
    }
    Ok(WebConfig { tls, users })
}

/// The error for a key gala-collect does not take: why, for one exporter-toolkit knows.
fn refuse(key: &str) -> anyhow::Result<()> {
    match UNSUPPORTED.iter().find(|(k, _)| *k == key) {
        Some((_, why)) => bail!("{key}: not supported by gala-collect ({why})"),
        None => bail!("{key}: unknown key"),
    }
}

fn key_str<'a>(key: &'a Yaml, parent: &str) -> anyhow::Result<&'a str> {
    key.as_str()
        .ok_or_else(|| anyhow!("{parent}: a key is not a string: {key:?}"))
}

/// A string value, or an error naming its key.
fn string<'a>(value: &'a Yaml, key: &str) -> anyhow::Result<&'a str> {
    value
        .as_str()
        .ok_or_else(|| anyhow!("{key}: expected a string"))
}

fn mapping<'a>(value: &'a Yaml, key: &str) -> anyhow::Result<Option<&'a Hash>> {
    match value {
        Yaml::Hash(h) => Ok(Some(h)),
        Yaml::Null => Ok(None),
        _ => bail!("{key}: expected a mapping"),
    }
}

fn tls_config(value: &Yaml, dir: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    const K: &str = "tls_server_config";
    let empty = Hash::new();
    let map = mapping(value, K)?.unwrap_or(&empty);
    let (mut cert, mut key) = (None, None);
    let mut versions: Vec<&'static rustls::SupportedProtocolVersion> =
        vec![&rustls::version::TLS12, &rustls::version::TLS13];
    let (mut min, mut max) = (0, versions.len() - 1);
    for (k, v) in map {
        let name = key_str(k, K)?;
        let full = format!("{K}.{name}");
        match name {
            // A file holding the PEM, or (`cert`, `key`) the PEM itself.
            "cert_file" => cert = Some(certs(Pem::File(resolve(dir, string(v, &full)?)), &full)?),
            "cert" => cert = Some(certs(Pem::Inline(string(v, &full)?), &full)?),
            "key_file" => {
                key = Some(private_key(
                    Pem::File(resolve(dir, string(v, &full)?)),
                    &full,
                )?)
            }
            "key" => key = Some(private_key(Pem::Inline(string(v, &full)?), &full)?),
            "min_version" => min = version(string(v, &full)?, &full)?,
            "max_version" => max = version(string(v, &full)?, &full)?,
            // exporter-toolkit's default, said explicitly.
            "client_auth_type" if string(v, &full)? == "NoClientCert" => {}
            "client_auth_type" => {
                bail!("{full}: only NoClientCert is supported by gala-collect (client certificates are not)")
            }
            // Only meaningful with a cipher suite list, which is refused anyway.
            "prefer_server_cipher_suites" => {}
            _ => refuse(&full)?,
        }
    }
    if min > max {
        bail!("{K}: min_version is above max_version");
    }
    versions = versions[min..=max].to_vec();
    let cert = cert.ok_or_else(|| anyhow!("{K}.cert_file: missing (or give cert)"))?;
    let key = key.ok_or_else(|| anyhow!("{K}.key_file: missing (or give key)"))?;
    // rustls 0.23.48 deprecates ring's provider for lacking post-quantum key exchange;
    // aws-lc-rs has it but compiles a large C library (see Cargo.toml). A scrape's
    // confidentiality against a future quantum computer is not worth that here, yet.
    #[allow(deprecated)]
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&versions)
        .with_context(|| format!("{K}: protocol versions"))?
        .with_no_client_auth()
        .with_single_cert(cert, key)
        .map_err(|e| anyhow!("{K}: the key does not go with the certificate: {e}"))?;
    Ok(Arc::new(config))
}

/// Where a PEM comes from.
enum Pem<'a> {
    File(PathBuf),
    Inline(&'a str),
}

fn resolve(dir: &Path, file: &str) -> PathBuf {
    let p = Path::new(file);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        dir.join(p)
    }
}

fn certs(pem: Pem, key: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let (found, from) = match &pem {
        Pem::File(path) => (
            CertificateDer::pem_file_iter(path)
                .map_err(|e| anyhow!("{key}: cannot read {}: {e}", path.display()))?
                .collect::<Result<Vec<_>, _>>(),
            path.display().to_string(),
        ),
        Pem::Inline(text) => (
            CertificateDer::pem_slice_iter(text.as_bytes()).collect(),
            "its PEM text".to_string(),
        ),
    };
    let found = found.map_err(|e| anyhow!("{key}: {from}: {e}"))?;
    if found.is_empty() {
        bail!("{key}: no CERTIFICATE in {from}");
    }
    Ok(found)
}

fn private_key(pem: Pem, key: &str) -> anyhow::Result<PrivateKeyDer<'static>> {
    match &pem {
        Pem::File(path) => PrivateKeyDer::from_pem_file(path)
            .map_err(|e| anyhow!("{key}: no private key read from {}: {e}", path.display())),
        Pem::Inline(text) => PrivateKeyDer::from_pem_slice(text.as_bytes())
            .map_err(|e| anyhow!("{key}: no private key in its PEM text: {e}")),
    }
}

/// Index into [TLS12, TLS13] of a version as exporter-toolkit names it.
fn version(v: &str, key: &str) -> anyhow::Result<usize> {
    match v {
        "TLS12" => Ok(0),
        "TLS13" => Ok(1),
        "TLS10" | "TLS11" => bail!("{key}: {v} is not supported (rustls speaks TLS12 and TLS13)"),
        _ => bail!("{key}: {v:?} is not a TLS version (TLS12 or TLS13)"),
    }
}

fn basic_auth_users(value: &Yaml) -> anyhow::Result<HashMap<String, String>> {
    const K: &str = "basic_auth_users";
    let mut users = HashMap::new();
    let Some(map) = mapping(value, K)? else {
        return Ok(users);
    };
    for (k, v) in map {
        // A user named 123 is still a user name.
        let user = match k {
            Yaml::Integer(n) => n.to_string(),
            _ => key_str(k, K)?.to_string(),
        };
        let full = format!("{K}.{user}");
        if user.contains(':') {
            bail!("{full}: a user name cannot hold ':' (basic auth splits on it)");
        }
        let hash = string(v, &full)?;
        let parts: bcrypt::HashParts = hash
            .parse()
            .map_err(|e| anyhow!("{full}: not a bcrypt hash ({e}); make one with htpasswd -nBC 10 \"\" | tr -d ':\\n'"))?;
        if !(4..=31).contains(&parts.get_cost()) {
            bail!("{full}: bcrypt cost {} is outside 4..31", parts.get_cost());
        }
        users.insert(user, hash.to_string());
    }
    Ok(users)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A bcrypt hash made by Python's bcrypt, at cost 4 (cheap for tests).
    pub(crate) const HASH: &str = "$2b$04$EGdrhbKUv8Oc9vGiXX0HQOxSg445d458Muh7DAHskb6QbtCvdxcie";
    pub(crate) const PASSWORD: &str = "correctbatteryhorsestapler";

    fn err(text: &str) -> String {
        format!("{:#}", parse(text, Path::new("/nonexistent")).unwrap_err())
    }

    #[test]
    fn the_test_hash_is_of_the_test_password() {
        assert!(bcrypt::verify(PASSWORD, HASH).unwrap());
    }

    #[test]
    fn an_empty_file_asks_for_nothing() {
        for text in ["", "---\n", "# nothing\n"] {
            let c = parse(text, Path::new(".")).unwrap();
            assert!(c.tls.is_none() && c.users.is_empty(), "{text:?}");
        }
    }

    #[test]
    fn basic_auth_users_are_read_and_their_hashes_checked() {
        let c = parse(
            &format!("basic_auth_users:\n  prometheus: '{HASH}'\n"),
            Path::new("."),
        )
        .unwrap();
        assert_eq!(c.users["prometheus"], HASH);
        let e = err("basic_auth_users:\n  prometheus: plain-password\n");
        assert!(
            e.contains("basic_auth_users.prometheus: not a bcrypt hash"),
            "{e}"
        );
        let e = err("basic_auth_users:\n  prometheus: [a]\n");
        assert!(
            e.contains("basic_auth_users.prometheus: expected a string"),
            "{e}"
        );
    }

    #[test]
    fn keys_it_does_not_implement_are_refused_not_ignored() {
        let e = err("tls_server_config:\n  client_ca_file: ca.pem\n");
        assert!(
            e.contains("tls_server_config.client_ca_file: not supported"),
            "{e}"
        );
        let e = err("tls_server_config:\n  client_auth_type: RequireAndVerifyClientCert\n");
        assert!(
            e.contains("tls_server_config.client_auth_type: only NoClientCert"),
            "{e}"
        );
        let e = err("http_server_config:\n  http2: false\n");
        assert!(e.contains("http_server_config: not supported"), "{e}");
        let e = err("basic_auth_user:\n  a: b\n");
        assert!(e.contains("basic_auth_user: unknown key"), "{e}");
        let e = err("tls_server_config:\n  min_version: TLS10\n");
        assert!(
            e.contains("tls_server_config.min_version: TLS10 is not supported"),
            "{e}"
        );
    }

    #[test]
    fn missing_or_broken_tls_files_name_the_key_and_the_file() {
        let e = err("tls_server_config:\n  key_file: k.pem\n");
        assert!(
            e.contains("tls_server_config.key_file: no private key read from /nonexistent/k.pem"),
            "{e}"
        );
        let e = err("tls_server_config:\n  cert_file: c.pem\n  key_file: k.pem\n");
        assert!(
            e.contains("tls_server_config.cert_file: cannot read /nonexistent/c.pem"),
            "{e}"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("c.pem"), "not a pem\n").unwrap();
        let e = format!(
            "{:#}",
            parse(
                "tls_server_config:\n  cert_file: c.pem\n  key_file: c.pem\n",
                dir.path()
            )
            .unwrap_err()
        );
        assert!(
            e.contains("tls_server_config.cert_file: no CERTIFICATE in"),
            "{e}"
        );
        let e = err("tls_server_config:\n  cert: x\n");
        assert!(
            e.contains("tls_server_config.cert: no CERTIFICATE in its PEM text"),
            "{e}"
        );
    }

    #[test]
    fn yaml_syntax_errors_say_where() {
        let e = err("basic_auth_users:\n  a: [\n");
        assert!(e.contains("line"), "{e}");
        let e = err("- a\n- b\n");
        assert!(e.contains("expected a mapping"), "{e}");
    }

    #[test]
    fn load_prefixes_the_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("web.yml");
        std::fs::write(&path, "tls_server_config:\n  cipher_suites: [x]\n").unwrap();
        let e = format!("{:#}", WebConfig::load(&path).unwrap_err());
        assert!(
            e.starts_with(&format!(
                "{}: tls_server_config.cipher_suites",
                path.display()
            )),
            "{e}"
        );
        let e = format!(
            "{:#}",
            WebConfig::load(&dir.path().join("none.yml")).unwrap_err()
        );
        assert!(
            e.contains("cannot read --web-config") && e.contains("none.yml"),
            "{e}"
        );
    }
}
