//! A test certificate authority (rcgen): one CA certificate that a client
//! trusts (`curl --cacert`, Chromium's NSS database) and server
//! certificates it signs for real names (`stream.test`, `relay.test`), so
//! every TLS peer of a test is verified as a browser verifies it, with no
//! `--ignore-certificate-errors` anywhere.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CertifiedIssuer, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

/// A CA whose certificate is written to `<dir>/ca.pem`.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    dir: PathBuf,
    pem: PathBuf,
}

/// A server certificate signed by a [`TestCa`], written as PEM files.
#[derive(Debug)]
pub struct Issued {
    /// The certificate (PEM).
    pub cert: PathBuf,
    /// Its private key (PEM, PKCS#8).
    pub key: PathBuf,
    /// Certificate then key in one PEM file, as Icecast's
    /// `<ssl-certificate>` wants it.
    pub combined: PathBuf,
    /// The certificate (DER), for an in-process rustls server.
    pub cert_der: CertificateDer<'static>,
    /// The key (DER), for an in-process rustls server.
    pub key_der: PrivatePkcs8KeyDer<'static>,
}

impl Issued {
    /// `cert` and `key` (made elsewhere, e.g. self-signed) written as
    /// [`TestCa::issue`] writes its own.
    pub fn from_parts(dir: &Path, stem: &str, cert: &Certificate, key: &KeyPair) -> Issued {
        write(dir, stem, cert, key)
    }

    /// The key as rustls takes it.
    pub fn private_key(&self) -> PrivateKeyDer<'static> {
        PrivateKeyDer::Pkcs8(self.key_der.clone_key())
    }
}

impl TestCa {
    /// A new CA (ECDSA P-256, valid from yesterday for 30 days) written to
    /// `dir/ca.pem`.
    pub fn new(dir: &Path, name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity(&mut params);
        let key = KeyPair::generate().expect("CA key");
        let issuer = CertifiedIssuer::self_signed(params, key).expect("self-signed CA");
        let pem = dir.join("ca.pem");
        std::fs::write(&pem, issuer.pem())
            .unwrap_or_else(|e| panic!("write {}: {e}", pem.display()));
        TestCa {
            issuer,
            dir: dir.to_path_buf(),
            pem,
        }
    }

    /// `ca.pem`: what clients trust.
    pub fn pem(&self) -> &Path {
        &self.pem
    }

    /// A server certificate for `names` (DNS names or IP addresses),
    /// written as `<stem>.crt`, `<stem>.key` and `<stem>.pem` (both), each
    /// readable by all (Icecast reads its file after dropping root).
    pub fn issue(&self, stem: &str, names: &[&str]) -> Issued {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names.clone()).expect("server params");
        params.distinguished_name.push(
            DnType::CommonName,
            names.first().cloned().unwrap_or_default(),
        );
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        validity(&mut params);
        let key = KeyPair::generate().expect("server key");
        let cert = params
            .signed_by(&key, &self.issuer)
            .expect("sign a server certificate");
        write(&self.dir, stem, &cert, &key)
    }
}

/// Writes `<stem>.crt`, `.key` and `.pem` (both) in `dir`, readable by all.
fn write(dir: &Path, stem: &str, cert: &Certificate, key: &KeyPair) -> Issued {
    let (cert_pem, key_pem) = (cert.pem(), key.serialize_pem());
    let path = |ext: &str| dir.join(format!("{stem}.{ext}"));
    let issued = Issued {
        cert: path("crt"),
        key: path("key"),
        combined: path("pem"),
        cert_der: cert.der().clone(),
        key_der: PrivatePkcs8KeyDer::from(key.serialize_der()),
    };
    for (file, text) in [
        (&issued.cert, cert_pem.clone()),
        (&issued.key, key_pem.clone()),
        (&issued.combined, cert_pem + &key_pem),
    ] {
        std::fs::write(file, text).unwrap_or_else(|e| panic!("write {}: {e}", file.display()));
        super::procs::set_mode(file, 0o644);
    }
    issued
}

/// From yesterday (clocks of the peers may differ a little) for 30 days.
fn validity(params: &mut CertificateParams) {
    let now = OffsetDateTime::now_utc();
    params.not_before = now - Duration::days(1);
    params.not_after = now + Duration::days(30);
}
