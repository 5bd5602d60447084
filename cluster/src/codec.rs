//! The one bincode configuration used for log entries, snapshots, values and peer RPC.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// Standard config (varint integers, little endian) with a decode limit so a hostile or
/// corrupt length prefix cannot make us allocate without bound.
const MAX_DECODE_BYTES: usize = 256 * 1024 * 1024;

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<MAX_DECODE_BYTES>()
}

#[derive(Debug, thiserror::Error)]
#[error("bincode: {0}")]
pub struct CodecError(String);

impl CodecError {
    pub(crate) fn new(message: String) -> Self {
        CodecError(message)
    }
}

pub fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
    bincode::serde::encode_to_vec(value, config()).map_err(|e| CodecError(e.to_string()))
}

/// Decodes a whole buffer; trailing bytes are an error (a truncated or padded body is malformed).
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, CodecError> {
    let (value, read) = bincode::serde::decode_from_slice(bytes, config()).map_err(|e| CodecError(e.to_string()))?;
    if read != bytes.len() {
        return Err(CodecError(format!("{} trailing bytes", bytes.len() - read)));
    }
    Ok(value)
}

pub fn encode_into<T: Serialize, W: std::io::Write>(value: &T, writer: &mut W) -> Result<(), CodecError> {
    bincode::serde::encode_into_std_write(value, writer, config()).map(|_| ()).map_err(|e| CodecError(e.to_string()))
}

pub fn decode_from<T: DeserializeOwned, R: std::io::Read>(reader: &mut R) -> Result<T, CodecError> {
    bincode::serde::decode_from_std_read(reader, config()).map_err(|e| CodecError(e.to_string()))
}
