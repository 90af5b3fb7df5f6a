//! Signed checkpoints: C2SP signed-note (Ed25519) carrying a C2SP tlog-checkpoint body.
//!
//! Start at [`Checkpoint`] (origin, tree size, root), [`Signer`] and [`Verifier`]. The wire
//! formats are byte-compatible with Go's `golang.org/x/mod/sumdb/note` and every C2SP verifier:
//!
//! ```text
//! <origin>\n<size>\n<base64 root>\n[<extension>\n ...]   ← body, signed exactly as is
//! \n                                                     ← separator
//! — <key name> <base64(key id ‖ Ed25519 signature)>\n    ← one line per signature (U+2014)
//! ```
//!
//! Key id = first 4 bytes (big-endian) of SHA-256(name ‖ `\n` ‖ 0x01 ‖ public key).
//! Key texts: `<name>+<id hex>+<base64(0x01 ‖ public key)>` for verifiers and
//! `PRIVATE+KEY+<name>+<id hex>+<base64(0x01 ‖ seed)>` for signers.
//!
//! Deliberately stricter than Go's `note.Open` (documented where it happens): bodies may not
//! contain blank lines, every signature line by the verifier's key must verify (Go checks
//! only the first), and verification uses strict Ed25519 (no malleable or weak-key signatures).

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine as _;
use ed25519_dalek::{Signature, Signer as _, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};

use crate::merkle::Hash;

/// Largest signed note accepted or produced, in bytes (a defensive cap: checkpoints are
/// ~100 bytes plus ~100 per signature, so only hostile input comes near it).
pub const NOTE_BYTES_MAX: usize = 1024 * 1024;
/// Most signature lines a note may carry (the cap Go's `note.Open` enforces).
pub const NOTE_SIGNATURES_MAX: usize = 100;

/// Algorithm byte of Ed25519 keys in key ids and key texts (C2SP signed-note).
const ALG_ED25519: u8 = 0x01;
/// Prefix of every signature line: an em dash (U+2014) and a space.
const SIGNATURE_PREFIX: &str = "\u{2014} ";
/// Prefix of signer key texts.
const PRIVATE_KEY_PREFIX: &str = "PRIVATE+KEY+";

/// Why a key, note or checkpoint was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NoteError {
    /// A key name breaks the C2SP rules.
    #[error("key name {name:?} is invalid: {reason} (a key name is non-empty UTF-8 without spaces or '+')")]
    KeyName { name: String, reason: &'static str },
    /// A key text does not have the expected shape.
    #[error("key text is malformed: {0}")]
    KeyText(String),
    /// A key text's id does not match its name and key.
    #[error("key text for {name:?} states key id {stated:08x} but its name and key give {computed:08x}: the text was altered or mixes two keys")]
    KeyIdMismatch {
        name: String,
        stated: u32,
        computed: u32,
    },
    /// The operating system's random source failed.
    #[error("cannot generate a key: the system random source failed: {0}")]
    Randomness(String),
    /// A note body breaks the C2SP rules.
    #[error("note body is invalid: {0}")]
    Body(String),
    /// A note is larger than [`NOTE_BYTES_MAX`].
    #[error("note is {bytes} bytes, more than the {max} bytes allowed")]
    TooLarge { bytes: usize, max: usize },
    /// A note has more than [`NOTE_SIGNATURES_MAX`] signature lines.
    #[error("note has more than {max} signature lines")]
    TooManySignatures { max: usize },
    /// A signed note's layout is wrong.
    #[error("signed note is malformed: {0}")]
    Malformed(String),
    /// A signature by the trusted key does not verify.
    #[error("signature by key {name}+{key_id:08x} does not verify: the text was altered or signed by another key")]
    BadSignature { name: String, key_id: u32 },
    /// No signature line is by the trusted key.
    #[error("note has no signature by key {name}+{key_id:08x} (it is signed by: {found})")]
    NotSignedByKey {
        name: String,
        key_id: u32,
        found: String,
    },
    /// A checkpoint body breaks C2SP tlog-checkpoint.
    #[error("checkpoint is malformed: {0}")]
    Checkpoint(String),
}

/// Checks a key name: non-empty, no Unicode white space, no '+' (C2SP signed-note).
pub fn validate_key_name(name: &str) -> Result<(), NoteError> {
    let reason = if name.is_empty() {
        "it is empty"
    } else if name.chars().any(char::is_whitespace) {
        "it contains white space"
    } else if name.contains('+') {
        "it contains '+'"
    } else if name.chars().any(char::is_control) {
        "it contains a control character"
    } else {
        return Ok(());
    };
    Err(NoteError::KeyName {
        name: name.to_string(),
        reason,
    })
}

/// C2SP key id of an Ed25519 key: SHA-256(name ‖ '\n' ‖ 0x01 ‖ public key)[..4], big-endian.
fn key_id(name: &str, public: &VerifyingKey) -> u32 {
    let mut h = Sha256::new();
    h.update(name.as_bytes());
    h.update(b"\n");
    h.update([ALG_ED25519]);
    h.update(public.as_bytes());
    let digest = h.finalize();
    u32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// Splits `<name>+<id hex>+<base64(0x01 ‖ 32 bytes)>` (splitting on the first two '+' only,
/// since base64 may contain '+') and checks each field's shape.
fn parse_key_fields(text: &str) -> Result<(&str, u32, [u8; 32]), NoteError> {
    let mut fields = text.splitn(3, '+');
    let (Some(name), Some(id_hex), Some(key_b64)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err(NoteError::KeyText(format!(
            "{text:?} does not have the three '+'-separated fields name+id+key"
        )));
    };
    validate_key_name(name)?;
    if id_hex.len() != 8 || !id_hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(NoteError::KeyText(format!(
            "key id {id_hex:?} is not 8 hex digits"
        )));
    }
    let id = u32::from_str_radix(id_hex, 16)
        .map_err(|_| NoteError::KeyText(format!("key id {id_hex:?} is not 8 hex digits")))?;
    let raw = BASE64
        .decode(key_b64)
        .map_err(|e| NoteError::KeyText(format!("key {key_b64:?} is not standard base64: {e}")))?;
    match raw.split_first() {
        Some((&ALG_ED25519, key)) => {
            let key: [u8; 32] = key.try_into().map_err(|_| {
                NoteError::KeyText(format!(
                    "Ed25519 key is {} bytes after the algorithm byte, it must be 32",
                    key.len()
                ))
            })?;
            Ok((name, id, key))
        }
        Some((alg, _)) => Err(NoteError::KeyText(format!(
            "algorithm byte is 0x{alg:02x}; only Ed25519 (0x01) is supported"
        ))),
        None => Err(NoteError::KeyText("key is empty".to_string())),
    }
}

fn key_field(bytes: &[u8; 32]) -> String {
    let mut raw = [0u8; 33];
    raw[0] = ALG_ED25519;
    raw[1..].copy_from_slice(bytes);
    BASE64.encode(raw)
}

/// A named Ed25519 signing key (a log's or a node's).
#[derive(Clone)]
pub struct Signer {
    name: String,
    key_id: u32,
    key: SigningKey,
}

impl std::fmt::Debug for Signer {
    // Never print the seed: Debug output ends up in logs.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({}+{:08x})", self.name, self.key_id)
    }
}

impl Signer {
    /// A new key named `name`, seeded from the operating system's random source.
    pub fn generate(name: &str) -> Result<Signer, NoteError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(|e| NoteError::Randomness(e.to_string()))?;
        Signer::from_seed(name, seed)
    }

    /// The key named `name` with this 32-byte Ed25519 seed.
    pub fn from_seed(name: &str, seed: [u8; 32]) -> Result<Signer, NoteError> {
        validate_key_name(name)?;
        let key = SigningKey::from_bytes(&seed);
        let key_id = key_id(name, &key.verifying_key());
        Ok(Signer {
            name: name.to_string(),
            key_id,
            key,
        })
    }

    /// Parses `PRIVATE+KEY+<name>+<id hex>+<base64(0x01 ‖ seed)>`.
    pub fn from_key_text(text: &str) -> Result<Signer, NoteError> {
        let rest = text
            .trim_end()
            .strip_prefix(PRIVATE_KEY_PREFIX)
            .ok_or_else(|| {
                NoteError::KeyText(format!(
                    "a signer key text starts with {PRIVATE_KEY_PREFIX:?}"
                ))
            })?;
        let (name, stated, seed) = parse_key_fields(rest)?;
        let signer = Signer::from_seed(name, seed)?;
        if signer.key_id != stated {
            return Err(NoteError::KeyIdMismatch {
                name: name.to_string(),
                stated,
                computed: signer.key_id,
            });
        }
        Ok(signer)
    }

    /// The signer key text (secret: store it like a password).
    pub fn to_key_text(&self) -> String {
        let seed = self.key.to_bytes();
        format!(
            "{PRIVATE_KEY_PREFIX}{}+{:08x}+{}",
            self.name,
            self.key_id,
            key_field(&seed)
        )
    }

    /// The matching public key.
    pub fn verifier(&self) -> Verifier {
        Verifier {
            name: self.name.clone(),
            key_id: self.key_id,
            key: self.key.verifying_key(),
        }
    }

    /// Ed25519 signature of `msg` (deterministic).
    pub fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.key.sign(msg).to_bytes()
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The C2SP key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }

    /// This key's signature line over `body`: `— <name> <base64(key id ‖ signature)>\n`.
    /// The body is not checked; use [`sign_note`] for untrusted bodies.
    pub fn signature_line(&self, body: &str) -> String {
        let mut raw = [0u8; 68];
        raw[..4].copy_from_slice(&self.key_id.to_be_bytes());
        raw[4..].copy_from_slice(&self.sign(body.as_bytes()));
        format!("{SIGNATURE_PREFIX}{} {}\n", self.name, BASE64.encode(raw))
    }
}

/// A named Ed25519 public key that checks signatures.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verifier {
    name: String,
    key_id: u32,
    key: VerifyingKey,
}

impl Verifier {
    /// Parses `<name>+<id hex>+<base64(0x01 ‖ public key)>`.
    pub fn from_key_text(text: &str) -> Result<Verifier, NoteError> {
        let (name, stated, bytes) = parse_key_fields(text.trim_end())?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| {
            NoteError::KeyText("the Ed25519 public key is not a valid curve point".to_string())
        })?;
        let computed = key_id(name, &key);
        if computed != stated {
            return Err(NoteError::KeyIdMismatch {
                name: name.to_string(),
                stated,
                computed,
            });
        }
        Ok(Verifier {
            name: name.to_string(),
            key_id: stated,
            key,
        })
    }

    /// The verifier key text (public).
    pub fn to_key_text(&self) -> String {
        format!(
            "{}+{:08x}+{}",
            self.name,
            self.key_id,
            key_field(self.key.as_bytes())
        )
    }

    /// Checks an Ed25519 signature of `msg` (strict: rejects malleable signatures and weak keys).
    pub fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> Result<(), NoteError> {
        self.key
            .verify_strict(msg, &Signature::from_bytes(sig))
            .map_err(|_| NoteError::BadSignature {
                name: self.name.clone(),
                key_id: self.key_id,
            })
    }

    /// The key name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The C2SP key id.
    pub fn key_id(&self) -> u32 {
        self.key_id
    }
}

/// Checks a note body: non-empty, ends in '\n', no blank line, no control characters but '\n',
/// at most [`NOTE_BYTES_MAX`] bytes. Blank lines are legal C2SP text but would make the body
/// ambiguous to readers that split at the first blank line, so Assay neither signs nor opens them.
pub fn validate_body(body: &str) -> Result<(), NoteError> {
    if body.len() > NOTE_BYTES_MAX {
        return Err(NoteError::TooLarge {
            bytes: body.len(),
            max: NOTE_BYTES_MAX,
        });
    }
    if body.is_empty() {
        return Err(NoteError::Body("it is empty".to_string()));
    }
    if !body.ends_with('\n') {
        return Err(NoteError::Body(
            "it does not end with a newline".to_string(),
        ));
    }
    let lines = &body[..body.len() - 1];
    if let Some(line) = lines.split('\n').position(str::is_empty) {
        return Err(NoteError::Body(format!("line {} is empty", line + 1)));
    }
    if let Some(c) = body.chars().find(|&c| c != '\n' && c.is_control()) {
        return Err(NoteError::Body(format!(
            "it contains control character {c:?}"
        )));
    }
    Ok(())
}

/// Signs `body` as a C2SP signed note by one key.
pub fn sign_note(body: &str, signer: &Signer) -> Result<String, NoteError> {
    validate_body(body)?;
    let note = assemble(body, signer);
    if note.len() > NOTE_BYTES_MAX {
        return Err(NoteError::TooLarge {
            bytes: note.len(),
            max: NOTE_BYTES_MAX,
        });
    }
    Ok(note)
}

fn assemble(body: &str, signer: &Signer) -> String {
    let line = signer.signature_line(body);
    let mut note = String::with_capacity(body.len() + 1 + line.len());
    note.push_str(body);
    note.push('\n');
    note.push_str(&line);
    note
}

/// One signature line of a note, not yet verified.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NoteSignature {
    /// Key name on the line.
    pub name: String,
    /// Key id (first 4 bytes of the decoded signature field).
    pub key_id: u32,
    /// Signature bytes after the key id (64 for Ed25519).
    pub signature: Vec<u8>,
}

/// Splits a signed note into its body (final newline included) and its signature lines,
/// checking the layout and limits but no signature.
pub fn split_note(note: &str) -> Result<(&str, Vec<NoteSignature>), NoteError> {
    if note.len() > NOTE_BYTES_MAX {
        return Err(NoteError::TooLarge {
            bytes: note.len(),
            max: NOTE_BYTES_MAX,
        });
    }
    if let Some(c) = note.chars().find(|&c| c != '\n' && c.is_control()) {
        return Err(NoteError::Malformed(format!(
            "it contains control character {c:?}"
        )));
    }
    // Signature lines never contain a blank line, so the last one separates body and signatures.
    let split = note.rfind("\n\n").ok_or_else(|| {
        NoteError::Malformed("no blank line separates the text from the signatures".to_string())
    })?;
    let (body, sigs) = (&note[..split + 1], &note[split + 2..]);
    validate_body(body)?;
    let Some(sigs) = sigs.strip_suffix('\n') else {
        return Err(NoteError::Malformed(
            "the signature block is empty or does not end with a newline".to_string(),
        ));
    };
    let mut out = Vec::new();
    for (i, line) in sigs.split('\n').enumerate() {
        if i == NOTE_SIGNATURES_MAX {
            return Err(NoteError::TooManySignatures {
                max: NOTE_SIGNATURES_MAX,
            });
        }
        out.push(parse_signature_line(i + 1, line)?);
    }
    Ok((body, out))
}

fn parse_signature_line(number: usize, line: &str) -> Result<NoteSignature, NoteError> {
    let bad = |what: &str| NoteError::Malformed(format!("signature line {number} {what}"));
    let rest = line
        .strip_prefix(SIGNATURE_PREFIX)
        .ok_or_else(|| bad("does not start with \"— \""))?;
    let (name, b64) = rest
        .split_once(' ')
        .ok_or_else(|| bad("has no space before the signature"))?;
    validate_key_name(name)?;
    let raw = BASE64
        .decode(b64)
        .map_err(|_| bad("has a signature that is not standard base64"))?;
    if raw.len() < 5 {
        return Err(bad("has a signature shorter than a key id and one byte"));
    }
    Ok(NoteSignature {
        name: name.to_string(),
        key_id: u32::from_be_bytes([raw[0], raw[1], raw[2], raw[3]]),
        signature: raw[4..].to_vec(),
    })
}

/// Verifies a signed note with `verifier` and returns its body. Signatures by other keys are
/// ignored (C2SP); it fails if none is by this key or any by this key does not verify.
pub fn open_note(note: &str, verifier: &Verifier) -> Result<String, NoteError> {
    let (body, sigs) = split_note(note)?;
    let mut verified = 0;
    for sig in sigs
        .iter()
        .filter(|s| s.name == verifier.name && s.key_id == verifier.key_id)
    {
        let bytes: &[u8; 64] = sig.signature.as_slice().try_into().map_err(|_| {
            NoteError::Malformed(format!(
                "signature by key {}+{:08x} is {} bytes, an Ed25519 signature is 64",
                sig.name,
                sig.key_id,
                sig.signature.len()
            ))
        })?;
        verifier.verify(body.as_bytes(), bytes)?;
        verified += 1;
    }
    if verified == 0 {
        let found: Vec<String> = sigs
            .iter()
            .map(|s| format!("{}+{:08x}", s.name, s.key_id))
            .collect();
        return Err(NoteError::NotSignedByKey {
            name: verifier.name.clone(),
            key_id: verifier.key_id,
            found: found.join(", "),
        });
    }
    Ok(body.to_string())
}

/// A C2SP tlog-checkpoint: the log's identity, tree size and root, plus extension lines.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// Log identity (first line), conventionally the log's key name.
    pub origin: String,
    /// Number of entries in the tree.
    pub size: u64,
    /// RFC 6962 root over the first `size` entries.
    pub root: Hash,
    /// Optional extra lines after the root, without their newlines.
    pub extensions: Vec<String>,
}

impl Checkpoint {
    /// A checkpoint without extensions, checking the origin.
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Checkpoint, NoteError> {
        let cp = Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions: Vec::new(),
        };
        cp.validate()?;
        Ok(cp)
    }

    /// Checks that origin and extensions are non-empty lines without control characters.
    pub fn validate(&self) -> Result<(), NoteError> {
        let line_ok = |s: &str| !s.is_empty() && !s.chars().any(char::is_control);
        if !line_ok(&self.origin) {
            return Err(NoteError::Checkpoint(format!(
                "origin {:?} must be a non-empty line without control characters",
                self.origin
            )));
        }
        if let Some(i) = self.extensions.iter().position(|e| !line_ok(e)) {
            return Err(NoteError::Checkpoint(format!(
                "extension {} ({:?}) must be a non-empty line without control characters",
                i + 1,
                self.extensions[i]
            )));
        }
        Ok(())
    }

    /// The body text: origin, decimal size, base64 root and extensions, each ending in '\n'.
    pub fn body(&self) -> String {
        let mut body = format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            BASE64.encode(self.root)
        );
        for e in &self.extensions {
            body.push_str(e);
            body.push('\n');
        }
        body
    }

    /// Parses a body written by [`Checkpoint::body`] (strictly: canonical decimal size,
    /// canonical base64 of exactly 32 bytes, final newline).
    pub fn parse_body(body: &str) -> Result<Checkpoint, NoteError> {
        let bad = |what: String| NoteError::Checkpoint(what);
        let text = body
            .strip_suffix('\n')
            .ok_or_else(|| bad("the body does not end with a newline".into()))?;
        let mut lines = text.split('\n');
        let (Some(origin), Some(size), Some(root)) = (lines.next(), lines.next(), lines.next())
        else {
            return Err(bad(
                "the body needs three lines: origin, tree size, root hash".into(),
            ));
        };
        let canonical = !size.is_empty()
            && size.bytes().all(|b| b.is_ascii_digit())
            && (size == "0" || !size.starts_with('0'));
        let size = match size.parse::<u64>() {
            Ok(n) if canonical => n,
            _ => return Err(bad(format!("tree size {size:?} is not a decimal number without leading zeros that fits in 64 bits"))),
        };
        let root: Hash = BASE64
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| {
                bad(format!(
                    "root hash {root:?} is not the standard base64 of 32 bytes"
                ))
            })?;
        let cp = Checkpoint {
            origin: origin.to_string(),
            size,
            root,
            extensions: lines.map(String::from).collect(),
        };
        cp.validate()?;
        Ok(cp)
    }

    /// The checkpoint as a note signed by `signer`. The checkpoint must be valid
    /// ([`Checkpoint::validate`]); [`Checkpoint::new`] and [`Checkpoint::parse_body`] ensure it.
    pub fn sign(&self, signer: &Signer) -> String {
        debug_assert_eq!(self.validate(), Ok(()), "signing an invalid checkpoint");
        assemble(&self.body(), signer)
    }
}

/// Verifies a signed checkpoint with `verifier` and parses its body.
pub fn open_checkpoint(note: &str, verifier: &Verifier) -> Result<Checkpoint, NoteError> {
    Checkpoint::parse_body(&open_note(note, verifier)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use expect_test::{expect, Expect};
    use serde_json::Value;

    const VECTORS: &str = include_str!("../tests/data/tlog-vectors.json");

    fn vectors() -> Value {
        serde_json::from_str(VECTORS).expect("vector file is JSON")
    }

    fn seed(v: &Value) -> [u8; 32] {
        let hex_seed = v["signed_note"]["ed25519_seed_hex"].as_str().unwrap();
        hex::decode(hex_seed).unwrap().try_into().unwrap()
    }

    fn vector_signer() -> Signer {
        Signer::from_seed("assay.test/vectors", seed(&vectors())).unwrap()
    }

    fn vector_checkpoint() -> Checkpoint {
        let v = vectors();
        let root = hex::decode(v["roots_hex"]["8"].as_str().unwrap()).unwrap();
        Checkpoint::new("assay.test/vectors", 8, root.try_into().unwrap()).unwrap()
    }

    fn err_text<T: std::fmt::Debug>(r: Result<T, NoteError>) -> String {
        match r {
            Ok(v) => format!("ok: {v:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn vector_keys_and_signed_checkpoint_byte_for_byte() {
        let v = vectors();
        let sn = &v["signed_note"];
        let signer = vector_signer();
        assert_eq!(signer.to_key_text(), sn["signer_key"].as_str().unwrap());
        assert_eq!(
            signer.verifier().to_key_text(),
            sn["verifier_key"].as_str().unwrap()
        );
        assert_eq!(signer.key_id(), 0x77ac_bc02);

        let parsed = Signer::from_key_text(sn["signer_key"].as_str().unwrap()).unwrap();
        assert_eq!(parsed.to_key_text(), signer.to_key_text());
        let verifier = Verifier::from_key_text(sn["verifier_key"].as_str().unwrap()).unwrap();
        assert_eq!(verifier, signer.verifier());

        let want = sn["checkpoint_note"].as_str().unwrap();
        let cp = vector_checkpoint();
        assert_eq!(cp.sign(&signer), want);
        assert_eq!(sign_note(&cp.body(), &signer).unwrap(), want);
        assert_eq!(open_checkpoint(want, &verifier), Ok(cp.clone()));
        assert_eq!(open_note(want, &verifier), Ok(cp.body()));
        expect![[r#"
            assay.test/vectors
            8
            XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=
        "#]]
        .assert_eq(&cp.body());
    }

    #[test]
    fn generated_keys_round_trip_and_differ() {
        let a = Signer::generate("log.example/a").unwrap();
        let b = Signer::generate("log.example/a").unwrap();
        assert_ne!(
            a.to_key_text(),
            b.to_key_text(),
            "two generated keys are equal"
        );
        let a2 = Signer::from_key_text(&a.to_key_text()).unwrap();
        let va = Verifier::from_key_text(&a.verifier().to_key_text()).unwrap();
        let sig = a2.sign(b"msg");
        assert_eq!(va.verify(b"msg", &sig), Ok(()));
        assert!(va.verify(b"msh", &sig).is_err());
        assert!(b.verifier().verify(b"msg", &sig).is_err());
        assert_eq!(
            err_text(open_note(&sign_note("x\n", &a).unwrap(), &b.verifier())),
            format!(
                "note has no signature by key log.example/a+{:08x} (it is signed by: log.example/a+{:08x})",
                b.key_id(),
                a.key_id()
            )
        );
    }

    #[test]
    fn debug_does_not_print_the_seed() {
        let s = vector_signer();
        let dbg = format!("{s:?}");
        assert_eq!(dbg, "Signer(assay.test/vectors+77acbc02)");
    }

    fn check_key(text: &str, expect: Expect) {
        let signer = if text.starts_with(PRIVATE_KEY_PREFIX) {
            Signer::from_key_text(text).map(|s| s.to_key_text())
        } else {
            Verifier::from_key_text(text).map(|v| v.to_key_text())
        };
        expect.assert_eq(&match signer {
            Ok(t) => format!("ok {t}"),
            Err(e) => e.to_string(),
        });
    }

    #[test]
    fn key_texts() {
        check_key(
            "assay.test/vectors+77acbc02+AXm1Vi6P5lT5QHixEuipi6eQH4U65pW+1+DjkQutBJZk\n",
            expect!["ok assay.test/vectors+77acbc02+AXm1Vi6P5lT5QHixEuipi6eQH4U65pW+1+DjkQutBJZk"],
        );
        check_key(
            "assay.test/vectors+77acbc03+AXm1Vi6P5lT5QHixEuipi6eQH4U65pW+1+DjkQutBJZk",
            expect![[
                r#"key text for "assay.test/vectors" states key id 77acbc03 but its name and key give 77acbc02: the text was altered or mixes two keys"#
            ]],
        );
        check_key(
            "other+77acbc02+AXm1Vi6P5lT5QHixEuipi6eQH4U65pW+1+DjkQutBJZk",
            expect![[
                r#"key text for "other" states key id 77acbc02 but its name and key give fa3c7cf4: the text was altered or mixes two keys"#
            ]],
        );
        check_key(
            "assay.test/vectors+77acbc2+AXm1Vi6P5lT5QHixEuipi6eQH4U65pW+1+DjkQutBJZk",
            expect![[r#"key text is malformed: key id "77acbc2" is not 8 hex digits"#]],
        );
        check_key(
            "assay.test/vectors+77acbc02+Anm1Vi6P5lT5QHixEuipi6eQH4U65pW+1+DjkQutBJZk",
            expect![
                "key text is malformed: algorithm byte is 0x02; only Ed25519 (0x01) is supported"
            ],
        );
        check_key(
            "assay.test/vectors+77acbc02+AXm1Vi6P5lT5QHixEuipi6eQH4U65pW+1+DjkQutBJ",
            expect![[
                r#"key text is malformed: key "AXm1Vi6P5lT5QHixEuipi6eQH4U65pW+1+DjkQutBJ" is not standard base64: Invalid padding"#
            ]],
        );
        check_key(
            "assay.test/vectors+77acbc02+AXm1Vi6P5lT5QHixEuipi6eQH4U65pW+1+DjkQut",
            expect!["key text is malformed: Ed25519 key is 29 bytes after the algorithm byte, it must be 32"],
        );
        check_key(
            "assay.test/vectors+77acbc02",
            expect![[
                r#"key text is malformed: "assay.test/vectors+77acbc02" does not have the three '+'-separated fields name+id+key"#
            ]],
        );
        check_key(
            "+77acbc02+AXm1",
            expect![[
                r#"key name "" is invalid: it is empty (a key name is non-empty UTF-8 without spaces or '+')"#
            ]],
        );
        check_key(
            "PRIVATE+KEY+assay.test/vectors+77acbc02+AQECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g",
            expect!["ok PRIVATE+KEY+assay.test/vectors+77acbc02+AQECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g"],
        );
        check_key(
            "PRIVATE+KEY+assay.test/vectors+00000000+AQECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8g",
            expect![[
                r#"key text for "assay.test/vectors" states key id 00000000 but its name and key give 77acbc02: the text was altered or mixes two keys"#
            ]],
        );
        // A verifier text is not a signer text.
        assert!(Signer::from_key_text(
            "assay.test/vectors+77acbc02+AXm1Vi6P5lT5QHixEuipi6eQH4U65pW+1+DjkQutBJZk"
        )
        .is_err());
    }

    #[test]
    fn key_names() {
        let seed = [1u8; 32];
        let check = |name: &str| err_text(Signer::from_seed(name, seed).map(|s| s.key_id()));
        expect![[r#"
            "" -> key name "" is invalid: it is empty (a key name is non-empty UTF-8 without spaces or '+')
            "a b" -> key name "a b" is invalid: it contains white space (a key name is non-empty UTF-8 without spaces or '+')
            "a\u{a0}b" -> key name "a\u{a0}b" is invalid: it contains white space (a key name is non-empty UTF-8 without spaces or '+')
            "a\nb" -> key name "a\nb" is invalid: it contains white space (a key name is non-empty UTF-8 without spaces or '+')
            "a+b" -> key name "a+b" is invalid: it contains '+' (a key name is non-empty UTF-8 without spaces or '+')
            "a\u{7}b" -> key name "a\u{7}b" is invalid: it contains a control character (a key name is non-empty UTF-8 without spaces or '+')
            "log.example/ü" -> ok: 2604032861
        "#]]
        .assert_eq(
            &["", "a b", "a\u{a0}b", "a\nb", "a+b", "a\u{7}b", "log.example/ü"]
                .iter()
                .map(|n| format!("{n:?} -> {}\n", check(n)))
                .collect::<String>(),
        );
    }

    fn check_open(note: &str, expect: Expect) {
        let verifier = vector_signer().verifier();
        expect.assert_eq(&match open_note(note, &verifier) {
            Ok(body) => format!("ok {body:?}"),
            Err(e) => e.to_string(),
        });
    }

    #[test]
    fn open_note_cases() {
        let signer = vector_signer();
        let other = Signer::from_seed("other.example", [9u8; 32]).unwrap();
        let good = vectors()["signed_note"]["checkpoint_note"]
            .as_str()
            .unwrap()
            .to_string();
        let (body, our_line) = good.split_once("\n\n").unwrap();
        let body = format!("{body}\n");
        let other_line = other.signature_line(&body);
        // Same name, different key: must be treated as an unknown key, not verified.
        let impostor = Signer::from_seed("assay.test/vectors", [9u8; 32]).unwrap();
        let impostor_line = impostor.signature_line(&body);

        check_open(
            &good,
            expect![[
                r#"ok "assay.test/vectors\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n""#
            ]],
        );
        check_open(
            &format!("{body}\n{other_line}{our_line}"),
            expect![[
                r#"ok "assay.test/vectors\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n""#
            ]],
        );
        check_open(
            &format!("{body}\n{other_line}{impostor_line}"),
            expect!["note has no signature by key assay.test/vectors+77acbc02 (it is signed by: other.example+d210ddd3, assay.test/vectors+2a3189fc)"],
        );
        check_open(
            &good.replace("\n8\n", "\n9\n"),
            expect!["signature by key assay.test/vectors+77acbc02 does not verify: the text was altered or signed by another key"],
        );
        // A second, bad signature by the trusted key is rejected even after a good one.
        let forged = our_line.replace("d6y8", "d6y9");
        check_open(
            &format!("{body}\n{our_line}{forged}"),
            expect![[
                r#"ok "assay.test/vectors\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=\n""#
            ]],
        );
        check_open(
            &body,
            expect![
                "signed note is malformed: no blank line separates the text from the signatures"
            ],
        );
        check_open(
            good.trim_end(),
            expect!["signed note is malformed: the signature block is empty or does not end with a newline"],
        );
        check_open(
            &format!("{body}\n"),
            expect!["signed note is malformed: the signature block is empty or does not end with a newline"],
        );
        check_open(
            &good.replace('\u{2014}', "-"),
            expect![[r#"signed note is malformed: signature line 1 does not start with "— ""#]],
        );
        check_open(
            &good.replace("vectors d6y8", "vectors\td6y8"),
            expect!["signed note is malformed: it contains control character '\\t'"],
        );
        check_open(
            &good.replace("vectors d6y8", "vectors_d6y8"),
            expect!["signed note is malformed: signature line 1 has no space before the signature"],
        );
        check_open(
            &good.replace("d6y8ArVl", "d6y8ArV!"),
            expect!["signed note is malformed: signature line 1 has a signature that is not standard base64"],
        );
        check_open(
            &format!("{body}\n\u{2014} x AAAAAA==\n{our_line}\n"),
            expect!["note body is invalid: line 4 is empty"],
        );
        let short_sig = format!(
            "\u{2014} assay.test/vectors {}\n",
            BASE64.encode([0x77, 0xac, 0xbc, 0x02, 1, 2, 3])
        );
        check_open(
            &format!("{body}\n{short_sig}"),
            expect!["signed note is malformed: signature by key assay.test/vectors+77acbc02 is 3 bytes, an Ed25519 signature is 64"],
        );
        check_open(
            &format!("a\n\n{}", signer.signature_line("a\n\n")).replacen("a\n\n", "a\n\nb\n", 1),
            expect![[r#"signed note is malformed: signature line 1 does not start with "— ""#]],
        );
        check_open(
            &format!("\n\n{our_line}"),
            expect!["note body is invalid: line 1 is empty"],
        );
    }

    #[test]
    fn signature_count_limit_edge() {
        let signer = vector_signer();
        let body = "log\n";
        let other = Signer::from_seed("other.example", [9u8; 32]).unwrap();
        let filler = other.signature_line(body);
        let ours = signer.signature_line(body);
        let with = |n_other: usize| format!("{body}\n{}{ours}", filler.repeat(n_other));
        let verifier = signer.verifier();
        assert_eq!(
            open_note(&with(NOTE_SIGNATURES_MAX - 1), &verifier),
            Ok(body.to_string())
        );
        assert_eq!(
            open_note(&with(NOTE_SIGNATURES_MAX), &verifier),
            Err(NoteError::TooManySignatures {
                max: NOTE_SIGNATURES_MAX
            })
        );
    }

    #[test]
    fn note_size_limit_edge() {
        let signer = vector_signer();
        let overhead = sign_note("x\n", &signer).unwrap().len() - 2;
        // A body with one long line so the whole note is exactly NOTE_BYTES_MAX bytes.
        let body = format!("{}\n", "x".repeat(NOTE_BYTES_MAX - overhead - 1));
        let note = sign_note(&body, &signer).unwrap();
        assert_eq!(note.len(), NOTE_BYTES_MAX);
        assert_eq!(open_note(&note, &signer.verifier()), Ok(body.clone()));
        let body = format!("x{body}");
        assert_eq!(
            sign_note(&body, &signer),
            Err(NoteError::TooLarge {
                bytes: NOTE_BYTES_MAX + 1,
                max: NOTE_BYTES_MAX
            })
        );
        let note = format!("x{note}");
        assert_eq!(
            open_note(&note, &signer.verifier()),
            Err(NoteError::TooLarge {
                bytes: NOTE_BYTES_MAX + 1,
                max: NOTE_BYTES_MAX
            })
        );
    }

    #[test]
    fn sign_note_rejects_bad_bodies() {
        let signer = vector_signer();
        let out: String = ["", "no newline", "a\n\nb\n", "\n", "tab\there\n", "ok\n"]
            .iter()
            .map(|b| {
                format!(
                    "{b:?} -> {}\n",
                    err_text(sign_note(b, &signer).map(|n| n.len()))
                )
            })
            .collect();
        expect![[r#"
            "" -> note body is invalid: it is empty
            "no newline" -> note body is invalid: it does not end with a newline
            "a\n\nb\n" -> note body is invalid: line 2 is empty
            "\n" -> note body is invalid: line 1 is empty
            "tab\there\n" -> note body is invalid: it contains control character '\t'
            "ok\n" -> ok: 120
        "#]]
        .assert_eq(&out);
    }

    fn check_body(body: &str, expect: Expect) {
        expect.assert_eq(&match Checkpoint::parse_body(body) {
            Ok(cp) => {
                assert_eq!(cp.body(), body, "parse_body then body() must round-trip");
                format!(
                    "ok {} {} {} {:?}",
                    cp.origin,
                    cp.size,
                    hex::encode(cp.root),
                    cp.extensions
                )
            }
            Err(e) => e.to_string(),
        });
    }

    #[test]
    fn checkpoint_bodies() {
        let root = "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQyg=";
        check_body(
            &format!("o\n8\n{root}\n"),
            expect!["ok o 8 5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328 []"],
        );
        check_body(
            &format!("o\n0\n{root}\next one\next2\n"),
            expect![[
                r#"ok o 0 5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328 ["ext one", "ext2"]"#
            ]],
        );
        check_body(
            &format!("o\n18446744073709551615\n{root}\n"),
            expect!["ok o 18446744073709551615 5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328 []"],
        );
        check_body(
            &format!("o\n18446744073709551616\n{root}\n"),
            expect![[
                r#"checkpoint is malformed: tree size "18446744073709551616" is not a decimal number without leading zeros that fits in 64 bits"#
            ]],
        );
        check_body(
            &format!("o\n08\n{root}\n"),
            expect![[
                r#"checkpoint is malformed: tree size "08" is not a decimal number without leading zeros that fits in 64 bits"#
            ]],
        );
        check_body(
            &format!("o\n+8\n{root}\n"),
            expect![[
                r#"checkpoint is malformed: tree size "+8" is not a decimal number without leading zeros that fits in 64 bits"#
            ]],
        );
        check_body(
            &format!("o\n8\n{root}"),
            expect!["checkpoint is malformed: the body does not end with a newline"],
        );
        check_body(
            "o\n8\n",
            expect![
                "checkpoint is malformed: the body needs three lines: origin, tree size, root hash"
            ],
        );
        check_body(
            "o\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQw==\n",
            expect![[
                r#"checkpoint is malformed: root hash "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz+Nw7/RgQw==" is not the standard base64 of 32 bytes"#
            ]],
        );
        check_body(
            "o\n8\nXcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz-Nw7_RgQyg=\n",
            expect![[
                r#"checkpoint is malformed: root hash "XcnaeacGWamtVZy3Ad7ZoqudgjqtL0lgz-Nw7_RgQyg=" is not the standard base64 of 32 bytes"#
            ]],
        );
        check_body(
            &format!("\n8\n{root}\n"),
            expect![[
                r#"checkpoint is malformed: origin "" must be a non-empty line without control characters"#
            ]],
        );
        check_body(
            &format!("o\n8\n{root}\n\nx\n"),
            expect![[
                r#"checkpoint is malformed: extension 1 ("") must be a non-empty line without control characters"#
            ]],
        );
        assert!(Checkpoint::new("bad\norigin", 1, [0; 32]).is_err());
    }

    /// Runs the independent Go verifier (tests/interop) when TLOGCHECK names its binary:
    /// every leaf of the vector tree, and a consistency proof between two signed checkpoints.
    #[test]
    fn interop_with_go_tlogcheck_when_available() {
        let Some(bin) = std::env::var_os("TLOGCHECK") else {
            eprintln!("TLOGCHECK not set: skipping the Go interop check (tests/interop/build.sh builds it)");
            return;
        };
        use crate::merkle::{leaf_hash, MerkleTree};
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, bytes: &[u8]| {
            let p = dir.path().join(name);
            std::fs::write(&p, bytes).unwrap();
            p
        };
        let proof_json = |hashes: &[Hash]| {
            let list: Vec<String> = hashes
                .iter()
                .map(|h| format!("\"{}\"", BASE64.encode(h)))
                .collect();
            format!("{{\"hashes\":[{}]}}", list.join(","))
        };
        let run = |args: &[&std::ffi::OsStr]| {
            let out = std::process::Command::new(&bin)
                .args(args)
                .output()
                .unwrap();
            (
                out.status.code(),
                String::from_utf8_lossy(&out.stdout).to_string()
                    + &String::from_utf8_lossy(&out.stderr),
            )
        };
        let signer = vector_signer();
        let key = signer.verifier().to_key_text();
        let leaves: Vec<Vec<u8>> = vectors()["leaves_hex"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| hex::decode(l.as_str().unwrap()).unwrap())
            .collect();
        let tree = MerkleTree::from_leaves(leaves.iter().map(|l| leaf_hash(l)));
        let note8 = write("cp8", vector_checkpoint().sign(&signer).as_bytes());
        for (i, entry) in leaves.iter().enumerate() {
            let entry_file = write("entry", entry);
            let proof = write(
                "proof.json",
                proof_json(&tree.inclusion_proof(i as u64, 8).unwrap()).as_bytes(),
            );
            let idx = i.to_string();
            let (code, out) = run(&[
                key.as_ref(),
                note8.as_ref(),
                entry_file.as_ref(),
                idx.as_ref(),
                proof.as_ref(),
            ]);
            assert_eq!(code, Some(0), "leaf {i}: {out}");
            // The wrong index must fail in the Go verifier too.
            let wrong = ((i + 1) % 8).to_string();
            let (code, out) = run(&[
                key.as_ref(),
                note8.as_ref(),
                entry_file.as_ref(),
                wrong.as_ref(),
                proof.as_ref(),
            ]);
            assert_eq!(code, Some(1), "leaf {i} at wrong index: {out}");
        }
        for old in 1..8u64 {
            let cp =
                Checkpoint::new("assay.test/vectors", old, tree.root_at(old).unwrap()).unwrap();
            let note_old = write("cp-old", cp.sign(&signer).as_bytes());
            let proof = write(
                "cproof.json",
                proof_json(&tree.consistency_proof(old, 8).unwrap()).as_bytes(),
            );
            let (code, out) = run(&[
                "consistency".as_ref(),
                key.as_ref(),
                note_old.as_ref(),
                note8.as_ref(),
                proof.as_ref(),
            ]);
            assert_eq!(code, Some(0), "consistency {old} -> 8: {out}");
        }
        // A note signed by another key with the same name must be refused.
        let impostor = Signer::from_seed("assay.test/vectors", [9u8; 32]).unwrap();
        let forged = write("forged", vector_checkpoint().sign(&impostor).as_bytes());
        let entry_file = write("entry", &leaves[2]);
        let proof = write(
            "proof.json",
            proof_json(&tree.inclusion_proof(2, 8).unwrap()).as_bytes(),
        );
        let (code, out) = run(&[
            key.as_ref(),
            forged.as_ref(),
            entry_file.as_ref(),
            "2".as_ref(),
            proof.as_ref(),
        ]);
        assert_eq!(code, Some(1), "forged note: {out}");
    }
}
