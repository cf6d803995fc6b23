//! Postgres connections, over TLS when the database URL asks for it.
//!
//! The URL takes libpq's settings (`sslmode`, `sslrootcert`) because that is
//! what every managed Postgres documents; tokio-postgres knows only
//! `disable|prefer|require`, so both are taken out of the URL here and
//! applied with rustls (ring provider):
//!
//! | `sslmode`       | TLS        | certificate checked                                  |
//! | --------------- | ---------- | ---------------------------------------------------- |
//! | `disable`       | never      | —                                                    |
//! | `prefer` (default) | if offered | no (as libpq; with `sslrootcert`: chain)          |
//! | `require`       | always     | no (as libpq; with `sslrootcert`: chain, as libpq)   |
//! | `verify-ca`     | always     | chain to a trusted root                              |
//! | `verify-full`   | always     | chain and host name (or IP) of the URL               |
//!
//! Trusted roots: `sslrootcert=<PEM file>` alone when given, else the
//! operating system's store (`rustls-native-certs`, which also honours
//! `SSL_CERT_FILE`/`SSL_CERT_DIR`). `sslrootcert=system` is libpq's spelling
//! of the latter.

use std::{str::FromStr, sync::Arc};

use diesel::ConnectionError;
use diesel_async::AsyncPgConnection;
use rustls::{
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
    client::{
        WebPkiServerVerifier,
        danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    },
    crypto::CryptoProvider,
    pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject},
};
use tokio_postgres::config::SslMode;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::DbError;

/// How a URL says to secure the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TlsMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl FromStr for TlsMode {
    type Err = DbError;
    fn from_str(s: &str) -> Result<Self, DbError> {
        Ok(match s {
            "disable" => Self::Disable,
            // libpq's `allow` tries plain first; TLS-if-offered is at least as safe.
            "allow" | "prefer" => Self::Prefer,
            "require" => Self::Require,
            "verify-ca" => Self::VerifyCa,
            "verify-full" => Self::VerifyFull,
            other => {
                return Err(DbError::Unavailable(format!(
                    "invalid sslmode {other:?} in the database URL \
                     (disable, prefer, require, verify-ca, verify-full)"
                )));
            }
        })
    }
}

/// The `sslmode` a database URL asks for (`prefer` when it names none), as
/// [`PgTarget::parse`] reads it, without opening any trust store.
pub fn url_tls_mode(url: &str) -> Result<TlsMode, DbError> {
    let parsed = url::Url::parse(url)
        .map_err(|e| DbError::Unavailable(format!("invalid database URL: {e}")))?;
    let mode = parsed.query_pairs().find(|(k, _)| k == "sslmode");
    mode.map_or(Ok(TlsMode::Prefer), |(_, v)| v.parse())
}

/// A parsed database URL: where to connect and how, built once per pool so
/// the trust store is read once, not per connection.
#[derive(Clone)]
pub struct PgTarget {
    config: tokio_postgres::Config,
    tls: Option<MakeRustlsConnect>,
    mode: TlsMode,
}

impl std::fmt::Debug for PgTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The config holds the password: show the mode only.
        f.debug_struct("PgTarget")
            .field("mode", &self.mode)
            .finish_non_exhaustive()
    }
}

impl PgTarget {
    pub fn parse(url: &str) -> Result<Self, DbError> {
        let invalid =
            |e: &dyn std::fmt::Display| DbError::Unavailable(format!("invalid database URL: {e}"));
        let mut parsed = url::Url::parse(url).map_err(|e| invalid(&e))?;
        let mode = url_tls_mode(url)?;
        let mut root_cert = None;
        let mut rest = Vec::new();
        for (k, v) in parsed.query_pairs() {
            match &*k {
                "sslmode" => {}
                "sslrootcert" => root_cert = Some(v.into_owned()),
                _ => rest.push((k.into_owned(), v.into_owned())),
            }
        }
        if rest.is_empty() {
            parsed.set_query(None);
        } else {
            parsed.query_pairs_mut().clear().extend_pairs(rest);
        }
        let mut config =
            tokio_postgres::Config::from_str(parsed.as_str()).map_err(|e| invalid(&e))?;
        tune_keepalive(&mut config);
        config.ssl_mode(match mode {
            TlsMode::Disable => SslMode::Disable,
            TlsMode::Prefer => SslMode::Prefer,
            _ => SslMode::Require,
        });
        let tls = match mode {
            TlsMode::Disable => None,
            _ => Some(MakeRustlsConnect::new(client_config(
                mode,
                root_cert.as_deref(),
            )?)),
        };
        Ok(Self { config, tls, mode })
    }

    pub fn mode(&self) -> TlsMode {
        self.mode
    }

    pub async fn connect(&self) -> Result<AsyncPgConnection, ConnectionError> {
        let bad = |e: tokio_postgres::Error| ConnectionError::BadConnection(error_chain(&e));
        match &self.tls {
            None => {
                let (client, conn) = self
                    .config
                    .connect(tokio_postgres::NoTls)
                    .await
                    .map_err(bad)?;
                AsyncPgConnection::try_from_client_and_connection(client, conn).await
            }
            Some(tls) => {
                let (client, conn) = self.config.connect(tls.clone()).await.map_err(bad)?;
                AsyncPgConnection::try_from_client_and_connection(client, conn).await
            }
        }
    }
}

/// A dead peer is noticed in about 10 + 3 × 5 s of silence instead of the
/// kernel's 2 h: a LISTEN socket only receives, so without probes a
/// half-open one stays quiet for good (the listeners' heartbeat notices
/// sooner; this covers every other connection). Settings the URL gives
/// (`keepalives_idle`, `keepalives_interval`, `keepalives_retries`) win.
fn tune_keepalive(config: &mut tokio_postgres::Config) {
    if config.get_keepalives_idle() == std::time::Duration::from_secs(2 * 60 * 60) {
        config.keepalives_idle(std::time::Duration::from_secs(10));
    }
    if config.get_keepalives_interval().is_none() {
        config.keepalives_interval(std::time::Duration::from_secs(5));
    }
    if config.get_keepalives_retries().is_none() {
        config.keepalives_retries(3);
    }
}

/// Connects to `url` once (no pool), honouring its TLS settings.
pub async fn establish(url: &str) -> Result<AsyncPgConnection, DbError> {
    PgTarget::parse(url)?
        .connect()
        .await
        .map_err(|e| DbError::Unavailable(e.to_string()))
}

/// tokio-postgres's top-level message is "error performing TLS handshake";
/// the reason (unknown issuer, name mismatch) is in the source chain.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

fn client_config(mode: TlsMode, root_cert: Option<&str>) -> Result<ClientConfig, DbError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| DbError::Unavailable(format!("TLS setup: {e}")))?;
    let check_chain = matches!(mode, TlsMode::VerifyCa | TlsMode::VerifyFull)
        || root_cert.is_some_and(|p| p != "system");
    let config = if !check_chain {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
            .with_no_client_auth()
    } else {
        let roots = Arc::new(roots(root_cert)?);
        if mode == TlsMode::VerifyFull {
            builder.with_root_certificates(roots).with_no_client_auth()
        } else {
            let chain = WebPkiServerVerifier::builder_with_provider(roots, provider)
                .build()
                .map_err(|e| DbError::Unavailable(format!("TLS setup: {e}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly(chain)))
                .with_no_client_auth()
        }
    };
    Ok(config)
}

fn roots(root_cert: Option<&str>) -> Result<RootCertStore, DbError> {
    let mut store = RootCertStore::empty();
    match root_cert {
        Some(path) if path != "system" => {
            let certs = CertificateDer::pem_file_iter(path)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
                .map_err(|e| DbError::Unavailable(format!("sslrootcert {path:?}: {e}")))?;
            let (added, _) = store.add_parsable_certificates(certs);
            if added == 0 {
                return Err(DbError::Unavailable(format!(
                    "sslrootcert {path:?}: no usable certificate"
                )));
            }
        }
        _ => {
            let found = rustls_native_certs::load_native_certs();
            store.add_parsable_certificates(found.certs);
            if store.is_empty() {
                return Err(DbError::Unavailable(format!(
                    "no trusted root certificates in the system store ({:?}); \
                     install ca-certificates or set sslrootcert=",
                    found.errors
                )));
            }
        }
    }
    Ok(store)
}

/// `require`/`prefer` without a root: encrypted, not authenticated (libpq's
/// meaning). Handshake signatures are still checked, so the peer holds the
/// key of the certificate it sent.
#[derive(Debug)]
struct AcceptAny(Arc<CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a trusted root; the name is not
/// compared (webpki checks the chain before the name, so only a name error
/// is forgiven).
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_leave_the_url_and_the_rest_stays() -> Result<(), DbError> {
        let t = PgTarget::parse("postgres://u:p@db:5432/x?sslmode=disable&application_name=a")?;
        assert_eq!(t.mode(), TlsMode::Disable);
        assert_eq!(t.config.get_application_name(), Some("a"));
        assert!(PgTarget::parse("postgres://u:p@db/x?sslmode=verify-fuII").is_err());
        assert!(
            PgTarget::parse("postgres://u:p@db/x?sslmode=verify-ca&sslrootcert=/nonexistent")
                .is_err()
        );
        Ok(())
    }
}
