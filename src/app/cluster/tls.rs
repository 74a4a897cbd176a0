//! TLS on the cluster port (`cluster.tls_ca`, `tls_cert`, `tls_key`): mutual, every node's
//! certificate signed by the cluster's CA. The files are read once, at start, so that a wrong
//! path or a broken file stops the node with the setting's name instead of failing every dial.

use std::sync::Arc;

use anyhow::Context;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use tokio_rustls::{TlsAcceptor, TlsConnector};

use crate::app::settings::ClusterSettings;

/// This node's side of the cluster's TLS: what accepts the peers' connections and what dials them.
#[derive(Clone)]
pub struct Tls {
    pub acceptor: TlsAcceptor,
    pub connector: TlsConnector,
}

impl Tls {
    /// None when the settings name no certificate (plain TCP).
    pub fn from_settings(settings: &ClusterSettings) -> anyhow::Result<Option<Tls>> {
        if !settings.tls() {
            return Ok(None);
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        for cert in certificates(&settings.tls_ca, "cluster.tls_ca")? {
            roots.add(cert).context("cluster.tls_ca holds a certificate rustls cannot use")?;
        }
        let roots = Arc::new(roots);
        let chain = certificates(&settings.tls_cert, "cluster.tls_cert")?;
        let key = PrivateKeyDer::from_pem_file(&settings.tls_key)
            .with_context(|| format!("cluster.tls_key: no PEM private key read from {:?}", settings.tls_key))?;

        let verifier = WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .context("cluster.tls_ca: building the peer verifier")?;
        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .context("cluster.tls_cert / cluster.tls_key do not make a usable pair")?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()?
            .with_root_certificates(roots)
            .with_client_auth_cert(chain, key)
            .context("cluster.tls_cert / cluster.tls_key do not make a usable pair")?;
        Ok(Some(Tls { acceptor: TlsAcceptor::from(Arc::new(server)), connector: TlsConnector::from(Arc::new(client)) }))
    }
}

fn certificates(path: &str, setting: &str) -> anyhow::Result<Vec<CertificateDer<'static>>> {
    let certs = CertificateDer::pem_file_iter(path)
        .with_context(|| format!("{setting}: cannot read {path:?}"))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("{setting}: {path:?} is not PEM"))?;
    anyhow::ensure!(!certs.is_empty(), "{setting}: {path:?} holds no certificate");
    Ok(certs)
}

/// The name a peer's certificate must carry: the host part of its advertised `host:port`.
pub fn server_name(addr: &str) -> anyhow::Result<ServerName<'static>> {
    let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).with_context(|| format!("{addr:?} has no host name TLS can check"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peers_are_checked_against_the_host_they_advertise() {
        assert_eq!(server_name("node-a.internal:7100").unwrap().to_str(), "node-a.internal");
        assert_eq!(server_name("10.0.0.7:7100").unwrap().to_str(), "10.0.0.7");
        assert_eq!(server_name("[::1]:7100").unwrap().to_str(), "::1");
        assert!(server_name("bad host:7100").is_err());
    }

    #[test]
    fn missing_or_broken_files_name_the_setting() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let junk = junk.display().to_string();
        let plain = crate::app::Settings::load(None, Vec::<(String, String)>::new()).unwrap().cluster;
        let settings = |ca: &str| ClusterSettings {
            tls_ca: ca.into(),
            tls_cert: junk.clone(),
            tls_key: junk.clone(),
            ..plain.clone()
        };
        let missing = Tls::from_settings(&settings("/nonexistent/ca.pem")).err().unwrap();
        assert!(format!("{missing:#}").contains("cluster.tls_ca: cannot read"), "{missing:#}");
        let empty = Tls::from_settings(&settings(&junk)).err().unwrap();
        assert!(format!("{empty:#}").contains("holds no certificate"), "{empty:#}");
        assert!(Tls::from_settings(&plain).unwrap().is_none());
    }
}
