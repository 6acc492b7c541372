//! Extracts the RSA public key (PKCS#1 DER, what ring verifies with) from a PEM certificate,
//! SPKI public key or PKCS#1 public key. A minimal DER walker: just enough structure to find
//! the SubjectPublicKeyInfo.

use base64::Engine;

pub fn rsa_public_key_from_pem(pem: &str) -> Result<Vec<u8>, String> {
    let (label, der) = pem_decode(pem)?;
    match label.as_str() {
        "CERTIFICATE" => {
            let (_, cert, _) = tlv(&der)?;
            let (_, tbs, _) = tlv(cert)?;
            let mut rest = tbs;
            // version [0] is optional; then serial, signature, issuer, validity, subject.
            let (tag, _, after) = tlv(rest)?;
            if tag == 0xA0 {
                rest = after;
            }
            for _ in 0..5 {
                rest = tlv(rest)?.2;
            }
            let (_, spki, _) = tlv(rest)?;
            from_spki(spki)
        }
        "PUBLIC KEY" => {
            let (_, spki, _) = tlv(&der)?;
            from_spki(spki)
        }
        "RSA PUBLIC KEY" => Ok(der),
        other => Err(format!("unsupported PEM block {other}")),
    }
}

/// SubjectPublicKeyInfo content: AlgorithmIdentifier, BIT STRING(RSAPublicKey).
fn from_spki(spki: &[u8]) -> Result<Vec<u8>, String> {
    let (_, _alg, rest) = tlv(spki)?;
    let (tag, bits, _) = tlv(rest)?;
    if tag != 0x03 || bits.is_empty() {
        return Err("SubjectPublicKeyInfo without a BIT STRING".into());
    }
    Ok(bits[1..].to_vec())
}

/// One DER element: (tag, content, rest).
fn tlv(data: &[u8]) -> Result<(u8, &[u8], &[u8]), String> {
    let err = || "truncated DER".to_string();
    let tag = *data.first().ok_or_else(err)?;
    let first = *data.get(1).ok_or_else(err)?;
    let (len, hdr) = if first < 0x80 {
        (first as usize, 2)
    } else {
        let n = (first & 0x7f) as usize;
        if n == 0 || n > 4 {
            return Err("unsupported DER length".into());
        }
        let bytes = data.get(2..2 + n).ok_or_else(err)?;
        (
            bytes.iter().fold(0usize, |a, b| (a << 8) | *b as usize),
            2 + n,
        )
    };
    let content = data.get(hdr..hdr + len).ok_or_else(err)?;
    Ok((tag, content, &data[hdr + len..]))
}

fn pem_decode(pem: &str) -> Result<(String, Vec<u8>), String> {
    let begin = pem.find("-----BEGIN ").ok_or("no PEM BEGIN line")?;
    let after = &pem[begin + 11..];
    let label_end = after.find("-----").ok_or("bad PEM BEGIN line")?;
    let label = after[..label_end].to_string();
    let body_start = label_end + 5;
    let end = after.find("-----END ").ok_or("no PEM END line")?;
    let b64: String = after[body_start..end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    let der = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .map_err(|e| format!("bad PEM base64: {e}"))?;
    Ok((label, der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_and_public_key_give_the_same_key() {
        let a = rsa_public_key_from_pem(crate::seed::TEST_JWT_CERT_PEM).unwrap();
        let b = rsa_public_key_from_pem(crate::seed::TEST_JWT_PUBLIC_KEY_PEM).unwrap();
        assert_eq!(a, b);
        assert_eq!(a[0], 0x30);
        assert!(rsa_public_key_from_pem("nonsense").is_err());
    }
}
