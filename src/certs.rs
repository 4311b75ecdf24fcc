//! `aftercare certs`: the fleet's private PKI. Issues a fleet CA, vehicle certificates whose
//! common name is the VIN (the broker takes it as the user name, and its ACL ties the
//! connection to that VIN's topics), and service certificates (the service's own identity at
//! the broker, and server certificates for the broker, PostgreSQL or the HTTPS listener).
//! ECDSA P-256 keys; PEM files, keys 0600; nothing is overwritten without `--force`.

use crate::wire::Vin;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use time::OffsetDateTime;

#[derive(Debug, thiserror::Error)]
pub enum CertsError {
    #[error("{0}")]
    Invalid(String),
    #[error("cannot generate or sign: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} exists; pass --force to replace it")]
    Exists(String),
}

/// From when to when a certificate is valid.
#[derive(Debug, Clone, Copy)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From an hour ago (clocks of devices drift) for `days`.
    pub fn days(days: u32) -> Validity {
        let now = OffsetDateTime::now_utc();
        Validity {
            not_before: now - time::Duration::hours(1),
            not_after: now + time::Duration::days(i64::from(days)),
        }
    }
}

/// A certificate and its private key, PEM.
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

/// A CA able to sign: its certificate and key.
pub struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl Ca {
    pub fn from_pem(cert_pem: &str, key_pem: &str) -> Result<Ca, CertsError> {
        let key =
            KeyPair::from_pem(key_pem).map_err(|e| CertsError::Invalid(format!("CA key: {e}")))?;
        let params = CertificateParams::from_ca_cert_pem(cert_pem)
            .map_err(|e| CertsError::Invalid(format!("CA certificate: {e}")))?;
        // Re-signing the parsed parameters gives an issuer with the CA's own name and key
        // identifier; this copy is never written out.
        let cert = params.self_signed(&key)?;
        Ok(Ca { cert, key })
    }

    pub fn load(cert: &Path, key: &Path) -> Result<Ca, CertsError> {
        Ca::from_pem(&read(cert)?, &read(key)?)
    }
}

fn read(path: &Path) -> Result<String, CertsError> {
    std::fs::read_to_string(path).map_err(|source| CertsError::Io {
        path: path.display().to_string(),
        source,
    })
}

fn params(common_name: &str, validity: Validity) -> Result<CertificateParams, CertsError> {
    let mut p = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    p.distinguished_name = dn;
    p.not_before = validity.not_before;
    p.not_after = validity.not_after;
    if validity.not_after <= validity.not_before {
        return Err(CertsError::Invalid("validity ends before it begins".into()));
    }
    // 16 random bytes, top bit clear: a positive serial no other certificate shares.
    let mut serial: [u8; 16] = rand::random();
    serial[0] &= 0x7f;
    p.serial_number = Some(SerialNumber::from_slice(&serial));
    p.use_authority_key_identifier_extension = true;
    Ok(p)
}

fn key() -> Result<KeyPair, CertsError> {
    Ok(KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?)
}

/// A self-signed fleet CA that may sign end-entity certificates only (path length 0).
pub fn new_ca(common_name: &str, validity: Validity) -> Result<Issued, CertsError> {
    let mut p = params(common_name, validity)?;
    p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let key = key()?;
    let cert = p.self_signed(&key)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// A vehicle's client certificate: CN is the VIN, usable for client authentication only.
pub fn vehicle(ca: &Ca, vin: &Vin, validity: Validity) -> Result<Issued, CertsError> {
    let mut p = params(vin.as_str(), validity)?;
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    sign(p, ca)
}

/// A service certificate: CN `name`, the given DNS names and addresses, for both ends of a
/// connection (the service's client identity at the broker; a server's certificate).
pub fn service(
    ca: &Ca,
    name: &str,
    dns: &[String],
    ips: &[IpAddr],
    validity: Validity,
) -> Result<Issued, CertsError> {
    let mut p = params(name, validity)?;
    p.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    p.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    for d in dns {
        let name = d
            .clone()
            .try_into()
            .map_err(|_| CertsError::Invalid(format!("{d:?} is not a DNS name")))?;
        p.subject_alt_names.push(SanType::DnsName(name));
    }
    p.subject_alt_names
        .extend(ips.iter().map(|ip| SanType::IpAddress(*ip)));
    sign(p, ca)
}

fn sign(p: CertificateParams, ca: &Ca) -> Result<Issued, CertsError> {
    let key = key()?;
    let cert = p.signed_by(&key, &ca.cert, &ca.key)?;
    Ok(Issued {
        cert_pem: cert.pem(),
        key_pem: key.serialize_pem(),
    })
}

/// Writes `<stem>.pem` (0644) and `<stem>.key` (0600) into `dir`; refuses to replace either
/// unless `force`. Returns both paths.
pub fn write(
    dir: &Path,
    stem: &str,
    issued: &Issued,
    force: bool,
) -> Result<(PathBuf, PathBuf), CertsError> {
    let io = |path: &Path| {
        let path = path.display().to_string();
        move |source| CertsError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let cert = dir.join(format!("{stem}.pem"));
    let key = dir.join(format!("{stem}.key"));
    if !force {
        for path in [&cert, &key] {
            if path.exists() {
                return Err(CertsError::Exists(path.display().to_string()));
            }
        }
    }
    write_file(&key, issued.key_pem.as_bytes(), 0o600).map_err(io(&key))?;
    write_file(&cert, issued.cert_pem.as_bytes(), 0o644).map_err(io(&cert))?;
    Ok((cert, key))
}

/// Writes through a temporary file renamed into place, created with `mode` (never readable
/// by others, even for an instant).
fn write_file(path: &Path, data: &[u8], mode: u32) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, mode);
    let mut file = options.open(&tmp)?;
    #[cfg(unix)]
    std::fs::set_permissions(&tmp, std::os::unix::fs::PermissionsExt::from_mode(mode))?;
    file.write_all(data)?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// `aftercare certs …`
#[derive(Debug, clap::Subcommand)]
pub enum CertsCommand {
    /// Create the fleet CA: <dir>/ca.pem and <dir>/ca.key (keep the key offline).
    Ca {
        #[command(flatten)]
        out: Out,
        #[arg(long, default_value = "Aftercare fleet CA")]
        name: String,
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// A vehicle's client certificate, CN = VIN: <dir>/<VIN>.pem and .key.
    Vehicle {
        #[command(flatten)]
        out: Out,
        #[arg(long)]
        vin: String,
        #[arg(long, default_value_t = 730)]
        days: u32,
    },
    /// A service certificate (client and server use), CN = name: <dir>/<name>.pem and .key.
    Service {
        #[command(flatten)]
        out: Out,
        /// The common name; `aftercare` is the identity the broker ACL gives the service.
        #[arg(long, default_value = "aftercare")]
        name: String,
        /// DNS names the certificate is valid for as a server (repeatable).
        #[arg(long)]
        dns: Vec<String>,
        /// IP addresses it is valid for as a server (repeatable).
        #[arg(long)]
        ip: Vec<IpAddr>,
        #[arg(long, default_value_t = 730)]
        days: u32,
    },
}

#[derive(Debug, clap::Args)]
pub struct Out {
    /// Where certificates are written, and where the CA is found.
    #[arg(long, default_value = "certs")]
    dir: PathBuf,
    /// The CA certificate that signs (default <dir>/ca.pem).
    #[arg(long)]
    ca_cert: Option<PathBuf>,
    /// The CA key that signs (default <dir>/ca.key).
    #[arg(long)]
    ca_key: Option<PathBuf>,
    /// Replace existing files.
    #[arg(long)]
    force: bool,
}

impl Out {
    fn ca(&self) -> Result<Ca, CertsError> {
        let cert = self
            .ca_cert
            .clone()
            .unwrap_or_else(|| self.dir.join("ca.pem"));
        let key = self
            .ca_key
            .clone()
            .unwrap_or_else(|| self.dir.join("ca.key"));
        Ca::load(&cert, &key)
    }
}

/// Runs a `certs` command; returns the certificate and key paths written.
pub fn run(command: &CertsCommand) -> Result<(PathBuf, PathBuf), CertsError> {
    match command {
        CertsCommand::Ca { out, name, days } => write(
            &out.dir,
            "ca",
            &new_ca(name, Validity::days(*days))?,
            out.force,
        ),
        CertsCommand::Vehicle { out, vin, days } => {
            let vin = Vin::parse(vin).map_err(|e| CertsError::Invalid(e.to_string()))?;
            let issued = vehicle(&out.ca()?, &vin, Validity::days(*days))?;
            write(&out.dir, vin.as_str(), &issued, out.force)
        }
        CertsCommand::Service {
            out,
            name,
            dns,
            ip,
            days,
        } => {
            if name.is_empty()
                || !name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
                || name.starts_with('.')
            {
                return Err(CertsError::Invalid(format!(
                    "--name {name:?}: letters, digits, '-', '_' and '.' only (it names the files)"
                )));
            }
            let issued = service(&out.ca()?, name, dns, ip, Validity::days(*days))?;
            write(&out.dir, name, &issued, out.force)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_private_and_never_replaced_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let ca = new_ca("test CA", Validity::days(10)).unwrap();
        let (cert, key) = write(dir.path(), "ca", &ca, false).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&key), 0o600);
        assert_eq!(mode(&cert), 0o644);
        let before = std::fs::read(&key).unwrap();
        let again = new_ca("test CA", Validity::days(10)).unwrap();
        assert!(matches!(
            write(dir.path(), "ca", &again, false),
            Err(CertsError::Exists(_))
        ));
        assert_eq!(std::fs::read(&key).unwrap(), before, "kept without --force");
        write(dir.path(), "ca", &again, true).unwrap();
        assert_ne!(
            std::fs::read(&key).unwrap(),
            before,
            "replaced with --force"
        );
        assert_eq!(mode(&key), 0o600);
    }

    #[test]
    fn issued_certificates_chain_to_the_ca_and_name_the_vin() {
        let ca_pem = new_ca("test CA", Validity::days(10)).unwrap();
        let ca = Ca::from_pem(&ca_pem.cert_pem, &ca_pem.key_pem).unwrap();
        let vin = Vin::parse("1HGCM82633A004352").unwrap();
        let v = vehicle(&ca, &vin, Validity::days(5)).unwrap();
        let params = CertificateParams::from_ca_cert_pem(&v.cert_pem).unwrap();
        let cn = params.distinguished_name.get(&DnType::CommonName).unwrap();
        assert_eq!(cn, &rcgen::DnValue::Utf8String(vin.as_str().to_owned()));
        // The vehicle's certificate verifies against the CA as a client certificate.
        let roots = {
            let mut r = rustls::RootCertStore::empty();
            for c in rustls::pki_types::CertificateDer::pem_slice_iter(ca_pem.cert_pem.as_bytes()) {
                r.add(c.unwrap()).unwrap();
            }
            std::sync::Arc::new(r)
        };
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            roots,
            crate::tls::provider(),
        )
        .build()
        .unwrap();
        use rustls::pki_types::pem::PemObject;
        let leaf =
            rustls::pki_types::CertificateDer::from_pem_slice(v.cert_pem.as_bytes()).unwrap();
        verifier
            .verify_client_cert(&leaf, &[], rustls::pki_types::UnixTime::now())
            .expect("vehicle certificate chains to the fleet CA");
    }
}
